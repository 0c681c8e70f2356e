"""End to end: a small confounded dataset, a tiny exported backbone, ``eval/probe.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from cryofm.data.ingest import ingest_arrays
from cryofm.data.split import make_split
from cryofm.models.backbone import backbone_kwargs, create_backbone
from cryofm.models.export import export_backbone
from cryofm.probe import run as probe_run
from cryofm.probe.run import run_probe

ROOT = Path(__file__).resolve().parents[1]
BOX = 32
# experiment -> (protein class, defocus range Å): defocus is confounded with the experiment
EXPS = {
    "exA1": ("disk", (8000, 14000)),
    "exB1": ("ring", (14000, 20000)),
    "exA2": ("disk", (16000, 22000)),
    "exB2": ("ring", (6000, 12000)),
    "exA3": ("disk", (9000, 21000)),
    "exB3": ("ring", (7000, 19000)),
}


def _particles(cls, dz_range, n, rng):
    """A disk or a ring (the class, visible in pixels) plus a left-right ramp scaled by defocus (the
    nuisance, linear in the pixels) and noise."""
    yy, xx = np.mgrid[:BOX, :BOX] - (BOX - 1) / 2
    r = np.hypot(yy, xx)
    shape = (r < 7).astype(float) if cls == "disk" else ((r > 6) & (r < 9)).astype(float)
    for _ in range(n):
        dz = rng.uniform(*dz_range)
        img = 2.0 * shape + (dz / 10000.0) * (xx / BOX) * 3.0 + 0.3 * rng.normal(size=(BOX, BOX))
        yield img, {"DefocusU": dz, "DefocusV": dz + 200.0, "DefocusAngle": rng.uniform(0, 180)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    data = tmp / "data"
    rng = np.random.default_rng(0)
    for exp, (cls, dz) in EXPS.items():
        mw = 200.0 if cls == "disk" else 600.0
        ingest_arrays(
            data,
            exp,
            list(_particles(cls, dz, 40, rng)),
            n=40,
            box=BOX,
            progress=False,
            facts={"ProteinClass": cls, "MolecularWeight": mw, "ImagePixelSize": 1.0, "Voltage": 300.0},
        )
    make_split(data, seed=0, fractions=(0.7, 0.15, 0.15), heldout=["exA3", "exB3"])
    split = json.loads((data / "split.json").read_text())["assignment"]
    if "val" not in split.values():  # keep one val experiment for the OOD strength choice
        split["exB2"] = "val"
        (data / "split.json").write_text(json.dumps({"assignment": split}))
    torch.manual_seed(0)
    name, extra = "vit_small_patch16_224", {"depth": 2, "embed_dim": 32, "num_heads": 2}
    model = create_backbone(name, img_size=BOX, **extra)
    export_backbone(
        model,
        name,
        backbone_kwargs(name, BOX, **extra),
        tmp / "run",
        extra={"image_size": BOX, "pixel_mean": 0.0, "pixel_std": 1.0},
    )
    return tmp, data


TASKS = [
    {"name": "ProteinClass", "source": "ProteinClass", "kind": "categorical"},
    {"name": "MolecularWeight_reg", "source": "MolecularWeight", "kind": "regression"},
]


def _cfg(tmp, data, out, *extra):
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "probe"), version_base="1.3"):
        cfg = compose(
            "probe",
            [
                f"checkpoint={tmp / 'run'}",
                f"data={data}",
                f"out={out}",
                "tasks=quick",
                f"cache_dir={tmp / 'cache'}",
                "progress=false",
                "features.device=cpu",
                "baselines.pixels=8",
                "probe.logistic_C=[0.1,1.0]",
                "probe.ridge_alpha=[0.1,10.0]",
                *extra,
            ],
        )
    cfg.tasks = TASKS  # two tasks keep the test short
    return cfg


def test_probe_report_and_erasure_on_confounded_data(setup):
    tmp, data = setup
    out = tmp / "out1"
    m = run_probe(_cfg(tmp, data, out))
    for f in ("report.html", "report.md", "metrics.json"):
        assert (out / f).is_file()
    assert json.loads((out / "metrics.json").read_text())["sets"] == m["sets"]
    assert m["experiments"]["heldout"] == ["exA3", "exB3"]
    assert m["sets"]["test_ood"] == 80
    # the class is drawn in the pixels: the pixel baseline recognises it in unseen experiments
    s = m["summary"]["ProteinClass"]["pixels"]
    assert s["id"] > 0.95 and s["ood"] > 0.95
    assert set(m["summary"]["ProteinClass"]) == {"model", "random_init", "pixels"}
    # the nuisance (defocus ramp) is linearly readable from pixels, and gone after removal
    pred = {
        (r["erasure"], r["parameter"]): r["r2"]
        for r in m["acquisition_predictability"]
        if r["source"] == "pixels" and r["protocol"] == "ood"
    }
    assert pred[("none", "DefocusU")] > 0.8
    assert pred[("regress_out", "DefocusU")] < 0.2
    assert pred[("leace", "DefocusU")] < 0.2
    # constant voltage / pixel size carry nothing to remove and are left out
    assert "Voltage" not in m["erasure"]["model"]["parameters"]
    html = (out / "report.html").read_text()
    assert "ProteinClass" in html and "data:image/png;base64" in html and "regress-out" in html


def test_other_probe_settings_reuse_cached_features(setup, monkeypatch):
    tmp, data = setup
    lean = ("baselines.random_init=false", "erasure=[]", "erase_baselines=false")
    first = run_probe(_cfg(tmp, data, tmp / "a", *lean))

    def no_load(*a, **k):
        raise AssertionError("a fully cached run must not load the backbone")

    monkeypatch.setattr(probe_run, "load_backbone", no_load)
    m = run_probe(_cfg(tmp, data, tmp / "b", *lean, "probe.seed=1", "probe.cap=20"))
    monkeypatch.undo()
    assert all(m["features_from_cache"].values()) and set(m["features_from_cache"]) == {"model", "pixels"}
    n_train = {r["task"]: r["n_train"] for r in m["results"] if r["source"] == "model"}
    n_first = {r["task"]: r["n_train"] for r in first["results"] if r["source"] == "model"}
    assert n_train["ProteinClass"] == 40 < n_first["ProteinClass"]  # capped: 20 per class
    m4 = run_probe(
        _cfg(
            tmp,
            data,
            tmp / "c",
            "features.last_blocks=2",
            "baselines.random_init=false",
            "baselines.pixels=0",
            "erasure=[]",
        )
    )
    assert m4["features_from_cache"] == {"model": False} and m4["feature_dims"]["model"] == 2 * 2 * 32


def test_cli_bad_checkpoint_is_one_line_and_leaves_no_output(setup, tmp_path):
    tmp, data = setup
    out = tmp_path / "never"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "probe.py"),
            f"checkpoint={tmp_path}",
            f"data={data}",
            f"out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "backbone.safetensors" in err[0] and str(tmp_path) in err[0]
    assert not out.exists()


def test_bad_inputs_are_named(setup, tmp_path):
    from omegaconf import OmegaConf

    from cryofm.errors import InputError
    from cryofm.probe.inputs import check_inputs

    tmp, data = setup
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "backbone.safetensors").write_bytes((tmp / "run" / "backbone.safetensors").read_bytes())
    nosplit = tmp_path / "nosplit"
    nosplit.mkdir()
    (nosplit / "manifest.json").write_text((data / "manifest.json").read_text())
    good = {"checkpoint": str(tmp / "run"), "data": str(data), "out": str(tmp_path / "o")}
    for bad, match in (
        ({"checkpoint": str(lone)}, "backbone.json missing"),
        ({"data": str(nosplit)}, "split.json"),
        ({"data": str(tmp_path)}, "manifest.json"),
    ):
        with pytest.raises(InputError, match=match):
            check_inputs(OmegaConf.create({**good, **bad}))
    check_inputs(OmegaConf.create(good))  # the good inputs pass
    assert not (tmp_path / "o").exists()
