"""The dataset manifest: every finished ``experiments/<exp>.json`` merged into ``manifest.json``.

Per-experiment manifests are written by each ingest task independently (a worker process, or one
task of a SLURM array), so tasks never write the same file; :func:`merge_manifests` is the final,
cheap step that lists all shards with their sample counts and SHA-256 checksums, the counts per
experiment, the dataset pixel mean / std of the normalised images, and the schema version.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from cryofm import schema
from cryofm.data import format as fmt
from cryofm.data.dataset import check_shard_path
from cryofm.data.shards import experiment_path as sh_path
from cryofm.data.shards import sha256_file
from cryofm.errors import InputError
from cryofm.utils.atomic import write_json


def read_experiment_manifests(root: str | Path) -> dict[str, dict[str, Any]]:
    """``{experiment: per-experiment manifest}`` of every finished experiment under ``root``."""
    folder = Path(root) / fmt.EXPERIMENTS_DIR
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if p.name.startswith("."):
            continue
        try:
            m = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(p, f"not valid JSON ({getattr(exc, 'msg', None) or exc.reason})") from None
        missing = [k for k in _EXPERIMENT_KEYS if not isinstance(m, dict) or k not in m]
        if missing:
            raise InputError(p, f"not a cryofm experiment manifest (no {', '.join(missing)})")
        _check_experiment(p, m)
        out[m["experiment"]] = m
    return out


_EXPERIMENT_KEYS = ("experiment", "n", "shards", "pixel_stats")


def _check_experiment(p: Path, m: dict[str, Any]) -> None:
    """InputError naming ``p`` when its values cannot be those ingest wrote: this schema's major
    version, the experiment named as the file, a particle count that is a whole number >= 0 and
    matches its shards, facts a mapping, pixel statistics over at least one pixel."""
    version = m.get("schema_version", schema.SCHEMA_VERSION)  # absent in the first datasets: current
    major = schema.SCHEMA_VERSION.split(".")[0]
    if str(version).split(".")[0] != major:
        raise InputError(p, f"schema_version {version!r}: this cryofm reads schema {major}.x (re-ingest, or "
                            "use the cryofm that wrote it)")
    if m["experiment"] != p.stem:
        raise InputError(p, f"names experiment {m['experiment']!r}, but the file is {p.name} (a copy?)")
    n = m["n"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(p, f"n must be a whole number >= 0, got {n!r}")
    shards = m["shards"] if isinstance(m["shards"], list) else []
    counts = [sh.get("n") if isinstance(sh, dict) else None for sh in shards]
    if all(isinstance(c, int) and not isinstance(c, bool) for c in counts) and sum(counts) != n:
        raise InputError(p, f"n = {n}, but its shards hold {sum(counts)} particles")
    if not isinstance(m.get("facts", {}), dict):
        raise InputError(p, f"facts must be a mapping of field -> value, got {type(m['facts']).__name__}")
    count = m["pixel_stats"].get("count") if isinstance(m["pixel_stats"], dict) else None
    if n > 0 and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise InputError(p, f"pixel_stats.count must be a whole number >= 1, got {count!r}")


def merge_manifests(root: str | Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild ``<root>/manifest.json`` from the per-experiment manifests; return it.

    The file is rewritten only when its content changes, so re-running on a finished dataset does
    nothing.
    """
    root = Path(root)
    exps = read_experiment_manifests(root)
    if not exps:
        raise InputError(root, "no ingested experiments (experiments/*.json) to merge")
    total_sum = total_sq = 0.0
    total_count = 0
    shards: list[dict[str, Any]] = []
    experiments: dict[str, dict[str, Any]] = {}
    coverage = {f.name: 0 for f in schema.FIELDS}
    for name, m in exps.items():
        try:
            ps = m["pixel_stats"]
            total_sum += float(ps["sum"])
            total_sq += float(ps["sumsq"])
            total_count += int(ps["count"])
            for sh in m["shards"]:
                check_shard_path(sh["path"], sh_path(root, name))
                shards.append({"path": str(sh["path"]), "n": int(sh["n"]), "bytes": int(sh["bytes"]),
                               "sha256": str(sh["sha256"]), **sh, "experiment": name})
            for k, v in m.get("coverage", {}).items():
                coverage[k] = coverage.get(k, 0) + int(v)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(sh_path(root, name), f"not a cryofm experiment manifest (bad or missing "
                                                  f"{exc})") from None
        experiments[name] = {"n": m["n"], "n_shards": len(m["shards"]), "source": m.get("source"),
                             "facts": m.get("facts", {}), "settings": m.get("settings", {})}
        if m.get("n_constant"):
            experiments[name]["n_constant"] = m["n_constant"]
    mean = total_sum / total_count if total_count else math.nan
    var = total_sq / total_count - mean * mean if total_count else math.nan
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "n_particles": sum(e["n"] for e in experiments.values()),
        "n_experiments": len(experiments),
        "n_shards": len(shards),
        "pixel_stats": {"mean": mean, "std": math.sqrt(max(var, 0.0))},
        "experiments": experiments,
        "shards": shards,
        "coverage": coverage,
        "config": config or {},
    }
    path = root / fmt.MANIFEST
    if config is None and path.is_file():  # keep the config a previous merge recorded
        with contextlib.suppress(json.JSONDecodeError):
            manifest["config"] = json.loads(path.read_text()).get("config", {})
    text = json.dumps(manifest, indent=2, allow_nan=False, default=str) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_json(path, manifest)
    return manifest


def verify(root: str | Path) -> list[str]:
    """Recompute every shard's SHA-256; return the relative paths that are missing or differ."""
    from cryofm.data.dataset import load_manifest

    root = Path(root)
    manifest = load_manifest(root)
    bad = []
    for sh in manifest["shards"]:
        if not isinstance(sh, dict) or "path" not in sh or "sha256" not in sh:
            raise InputError(root / fmt.MANIFEST, f"not a cryofm manifest (shard entry {sh!r})")
        p = root / sh["path"]
        if not p.is_file() or sha256_file(p) != sh["sha256"]:
            bad.append(sh["path"])
    return bad
