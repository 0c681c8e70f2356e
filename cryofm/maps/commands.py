"""``cryofm maplabels``: map + atomic model (or a table of pairs) -> label maps, FSC and cube shards."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cryofm.errors import InputError
from cryofm.maps.batch import default_id, finalize, read_table, run_batch
from cryofm.maps.pipeline import LabelOptions


def maplabels(cfg: DictConfig) -> int:
    """Run the ``maplabels`` command on the composed ``configs/maplabels.yaml``; returns the exit code.

    Single pair: ``map=<file.mrc> model=<file.pdb|cif> out=<dir> [name=<id>]``; batch:
    ``table=<pairs.csv> out=<dir>``. Exit status 1 when some pairs of a batch were skipped.
    """
    if not cfg.get("out"):
        raise InputError(None, "out=<dir> is required")
    out = Path(cfg.out)
    opts = LabelOptions.from_cfg(cfg)
    if cfg.get("table"):
        if cfg.get("map") or cfg.get("model"):
            raise InputError(cfg.table, "give either table=<pairs.csv> or map= and model=, not both")
        pairs = read_table(cfg.table)
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
