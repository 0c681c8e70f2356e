"""On the simulator's confounded dataset (acquisition parameters follow the experiment), removing
acquisition parameters must measurably remove their signal from the features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from cryofm.models.backbone import backbone_kwargs, create_backbone
from cryofm.models.export import export_backbone
from cryofm.probe.run import run_probe
from cryofm.simulate.commands import simulate_dataset
from cryofm.simulate.presets import PRESET_DIR, resolve

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = [
    {"name": "blob_c1", "source": "procedural", "kind": "blob", "symmetry": "C1", "diameter": 70, "seed": 1},
    {"name": "ring_c5", "source": "procedural", "kind": "ring", "symmetry": "C5", "diameter": 90, "seed": 2},
    {"name": "rod_d2", "source": "procedural", "kind": "rod", "symmetry": "D2", "diameter": 120, "seed": 3},
    {"name": "blob_c3", "source": "procedural", "kind": "blob", "symmetry": "C3", "diameter": 100, "seed": 4},
    {"name": "ring_c7", "source": "procedural", "kind": "ring", "symmetry": "C7", "diameter": 110, "seed": 5},
    {"name": "rod_c2", "source": "procedural", "kind": "rod", "symmetry": "C2", "diameter": 140, "seed": 6},
]


@pytest.fixture(scope="module")
def confounded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    preset = yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text())
    preset.update(
        experiments=[{**e, "resolution": 10.0} for e in EXPERIMENTS],
        n_particles=50,
        split_fractions=[0.5, 0.17, 0.33],
        confound=True,
        snr=50.0,
        snr_spread=0.0,
    )
    (tmp / "six.yaml").write_text(yaml.safe_dump(preset))
    simulate_dataset(resolve({"preset": str(tmp / "six.yaml"), "seed": 0}), tmp / "data")
    torch.manual_seed(0)
    name, extra = "vit_small_patch16_224", {"depth": 2, "embed_dim": 64, "num_heads": 2}
    box = int(preset["box"])
    export_backbone(
        create_backbone(name, img_size=box, **extra),
        name,
        backbone_kwargs(name, box, **extra),
        tmp / "run",
        extra={"image_size": box, "pixel_mean": 0.0, "pixel_std": 1.0},
    )
    return tmp


def test_regress_out_removes_the_confounded_acquisition_signal(confounded):
    tmp = confounded
    assignment = json.loads((tmp / "data" / "split.json").read_text())["assignment"]
    assert sum(side == "train" for side in assignment.values()) >= 2
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "probe"), version_base="1.3"):
        cfg = compose(
            "probe",
            [
                f"checkpoint={tmp / 'run'}",
                f"data={tmp / 'data'}",
                f"out={tmp / 'out'}",
                f"cache_dir={tmp / 'cache'}",
                "progress=false",
                "features.device=cpu",
                "baselines.random_init=false",
                "baselines.pixels=6",
                "probe.ridge_alpha=[0.1,10.0]",
            ],
        )
    cfg.tasks = []  # only the erasure check is under test here
    m = run_probe(cfg)
    r2 = {
        (r["source"], r["erasure"], r["parameter"]): r["r2"]
        for r in m["acquisition_predictability"]
        if r["protocol"] == "id"
    }
    # per-experiment parameters that vary between the training experiments
    varied = [p for p in ("ImagePixelSize", "ElectronDose") if p in m["erasure"]["model"]["parameters"]]
    assert varied, m["erasure"]
    for src in ("model", "pixels"):
        for p in varied:
            before = r2[(src, "none", p)]
            assert before > 0.2, (src, p, before)  # the experiment, hence its acquisition, is readable
            for how in ("regress_out", "leace"):
                after = r2[(src, how, p)]  # chance is R² = 0
                assert after < 0.05 and before - after > 0.2, (src, how, p, before, after)
    assert (tmp / "out" / "report.html").is_file()
    assert np.isfinite(m["summary"]["acquisition_r2"]["ImagePixelSize"]["none"])
