"""The ``cryofm`` console script: ``cryofm <command> key=value ...``.

Each command's configuration is Hydra-composed from ``configs/<command>.yaml`` and takes the same
``key=value`` overrides (and ``+key=value`` additions) as ``train.py``. ``cryofm <command> --cfg``
prints the composed config without running. Bad input (:class:`cryofm.errors.InputError`) is
printed as one line naming the file and the problem, with exit status 2.
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


def _usage() -> str:
    lines = ["usage: cryofm <command> [key=value ...] [--cfg]", "", "commands:"]
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"cryofm: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    show_cfg = "--cfg" in rest
    overrides = [a for a in rest if a != "--cfg"]

    from omegaconf import OmegaConf

    from cryofm.errors import InputError

    try:
        cfg = compose(command, overrides)
    except Exception as exc:  # Hydra's override / missing-key errors
        print(f"cryofm {command}: bad arguments: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if show_cfg:
        print(OmegaConf.to_yaml(cfg))
        return 0
    try:
        result = _resolve(COMMANDS[command][0])(cfg)
    except InputError as exc:
        print(f"cryofm {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cryofm {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cryofm inspect ... | head`: the reader left; not an error
        import contextlib
        import os

        # point stdout at /dev/null so that flushing at exit raises no second error (unless stdout is
        # not a file, e.g. captured)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
