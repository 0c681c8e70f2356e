"""Simulated micrographs with known positions, orientations and CTF: the extracted particles are the
simulator's projections, and the CTF given as a micrographs_ctf.star reaches the particles."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryofm.cli import main as cli_main
from cryofm.data import dataset
from cryofm.io.coords import write_picks
from cryofm.simulate import densities as D
from cryofm.simulate.ctf import ctf_2d
from cryofm.simulate.micrograph import MicrographSpec, make_projector, particle_box, simulate_micrograph
from cryofm.simulate.rotations import euler_to_matrix

APIX = 4.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Two micrographs (MRC, particles dark as recorded), picks at the true centres, a CTF STAR."""
    tmp = tmp_path_factory.mktemp("sim")
    ring = D.procedural("ring", "C2", diameter=80.0, pixel_size=APIX, resolution=12.0, seed=1)
    proj = make_projector(ring, APIX)
    spec = MicrographSpec(size=320, pixel_size=APIX, n_particles=14, min_distance=1.3, snr=1.0,
                          defocus=(8000.0, 12000.0))
    truth, rows = {}, []
    for k in range(2):
        res = simulate_micrograph(ring, spec, np.random.default_rng([7, k]), proj)
        name = f"mic_{k}"
        (tmp / "Micrographs").mkdir(exist_ok=True)
        with mrcfile.new(tmp / "Micrographs" / f"{name}.mrc", overwrite=True) as m:
            m.set_data(res["image"])
        write_picks(tmp / "picks" / f"{name}_autopick.star", res["xy"],
                    scores=np.linspace(1, 0, len(res["xy"])))
        du, dv, da = res["ctf"]
        rows.append({"rlnMicrographName": f"Micrographs/{name}.mrc", "rlnOpticsGroup": 1,
                     "rlnDefocusU": du, "rlnDefocusV": dv, "rlnDefocusAngle": da,
                     "rlnCtfMaxResolution": 5.0 + k})
        truth[name] = res
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographOriginalPixelSize": [APIX], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                           "rlnMicrographPixelSize": [APIX]})
    starfile.write({"optics": optics, "micrographs": pd.DataFrame(rows)}, tmp / "micrographs_ctf.star")
    return tmp, truth, proj, particle_box(ring, APIX)


def _z(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=(1, 2), keepdims=True)
    return a / np.linalg.norm(a, axis=(1, 2), keepdims=True)


def test_extracted_particles_are_the_known_projections(sim, tmp_path, capsys):
    tmp, truth, proj, box = sim
    rc = cli_main(["extract", f"micrographs={tmp / 'micrographs_ctf.star'}", f"coords={tmp / 'picks'}",
                   f"box={box}", f"out={tmp_path / 'ext'}", f"diameter={truth['mic_0']['diameter']}",
                   "edge=pad", "progress=false", f"root={tmp}"])
    out = capsys.readouterr().out
    assert rc == 0 and "auto: particles dark in the micrographs" in out
    text = (tmp_path / "ext" / "particles.star").read_text()
    assert text.count("# version 30001\n\ndata_") == 2  # RELION 3.1's block version marks
    star = starfile.read(tmp_path / "ext" / "particles.star")
    parts, optics = star["particles"], star["optics"]
    assert optics["rlnImagePixelSize"].tolist() == [APIX] and optics["rlnImageSize"].tolist() == [box]
    assert optics["rlnVoltage"].tolist() == [300.0]
    for name, res in truth.items():
        mine = parts[parts["rlnMicrographName"] == f"Micrographs/{name}.mrc"]
        assert len(mine) == len(res["xy"])
        np.testing.assert_allclose(mine["rlnCoordinateX"], res["xy"][:, 0], atol=1e-3)
        # per-micrograph CTF copied from the micrographs STAR, scores as the autopick FOM
        assert np.allclose(mine["rlnDefocusU"], res["ctf"][0]) and np.allclose(mine["rlnDefocusAngle"],
                                                                                 res["ctf"][2], atol=1e-4)
        np.testing.assert_allclose(mine["rlnAutopickFigureOfMerit"], np.linspace(1, 0, len(mine)), atol=1e-3)
        ext = mrcfile.read(tmp_path / "ext" / "Particles" / f"{name}.mrcs")
        # the simulator's clean projections at the known orientations, with the micrograph's CTF
        p = np.asarray(proj.project(euler_to_matrix(*res["angles"].T), size=box, pixel_size=APIX))
        ctf = ctf_2d(box, APIX, *res["ctf"], 300.0, 2.7, 0.1, 50.0, layout="half")[0]
        pc = torch.fft.irfft2(torch.fft.rfft2(torch.from_numpy(p)) * ctf, s=(box, box)).numpy()
        c = np.einsum("iab,jab->ij", _z(ext), _z(pc))
        own, other = np.diag(c), c[~np.eye(len(c), dtype=bool)]
        # each particle is most like its own projection (a C2 ring's views can look alike: most, not all)
        assert (c.argmax(axis=1) == np.arange(len(c))).mean() >= 0.75
        assert own.mean() > 0.2 and own.mean() > 2 * other.mean()
        # without the CTF too: positive correlation with the clean projection (protein bright)
        assert np.diag(np.einsum("iab,jab->ij", _z(ext), _z(p))).mean() > 0.1
    # the CTF reaches the shards through ingest
    assert cli_main(["ingest", f"input={tmp_path / 'ext' / 'particles.star'}", "experiment=sim",
                     f"out={tmp_path / 'shards'}", "box=32", "progress=false"]) == 0
    capsys.readouterr()
    recs = [r for _, r in dataset.iter_samples(tmp_path / "shards")]
    assert len(recs) == sum(len(r["xy"]) for r in truth.values())
    by_mic = {r["MicrographName"]: r for r in recs}
    assert by_mic["Micrographs/mic_1.mrc"]["DefocusU"] == pytest.approx(truth["mic_1"]["ctf"][0], rel=1e-5)
    assert by_mic["Micrographs/mic_1.mrc"]["CtfMaxResolution"] == 6.0


def test_invert_false_keeps_dark_particles_and_negatives_avoid_picks(sim, tmp_path, capsys):
    tmp, truth, _, box = sim
    d = truth["mic_0"]["diameter"]
    rc = cli_main(["extract", f"micrographs={tmp / 'Micrographs'}", f"coords={tmp / 'picks'}", f"box={box}",
                   f"out={tmp_path / 'ext'}", f"diameter={d}", "invert=false", "negatives=6", "seed=3",
                   f"pixel_size={APIX}", "progress=false"])
    assert rc == 0, capsys.readouterr().err
    ext = mrcfile.read(tmp_path / "ext" / "Particles" / "mic_0.mrcs")
    n = box
    i = np.arange(n) - n // 2
    disk = i[:, None] ** 2 + i[None, :] ** 2 <= (d / 2) ** 2
    assert (ext[:, disk].mean(1) < ext[:, ~disk].mean(1)).mean() > 0.8  # dark, as recorded
    neg = starfile.read(tmp_path / "ext" / "negatives.star")["particles"]
    for name, res in truth.items():
        w = neg[neg["rlnMicrographName"].str.endswith(f"{name}.mrc")][["rlnCoordinateX", "rlnCoordinateY"]]
        w = w.to_numpy()
        assert 1 <= len(w) <= 6
        assert np.hypot(*(w[:, None] - res["xy"][None]).transpose(2, 0, 1)).min() >= d
        stack = mrcfile.read(tmp_path / "ext" / "Particles" / f"{name}_negatives.mrcs")
        assert len(stack) == len(w)
