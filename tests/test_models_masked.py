"""The iBOT mask token around timm's Eva (DINOv3, RoPE) and VisionTransformer; heads; param groups."""

from __future__ import annotations

import pytest
import torch

from cryofm.models.backbone import create_backbone
from cryofm.models.heads import DINOHead
from cryofm.models.masked import MaskedBackbone
from cryofm.ssl.meta_arch import Branch
from cryofm.train.optim import layer_id, param_groups

NAMES = ["vit_small_patch16_dinov3_qkvb", "vit_small_patch16_224"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(name: str) -> MaskedBackbone:
    torch.manual_seed(0)
    m = MaskedBackbone(create_backbone(name, 64, depth=2, embed_dim=48, num_heads=2)).eval()
    with torch.no_grad():
        m.mask_token.normal_()
    return m


@pytest.mark.parametrize("name", NAMES)
def test_masked_patches_hide_their_pixels(name):
    m = _model(name)
    x = torch.randn(1, 1, 64, 64)
    masks = torch.zeros(1, 16, dtype=torch.bool)
    masks[0, 5] = True  # patch (row 1, col 1): pixels 16:32, 16:32
    y = x.clone()
    y[..., 16:32, 16:32] += 3.0 * torch.randn(16, 16)  # change only the masked patch
    z = x.clone()
    z[..., 0:16, 0:16] += 3.0 * torch.randn(16, 16)  # change an unmasked patch
    with torch.no_grad():
        a, b, c = m(x, masks), m(y, masks), m(z, masks)
        plain = m(x)
    assert torch.allclose(a["cls"], b["cls"], atol=1e-5) and torch.allclose(a["patch"], b["patch"], atol=1e-5)
    assert not torch.allclose(a["patch"][0, 0], c["patch"][0, 0], atol=1e-2)
    assert not torch.allclose(a["patch"][0, 5], plain["patch"][0, 5], atol=1e-2)  # the token is used
    assert torch.allclose(a["patch"][0, 0], plain["patch"][0, 0], atol=1e-2)
    assert a["patch"].shape == (1, 16, 48)
    # every patch masked: the output no longer depends on the image at all
    full = torch.ones(2, 16, dtype=torch.bool)
    with torch.no_grad():
        out = m(torch.randn(2, 1, 64, 64), full)
    assert torch.allclose(out["cls"][0], out["cls"][1], atol=1e-5)
    assert torch.allclose(out["patch"][0], out["patch"][1], atol=1e-5)
    with pytest.raises(ValueError):
        m(x, torch.zeros(1, 4, dtype=torch.bool))


@pytest.mark.parametrize("name", NAMES)
def test_local_crop_size_and_state_dict_names(name):
    m = _model(name)
    with torch.no_grad():
        out = m(torch.randn(3, 1, 32, 32))  # 96-px-like local crop: RoPE / interpolated pos-embed
    assert out["patch"].shape == (3, 4, 48)
    # the wrapped backbone keeps timm's key names (the exported file loads into timm as is)
    assert set(m.backbone.state_dict()) == set(
        create_backbone(name, 64, depth=2, embed_dim=48, num_heads=2).state_dict()
    )


def test_head_prototypes_are_unit_norm():
    h = DINOHead(48, n_prototypes=32, hidden_dim=64, bottleneck_dim=16, nlayers=3)
    w = h.last_layer.weight
    assert torch.allclose(w.norm(dim=1), torch.ones(32), atol=1e-5)
    logits = h(torch.randn(5, 48) * 100)  # cosine similarities
    assert logits.shape == (5, 32) and logits.abs().max() <= 1 + 1e-5
    assert not h.last_layer.parametrizations.weight.original0.requires_grad


def test_layer_decay_groups_by_hand():
    bb = create_backbone(NAMES[0], 64, depth=2, embed_dim=48, num_heads=2)
    br = Branch(bb, DINOHead(48, 8, 16, 8), DINOHead(48, 8, 16, 8))
    assert layer_id("backbone.backbone.blocks.1.attn.qkv.weight", 2) == 2
    assert layer_id("backbone.mask_token", 2) == 0 and layer_id("dino_head.mlp.0.weight", 2) == 3
    groups = param_groups(br, layer_decay=0.9, patch_embed_lr_mult=0.2)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["backbone.backbone.patch_embed.proj.weight"]["lr_multiplier"] == pytest.approx(
        0.9**3 * 0.2
    )
    assert by_name["backbone.backbone.blocks.0.mlp.fc1.weight"]["lr_multiplier"] == pytest.approx(0.81)
    assert by_name["backbone.backbone.blocks.1.mlp.fc1.weight"]["lr_multiplier"] == pytest.approx(0.9)
    assert by_name["dino_head.mlp.0.weight"]["lr_multiplier"] == 1.0
    assert by_name["backbone.backbone.blocks.0.mlp.fc1.bias"]["wd_multiplier"] == 0.0
    assert by_name["backbone.backbone.blocks.0.gamma_1"]["wd_multiplier"] == 0.0
    assert by_name["backbone.backbone.blocks.0.mlp.fc1.weight"]["wd_multiplier"] == 1.0
    assert by_name["dino_head.last_layer.parametrizations.weight.original1"]["is_last_layer"]
