"""Run a Hydra app (``train.py``, ``eval/*.py``) so that bad input fails in one line, exit 2, before
anything is written, and in one process (so the hostile-input tests run it without a subprocess).

A plain run (``python train.py key=value ...``) is composed here with Hydra's compose API, checked
by the app's ``validate`` (types, ranges, choices, paths) and run under
:func:`cryofm.utils.errors.guarded`. Multirun (``-m``) and Hydra's own flags (``--cfg``, ``--help``,
``--info``, ...) are handed to the app's ``@hydra.main`` function, after the same checks on the
first point of a sweep; each sweep job is guarded again inside that function. Logging is what
``hydra/job_logging: stdout`` gives: INFO messages on stdout, the message only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryofm.utils.errors import OutputGuard, debug_requested, exit_status, guarded

_MULTIRUN = ("-m", "--multirun")
# Hydra's flags that take the next argument as their value (``--cfg job``, ``-cn train``, ...)
_VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                "--config-dir", "-cd", "--experimental-rerun")
_INFO_VALUES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Hydra's own flags (with their values) and the overrides of a command line."""
    flags, overrides = [], []
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        if not a.startswith("-"):
            overrides.append(a)
            continue
        flags.append(a)
        takes = a in _VALUE_FLAGS or (a == "--info" and i + 1 < len(argv) and argv[i + 1] in _INFO_VALUES)
        if takes and i + 1 < len(argv):
            flags.append(argv[i + 1])
            next(it, None)
    return flags, overrides


class _Stdout(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` is at emit time (pytest swaps it per test)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging() -> None:
    """INFO and above to stdout as bare messages (once per process), like ``job_logging: stdout``."""
    root = logging.getLogger()
    if not any(getattr(h, "_cryofm", False) for h in root.handlers):
        h = _Stdout()
        h.setFormatter(logging.Formatter("%(message)s"))
        h._cryofm = True  # type: ignore[attr-defined]
        root.addHandler(h)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def first_sweep_point(overrides: Sequence[str]) -> list[str]:
    """The overrides of a ``-m`` sweep with every sweep (``a=1,2``) replaced by its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        if o.is_sweep_override():
            try:
                value = next(iter(o.sweep_string_iterator()))
            except (StopIteration, TypeError, ValueError):
                return list(overrides)  # an exotic sweep: let Hydra check it
            out.append(f"{o.get_key_element()}={value}")
        else:
            out.append(str(o.input_line))
    return out


def compose(config_dir: str | Path, config_name: str, overrides: Sequence[str]):
    """``config_name`` composed with ``overrides``, with its ``hydra`` node (for the group choices)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def split_hydra(cfg) -> tuple[Any, dict[str, str]]:
    """The app's config without its ``hydra`` node, and the chosen config-group options."""
    from omegaconf import OmegaConf, open_dict

    choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices)) if "hydra" in cfg else {}
    app = cfg.copy()
    with open_dict(app):
        app.pop("hydra", None)
    return app, {str(k): str(v) for k, v in choices.items()}


def run(prog: str, config_dir: str | Path, config_name: str, task: Callable[[Any], Any],
        argv: Sequence[str] | None = None, *, validate: Callable[[Any, dict[str, str]], None] | None = None,
        outputs: Callable[[Any], Sequence[Any]] = lambda cfg: [cfg.get("out")],
        keep: Callable[[Any], Callable[[], bool] | None] = lambda cfg: None,
        hydra_main: Callable[[], Any] | None = None) -> int:
    """Run ``task(cfg)`` as command ``prog``; returns the exit status.

    Args:
        validate: ``validate(cfg, choices)`` raises InputError naming the key or file that is wrong.
        outputs: the paths the run writes (removed / emptied of new entries when it fails).
        keep: for a config, a predicate that, when true at failure time, keeps the outputs (e.g. a
            training run that saved a checkpoint to resume from).
        hydra_main: the app's ``@hydra.main`` function, for ``-m`` and Hydra's own flags.
    """
    argv, debug = debug_requested(list(sys.argv[1:] if argv is None else argv))
    flags, overrides = split_argv(argv)
    multirun = any(a in _MULTIRUN for a in flags)

    def body() -> Any:
        with guarded(prog, debug=debug) as guard:
            full = compose(config_dir, config_name, first_sweep_point(overrides) if multirun else overrides)
            cfg, choices = split_hydra(full)
            if flags:  # Hydra's flags (--cfg job, --help, ...) and sweeps: Hydra runs them
                if validate is not None and multirun:
                    validate(cfg, choices)
                return None
            for p in outputs(cfg):
                guard.watch(p)
            guard.keep = keep(cfg)
            if validate is not None:
                validate(cfg, choices)
            setup_logging()
            return task(cfg)

    status = exit_status(body)
    if status or not flags:
        return status
    if hydra_main is None:
        print(f"{prog}: error: {' '.join(flags)}: not supported here", file=sys.stderr)
        return 2
    if debug:
        os.environ["CRYOFM_DEBUG"] = "1"  # the sweep jobs' guard reads it
    saved = sys.argv
    sys.argv = [saved[0] if saved else prog, *argv]
    try:
        return exit_status(hydra_main)
    finally:
        sys.argv = saved


def guarded_job(prog: str, cfg: Any, task: Callable[[Any], Any],
                validate: Callable[[Any, dict[str, str]], None] | None = None,
                outputs: Callable[[Any], Sequence[Any]] = lambda cfg: [cfg.get("out")],
                keep: Callable[[Any], Callable[[], bool] | None] = lambda cfg: None) -> Any:
    """One job inside ``@hydra.main`` (a sweep point): validated and guarded like :func:`run`."""
    from hydra.core.hydra_config import HydraConfig

    choices = {}
    if HydraConfig.initialized():
        choices = {str(k): str(v) for k, v in HydraConfig.get().runtime.choices.items()}
    _, debug = debug_requested([])
    guard = OutputGuard([p for p in outputs(cfg)], keep=keep(cfg))
    with guarded(prog, guard, debug=debug):
        if validate is not None:
            validate(cfg, choices)
        return task(cfg)
