"""A tiny DINOv2 setup shared by the training-step tests: a 2-block, 48-wide ViT at 32 px with
64-prototype heads, and one fixed batch (8 global crops, 16 local crops, iBOT masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from cryofm.data.masking import sample_masks
from cryofm.ssl.meta_arch import SSLMetaArch

ROOT = Path(__file__).resolve().parents[1]


def tiny_arch(separate: bool = True) -> SSLMetaArch:
    """The tiny meta-architecture, weights from seed 0; ``separate``: a separate iBOT head."""
    torch.manual_seed(0)
    model = OmegaConf.create({"name": "vit_small_patch16_224", "in_chans": 1, "drop_path_rate": 0.0,
                              "kwargs": {"depth": 2, "embed_dim": 48, "num_heads": 2}})
    ssl = OmegaConf.load(ROOT / "configs/ssl/dinov2.yaml")
    head = {"n_prototypes": 64, "hidden_dim": 32, "bottleneck_dim": 16, "nlayers": 3}
    ssl.dino.head, ssl.ibot.head, ssl.ibot.separate_head = head, head, separate
    return SSLMetaArch(model, ssl, 32)


def tiny_batch() -> dict:
    """One fixed batch for :func:`tiny_arch`."""
    g = torch.Generator().manual_seed(1)
    return {"global_crops": torch.randn(8, 1, 32, 32, generator=g),
            "local_crops": torch.randn(16, 1, 16, 16, generator=g),
            "masks": torch.from_numpy(sample_masks(8, 2, 2, (0.1, 0.5), 0.5, np.random.default_rng(0)))}
