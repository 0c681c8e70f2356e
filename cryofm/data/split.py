"""Experiment-level train / val / held-out splits (never by particle).

Experiments are grouped by an optional cluster key (e.g. ``SequenceCluster`` or ``SampleName``) so
that no group straddles two sides, optionally stratified by another key (e.g. ``ProteinClass``), and
assigned deterministically from a seed. The result is ``<dataset>/split.json`` with the assignment
and a summary of experiments and particle counts per side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryofm.data import format as fmt
from cryofm.data.dataset import load_manifest
from cryofm.errors import InputError
from cryofm.utils.atomic import write_json


def _targets(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Integer group counts per side summing to ``n`` (largest remainder; a side with a positive
    fraction gets at least one when there are enough groups)."""
    f = np.asarray(fractions, dtype=float)
    raw = f * n
    t = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - t), kind="stable")[: n - t.sum()]:
        t[i] += 1
    need = [i for i in range(len(f)) if f[i] > 0 and t[i] == 0]
    for i in need:
        donor = int(np.argmax(t))
        if t[donor] > 1:
            t[donor] -= 1
            t[i] += 1
    return t


def assign(groups: dict[str, list[str]], fractions: Sequence[float], seed: int,
           strata: dict[str, str] | None = None) -> dict[str, str]:
    """``{experiment: side}`` assigning whole groups to sides.

    Args:
        groups: group key → its experiments.
        fractions: (train, val, heldout) fractions of groups (normalised to sum 1).
        seed: RNG seed; the same inputs and seed give the same split.
        strata: group key → stratum; each stratum is split in the given fractions on its own.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {list(fractions)}")
    f = f / f.sum()
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for g in sorted(groups):
        by_stratum[(strata or {}).get(g, "")].append(g)
    out: dict[str, str] = {}
    for stratum in sorted(by_stratum):
        keys = list(by_stratum[stratum])
        rng.shuffle(keys)
        counts = _targets(len(keys), f)
        side_of = np.repeat(np.arange(3), counts)
        for g, s in zip(keys, side_of, strict=True):
            for e in groups[g]:
                out[e] = fmt.SPLITS[int(s)]
    return out


def _key_value(facts: dict[str, Any], key: str | None, experiment: str) -> str:
    if not key:
        return experiment
    v = facts.get(key)
    return f"__{experiment}" if v is None or v == "" else str(v)


def _few(names: Sequence[str], k: int = 12) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "") or "none"


def available_keys(exps: dict[str, dict[str, Any]]) -> list[str]:
    """Fact names that at least one experiment has a value for (the keys a split can group by)."""
    return sorted({k for v in exps.values() for k, x in (v.get("facts") or {}).items()
                   if x is not None and x != ""})


def check_key(exps: dict[str, dict[str, Any]], key_name: str, key: str | None) -> None:
    """InputError naming ``key_name`` when ``key`` is given but no experiment has that fact.

    A misspelt ``group_key`` would otherwise make every experiment its own group: no grouping at all,
    and related experiments leaking across train and held-out.
    """
    if not key:
        return
    have = available_keys(exps)
    if key not in have:
        from cryofm import schema

        known = "a schema field, but" if key in schema.BY_NAME else "not a schema field, and"
        raise InputError(key_name, f"{key!r} is {known} no experiment has that fact (available: "
                                   f"{_few(have)}; add it with ingest facts=...)")


def make_split(dataset: str | Path, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1),
               group_key: str | None = None, stratify_key: str | None = None,
               heldout: Sequence[str] = (), write: bool = True, train: Sequence[str] = ()) -> dict[str, Any]:
    """Split the experiments of ``dataset`` and write ``split.json``.

    Args:
        dataset: dataset folder with ``manifest.json``.
        seed: RNG seed.
        fractions: (train, val, heldout) fractions of groups.
        group_key: experiment fact (e.g. ``SequenceCluster``) whose equal values stay on one side;
            experiments without it are their own group. InputError when no experiment has it.
        stratify_key: experiment fact (e.g. ``ProteinClass``) to stratify by.
        heldout: experiments forced into held-out (with their whole group); the rest are split.
        train: experiments forced into training (with their whole group), e.g. background boxes that
            pretraining should see and no evaluation should score; the rest are split as without them.
        write: write ``<dataset>/split.json`` (atomically).

    Returns:
        ``{"assignment": {exp: side}, "summary": {side: {"experiments": [...], "particles": n}},
        "seed", "fractions", "group_key", "stratify_key"}``.
    """
    manifest = load_manifest(dataset)
    exps = manifest["experiments"]
    for key_name, named in (("heldout", heldout), ("train", train)):
        unknown = [e for e in named if e not in exps]
        if unknown:
            raise InputError(key_name, f"unknown experiment id(s) {unknown} (the dataset has "
                                       f"{_few(sorted(exps))})")
    for key_name, key in (("group_key", group_key), ("stratify_key", stratify_key)):
        check_key(exps, key_name, key)
    groups: dict[str, list[str]] = defaultdict(list)
    strata: dict[str, str] = {}
    for e in sorted(exps):
        facts = exps[e].get("facts", {})
        g = _key_value(facts, group_key, e)
        groups[g].append(e)
        if stratify_key:
            strata.setdefault(g, str(facts.get(stratify_key)))
    forced = {g for g, members in groups.items() if set(members) & set(heldout)}
    to_train = {g for g, members in groups.items() if set(members) & set(train)}
    both = sorted(e for g in forced & to_train for e in groups[g])
    if both:
        raise InputError("train", f"experiment group(s) of {both} forced into both train and heldout")
    rest = {g: m for g, m in groups.items() if g not in forced | to_train}
    f = list(fractions)
    if forced:  # the forced groups are the held-out side; split the rest into train / val
        f = [f[0], f[1], 0.0] if f[0] + f[1] > 0 else [1.0, 0.0, 0.0]
    assignment = assign(rest, f, seed, strata if stratify_key else None) if rest else {}
    for g in forced:
        for e in groups[g]:
            assignment[e] = "heldout"
    for g in to_train:
        for e in groups[g]:
            assignment[e] = "train"
    summary = {side: {"experiments": sorted(e for e, s in assignment.items() if s == side),
                      "particles": int(sum(exps[e]["n"] for e, s in assignment.items() if s == side))}
               for side in fmt.SPLITS}
    if not summary["train"]["experiments"]:  # nothing to pretrain on: no later command could use it
        key = "heldout" if not rest else "fractions"
        raise InputError(key, f"leaves no training experiment (fractions {list(fractions)}, "
                              f"{len(heldout)} held out of {len(assignment)} experiments)")
    result = {"seed": int(seed), "fractions": [float(x) for x in fractions], "group_key": group_key,
              "stratify_key": stratify_key, "heldout": list(heldout),
              "train": list(train),
              "assignment": dict(sorted(assignment.items())), "summary": summary}
    if write:
        write_json(Path(dataset) / fmt.SPLIT, result)
    return result


def format_summary(result: dict[str, Any]) -> str:
    """A few lines: experiments and particles per side."""
    lines = []
    for side in fmt.SPLITS:
        s = result["summary"][side]
        names = ", ".join(s["experiments"][:8]) + (" ..." if len(s["experiments"]) > 8 else "")
        lines.append(f"{side:<8} {len(s['experiments']):>4} experiments "
                     f"{s['particles']:>10} particles  {names}")
    return "\n".join(lines)
