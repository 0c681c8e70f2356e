"""Background boxes of simulated datasets: windows away from every particle, training-only, never probed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryofm.cli import main
from cryofm.data import dataset
from cryofm.io.coords import read_picks
from cryofm.simulate.background import FACTS, NAME, SEED_OFFSET, cut_windows


def test_cut_windows_keep_away_from_planted_particles():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(200, 300)).astype(np.float32)
    centres = np.array([[50.0, 50.0], [150.0, 100.0], [250.0, 150.0]])
    wins, xy = cut_windows(image, centres, diameter=30.0, n=40, window=48, min_distance=0.8,
                           rng=np.random.default_rng(1))
    assert len(wins) == 40 and xy.shape == (40, 2)
    assert all(w.shape == (48, 48) for w in wins)
    d = np.hypot(*(xy[:, None, :] - centres[None]).transpose(2, 0, 1))
    assert d.min() >= 0.8 * 30.0
    # each window is the image around its centre (x = column, y = row; even edge: centre between pixels)
    for w, (x, y) in zip(wins, xy, strict=True):
        x0, y0 = int(round(x - 23.5)), int(round(y - 23.5))
        np.testing.assert_array_equal(w, image[y0:y0 + 48, x0:x0 + 48])
    # no room: a window larger than the image, or particles everywhere, gives fewer (here none)
    assert cut_windows(image, centres, 30.0, 5, 400, 0.8, rng)[0] == []
    dense = np.stack(np.meshgrid(np.arange(0, 300, 10.0), np.arange(0, 200, 10.0)), -1).reshape(-1, 2)
    assert cut_windows(image, dense, 30.0, 5, 48, 0.8, rng)[0] == []


@pytest.fixture(scope="module")
def demo_small(tmp_path_factory):
    root = tmp_path_factory.mktemp("bg")
    out = root / "ds"
    (root / "none").mkdir()  # a shared-data folder without maps: procedural stand-ins
    args = [f"shared_data={root / 'none'}", "experiments=[ring_d5,blob_c1,rod_d2]"]
    assert main(["simulate", "preset=demo", f"out={out}", "n_particles=8", "box=32", "image_size=32",
                 "seed=2", *args]) == 0
    assert main(["simulate", "preset=demo", f"out={root / 'plain'}", "n_particles=8", "box=32",
                 "image_size=32", "background_boxes=0", "seed=2", *args]) == 0
    # the same micrographs the background was cut from: seeded apart from the evaluation ones
    mics = root / "mics"
    assert main(["simulate", "mode=micrographs", "preset=demo", f"out={mics}", f"seed={2 + SEED_OFFSET}",
                 "n_micrographs=12", *args]) == 0
    return out, mics


def test_background_experiment_is_training_only_and_far_from_particles(demo_small):
    out, mics = demo_small
    man = dataset.load_manifest(out)
    bg = man["experiments"][NAME]
    assert bg["facts"]["ProteinClass"] == FACTS["ProteinClass"]
    assert 0 < bg["n"] <= 12 * 50
    split = json.loads((out / "split.json").read_text())
    assert split["assignment"][NAME] == "train" and split["train"] == [NAME]
    truth = json.loads((mics / "ground_truth.json").read_text())["micrographs"]
    diam = {m["micrograph"].rsplit("/", 1)[1]: m["diameter_px"] for m in truth}
    n = 0
    for img, rec in dataset.iter_samples(out, "train"):
        if rec["experiment"] != NAME:
            continue
        n += 1
        assert img.shape == (32, 32)
        stem = rec["MicrographName"].removesuffix(".mrc")
        xy, _ = read_picks(mics / "picks" / "star" / f"{stem}.star")
        dist = np.hypot(xy[:, 0] - rec["CoordinateX"], xy[:, 1] - rec["CoordinateY"]).min()
        assert dist >= 0.8 * diam[f"{stem}.mrc"] - 1e-6
    assert n == bg["n"]
    # the other experiments are split exactly as without the background (same seed, same groups)
    plain = json.loads((out.parent / "plain" / "split.json").read_text())["assignment"]
    assert NAME not in plain
    assert {e: s for e, s in split["assignment"].items() if e != NAME} == plain


def test_split_urls_leave_out_excluded_experiments(demo_small):
    out, _ = demo_small
    with_bg = dataset.split_urls(out, "train")
    without = dataset.split_urls(out, "train", exclude=[NAME, "not_there"])
    assert [u for u in with_bg if f"/{NAME}/" not in u] == without
    assert len(with_bg) == len(without) + 1


def test_a_preset_without_background_block_takes_the_override(tmp_path):
    out = tmp_path / "tiny"
    assert main(["simulate", "preset=tiny", f"out={out}", "n_particles=4", "background_boxes=3"]) == 0
    man = dataset.load_manifest(out)
    from cryofm.simulate.presets import load_preset

    n_mics = load_preset("tiny")["micrographs"]["n"]
    assert 0 < man["experiments"][NAME]["n"] <= 3 * n_mics
    assert json.loads((out / "simulation.json").read_text())["experiments"][NAME]["micrographs"] <= n_mics
