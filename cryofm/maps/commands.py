"""``cryofm maplabels``: map + atomic model (or a table of pairs) -> label maps, FSC and cube shards."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cryofm.errors import InputError
from cryofm.maps.batch import default_id, finalize, read_table, run_batch
from cryofm.maps.pipeline import LabelOptions
from cryofm.utils import checks as c

ATOM_VOXEL = ("round", "ceil")
NORMALIZE = ("percentile", "zscore", "none")
ON_ERROR = ("skip", "raise")


def check_maplabels(cfg: DictConfig) -> None:
    """Types, ranges and choices of ``configs/maplabels/maplabels.yaml``; InputError names the key."""
    c.writable_output(cfg, "out")
    if c.value(cfg, "table", None) is not None:
        c.existing_file(cfg, "table", "pairs table", (".csv",))
    if c.value(cfg, "root", None) is not None:
        c.existing_dir(cfg, "root", "root= folder")
    for key, what in (("map", "map"), ("model", "atomic model")):
        if c.value(cfg, key, None) is not None:
            c.existing_file(cfg, key, what)
    c.text(cfg, "name")
    c.number(cfg, "resolution", 0, lo_open=True, none_ok=True)
    c.number(cfg, "contour", none_ok=True)
    c.boolean(cfg, "overwrite")
    c.choice(cfg, "on_error", ON_ERROR, none_ok=True)
    c.number(cfg, "voxel_size", 0, lo_open=True)
    c.integer(cfg, "interp_order", 0, 5)
    c.boolean(cfg, "assembly")
    c.number(cfg, "simulator.resolution", 0, lo_open=True, none_ok=True)
    c.number(cfg, "simulator.sigma_factor", 0, lo_open=True, none_ok=True)
    c.number(cfg, "labels.radius", 0, lo_open=True)
    c.choice(cfg, "labels.atom_voxel", ATOM_VOXEL)
    c.number(cfg, "check.volume_per_atom", 0, lo_open=True)
    c.number(cfg, "check.min_inside", 0, 1)
    c.number(cfg, "fsc.mask_radius", 0)
    c.number(cfg, "fsc.mask_edge", 0)
    c.boolean(cfg, "cubes.enabled")
    size = c.integer(cfg, "cubes.size", 4)
    overlap = c.integer(cfg, "cubes.overlap", 0)
    if overlap >= size:
        raise InputError("cubes.overlap", f"must be smaller than cubes.size ({overlap} >= {size})")
    c.boolean(cfg, "cubes.keep_empty")
    c.choice(cfg, "cubes.normalize", NORMALIZE)
    c.integer(cfg, "cubes.shard_size", 1)
    c.integer(cfg, "split.seed", 0)
    fr = c.value(cfg, "split.fractions", None)
    if fr is not None:
        if not hasattr(fr, "items") or set(fr) - {"train", "val", "heldout"}:
            raise InputError("split.fractions", f"must map train / val / heldout to fractions (got {fr!r})")
        vals = [c.number(cfg, f"split.fractions.{k}", 0, 1) for k in fr]
        if not sum(vals) > 0:
            raise InputError("split.fractions", f"must not all be 0 (got {dict(fr)})")


def maplabels(cfg: DictConfig) -> int:
    """Run the ``maplabels`` command on the composed ``configs/maplabels.yaml``; returns the exit code.

    Single pair: ``map=<file.mrc> model=<file.pdb|cif> out=<dir> [name=<id>]``; batch:
    ``table=<pairs.csv> out=<dir>``. Exit status 1 when some pairs of a batch were skipped.
    """
    if not cfg.get("out"):
        raise InputError("out", "a value is required: out=<dir>")
    check_maplabels(cfg)
    out = Path(cfg.out)
    opts = LabelOptions.from_cfg(cfg)
    if cfg.get("table"):
        if cfg.get("map") or cfg.get("model"):
            raise InputError(cfg.table, "give either table=<pairs.csv> or map= and model=, not both")
        pairs = read_table(cfg.table, cfg.get("root") or None)
    else:
        if not cfg.get("map") or not cfg.get("model"):
            raise InputError(None, "map=<file.mrc> and model=<file.pdb|cif> "
                                   "(or table=<pairs.csv>) are required")
        pairs = [{"map": str(cfg.map), "model": str(cfg.model), "id": cfg.get("name") or default_id(cfg.map),
                  "resolution": cfg.get("resolution")}]
    on_error = "skip" if len(pairs) > 1 else "raise"
    result = run_batch(pairs, out, opts, overwrite=bool(cfg.get("overwrite", False)),
                       on_error=str(cfg.get("on_error") or on_error))
    split_cfg = cfg.get("split") or {}
    fractions = OmegaConf.to_container(split_cfg.fractions) if split_cfg.get("fractions") else None
    manifest = finalize(out, fractions, int(split_cfg.get("seed", 0)), result["failed"])
    print(f"maplabels: {len(result['done'])} map(s) labelled, {len(result['failed'])} skipped; "
          f"{manifest['n_maps']} in {out} "
          + ", ".join(f"{k} {v['n_cubes']} cubes" for k, v in manifest["splits"].items()))
    means = manifest.get("fsc_mean") or {}
    if means:
        exp, reg = means.get("experimental_masked_fsc_0.5_A"), means.get("regression_masked_fsc_0.5_A")
        print(f"maplabels: mean masked map-model FSC-0.5: experimental {exp} A, regression {reg} A")
    return 1 if result["failed"] else 0
