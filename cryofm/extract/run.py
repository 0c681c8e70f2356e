"""The extraction job: check every input, then cut, normalise and write one micrograph at a time.

Order of work per micrograph, as RELION's Extract (``relion_preprocess --extract``): read →
Fourier-bin the whole micrograph (:mod:`.binning`) → cut a box at each pick (:mod:`.windows`) →
background normalisation (:mod:`.normalise`) → contrast inversion → write ``Particles/<stem>.mrcs``.

Layout of ``out``::

    particles.star               RELION 3.1+ optics + particles (feeds `cryofm ingest` unchanged)
    Particles/<stem>.mrcs        one float32 stack per micrograph
    Particles/<stem>.json        that micrograph's STAR rows and counts: the resume marker
    negatives.star, Particles/<stem>_negatives.mrcs   with negatives=N
    extract.json                 settings, the contrast decision, counts per micrograph

Resuming: a micrograph whose marker holds the same settings and picks (a hash of both) and whose
stack has the right length is not redone. Every file is written atomically (a killed job leaves at
most ``.tmp-*`` files). Bad input found before any work (pick files, micrograph headers, CTF
entries, options) stops with one line; bad input found later (a corrupt micrograph) removes what
this run wrote before the error reaches the user.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cryofm.errors import InputError
from cryofm.extract import contrast as contrast_mod
from cryofm.extract.binning import binned_shape, fourier_bin
from cryofm.extract.ctf import read_ctf
from cryofm.extract.inputs import (
    Micrograph,
    Picks,
    list_inputs,
    match_picks,
    micrograph_shape,
    mrc_pixel_size,
)
from cryofm.extract.normalise import default_radius, normalise
from cryofm.extract.stacks import stack_length, write_stack
from cryofm.extract.star import optics_table, particles_table, write_particles_star
from cryofm.extract.windows import EDGES, background_windows, cut, place
from cryofm.io.micrograph import read_micrograph
from cryofm.utils.atomic import write_json

PARTICLES = "Particles"
CHUNK = 256  # boxes normalised at a time (bounds the float64 working memory)


@dataclass
class ExtractOptions:
    """Settings of one extraction (mirrors ``configs/extract.yaml``; pixel units noted)."""

    box: int                           # box edge in micrograph px (before binning)
    bin: int = 1                       # integer Fourier binning factor
    diameter: float | None = None      # particle diameter in micrograph px (background circle)
    edge: str = "skip"                 # skip | pad (RELION's nearest-pixel fill)
    norm: bool = True
    ramp: bool = True
    invert: str = "auto"               # auto | true | false
    particle_contrast: str = "bright"  # the contrast the output should have (backbone.json wins)
    negatives: int = 0                 # background windows per micrograph
    seed: int = 0
    pixel_size: float | None = None    # Å/px of the micrographs
    voltage: float | None = None       # kV
    cs: float | None = None            # mm
    amplitude_contrast: float | None = None
    coord_suffix: str | None = None
    root: str | None = None
    auto_micrographs: int = 3          # micrographs measured by invert=auto
    threads: int = 0
    progress: bool = True
    overwrite: bool = False

    @property
    def size(self) -> int:
        """Box edge in output (binned) px."""
        return self.box // self.bin

    def check(self) -> None:
        """InputError (keyed by the option) for values RELION would refuse."""
        if self.bin < 1:
            raise InputError("bin", f"must be a whole number >= 1, got {self.bin}")
        if self.box < 2 or self.box % self.bin or (self.box // self.bin) % 2:
            raise InputError("box", f"box={self.box} / bin={self.bin} must be an even whole number of px "
                                    "(RELION extracts even boxes only)")
        if self.edge not in EDGES:
            raise InputError("edge", f"must be one of {EDGES}, got {self.edge!r}")
        if self.invert not in ("auto", "true", "false"):
            raise InputError("invert", f"must be auto, true or false, got {self.invert!r}")
        if self.particle_contrast not in contrast_mod.CONTRASTS:
            raise InputError("particle_contrast", f"must be dark or bright, got {self.particle_contrast!r}")
        if self.diameter is not None and not 0 < self.diameter <= self.box:
            raise InputError("diameter", f"{self.diameter} px must be positive and fit in box={self.box}")
        if self.negatives < 0:
            raise InputError("negatives", "must be >= 0")
        if self.negatives and self.diameter is None:
            raise InputError("negatives", "background windows need diameter= (they keep a diameter from "
                                          "every pick)")
        for key in ("pixel_size", "voltage", "cs", "amplitude_contrast"):
            v = getattr(self, key)
            zero_ok = key in ("cs", "amplitude_contrast")
            if v is not None and not (np.isfinite(v) and (v > 0 or (zero_ok and v == 0))):
                raise InputError(key, f"bad value {v!r}")

    @property
    def bg_radius(self) -> int:
        """Background radius in output px (RELION's default: 75 % of the box)."""
        if self.diameter is None:
            return default_radius(self.size)
        return max(1, int(round(self.diameter / 2 / self.bin)))


@dataclass
class Job:
    """Everything checked before work starts."""

    mics: list[Micrograph]
    picks: dict[str, Picks]
    shapes: dict[str, tuple[int, int]]
    groups: dict[int, dict[str, Any]]           # optics group -> pixel_size, voltage, ...
    unmatched: list[Path] = field(default_factory=list)
    no_picks: list[str] = field(default_factory=list)


def _agree(values: list[float], what: str, source: str) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return None
    if max(vals) - min(vals) > 1e-3 * max(abs(max(vals)), 1e-9):
        raise InputError(source, f"micrographs of one optics group disagree on {what} ({min(vals):g} .. "
                                 f"{max(vals):g}): give a micrographs STAR with optics groups")
    return float(vals[0])


def prepare(micrographs: str, coords: str, opts: ExtractOptions, ctf: str | None = None) -> Job:
    """Read and check micrographs, picks, CTF and acquisition; nothing is written."""
    opts.check()
    mics, star_optics = list_inputs(micrographs, opts.root)
    table = read_ctf(ctf) if ctf else None
    if table is not None:
        for m in mics:
            m.ctf = {**m.ctf, **table.ctf[table.key_for(m.stem)]}
    picks, unmatched = match_picks(mics, coords, opts.coord_suffix, opts.diameter)
    shapes = {m.stem: micrograph_shape(m.path) for m in mics}
    small = [m for m in mics if m.stem in picks and shapes[m.stem] and min(shapes[m.stem]) < opts.box]
    if small:  # every box would leave the micrograph: nothing to extract there
        h, w = shapes[small[0].stem]
        more = f" (and {len(small) - 1} more micrographs)" if len(small) > 1 else ""
        raise InputError(small[0].path, f"{w} x {h} px is smaller than box={opts.box}{more}")
    groups: dict[int, dict[str, Any]] = {}
    for g in sorted({m.optics_group for m in mics}):
        members = [m for m in mics if m.optics_group == g]
        star = star_optics.get(g, {})
        ctf_opt = [table.optics[table.key_for(m.stem)] for m in members] if table is not None else []
        rec: dict[str, Any] = {"name": star.get("name") or f"opticsGroup{g}"}
        for key in ("pixel_size", "voltage", "cs", "amplitude_contrast"):
            v = getattr(opts, key)
            if v is None:
                v = star.get(key)
            if (v is None or not np.isfinite(v)) and ctf_opt:
                v = _agree([o.get(key) for o in ctf_opt], key, str(ctf))
            if (v is None or not np.isfinite(v)) and key == "pixel_size":
                v = _agree([mrc_pixel_size(m.path) for m in members], "the MRC voxel size", micrographs)
            rec[key] = None if v is None or not np.isfinite(v) else float(v)
        if rec["pixel_size"] is None:
            raise InputError("pixel_size", "the micrographs carry no pixel size: give pixel_size=<Å/px> "
                                           "(or a micrographs STAR with rlnMicrographPixelSize)")
        rec["original_pixel_size"] = star.get("original_pixel_size") or rec["pixel_size"]
        groups[g] = rec
    for stem, p in picks.items():
        if len(p.xy) and shapes[stem] and (p.xy.max(axis=0) > 4 * np.array(shapes[stem][::-1])).any():
            raise InputError(p.source, f"picks reach {p.xy.max(axis=0).round(1).tolist()} px on a micrograph "
                                       f"of {shapes[stem][1]} x {shapes[stem][0]} px: picks made at another "
                                       "scale?")
    no_picks = [m.stem for m in mics if m.stem not in picks]
    if len(no_picks) == len(mics):
        raise InputError(coords, "no pick file matches any micrograph by name "
                                 f"(micrograph stems like {mics[0].stem!r}; coord_suffix= names a suffix)")
    return Job(mics, picks, shapes, groups, unmatched, no_picks)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _settings(opts: ExtractOptions, invert: bool) -> dict[str, Any]:
    keep = ("box", "bin", "diameter", "edge", "norm", "ramp", "negatives", "seed")
    return {**{k: getattr(opts, k) for k in keep}, "invert": invert, "bg_radius": opts.bg_radius}


def _binned(m: Micrograph, opts: ExtractOptions, workers: int) -> np.ndarray:
    with warnings.catch_warnings():  # a short MRC data block: mrcfile warns, then the reader raises
        warnings.simplefilter("ignore", RuntimeWarning)
        img = read_micrograph(m.path)
    return fourier_bin(img, opts.bin, workers=workers)


def decide_invert(job: Job, opts: ExtractOptions, target: str, workers: int) -> tuple[bool, dict[str, Any]]:
    """``invert`` as a bool and how it was decided (``auto`` measures the first micrographs)."""
    if opts.invert != "auto":
        return opts.invert == "true", {"mode": opts.invert}
    diffs = []
    used = []
    for m in [m for m in job.mics if m.stem in job.picks][: max(1, opts.auto_micrographs)]:
        img = _binned(m, opts, workers)
        pl = place(job.picks[m.stem].xy, img.shape, opts.size, opts.bin, "skip")
        if pl.keep.any():
            diffs.append(contrast_mod.inside_minus_outside(cut(img, pl.centre[pl.keep], opts.size),
                                                           opts.bg_radius))
            used.append(m.stem)
    try:
        measured, frac = contrast_mod.decide(np.concatenate(diffs) if diffs else np.zeros(0))
    except ValueError as exc:
        raise InputError("invert", f"auto: {exc} in {', '.join(used) or 'the first micrographs'}; "
                                   "set invert=true or invert=false") from None
    return measured != target, {"mode": "auto", "measured": measured, "darker_fraction": round(frac, 4),
                                "micrographs": used, "target": target}


def _process(m: Micrograph, picks: Picks, job: Job, opts: ExtractOptions, invert: bool, out: Path,
             workers: int, written: list[Path]) -> dict[str, Any]:
    """Extract one micrograph; returns its marker content (rows, counts)."""
    img = _binned(m, opts, workers)
    if img.shape != binned_shape(job.shapes[m.stem], opts.bin):
        raise InputError(m.path, f"pixel data of shape {img.shape} do not match the header")
    group = job.groups[m.optics_group]
    apix = group["pixel_size"] * opts.bin
    n = opts.size
    pl = place(picks.xy, img.shape, n, opts.bin, opts.edge)

    def boxes_at(centres: np.ndarray) -> np.ndarray:
        parts = []
        for s in range(0, len(centres), CHUNK):
            b = cut(img, centres[s:s + CHUNK], n)
            if opts.norm:
                b = normalise(b, opts.bg_radius, ramp=opts.ramp, inplace=True)
            if invert:
                np.negative(b, out=b)
            parts.append(b)
        return np.concatenate(parts) if parts else np.zeros((0, n, n), np.float32)

    def rows_for(xy: np.ndarray, scores: np.ndarray | None, stack: str) -> list[dict[str, Any]]:
        rows = []
        for i, (x, y) in enumerate(xy):
            r = {"rlnCoordinateX": float(x), "rlnCoordinateY": float(y),
                 "rlnImageName": f"{i + 1:06d}@{PARTICLES}/{stack}", "rlnMicrographName": m.name,
                 "rlnOpticsGroup": int(m.optics_group), **m.ctf}
            if scores is not None:
                r["rlnAutopickFigureOfMerit"] = float(scores[i])
            rows.append(r)
        return rows

    kept = np.flatnonzero(pl.keep)
    imgs = boxes_at(pl.centre[kept])
    has_scores = np.isfinite(picks.scores).any()
    rows = rows_for(picks.xy[kept], picks.scores[kept] if has_scores else None, f"{m.stem}.mrcs")
    if len(imgs):
        written.append(write_stack(out / PARTICLES / f"{m.stem}.mrcs", imgs, apix))
    rec: dict[str, Any] = {"micrograph": m.name, "n_picks": int(len(picks.xy)), "n_extracted": int(len(imgs)),
                           "n_edge": int(pl.crossing.sum()), "n_outside": int(pl.outside.sum()),
                           "edge": opts.edge, "rows": rows, "picks": str(picks.source)}
    if opts.negatives:
        rng = np.random.default_rng([opts.seed, zlib.crc32(m.stem.encode())])
        nxy = background_windows(picks.xy, img.shape, n, opts.bin, float(opts.diameter), opts.negatives, rng)
        npl = place(nxy, img.shape, n, opts.bin, "skip")
        neg = boxes_at(npl.centre[npl.keep])
        rec["negatives"] = rows_for(nxy[npl.keep], None, f"{m.stem}_negatives.mrcs")
        if len(neg):
            written.append(write_stack(out / PARTICLES / f"{m.stem}_negatives.mrcs", neg, apix))
    return rec


def _optics_rows(job: Job, opts: ExtractOptions) -> dict[int, dict[str, Any]]:
    rows = {}
    for g, rec in job.groups.items():
        rows[g] = {"rlnOpticsGroupName": rec["name"],
                   "rlnMicrographOriginalPixelSize": rec["original_pixel_size"],
                   "rlnVoltage": rec["voltage"], "rlnSphericalAberration": rec["cs"],
                   "rlnAmplitudeContrast": rec["amplitude_contrast"],
                   "rlnImagePixelSize": rec["pixel_size"] * opts.bin, "rlnImageSize": opts.size,
                   "rlnImageDimensionality": 2}
    return rows


def _marker_ok(path: Path, key: str, out: Path, stem: str, negatives: bool) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("key") != key:
        return None
    if rec["n_extracted"] and stack_length(out / PARTICLES / f"{stem}.mrcs") != rec["n_extracted"]:
        return None
    if negatives and rec.get("negatives") and \
            stack_length(out / PARTICLES / f"{stem}_negatives.mrcs") != len(rec["negatives"]):
        return None
    return rec


def extract(micrographs: str, coords: str, out: str | Path, opts: ExtractOptions, ctf: str | None = None,
            backbone: str | None = None, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run an extraction (see the module docstring); returns the summary written to extract.json."""
    out = Path(out)
    job = prepare(micrographs, coords, opts, ctf)
    target = opts.particle_contrast
    if backbone:
        target = _backbone_contrast(backbone) or target
    workers = opts.threads or os.cpu_count() or 1
    previous = _read_json(out / "extract.json")
    created_out = not out.exists()
    written: list[Path] = []
    t0 = time.perf_counter()
    try:
        if opts.invert == "auto" and previous.get("invert", {}).get("mode") == "auto" \
                and previous.get("request") == _key(_request(opts, micrographs)):
            # the same request as last time: keep its decision
            invert, how = bool(previous["settings"]["invert"]), previous["invert"]
        else:
            invert, how = decide_invert(job, opts, target, workers)
        settings = _settings(opts, invert)
        if previous and previous.get("settings") != settings and not opts.overwrite:
            raise InputError(out / "extract.json", "this folder holds an extraction with other "
                                                   f"settings ({previous.get('settings')}); overwrite=true "
                                                   "or another out=")
        base = _key({**settings, "groups": job.groups})
        (out / PARTICLES).mkdir(parents=True, exist_ok=True)
        per_mic: dict[str, dict[str, Any]] = {}
        n_done = 0
        todo = [m for m in job.mics if m.stem in job.picks]
        bar = tqdm(todo, desc="extract", unit="mic", disable=not opts.progress)
        for m in bar:
            picks = job.picks[m.stem]
            scores = np.nan_to_num(picks.scores, nan=-1e30).tolist()
            key = _key([base, m.name, m.ctf, picks.xy.tolist(), scores])
            marker = out / PARTICLES / f"{m.stem}.json"
            rec = _marker_ok(marker, key, out, m.stem, bool(opts.negatives))
            if rec is None:
                rec = _process(m, picks, job, opts, invert, out, workers, written)
                rec["key"] = key
                write_json(marker, rec)
                written.append(marker)
                n_done += 1
            per_mic[m.stem] = rec
            bar.set_postfix(particles=sum(r["n_extracted"] for r in per_mic.values()))
        bar.close()
        optics = optics_table(_optics_rows(job, opts))
        rows = [r for rec in per_mic.values() for r in rec["rows"]]
        write_particles_star(out / "particles.star", optics, particles_table(rows))
        if opts.negatives:
            neg = [r for rec in per_mic.values() for r in rec.get("negatives", [])]
            write_particles_star(out / "negatives.star", optics, particles_table(neg))
    except BaseException as exc:
        if isinstance(exc, (InputError, ValueError, OSError)):
            _remove(written, out, created_out)
        raise
    summary = {
        "settings": settings, "request": _key(_request(opts, micrographs)), "invert": how,
        "options": asdict(opts), "config": config or {},
        "optics": {str(g): v for g, v in job.groups.items()},
        "n_micrographs": len(job.mics), "n_with_picks": len(per_mic), "n_redone": n_done,
        "n_picks": sum(r["n_picks"] for r in per_mic.values()),
        "n_particles": sum(r["n_extracted"] for r in per_mic.values()),
        "n_edge": sum(r["n_edge"] for r in per_mic.values()),
        "n_edge_skipped": sum(r["n_edge"] for r in per_mic.values()) if opts.edge == "skip" else 0,
        "n_outside": sum(r["n_outside"] for r in per_mic.values()),
        "n_negatives": sum(len(r.get("negatives", [])) for r in per_mic.values()),
        "micrographs_without_picks": job.no_picks, "unmatched_pick_files": [str(p) for p in job.unmatched],
        "per_micrograph": {s: {k: v for k, v in r.items() if k not in ("rows", "negatives", "key")}
                           for s, r in per_mic.items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(out / "extract.json", summary)
    return summary


def _request(opts: ExtractOptions, micrographs: str) -> dict[str, Any]:
    """What an ``invert=auto`` decision depends on (a rerun of the same request reuses it)."""
    return {"micrographs": str(micrographs), "box": opts.box, "bin": opts.bin, "diameter": opts.diameter,
            "target": opts.particle_contrast, "auto": opts.auto_micrographs}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _backbone_contrast(spec: str) -> str | None:
    """``particle_contrast`` of a backbone.json (a run dir, the .json or the .safetensors beside it)."""
    p = Path(spec)
    meta = p / "backbone.json" if p.is_dir() else p.with_suffix(".json")
    if not meta.is_file():
        raise InputError(spec, "no backbone.json here")
    try:
        value = json.loads(meta.read_text()).get("particle_contrast")
    except ValueError as exc:
        raise InputError(meta, f"not valid JSON ({exc})") from None
    if value is not None and value not in contrast_mod.CONTRASTS:
        raise InputError(meta, f"particle_contrast {value!r} is not dark or bright")
    return value


def _remove(written: list[Path], out: Path, created_out: bool) -> None:
    """Delete what this run wrote (bad input found mid-way), and the folders it made if empty."""
    for p in written:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    if created_out:
        for d in (out / PARTICLES, out):
            with contextlib.suppress(OSError):
                d.rmdir()
