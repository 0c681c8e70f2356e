"""Attention kernel choice: PyTorch SDPA (timm's fused path) by default, xFormers on CUDA if installed.

timm's attention layers already call ``F.scaled_dot_product_attention`` (flash / memory-efficient
kernels on CUDA, a fused math kernel on CPU). xFormers is optional: :func:`use_xformers` only swaps it
in when it is importable *and* the model runs on CUDA; otherwise SDPA stays, so no code path needs it.
"""

from __future__ import annotations

import importlib.util
import logging
import types

import torch
from torch import nn

log = logging.getLogger(__name__)


def xformers_available() -> bool:
    """True when ``xformers`` is importable and CUDA is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("xformers") is not None


def select_attention(kind: str = "sdpa") -> str:
    """Resolve ``kind`` (``sdpa`` | ``xformers`` | ``auto``) to the kernel that will actually run."""
    if kind not in ("sdpa", "xformers", "auto"):
        raise ValueError(f"unknown attention kind {kind!r} (sdpa, xformers or auto)")
    if kind in ("xformers", "auto") and xformers_available():
        return "xformers"
    if kind == "xformers":
        log.warning("xformers requested but not available on this machine (needs CUDA): using SDPA")
    return "sdpa"


def _xformers_forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
    """timm ``Attention.forward`` (timm 1.0) through ``xformers.ops.memory_efficient_attention``."""
    import xformers.ops as xops

    if attn_mask is not None or is_causal:  # not the pretraining path: timm's own forward
        return type(self).forward(self, x, attn_mask=attn_mask, is_causal=is_causal)
    B, N, _ = x.shape
    gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # xformers wants B, N, H, D
    q, k, v = qkv.unbind(2)
    q, k = self.q_norm(q), self.k_norm(k)
    out = xops.memory_efficient_attention(q, k, v, p=self.attn_drop.p if self.training else 0.0)
    out = self.norm(out.reshape(B, N, -1))
    if gate is not None:
        out = out * gate
    return self.proj_drop(self.proj(out))


def use_xformers(model: nn.Module, kind: str = "auto") -> int:
    """Patch timm ``Attention`` modules of a classic ViT to xFormers when selected; returns how many.

    RoPE (Eva) attention keeps SDPA: it rotates q/k inside timm and SDPA's flash kernel is as fast.
    """
    if select_attention(kind) != "xformers":
        return 0
    from timm.models.vision_transformer import Attention

    n = 0
    for m in model.modules():
        if type(m) is Attention:
            m.forward = types.MethodType(_xformers_forward, m)
            n += 1
    return n
