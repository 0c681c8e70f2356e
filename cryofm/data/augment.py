"""Multi-crop augmentation of single-channel float particles, as tensor ops (no PIL, no uint8).

Each crop is one affine resampling (``F.affine_grid`` + ``F.grid_sample``, bilinear) of the particle:
a random-resized-crop box (area fraction ``scale``, aspect ``ratio``) composed with a random flip and
a random multiple of 90° rotation (a particle has no canonical in-plane orientation), so all crops of
one size come out of a single call. Then, per crop and with the probabilities the config states
(the probability is that of *applying* the transform — DINOv2's ``GaussianBlur`` inverted it):
brightness/contrast jitter, Gaussian blur (depthwise separable convolution), additive Gaussian noise.

Pixel values stay float32 in units of the (normalised) particle's standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class CropSpec:
    """One kind of crop: how many, output size (px), area fraction range, and per-crop probabilities.

    ``blur_p``: a single value or one per crop (DINOv2 blurs global crop 1 always, crop 2 with 0.1).
    """

    n: int
    size: int
    scale: tuple[float, float]
    blur_p: float | list[float] = 0.5
    jitter_p: float = 0.8
    noise_p: float = 0.0
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


@dataclass
class MultiCropConfig:
    """Global and local crop specs plus the jitter / blur / noise magnitudes.

    ``brightness`` and ``contrast`` are in units of the particle std (x·c + b with
    c ∈ [1-contrast, 1+contrast], b ∈ [-brightness, brightness]); ``blur_sigma`` in px at 224 px crops
    (scaled with the crop size); ``noise_std`` is the largest added noise std.
    """

    global_crops: CropSpec = field(default_factory=lambda: CropSpec(2, 224, (0.32, 1.0), [1.0, 0.1]))
    local_crops: CropSpec = field(default_factory=lambda: CropSpec(8, 96, (0.05, 0.32), 0.5))
    flip: bool = True
    rot90: bool = True
    brightness: float = 0.4
    contrast: float = 0.4
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_std: float = 0.5


def crop_thetas(
    n: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip: bool,
    rot90: bool,
    g: torch.Generator,
) -> torch.Tensor:
    """Affine matrices [n, 2, 3] mapping output coords in [-1, 1] to input coords (``affine_grid``).

    The crop box has area fraction ``U(scale)`` and log-uniform aspect ``ratio`` (clipped to fit the
    image) at a uniform position; flips and 90° rotations are composed into the same matrix.
    """
    u = torch.rand(n, 4, generator=g, dtype=torch.float64)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    ar = torch.exp(logr)
    w = torch.sqrt(area * ar).clamp(max=1.0)  # fraction of the image width
    h = torch.sqrt(area / ar).clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)  # centre in [-1, 1] such that the box fits
    cy = (1 - h) * (2 * u[:, 3] - 1)
    k = torch.randint(0, 4, (n,), generator=g) if rot90 else torch.zeros(n, dtype=torch.long)
    f = torch.randint(0, 2, (n,), generator=g) if flip else torch.zeros(n, dtype=torch.long)
    ang = k.double() * (math.pi / 2)
    c, s = torch.cos(ang).round(), torch.sin(ang).round()
    sx = torch.where(f.bool(), -1.0, 1.0).double()
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    # input = diag(w, h) · R(k·90°) · diag(sx, 1) · output + centre
    theta[:, 0, 0], theta[:, 0, 1] = w * c * sx, -w * s
    theta[:, 1, 0], theta[:, 1, 1] = h * s * sx, h * c
    theta[:, 0, 2], theta[:, 1, 2] = cx, cy
    return theta.float()


def affine_grids(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(theta, [n, 1, size, size], align_corners=False)`` by broadcasting (several
    times faster than the generic batched matmul for small ``n``)."""
    u = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1  # pixel centres in [-1, 1]
    n = theta.shape[0]
    along_w = theta[:, :, 0].view(n, 1, 1, 2) * u.view(1, 1, -1, 1) + theta[:, :, 2].view(n, 1, 1, 2)
    along_h = theta[:, :, 1].view(n, 1, 1, 2) * u.view(1, -1, 1, 1)
    return along_w + along_h  # [n, size, size, 2]: one full-size operation


def _gaussian_kernels(sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x[None, :] / sigmas[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``x`` [n, 1, H, W] with its own ``sigmas`` [n] (px), reflect padding."""
    n = x.shape[0]
    radius = max(1, int(math.ceil(3 * float(sigmas.max()))))
    radius = min(radius, x.shape[-1] // 2 - 1) if x.shape[-1] > 3 else 1
    k = _gaussian_kernels(sigmas, radius)
    y = x.reshape(1, n, *x.shape[-2:])
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(y, k.view(n, 1, -1, 1), groups=n)
    return y.reshape_as(x)


def _per_crop_p(p: float | list[float], n: int) -> torch.Tensor:
    if isinstance(p, (int, float)):
        return torch.full((n,), float(p))
    p = list(p)
    if len(p) != n:
        raise ValueError(f"{len(p)} blur probabilities for {n} crops")
    return torch.tensor(p, dtype=torch.float32)


def make_crops(
    images: torch.Tensor, spec: CropSpec, cfg: MultiCropConfig, g: torch.Generator
) -> torch.Tensor:
    """``spec.n`` augmented crops of each particle of ``images`` [M, H, W] (float32).

    Returns [n·M, 1, size, size] in crop-major order (crop ``c`` of particle ``m`` at ``c·M + m``),
    all crops resampled by one ``grid_sample`` call.
    """
    if images.dim() == 2:
        images = images[None]
    n, size, M = spec.n, spec.size, images.shape[0]
    if n == 0:
        return images.new_zeros(0, 1, size, size)
    nc = n * M
    theta = crop_thetas(nc, spec.scale, spec.ratio, cfg.flip, cfg.rot90, g)
    # the n crops of a particle are stacked along the grid's height: one sampling call, no copies
    grid = affine_grids(theta, size).view(n, M, size, size, 2).transpose(0, 1).reshape(M, n * size, size, 2)
    out = F.grid_sample(
        images.unsqueeze(1), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    out = out.view(M, n, size, size).transpose(0, 1).reshape(nc, 1, size, size)
    u = torch.rand(nc, 6, generator=g)
    jit = u[:, 0] < spec.jitter_p
    if jit.any():
        c = torch.where(jit, 1 + cfg.contrast * (2 * u[:, 1] - 1), 1.0)
        b = torch.where(jit, cfg.brightness * (2 * u[:, 2] - 1), 0.0)
        out = out * c.view(nc, 1, 1, 1) + b.view(nc, 1, 1, 1)
    blur = u[:, 3] < _per_crop_p(spec.blur_p, n).repeat_interleave(M)
    if blur.any():
        lo, hi = cfg.blur_sigma
        sig = (lo + (hi - lo) * u[:, 4]) * (size / 224.0)
        idx = blur.nonzero().squeeze(1)
        out[idx] = gaussian_blur(out[idx], sig[idx].clamp_min(1e-3))
    noisy = u[:, 5] < spec.noise_p
    if noisy.any():
        std = cfg.noise_std * torch.rand(nc, generator=g) * noisy
        out = out + torch.randn(out.shape, generator=g) * std.view(nc, 1, 1, 1)
    return out


def multi_crop(images: torch.Tensor, cfg: MultiCropConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Global crops [n_g·M, 1, G, G] and local crops [n_l·M, 1, L, L] (crop-major) of particles
    ``images`` [M, H, W] (or one [H, W])."""
    return {
        "global_crops": make_crops(images, cfg.global_crops, cfg, g),
        "local_crops": make_crops(images, cfg.local_crops, cfg, g),
    }


def multicrop_config(aug, image_size: int) -> MultiCropConfig:
    """From the ``augment`` config group. Crop sizes (px) are ``size_fraction × image_size`` rounded to
    a multiple of 16 (224 → 224 / 96; 64 → 64 / 32), unless ``size`` > 0 gives them in px."""

    def size(frac: float, px: int) -> int:
        return int(px) if px and px > 0 else max(16, int(round(frac * image_size / 16)) * 16)

    gsz = size(aug.global_crops.size_fraction, aug.global_crops.get("size", 0))
    lsz = size(aug.local_crops.size_fraction, aug.local_crops.get("size", 0))
    gl = CropSpec(
        int(aug.global_crops.n),
        gsz,
        tuple(aug.global_crops.scale),
        list(aug.global_crops.blur_p)
        if not isinstance(aug.global_crops.blur_p, (int, float))
        else float(aug.global_crops.blur_p),
        float(aug.jitter_p),
        float(aug.global_crops.noise_p),
    )
    lo = CropSpec(
        int(aug.local_crops.n),
        lsz,
        tuple(aug.local_crops.scale),
        float(aug.local_crops.blur_p),
        float(aug.jitter_p),
        float(aug.local_crops.noise_p),
    )
    return MultiCropConfig(
        gl,
        lo,
        bool(aug.flip),
        bool(aug.rot90),
        float(aug.brightness),
        float(aug.contrast),
        tuple(aug.blur_sigma),
        float(aug.noise_std),
    )
