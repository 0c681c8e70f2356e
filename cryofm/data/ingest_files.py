"""Ingest RELION / cryoSPARC particle files: one experiment per file, many in parallel.

:func:`ingest_file` reads the metadata, checks every stack, optionally removes duplicate picks, then
streams the images through :func:`cryofm.data.ingest.ingest_arrays`. :func:`ingest_many` runs one
experiment per worker process and merges the manifest once at the end (the same per-experiment
step runs as one SLURM array task with ``merge=false``, followed by ``cryofm merge``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from cryofm.data.dedup import remove_duplicates
from cryofm.data.fingerprint import input_digests
from cryofm.data.ingest import DEFAULT_SHARD_SIZE, ingest_arrays
from cryofm.data.manifest import merge_manifests
from cryofm.data.sources import check_stacks, table_items
from cryofm.errors import InputError
from cryofm.io.classes import join_classes
from cryofm.io.facts import facts_for
from cryofm.io.particles import read_particles


@dataclass
class IngestOptions:
    """Settings shared by every experiment of one ingest (mirrors ``configs/ingest/ingest.yaml``)."""

    box: int = 224
    dtype: str = "float16"
    norm: str = "whole"
    invert: bool = False
    shard_size: int = DEFAULT_SHARD_SIZE
    dedup: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    progress: bool = True
    threads: int = 0  # FFT threads per experiment; 0: CPU cores / worker processes


@dataclass
class Job:
    """One experiment to ingest."""

    experiment: str
    input: str
    root: str | None = None
    stack: str | None = None
    classes: str | None = None  # RELION model.star / cryoSPARC class averages .cs: ClassResolution
    invert: bool | None = None  # this experiment's contrast flip (None: IngestOptions.invert)


def prepare(job: Job, facts: dict[str, Any], opts: IngestOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read and check one experiment's metadata and stacks (nothing is written).

    Returns the particle table (after duplicate removal) and the settings recorded in its manifest
    (``n_input``: rows in the metadata, ``n_duplicates``: picks removed, ``n_duplicate_rows``: rows
    naming an image another row names too, ``stack_substitutions``: same-named stacks used for
    missing ones, ``passthrough``: the cryoSPARC passthrough file joined), plus ``_inputs``, the
    content digests of every input file (:mod:`cryofm.data.fingerprint`).
    """
    path = Path(job.input)
    df = read_particles(path, root=job.root, stack=job.stack)
    notes = list(df.attrs.get("stack_notes", []))
    passthrough = df.attrs.get("passthrough")
    n_input = len(df)
    # the same image named by two rows (index@stack): kept, counted and reported
    n_dup_rows = int(df.duplicated(["_stack", "_index"]).sum())
    # uid from the row in the metadata file: stable whatever duplicate removal drops
    df["uid"] = [f"{job.experiment}/{path.stem}/{i}" for i in range(n_input)]
    if job.classes:
        df = join_classes(df, job.classes)
    n_dup = 0
    dd = dict(opts.dedup or {})
    if dd.get("enabled"):
        diameter = dd.get("diameter_A") or facts.get("MaxDiameter")
        if not diameter:
            raise InputError(path, "duplicate removal needs dedup.diameter_A or a MaxDiameter fact")
        try:
            df, n_dup = remove_duplicates(df, float(diameter), fraction=float(dd.get("fraction", 0.5)),
                                          score=dd.get("score"),
                                          higher_is_better=bool(dd.get("higher_is_better", True)),
                                          micrograph_pixel_size=dd.get("micrograph_pixel_size"))
        except (KeyError, ValueError) as exc:
            raise InputError(path, f"duplicate removal: {exc}") from None
    check_stacks(df, path)
    meta = [path] + ([passthrough] if passthrough else []) + ([job.classes] if job.classes else [])
    config = {"input": str(path.resolve()), "root": job.root, "stack": job.stack, "classes": job.classes,
              "dedup": dd,
              "n_input": n_input, "n_duplicates": n_dup}
    if n_dup_rows:
        config["n_duplicate_rows"] = n_dup_rows
    if notes:
        config["stack_substitutions"] = notes
    if passthrough:
        config["passthrough"] = str(Path(passthrough).resolve())
    config["_inputs"] = input_digests(meta, df["_stack"].unique())
    return df, config


def write(out: str | Path, job: Job, df: pd.DataFrame, config: dict[str, Any], facts: dict[str, Any],
          opts: IngestOptions, merge: bool = True) -> dict[str, Any]:
    """Stream a prepared experiment into shards (see :func:`cryofm.data.ingest.ingest_arrays`)."""
    config = dict(config)
    inputs = config.pop("_inputs", None)
    invert = opts.invert if job.invert is None else bool(job.invert)
    return ingest_arrays(out, job.experiment, partial(table_items, df), n=len(df), facts=facts,
                         box=opts.box, dtype=opts.dtype, norm=opts.norm, shard_size=opts.shard_size,
                         source=str(job.input), invert=invert, config=config, merge=merge,
                         overwrite=opts.overwrite, progress=opts.progress, threads=opts.threads or 1,
                         inputs=inputs)


def ingest_file(out: str | Path, job: Job, facts: dict[str, Any], opts: IngestOptions,
                merge: bool = True) -> dict[str, Any]:
    """Ingest one experiment's ``.star`` / ``.cs`` file into ``out``; returns its manifest."""
    df, config = prepare(job, facts, opts)
    return write(out, job, df, config, facts, opts, merge=merge)


def _warm_up() -> None:
    """Import what writing needs (torch, SciPy's FFT) in a fresh worker process."""
    import scipy.fft  # noqa: F401
    import torch  # noqa: F401


def _worker(out: str, job: Job, df: pd.DataFrame, config: dict[str, Any], facts: dict[str, Any],
            opts: IngestOptions) -> tuple[str, dict[str, Any]]:
    return job.experiment, write(out, job, df, config, facts, opts, merge=False)


def ingest_many(out: str | Path, jobs: list[Job], facts_table: str | Path | None, opts: IngestOptions,
                workers: int = 1, merge: bool = True,
                config: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Ingest several experiments, ``workers`` at a time (one experiment per process).

    Every experiment's facts, metadata and stack headers are checked first, so bad input anywhere
    fails before any shard is written. Returns
    ``{experiment: its manifest}`` (``n`` particles written, ``settings.n_input`` rows read,
    ``settings.n_duplicates`` removed); the manifest is merged once when all succeeded, recording
    ``config`` (the command's configuration) when given.
    """
    names = [j.experiment for j in jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError("experiment", f"experiment id(s) given twice: {dup}")
    facts = {j.experiment: facts_for(facts_table, j.experiment) for j in jobs}
    done: dict[str, dict[str, Any]] = {}
    n_proc = max(1, min(workers, len(jobs)))
    if not opts.threads:
        opts = dataclasses.replace(opts, threads=max(1, (os.cpu_count() or 1) // n_proc))
    if n_proc == 1:
        prepared = {j.experiment: prepare(j, facts[j.experiment], opts) for j in jobs}
        for j in jobs:
            df, settings = prepared[j.experiment]
            done[j.experiment] = write(out, j, df, settings, facts[j.experiment], opts, merge=False)
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_proc, mp_context=ctx) as pool:
            for _ in range(n_proc):  # the workers import while the metadata is read and checked here
                pool.submit(_warm_up)
            prepared = {j.experiment: prepare(j, facts[j.experiment], opts) for j in jobs}
            futures = [pool.submit(_worker, str(out), j, *prepared[j.experiment], facts[j.experiment], opts)
                       for j in jobs]
            for fut in futures:
                exp, man = fut.result()  # re-raises a worker's InputError here
                done[exp] = man
    if merge:
        merge_manifests(out, config)
    return done
