"""Particle images + annotation records → one experiment's shards and per-experiment manifest.

:func:`ingest_arrays` is the one writer every source goes through (RELION / cryoSPARC readers via
:mod:`cryofm.data.sources`, and the simulator). It streams: images are processed in small batches
(per-particle normalisation after a Fourier resize to the configured box), so memory does not grow
with the number of particles. Writing is atomic and resumable (:mod:`cryofm.data.shards`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft as sfft
from tqdm import tqdm

from cryofm import schema
from cryofm.data import format as fmt
from cryofm.data import shards as sh
from cryofm.data.fingerprint import changed_inputs
from cryofm.data.normalize import fourier_resize, normalize
from cryofm.errors import InputError
from cryofm.utils.atomic import write_json

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 2048
BATCH = 16  # images processed together (16 x 256² float32 = 4 MiB: stays in cache; 64 was 25% slower)

Item = tuple[np.ndarray, dict[str, Any]]
Items = Iterable[Item] | Callable[[int], Iterable[Item]]


def fingerprint(config: dict[str, Any]) -> str:
    """Stable hash of the settings that determine an experiment's shards."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _new_stats() -> dict[str, Any]:
    return {"sum": 0.0, "sumsq": 0.0, "count": 0, "coverage": {f.name: 0 for f in schema.FIELDS}}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Use ``n`` threads for the FFTs (SciPy) and the float16 casts (torch); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with sfft.set_workers(n):
            yield
    finally:
        torch.set_num_threads(before)


def _iter_items(items: Items, start: int) -> Iterator[Item]:
    """Items from ``start`` on: a callable is asked to start there, an iterable is skipped ahead."""
    if callable(items):
        yield from items(start)
        return
    it = iter(items)
    for _ in range(start):
        next(it, None)
    yield from it


class _Records:
    """JSON-ready schema records of one experiment (missing values as ``None``).

    The experiment-level part (every field missing, then the facts, the experiment id, the stored
    box, the inversion flag) is built once; each particle's record is a copy with its own fields
    filled in. A particle value that is missing never hides a fact; extra non-schema keys are kept.
    """

    def __init__(self, experiment: str, facts: dict[str, Any], source: str, box: int, invert: bool):
        base = schema.empty_record()
        base.update(facts)
        base.update(experiment=experiment, EffectiveImageSize=box, ImageInverted=bool(invert))
        self.base = schema.to_json_record(base)
        self.experiment, self.stem, self.box = experiment, Path(source).stem or "items", box
        self.invert = bool(invert)

    def __call__(self, raw: dict[str, Any], index: int, image_size: int, scale: float,
                 offset: float) -> dict[str, Any]:
        rec = self.base.copy()
        for k, v in raw.items():
            if k.startswith("_"):
                continue
            if k not in schema.BY_NAME:
                rec[k] = None if schema.is_missing(v) else v
            elif not schema.is_missing(v := schema.coerce(k, v)):
                rec[k] = v
        if raw.get("ImageInverted"):  # the source flipped this image already (cryoSPARC blob/sign -1)
            rec["ImageInverted"] = not self.invert
        if rec["uid"] is None:
            rec["uid"] = f"{self.experiment}/{self.stem}/{index}"
        rec["ImageSize"] = image_size
        psize = rec["ImagePixelSize"]
        rec["EffectiveImagePixelSize"] = (None if psize is None
                                          else schema.effective_pixel_size(psize, image_size, self.box))
        rec["ImageScale"] = None if math.isnan(scale) else scale
        rec["ImageOffset"] = None if math.isnan(offset) else offset
        return rec


def _process(batch: list[Item], box: int, norm: str, invert: bool,
             source: str) -> tuple[np.ndarray, np.ndarray]:
    """Stack, check, resize and normalise one batch of raw images.

    Returns (float32 [B', box, box] of the non-constant images, bool [B] which images were kept).
    A constant image (every pixel equal: an empty or padded slot of a stack) carries no particle and
    would normalise to zeros; it is dropped and counted by the caller.
    """
    shape = batch[0][0].shape
    for img, raw in batch:
        if img.ndim != 2 or img.shape[0] != img.shape[1] or img.shape != shape:
            where = raw.get("_path", source)
            raise InputError(where, f"particle {raw.get('ImageName', '?')}: image shape {img.shape} "
                                    f"is not square or differs from {shape}")
    x = np.stack([np.asarray(img, dtype=np.float32) for img, _ in batch])
    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        raw = batch[int(np.argmax(bad))][1]
        raise InputError(raw.get("_path", source),
                         f"particle {raw.get('ImageName', '?')}: NaN or Inf pixels")
    keep = x.max(axis=(1, 2)) > x.min(axis=(1, 2))
    if not keep.all():
        x = x[keep]
    if len(x) and x.shape[-1] != box:
        x = fourier_resize(x, box)
    if invert:
        x = -x
    return (normalize(x, norm) if len(x) else x), keep


def ingest_arrays(out: str | Path, experiment: str, items: Items, *, n: int | None = None,
                  facts: dict[str, Any] | None = None, box: int = 224, dtype: str = "float16",
                  norm: str = "whole", shard_size: int = DEFAULT_SHARD_SIZE, source: str = "arrays",
                  invert: bool = False, config: dict[str, Any] | None = None, merge: bool = True,
                  overwrite: bool = False, progress: bool = True, threads: int = 1,
                  inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """Write one experiment's particles as WebDataset shards under ``out``.

    Args:
        out: dataset folder (created).
        experiment: experiment id (letters, digits, ``-`` and ``_``).
        items: ``(image [H, W] raw float, record dict)`` pairs, or a callable ``start -> iterable``
            that yields them from index ``start`` on (lets a resumed ingest skip reading images).
            Record keys are schema field names (extra keys are kept in the JSON; keys starting with
            ``_`` are private: ``_path`` names the file used in error messages).
        n: number of items, when known (progress bar and a count check).
        facts: experiment-level fields (schema names) copied into every record.
        box: stored image edge (px); images are Fourier-resized to it and ``EffectiveImagePixelSize``
            (Å/px) is recorded.
        dtype: ``float16`` or ``uint8`` (with ``ImageScale`` / ``ImageOffset`` per particle).
        norm: per-particle normalisation, ``whole`` or ``background``.
        shard_size: samples per shard.
        source: what the items came from (recorded; names the file in error messages).
        invert: flip contrast (recorded as ``ImageInverted``).
        config: extra settings recorded in the manifest and folded into the resume fingerprint.
        merge: rebuild ``manifest.json`` from every ``experiments/*.json`` when done.
        overwrite: redo an experiment already ingested with different settings.
        progress: show a tqdm bar.
        threads: threads for the resize and the float16 cast (not part of the fingerprint: the output
            is the same).
        inputs: ``{file: content digest}`` of the files the items come from
            (:func:`cryofm.data.fingerprint.input_digests`), folded into the fingerprint: a file
            changed since an interrupted run makes the resume start over (never mixing old and new
            particles), and one changed since a finished run is an error naming it.

    Constant images (every pixel equal) are dropped and counted (``n_constant``, the first names in
    ``constant``); ``n`` counts the items read, the manifest's ``n`` the particles written.

    Returns:
        The per-experiment manifest (also written to ``experiments/<experiment>.json``).
    """
    if not experiment or fmt.sample_key(experiment) != experiment:
        raise InputError(source, f"bad experiment id {experiment!r} (use letters, digits, '-', '_')")
    if dtype not in ("float16", "uint8"):
        raise ValueError(f"dtype must be float16 or uint8, got {dtype!r}")
    root = Path(out)
    settings = {"box": int(box), "dtype": dtype, "norm": norm, "shard_size": int(shard_size),
                "invert": bool(invert), "source": str(source), "n": n, **(config or {})}
    inputs = dict(inputs or {})
    # the input digests join the hash only when given, so array ingests keep their fingerprints
    fp = fingerprint({"settings": settings, "facts": facts or {}, **({"inputs": inputs} if inputs else {})})
    done_path = sh.experiment_path(root, experiment)
    if done_path.is_file():
        try:
            prev = json.loads(done_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(done_path, f"not valid JSON ({exc.msg}); pass overwrite=true to redo "
                                        f"experiment {experiment!r}") from None
        if prev.get("fingerprint") == fp:
            if merge:
                from cryofm.data.manifest import merge_manifests
                merge_manifests(root)
            return prev
        if not overwrite:
            changed = changed_inputs(prev.get("inputs"), inputs)
            if changed:
                raise InputError(changed[0], f"changed since experiment {experiment!r} was ingested "
                                             f"({len(changed)} input file(s) differ): its shards would "
                                             "be stale (pass overwrite=true to redo it)")
            raise InputError(done_path, f"experiment {experiment!r} was already ingested with other "
                                        "settings (pass overwrite=true to redo it)")
        done_path.unlink()
        sh.clear_experiment(root, experiment)

    facts = {k: schema.coerce(k, v) for k, v in (facts or {}).items() if k in schema.BY_NAME}
    state = sh.load_progress(root, experiment, fp)
    if state is None and (stale := sh.read_progress(root, experiment)) is not None:
        changed = changed_inputs(stale.get("inputs"), inputs)
        log.warning("%s: %s since the interrupted ingest of %r: starting over (its %d shard(s) are "
                    "not reused)", changed[0] if changed else done_path.parent,
                    "input changed" if changed else "settings changed", experiment,
                    len(stale.get("shards", [])))
    writer = make_writer(root, experiment, shard_size, fp, state)
    writer.inputs = inputs
    stats = copy.deepcopy(writer.stats) if state else _new_stats()
    start = int(stats.get("n_read", writer.n_done))
    try:
        with _threads(max(1, int(threads))):
            n_read = _write_all(writer, _iter_items(items, start), start, stats, experiment, facts, source,
                                box, dtype, norm, invert, n, progress)
    except InputError:
        writer.abort()
        sh.clear_experiment(root, experiment)  # bad input: leave nothing behind
        raise
    except BaseException:
        writer.abort()  # interrupted: finished shards and the progress file stay for a resume
        raise
    total = writer.n_done
    if n is not None and n_read != n:
        sh.clear_experiment(root, experiment)
        raise InputError(source, f"expected {n} particles, the input gave {n_read}")
    if total == 0:
        sh.clear_experiment(root, experiment)
        raise InputError(source, "no particles" if not stats["n_constant"] else
                         f"no particles: all {stats['n_constant']} images are constant (blank)")
    exp_manifest = {
        "experiment": experiment, "n": total, "fingerprint": fp, "schema_version": schema.SCHEMA_VERSION,
        "source": str(source), "settings": settings, "facts": schema.to_json_record(facts)
        if facts else {}, "shards": writer.shards,
        "pixel_stats": {"sum": stats["sum"], "sumsq": stats["sumsq"], "count": stats["count"]},
        "coverage": stats["coverage"],
        "n_read": n_read, "n_constant": stats["n_constant"], "constant": stats["constant"],
        "inputs": inputs or {},
    }
    exp_manifest["facts"] = {k: v for k, v in exp_manifest["facts"].items()
                             if k in facts and v is not None}
    write_json(done_path, exp_manifest)
    sh.progress_path(root, experiment).unlink(missing_ok=True)
    if merge:
        from cryofm.data.manifest import merge_manifests
        merge_manifests(root)
    return exp_manifest


def make_writer(root: Path, experiment: str, shard_size: int, fp: str,
                state: dict[str, Any] | None) -> sh.ShardWriter:
    """The shard writer (a seam tests patch to simulate a crash after some shards)."""
    return sh.ShardWriter(root, experiment, shard_size, fp, state)


MAX_LISTED = 20  # constant images named in the manifest (all are counted)


def _write_all(writer: sh.ShardWriter, items: Iterator[Item], start: int, stats: dict[str, Any],
               experiment: str, facts: dict[str, Any], source: str, box: int, dtype: str, norm: str,
               invert: bool, n: int | None, progress: bool) -> int:
    """Stream ``items`` (input positions ``start..``) into ``writer``; returns the input count read.

    ``stats`` carries, besides the pixel sums and coverage, ``n_read`` (input items consumed, the
    resume point: dropped constant images are consumed but not written) and ``n_constant`` /
    ``constant`` (how many were dropped, and the first :data:`MAX_LISTED` image names).
    """
    index = start
    seen: set[str] = set()
    bar = tqdm(total=n, initial=start, desc=f"ingest {experiment}", unit="ptcl", disable=not progress,
               leave=False)
    batch: list[Item] = []
    records = _Records(experiment, facts, source, box, invert)
    stats.setdefault("n_constant", 0)
    stats.setdefault("constant", [])

    def flush() -> None:
        nonlocal index
        images, keep = _process(batch, box, norm, invert, source)
        s1 = images.sum(axis=(1, 2))  # per image in float32 (values ~1), summed up in float64
        s2 = np.einsum("ijk,ijk->i", images, images)
        encoded = iter(fmt.encode_images(images, dtype) if len(images) else [])
        cov = stats["coverage"]
        j = 0
        for kept, (raw_img, raw) in zip(keep, batch, strict=True):
            if not kept:
                stats["n_constant"] += 1
                if len(stats["constant"]) < MAX_LISTED:
                    stats["constant"].append(str(raw.get("ImageName", index)))
                index += 1
                stats["n_read"] = index
                continue
            data, scale, offset = next(encoded)
            rec = records(raw, index, raw_img.shape[-1], scale, offset)
            uid = rec["uid"]
            if uid in seen:
                raise InputError(raw.get("_path", source), f"duplicate particle uid {uid!r}")
            seen.add(uid)
            sample = fmt.pack_sample(uid, data, rec)
            stats["sum"] += float(s1[j])
            stats["sumsq"] += float(s2[j])
            stats["count"] += int(images[j].size)
            for k in cov:
                if rec[k] is not None:
                    cov[k] += 1
            index += 1
            j += 1
            stats["n_read"] = index
            writer.add(sample, stats)
        bar.update(len(batch))
        batch.clear()

    for item in items:
        batch.append(item)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    writer.finish(stats)
    bar.close()
    return index
