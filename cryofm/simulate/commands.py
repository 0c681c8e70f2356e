"""``cryofm simulate``: a multi-experiment dataset (default) or micrographs with ground truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cryofm.errors import InputError
from cryofm.simulate.presets import resolve
from cryofm.utils import checks as c
from cryofm.utils.atomic import atomic_path, write_json

MODES = ("dataset", "micrographs")
DTYPES = ("float16", "uint8")


def check_simulate(cfg: Any) -> None:
    """Types, ranges and choices of ``configs/simulate.yaml`` (before the preset is read or any file
    written); InputError names the key."""
    c.choice(cfg, "mode", MODES)
    c.text(cfg, "preset", none_ok=False)
    c.writable_output(cfg, "out")
    c.integer(cfg, "seed", 0)
    for key in ("confound", "phase_flip", "split"):
        if c.value(cfg, key, None) is not None:
            c.boolean(cfg, key)
    c.boolean(cfg, "overwrite")
    c.text(cfg, "shared_data")  # when not given, a missing ../shared/data means procedural stand-ins
    shared = c.value(cfg, "shared_data", None)
    if shared not in (None, "") and not Path(str(shared)).is_dir():
        raise InputError("shared_data", f"{shared!r} is not a folder (leave it unset for the default, "
                                        "../shared/data or procedural stand-ins)")
    exps = c.value(cfg, "experiments", None)
    if exps is not None and (isinstance(exps, (str, int, float)) or not len(exps)):
        raise InputError("experiments", f"must be a list of experiment names, e.g. [blob_c1] (got {exps!r})")
    c.integer(cfg, "n_particles", 1, 10**8, none_ok=True)  # per experiment; its parameters are held in memory
    c.integer(cfg, "box", 8, none_ok=True)
    c.integer(cfg, "image_size", 8, none_ok=True)
    c.number(cfg, "snr", 0, lo_open=True, none_ok=True)
    c.choice(cfg, "dtype", DTYPES, none_ok=True)
    c.integer(cfg, "n_micrographs", 1, none_ok=True)
    c.integer(cfg, "micrograph_size", 32, none_ok=True)
    c.number(cfg, "micrograph_pixel_size", 0, lo_open=True, none_ok=True)
    c.integer(cfg, "particles_per_micrograph", 0, none_ok=True)
    c.number(cfg, "micrograph_snr", 0, lo_open=True, none_ok=True)
    c.integer(cfg, "background_boxes", 0, none_ok=True)


def simulate(cfg: Any) -> int:
    """Entry point registered in :mod:`cryofm.cli` (``cfg`` is ``configs/simulate.yaml`` composed)."""
    check_simulate(cfg)
    p = resolve(cfg)
    out = Path(str(cfg.out))
    t0 = time.time()
    if cfg.mode == "dataset":
        refuse_foreign_dataset(out)
        info = simulate_dataset(p, out)
        n = sum(e["n"] for e in info["experiments"].values())
        print(f"simulated {n} particles in {len(info['experiments'])} experiments "
              f"({time.time() - t0:.1f} s) -> {out}")
    elif cfg.mode == "micrographs":
        info = simulate_micrographs(p, out)
        print(f"simulated {len(info['micrographs'])} micrographs with {info['n_particles']} particles "
              f"({time.time() - t0:.1f} s) -> {out}")
    else:
        raise InputError("mode", f"unknown mode {cfg.mode!r} (dataset or micrographs)")
    return 0


def refuse_foreign_dataset(out: Path) -> None:
    """InputError when ``out`` already holds a dataset with experiments that ``cryofm simulate`` did
    not make (ingested data): simulated experiments and a new split would be mixed into it."""
    from cryofm.data import format as fmt
    from cryofm.data.dataset import load_manifest

    if not (out / fmt.MANIFEST).is_file():
        return
    exps = load_manifest(out).get("experiments") or {}
    foreign = sorted(n for n, e in exps.items()
                     if not (isinstance(e, dict) and str(e.get("source", "")).startswith("simulate:")))
    if foreign:
        raise InputError(out, f"holds experiments cryofm simulate did not make ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}): simulate into a new folder "
                              "(cryofm merge joins datasets)")


def _load_all(p: dict[str, Any], entries: list[dict[str, Any]]) -> list[tuple[dict, Any, dict]]:
    from cryofm.simulate import dataset as ds  # torch: imported after the option checks

    shared = Path(p["shared_data"])
    return [(e, *ds.load_experiment(e, shared, int(p["volume_box"]))) for e in entries]


def simulate_dataset(p: dict[str, Any], out: Path) -> dict[str, Any]:
    """Simulate every experiment of the resolved preset ``p`` into the dataset folder ``out``."""
    from cryofm.data.ingest import ingest_arrays
    from cryofm.simulate import dataset as ds

    loaded = _load_all(p, p["experiments"])  # every density first: bad input fails before writing
    seed = int(p["seed"])
    plan = ds.plan_acquisition({e["name"]: f["MaxDiameter"] for e, _, f in loaded}, p,
                               np.random.default_rng([seed, 999]))
    n, size, box = int(p["n_particles"]), int(p["image_size"]), int(p["box"])
    summary: dict[str, Any] = {}
    previews = []
    for k, (entry, dens, facts) in enumerate(loaded):
        name = entry["name"]
        params = ds.draw_particles(n, plan[name], p, np.random.default_rng([seed, k]))
        proj = ds.make_projector(dens, params, size)
        settings = {"preset": p["preset"], "seed": seed, "image_size": size, "snr": p["snr"],
                    "snr_spread": p.get("snr_spread"), "snr_per_dose": p.get("snr_per_dose"),
                    "phase_flip": bool(p.get("phase_flip", False)),
                    "acquisition": plan[name],
                    "entry": {k2: v for k2, v in entry.items() if k2 != "fallback"}}
        flip = bool(p.get("phase_flip", False))
        ingest_arrays(out, name, ds.items(name, proj, params, size, [seed, k, 1], flip), n=n, facts=facts,
                      box=box, dtype=str(p["dtype"]), source=f"simulate:{p['preset']}/{name}",
                      config={"simulate": settings}, merge=k == len(loaded) - 1,
                      overwrite=bool(p["overwrite"]))
        noisy, clean = ds.render(proj, params, 0, 4, size, np.random.default_rng([seed, k, 1, 0]), flip)
        previews.append((name, clean[0], noisy[:4]))
        summary[name] = {"n": n, "facts": facts, "acquisition": plan[name],
                         "density": {"source": dens.meta.get("source"), "kind": dens.meta.get("source_kind"),
                                     "stand_in_for": dens.meta.get("stand_in_for"),
                                     "voxel_size": dens.pixel_size, "box": dens.box}}
    train_only: tuple[str, ...] = ()
    if int((p.get("background") or {}).get("per_micrograph") or 0) > 0:
        from cryofm.simulate.background import NAME, add_background

        summary[NAME] = add_background(p, out, box, str(p["dtype"]), bool(p["overwrite"]))
        train_only = (NAME,)  # pretraining sees it; no probe scores it (it has no labels)
    split = None
    if p.get("split", True) and len(loaded) >= 2:
        from cryofm.data.split import make_split

        names = {entry["name"] for entry, _, _ in loaded}
        heldout = tuple(e for e in p.get("split_heldout") or () if e in names)  # absent ones: ignored
        split = make_split(out, seed=seed, fractions=tuple(p.get("split_fractions", (0.8, 0.1, 0.1))),
                           group_key="SequenceCluster", heldout=heldout, train=train_only)["assignment"]
    info = {"preset": p["preset"], "confound": bool(p.get("confound", True)), "seed": seed,
            "image_size": size, "box": box, "experiments": summary, "split": split}
    write_json(out / "simulation.json", info)
    _montage(out / "simulation.png", previews)
    return info


def simulate_micrographs(p: dict[str, Any], out: Path) -> dict[str, Any]:
    """Micrographs of the preset's ``micrographs.experiments`` densities into ``out``."""
    from cryofm.simulate.micrograph import MicrographSpec, write_micrographs

    m = p["micrographs"]
    wanted = [e for e in p["experiments"] if e["name"] in (m.get("experiments") or [])]
    loaded = _load_all(p, wanted or p["experiments"][:1])
    acq = p["acquisition"]
    spec = MicrographSpec(size=int(m["size"]), pixel_size=float(m["pixel_size"]),
                          n_particles=int(m["particles"]), min_distance=float(m["min_distance"]),
                          snr=float(m["snr"]), defocus=tuple(acq["defocus"]),
                          astigmatism=float(acq["astigmatism"]),
                          amplitude_contrast=float(acq["amplitude_contrast"]),
                          carbon=float(m.get("carbon", 0.0)),
                          contamination=float(m.get("contamination", 0.0)))
    info = write_micrographs(out, {e["name"]: d for e, d, _ in loaded}, spec, int(m["n"]), int(p["seed"]))
    info["facts"] = {e["name"]: f for e, _, f in loaded}
    write_json(out / "ground_truth.json", info)
    return info


def _montage(path: Path, previews: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """One row per experiment: a noise-free particle, then four simulated (noisy) ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(previews), 5, figsize=(7.5, 1.5 * len(previews)), squeeze=False)
    for row, (name, clean, noisy) in zip(axes, previews, strict=True):
        for ax, img in zip(row, [clean, *noisy], strict=False):
            ax.imshow(img, cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(name, fontsize=7)
    axes[0, 0].set_title("no noise", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
