"""Many (map, model) pairs: a table in, one folder per map, then the split and the dataset manifest.

The table is CSV or TSV with a header; columns ``map`` and ``model`` (paths, relative to the table's
folder; none may lead outside it, or outside ``root=`` when given) and optional ``id`` (or
``name``), ``resolution`` (Å, reported) and ``contour``. After the maps, :func:`finalize` scans
``<out>/*/<id>.json`` (so separate runs into one folder add up) and writes::

    <out>/split.json          map id -> train | val | heldout (by map, stratified by resolution)
    <out>/manifest.json       per map: split, resolution, cubes, shards; per split: shard list
    <out>/fsc_summary.csv     one row per map: FSC-0.5 / 0.143 resolutions, unmasked and masked
                              (their means over maps are in manifest.json as ``fsc_mean``)
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryofm.errors import InputError
from cryofm.maps.pipeline import LabelOptions, label_pair
from cryofm.maps.split import resolution_split
from cryofm.utils.atomic import write_json, write_text


def default_id(map_path: str | Path) -> str:
    """A map id from its file name: ``emd_1997.map`` -> ``emd_1997``."""
    name = Path(map_path).name
    for suffix in (".gz", ".mrc", ".map", ".ccp4"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def read_table(path: str | Path, root: str | Path | None = None) -> list[dict]:
    """Rows ``{map, model, id, resolution, contour}`` of a pair table (see the module docstring); a map
    or model path leading outside the table's folder (or ``root``) is refused unopened."""
    from cryofm.io.paths import table_file

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "pair table not found")
    try:
        df = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser errors
        raise InputError(path, f"cannot read the pair table ({exc})") from exc
    df.columns = [c.strip().lower() for c in df.columns]
    missing = {"map", "model"} - set(df.columns)
    if missing:
        raise InputError(path, f"pair table lacks column(s) {sorted(missing)} (has {list(df.columns)})")
    rows, seen = [], set()
    for i, r in enumerate(df.to_dict("records"), start=2):
        map_id = (r.get("id") or r.get("name") or "").strip() or default_id(r["map"])
        if map_id in seen:
            raise InputError(path, f"line {i}: duplicate map id {map_id!r}")
        seen.add(map_id)
        where = {k: str(table_file(r[k].strip(), path, root, f"line {i}, {k}")) for k in ("map", "model")}
        rows.append({"map": where["map"], "model": where["model"], "id": map_id,
                     "resolution": _float(r.get("resolution"), path, i, "resolution"),
                     "contour": _float(r.get("contour"), path, i, "contour")})
    if not rows:
        raise InputError(path, "pair table has no rows")
    return rows


def _float(value: str | None, path: Path, line: int, what: str) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise InputError(path, f"line {line}: {what} {value!r} is not a number") from exc


def run_batch(pairs: list[dict], out: str | Path, opts: LabelOptions, overwrite: bool = False,
              on_error: str = "skip") -> dict:
    """Label every pair; with ``on_error="skip"`` a bad pair is reported and the others go on.

    Returns ``{"done": [ids], "failed": {id: message}}``.
    """
    done, failed = [], {}
    for pair in tqdm(pairs, desc="maplabels", unit="map", disable=len(pairs) < 2):
        pair_opts = opts
        if pair.get("contour") is not None:
            pair_opts = LabelOptions(**{**opts.__dict__, "contour": pair["contour"]})
        try:
            label_pair(pair["map"], pair["model"], out, pair["id"], pair_opts,
                       resolution=pair.get("resolution"), overwrite=overwrite)
            done.append(pair["id"])
        except InputError as exc:
            if on_error != "skip":
                raise
            failed[pair["id"]] = str(exc)
            tqdm.write(f"maplabels: skipped {pair['id']}: {exc}")
    return {"done": done, "failed": failed}


def split_shards(out: str | Path, split: str) -> list[str]:
    """Absolute shard paths of ``split`` (train / val / heldout / all) of a labelled-map folder."""
    out = Path(out)
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(out, "no manifest.json: not a cryofm maplabels output folder")
    splits = json.loads(manifest_path.read_text())["splits"]
    if split != "all" and split not in splits:
        raise InputError(manifest_path, f"unknown split {split!r} (has {sorted(splits)})")
    names = [s for k in splits if split in ("all", k) for s in splits[k]["shards"]]
    return [str(out / s) for s in names]


def finalize(out: str | Path, fractions: dict[str, float] | None = None, seed: int = 0,
             failed: dict[str, str] | None = None) -> dict:
    """Write ``split.json``, ``manifest.json`` and ``fsc_summary.csv`` for every labelled map in ``out``."""
    out = Path(out)
    summaries = {}
    for p in sorted(out.glob("*/*.json")):
        if p.stem == p.parent.name and not p.parent.name.startswith("."):
            summaries[p.stem] = json.loads(p.read_text())
    split = resolution_split({k: float(s.get("resolution", math.nan)) for k, s in summaries.items()},
                             fractions, seed)
    maps, by_split = {}, {"train": [], "val": [], "heldout": []}
    for map_id, s in summaries.items():
        shards = [f"{map_id}/{sh}" for sh in s["cubes"]["shards"]]
        maps[map_id] = {"split": split[map_id], "resolution": s["resolution"],
                        "resolution_source": s.get("resolution_source"),
                        "n_cubes": s["cubes"]["n_cubes"], "shards": shards}
        by_split.setdefault(split[map_id], []).extend(shards)
    manifest = {"kind": "maplabels", "n_maps": len(maps), "maps": maps,
                "splits": {k: {"shards": v, "n_cubes": sum(maps[m]["n_cubes"] for m in maps
                                                           if maps[m]["split"] == k)}
                           for k, v in by_split.items()},
                "failed": dict(failed or {})}
    write_json(out / "split.json", split)
    write_json(out / "manifest.json", manifest)
    rows = []
    for map_id, s in summaries.items():
        row = {"id": map_id}
        for r in s["fsc"]:
            for t in ("0.5", "0.143"):
                row[f"{r['map']}_{r['mask']}_fsc_{t}_A"] = r[f"fsc_{t}_A"]
        rows.append(row)
    if rows:
        means = {k: round(float(np.nanmean([r.get(k, np.nan) for r in rows])), 3)
                 for k in rows[0] if k != "id"}
        manifest["fsc_mean"] = means
        write_json(out / "manifest.json", manifest)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(out / "fsc_summary.csv", buf.getvalue())
    return manifest
