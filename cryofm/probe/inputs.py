"""Cheap checks of the probe's inputs and options, run before torch / timm are imported so that a
wrong path or value fails in a second with one line naming it (and nothing written)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cryofm.errors import InputError
from cryofm.utils import checks as c

WEIGHTS, META, MANIFEST, SPLIT = "backbone.safetensors", "backbone.json", "manifest.json", "split.json"
DEVICES = ("auto", "cpu", "cuda")
ERASURES = ("regress_out", "leace")


def check_options(cfg: DictConfig) -> None:
    """Types, ranges and choices of every option of ``configs/probe/probe.yaml``."""
    c.boolean(cfg, "progress")
    c.integer(cfg, "features.last_blocks", 1)
    c.integer(cfg, "features.batch_size", 1)
    c.choice(cfg, "features.device", DEVICES)
    c.boolean(cfg, "features.amp")
    c.integer(cfg, "features.per_experiment", 0)
    skip = cfg.get("exclude_experiments")
    if skip is not None and (not OmegaConf.is_list(skip) or any(
            isinstance(e, bool) or not isinstance(e, (str, int)) for e in skip)):
        raise InputError("exclude_experiments", f"must be a list of experiment names, got {skip!r}")
    c.boolean(cfg, "baselines.random_init")
    c.integer(cfg, "baselines.pixels", 0)
    c.integer(cfg, "baselines.seed", 0)
    fr = c.numbers(cfg, "probe.fractions", 3, 0, 1)
    if not sum(fr) > 0 or fr[0] <= 0:
        raise InputError("probe.fractions", f"the probe-train fraction must be > 0 (got {fr})")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise InputError("probe.fractions", f"(probe-train, probe-val, test) must sum to 1 (got {fr}: "
                                            f"{sum(fr):g})")
    c.integer(cfg, "probe.seed", 0)
    c.integer(cfg, "probe.cap", 1)
    c.numbers(cfg, "probe.logistic_C", None, 0)
    c.numbers(cfg, "probe.ridge_alpha", None, 0)
    for key in ("probe.logistic_C", "probe.ridge_alpha"):
        if any(v <= 0 for v in c.numbers(cfg, key)):
            raise InputError(key, f"strengths must be > 0 (got {list(c.value(cfg, key))})")
    c.integer(cfg, "probe.max_iter", 1)
    c.integer(cfg, "probe.min_train", 1)
    erasure = c.value(cfg, "erasure", None)
    erasure = [] if erasure is None else (OmegaConf.to_container(erasure) if OmegaConf.is_list(erasure)
                                          else erasure)
    if not isinstance(erasure, list) or any(e not in ERASURES for e in erasure):
        raise InputError("erasure", f"must be a list of {', '.join(ERASURES)} (got {erasure!r})")
    c.boolean(cfg, "erase_baselines")
    fields = c.value(cfg, "acquisition_fields", None)
    if fields is not None:
        from cryofm import schema

        if not OmegaConf.is_list(fields) or not fields:
            raise InputError("acquisition_fields", f"must be a list of schema fields (got {fields!r})")
        for f in fields:
            try:
                schema.field(str(f))
            except KeyError:
                raise InputError("acquisition_fields", f"unknown schema field {f!r}") from None
    _check_tasks(cfg)
    c.text(cfg, "cache_dir", none_ok=False)


def _check_tasks(cfg: DictConfig) -> None:
    from cryofm.probe.tasks import make_task

    tasks = c.value(cfg, "tasks", None)
    if not OmegaConf.is_list(tasks) or not tasks:
        raise InputError("tasks", "must be a list of probe tasks (tasks=cryopanda or tasks=quick)")
    names = []
    for i, spec in enumerate(OmegaConf.to_container(tasks, resolve=True)):
        if not isinstance(spec, dict) or "source" not in spec or "kind" not in spec:
            raise InputError(f"tasks[{i}]", f"a task needs source and kind (got {spec!r})")
        try:
            names.append(make_task(spec).name)
        except KeyError as exc:
            raise InputError(f"tasks[{i}].source", str(exc.args[0])) from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"tasks[{i}]", str(exc)) from None
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError("tasks", f"task names must be unique (repeated: {', '.join(dup)})")


def check_inputs(cfg: DictConfig) -> None:
    """InputError unless ``checkpoint`` holds a backbone, ``data`` is a split cryofm dataset and
    ``out`` can be written."""
    ck = Path(str(c.required(cfg, "checkpoint")))
    weights = ck / WEIGHTS if ck.is_dir() else ck
    if not weights.is_file():
        raise InputError(ck, f"no {WEIGHTS} here (pass a training run dir or the backbone file)")
    if not (weights.parent / META).is_file():
        raise InputError(weights.parent, f"{META} missing beside {weights.name}")
    data = Path(str(c.required(cfg, "data")))
    if not (data / MANIFEST).is_file():
        raise InputError(data / MANIFEST, "no manifest: not a cryofm dataset (run `cryofm ingest` first)")
    if not (data / SPLIT).is_file():
        raise InputError(data / SPLIT, "no split (run `cryofm split dataset=...` first)")
    c.writable_output(cfg, "out")


def check_probe(cfg: DictConfig, choices: dict[str, str] | None = None) -> None:
    """``eval/probe.py``'s checks: the inputs and every option."""
    check_inputs(cfg)
    check_options(cfg)
