"""Frozen-backbone features of whole micrographs on a grid of windows aligned to micrograph pixels.

The backbone saw particle boxes resized to ``image_size`` px. A window of ``box_factor × diameter``
micrograph px therefore corresponds to one training box, and the micrograph is Fourier-rescaled once
by ``f = window / image_size`` (micrograph px per model px) so that windows are cut at model scale.

Two paths give a :class:`FeatureGrid` (features [gh, gw, D], window centres at micrograph
``x = x0 + j·step``, ``y = y0 + i·step``):

* :func:`dense_features` — the reference: every window cut out, normalised like a training particle
  (per-window zero mean / unit std, then the dataset ``pixel_mean`` / ``pixel_std``), batched
  through the backbone, descriptor ``CLS ⊕ mean patch``. Memory: one batch of windows plus the
  grid; cost: one ViT pass per window.
* :func:`fast_features` — one ViT pass over the whole rescaled micrograph (tiled when large; RoPE
  and interpolated-position ViTs take any size), at ``shifts × shifts`` sub-patch offsets
  (shift-and-stitch, grid step ``patch / shifts`` model px), with local normalisation at window
  scale; a window's descriptor is ``mean of patch tokens in its central half ⊕ mean over the whole
  window`` (box filters on the token grid). Cost ≈ ``shifts²`` passes over the micrograph instead
  of one pass per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import nn
from tqdm.auto import tqdm

from cryofm.data.normalize import normalize
from cryofm.features.extract import backbone_tokens, image_features
from cryofm.models.backbone import patch_size


@dataclass
class FeatureGrid:
    """Window descriptors on a grid aligned to micrograph pixels."""

    features: np.ndarray  # [gh, gw, D] float32
    x0: float  # micrograph x (px) of the centre of window column 0
    y0: float  # micrograph y (px) of the centre of window row 0
    step: float  # micrograph px between neighbouring windows
    window: float  # window edge in micrograph px
    shape: tuple[int, int]  # micrograph (H, W) px

    def centres(self) -> np.ndarray:
        """Window centres [gh, gw, 2] (x, y) in micrograph px."""
        gh, gw = self.features.shape[:2]
        yy, xx = np.mgrid[:gh, :gw].astype(np.float64)
        return np.stack([self.x0 + xx * self.step, self.y0 + yy * self.step], axis=-1)


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """Fourier-rescale ``image`` [H, W] by 1/``factor`` (factor = old px per new px; > 1 shrinks).

    Output size ``round(H / factor) × round(W / factor)``; sample k of the output sits at input
    coordinate ``k · H / H_out`` (index 0 stays aligned). Mean and contrast are kept.
    """
    a = np.asarray(image, np.float32)
    h, w = a.shape
    ho, wo = max(1, int(round(h / factor))), max(1, int(round(w / factor)))
    if (ho, wo) == (h, w):
        return a.copy()
    f = np.fft.fftshift(np.fft.fft2(a))
    out = np.zeros((ho, wo), np.complex64)
    mh, mw = min(h, ho), min(w, wo)
    sh, sw, dh, dw = h // 2 - mh // 2, w // 2 - mw // 2, ho // 2 - mh // 2, wo // 2 - mw // 2
    out[dh:dh + mh, dw:dw + mw] = f[sh:sh + mh, sw:sw + mw]
    res = np.fft.ifft2(np.fft.ifftshift(out)).real
    return (res * (ho * wo) / (h * w)).astype(np.float32)


def model_scale(diameter: float, image_size: int, box_factor: float = 2.0) -> tuple[float, float]:
    """(window edge in micrograph px, micrograph px per model px) for a particle ``diameter`` px."""
    window = float(box_factor) * float(diameter)
    return window, window / float(image_size)


def _prepare(micrograph: np.ndarray, factor: float, invert: bool) -> tuple[np.ndarray, float]:
    """Rescaled (and contrast-flipped) micrograph, and the micrograph px per rescaled px."""
    a = np.asarray(micrograph, np.float32)
    a = (a - a.mean()) * (-1.0 if invert else 1.0)
    ds = rescale(a, factor)
    return ds, a.shape[1] / ds.shape[1]


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def dense_features(model: nn.Module, meta: dict[str, Any], micrograph: np.ndarray, diameter: float, *,
                   box_factor: float = 2.0, stride: float | None = None, invert: bool = False,
                   batch_size: int = 64, progress: bool = False) -> FeatureGrid:
    """Features of every window (reference path); see the module docstring.

    Args:
        model, meta: backbone and its ``backbone.json`` (``image_size``, ``pixel_mean``, ``pixel_std``).
        micrograph: [H, W] float image.
        diameter: particle diameter in micrograph px.
        box_factor: window edge / diameter (the training box / particle ratio).
        stride: micrograph px between windows (default diameter / 4, at least one model px).
        invert: flip the contrast first (dark particles in, bright particles expected by the model).
        batch_size: windows per forward pass (bounds memory).
    """
    image_size = int(meta.get("image_size") or 224)
    mean, std = float(meta.get("pixel_mean") or 0.0), float(meta.get("pixel_std") or 1.0)
    window, factor = model_scale(diameter, image_size, box_factor)
    ds, f = _prepare(micrograph, factor, invert)
    s = max(1, int(round((stride or diameter / 4) / f)))
    S = image_size
    hd, wd = ds.shape
    gh, gw = (hd + s - 1) // s, (wd + s - 1) // s
    P = S // 2  # window (i, j) starts at padded (i·s, j·s) and is centred at ds (i·s + (S-1)/2 - P)
    pad_after_h, pad_after_w = (gh - 1) * s + S - P - hd, (gw - 1) * s + S - P - wd
    padded = np.pad(ds, ((P, max(pad_after_h, 0)), (P, max(pad_after_w, 0))), mode="reflect")
    views = np.lib.stride_tricks.sliding_window_view(padded, (S, S))[::s, ::s][:gh, :gw]
    dev = _device_of(model)
    feats = None
    n = gh * gw
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="windows", leave=False):
        idx = np.arange(start, min(n, start + batch_size))
        batch = views[idx // gw, idx % gw]
        x = (normalize(batch) - mean) / std
        out = image_features(model, torch.from_numpy(x[:, None]).to(dev)).float().cpu().numpy()
        if feats is None:
            feats = np.empty((n, out.shape[1]), np.float32)
        feats[idx] = out
    off = ((S - 1) / 2 - P) * f
    return FeatureGrid(feats.reshape(gh, gw, -1), x0=off, y0=off, step=s * f, window=window,
                       shape=tuple(int(v) for v in micrograph.shape))


def local_normalize(image: np.ndarray, size: float) -> np.ndarray:
    """(x − local mean) / local std over ``size`` × ``size`` boxes: per-window normalisation, densely."""
    m = ndi.uniform_filter(image, size=int(size), mode="reflect")
    v = ndi.uniform_filter(image * image, size=int(size), mode="reflect") - m * m
    return ((image - m) / np.sqrt(np.maximum(v, 1e-12))).astype(np.float32)


@torch.no_grad()
def _token_grid(model: nn.Module, img: np.ndarray, tile: int, margin: int) -> np.ndarray:
    """Patch tokens [H/p, W/p, D] of ``img`` (edges multiple of p), by tiles of ``tile`` px with
    ``margin`` px of context on each side (tile ≤ 0: one pass over the whole image)."""
    p = patch_size(model)
    dev = _device_of(model)
    h, w = img.shape
    if tile <= 0 or (h <= tile + 2 * margin and w <= tile + 2 * margin):
        x = torch.from_numpy(np.ascontiguousarray(img)[None, None]).to(dev)
        return backbone_tokens(model, x)["patch"][0].float().cpu().numpy()
    gh, gw = h // p, w // p
    out = None
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0 = max(0, y - margin), max(0, x - margin)
            y1, x1 = min(h, y + tile + margin), min(w, x + tile + margin)
            t = torch.from_numpy(np.ascontiguousarray(img[y0:y1, x0:x1])[None, None]).to(dev)
            tok = backbone_tokens(model, t)["patch"][0].float().cpu().numpy()
            if out is None:
                out = np.empty((gh, gw, tok.shape[-1]), np.float32)
            ty, tx = (y - y0) // p, (x - x0) // p
            ny, nx = min(tile, h - y) // p, min(tile, w - x) // p
            out[y // p:y // p + ny, x // p:x // p + nx] = tok[ty:ty + ny, tx:tx + nx]
    return out


@torch.no_grad()
def fast_features(model: nn.Module, meta: dict[str, Any], micrograph: np.ndarray, diameter: float, *,
                  box_factor: float = 2.0, shifts: int = 2, invert: bool = False, tile: int | None = None,
                  progress: bool = False) -> FeatureGrid:
    """Window features from whole-micrograph passes (fast path); see the module docstring.

    Args:
        shifts: sub-patch offsets per axis; grid step = patch / shifts model px (1, 2 or 4 typical).
        tile: tile edge in model px for the whole-micrograph pass (bounds attention memory and
            cost); each tile sees half a window of extra context on every side, as a window centred
            on its edge token would. None = 4 windows (4 × image_size); 0 = no tiling.
    Other arguments as :func:`dense_features`.
    """
    image_size = int(meta.get("image_size") or 224)
    mean, std = float(meta.get("pixel_mean") or 0.0), float(meta.get("pixel_std") or 1.0)
    window, factor = model_scale(diameter, image_size, box_factor)
    ds, f = _prepare(micrograph, factor, invert)
    ds = (local_normalize(ds, image_size) - mean) / std
    p = patch_size(model)
    if p % shifts:
        raise ValueError(f"shifts={shifts} must divide the patch size {p}")
    q = p // shifts
    hd, wd = ds.shape
    gh, gw = hd // p, wd // p  # coarse tokens per offset (a ragged edge strip is dropped)
    padded = np.pad(ds, ((0, p), (0, p)), mode="reflect")
    fine = None
    offsets = [(ky, kx) for ky in range(shifts) for kx in range(shifts)]
    margin = max(p, (image_size // 2) // p * p)
    tile = 4 * image_size if tile is None else int(tile)
    tile = (tile // p) * p
    for ky, kx in tqdm(offsets, disable=not progress, desc="shifts", leave=False):
        sub = padded[ky * q:ky * q + gh * p, kx * q:kx * q + gw * p]
        tok = _token_grid(model, sub, tile, margin)
        if fine is None:
            fine = np.empty((gh * shifts, gw * shifts, tok.shape[-1]), np.float32)
        fine[ky::shifts, kx::shifts] = tok
    # a window of S model px spans S/q fine cells; odd box sizes keep the filter centred on the cell
    full = max(1, int(round(image_size / q)) | 1)
    half = max(1, int(round(image_size / (2 * q))) | 1)
    centre = ndi.uniform_filter(fine, size=(half, half, 1), mode="nearest")
    whole = ndi.uniform_filter(fine, size=(full, full, 1), mode="nearest")
    feats = np.concatenate([centre, whole], axis=-1)
    off = (p - 1) / 2 * f  # fine cell (i, j) is the token whose patch centre is at i·q + (p-1)/2
    return FeatureGrid(feats, x0=off, y0=off, step=q * f, window=window,
                       shape=tuple(int(v) for v in micrograph.shape))


def micrograph_features(model: nn.Module, meta: dict[str, Any], micrograph: np.ndarray, diameter: float,
                        path: str = "fast", **kwargs: Any) -> FeatureGrid:
    """Dispatch on ``path``: ``dense`` (:func:`dense_features`) or ``fast`` (:func:`fast_features`)."""
    if path == "dense":
        kwargs.pop("shifts", None)
        kwargs.pop("tile", None)
        return dense_features(model, meta, micrograph, diameter, **kwargs)
    if path == "fast":
        kwargs.pop("stride", None)
        kwargs.pop("batch_size", None)
        return fast_features(model, meta, micrograph, diameter, **kwargs)
    raise ValueError(f"unknown feature path {path!r} (dense or fast)")
