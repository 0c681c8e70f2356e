"""One (map, model) pair -> resampled map, simulated map, three label maps, FSC table and cube shards.

Steps: read the map (any voxel size, origin, axis order) and the model (biological assembly); check
the model sits in the map (fraction of atoms inside the contour); resample the map to ``voxel_size``
Å; simulate the model's density on that grid; make the label maps; map-model FSC of the experimental
and the regression map; cut cubes into WebDataset shards. Everything is written into a staging
folder renamed to ``<out>/<id>`` at the end, so a failed pair leaves nothing behind and a finished
one (``<id>/<id>.json`` present) is skipped when the job is run again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cryofm.errors import InputError
from cryofm.io.atomic import read_model
from cryofm.io.mapio import read_map, write_map
from cryofm.maps.cubes import normalize_map, write_cube_shards
from cryofm.maps.fsc import fsc_curve, resolution_at, soft_mask
from cryofm.maps.labels import make_labels
from cryofm.maps.placement import fraction_inside, volume_contour
from cryofm.maps.plots import plot_fsc, plot_slices
from cryofm.maps.resample import resample
from cryofm.maps.simulate_map import MOLMAP_SIGMA_FACTOR, SIMULATOR_NAME, simulate_map
from cryofm.utils import atomic

FSC_THRESHOLDS = (0.5, 0.143)


@dataclass
class LabelOptions:
    """Settings of one labelling run (mirrors ``configs/maplabels.yaml``; lengths in Å)."""

    voxel_size: float = 1.0
    interp_order: int = 3
    assembly: bool = True
    sim_resolution: float | None = None  # None: 2 * voxel_size (Nyquist)
    sim_sigma_factor: float = MOLMAP_SIGMA_FACTOR
    radius: float = 6.0
    atom_voxel: str = "round"
    contour: float | None = None  # None: the level enclosing n_atoms * volume_per_atom Å^3
    volume_per_atom: float = 12.0
    min_inside: float = 0.5
    fsc_mask_radius: float = 3.0
    fsc_mask_edge: float = 3.0
    cubes: bool = True
    cube_size: int = 64
    cube_overlap: int = 16
    cube_keep_empty: bool = False
    cube_normalize: str = "percentile"
    shard_size: int = 256
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_cfg(cls, cfg: Any) -> LabelOptions:
        """Build from the composed ``maplabels`` config (a DictConfig or a nested dict)."""
        def g(section: str, key: str, default: Any) -> Any:
            return (cfg.get(section) or {}).get(key, default)

        return cls(
            voxel_size=float(cfg.get("voxel_size", 1.0)),
            interp_order=int(cfg.get("interp_order", 3)),
            assembly=bool(cfg.get("assembly", True)),
            sim_resolution=g("simulator", "resolution", None),
            sim_sigma_factor=float(g("simulator", "sigma_factor", None) or MOLMAP_SIGMA_FACTOR),
            radius=float(g("labels", "radius", 6.0)),
            atom_voxel=str(g("labels", "atom_voxel", "round")),
            contour=cfg.get("contour", None),
            volume_per_atom=float(g("check", "volume_per_atom", 12.0)),
            min_inside=float(g("check", "min_inside", 0.5)),
            fsc_mask_radius=float(g("fsc", "mask_radius", 3.0)),
            fsc_mask_edge=float(g("fsc", "mask_edge", 3.0)),
            cubes=bool(g("cubes", "enabled", True)),
            cube_size=int(g("cubes", "size", 64)),
            cube_overlap=int(g("cubes", "overlap", 16)),
            cube_keep_empty=bool(g("cubes", "keep_empty", False)),
            cube_normalize=str(g("cubes", "normalize", "percentile")),
            shard_size=int(g("cubes", "shard_size", 256)),
        )


def output_names(map_id: str) -> dict[str, str]:
    """File names inside ``<out>/<id>/`` (those of the labelled-map dataset, plus FSC and summary)."""
    return {
        "map": f"{map_id}.mrc",
        "simulated": f"{map_id}_{SIMULATOR_NAME}_simulated.mrc",
        "regression": f"{map_id}_regression.mrc",
        "classification": f"{map_id}_classification.mrc",
        "types": f"{map_id}_classification_types.mrc",
        "fsc": f"{map_id}_fsc.csv",
        "fsc_curves": f"{map_id}_fsc_curves.csv",
        "fsc_plot": f"{map_id}_fsc.png",
        "slices_plot": f"{map_id}_slices.png",
        "summary": f"{map_id}.json",
    }


def fsc_table(exp: np.ndarray, regression: np.ndarray, model_map: np.ndarray, mask: np.ndarray,
              voxel: float) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Map-model FSC rows (map, mask, resolution at 0.5 and 0.143 in Å) and the curves."""
    rows, curves = [], {}
    for name, m in (("experimental", exp), ("regression", regression)):
        for masked in (False, True):
            a, b = (m * mask, model_map * mask) if masked else (m, model_map)
            freq, fsc = fsc_curve(a, b, voxel)
            label = f"{name}_{'masked' if masked else 'unmasked'}"
            curves["frequency"] = freq
            curves[label] = fsc
            rows.append({"map": name, "mask": "masked" if masked else "unmasked",
                         **{f"fsc_{t}_A": round(resolution_at(freq, fsc, t), 3) for t in FSC_THRESHOLDS}})
    return rows, curves


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def label_pair(map_path: str | Path, model_path: str | Path, out: str | Path, map_id: str,
               opts: LabelOptions, resolution: float | None = None, overwrite: bool = False) -> dict:
    """Label one (map, model) pair into ``out/<map_id>/``; returns the summary (also ``<id>.json``).

    ``resolution`` is the map's reported resolution (Å) used for the split; when None the masked
    map-model FSC-0.5 resolution of the experimental map stands in. Raises InputError for an
    unreadable map or model and for a model not placed in the map.
    """
    out = Path(out)
    final = out / map_id
    names = output_names(map_id)
    if (final / names["summary"]).is_file() and not overwrite:
        return json.loads((final / names["summary"]).read_text()) | {"skipped": True}
    raw = read_map(map_path)
    model = read_model(model_path, assembly=opts.assembly)
    if opts.contour is not None:
        contour = float(opts.contour)
    else:
        contour = volume_contour(raw.data, float(np.prod(raw.voxel_size)), opts.volume_per_atom * len(model))
    inside = fraction_inside(raw, model.xyz, contour)
    if inside < opts.min_inside:
        raise InputError(model_path, f"model is not placed in map {map_path}: only {inside:.1%} of atoms "
                                     f"inside contour {contour:.3g} (need {opts.min_inside:.0%}); rigid "
                                     "fitting is out of scope, fit the model into the map first")
    grid = resample(raw, opts.voxel_size, opts.interp_order)
    sim_res = float(opts.sim_resolution or 2.0 * opts.voxel_size)
    simulated = simulate_map(grid, model.xyz, model.element, sim_res, model.occupancy, opts.sim_sigma_factor)
    reach = max(opts.radius, opts.fsc_mask_radius + opts.fsc_mask_edge)
    labels = make_labels(grid, simulated, model.xyz, model.atom_name, model.element, model.residue_name,
                         opts.radius, opts.atom_voxel, reach)
    mask = soft_mask(labels.distance, opts.fsc_mask_radius, opts.fsc_mask_edge)
    rows, curves = fsc_table(grid.data, labels.regression, simulated, mask, opts.voxel_size)
    exp_masked = next(r for r in rows if r["map"] == "experimental" and r["mask"] == "masked")
    split_res = float(resolution) if resolution is not None else float(exp_masked["fsc_0.5_A"])

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".tmp-{map_id}.*"):  # left by a killed run of this map
        shutil.rmtree(stale, ignore_errors=True)
    stage = atomic.temp_dir(f".tmp-{map_id}.", out)  # mode 0777 minus the umask
    try:
        write_map(stage / names["map"], grid)
        write_map(stage / names["simulated"], grid.like(simulated))
        write_map(stage / names["regression"], grid.like(labels.regression))
        write_map(stage / names["classification"], grid.like(labels.classification), np.int8)
        write_map(stage / names["types"], grid.like(labels.types), np.int8)
        (stage / names["fsc"]).write_text(_csv_text(rows))
        curve_rows = [{k: float(v[i]) for k, v in curves.items()} for i in range(len(curves["frequency"]))]
        (stage / names["fsc_curves"]).write_text(_csv_text(curve_rows))
        plot_fsc(stage / names["fsc_plot"], curves, f"{map_id}: map-model FSC")
        plot_slices(stage / names["slices_plot"], {"map": grid.data, "regression": labels.regression,
                                                   "classification": labels.classification,
                                                   "atom types": labels.types}, map_id)
        shards = {"shards": [], "n_cubes": 0}
        norm = {"mode": "none"}
        if opts.cubes:
            x, norm = normalize_map(grid.data, opts.cube_normalize)
            arrays = {"input": x, "regression": labels.regression,
                      "classification": labels.classification.astype(np.uint8),
                      "types": labels.types.astype(np.uint8)}
            meta = {"resolution": split_res, "normalize": norm}
            shards = write_cube_shards(stage / "shards", map_id, arrays, meta, grid.origin,
                                       opts.voxel_size, opts.cube_size, opts.cube_overlap,
                                       opts.cube_keep_empty, opts.shard_size)
        summary = {
            "id": map_id, "map": str(map_path), "model": str(model_path),
            "input_voxel_size": raw.voxel_size.tolist(), "input_shape_xyz": list(raw.shape_xyz),
            "voxel_size": opts.voxel_size, "shape_xyz": list(grid.shape_xyz), "origin": grid.origin.tolist(),
            "n_atoms": len(model), "n_atoms_in_grid": labels.n_atoms_inside,
            "contour": contour, "fraction_inside": inside,
            "simulator": SIMULATOR_NAME, "sim_resolution": sim_res, "radius": opts.radius,
            "atom_voxel": opts.atom_voxel, "fsc": rows, "resolution": split_res,
            "resolution_source": "reported" if resolution is not None else "fsc_0.5_masked",
            "n_labelled_voxels": int((labels.classification > 0).sum()),
            "n_atom_voxels": int((labels.classification == 1).sum()),
            "cubes": {"size": opts.cube_size, "overlap": opts.cube_overlap, "normalize": norm,
                      "n_cubes": shards["n_cubes"], "shards": [f"shards/{s}" for s in shards["shards"]]},
            "files": names,
        }
        (stage / names["summary"]).write_text(json.dumps(summary, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return summary
