"""Batched particle descriptors over WebDataset shards, from a frozen backbone or from raw pixels.

A *featurizer* turns a batch of stored particle images [B, H, W] (per-particle normalised, as in
the shards) into a float32 matrix [B, F] and carries an ``identity`` dict that names exactly what
it computes (it goes into the cache key, see :mod:`cryofm.features.cache`):

* :class:`BackboneFeaturizer`: ``CLS ⊕ mean patch`` of the last block (``last_blocks=1``) or of
  each of the last 4 blocks (``last_blocks=4``) of a timm ViT
  (:func:`cryofm.features.extract.image_features`).
  Images are Fourier-resized to the backbone's ``image_size`` and normalised with its
  ``pixel_mean`` / ``pixel_std`` (``backbone.json``).
* :class:`PixelFeaturizer`: the raw pixels, Fourier-downsampled to ``size`` × ``size`` and flattened
  (the "what does pretraining buy" baseline).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cryofm.data.dataset import iter_raw
from cryofm.data.format import decode_sample
from cryofm.data.normalize import fourier_resize
from cryofm.errors import InputError
from cryofm.features.extract import image_features


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def iter_shard(url: str | Path) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """(float32 image [H, W], record) of every sample of one shard, in stored order.

    A shard that cannot be read raises :class:`InputError` naming it.
    """
    try:
        for sample in iter_raw([url]):
            yield decode_sample(sample)
    except InputError:
        raise
    except Exception as exc:  # missing or truncated tar, bad npy / json
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(url, f"cannot read shard: {msg}") from exc


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    batch: list[Any] = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class PixelFeaturizer:
    """Raw pixels Fourier-downsampled to ``size`` px and flattened: [B, size²]."""

    def __init__(self, size: int = 16):
        self.size = int(size)
        self.identity = {"kind": "pixels", "size": self.size}
        self.dim = self.size * self.size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = fourier_resize(np.asarray(images, np.float32), self.size)
        return x.reshape(len(x), -1).astype(np.float32)


def input_spec(meta: dict[str, Any]) -> tuple[int, float, float]:
    """(image size in px, pixel mean, pixel std) a backbone expects, from its ``backbone.json``."""
    size = int(meta.get("image_size") or meta.get("kwargs", {}).get("img_size", 224))
    mean, std = meta.get("pixel_mean"), meta.get("pixel_std")
    return size, 0.0 if mean is None else float(mean), 1.0 if not std else float(std)


def backbone_identity(meta: dict[str, Any], identity: dict[str, Any], last_blocks: int) -> dict[str, Any]:
    """Everything that fixes a backbone's features: the weights' identity, the input spec, the layers."""
    size, mean, std = input_spec(meta)
    return {
        "kind": "backbone",
        **identity,
        "model_name": meta.get("model_name"),
        "image_size": size,
        "pixel_mean": mean,
        "pixel_std": std,
        "last_blocks": int(last_blocks),
    }


class LazyFeaturizer:
    """A featurizer built on first use, so that a run served entirely from the cache never loads
    (or randomly initialises) a backbone."""

    def __init__(self, factory: Callable[[], Callable[[np.ndarray], np.ndarray]], identity: dict[str, Any]):
        self.factory, self.identity, self._f = factory, identity, None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self._f is None:
            self._f = self.factory()
        return self._f(images)

    def release(self) -> None:
        """Drop the built featurizer (frees the model)."""
        self._f = None


class BackboneFeaturizer:
    """``CLS ⊕ mean patch`` features of a frozen timm ViT.

    Args:
        model: the backbone (put into eval mode; no gradients).
        meta: ``backbone.json`` content: ``image_size`` (px), ``pixel_mean``, ``pixel_std``.
        identity: what the weights are (e.g. the checkpoint's SHA-256, or ``random-init`` + seed).
        last_blocks: 1 (last block) or 4 (last four blocks concatenated).
        device: torch device; ``amp`` uses bfloat16 autocast on CUDA.
    """

    def __init__(
        self,
        model: nn.Module,
        meta: dict[str, Any],
        identity: dict[str, Any],
        last_blocks: int = 1,
        device: str | torch.device = "auto",
        amp: bool = True,
    ):
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.image_size, self.pixel_mean, self.pixel_std = input_spec(meta)
        self.last_blocks = int(last_blocks)
        depth = len(getattr(model, "blocks", ())) or None
        if depth is not None and not 1 <= self.last_blocks <= depth:
            from cryofm.errors import InputError

            raise InputError("features.last_blocks",
                             f"{self.last_blocks}, but the backbone has {depth} blocks")
        self.amp = bool(amp) and self.device.type == "cuda"
        self.identity = backbone_identity(meta, identity, self.last_blocks)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """Stored images [B, H, W] → model input [B, 1, S, S] on the device."""
        x = np.asarray(images, np.float32)
        if x.shape[-1] != self.image_size:
            x = fourier_resize(x, self.image_size)
        x = (x - self.pixel_mean) / self.pixel_std
        return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1).to(self.device)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = self.preprocess(images)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            f = image_features(self.model, x, last_blocks=self.last_blocks)
        return f.float().cpu().numpy()


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def random_init_identity(model_name: str, kwargs: dict[str, Any], seed: int) -> dict[str, Any]:
    """Cache identity of a randomly initialised backbone (architecture + seed fix the weights)."""
    kw = json.dumps(kwargs, sort_keys=True, default=str)
    return {"weights": "random-init", "seed": int(seed), "kwargs": kw, "model": model_name}
