"""``eval/probe.py``: features of a checkpoint and of the baselines → probes → report + metrics.

Writes ``<out>/report.html``, ``<out>/report.md`` (+ ``figures/``) and ``<out>/metrics.json``.
Nothing is written under ``out`` until every probe has run; features go to the cache
(:mod:`cryofm.features.cache`) and are reused by later runs with other probe settings.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from cryofm import schema
from cryofm.data.dataset import split_urls
from cryofm.errors import InputError
from cryofm.features.cache import FeatureCache, Features, columns_to_records
from cryofm.features.particles import (
    BackboneFeaturizer,
    LazyFeaturizer,
    PixelFeaturizer,
    backbone_identity,
    file_sha256,
    pick_device,
    random_init_identity,
)
from cryofm.models.backbone import random_backbone
from cryofm.models.export import META, load_backbone, resolve_backbone_file
from cryofm.probe.erase import acquisition_matrix
from cryofm.probe.inputs import check_inputs
from cryofm.probe.protocol import Settings, acquisition_predictability, erased_variants, make_sets, probe_task
from cryofm.probe.tasks import Task, make_task
from cryofm.utils import atomic

log = logging.getLogger(__name__)
SIDES = ("train", "val", "heldout")


def _featurizers(cfg: DictConfig) -> list[tuple[str, Any, dict[str, Any]]]:
    """(source name, featurizer, cache identity) for the checkpoint and each enabled baseline.

    Backbones are built lazily: a run whose features are all cached never loads the weights."""
    path = resolve_backbone_file(cfg.checkpoint)
    try:
        meta = json.loads((path.parent / META).read_text())
        name, kwargs = meta["model_name"], dict(meta["kwargs"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(path.parent / META, f"not a backbone description ({exc})") from None
    fcfg = cfg.features
    layers, device, amp = int(fcfg.last_blocks), str(fcfg.device), bool(fcfg.amp)
    # bfloat16 autocast on CUDA gives slightly different numbers: part of the cache key
    precision = {"precision": "bf16" if amp and pick_device(device).type == "cuda" else "fp32"}
    out: list[tuple[str, Any, dict[str, Any]]] = []

    ident = backbone_identity(meta, {"weights": file_sha256(path), **precision}, layers)
    out.append(
        (
            "model",
            LazyFeaturizer(
                lambda: BackboneFeaturizer(load_backbone(path)[0], meta, ident, layers, device, amp), ident
            ),
            ident,
        )
    )
    if cfg.baselines.random_init:
        seed = int(cfg.baselines.seed)
        rident = backbone_identity(meta, {**random_init_identity(name, kwargs, seed), **precision}, layers)

        def build_random() -> BackboneFeaturizer:
            return BackboneFeaturizer(random_backbone(name, kwargs, seed), meta, rident, layers, device, amp)

        out.append(("random_init", LazyFeaturizer(build_random, rident), rident))
    if int(cfg.baselines.pixels) > 0:
        fz = PixelFeaturizer(int(cfg.baselines.pixels))
        out.append(("pixels", fz, fz.identity))
    return out


def _split_features(
    cache: FeatureCache,
    fz: Any,
    ident: dict[str, Any],
    data: Path,
    urls: Mapping[str, list[str]],
    cfg: DictConfig,
) -> list[Features]:
    f = cfg.features
    return [
        cache.get(
            fz,
            ident,
            urls[side],
            side,
            dataset=data,
            per_experiment=int(f.per_experiment),
            batch_size=int(f.batch_size),
            progress=bool(cfg.progress),
        )
        for side in SIDES
    ]


def settings_from(cfg: DictConfig) -> Settings:
    p = cfg.probe
    return Settings(
        fractions=tuple(p.fractions),
        seed=int(p.seed),
        cap=int(p.cap),
        logistic_c=tuple(float(c) for c in p.logistic_C),
        ridge_alpha=tuple(float(a) for a in p.ridge_alpha),
        max_iter=int(p.max_iter),
        min_train=int(p.min_train),
    )


def run_probe(cfg: DictConfig) -> dict[str, Any]:
    """Run every configured probe; write the report and metrics; return the metrics dict."""
    t0 = time.time()
    check_inputs(cfg)
    data, out = Path(cfg.data), Path(cfg.out)
    tasks: list[Task] = [make_task(t) for t in OmegaConf.to_container(cfg.tasks, resolve=True)]
    skip = [str(e) for e in (cfg.get("exclude_experiments") or [])]  # e.g. background boxes: no labels
    urls = {side: split_urls(data, side, skip) for side in SIDES}
    if not urls["train"]:
        raise InputError(data / "split.json", "no training experiments: the probes need some")
    cache = FeatureCache(os.path.expanduser(str(cfg.cache_dir)))
    sources = _featurizers(cfg)

    feats: dict[str, np.ndarray] = {}
    dims: dict[str, int] = {}
    cached: dict[str, bool] = {}
    records = sides = uids = None
    for name, fz, ident in sources:
        parts = _split_features(cache, fz, ident, data, urls, cfg)
        feats[name] = np.concatenate([p.x for p in parts if p.x.size]).astype(np.float32)
        dims[name] = int(feats[name].shape[1])
        cached[name] = not any(p.computed for p in parts)
        u = np.concatenate([p.uids for p in parts])
        if uids is None:
            uids = u
            cols = {k: np.concatenate([p.records[k] for p in parts]) for k in parts[0].records}
            records = columns_to_records(cols)
            sides = np.concatenate([np.full(len(p.uids), side) for p, side in zip(parts, SIDES, strict=True)])
        elif not np.array_equal(u, uids):
            raise RuntimeError(f"feature source {name!r} saw other particles than the first one")
        if hasattr(fz, "release"):
            fz.release()  # free this backbone before the next one is built
    assert records is not None and sides is not None
    settings = settings_from(cfg)
    sets = make_sets(sides, settings.fractions, settings.seed)
    acq_fields = list(cfg.acquisition_fields or schema.ACQUISITION_FIELDS)
    acq, acq_names = acquisition_matrix(records, acq_fields)
    methods = list(cfg.erasure)

    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    predictability: list[dict[str, Any]] = []
    erasure_info: dict[str, Any] = {}
    for name, x in feats.items():
        erase = methods if (name == "model" or cfg.erase_baselines) else []
        variants, info = erased_variants(x, acq, acq_names, sets["train"], erase)
        erasure_info[name] = info
        for var, xv in variants.items():
            for task in tasks:
                res = probe_task(task, xv, records, sets, settings)
                if "skipped" in res:
                    if name == "model" and var == "none":
                        skipped.append({"task": task.name, "reason": res["skipped"]})
                    continue
                for proto in ("id", "ood"):
                    m = res.get(proto, {"n": 0})
                    rows.append(
                        {
                            "task": task.name,
                            "kind": task.kind,
                            "unit": task.unit,
                            "source": name,
                            "erasure": var,
                            "protocol": proto,
                            "n_train": res["n_train"],
                            "chosen": res["chosen"].get(proto),
                            **m,
                        }
                    )
            if name == "model" or cfg.erase_baselines:
                for param, r2 in acquisition_predictability(xv, acq, acq_names, sets, settings).items():
                    for proto, v in r2.items():
                        predictability.append(
                            {"source": name, "erasure": var, "parameter": param, "protocol": proto, "r2": v}
                        )
    metrics = {
        "checkpoint": str(cfg.checkpoint),
        "data": str(data),
        "sets": {k: int(len(v)) for k, v in sets.items()},
        "ood_validation": (
            "the val experiments"
            if np.any(sides == "val")
            else "ID-val particles (the split has no val experiments)"
        ),
        "experiments": {
            side: sorted({records["experiment"][i] for i in np.flatnonzero(sides == side)}) for side in SIDES
        },
        "feature_dims": dims,
        "features_from_cache": cached,
        "sources": [s[0] for s in sources],
        "erasure": erasure_info,
        "tasks": [dict(t.__dict__) for t in tasks],
        "summary": summarize(rows, predictability),
        "results": rows,
        "acquisition_predictability": predictability,
        "skipped": skipped,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "seconds": round(time.time() - t0, 2),
    }
    metrics = _json_safe(metrics)
    from cryofm.probe.report import build_report

    rep = build_report(metrics, tasks)
    rep.write(out)
    atomic.write_json(out / "metrics.json", metrics)
    log.info("wrote %s", out / "report.html")
    return metrics


def summarize(rows: list[dict[str, Any]], predictability: list[dict[str, Any]]) -> dict[str, Any]:
    """Nested ``{task: {source: {<protocol>[_<erasure>]: score}}}`` (balanced accuracy or R² vs the
    probe-train mean) and
    ``{"acquisition_r2": {parameter: {erasure: R² (OOD)}}}`` for sweep tables (flattened to keys)."""
    out: dict[str, Any] = {}
    for r in rows:
        score = r.get("balanced_accuracy", r.get("r2_vs_train_mean"))
        key = r["protocol"] + ("" if r["erasure"] == "none" else f"_{r['erasure']}")
        out.setdefault(r["task"], {}).setdefault(r["source"], {})[key] = score
    acq: dict[str, Any] = {}
    for r in predictability:
        if r["source"] == "model" and r["protocol"] == "ood":
            acq.setdefault(r["parameter"], {})[r["erasure"]] = r["r2"]
    out["acquisition_r2"] = acq
    return out


def _json_safe(obj: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python (metrics.json is strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
