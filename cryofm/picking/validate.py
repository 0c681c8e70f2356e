"""Checks of ``eval/pick.py`` and ``eval/micrograph_pca.py`` configs before any work (and before torch
is imported): types, ranges and choices of every option, the micrographs, the checkpoint files and
the output folder. Each failure is an :class:`~cryofm.errors.InputError` naming the key or file."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cryofm.errors import InputError
from cryofm.io.micrograph import list_micrographs
from cryofm.utils import checks as c

WEIGHTS, META = "backbone.safetensors", "backbone.json"
PICKERS = ("features", "dog")
FORMATS = ("star", "box", "csv", "topaz", "cbox", "relion")  # relion: RELION's coordinate list + tree
CONTRASTS = ("dark", "bright")
DEVICES = ("auto", "cpu", "cuda")
PATHS = ("fast", "dense")
SIGNS = ("dog", "skew", 1, -1, "+1", "-1")


def check_checkpoint(cfg: Any, required: bool) -> None:
    """``checkpoint`` names a run dir or backbone file with ``backbone.json`` beside it."""
    value = c.value(cfg, "checkpoint", None)
    if value in (None, ""):
        if required:
            raise InputError("checkpoint", "a value is required: checkpoint=<run dir or backbone file>")
        return
    ck = Path(str(value))
    weights = ck / WEIGHTS if ck.is_dir() else ck
    if not weights.is_file():
        raise InputError(ck, f"no {WEIGHTS} here (pass a training run dir or the backbone file)")
    if not (weights.parent / META).is_file():
        raise InputError(weights.parent, f"{META} missing beside {weights.name}")


def check_common(cfg: Any) -> tuple[list[Path], float, Path]:
    """Micrograph list, diameter (px) and output folder, validated (InputError on bad values)."""
    if OmegaConf.is_missing(cfg, "micrographs") or cfg.get("micrographs") in (None, ""):
        raise InputError("micrographs", "a value is required: micrographs=<dir, glob or file>")
    mics = list_micrographs(cfg.micrographs)
    d = cfg.get("diameter") if not OmegaConf.is_missing(cfg, "diameter") else None
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d):
        raise InputError("diameter", f"must be a number of micrograph px (got {d!r})")
    d = float(d)
    if not d > 2:
        raise InputError("diameter", f"{d:g} px is too small (particle diameter in micrograph px)")
    stems = [m.stem for m in mics]
    if len(set(stems)) != len(stems):
        raise InputError(cfg.micrographs, "two micrographs share a file stem (outputs are named by stem)")
    return mics, d, Path(str(cfg.out))


def _features(cfg: Any) -> None:
    c.choice(cfg, "features.path", PATHS)
    c.number(cfg, "features.box_factor", 0, lo_open=True)
    c.number(cfg, "features.stride", 0, lo_open=True, none_ok=True)
    c.integer(cfg, "features.shifts", 1)
    c.integer(cfg, "features.tile", 0, none_ok=True)
    c.integer(cfg, "features.batch_size", 1)


def _common(cfg: Any) -> None:
    c.required(cfg, "micrographs")
    c.required(cfg, "diameter")
    c.choice(cfg, "contrast", CONTRASTS)
    c.choice(cfg, "model_contrast", CONTRASTS)
    c.choice(cfg, "device", DEVICES)
    c.integer(cfg, "seed", 0)
    for key in ("resume", "progress", "kmeans"):
        c.boolean(cfg, key)
    _features(cfg)
    c.writable_output(cfg, "out")
    check_common(cfg)  # the micrographs exist and have distinct stems; the diameter is a number


def check_pick(cfg: Any, choices: dict[str, str] | None = None) -> None:
    """Every option of ``configs/pick.yaml``."""
    picker = c.choice(cfg, "picker", PICKERS)
    _common(cfg)
    check_checkpoint(cfg, required=picker == "features")
    sign = c.value(cfg, "features.sign")
    if sign not in SIGNS or isinstance(sign, bool):
        raise InputError("features.sign", f"must be one of dog, skew, +1, -1 (got {sign!r})")
    formats = c.value(cfg, "formats", None)
    formats = OmegaConf.to_container(formats) if OmegaConf.is_list(formats) else formats
    if not isinstance(formats, list) or any(f not in FORMATS for f in formats):
        raise InputError("formats", f"must be a list of {', '.join(FORMATS)} (got {formats!r})")
    c.number(cfg, "coord_scale", 0, lo_open=True)
    suffix = c.text(cfg, "relion.suffix", none_ok=False)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", suffix):
        raise InputError("relion.suffix", f"must be a plain file-name suffix such as autopick "
                                          f"(got {suffix!r})")
    if c.value(cfg, "relion.project_dir", None) is not None:
        c.existing_dir(cfg, "relion.project_dir", "RELION project folder")
    for key in ("report",):
        c.boolean(cfg, key)
    c.integer(cfg, "max_overlays", 0)
    th = c.value(cfg, "pick.threshold")
    if th != "otsu":
        c.number(cfg, "pick.threshold")  # a robust-z number, or the word otsu
    c.number(cfg, "pick.nms", 0)
    c.number(cfg, "pick.edge", 0)
    c.number(cfg, "pick.refine", 0)
    c.number(cfg, "dog.k", 1, lo_open=True)
    c.number(cfg, "scoring.radius", 0, lo_open=True)


def check_micrograph_pca(cfg: Any, choices: dict[str, str] | None = None) -> None:
    """Every option of ``configs/micrograph_pca.yaml``."""
    _common(cfg)
    check_checkpoint(cfg, required=True)


def check_fits(path: str | Path, shape: tuple[int, ...], diameter: float, box_factor: float = 2.0) -> None:
    """The particle window (``box_factor`` × ``diameter`` px, at least 2 diameters: the DoG's
    surround) must fit in micrograph ``path`` of ``shape`` (rows, cols px); InputError otherwise."""
    window = max(2.0, float(box_factor)) * float(diameter)
    if min(shape[:2]) < window:
        raise InputError(path, f"{shape[1]} x {shape[0]} px is smaller than the particle window "
                               f"({window:g} px = {max(2.0, float(box_factor)):g} x diameter={diameter:g}): "
                               "is diameter in this micrograph's px?")
