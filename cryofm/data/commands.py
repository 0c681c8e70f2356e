"""``cryofm ingest | merge | split | inspect``: thin entry points over :mod:`cryofm.data`.

Each takes the Hydra-composed config of ``configs/<command>.yaml`` (see :mod:`cryofm.cli`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from cryofm.errors import InputError


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    return [str(value)]


def _required(cfg: DictConfig, key: str) -> Any:
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise InputError(None, f"{key}=... is required")
    return cfg[key]


def _jobs(cfg: DictConfig):
    from cryofm.data.ingest_files import Job

    if cfg.get("table"):
        path = Path(cfg.table)
        if not path.is_file():
            raise InputError(path, "experiment table not found")
        t = pd.read_csv(path, dtype=str, keep_default_na=False)
        for col in ("experiment", "input"):
            if col not in t.columns:
                raise InputError(path, f"experiment table has no {col!r} column")
        return [Job(r["experiment"], r["input"], r.get("root") or cfg.get("root"), cfg.get("stack"),
                    r.get("classes") or cfg.get("classes")) for r in t.to_dict(orient="records")]
    inputs, exps = _as_list(cfg.get("input")), _as_list(cfg.get("experiment"))
    if not inputs:
        raise InputError(None, "input=<file.star|file.cs> (or table=<csv>) is required")
    if not exps:
        raise InputError(None, "experiment=<id> is required")
    if len(inputs) != len(exps):
        raise InputError(None, f"{len(inputs)} input files but {len(exps)} experiment ids")
    if len(inputs) > 1 and (cfg.get("stack") or cfg.get("classes")):
        raise InputError(None, "stack= and classes= apply to one input; use table= with a column per row")
    return [Job(e, i, cfg.get("root"), cfg.get("stack"), cfg.get("classes"))
            for i, e in zip(inputs, exps, strict=True)]


def ingest(cfg: DictConfig) -> int:
    """Ingest one or several experiments; print particles written per experiment."""
    from cryofm.data.ingest_files import IngestOptions, ingest_many

    out = Path(_required(cfg, "out"))
    jobs = _jobs(cfg)
    opts = IngestOptions(box=int(cfg.box), dtype=str(cfg.dtype), norm=str(cfg.norm), invert=bool(cfg.invert),
                         shard_size=int(cfg.shard_size),
                         dedup=OmegaConf.to_container(cfg.dedup, resolve=True) if cfg.get("dedup") else {},
                         overwrite=bool(cfg.overwrite), progress=bool(cfg.progress),
                         threads=int(cfg.get("threads") or 0))
    done = ingest_many(out, jobs, cfg.get("facts"), opts, workers=int(cfg.workers), merge=bool(cfg.merge),
                       config={"ingest": OmegaConf.to_container(cfg, resolve=True)})
    for exp, man in done.items():
        st = man.get("settings", {})
        dup = f", {st['n_duplicates']} duplicate picks removed" if st.get("n_duplicates") else ""
        print(f"{exp}: {man['n']} particles in {len(man['shards'])} shard(s) "
              f"(from {st.get('n_input', man['n'])} in {Path(man['source']).name}{dup})")
    print(f"dataset: {out}" + ("" if cfg.merge else " (not merged: run `cryofm merge dataset=...`)"))
    return 0


def merge(cfg: DictConfig) -> int:
    """Rebuild manifest.json from experiments/*.json (optionally verifying checksums)."""
    from cryofm.data.manifest import merge_manifests, verify

    root = Path(_required(cfg, "dataset"))
    man = merge_manifests(root)
    print(f"{root / 'manifest.json'}: {man['n_particles']} particles, {man['n_experiments']} experiments, "
          f"{man['n_shards']} shards")
    if cfg.get("verify"):
        bad = verify(root)
        if bad:
            raise InputError(root / bad[0], f"checksum mismatch or missing ({len(bad)} shard(s) bad)")
        print("checksums: all shards match")
    return 0


def split(cfg: DictConfig) -> int:
    """Write split.json and print the per-side summary."""
    from cryofm.data.split import format_summary, make_split

    root = Path(_required(cfg, "dataset"))
    fr = [float(x) for x in cfg.fractions]
    result = make_split(root, seed=int(cfg.seed), fractions=fr, group_key=cfg.get("group_key"),
                        stratify_key=cfg.get("stratify_key"), heldout=_as_list(cfg.get("heldout")))
    print(format_summary(result))
    print(f"split: {root / 'split.json'}")
    return 0


def inspect(cfg: DictConfig) -> int:
    """Print counts and coverage; write the montage PNG."""
    from cryofm.data.inspect import format_summary, montage, summary
    from cryofm.data.manifest import verify

    root = Path(_required(cfg, "dataset"))
    print(format_summary(summary(root)))
    if cfg.get("verify"):
        bad = verify(root)
        print("checksums: " + ("all shards match" if not bad else f"{len(bad)} bad: {bad[:5]}"))
        if bad:
            raise InputError(root / bad[0], "checksum mismatch or missing shard")
    if cfg.get("montage") is not False:
        png = montage(root, cfg.get("montage") or root / "inspect_montage.png",
                      per_experiment=int(cfg.per_experiment), max_experiments=int(cfg.max_experiments),
                      seed=int(cfg.seed))
        print(f"montage: {png}")
    return 0
