"""End to end: ``cryofm maplabels`` on GroEL (PDB 1OEL, 14-mer from BIOMT).

1OEL is not placed in EMD-1997, so the "experimental" map is simulated from the model itself
(8 Å, 2.5 Å voxels, noise); the real EMD-1997 + 1OEL pair must be refused as unplaced.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryofm.cli import main
from cryofm.io.atomic import read_model
from cryofm.io.mapio import DensityMap, read_map, write_map
from cryofm.maps.batch import split_shards
from cryofm.maps.cubes import read_cube
from cryofm.maps.simulate_map import simulate_map
from tests.conftest import shared_file

VOXEL = 2.0  # output voxel size of the tests (1 Å is the default; 2 Å keeps the test small)


@pytest.fixture(scope="module")
def groel(tmp_path_factory):
    """(map path, model path, out dir) after one successful ``cryofm maplabels`` run."""
    pdb = shared_file("emd1997_groel", "1oel.pdb")
    model = read_model(pdb)
    root = tmp_path_factory.mktemp("maplabels")
    lo = model.xyz.min(axis=0) - 12.0
    n = np.ceil((model.xyz.max(axis=0) + 12.0 - lo) / 2.5).astype(int)
    grid = DensityMap(np.zeros(n[::-1], np.float32), [2.5] * 3, lo)
    density = simulate_map(grid, model.xyz, model.element, 8.0)
    noise = np.random.default_rng(0).normal(0, 0.5 * density.std(), density.shape).astype(np.float32)
    write_map(root / "groel_sim.mrc", grid.like(density + noise))
    out = root / "out"
    code = main(["maplabels", f"map={root / 'groel_sim.mrc'}", f"model={pdb}", f"out={out}", "name=groel",
                 f"voxel_size={VOXEL}", "cubes.size=32", "cubes.overlap=8"])
    assert code == 0
    return root / "groel_sim.mrc", pdb, out


def test_outputs_share_the_grid_and_names(groel):
    map_path, _, out = groel
    files = sorted(p.name for p in (out / "groel").iterdir())
    assert files == ["groel.json", "groel.mrc", "groel_classification.mrc", "groel_classification_types.mrc",
                     "groel_fsc.csv", "groel_fsc.png", "groel_fsc_curves.csv", "groel_gaussian_simulated.mrc",
                     "groel_regression.mrc", "groel_slices.png", "shards"]
    src = read_map(map_path)
    maps = {k: read_map(out / "groel" / f"groel{k}.mrc") for k in
            ("", "_gaussian_simulated", "_regression", "_classification", "_classification_types")}
    for m in maps.values():
        assert m.data.shape == maps[""].data.shape
        np.testing.assert_allclose(m.voxel_size, VOXEL)
        np.testing.assert_allclose(m.origin, src.origin, atol=1e-3)  # resampling keeps the origin


def test_labels_follow_the_atoms(groel):
    _, pdb, out = groel
    summary = json.loads((out / "groel" / "groel.json").read_text())
    n_atom_lines = sum(1 for line in pdb.read_text().splitlines() if line.startswith("ATOM  "))
    assert summary["n_atoms"] == 2 * n_atom_lines  # BIOMT: two heptameric rings
    assert summary["fraction_inside"] > 0.7  # placed: the (noisy) map was simulated from this model
    model = read_model(pdb)
    cls = read_map(out / "groel" / "groel_classification.mrc")
    types = read_map(out / "groel" / "groel_classification_types.mrc").data
    vox = np.floor((model.xyz - cls.origin) / VOXEL + 0.5).astype(int)
    expected = np.zeros(cls.data.shape, bool)
    expected[vox[:, 2], vox[:, 1], vox[:, 0]] = True
    np.testing.assert_array_equal(cls.data == 1, expected)
    # Every Cα-typed voxel holds a Cα; every voxel with a 6 Å neighbour label lies within 6 Å of one.
    ca = vox[model.atom_name == "CA"]
    ca_voxels = set(map(tuple, ca[:, ::-1].tolist()))
    assert set(map(tuple, np.argwhere(types == 1).tolist())) <= ca_voxels
    assert (types == 1).sum() > 0.5 * len(ca_voxels)
    assert set(np.unique(cls.data).tolist()) == {0, 1, 2}
    sim = read_map(out / "groel" / "groel_gaussian_simulated.mrc").data
    reg = read_map(out / "groel" / "groel_regression.mrc").data
    np.testing.assert_array_equal(reg[cls.data > 0], sim[cls.data > 0])
    assert not reg[cls.data == 0].any()


def test_fsc_table_and_shards(groel):
    _, _, out = groel
    fsc = pd.read_csv(out / "groel" / "groel_fsc.csv")
    assert list(fsc.columns) == ["map", "mask", "fsc_0.5_A", "fsc_0.143_A"] and len(fsc) == 4
    reg = fsc[fsc["map"] == "regression"]
    exp = fsc[fsc["map"] == "experimental"]
    np.testing.assert_allclose(reg["fsc_0.5_A"], 2 * VOXEL)  # the label is the model map: Nyquist
    assert (exp["fsc_0.5_A"].to_numpy() > 2 * VOXEL + 0.5).all()  # noise limits the experimental map
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["maps"]["groel"]
    assert entry["n_cubes"] > 0 and sum(s["n_cubes"] for s in manifest["splits"].values()) == entry["n_cubes"]
    with tarfile.open(out / entry["shards"][0]) as tar:
        names = tar.getnames()
        sample = {"json": tar.extractfile(names[0].split(".")[0] + ".json").read()}
        for k in ("input", "regression", "classification", "types"):
            sample[f"{k}.npy"] = tar.extractfile(f"{names[0].split('.')[0]}.{k}.npy").read()
    cube = read_cube(sample)
    z, y, x = cube["json"]["start_zyx"]
    cls = read_map(out / "groel" / "groel_classification.mrc").data
    np.testing.assert_array_equal(cube["classification"], cls[z:z + 32, y:y + 32, x:x + 32])


def test_unplaced_model_is_refused_without_output(tmp_path, capsys):
    real = shared_file("emd1997_groel", "1997.map")
    pdb = shared_file("emd1997_groel", "1oel.pdb")
    code = main(["maplabels", f"map={real}", f"model={pdb}", f"out={tmp_path / 'o'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "1oel.pdb" in err and "not placed" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_batch_table_resumes_and_reports_failures(groel, tmp_path, capsys):
    map_path, pdb, out = groel
    batch_out = tmp_path / "batch"
    shutil.copytree(out / "groel", batch_out / "groel")  # already done: must be skipped, not redone
    stamp = (batch_out / "groel" / "groel.mrc").stat().st_mtime_ns
    table = tmp_path / "pairs.csv"
    real = shared_file("emd1997_groel", "1997.map")
    files = tmp_path / "files"  # the table's files live elsewhere: root= names their folder
    files.mkdir()
    for name, target in (("sim.map", map_path), ("model.pdb", pdb), ("1997.map", real)):
        (files / name).symlink_to(target)
    table.write_text("map,model,id,resolution\nfiles/sim.map,files/model.pdb,groel,3.1\n"
                     f"{files / '1997.map'},{files / 'model.pdb'},emd1997,7.0\n")
    bad = main(["maplabels", f"table={table}", f"out={batch_out}", f"root={files / 'none'}"])
    assert bad == 2 and "root= folder" in capsys.readouterr().err
    code = main(["maplabels", f"table={table}", f"out={batch_out}", f"voxel_size={VOXEL}",
                 f"root={tmp_path}"])
    assert code == 1  # one pair skipped
    assert (batch_out / "groel" / "groel.mrc").stat().st_mtime_ns == stamp
    manifest = json.loads((batch_out / "manifest.json").read_text())
    assert list(manifest["maps"]) == ["groel"] and list(manifest["failed"]) == ["emd1997"]
    assert "not placed" in manifest["failed"]["emd1997"]
    assert json.loads((batch_out / "split.json").read_text()).keys() == {"groel"}
    summary = pd.read_csv(batch_out / "fsc_summary.csv")
    assert summary["id"].tolist() == ["groel"]
    assert summary["regression_masked_fsc_0.5_A"].tolist() == [2 * VOXEL]
    assert manifest["fsc_mean"]["regression_masked_fsc_0.5_A"] == 2 * VOXEL  # mean over the one map
    assert manifest["maps"]["groel"]["resolution_source"] == "fsc_0.5_masked"  # done before the table
    assert not [p for p in batch_out.iterdir() if p.name.startswith(".tmp")]
    shards = split_shards(batch_out, manifest["maps"]["groel"]["split"])
    assert shards == [str(batch_out / s) for s in manifest["maps"]["groel"]["shards"]]
    assert split_shards(batch_out, "all") == shards and all(Path(s).is_file() for s in shards)


def test_permuted_anisotropic_input_labels_land_on_the_atoms(tmp_path):
    """A map stored with mapc/mapr/maps = 3/1/2 and 1.6 x 1.2 x 0.9 Å voxels, model of 30 residues."""
    import gemmi
    import mrcfile

    from cryofm.maps.pipeline import LabelOptions, label_pair

    st = gemmi.read_structure(str(shared_file("emd1997_groel", "1oel.pdb")))
    st.remove_hydrogens()
    st.remove_waters()
    chain = st[0]["A"]
    for _ in range(len(chain) - 30):
        del chain[30]
    for name in [c.name for c in st[0] if c.name != "A"]:
        st[0].remove_chain(name)
    pdb = tmp_path / "a30.pdb"
    st.write_pdb(str(pdb))
    model = read_model(pdb, assembly=False)  # its BIOMT records name the removed chains
    assert len(model) > 150 and set(model.chain) == {"A"}
    voxel = np.array([1.6, 1.2, 0.9])
    lo = model.xyz.min(axis=0) - 8.0
    n = np.ceil((model.xyz.max(axis=0) + 8.0 - lo) / voxel).astype(int)
    grid = DensityMap(np.zeros(n[::-1], np.float32), voxel, lo)
    zyx = simulate_map(grid, model.xyz, model.element, 5.0)
    path = tmp_path / "perm.mrc"
    with mrcfile.new(path) as mrc:  # columns along Z, rows along X, sections along Y
        mrc.set_data(np.ascontiguousarray(zyx.transpose(1, 2, 0)))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 1, 2
        mrc.header.mx, mrc.header.my, mrc.header.mz = n
        mrc.header.cella = tuple(n * voxel)
        mrc.header.origin = tuple(lo)
    opts = LabelOptions(voxel_size=1.0, assembly=False, cubes=False)
    summary = label_pair(path, pdb, tmp_path / "out", "a30", opts)
    assert summary["fraction_inside"] > 0.5 and summary["n_atoms_in_grid"] == len(model)
    cls = read_map(tmp_path / "out" / "a30" / "a30_classification.mrc")
    np.testing.assert_allclose(cls.origin, lo, atol=1e-3)
    vox = np.floor((model.xyz - lo) / 1.0 + 0.5).astype(int)
    expected = np.zeros(cls.data.shape, bool)
    expected[vox[:, 2], vox[:, 1], vox[:, 0]] = True
    np.testing.assert_array_equal(cls.data == 1, expected)
    # The resampled map peaks where the simulated density does: on the atoms.
    exp = read_map(tmp_path / "out" / "a30" / "a30.mrc").data
    sim = read_map(tmp_path / "out" / "a30" / "a30_gaussian_simulated.mrc").data
    assert np.corrcoef(exp.ravel(), sim.ravel())[0, 1] > 0.5
    assert exp[expected].mean() > 3 * exp[cls.data == 0].mean()
