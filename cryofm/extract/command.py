"""``cryofm extract``: the thin entry point over :func:`cryofm.extract.run.extract`."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cryofm.errors import InputError
from cryofm.extract.run import ExtractOptions, extract


def _opt(cfg: DictConfig, key: str, kind: type):
    v = cfg.get(key)
    if v is None or v == "":
        return None
    try:
        return kind(v)
    except (TypeError, ValueError):
        raise InputError(key, f"expected a {kind.__name__}, got {v!r}") from None


def _required(cfg: DictConfig, key: str) -> str:
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise InputError(None, f"{key}=... is required")
    return str(cfg[key])


def _whole(cfg: DictConfig, key: str) -> int:
    v = _opt(cfg, key, float)
    if v is None or not float(v).is_integer():
        raise InputError(key, f"expected a whole number, got {cfg.get(key)!r}")
    return int(v)


def command(cfg: DictConfig) -> int:
    """Extract, then print the counts and where the particles.star is."""
    micrographs, coords, out = _required(cfg, "micrographs"), _required(cfg, "coords"), _required(cfg, "out")
    inv = cfg.get("invert")
    invert = {True: "true", False: "false"}.get(inv, str(inv).lower()) if inv is not None else "auto"
    opts = ExtractOptions(
        box=_whole(cfg, "box"), bin=_whole(cfg, "bin"), diameter=_opt(cfg, "diameter", float),
        edge=str(cfg.edge), norm=bool(cfg.norm), ramp=bool(cfg.ramp), invert=invert,
        particle_contrast=str(cfg.particle_contrast), negatives=_whole(cfg, "negatives"), seed=int(cfg.seed),
        pixel_size=_opt(cfg, "pixel_size", float), voltage=_opt(cfg, "voltage", float),
        cs=_opt(cfg, "cs", float), amplitude_contrast=_opt(cfg, "amplitude_contrast", float),
        coord_suffix=cfg.get("coord_suffix"), root=cfg.get("root"),
        auto_micrographs=int(cfg.auto_micrographs), threads=int(cfg.threads), progress=bool(cfg.progress),
        overwrite=bool(cfg.overwrite))
    s = extract(micrographs, coords, out, opts, ctf=cfg.get("ctf"), backbone=cfg.get("backbone"),
                config=OmegaConf.to_container(cfg, resolve=True))
    how = s["invert"]
    inv_txt = f"invert={str(s['settings']['invert']).lower()}"
    if how["mode"] == "auto":
        inv_txt += (f" (auto: particles {how['measured']} in the micrographs, {how['darker_fraction']:.0%} "
                    f"of picks darker inside; output {how['target']})")
    edge = (f"{s['n_edge']} boxes crossing the edge skipped" if opts.edge == "skip"
            else f"{s['n_edge']} boxes crossing the edge padded")
    print(f"{s['n_particles']} particles from {s['n_with_picks']} micrographs ({s['n_picks']} picks; {edge}; "
          f"{s['n_outside']} outside; {len(s['micrographs_without_picks'])} micrographs without picks; "
          f"{s['n_with_picks'] - s['n_redone']} reused from an earlier run)")
    apix = ", ".join(f"{g['pixel_size'] * opts.bin:g}" for g in s["optics"].values())
    print(f"box {opts.size} px at {apix} Å/px; {inv_txt}")
    if s["unmatched_pick_files"]:
        print(f"{len(s['unmatched_pick_files'])} pick file(s) matched no micrograph, e.g. "
              f"{s['unmatched_pick_files'][0]}")
    if opts.negatives:
        print(f"{s['n_negatives']} background windows: {Path(out) / 'negatives.star'}")
    print(f"particles: {Path(out) / 'particles.star'}")
    return 0
