"""Cheap checks of the probe's inputs, run before torch / timm are imported so that a wrong path
fails in a second with one line naming it (and nothing written)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from cryofm.errors import InputError

WEIGHTS, META, MANIFEST, SPLIT = "backbone.safetensors", "backbone.json", "manifest.json", "split.json"


def check_inputs(cfg: DictConfig) -> None:
    """InputError unless ``checkpoint`` holds a backbone and ``data`` is a split cryofm dataset."""
    ck = Path(str(cfg.checkpoint))
    weights = ck / WEIGHTS if ck.is_dir() else ck
    if not weights.is_file():
        raise InputError(ck, f"no {WEIGHTS} here (pass a training run dir or the backbone file)")
    if not (weights.parent / META).is_file():
        raise InputError(weights.parent, f"{META} missing beside {weights.name}")
    data = Path(str(cfg.data))
    if not (data / MANIFEST).is_file():
        raise InputError(data / MANIFEST, "no manifest: not a cryofm dataset (run `cryofm ingest` first)")
    if not (data / SPLIT).is_file():
        raise InputError(data / SPLIT, "no split (run `cryofm split dataset=...` first)")
    out = Path(str(cfg.out))
    if out.exists() and not out.is_dir():
        raise InputError(out, "out exists and is not a folder")
