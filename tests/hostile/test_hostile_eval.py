"""Hostile and malformed input for ``eval/probe.py``, ``eval/pick.py`` and ``eval/micrograph_pca.py``.

Each case runs the script's ``main(argv)`` in-process (what ``python eval/<x>.py`` runs: the config
is composed and checked before torch or timm load anything) and checks the contract of
:func:`tests.hostile._hostile.check_failure`: exit status 2, one line
``eval/<x>.py: error: <file or key>: <problem>``, no traceback, nothing created or changed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cryofm.train.toydata import make_toy_dataset
from tests.hostile._hostile import check_failure, load_script


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A split toy dataset, a stand-in checkpoint folder (the checks look only at its files), two
    128 px micrographs and their expert picks."""
    root = tmp_path_factory.mktemp("eval_inputs")
    data = make_toy_dataset(root / "ds", n_experiments=2, n_per=4, box=16, shard_size=4,
                            fractions=(0.5, 0.0, 0.5))
    ck = root / "run"
    ck.mkdir()
    (ck / "backbone.safetensors").write_bytes(b"\0" * 16)
    (ck / "backbone.json").write_text(json.dumps({"model_name": "vit_small_patch16_224", "kwargs": {}}))
    mics = root / "mics"
    mics.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (128, 128), dtype=np.uint8)).save(mics / f"m{k}.png")
    return {"root": root, "data": data, "ckpt": ck, "mics": mics}


def _run(capsys, tmp_path, inputs, script, argv, names, problem=None):
    main = load_script(script).main
    return check_failure(capsys, lambda: main(argv), script, names, [tmp_path, inputs["root"]],
                         problem=problem)


# -- eval/probe.py ---------------------------------------------------------------------------------
def _probe(inputs, tmp_path, **kw):
    args = {"checkpoint": inputs["ckpt"], "data": inputs["data"], "out": tmp_path / "out",
            "progress": "false", **kw}
    return [f"{k}={v}" for k, v in args.items() if v is not None]


PROBE_OPTIONS = [
    ({"features.batch_size": 0}, "features.batch_size", ">= 1"),
    ({"features.device": "tpu"}, "features.device", "auto, cpu, cuda"),
    ({"features.last_blocks": "abc"}, "features.last_blocks", "integer"),
    ({"probe.fractions": "[0.5,0.5]"}, "probe.fractions", "list of 3 numbers"),
    ({"probe.fractions": "[0.6,0.6,0.2]"}, "probe.fractions", "must sum to 1"),
    ({"probe.logistic_C": "[0,1]"}, "probe.logistic_C", "> 0"),
    ({"probe.cap": "abc"}, "probe.cap", "integer"),
    ({"baselines.pixels": -1}, "baselines.pixels", ">= 0"),
    ({"exclude_experiments": "background"}, "exclude_experiments", "list of experiment names"),
    ({"erasure": "[regress_out,magic]"}, "erasure", "regress_out, leace"),
    ({"acquisition_fields": "[DefocusU,Nope]"}, "acquisition_fields", "unknown schema field 'Nope'"),
    ({"tasks.0.source": "Nope"}, "tasks[0].source", "unknown schema field 'Nope'"),
    ({"tasks": "quick", "tasks.1.hi": -5}, "tasks[1]", "lo < hi"),
    ({"tasks": "quick", "tasks.2.name": "ProteinClass"}, "tasks", "repeated: ProteinClass"),
]


@pytest.mark.parametrize("kw, key, problem", PROBE_OPTIONS, ids=[p[1] for p in PROBE_OPTIONS])
def test_probe_bad_option(capsys, tmp_path, inputs, kw, key, problem):
    _run(capsys, tmp_path, inputs, "eval/probe.py", _probe(inputs, tmp_path, **kw), f"{key}: ", problem)


def test_probe_missing_checkpoint(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/probe.py", _probe(inputs, tmp_path, checkpoint=tmp_path / "none"),
         str(tmp_path / "none"), "no backbone.safetensors")


def test_probe_checkpoint_without_json(capsys, tmp_path, inputs):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "backbone.safetensors").write_bytes(b"\0")
    _run(capsys, tmp_path, inputs, "eval/probe.py", _probe(inputs, tmp_path, checkpoint=lone), str(lone),
         "backbone.json missing")


def test_probe_dataset_without_split(capsys, tmp_path, inputs):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "manifest.json").write_text((inputs["data"] / "manifest.json").read_text())
    _run(capsys, tmp_path, inputs, "eval/probe.py", _probe(inputs, tmp_path, data=ds), str(ds / "split.json"),
         "no split")


def test_probe_required_value_missing(capsys, tmp_path, inputs):
    argv = [f"data={inputs['data']}", f"out={tmp_path / 'out'}"]
    _run(capsys, tmp_path, inputs, "eval/probe.py", argv, "checkpoint: ", "a value is required")


def test_probe_unknown_task_list(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/probe.py", _probe(inputs, tmp_path, tasks="nope"),
         "tasks=nope: no such option", "cryopanda")


def test_probe_out_is_a_file(capsys, tmp_path, inputs):
    f = tmp_path / "o.txt"
    f.write_text("x")
    _run(capsys, tmp_path, inputs, "eval/probe.py", _probe(inputs, tmp_path, out=f), str(f), "not a folder")


# -- eval/pick.py ----------------------------------------------------------------------------------
def _pick(inputs, tmp_path, **kw):
    args = {"micrographs": inputs["mics"], "diameter": 20, "picker": "dog", "out": tmp_path / "out",
            "progress": "false", **kw}
    return [f"{k}={v}" for k, v in args.items() if v is not None]


PICK_OPTIONS = [
    ({"diameter": "abc"}, "diameter", "number of micrograph px"),
    ({"diameter": 1}, "diameter", "too small"),
    ({"picker": "magic"}, "picker", "features, dog"),
    ({"contrast": "grey"}, "contrast", "dark, bright"),
    ({"formats": "[star,xyz]"}, "formats", "cbox, relion"),
    ({"coord_scale": 0}, "coord_scale", "> 0"),
    ({"pick.threshold": "high"}, "pick.threshold", "number"),
    ({"pick.nms": -1}, "pick.nms", ">= 0"),
    ({"features.path": "slow"}, "features.path", "fast, dense"),
    ({"features.sign": "up"}, "features.sign", "dog, skew"),
    ({"dog.k": 1}, "dog.k", "> 1"),
    ({"scoring.radius": 0}, "scoring.radius", "> 0"),
    ({"relion.suffix": "'my picks'"}, "relion.suffix", "plain file-name suffix"),
    ({"max_overlays": -1}, "max_overlays", ">= 0"),
    ({"seed": "x"}, "seed", "integer"),
]


@pytest.mark.parametrize("kw, key, problem", PICK_OPTIONS, ids=[p[1] for p in PICK_OPTIONS])
def test_pick_bad_option(capsys, tmp_path, inputs, kw, key, problem):
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, **kw), f"{key}: ", problem)


def test_pick_features_need_a_checkpoint(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, picker="features"), "checkpoint: ",
         "a value is required")


def test_pick_no_micrographs(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, micrographs=tmp_path / "none"),
         str(tmp_path / "none"), "no micrographs here")


def test_pick_micrographs_required(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, micrographs=None),
         "micrographs: ", "a value is required")


def test_pick_two_micrographs_share_a_stem(capsys, tmp_path, inputs):
    d = tmp_path / "mics"
    d.mkdir()
    img = Image.fromarray(np.zeros((64, 64), np.uint8))
    img.save(d / "a.png")
    img.save(d / "a.tif")
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, micrographs=d), str(d),
         "share a file stem")


def test_pick_relion_project_dir_missing(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/pick.py",
         _pick(inputs, tmp_path, **{"relion.project_dir": tmp_path / "proj"}), str(tmp_path / "proj"),
         "not found")


def test_pick_ground_truth_matches_nothing(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, ground_truth=tmp_path),
         str(tmp_path), "no ground truth for any of the micrographs")


def test_pick_garbage_micrograph_mid_run_leaves_nothing(capsys, tmp_path, inputs):
    """The first micrograph is processed (cache written), the second is not an image: the run's
    cache, picks and exports are removed."""
    d = tmp_path / "mics"
    d.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 96), dtype=np.uint8)).save(d / "a.png")
    (d / "b.mrc").write_bytes(b"this is not an MRC file" * 10)
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, micrographs=d), str(d / "b.mrc"))


@pytest.mark.parametrize("diameter", [5000, 65])
def test_pick_particle_larger_than_the_micrograph(capsys, tmp_path, inputs, diameter):
    """A diameter whose window (2 diameters for DoG) does not fit the 128 px micrographs: named,
    one line, nothing written (was: exit 0 with numpy's 'Mean of empty slice' warnings)."""
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, diameter=diameter),
         [str(inputs["mics"] / "m0.png"), "128 x 128 px"], "smaller than the particle window")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_pick_ground_truth_with_non_finite_coordinates(capsys, tmp_path, inputs, value):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "m0.csv").write_text(f"X-Coordinate,Y-Coordinate\n20,20\n{value},50\n")
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, ground_truth=gt),
         str(gt / "m0.csv"), "non-finite ground-truth coordinates")


def test_pick_unknown_key(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/pick.py", _pick(inputs, tmp_path, **{"pick.thresold": 1}),
         "pick.thresold: no such key")


# -- eval/micrograph_pca.py ------------------------------------------------------------------------
def _pca(inputs, tmp_path, **kw):
    args = {"micrographs": inputs["mics"], "diameter": 20, "checkpoint": inputs["ckpt"],
            "out": tmp_path / "out", "progress": "false", **kw}
    return [f"{k}={v}" for k, v in args.items() if v is not None]


PCA_OPTIONS = [
    ({"diameter": -5}, "diameter", "too small"),
    ({"features.shifts": 0}, "features.shifts", ">= 1"),
    ({"features.tile": -1}, "features.tile", ">= 0"),
    ({"features.box_factor": "wide"}, "features.box_factor", "number"),
    ({"device": "gpu"}, "device", "auto, cpu, cuda"),
    ({"kmeans": "sometimes"}, "kmeans", "true or false"),
]


@pytest.mark.parametrize("kw, key, problem", PCA_OPTIONS, ids=[p[1] for p in PCA_OPTIONS])
def test_pca_bad_option(capsys, tmp_path, inputs, kw, key, problem):
    _run(capsys, tmp_path, inputs, "eval/micrograph_pca.py", _pca(inputs, tmp_path, **kw), f"{key}: ",
         problem)


def test_pca_checkpoint_required(capsys, tmp_path, inputs):
    _run(capsys, tmp_path, inputs, "eval/micrograph_pca.py", _pca(inputs, tmp_path, checkpoint=None),
         "checkpoint: ", "a value is required")


def test_pca_checkpoint_missing(capsys, tmp_path, inputs):
    argv = _pca(inputs, tmp_path, checkpoint=tmp_path / "x")
    _run(capsys, tmp_path, inputs, "eval/micrograph_pca.py", argv, str(tmp_path / "x"),
         "no backbone.safetensors")


def test_pca_corrupt_backbone_is_one_line(capsys, tmp_path, inputs):
    """A backbone.safetensors that is not a safetensors file: named, nothing written."""
    _run(capsys, tmp_path, inputs, "eval/micrograph_pca.py", _pca(inputs, tmp_path),
         str(inputs["ckpt"] / "backbone.safetensors"), "cannot load backbone")
