"""Simulated multi-experiment datasets: shards + manifest whose records are the images' ground truth."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import starfile

from cryofm.cli import main
from cryofm.data.dataset import iter_samples, load_manifest
from cryofm.data.normalize import fourier_resize
from cryofm.io.coords import read_picks
from cryofm.simulate import dataset as ds
from cryofm.simulate.presets import load_preset
from cryofm.simulate.rotations import euler_to_matrix


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "tiny"
    assert main(["simulate", "preset=tiny", f"out={out}", "seed=3", "snr=20"]) == 0
    return out


def _by_experiment(out):
    groups = defaultdict(list)
    for img, rec in iter_samples(out, "all"):
        groups[rec["experiment"]].append((img, rec))
    return groups


def test_dataset_layout_facts_and_records(tiny):
    preset = load_preset("tiny")
    names = [e["name"] for e in preset["experiments"]]
    manifest = load_manifest(tiny)
    assert sorted(manifest["experiments"]) == sorted(names)
    assert all(manifest["experiments"][n]["n"] == preset["n_particles"] for n in names)
    split = json.loads((tiny / "split.json").read_text())["assignment"]
    assert sorted(split) == sorted(names)
    groups = _by_experiment(tiny)
    for name in names:
        rows = groups[name]
        assert len(rows) == preset["n_particles"]
        img, rec = rows[0]
        assert img.shape == (preset["box"], preset["box"])
        assert abs(float(img.mean())) < 0.05 and abs(float(img.std()) - 1.0) < 0.05
        for key in ("AngleRot", "AngleTilt", "AnglePsi", "OriginXAngst", "OriginYAngst", "DefocusU",
                    "DefocusV", "DefocusAngle", "Voltage", "ElectronDose", "SphericalAberration",
                    "AmplitudeContrast", "ImagePixelSize", "MolecularWeight", "MaxDiameter"):
            assert np.isfinite(rec[key]), key
        assert rec["ImageSize"] == preset["image_size"]
        assert rec["EffectiveImagePixelSize"] == pytest.approx(
            rec["ImagePixelSize"] * preset["image_size"] / preset["box"], rel=1e-6)
        assert rec["DefocusV"] <= rec["DefocusU"]
        entry = next(e for e in preset["experiments"] if e["name"] == name)
        assert rec["Symmetry"] == entry["symmetry"] and rec["ProteinClass"] == f"synthetic {entry['kind']}"
    # a larger shape gets a larger measured diameter and weight
    d = {n: groups[n][0][1]["MaxDiameter"] for n in names}
    assert d["blob_c1"] < d["ring_c5"] < d["rod_d2"]


def test_records_are_the_ground_truth_of_their_images(tiny):
    """Re-projecting each particle from its recorded pose, origin and CTF (independently of the
    simulator's own parameter arrays) matches its stored image better than other particles do."""
    preset = load_preset("tiny")
    entry = next(e for e in preset["experiments"] if e["name"] == "blob_c1")  # asymmetric
    dens, _ = ds.load_experiment(entry, tiny, int(preset["volume_box"]))
    rows = _by_experiment(tiny)["blob_c1"]
    recs = [r for _, r in rows]
    imgs = np.stack([i for i, _ in rows])
    size = preset["image_size"]
    col = {k: np.array([r[k] for r in recs]) for k in recs[0] if isinstance(recs[0][k], float)}
    proj = ds.make_projector(dens, col, size)
    ref = proj.project(euler_to_matrix(col["AngleRot"], col["AngleTilt"], col["AnglePsi"]), size=size,
                       pixel_size=col["ImagePixelSize"],
                       shifts=np.stack([col["OriginXAngst"], col["OriginYAngst"]], 1),
                       ctf={"defocus_u": col["DefocusU"], "defocus_v": col["DefocusV"],
                            "defocus_angle": col["DefocusAngle"], "voltage": col["Voltage"],
                            "cs": col["SphericalAberration"], "amplitude_contrast": col["AmplitudeContrast"],
                            "bfactor": col["CtfBfactor"]})
    ref = fourier_resize(ref, preset["box"])

    def z(a):
        a = a.reshape(len(a), -1)
        return (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)

    corr = z(ref) @ z(imgs).T / imgs[0].size
    own = np.diag(corr)
    others = (corr - np.diag(np.full(len(corr), np.inf))).max(1)
    assert np.all(own > others)
    # the recorded per-particle SNR (at the simulated ImageSize) is the image's: corr² / (1 − corr²)
    # = var(signal) / var(noise); Fourier-cropping to the stored box keeps (box / ImageSize)² of the
    # white noise and nearly all of the low-frequency signal
    measured = own**2 / (1 - own**2)
    gain = (size / preset["box"]) ** 2
    assert np.median(measured / col["SimSNR"]) == pytest.approx(gain, rel=0.15)


def _r2(values: np.ndarray, labels: list[str]) -> float:
    """Fraction of the variance of ``values`` explained by the experiment label."""
    lab = np.asarray(labels)
    means = {g: values[lab == g].mean() for g in set(labels)}
    fitted = np.array([means[g] for g in lab])
    return 1.0 - ((values - fitted) ** 2).sum() / max(((values - values.mean()) ** 2).sum(), 1e-12)


def test_confound_flag_ties_or_frees_acquisition(tiny, tmp_path):
    free = tmp_path / "free"
    assert main(["simulate", "preset=tiny", f"out={free}", "confound=false", "n_particles=40",
                 "split=false"]) == 0
    for out, confounded in ((tiny, True), (free, False)):
        recs = [r for _, r in iter_samples(out, "all")]
        labels = [r["experiment"] for r in recs]
        for key in ("ImagePixelSize", "ElectronDose", "DefocusU"):
            r2 = _r2(np.array([r[key] for r in recs]), labels)
            assert (r2 > 0.8) if confounded else (r2 < 0.3), (key, confounded, r2)
    # confounded: the pixel size grows with particle size
    recs = {r["experiment"]: r for _, r in iter_samples(tiny, "all")}
    by_size = sorted(recs.values(), key=lambda r: r["MaxDiameter"])
    assert [r["ImagePixelSize"] for r in by_size] == sorted(r["ImagePixelSize"] for r in by_size)
    assert not (free / "split.json").exists()


def test_missing_real_data_falls_back_to_honest_stand_in(tmp_path):
    out = tmp_path / "ds"
    (tmp_path / "none").mkdir()  # a shared-data folder without the maps
    assert main(["simulate", "preset=demo", f"out={out}", f"shared_data={tmp_path / 'none'}",
                 "experiments=[groel_emd1997,blob_c1]", "n_particles=8", "box=32", "image_size=32"]) == 0
    info = json.loads((out / "simulation.json").read_text())
    groel = info["experiments"]["groel_emd1997"]
    assert groel["density"]["stand_in_for"].endswith("1997.map")
    assert "EMDB" not in groel["facts"] and groel["facts"]["ProteinClass"] == "synthetic ring"
    assert groel["facts"]["Symmetry"] == "D7"


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["simulate", "preset=nosuch", f"out={out}"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["simulate", "preset=tiny", f"out={out}", "experiments=[nope]"]) == 2
    assert not out.exists()


def test_micrograph_mode_writes_micrographs_and_matching_picks(tmp_path):
    out = tmp_path / "mics"
    assert main(["simulate", "mode=micrographs", "preset=tiny", f"out={out}"]) == 0
    parts = starfile.read(out / "particles.star")["particles"]
    mics = sorted((out / "micrographs").glob("*.mrc"))
    assert len(mics) == load_preset("tiny")["micrographs"]["n"]
    for mic in mics:
        truth = parts[parts["rlnMicrographName"] == f"micrographs/{mic.name}"]
        xy, _ = read_picks(out / "picks" / "csv" / f"{mic.stem}.csv")
        np.testing.assert_allclose(xy, truth[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(), atol=2e-3)
    assert (out / "preview.png").stat().st_size > 0


def test_groel_model_facts_from_the_assembly(shared_data):
    entry = next(e for e in load_preset("demo")["experiments"] if e["name"] == "groel_1oel")
    dens, facts = ds.load_experiment(entry, shared_data, 48)
    # PDB 1OEL: 7 chains + BIOMT → the GroEL 14-mer, ~57 kDa per chain (modelled residues only)
    assert facts["Subunits"] == 14
    assert 650 < facts["MolecularWeight"] < 820
    assert 170 < facts["MaxDiameter"] < 200
    assert dens.box <= 48


def test_micrograph_snr_sets_the_noise_of_the_micrographs(tmp_path, capsys):
    """Same seed, same particles: the lower the SNR, the less a micrograph follows the nearly clean one."""
    import mrcfile

    def first(snr: float) -> np.ndarray:
        out = tmp_path / f"snr_{snr}"
        sim = ["simulate", "mode=micrographs", "preset=tiny", f"out={out}", f"micrograph_snr={snr}"]
        assert main(sim) == 0
        return mrcfile.read(sorted((out / "micrographs").glob("*.mrc"))[0]).astype(np.float64).ravel()

    clean = first(20.0)
    r_noisy, r_mid = np.corrcoef(first(0.05), clean)[0, 1], np.corrcoef(first(1.0), clean)[0, 1]
    assert r_noisy < 0.6 < 0.8 < r_mid, (r_noisy, r_mid)  # measured 0.46 and 0.90
    bad = ["simulate", "mode=micrographs", "preset=tiny", f"out={tmp_path / 'bad'}", "micrograph_snr=-1"]
    assert main(bad) == 2
    assert "micrograph_snr: must be a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
