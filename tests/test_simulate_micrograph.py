"""Synthetic micrographs: ground-truth coordinates land on the planted particles, in every format."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import starfile
from scipy import ndimage as ndi

from cryofm.io.coords import read_picks
from cryofm.simulate import densities as D
from cryofm.simulate.micrograph import MicrographSpec, place_particles, simulate_micrograph, write_micrographs


@pytest.fixture(scope="module")
def ring():
    return D.procedural("ring", "C5", diameter=80.0, pixel_size=4.0, resolution=12.0, seed=1)


def test_coordinates_land_on_particle_centres(ring):
    spec = MicrographSpec(size=256, pixel_size=4.0, n_particles=12, min_distance=1.3, snr=1.0,
                          carbon=1.0, contamination=1.0)
    res = simulate_micrograph(ring, spec, np.random.default_rng(3))
    xy, clean, d = res["xy"], res["clean"], res["diameter"]
    assert len(xy) >= 6
    # the noise-free field's centre of mass around each coordinate is the coordinate (sub-pixel)
    yy, xx = np.mgrid[:256, :256]
    for x, y in xy:
        win = ((xx - x) ** 2 + (yy - y) ** 2 <= (0.65 * d) ** 2) * np.clip(clean, 0, None)
        cy, cx = ndi.center_of_mass(win)
        assert abs(cx - x) < 0.5 and abs(cy - y) < 0.5
    # every particle's density is inside the image; nothing outside the planted discs
    covered = np.zeros_like(clean, bool)
    for x, y in xy:
        covered |= (xx - x) ** 2 + (yy - y) ** 2 <= (0.65 * d) ** 2
    assert np.abs(clean[~covered]).max() < 0.02 * clean.max()
    # no particle on the carbon film or on contamination
    ix = np.rint(xy).astype(int)
    assert not (res["carbon"] | res["contamination"])[ix[:, 1], ix[:, 0]].any()
    # at high SNR the picks sit on the strongest local contrast: mean |image| in particle discs is
    # higher than in the empty ice (the check that the picks are not just anywhere)
    hi = simulate_micrograph(ring, MicrographSpec(size=256, pixel_size=4.0, n_particles=12, snr=50.0,
                                                  ice=0.0), np.random.default_rng(4))
    mask = np.zeros((256, 256), bool)
    for x, y in hi["xy"]:
        mask |= (xx - x) ** 2 + (yy - y) ** 2 <= (0.5 * hi["diameter"]) ** 2
    assert np.abs(hi["image"][mask]).mean() > 1.5 * np.abs(hi["image"][~mask]).mean()


def test_placement_respects_min_distance_and_edges():
    xy = place_particles(300, 60, diameter=30.0, min_distance=0.8, rng=np.random.default_rng(0))
    dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert dist.min() >= 0.8 * 30.0
    assert xy.min() >= 15.0 and xy.max() <= 300 - 1 - 15.0


def test_written_ground_truth_reads_back_in_every_format(ring, tmp_path):
    spec = MicrographSpec(size=192, pixel_size=4.0, n_particles=6, min_distance=1.2)
    info = write_micrographs(tmp_path, {"ring": ring}, spec, n=2, seed=5, preview=False)
    star = starfile.read(tmp_path / "particles.star")
    parts = star["particles"]
    assert len(parts) == info["n_particles"] == sum(m["particles"] for m in info["micrographs"])
    assert float(star["optics"]["rlnMicrographPixelSize"].iloc[0]) == 4.0
    for k, mic in enumerate(info["micrographs"]):
        stem = f"mic_{k:04d}"
        with mrcfile.open(tmp_path / "micrographs" / f"{stem}.mrc") as m:
            assert m.data.shape == (192, 192)
            assert float(m.voxel_size.x) == pytest.approx(4.0)
        truth = parts[parts["rlnMicrographName"] == mic["micrograph"]][["rlnCoordinateX", "rlnCoordinateY"]]
        for fmt, suffix in (("star", ".star"), ("csv", ".csv"), ("box", ".box"), ("topaz", ".txt")):
            xy, _ = read_picks(tmp_path / "picks" / fmt / f"{stem}{suffix}")
            np.testing.assert_allclose(xy, truth.to_numpy(), atol=2e-3)
        # EMAN .box stores the lower-left corner: centre − diameter / 2, read here independently
        box = np.loadtxt(tmp_path / "picks" / "box" / f"{stem}.box", ndmin=2)
        np.testing.assert_allclose(box[:, :2] + box[:, 2:4] / 2, truth.to_numpy(), atol=2e-3)
    assert json.loads((tmp_path / "ground_truth.json").read_text())["seed"] == 5
