"""The ``cryofm`` console script: ``cryofm <command> key=value ...``.

Each command's configuration is Hydra-composed from ``configs/<command>.yaml`` and takes the same
``key=value`` overrides (and ``+key=value`` additions) as ``train.py``. ``cryofm <command> --cfg``
prints the composed config without running. Bad input — a wrong option value, a malformed or
missing file, an unwritable output, an OS error — is printed as one line
``cryofm <command>: error: <file or key>: <problem>`` with exit status 2, and what the failed run
created in its output folder is removed (:mod:`cryofm.utils.errors`); ``--debug`` (or
``CRYOFM_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# command -> (callable "module:function", one-line help). The function takes the composed DictConfig.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("cryofm.data.commands:ingest", "RELION .star / cryoSPARC .cs particles -> WebDataset shards"),
    "merge": ("cryofm.data.commands:merge", "merge per-experiment manifests (SLURM array ingest)"),
    "split": ("cryofm.data.commands:split", "experiment-level train / val / held-out split"),
    "inspect": ("cryofm.data.commands:inspect", "counts, annotation coverage and a particle montage"),
    "simulate": ("cryofm.simulate.commands:simulate", "simulated particles / micrographs with ground truth"),
    "maplabels": ("cryofm.maps.commands:maplabels", "map + atomic model -> voxel label maps"),
    "summarize": ("cryofm.report.sweep:command", "summary table of a Hydra sweep's runs"),
    "extract": ("cryofm.extract.command:command", "particles cut from micrographs at picks (RELION Extract)"),
    "curate": ("cryofm.curate.command:command", "sequence clusters (MMseqs2), representatives per cluster"),
}

# command -> config keys naming what it writes (removed, or emptied of new entries, when it fails)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "ingest": ("out",), "merge": ("dataset",), "split": ("dataset",), "inspect": ("montage", "dataset"),
    "simulate": ("out",), "maplabels": ("out",), "summarize": ("out", "sweep"), "extract": ("out",),
    "curate": ("out",),
}


def _usage() -> str:
    lines = ["usage: cryofm <command> [key=value ...] [--cfg] [--debug]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _resolve(target: str) -> Callable:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def compose(command: str, overrides: list[str]):
    """Compose ``configs/<command>.yaml`` with ``overrides`` (Hydra syntax)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    # A command whose keys clash with config groups (maplabels' model=<file>) keeps its config in
    # its own folder, configs/<command>/<command>.yaml, where no group shadows its keys.
    own = CONFIG_DIR / command
    config_dir = own if (own / f"{command}.yaml").is_file() else CONFIG_DIR
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return hydra_compose(config_name=command, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cryofm`` console script; returns the exit status."""
    from cryofm.utils.errors import OutputGuard, debug_requested, exit_status, guarded

    argv, debug = debug_requested(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"cryofm: error: {command}: unknown command (one of {', '.join(COMMANDS)}; "
              "cryofm --help)", file=sys.stderr)
        return 2
    show_cfg = "--cfg" in rest
    overrides = [a for a in rest if a != "--cfg"]
    prog = f"cryofm {command}"

    def body() -> object:
        guard = OutputGuard()
        with guarded(prog, guard, debug=debug):
            cfg = compose(command, overrides)
            if show_cfg:
                from omegaconf import OmegaConf

                print(OmegaConf.to_yaml(cfg))
                return 0
            for key in OUTPUTS.get(command, ()):
                value = cfg.get(key) if key in cfg and not _missing(cfg, key) else None
                if isinstance(value, (str, Path)):
                    guard.watch(value)
            return _resolve(COMMANDS[command][0])(cfg)

    return exit_status(body)


def _missing(cfg, key: str) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.is_missing(cfg, key)


if __name__ == "__main__":
    raise SystemExit(main())
