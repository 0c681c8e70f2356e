"""``cryofm ingest | merge | split | inspect``: thin entry points over :mod:`cryofm.data`.

Each takes the Hydra-composed config of ``configs/<command>.yaml`` (see :mod:`cryofm.cli`), checks
every option first (:mod:`cryofm.data.options`: a bad value is one line naming the key), and turns
OS errors into the one-line error naming the file. A failed ingest removes what it created under
``out=``, never what was there before.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from cryofm.data import options as opt
from cryofm.errors import InputError


def _jobs(cfg: DictConfig) -> list:
    from cryofm.data.ingest_files import Job

    root = _folder(opt.text(cfg, "root"), "root")
    stack = opt.existing_file(cfg, "stack", "particle stack")
    classes = opt.existing_file(cfg, "classes", "class table")
    table = opt.existing_file(cfg, "table", "experiment table")
    if table is not None:
        if cfg.get("input") or cfg.get("experiment"):
            raise InputError("table", "give table= or input=/experiment=, not both")
        return _table_jobs(table, root, classes)
    inputs, exps = opt.text_list(cfg, "input"), opt.text_list(cfg, "experiment")
    if not inputs:
        raise InputError("input", "required (input=<file.star|file.cs>, or table=<csv>)")
    if not exps:
        raise InputError("experiment", "required (experiment=<id>)")
    if len(inputs) != len(exps):
        raise InputError("experiment", f"{len(inputs)} input files but {len(exps)} experiment ids")
    if len(inputs) > 1 and (stack or classes):
        raise InputError("stack" if stack else "classes",
                         "applies to one input; use table= with a column per row")
    for e in exps:
        _check_id(e, "experiment")
    return [Job(e, i, root, None if stack is None else str(stack), None if classes is None else str(classes))
            for i, e in zip(inputs, exps, strict=True)]


def _folder(value: str | None, key: str) -> str | None:
    if value is None:
        return None
    if not Path(value).is_dir():
        problem = "is not a folder" if Path(value).exists() else "folder not found"
        raise InputError(value, f"{key}= {problem}")
    return value


def _check_id(exp: str, where: str) -> None:
    from cryofm.data.format import sample_key

    if not exp or sample_key(exp) != exp:
        raise InputError(where, f"bad experiment id {exp!r} (use letters, digits, '-', '_')")


def _table_jobs(path: Path, root: str | None, classes: Path | None) -> list:
    """Jobs from an experiment table: columns experiment, input[, root, classes, stack, invert]."""
    from cryofm.data.ingest_files import Job

    try:
        t = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a readable CSV table ({str(exc).splitlines()[0]})") from None
    for col in ("experiment", "input"):
        if col not in t.columns:
            raise InputError(path, f"experiment table has no {col!r} column (columns: "
                                   f"{', '.join(map(str, t.columns)) or 'none'})")
    if len(t) == 0:
        raise InputError(path, "experiment table has no rows")
    jobs = []
    for i, r in enumerate(t.to_dict(orient="records")):
        where = f"{path}: row {i + 1}"
        exp, inp = r["experiment"].strip(), r["input"].strip()
        if not inp:
            raise InputError(where, "empty input")
        _check_id(exp, where)
        row_root = _folder(r.get("root") or None, "root") or root
        inv = r.get("invert", "")
        invert = None if inv.strip() == "" else opt.parse_bool(inv, f"{where}: invert")
        jobs.append(Job(exp, inp, row_root, r.get("stack") or None,
                        r.get("classes") or (None if classes is None else str(classes)), invert))
    return jobs


def ingest_options(cfg: DictConfig) -> tuple:
    """(IngestOptions, workers, merge) from the config, each value checked."""
    from cryofm.data.ingest_files import IngestOptions

    dedup: dict[str, Any] = {}
    if cfg.get("dedup") is not None:
        if not isinstance(cfg.dedup, DictConfig):
            raise InputError("dedup", f"must be a group of settings (dedup.enabled=...), got {cfg.dedup!r}")
        dedup = OmegaConf.to_container(cfg.dedup, resolve=True)
        dedup["enabled"] = opt.boolean(cfg, "dedup.enabled") if "enabled" in dedup else False
        if dedup["enabled"]:
            dedup["fraction"] = opt.number(cfg, "dedup.fraction", lo=0.0, hi=10.0, open_lo=True)
            dedup["diameter_A"] = opt.number(cfg, "dedup.diameter_A", lo=0.0, open_lo=True, optional=True)
            dedup["micrograph_pixel_size"] = opt.number(cfg, "dedup.micrograph_pixel_size", lo=0.0,
                                                        open_lo=True, optional=True)
            dedup["higher_is_better"] = opt.boolean(cfg, "dedup.higher_is_better")
            dedup["score"] = opt.text(cfg, "dedup.score")
    opts = IngestOptions(box=opt.integer(cfg, "box", 8, 4096), dtype=opt.choice(cfg, "dtype", DTYPES),
                         norm=opt.choice(cfg, "norm", NORMS), invert=opt.boolean(cfg, "invert"),
                         shard_size=opt.integer(cfg, "shard_size", 1, 10**7), dedup=dedup,
                         overwrite=opt.boolean(cfg, "overwrite"), progress=opt.boolean(cfg, "progress"),
                         threads=0 if cfg.get("threads") is None else opt.integer(cfg, "threads", 0, 1024))
    return opts, opt.integer(cfg, "workers", 1, 1024), opt.boolean(cfg, "merge")


DTYPES = ("float16", "uint8")
NORMS = ("whole", "background")


def _os_error(exc: OSError, default: Path) -> InputError:
    """An OSError met while writing or reading, as the one-line error naming the file."""
    return InputError(exc.filename or default, exc.strerror or str(exc))


def ingest(cfg: DictConfig) -> int:
    """Ingest one or several experiments; print particles written per experiment."""
    from cryofm.data.ingest_files import ingest_many

    out = Path(str(opt.required(cfg, "out", "<dataset folder>")))
    opts, workers, merge = ingest_options(cfg)
    jobs = _jobs(cfg)
    facts = opt.existing_file(cfg, "facts", "facts table")
    try:
        with opt.Leftovers(out):
            opt.writable_dir(out)
            done = ingest_many(out, jobs, facts, opts, workers=workers, merge=merge,
                               config={"ingest": OmegaConf.to_container(cfg, resolve=True)})
    except OSError as exc:
        raise _os_error(exc, out) from None
    for exp, man in done.items():
        print(_ingest_line(exp, man))
    print(f"dataset: {out}" + ("" if merge else " (not merged: run `cryofm merge dataset=...`)"))
    return 0


def _ingest_line(exp: str, man: dict[str, Any]) -> str:
    """One experiment's summary: written, read, and everything counted on the way."""
    st = man.get("settings", {})
    extra = []
    if st.get("n_duplicates"):
        extra.append(f"{st['n_duplicates']} duplicate picks removed")
    if st.get("n_duplicate_rows"):
        extra.append(f"{st['n_duplicate_rows']} rows repeat an image another row names (kept)")
    if man.get("n_constant"):
        extra.append(f"{man['n_constant']} constant (blank) images dropped")
    if st.get("stack_substitutions"):
        extra.append(f"{len(st['stack_substitutions'])} missing stack(s) replaced by a same-named one "
                     f"({st['stack_substitutions'][0]})")
    if st.get("passthrough"):
        extra.append(f"joined {Path(st['passthrough']).name}")
    return (f"{exp}: {man['n']} particles in {len(man['shards'])} shard(s) "
            f"(from {st.get('n_input', man['n'])} in {Path(man['source']).name}"
            + "".join(f", {e}" for e in extra) + ")")


def merge(cfg: DictConfig) -> int:
    """Rebuild manifest.json from experiments/*.json (optionally verifying checksums)."""
    from cryofm.data.manifest import merge_manifests, verify

    root = opt.existing_dir(cfg, "dataset")
    check = opt.boolean(cfg, "verify")
    try:
        man = merge_manifests(root)
        print(f"{root / 'manifest.json'}: {man['n_particles']} particles, {man['n_experiments']} "
              f"experiments, {man['n_shards']} shards")
        if check:
            bad = verify(root)
            if bad:
                raise InputError(root / bad[0], f"checksum mismatch or missing ({len(bad)} shard(s) bad)")
            print("checksums: all shards match")
    except OSError as exc:
        raise _os_error(exc, root / "manifest.json") from None
    return 0


def split(cfg: DictConfig) -> int:
    """Write split.json and print the per-side summary."""
    from cryofm.data.split import format_summary, make_split

    root = opt.existing_dir(cfg, "dataset")
    seed = opt.integer(cfg, "seed", 0, 2**32 - 1)
    fr = opt.fractions(cfg, "fractions")
    group_key, stratify_key = opt.text(cfg, "group_key"), opt.text(cfg, "stratify_key")
    heldout = opt.text_list(cfg, "heldout")
    train = opt.text_list(cfg, "train")
    try:
        result = make_split(root, seed=seed, fractions=fr, group_key=group_key,
                            stratify_key=stratify_key, heldout=heldout, train=train)
    except OSError as exc:
        raise _os_error(exc, root / "split.json") from None
    print(format_summary(result))
    print(f"split: {root / 'split.json'}")
    return 0


def inspect(cfg: DictConfig) -> int:
    """Print counts and coverage; write the montage PNG."""
    from cryofm.data.inspect import format_summary, montage, summary
    from cryofm.data.manifest import verify

    root = opt.existing_dir(cfg, "dataset")
    per_exp = opt.integer(cfg, "per_experiment", 1, 64)
    max_exp = opt.integer(cfg, "max_experiments", 1, 1000)
    seed = opt.integer(cfg, "seed", 0, 2**32 - 1)
    check = opt.boolean(cfg, "verify")
    png = _montage_path(cfg, root)
    s = summary(root)
    print(format_summary(s))
    if not check:  # verify= names the bad shards itself
        for line in s.get("warnings", []):
            print(f"warning: {line}", file=sys.stderr)
    if check:
        bad = verify(root)
        print("checksums: " + ("all shards match" if not bad else f"{len(bad)} bad: {bad[:5]}"))
        if bad:
            raise InputError(root / bad[0], "checksum mismatch or missing shard")
    if png is not None:
        try:
            with opt.Leftovers(png.parent):
                opt.writable_file(png)
                _, unreadable = montage(root, png, per_experiment=per_exp, max_experiments=max_exp, seed=seed)
        except OSError as exc:
            raise _os_error(exc, png) from None
        print(f"montage: {png}")
        if unreadable:
            shown = ", ".join(unreadable[:3]) + (" ..." if len(unreadable) > 3 else "")
            print(f"warning: {len(unreadable)} particle(s) of the montage could not be read from their "
                  f"shards ({shown}); run `cryofm inspect dataset={root} verify=true`", file=sys.stderr)
    return 0


def _montage_path(cfg: DictConfig, root: Path) -> Path | None:
    """``montage=``: a PNG path, true / null for ``<dataset>/inspect_montage.png``, false for none."""
    v = cfg.get("montage")
    if v is False or (isinstance(v, str) and v.strip().lower() in ("false", "no", "off")):
        return None
    if v is None or v is True or (isinstance(v, str) and v.strip().lower() in ("true", "yes", "on")):
        return root / "inspect_montage.png"
    p = Path(opt.text(cfg, "montage"))
    if p.is_dir():
        raise InputError(p, "montage= is a folder, not a PNG file name")
    if p.suffix.lower() != ".png":  # the montage is written as PNG whatever the name says
        raise InputError("montage", f"{str(p)!r} must be a .png file name")
    return p
