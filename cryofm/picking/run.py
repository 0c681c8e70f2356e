"""``eval/pick.py``: pick particles on micrographs with frozen features or DoG, export, score, report.

Per micrograph (cached in ``out/cache/<stem>.npz`` so an interrupted run resumes):
the DoG score map and picks (always: the classical baseline of every report), and with a checkpoint
the window features, their PCA image and the PC1 score map and picks. Picks of the chosen
``picker`` go to ``out/picks/<stem>.{star,box,csv,txt,cbox}`` and, with ``relion`` among the
formats, to RELION's layout in ``out`` (``coordinate_files.star`` + ``Movies/<mic>_autopick.star``,
:mod:`cryofm.io.relion_coords`), all multiplied by ``coord_scale`` (picks made on binned
micrographs written at full size). With ``ground_truth``: ``out/metrics.json`` and
``out/report.{html,md}`` (see :mod:`cryofm.picking.report`); without: ``out/summary.json`` and a
report with the overlays.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from cryofm.errors import InputError
from cryofm.features.sliding import micrograph_features
from cryofm.io.coords import EXTENSION, write_picks
from cryofm.io.micrograph import read_micrograph
from cryofm.io.relion_coords import write_relion_coordinates
from cryofm.models.export import resolve_backbone_file
from cryofm.picking.dog import dog_score_map
from cryofm.picking.pca import feature_score_map, kmeans_map, pca_rgb
from cryofm.picking.picker import pick
from cryofm.picking.validate import FORMATS, PICKERS, check_common, check_fits  # noqa: F401  (re-exported)
from cryofm.utils import atomic


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(checkpoint: str | None, device: str = "auto") -> tuple[Any, dict] | tuple[None, None]:
    """The frozen backbone and its meta, or (None, None) without a checkpoint."""
    if not checkpoint:
        return None, None
    from cryofm.models.export import load_backbone

    return load_backbone(checkpoint, device=resolve_device(device))


def feature_kwargs(cfg: DictConfig, meta: dict) -> dict[str, Any]:
    """Keyword arguments of :func:`micrograph_features` from the ``features`` config group."""
    f = cfg.features
    # backbone.json's particle_contrast wins ("bright"; "protein_bright" is read as the same)
    seen = str(meta.get("particle_contrast", cfg.model_contrast)).removeprefix("protein_")
    invert = str(cfg.contrast) != seen
    return {"path": str(f.path), "box_factor": float(f.box_factor), "stride": f.stride,
            "shifts": int(f.shifts), "batch_size": int(f.batch_size),
            "tile": None if f.tile is None else int(f.tile), "invert": invert,
            "progress": bool(cfg.get("progress", False))}


def pick_options(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`cryofm.picking.picker.pick` from the ``pick`` config group."""
    pk = cfg.pick
    return {"threshold": pk.threshold, "nms": float(pk.nms), "edge": float(pk.edge),
            "refine": float(pk.refine)}


def _process(path: Path, d: float, cfg: DictConfig, model, meta) -> dict[str, np.ndarray]:
    """Everything computed for one micrograph, as arrays (the cache content)."""
    img = read_micrograph(path)
    check_fits(path, img.shape, d, float(cfg.features.box_factor) if model is not None else 2.0)
    opts = pick_options(cfg)
    t0 = time.perf_counter()
    dmap = dog_score_map(img, d, particle_contrast=str(cfg.contrast), k=float(cfg.dog.k))
    res: dict[str, np.ndarray] = {"shape": np.asarray(img.shape)}
    _store(res, "dog", pick(dmap, d, **opts), time.perf_counter() - t0)
    if model is not None:
        t0 = time.perf_counter()
        grid = micrograph_features(model, meta, img, d, **feature_kwargs(cfg, meta))
        smap, pca, sign = feature_score_map(grid, sign=cfg.features.sign, prior=dmap)
        _store(res, "features", pick(smap, d, **opts), time.perf_counter() - t0)
        res.update({"rgb": pca_rgb(grid.features, pca), "score": smap.values,
                    "grid": np.asarray([grid.x0, grid.y0, grid.step]), "sign": np.asarray(sign)})
        if cfg.get("kmeans", True):
            res["kmeans"] = kmeans_map(grid.features, 2, seed=int(cfg.seed))
    return res


def _store(res: dict, name: str, p, seconds: float) -> None:
    res.update({f"{name}_xy": p.xy, f"{name}_scores": p.scores, f"{name}_cand_xy": p.candidates_xy,
                f"{name}_cand_scores": p.candidates_scores, f"{name}_threshold": np.asarray(p.threshold),
                f"{name}_seconds": np.asarray(seconds)})


def weights_identity(checkpoint: str | None) -> str:
    """The backbone file a checkpoint argument names, with its size and mtime: a run retrained in
    the same folder is a different checkpoint for every cache and resume check."""
    if not checkpoint:
        return ""
    try:
        f = resolve_backbone_file(checkpoint)
    except InputError:
        return str(checkpoint)
    st = f.stat()
    return f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(path: Path, d: float, cfg: DictConfig) -> str:
    """What a cached result depends on: the micrograph file, the diameter, the checkpoint's weights and
    every setting that changes scores or picks (a changed setting recomputes instead of reusing)."""
    keys = ("contrast", "model_contrast", "features", "pick", "dog", "seed", "checkpoint")
    sub = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg.get(k), DictConfig)
           else cfg.get(k) for k in keys}
    st = path.stat()
    return json.dumps({"file": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime, "d": d, **sub,
                       "weights": weights_identity(cfg.get("checkpoint"))}, sort_keys=True, default=str)


def _cached(path: Path, d: float, cfg: DictConfig, model, meta, cache_dir: Path) -> dict[str, np.ndarray]:
    f = cache_dir / f"{path.stem}.npz"
    key = cache_key(path, d, cfg)
    if f.is_file() and cfg.get("resume", True):
        with np.load(f, allow_pickle=False) as z:  # a cache file runs no code
            res = dict(z)
        if str(res.get("key", "")) == key and (model is None or "features_xy" in res):
            return res
    res = _process(path, d, cfg, model, meta)
    res["key"] = np.asarray(key)
    with atomic.atomic_path(f) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **res)
    return res


def run_pick(cfg: DictConfig) -> dict:
    """The ``eval/pick.py`` app (see module docstring); returns the metrics (or a summary)."""
    mics, d, out = check_common(cfg)
    picker = str(cfg.picker)
    if picker not in PICKERS:
        raise InputError(None, f"picker={picker!r} must be one of {', '.join(PICKERS)}")
    if picker == "features" and not cfg.get("checkpoint"):
        raise InputError(None, "picker=features needs checkpoint=<run dir or backbone file>")
    truths = None
    if cfg.get("ground_truth"):
        from cryofm.picking.truth import load_ground_truth

        truths = load_ground_truth(cfg.ground_truth, [m.stem for m in mics], d)  # fail early on bad GT
    torch.manual_seed(int(cfg.seed))
    model, meta = load_model(cfg.get("checkpoint"), str(cfg.device))
    results: dict[str, dict[str, np.ndarray]] = {}
    formats = list(cfg.formats)
    scale = float(cfg.get("coord_scale") or 1.0)  # exported coordinates only: scoring stays in these px
    relion: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    for path in tqdm(mics, desc="micrographs", disable=not cfg.get("progress", True)):
        res = _cached(path, d, cfg, model, meta, out / "cache")
        results[path.stem] = res
        xy, scores = res[f"{picker}_xy"] * scale, res[f"{picker}_scores"]
        for fmt in formats:
            if fmt != "relion":
                write_picks(out / "picks" / f"{path.stem}{EXTENSION[fmt]}", xy, fmt=fmt, scores=scores,
                            diameter=d * scale, micrograph=path.name)
        relion[path] = (xy, scores)
    if "relion" in formats:
        rc = cfg.get("relion") or {}
        write_relion_coordinates(out, relion, suffix=str(rc.get("suffix") or "autopick"),
                                 project_dir=rc.get("project_dir"))
    summary = {"picker": picker, "diameter_px": d, "n_micrographs": len(mics), "coord_scale": scale,
               "n_picks": int(sum(len(r[f"{picker}_xy"]) for r in results.values())),
               "config": OmegaConf.to_container(cfg, resolve=True)}
    if truths is None:
        atomic.write_json(out / "summary.json", summary)
        if cfg.get("report", True):
            from cryofm.picking.report import report_unscored

            report_unscored(cfg, mics, results, d, out, picker)
        return summary
    from cryofm.picking.report import score_and_report

    return score_and_report(cfg, mics, results, truths, d, out, picker, meta)
