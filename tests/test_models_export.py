"""The exported backbone: backbone.json metadata for pickers, strict loading, the README's timm
snippet run as written, and timm's own ``local-dir:`` loader on the run dir (offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cryofm.errors import InputError
from cryofm.models.backbone import backbone_kwargs, create_backbone
from cryofm.models.export import export_backbone, load_backbone

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["vit_small_patch16_dinov3_qkvb", "vit_small_patch16_224"]  # the two families cryofm trains

pytestmark = pytest.mark.usefixtures("one_thread")


def _export(d: Path, name: str) -> tuple[torch.nn.Module, Path]:
    extra = dict(depth=1, embed_dim=48, num_heads=2)
    torch.manual_seed(0)
    model = create_backbone(name, 32, 1, 0.0, **extra).eval()
    export_backbone(model, name, backbone_kwargs(name, 32, 1, 0.0, **extra), d,
                    {"image_size": 32, "pixel_mean": 0.1, "pixel_std": 0.9, "effective_pixel_size": 2.5})
    return model, d


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using the exported backbone with timm"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_tells_pickers_the_contrast_and_normalisation(tmp_path, name):
    _export(tmp_path, name)
    meta = json.loads((tmp_path / "backbone.json").read_text())
    assert meta["particle_contrast"] == "bright"
    assert meta["normalization"]["per_particle"] == "zero_mean_unit_std"
    assert meta["normalization"]["then"] == "(x - pixel_mean) / pixel_std"
    assert (meta["pixel_mean"], meta["pixel_std"], meta["image_size"]) == (0.1, 0.9, 32)
    cfg = json.loads((tmp_path / "config.json").read_text())  # timm's save_for_hf config
    assert cfg["architecture"] == name and cfg["num_classes"] == 0 and cfg["model_args"]["in_chans"] == 1
    assert cfg["pretrained_cfg"]["input_size"] == [1, 32, 32] and cfg["pretrained_cfg"]["mean"] == [0.1]
    # not the architecture's published weights: no ImageNet / LVD tag, no licence of theirs
    assert cfg["pretrained_cfg"]["tag"] == "cryofm" and cfg["pretrained_cfg"].get("license") is None


@pytest.mark.parametrize("name", NAMES)
def test_readme_snippet_runs_and_matches_the_model(tmp_path, name, monkeypatch):
    model, d = _export(tmp_path / "run", name)
    code = _readme_snippet()
    assert 'run = "runs/vitl16"' in code and "strict=True" in code and '"num_classes": 0' in code
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ns: dict = {}
    exec(compile(code.replace('run = "runs/vitl16"', f'run = "{d}"'), "README.md", "exec"), ns)
    assert ns["features"].shape == (8, 48)
    x = ns["x"]
    with torch.no_grad():
        want = model.forward_features(x)[:, 0]
    torch.testing.assert_close(ns["features"], want)
    # the snippet's per-particle normalisation: zero mean, unit std, then the dataset statistics
    raw = (x * 0.9 + 0.1)
    torch.testing.assert_close(raw.mean((-2, -1)), torch.zeros(8, 1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_timm_local_dir_loads_the_run_dir_offline(tmp_path, name, monkeypatch):
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, d = _export(tmp_path / "run", name)
    (d / "config.yaml").write_text("a: 1\n")  # a real run dir holds more files: they do not confuse timm
    local = timm.create_model(f"local-dir:{d}", pretrained=True).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(local.forward_features(x), model.forward_features(x))
    assert local.num_classes == 0


def test_load_backbone_is_strict(tmp_path):
    model, d = _export(tmp_path / "run", NAMES[0])
    loaded, meta = load_backbone(d)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), model.forward_features(x))
    state = load_file(str(d / "backbone.safetensors"))
    state.pop(next(k for k in state if k.endswith("norm.weight")))  # one tensor missing
    save_file(state, str(d / "backbone.safetensors"))
    with pytest.raises(InputError, match="Missing key"):
        load_backbone(d)
    (d / "backbone.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="cannot load backbone"):
        load_backbone(d)


def test_backbone_json_with_a_text_size_names_the_key(tmp_path):
    _, d = _export(tmp_path / "run", NAMES[0])
    meta = json.loads((d / "backbone.json").read_text())
    meta["kwargs"] = {**meta.get("kwargs", {}), "embed_dim": "big"}
    (d / "backbone.json").write_text(json.dumps(meta))
    want = r"cannot create .* with its kwargs \(text values for embed_dim\?\)"
    with pytest.raises(InputError, match=want) as e:
        load_backbone(d)
    assert e.value.path == str(d / "backbone.json")
