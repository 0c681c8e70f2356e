"""Sliding-window features: grid aligned to micrograph pixels, both paths, real backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryofm.features.sliding import dense_features, fast_features, local_normalize, model_scale, rescale
from cryofm.features.standin import LocalMeanBackbone
from cryofm.models.backbone import create_backbone

PixelProbe = LocalMeanBackbone  # tokens are local means: features peak at bright spots


def _spot_image(shape, xy, sigma=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    rng = np.random.default_rng(0)
    img = 0.01 * rng.standard_normal(shape).astype(np.float32)
    return img + np.exp(-((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2) / (2 * sigma ** 2))


@pytest.mark.parametrize("xy", [(130.0, 77.0), (201.0, 150.0)])
def test_dense_grid_centres_land_on_the_spot(xy):
    img = _spot_image((240, 300), xy)
    meta = {"image_size": 32}
    g = dense_features(PixelProbe(), meta, img, diameter=24, box_factor=2.0, stride=4, batch_size=50)
    _, f = model_scale(24, 32, 2.0)  # 48 px windows → 1.5 micrograph px per model px
    assert g.step == pytest.approx(round(4 / f) * f, rel=0.02)
    cls = g.features[..., 0]
    i, j = np.unravel_index(np.argmax(cls), cls.shape)
    found = g.centres()[i, j]
    assert np.hypot(*(found - np.asarray(xy))) <= g.step  # within one grid step
    # the grid covers the whole micrograph
    assert g.centres()[..., 0].max() >= 300 - g.step - 1 and g.centres()[..., 1].min() <= 1


def test_fast_grid_centres_land_on_the_spot():
    xy = (173.0, 91.0)
    img = _spot_image((256, 320), xy)
    g = fast_features(PixelProbe(p=8), {"image_size": 32}, img, diameter=24, shifts=2, tile=0)
    centre = g.features[..., 0]  # central-half pooled token means
    i, j = np.unravel_index(np.argmax(centre), centre.shape)
    assert np.hypot(*(g.centres()[i, j] - np.asarray(xy))) <= 1.5 * g.step
    # tiled pass equals the whole pass away from tile seams for this local 'backbone'
    gt = fast_features(PixelProbe(p=8), {"image_size": 32}, img, diameter=24, shifts=2, tile=64)
    np.testing.assert_allclose(gt.features, g.features, atol=1e-5)


def test_rescale_keeps_mean_and_alignment():
    img = _spot_image((200, 240), (120.0, 60.0), sigma=6)
    small = rescale(img, 2.0)
    assert small.shape == (100, 120)
    assert small.mean() == pytest.approx(img.mean(), abs=1e-4)
    i, j = np.unravel_index(np.argmax(small), small.shape)
    assert (j * 2, i * 2) == (120, 60)  # sample k sits at input coordinate 2k


def test_local_normalize_unit_stats():
    rng = np.random.default_rng(1)
    img = (5 + 3 * rng.standard_normal((128, 128))).astype(np.float32)
    z = local_normalize(img, 32)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05


def test_real_backbones_dense_and_fast_shapes():
    torch.manual_seed(0)
    img = _spot_image((192, 192), (96.0, 96.0))
    for name in ("vit_small_patch16_dinov3_qkvb", "vit_small_patch16_224"):
        m = create_backbone(name, img_size=32, depth=1, embed_dim=32, num_heads=2).eval()
        d = dense_features(m, {"image_size": 32}, img, diameter=16, stride=16, batch_size=64)
        fst = fast_features(m, {"image_size": 32}, img, diameter=16, shifts=2, tile=0)
        assert d.features.shape[-1] == fst.features.shape[-1] == 64  # CLS ⊕ mean / centre ⊕ window
        assert np.isfinite(d.features).all() and np.isfinite(fst.features).all()
        # both grids span the micrograph
        for g in (d, fst):
            c = g.centres()
            assert c[..., 0].min() < g.step and c[..., 0].max() > 192 - 2 * g.step
