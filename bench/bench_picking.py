"""Unsupervised picking against the micrograph SNR: the features picker of a trained checkpoint, the
same architecture at random init, and DoG, on simulated micrographs with known particle centres.

For each micrograph SNR, ``cryofm simulate mode=micrographs preset=<preset> micrograph_snr=<snr>``
makes the micrographs; each picker runs as ``eval/pick.py`` runs it (the ``pick`` config's
defaults — PC1 score map signed by DoG, Otsu threshold on the candidates — with the fast and the dense
window features, ``--paths``) and is
scored pooled over the micrographs (match within 0.5 × diameter): F1 at the picker's own threshold,
and — threshold-free, to tell the score map from the threshold rule — average precision and the best
F1 over one threshold shared by all micrographs.

    .venv/bin/python bench/bench_picking.py --run <demo out>/run     # ~3 min on a 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def score(picks: list, truths: list[np.ndarray], radius: float) -> dict[str, float]:
    """Pooled F1 at the own threshold, AP and best F1 of a picker's results."""
    from cryofm.picking.metrics import pr_curve, score_micrographs

    own = score_micrographs([p.xy for p in picks], truths, radius)["pooled"]
    pr = pr_curve([p.candidates_xy for p in picks], [p.candidates_scores for p in picks], truths, radius)
    return {"f1": own["f1"], "precision": own["precision"], "recall": own["recall"], "ap": pr["ap"],
            "best_f1": pr["best"]["f1"]}


def evaluate(mics: Path, models: dict, meta: dict,
             overrides: list[str]) -> tuple[float, dict[str, dict[str, float]]]:
    """Scores of DoG and of the features picker of every model on the micrographs in ``mics``."""
    from cryofm.cli import compose
    from cryofm.features.sliding import micrograph_features
    from cryofm.io.micrograph import read_micrograph
    from cryofm.picking.dog import dog_score_map
    from cryofm.picking.pca import feature_score_map
    from cryofm.picking.picker import pick
    from cryofm.picking.run import feature_kwargs, pick_options
    from cryofm.picking.truth import load_ground_truth
    from cryofm.simulate.micrograph import median_diameter

    d = median_diameter(mics)
    files = sorted((mics / "micrographs").glob("*.mrc"))
    cfg = compose("pick", [f"micrographs={mics / 'micrographs'}", f"diameter={d}", "out=unused",
                           "progress=false", *overrides])
    truths = load_ground_truth(mics / "picks" / "star", [f.stem for f in files], d)
    opts = pick_options(cfg)
    kw = feature_kwargs(cfg, meta)
    picks: dict[str, list] = {"dog": [], **{name: [] for name in models}}
    for f in files:
        img = read_micrograph(f)
        dmap = dog_score_map(img, d, particle_contrast=str(cfg.contrast), k=float(cfg.dog.k))
        picks["dog"].append(pick(dmap, d, **opts))
        for name, model in models.items():
            grid = micrograph_features(model, meta, img, d, **kw)
            smap, _, _ = feature_score_map(grid, sign=cfg.features.sign, prior=dmap)
            picks[name].append(pick(smap, d, **opts))
    t = [truths[f.stem].xy for f in files]
    radius = float(cfg.scoring.radius) * d
    return d, {name: score(p, t, radius) for name, p in picks.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="training run dir or backbone file (e.g. the demo's run)")
    ap.add_argument("--snr", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0], help="micrograph SNRs")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--paths", nargs="+", default=["fast", "dense"], help="features.path values to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="folder for the micrographs (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS / "picking.txt")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("override", nargs="*", help="eval/pick.py key=value overrides (e.g. features.path=dense)")
    args = ap.parse_args()

    import torch

    from cryofm.cli import compose
    from cryofm.models.backbone import random_backbone
    from cryofm.models.export import load_backbone
    from cryofm.simulate.commands import simulate

    torch.set_num_threads(args.threads)
    model, meta = load_backbone(args.run, device=torch.device("cpu"))
    rand = random_backbone(str(meta["model_name"]), dict(meta.get("kwargs") or {}), args.seed).eval()
    models = {"features": model, "features, random init": rand}
    work = Path(args.work or tempfile.mkdtemp(prefix="cryofm_picking_"))
    lines = [f"machine: {platform.machine()} CPU, {args.threads} threads; torch {torch.__version__}",
             f"checkpoint: {meta.get('model_name')} {json.dumps(meta.get('kwargs', {}), sort_keys=True)}, "
             f"step {meta.get('step')}, trained on {meta.get('image_size')} px particles",
             f"micrographs: cryofm simulate mode=micrographs preset={args.preset} seed={args.seed} "
             "micrograph_snr=<SNR>; picking as eval/pick.py's defaults"
             + (f" with {' '.join(args.override)}" if args.override else "")
             + "; pooled over the micrographs",
             "columns: F1 at the picker's own threshold (precision / recall) | AP | best F1 at one shared "
             "threshold"]
    print(*lines, sep="\n", flush=True)
    for snr in args.snr:
        mics = work / f"snr_{snr:g}"
        if not (mics / "ground_truth.json").is_file():
            simulate(compose("simulate", [f"preset={args.preset}", f"seed={args.seed}", "mode=micrographs",
                                          f"micrograph_snr={snr}", f"out={mics}"]))
        for path in args.paths:
            d, res = evaluate(mics, models, meta, [f"features.path={path}", *args.override])
            cells = [f"{name} {r['f1']:.3f} ({r['precision']:.2f}/{r['recall']:.2f}) | AP {r['ap']:.3f} | "
                     f"best {r['best_f1']:.3f}" for name, r in res.items()
                     if name != "dog" or path == args.paths[0]]  # DoG does not depend on the path
            lines.append(f"SNR {snr:5.2f} (d {d:.0f} px), {path:5s}: " + " || ".join(cells))
            print(lines[-1], flush=True)
    if not args.no_write:
        from cryofm.utils.atomic import write_text

        write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
