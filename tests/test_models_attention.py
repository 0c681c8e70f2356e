"""Attention kernel choice: SDPA unless xFormers is installed and CUDA is present."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from cryofm.models.attention import select_attention, use_xformers, xformers_available
from cryofm.models.backbone import create_backbone


def test_sdpa_default_and_xformers_only_on_cuda():
    have = torch.cuda.is_available() and importlib.util.find_spec("xformers") is not None
    assert xformers_available() == have
    assert select_attention("sdpa") == "sdpa"
    assert select_attention("auto") == ("xformers" if have else "sdpa")
    assert select_attention("xformers") == ("xformers" if have else "sdpa")  # falls back with a warning
    with pytest.raises(ValueError):
        select_attention("flash9")


@pytest.mark.skipif(xformers_available(), reason="checks the CPU fallback")
def test_model_untouched_without_xformers():
    torch.manual_seed(0)
    m = create_backbone("vit_small_patch16_224", 32, depth=1, embed_dim=48, num_heads=2).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        before = m.forward_features(x)
        assert use_xformers(m, "auto") == 0
        assert torch.equal(before, m.forward_features(x))
