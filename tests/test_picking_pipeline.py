"""End to end: eval/pick.py's library function on planted micrographs, exports read back, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cryofm.cli import compose
from cryofm.errors import InputError
from cryofm.features.sliding import dense_features, fast_features
from cryofm.io.coords import read_picks, write_picks
from cryofm.models.backbone import backbone_kwargs, create_backbone
from cryofm.models.export import export_backbone
from cryofm.picking.dog import dog_score_map
from cryofm.picking.metrics import score_micrographs
from cryofm.picking.micrograph_pca import run_micrograph_pca
from cryofm.picking.pca import feature_score_map, kmeans_map, pca_rgb
from cryofm.picking.picker import pick
from cryofm.picking.run import run_pick
from tests.picking_synth import planted_micrograph
from tests.test_features_sliding import PixelProbe

D = 32


def _write_mics(tmp_path, n=2, size=384):
    mdir, gdir = tmp_path / "mics", tmp_path / "gt"
    truths = {}
    for k in range(n):
        img, xy = planted_micrograph(size=size, diameter=D, n=25, noise=0.8, seed=10 + k)
        u8 = np.clip((img - img.min()) / (img.max() - img.min()) * 255, 0, 255).astype(np.uint8)
        mdir.mkdir(exist_ok=True)
        Image.fromarray(u8).save(mdir / f"m{k}.png")  # 8-bit PNG, as CryoPPP ships them
        write_picks(gdir / f"m{k}.csv", xy, diameter=D)
        truths[f"m{k}"] = xy
    return mdir, gdir, truths


def _cfg(**kw):
    return compose("pick", [f"{k}={v}" for k, v in kw.items()] + ["progress=false"])


def test_pick_dog_end_to_end(tmp_path):
    mdir, gdir, truths = _write_mics(tmp_path)
    out = tmp_path / "out"
    m = run_pick(_cfg(micrographs=mdir, diameter=D, picker="dog", out=out, ground_truth=gdir))
    assert m["pooled"]["f1"] > 0.9 and m["pickers"]["dog"]["best"]["f1"] >= m["pooled"]["f1"] - 1e-9
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["per_micrograph"]["m0"]["n_truth"] == len(truths["m0"])
    # every export reads back to the same picks, and they score like the metrics say
    xy_star, s_star = read_picks(out / "picks" / "m1.star")
    for suffix in (".box", ".csv", ".txt"):
        np.testing.assert_allclose(read_picks(out / "picks" / f"m1{suffix}")[0], xy_star, atol=1e-3)
    m1 = score_micrographs([xy_star], [truths["m1"]], D / 2)["pooled"]
    assert m1["tp"] == on_disk["per_micrograph"]["m1"]["tp"]
    assert (out / "report.html").is_file() and (out / "figures" / "overlay_m0.png").is_file()
    # resume: the cache is reused and gives the same numbers
    again = run_pick(_cfg(micrographs=mdir, diameter=D, picker="dog", out=out, ground_truth=gdir))
    assert again["pooled"] == m["pooled"]
    # a changed setting is not served from the stale cache
    before = (out / "cache" / "m0.npz").stat().st_mtime_ns
    run_pick(_cfg(micrographs=mdir, diameter=D, picker="dog", out=out, ground_truth=gdir,
                  **{"pick.nms": 0.9}))
    assert (out / "cache" / "m0.npz").stat().st_mtime_ns != before
    with np.load(out / "cache" / "m0.npz") as z:
        assert json.loads(str(z["key"]))["pick"]["nms"] == 0.9


@pytest.mark.parametrize("path", ["dense", "fast"])
def test_feature_picker_with_known_features_finds_planted(path):
    # PixelProbe's features are local pixel means: PC1 is then the local contrast, so the whole
    # chain (grid alignment → PCA → label-free sign → NMS → refinement) must find the particles.
    img, truth = planted_micrograph(size=384, diameter=D, n=25, noise=0.6, seed=3)
    meta = {"image_size": 32}
    if path == "dense":
        grid = dense_features(PixelProbe(8), meta, img, D, box_factor=1.0, stride=D / 4, invert=True)
    else:
        grid = fast_features(PixelProbe(8), meta, img, D, box_factor=1.0, shifts=4, invert=True, tile=0)
    smap, _, sign = feature_score_map(grid, sign="dog", prior=dog_score_map(img, D))
    picks = pick(smap, D)
    assert score_micrographs([picks.xy], [truth], D / 2)["pooled"]["f1"] > 0.8
    # the sign rule is what made it work: the opposite sign scores poorly
    smap.values = -smap.values
    assert score_micrographs([pick(smap, D).xy], [truth], D / 2)["pooled"]["f1"] < 0.5
    rgb, lab = pca_rgb(grid.features), kmeans_map(grid.features)
    assert rgb.shape == grid.features.shape[:2] + (3,) and rgb.min() >= 0 and rgb.max() <= 1
    assert set(np.unique(lab)) == {0, 1} and (lab == 0).sum() >= (lab == 1).sum()


def test_feature_picker_runs_from_exported_backbone(tmp_path):
    mdir, gdir, _ = _write_mics(tmp_path, n=1, size=256)
    torch.manual_seed(0)
    name = "vit_small_patch16_dinov3_qkvb"
    kw = backbone_kwargs(name, 32, depth=1, embed_dim=32, num_heads=2)
    export_backbone(create_backbone(name, 32, depth=1, embed_dim=32, num_heads=2), name, kw, tmp_path / "run",
                    extra={"image_size": 32, "pixel_mean": 0.0, "pixel_std": 1.0})
    out = tmp_path / "out"
    m = run_pick(_cfg(micrographs=mdir, diameter=D, picker="features", checkpoint=tmp_path / "run", out=out,
                      ground_truth=gdir))
    assert set(m["pickers"]) == {"features", "dog"}  # the classical baseline is always in the report
    assert (out / "picks" / "m0.star").is_file() and (out / "cache" / "m0.npz").is_file()
    # the PCA app on the same backbone: a panel per micrograph and an RGB image at micrograph size
    cfg = compose("micrograph_pca", [f"micrographs={mdir}", f"diameter={D}", f"checkpoint={tmp_path / 'run'}",
                                      f"out={tmp_path / 'pca'}", "progress=false"])
    assert run_micrograph_pca(cfg) == [str(tmp_path / "pca" / "m0.png")]
    rgb = np.asarray(Image.open(tmp_path / "pca" / "pca" / "m0.png"))
    assert rgb.shape == (256, 256, 3) and rgb.std() > 0
    # retrained in the same run dir: neither the pick cache nor the PCA panel is reused
    panel = (tmp_path / "pca" / "m0.png").stat().st_mtime_ns
    cached = (out / "cache" / "m0.npz").stat().st_mtime_ns
    torch.manual_seed(1)
    export_backbone(create_backbone(name, 32, depth=1, embed_dim=32, num_heads=2), name, kw, tmp_path / "run",
                    extra={"image_size": 32, "pixel_mean": 0.0, "pixel_std": 1.0})
    run_pick(_cfg(micrographs=mdir, diameter=D, picker="features", checkpoint=tmp_path / "run", out=out,
                  ground_truth=gdir))
    assert (out / "cache" / "m0.npz").stat().st_mtime_ns != cached
    run_micrograph_pca(cfg)
    assert (tmp_path / "pca" / "m0.png").stat().st_mtime_ns != panel
    rgb2 = np.asarray(Image.open(tmp_path / "pca" / "pca" / "m0.png"))
    assert not np.array_equal(rgb, rgb2)  # other weights, other features


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path):
    mdir, gdir, _ = _write_mics(tmp_path, n=1, size=128)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="checkpoint"):
        run_pick(_cfg(micrographs=mdir, diameter=D, picker="features", out=out))
    with pytest.raises(InputError, match="diameter"):
        run_pick(_cfg(micrographs=mdir, diameter="abc", picker="dog", out=out))
    with pytest.raises(InputError, match="no micrographs"):
        run_pick(_cfg(micrographs=tmp_path / "nothing", diameter=D, picker="dog", out=out))
    with pytest.raises(InputError, match="ground truth"):
        run_pick(_cfg(micrographs=mdir, diameter=D, picker="dog", out=out, ground_truth=tmp_path / "mics2"))
    assert not out.exists()
