"""The conv-stem ViT (``convstem_vit``): timm parts, timm names, the stride of the ViT it replaces,
the iBOT mask token, and exports that load back through cryofm, timm by name and timm ``local-dir:``."""

from __future__ import annotations

import pytest
import timm
import torch

from cryofm.models.backbone import backbone_kwargs, create_backbone, patch_size
from cryofm.models.export import export_backbone, load_backbone
from cryofm.models.masked import MaskedBackbone

pytestmark = pytest.mark.usefixtures("one_thread")
KW = {"base": "vit_small_patch16_dinov3_qkvb", "depth": 1, "embed_dim": 48, "num_heads": 2,
      "stem_channels": [8, 16, 32]}


def test_tokens_are_16_px_and_names_are_timms():
    m = create_backbone("convstem_vit", 64, 1, 0.0, **KW).eval()
    assert patch_size(m) == 16
    x = torch.randn(2, 1, 64, 64)
    assert m.forward_features(x).shape == (2, 5 + 16, 48)  # CLS + 4 registers + 4 x 4 tokens
    assert m.forward_features(torch.randn(2, 1, 32, 32)).shape == (2, 5 + 4, 48)  # local crops (RoPE)
    names = list(m.state_dict())
    assert "patch_embed.backbone.0.conv.weight" in names and "patch_embed.backbone.3.conv.bias" in names
    assert not any(n.startswith("patch_embed.proj.weight") for n in names)  # no linear projection left
    # 3 hidden stride-2 convs + the last one: 64 px -> 4 x 4 feature map, embed_dim channels
    assert m.patch_embed.backbone(x).shape == (2, 48, 4, 4)


def test_a_stem_whose_stride_is_not_the_patch_size_is_refused():
    with pytest.raises(ValueError, match="stride 8"):
        create_backbone("convstem_vit", 64, 1, 0.0, **{**KW, "stem_channels": [8, 16]})
    m = create_backbone("convstem_vit", 64, 1, 0.0, **{**KW, "stem_channels": [8, 16], "patch_size": 8})
    assert patch_size(m) == 8 and m.forward_features(torch.randn(1, 1, 64, 64)).shape[1] == 5 + 64


def test_classic_vit_base_takes_the_stem_too():
    m = create_backbone("convstem_vit", 64, 1, 0.0, **{**KW, "base": "vit_small_patch16_224"}).eval()
    assert "dynamic_img_size" in backbone_kwargs("convstem_vit", 64, base="vit_small_patch16_224")
    assert m.forward_features(torch.randn(1, 1, 48, 48)).shape == (1, 1 + 9, 48)


def test_mask_token_replaces_the_stems_tokens():
    bb = MaskedBackbone(create_backbone("convstem_vit", 64, 1, 0.0, **KW)).eval()
    with torch.no_grad():
        bb.mask_token.fill_(3.0)
    seen = {}
    bb.backbone.patch_embed.register_forward_hook(lambda m, i, o: seen.setdefault("out", o.clone()))
    masks = torch.zeros(1, 16, dtype=torch.bool)
    masks[0, [0, 5]] = True
    bb(torch.randn(1, 1, 64, 64), masks)
    tokens = seen["out"].reshape(1, 16, 48)
    assert torch.all(tokens[0, [0, 5]] == 3.0) and not torch.any(tokens[0, 1] == 3.0)


def test_export_loads_back_by_name_and_as_a_timm_local_dir(tmp_path):
    kw = backbone_kwargs("convstem_vit", 64, 1, 0.0, **KW)
    m = create_backbone("convstem_vit", 64, 1, 0.0, **KW).eval()
    export_backbone(m, "convstem_vit", kw, tmp_path, {"image_size": 64, "pixel_mean": 0.0, "pixel_std": 1.0})
    x = torch.randn(2, 1, 64, 64)
    ref = m.forward_features(x)
    loaded, meta = load_backbone(tmp_path)
    assert meta["model_name"] == "convstem_vit" and meta["kwargs"]["stem_channels"] == [8, 16, 32]
    assert torch.allclose(loaded.forward_features(x), ref)
    local = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert torch.allclose(local.forward_features(x), ref)


def test_a_fresh_process_loads_an_exported_conv_stem_backbone(tmp_path):
    """load_backbone alone (no other cryofm import first) knows the conv-stem model: bench and user
    scripts that only load a checkpoint failed with 'Unknown model (convstem_vit)'."""
    import subprocess
    import sys

    kw = backbone_kwargs("convstem_vit", 64, 1, 0.0, **KW)
    m = create_backbone("convstem_vit", 64, 1, 0.0, **KW).eval()
    export_backbone(m, "convstem_vit", kw, tmp_path, {"image_size": 64})
    torch.save(m.forward_features(torch.ones(1, 1, 64, 64)), tmp_path / "ref.pt")
    code = ("import sys, torch; from cryofm.models.export import load_backbone; "
            "m, _ = load_backbone(sys.argv[1]); "
            "ref = torch.load(sys.argv[1] + '/ref.pt', weights_only=True); "
            "print(torch.allclose(m.forward_features(torch.ones(1, 1, 64, 64)), ref))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr[-500:]
