"""Multi-experiment simulated datasets written straight into shards + manifest (``ingest_arrays``).

Each experiment is one density (a real map or atomic model from the shared data, or a procedural
shape), its own acquisition parameters, and per-experiment facts (molecular weight, symmetry,
max diameter, protein class, ids, resolution). Every particle record carries the ground truth the
simulation knows: pose (RELION Euler angles, origins in Å), CTF (defocus U/V/angle, B-factor,
phase shift), voltage, Cs, amplitude contrast, dose, pixel size, and its SNR (``SimSNR``).

``confound`` decides how acquisition parameters relate to experiments:

* ``true``: one set per experiment, ordered by particle size (larger particles: larger pixel size,
  higher voltage, higher dose, more defocus), so acquisition predicts the experiment and its facts,
  the confounded case the regress-out evaluation must handle;
* ``false``: every particle draws pixel size, voltage, dose and defocus from the same global ranges,
  independently of its experiment.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cryofm.errors import InputError
from cryofm.simulate import densities as D
from cryofm.simulate import symmetry as sym
from cryofm.simulate.noise import add_gaussian_noise, particle_snr
from cryofm.simulate.projection import Projector
from cryofm.simulate.rotations import matrix_to_euler, random_rotations

CHUNK = 128
# facts a preset entry may state; a stated MolecularWeight (kDa, e.g. from the literature) replaces
# the estimate from the density's volume
FACT_KEYS = ("EMDB", "PDB", "EMPIAR", "ProteinClass", "SampleName", "SequenceCluster", "Subunits",
             "HasRNA", "HasDNA", "EMDBResolution", "MolecularWeight")
REFERENCE_DOSE = 50.0  # e/Å² at which the particle SNR equals the configured snr


def _procedural(entry: dict[str, Any], volume_box: int) -> D.Density:
    d = float(entry.get("diameter", 150.0))
    return D.procedural(entry.get("kind", "blob"), entry.get("symmetry", "C1"), diameter=d,
                        pixel_size=1.8 * d / volume_box, resolution=float(entry.get("resolution", 8.0)),
                        seed=int(entry.get("seed", 0)), n_domains=int(entry.get("n_domains", 12)))


def load_experiment(entry: dict[str, Any], shared: Path, volume_box: int) -> tuple[D.Density, dict[str, Any]]:
    """The density of one preset entry and its per-experiment facts (schema names).

    Real sources missing from ``shared`` are replaced by the entry's procedural ``fallback``; the
    facts then describe the stand-in (no EMDB / PDB ids), and ``stand_in_for`` names the file.
    """
    name, source = entry["name"], entry.get("source", "procedural")
    stand_in = None
    if source in ("map", "model"):
        path = shared / entry["path"]
        if not path.is_file():
            if not entry.get("fallback"):
                raise InputError(path, f"experiment {name!r}: file absent and no procedural fallback")
            stand_in = str(path)
            entry = {"name": name, "source": "procedural", "seed": zlib.crc32(name.encode()) % 1000,
                     "resolution": entry.get("resolution", 8.0), **entry["fallback"]}
            source = "procedural"
    res = float(entry.get("resolution", float("nan")))
    if source == "map":
        dens = D.from_map(path, entry.get("symmetry", "C1"), res, pixel_size=entry.get("pixel_size"),
                          max_box=volume_box, contour=entry.get("contour"))
    elif source == "model":
        dens = D.from_model(path, pixel_size=max(res / 3.0, 1.0), resolution=res,
                            symmetry=entry.get("symmetry", "C1"), max_box=volume_box)
    elif source == "procedural":
        dens = _procedural(entry, volume_box)
    else:
        raise InputError(name, f"unknown density source {source!r} (map, model or procedural)")
    facts: dict[str, Any] = {
        "Symmetry": dens.symmetry, "MolecularWeight": round(float(dens.mass_kda), 1),
        "MaxDiameter": round(float(dens.max_diameter), 1), "ReconstructionResolution": dens.resolution,
    }
    if source == "procedural":
        kind = entry.get("kind", "blob")
        facts.update({"ProteinClass": f"synthetic {kind}", "SampleName": f"procedural {kind} {dens.symmetry}",
                      "SequenceCluster": name, "Subunits": sym.order(dens.symmetry),
                      "HasRNA": False, "HasDNA": False})
    else:
        facts.update({k: entry[k] for k in FACT_KEYS if k in entry})
        if source == "model":
            facts["Subunits"] = int(dens.meta.get("chains", 0)) or facts.get("Subunits")
    facts.setdefault("SequenceCluster", name)
    dens.meta.update({"experiment": name, "source_kind": source, "stand_in_for": stand_in})
    return dens, facts


def _choice_index(r: float, k: int) -> int:
    return min(k - 1, int(r * k))


def plan_acquisition(diameters: dict[str, float], cfg: dict[str, Any], rng: np.random.Generator) -> dict:
    """Per-experiment acquisition settings (confounded) or the global ranges (not confounded)."""
    acq = cfg["acquisition"]
    out: dict[str, dict[str, Any]] = {}
    order = sorted(diameters, key=lambda k: diameters[k])
    volts = sorted(float(v) for v in acq["voltage"])
    for rank, name in enumerate(order):
        r = rank / max(1, len(order) - 1)
        if not cfg.get("confound", True):
            out[name] = {"confound": False}
            continue
        lo, hi = acq["pixel_size"]
        pixel = float(np.clip(cfg["fov_factor"] * diameters[name] / cfg["image_size"], lo, hi))
        v = volts[_choice_index(r, len(volts))]
        dlo, dhi = acq["dose"]
        flo, fhi = acq["defocus"]
        width = float(acq["defocus_width"])
        out[name] = {
            "confound": True, "pixel_size": round(pixel, 4), "voltage": v, "cs": _cs(acq, v),
            "dose": round(float(dlo + r * (dhi - dlo) + rng.uniform(-0.05, 0.05) * (dhi - dlo)), 2),
            "defocus_centre": round(float(flo + width / 2 + r * (fhi - flo - width)), 1),
        }
    return out


def _cs(acq: dict[str, Any], voltage: float) -> float:
    table = {float(k): float(v) for k, v in acq["cs"].items()}
    return table.get(float(voltage), 2.7)


def draw_particles(n: int, plan: dict[str, Any], cfg: dict[str, Any], rng: np.random.Generator) -> dict:
    """Per-particle ground truth: poses, origins, CTF and acquisition values, SNRs (arrays of n)."""
    acq = cfg["acquisition"]
    rots = random_rotations(n, rng)
    rot, tilt, psi = matrix_to_euler(rots)
    if plan["confound"]:
        pixel = np.full(n, plan["pixel_size"])
        volt = np.full(n, plan["voltage"])
        dose = np.full(n, plan["dose"])
        c, w = plan["defocus_centre"], float(acq["defocus_width"])
        du = rng.uniform(c - w / 2, c + w / 2, n)
    else:
        pixel = rng.uniform(*acq["pixel_size"], n)
        volt = rng.choice(np.asarray(acq["voltage"], dtype=np.float64), n)
        dose = rng.uniform(*acq["dose"], n)
        du = rng.uniform(*acq["defocus"], n)
    cs = np.array([_cs(acq, v) for v in volt])
    dv = du - rng.uniform(0, float(acq["astigmatism"]), n)
    fov = cfg["image_size"] * pixel
    base_snr = float(cfg["snr"]) * (dose / REFERENCE_DOSE if cfg.get("snr_per_dose", False) else 1.0)
    snr = base_snr * particle_snr(n, 1.0, float(cfg.get("snr_spread", 0.0)), rng)
    return {
        "rotations": rots, "AngleRot": rot, "AngleTilt": tilt, "AnglePsi": psi,
        "OriginXAngst": rng.normal(0, cfg["shift_sigma"], n) * fov,
        "OriginYAngst": rng.normal(0, cfg["shift_sigma"], n) * fov,
        "DefocusU": du, "DefocusV": dv, "DefocusAngle": rng.uniform(-180, 180, n),
        "PhaseShift": np.zeros(n), "CtfBfactor": rng.uniform(*acq["bfactor"], n),
        "Voltage": volt, "SphericalAberration": cs,
        "AmplitudeContrast": np.full(n, float(acq["amplitude_contrast"])), "ElectronDose": dose,
        "ImagePixelSize": pixel, "SimSNR": snr,
    }


RECORD_KEYS = ("AngleRot", "AngleTilt", "AnglePsi", "OriginXAngst", "OriginYAngst", "DefocusU",
               "DefocusV", "DefocusAngle", "PhaseShift", "CtfBfactor", "Voltage", "SphericalAberration",
               "AmplitudeContrast", "ElectronDose", "ImagePixelSize", "SimSNR")


def make_projector(dens: D.Density, params: dict[str, Any], image_size: int) -> Projector:
    """A projector padded enough for the largest field of view of ``params``."""
    fov = float(np.max(params["ImagePixelSize"])) * image_size
    pad = max(2, int(np.ceil(fov / (dens.box * dens.pixel_size))))
    return Projector(dens.volume, dens.pixel_size, pad=pad)


def render(projector: Projector, params: dict[str, Any], start: int, stop: int, image_size: int,
           rng: np.random.Generator | None, phase_flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) images [stop − start, image_size, image_size] of particles start..stop
    (``phase_flip``: images as after phase-flipping CTF correction, |CTF| applied)."""
    sl = slice(start, stop)
    ctf = {"defocus_u": params["DefocusU"][sl], "defocus_v": params["DefocusV"][sl],
           "defocus_angle": params["DefocusAngle"][sl], "voltage": params["Voltage"][sl],
           "cs": params["SphericalAberration"][sl], "amplitude_contrast": params["AmplitudeContrast"][sl],
           "bfactor": params["CtfBfactor"][sl], "phase_shift": params["PhaseShift"][sl]}
    shifts = np.stack([params["OriginXAngst"][sl], params["OriginYAngst"][sl]], 1)
    clean = projector.project(params["rotations"][sl], size=image_size,
                              pixel_size=params["ImagePixelSize"][sl], shifts=shifts, ctf=ctf,
                              phase_flip=phase_flip)
    if rng is None:
        return clean, clean
    return add_gaussian_noise(clean, params["SimSNR"][sl], rng), clean


def items(name: str, projector: Projector, params: dict[str, Any], image_size: int, seed: list[int],
          phase_flip: bool = False):
    """``start -> iterator of (image, record)``: the ingest items of one experiment, resumable at any
    index (noise is seeded per chunk of :data:`CHUNK` particles)."""
    n = len(params["AngleRot"])

    def gen(start: int = 0):
        for c0 in range(start - start % CHUNK, n, CHUNK):
            c1 = min(n, c0 + CHUNK)
            imgs, _ = render(projector, params, c0, c1, image_size, np.random.default_rng([*seed, c0]),
                             phase_flip)
            for i in range(max(c0, start), c1):
                rec = {k: float(params[k][i]) for k in RECORD_KEYS}
                rec["uid"] = f"{name}/sim/{i:06d}"
                yield imgs[i - c0], rec

    return gen
