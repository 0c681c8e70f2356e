"""The demo report shows the numbers the stages wrote (read back from their files, not recomputed)."""

from __future__ import annotations

import json
import math

from omegaconf import OmegaConf

from cryofm.demo.report import write_report


def _pick_metrics(p: float, r: float, f1: float, best: float, ap: float) -> dict:
    pooled = {"n_picks": 50, "n_truth": 40, "precision": p, "recall": r, "f1": f1}
    return {"operating": {"pooled": pooled}, "best": {"f1": best}, "ap": ap, "seconds_per_micrograph": 1.5}


def test_report_reads_every_stage_output(tmp_path):
    out = tmp_path
    (out / "dataset").mkdir()
    exp = {"n": 400, "facts": {"Symmetry": "D7", "MolecularWeight": 801.5, "MaxDiameter": 184.0},
           "acquisition": {"pixel_size": 4.61, "voltage": 300.0, "dose": 53.75, "defocus_centre": 20000.0},
           "density": {"kind": "map"}}
    sim = {"preset": "demo", "confound": True, "image_size": 64,
           "experiments": {"groel": exp, "ring": {**exp, "facts": {"Symmetry": "C7"}},
                           "background": {"n": 600, "facts": {"ProteinClass": "background"},
                                          "micrographs": 12}},
           "split": {"groel": "train", "ring": "heldout", "background": "train"}}
    (out / "dataset" / "simulation.json").write_text(json.dumps(sim))
    (out / "run").mkdir()
    rows = [{"step": i, "loss": 10.0 - i, "dino_loss": 6.93 - 0.1 * i, "ibot_loss": 3.4, "koleo_loss": 0.5,
             "lr": 1e-4 * i, "last_layer_lr": 0.0, "wd": 0.04, "momentum": 0.99, "teacher_temp": 0.04,
             "step_time": 2.0} for i in range(3)]
    (out / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "pick").mkdir()
    pick = {"n_micrographs": 6, "diameter_px": 56.0, "match_radius_px": 28.0,
            "pickers": {"features": _pick_metrics(0.4567, 0.5, 0.4774, 0.5012, 0.3333),
                        "dog": _pick_metrics(0.8123, 0.9, 0.8539, 0.8601, 0.7777)}}
    (out / "pick" / "metrics.json").write_text(json.dumps(pick))
    records = [
        {"name": "simulate", "title": "simulate", "status": "ran", "seconds": 12.25, "command": "cryofm x"},
        {"name": "train", "title": "train", "status": "reused", "seconds": 600.0, "command": "python y"},
    ]

    html, md = write_report(OmegaConf.create({"out": str(out)}), out, records)
    text = md.read_text()
    page = html.read_text()
    # stages and their total time
    assert "| simulate | simulate | ran | 12.2 |" in text and "| total |  |  | 612.2 |" in text
    # the dataset table from simulation.json, sorted train first
    assert text.index("| groel | train |") < text.index("| ring | heldout |") and "801.5" in text
    # background boxes: a row of their own, counted apart from the simulated experiments
    assert "| background | train | 600 | windows of 12 micrographs |" in text
    assert "2 simulated experiments of 64 px particles (preset 'demo') plus an experiment of background" \
        in text
    # the training numbers from metrics.jsonl
    assert "6.930 → 6.730" in text and f"{math.log(1024):.3f}" not in text  # no config: no ln K row
    # picking from metrics.json, both pickers
    assert "| frozen features (PC1) | 50 | 40 | 0.457 | 0.500 | 0.477 | 0.501 | 0.333 |" in text
    assert "| DoG baseline | 50 | 40 | 0.812 | 0.900 | 0.854 | 0.860 | 0.778 |" in text
    # figures: the training curves are drawn from the same rows and embedded in the HTML
    assert (out / "figures" / "train_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in page and "Configuration and versions" in page


def test_verdict_says_where_the_model_wins_and_where_not(tmp_path):
    out = tmp_path
    (out / "run").mkdir()
    rows = [{"step": i, "loss": 1.0, "dino_loss": math.log(256) * f, "ibot_loss": 1.0, "koleo_loss": 0.0}
            for i, f in enumerate([1.0] * 9 + [0.8])]  # the last tenth: 0.80 ln K
    (out / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from cryofm.cli import compose

    cfg = compose("train", ["experiment=tiny", "ssl.dino.head.n_prototypes=256"])
    OmegaConf.save(cfg, out / "run" / "config.yaml")
    summary = {"Symmetry": {"model": {"id": 0.60, "ood": 0.30}, "random_init": {"id": 0.40, "ood": 0.31},
                            "pixels": {"id": 0.50, "ood": 0.20}},
               "PixelSize": {"model": {"id": 0.10, "ood": -0.5}, "random_init": {"id": 0.20, "ood": -0.6},
                             "pixels": {"id": 0.30, "ood": -0.1}},
               "acquisition_r2": {}}
    (out / "probe").mkdir()
    (out / "probe" / "metrics.json").write_text(json.dumps({"summary": summary}))
    (out / "pick").mkdir()
    pick = {"pickers": {"features": _pick_metrics(0.5, 0.5, 0.61, 0.7, 0.5),
                        "dog": _pick_metrics(0.5, 0.5, 0.55, 0.6, 0.5)}}
    (out / "pick" / "metrics.json").write_text(json.dumps(pick))
    from cryofm.demo.report import _verdict
    from cryofm.report import Report

    rep = Report("t", "")
    _verdict(rep, out)
    _, md = rep.write(tmp_path / "report")
    text = md.read_text()
    assert "the DINO loss ends at 0.80 × ln K (below a uniform guess" in text
    assert ("Probes, in-distribution: better than random init (by > 0.02) on Symmetry (0.60 vs 0.40); "
            "not on PixelSize (0.10 vs 0.20); better than raw pixels on Symmetry (0.60 vs 0.50).") in text
    assert ("Probes, held-out experiments: better than random init (by > 0.02) on "
            "PixelSize (-0.50 vs -0.60)") in text
    assert "features F1 0.61 vs DoG 0.55 at each picker's own threshold (features ahead)" in text
