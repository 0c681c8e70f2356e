"""Look at a dataset: particles per experiment and split, annotation coverage, a particle montage."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from cryofm import schema
from cryofm.data import format as fmt
from cryofm.data.dataset import load_manifest, load_split
from cryofm.errors import InputError


def summary(dataset: str | Path) -> dict[str, Any]:
    """Counts per experiment (with split side), per side, and per-field coverage.

    Reads the manifest only (and ``stat``s each shard): ``warnings`` lists shards that are missing or
    whose size differs from the manifest's (``verify=true`` checks their checksums).
    """
    root = Path(dataset)
    man = load_manifest(root)
    try:
        split_path = root / fmt.SPLIT
        assignment = load_split(root) if split_path.is_file() else {}
        per_exp = {e: {"n": int(v["n"]), "shards": int(v["n_shards"]), "split": assignment.get(e, "-")}
                   for e, v in sorted(man["experiments"].items())}
        shards = [(str(sh["path"]), int(sh.get("bytes", -1))) for sh in man["shards"]]
        total = int(man["n_particles"])
        head = {"n_particles": total, "n_experiments": int(man["n_experiments"]),
                "n_shards": int(man["n_shards"]), "pixel_stats": dict(man["pixel_stats"])}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(root / fmt.MANIFEST, f"not a cryofm manifest (bad or missing {exc})") from None
    per_split: dict[str, dict[str, int]] = {}
    for v in per_exp.values():
        s = per_split.setdefault(v["split"], {"experiments": 0, "particles": 0})
        s["experiments"] += 1
        s["particles"] += v["n"]
    coverage = {k: int(v) for k, v in man.get("coverage", {}).items()}
    missing, resized = [], []
    for rel, size in shards:
        p = root / rel
        if not p.is_file():
            missing.append(rel)
        elif size >= 0 and p.stat().st_size != size:
            resized.append(rel)
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} shard(s) listed in the manifest are missing (first: {missing[0]})")
    if resized:
        warnings.append(f"{len(resized)} shard(s) differ in size from the manifest (first: {resized[0]}): "
                        "corrupt or rewritten")
    return {**head, "experiments": per_exp, "splits": per_split, "coverage": coverage,
            "warnings": warnings}


def format_summary(s: dict[str, Any]) -> str:
    """The summary as a few aligned text tables."""
    lines = [f"{s['n_particles']} particles, {s['n_experiments']} experiments, {s['n_shards']} shards; "
             f"pixel mean {s['pixel_stats']['mean']:.4g} std {s['pixel_stats']['std']:.4g}", "",
             f"{'experiment':<24} {'split':<8} {'particles':>10} {'shards':>7}"]
    for e, v in s["experiments"].items():
        lines.append(f"{e:<24} {v['split']:<8} {v['n']:>10} {v['shards']:>7}")
    lines += ["", f"{'split':<8} {'experiments':>11} {'particles':>10}"]
    for side in (*fmt.SPLITS, "-"):
        if side in s["splits"]:
            v = s["splits"][side]
            lines.append(f"{side:<8} {v['experiments']:>11} {v['particles']:>10}")
    total = max(s["n_particles"], 1)
    lines += ["", f"{'field':<26} {'group':<12} {'particles':>10} {'coverage':>9}"]
    for f in schema.FIELDS:
        n = s["coverage"].get(f.name, 0)
        lines.append(f"{f.name:<26} {f.group:<12} {n:>10} {100.0 * n / total:>8.1f}%")
    return "\n".join(lines)


def _read_member(shard: Path, position: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Sample number ``position`` of a shard (tar headers are skipped over without reading data).

    InputError naming the shard when it is missing, not a tar, or holds no such sample.
    """
    sample: dict[str, bytes] = {}
    key = None
    count = -1
    try:
        with tarfile.open(shard, "r") as tar:
            for m in tar:
                k, _, ext = m.name.partition(".")
                if k != key:
                    key, count = k, count + 1
                    if count > position:
                        break
                if count == position:
                    sample[ext] = tar.extractfile(m).read()
        return fmt.decode_sample(sample)
    except (OSError, tarfile.TarError, KeyError, ValueError, EOFError) as exc:
        raise InputError(shard, f"sample {position} unreadable ({type(exc).__name__}: {exc})") from None


def random_particles(dataset: str | Path, experiment: str, k: int, seed: int = 0,
                     unreadable: list[str] | None = None) -> list[tuple[np.ndarray, dict]]:
    """Up to ``k`` distinct random particles of one experiment (reads only the samples it picks).

    With ``unreadable`` (a list), a sample that cannot be read (missing or corrupt shard) is skipped
    and its ``<shard>#<position>`` appended; without it, the InputError is raised.
    """
    root = Path(dataset)
    man = load_manifest(root)
    shards = [s for s in man["shards"] if s["experiment"] == experiment]
    if not shards:
        raise InputError(root / fmt.MANIFEST, f"unknown experiment id {experiment!r}")
    total = sum(s["n"] for s in shards)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(k, total), replace=False))
    bounds = np.cumsum([0] + [s["n"] for s in shards])
    out = []
    for p in picks:
        i = int(np.searchsorted(bounds, p, side="right") - 1)
        try:
            out.append(_read_member(root / shards[i]["path"], int(p - bounds[i])))
        except InputError:
            if unreadable is None:
                raise
            unreadable.append(f"{shards[i]['path']}#{int(p - bounds[i])}")
    return out


def montage(dataset: str | Path, out_png: str | Path, per_experiment: int = 8, max_experiments: int = 24,
            seed: int = 0) -> tuple[Path, list[str]]:
    """PNG grid: one row of random particles per experiment, labelled with id and pixel size.

    Returns (the PNG, the ``<shard>#<position>`` of particles that could not be read: their cells
    stay empty; a missing or corrupt shard never stops the montage).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryofm.utils.atomic import atomic_path

    exps = sorted(load_manifest(dataset)["experiments"])[:max_experiments]
    sides = load_split(dataset) if (Path(dataset) / fmt.SPLIT).is_file() else {}
    fig, axes = plt.subplots(len(exps), per_experiment, squeeze=False,
                             figsize=(1.3 * per_experiment + 1.2, 1.3 * len(exps) + 0.3))
    unreadable: list[str] = []
    for r, e in enumerate(exps):
        parts = random_particles(dataset, e, per_experiment, seed=seed + r, unreadable=unreadable)
        for c in range(per_experiment):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(parts):
                img, rec = parts[c]
                lo, hi = np.percentile(img, [1, 99])
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        px = parts[0][1].get("EffectiveImagePixelSize") if parts else None
        label = "\n".join([e, sides.get(e, ""), "" if schema.is_missing(px) else f"{px:.2f} Å/px"])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{Path(dataset).name}: random particles per experiment", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out_png, unreadable
