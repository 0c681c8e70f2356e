"""Multi-crop augmentation: exact geometry, stated probabilities, blur and jitter magnitudes."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from cryofm.data.augment import CropSpec, MultiCropConfig, gaussian_blur, make_crops, multicrop_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw) -> MultiCropConfig:
    return MultiCropConfig(flip=kw.pop("flip", False), rot90=kw.pop("rot90", False), **kw)


def _spec(n: int, size: int = 32, **kw) -> CropSpec:
    base = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), blur_p=0.0, jitter_p=0.0, noise_p=0.0)
    base.update(kw)
    return CropSpec(n, size, **base)


def test_full_crop_is_identity_and_rotations_are_exact():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(1, 32, 32)
    out = make_crops(img, _spec(3), _cfg(), g)
    assert out.shape == (3, 1, 32, 32)
    assert torch.allclose(out[:, 0], img.expand(3, 32, 32), atol=1e-5)
    # flips + 90° rotations: each crop is one of the 8 dihedral images of the particle, all 8 occur
    out = make_crops(img, _spec(64), _cfg(flip=True, rot90=True), g)[:, 0]
    d8 = [torch.rot90(im, k, (0, 1)) for im in (img[0], img[0].flip(1)) for k in range(4)]
    found = [next(i for i, d in enumerate(d8) if torch.allclose(o, d, atol=1e-5)) for o in out]
    assert set(found) == set(range(8))


def test_crop_scale_area_and_crop_major_order():
    g = torch.Generator().manual_seed(1)
    imgs = torch.zeros(2, 64, 64)
    imgs[1] += 1.0  # particle 1 is constant 1, particle 0 constant 0
    out = make_crops(imgs, _spec(3, 16, scale=(0.05, 0.3)), _cfg(), g)
    assert out.shape == (6, 1, 16, 16)
    assert torch.allclose(out[0::2], torch.zeros(3, 1, 16, 16)) and torch.allclose(
        out[1::2], torch.ones(3, 1, 16, 16)
    )
    # a ramp image: the crop's value range measures its width (area fraction in [0.05, 0.3])
    ramp = torch.linspace(0, 1, 256).expand(256, 256).clone()
    c = make_crops(ramp, _spec(200, 32, scale=(0.05, 0.3)), _cfg(), g)[:, 0]
    width = c.amax(dim=(1, 2)) - c.amin(dim=(1, 2))  # fraction of the image width (ratio 1: sqrt area)
    assert width.min() > 0.05**0.5 * 0.9 and width.max() < 0.3**0.5 * 1.05


def test_blur_applied_with_the_stated_probability():
    g = torch.Generator().manual_seed(2)
    img = torch.randn(1, 112, 112)
    cfg = _cfg(blur_sigma=(2.0, 4.0))  # px at 224: 1-2 px at 112
    for p in (0.1, 0.9):
        out = make_crops(img, _spec(400, 112, blur_p=p), cfg, g)[:, 0]
        changed = (out - img).abs().amax(dim=(1, 2)) > 1e-4
        assert abs(changed.float().mean().item() - p) < 0.05  # not 1 - p (DINOv2's inversion)
    # per-crop probabilities of the global crops: crop 1 always, crop 2 never
    out = make_crops(img.expand(50, 112, 112), _spec(2, 112, blur_p=[1.0, 0.0]), cfg, g)[:, 0]
    changed = (out - img).abs().amax(dim=(1, 2)) > 1e-4
    assert changed[:50].all() and not changed[50:].any()


def test_gaussian_blur_of_an_impulse():
    x = torch.zeros(2, 1, 33, 33)
    x[:, 0, 16, 16] = 1.0
    y = gaussian_blur(x, torch.tensor([1.0, 2.0]))[:, 0]
    assert torch.allclose(y.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)
    r2 = (torch.arange(33) - 16.0) ** 2
    var = (y.sum(1) * r2).sum(1)  # variance along one axis = sigma^2
    assert torch.allclose(var, torch.tensor([1.0, 4.0]), rtol=0.02)


def test_brightness_contrast_ranges():
    g = torch.Generator().manual_seed(3)
    img = torch.randn(1, 32, 32)
    out = make_crops(img, _spec(300, jitter_p=1.0), _cfg(brightness=0.4, contrast=0.4), g)[:, 0]
    x = img[0].flatten()
    y = out.flatten(1)
    c = ((y - y.mean(1, keepdim=True)) * (x - x.mean())).sum(1) / ((x - x.mean()) ** 2).sum()
    b = y.mean(1) - c * x.mean()
    assert c.min() >= 0.6 - 1e-4 and c.max() <= 1.4 + 1e-4 and c.max() - c.min() > 0.6
    assert b.abs().max() <= 0.4 + 1e-4 and b.max() - b.min() > 0.5


def test_crop_sizes_scale_with_image_size():
    aug = OmegaConf.load("configs/augment/multicrop.yaml")
    big, tiny = multicrop_config(aug, 224), multicrop_config(aug, 64)
    assert (big.global_crops.size, big.local_crops.size) == (224, 96)
    assert (tiny.global_crops.size, tiny.local_crops.size) == (64, 32)
    assert big.local_crops.n == 8 and big.global_crops.scale == (0.32, 1.0)
    assert big.global_crops.blur_p == [1.0, 0.1] and big.local_crops.blur_p == 0.5
