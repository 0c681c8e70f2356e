"""CryoPPP EMPIAR-10028: extract at the expert masks' centres -> ingest -> split -> train (tiny).

The masks' disks (connected components) give the particle centres; the same boxes cut from the
masks themselves show where each disk lies in its box.
"""

from __future__ import annotations

import json
import math

import mrcfile
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from scipy import ndimage as ndi

from cryofm.cli import main as cli_main
from cryofm.data import dataset
from cryofm.io.coords import mask_centres, write_picks
from cryofm.io.micrograph import read_micrograph
from tests.conftest import ROOT

BOX, DIAMETER, APIX = 96, 60.0, 5.36  # 1.34 Å/px at full size, CryoPPP PNGs downsampled 4x


@pytest.fixture(scope="module")
def picks(shared_data, tmp_path_factory):
    """Centres from the expert masks, one STAR file per micrograph: {split: (folder, {stem: xy})}."""
    base = shared_data / "cryoppp_10028"
    if not base.is_dir():
        pytest.skip("cryoppp_10028 is absent")
    tmp = tmp_path_factory.mktemp("picks10028")
    out = {}
    for split in ("train", "valid"):
        xy = {}
        for f in sorted((base / split / "labels").glob("*.png")):
            xy[f.stem] = mask_centres(read_micrograph(f))
            write_picks(tmp / split / f"{f.stem}.star", xy[f.stem], micrograph=f.name)
        out[split] = (tmp / split, xy)
    return base, out


def _extract(capsys, mics, coords, out, *extra) -> str:
    rc = cli_main(["extract", f"micrographs={mics}", f"coords={coords}", f"box={BOX}", f"out={out}",
                   f"pixel_size={APIX}", "voltage=300", "cs=2.0", "amplitude_contrast=0.1", "progress=false",
                   *extra])
    o, e = capsys.readouterr()
    assert rc == 0, e
    return o


def _fits(xy: np.ndarray, n: int, factor: int, size: int = 1024) -> int:
    """Boxes wholly inside a size² micrograph, by hand: round(x / b) - n/2 >= 0 and + n/2 - 1 < size / b."""
    c = np.floor(xy / factor + 0.5)
    return int(((c - n // 2 >= 0) & (c + n // 2 - 1 <= size // factor - 1)).all(axis=1).sum())


@pytest.mark.parametrize("factor", [1, 2])
def test_boxes_are_centred_on_the_expert_disks(picks, capsys, tmp_path, factor):
    base, by_split = picks
    folder, xy = by_split["train"]
    _extract(capsys, base / "train" / "labels", folder, tmp_path / "masks", f"bin={factor}",
             "norm=false", "invert=false")
    n = BOX // factor
    errors, merged = [], 0
    for stem in xy:
        boxes = mrcfile.read(tmp_path / "masks" / "Particles" / f"{stem}.mrcs")
        assert len(boxes) == _fits(xy[stem], n, factor)
        for b in boxes:
            lab, _ = ndi.label(b > 127.5)
            comp = lab == lab[n // 2, n // 2]
            assert lab[n // 2, n // 2] > 0  # the box centre lies on a particle disk
            area = np.pi * (DIAMETER / 2 / factor) ** 2
            edge = comp[0].any() or comp[-1].any() or comp[:, 0].any() or comp[:, -1].any()
            if edge or comp.sum() > 1.3 * area:  # disks merged with a neighbour: no single centroid
                merged += 1
                continue
            cy, cx = ndi.center_of_mass(comp)
            errors.append(math.hypot(cx - n // 2, cy - n // 2))
    assert len(errors) > 0.6 * (len(errors) + merged)
    assert max(errors) < 1.0  # the disk's centroid within 1 px of box pixel (n/2, n/2)


def test_extract_then_ingest_gives_exactly_the_particles(picks, capsys, tmp_path):
    base, by_split = picks
    folder, xy = by_split["train"]
    o = _extract(capsys, base / "train" / "images", folder, tmp_path / "ext", f"diameter={DIAMETER}")
    want = sum(_fits(v, BOX, 1) for v in xy.values())
    total = sum(len(v) for v in xy.values())
    assert f"{want} particles from 4 micrographs ({total} picks; {total - want} boxes crossing" in o
    assert "invert=true (auto: particles dark" in o  # raw micrographs: dark protein, flipped to bright
    s = json.loads((tmp_path / "ext" / "extract.json").read_text())
    assert s["n_particles"] == want and s["n_edge_skipped"] == total - want
    # each stack: float32 (MRC mode 2), voxel size = pixel size, background normalised per box
    st = mrcfile.open(tmp_path / "ext" / "Particles" / f"{next(iter(xy))}.mrcs", permissive=True)
    assert st.header.mode == 2 and st.voxel_size.x == pytest.approx(APIX) and st.is_image_stack()
    assert st.header.dmax == st.data.max() and st.header.rms == pytest.approx(st.data.std(), rel=1e-5)
    i = np.arange(BOX) - BOX // 2
    bg = i[:, None] ** 2 + i[None, :] ** 2 > 30 ** 2
    assert np.allclose(st.data[:, bg].mean(1), 0, atol=1e-4)
    assert np.allclose(st.data[:, bg].std(1), 1, atol=1e-4)
    # bright protein: nearly every box is brighter inside the particle disk than around it
    assert (st.data[:, ~bg].mean(1) > st.data[:, bg].mean(1)).mean() > 0.9
    st.close()
    rc = cli_main(["ingest", f"input={tmp_path / 'ext' / 'particles.star'}", "experiment=EMPIAR-10028",
                   f"out={tmp_path / 'shards'}", "box=32", "progress=false"])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    man = dataset.load_manifest(tmp_path / "shards")
    assert man["n_particles"] == want
    recs = [r for _, r in dataset.iter_samples(tmp_path / "shards")]
    assert len(recs) == want
    assert all(r["ImagePixelSize"] == pytest.approx(APIX) and r["ImageSize"] == BOX for r in recs)
    assert recs[0]["Voltage"] == 300 and recs[0]["SphericalAberration"] == 2.0
    got = sorted((r["MicrographName"].split("/")[-1], r["CoordinateX"], r["CoordinateY"]) for r in recs)
    ref = sorted((f"{stem}.png", float(x), float(y)) for stem, v in xy.items()
                 for x, y in v if _fits(np.array([[x, y]]), BOX, 1))
    # exactly the expert particles whose box fits, at their original coordinates (picks: 3 decimals)
    assert [g[0] for g in got] == [r[0] for r in ref]
    np.testing.assert_allclose([g[1:] for g in got], [r[1:] for r in ref], atol=1e-3)
    # edge=pad keeps every pick (RELION's nearest-pixel fill)
    o = _extract(capsys, base / "train" / "images", folder, tmp_path / "pad", "edge=pad")
    assert o.startswith(f"{total} particles from 4 micrographs")


def test_10028_extract_ingest_split_train_chain(picks, capsys, tmp_path):
    from cryofm.report.runlog import read_metrics
    from cryofm.train.loop import train

    base, by_split = picks
    table = ["experiment,input"]
    for split, exp in (("train", "10028-a"), ("valid", "10028-b")):
        folder, _ = by_split[split]
        _extract(capsys, base / split / "images", folder, tmp_path / exp, "bin=2", f"diameter={DIAMETER}")
        table.append(f"{exp},{tmp_path / exp / 'particles.star'}")
    (tmp_path / "table.csv").write_text("\n".join(table) + "\n")
    (tmp_path / "facts.csv").write_text("experiment,SequenceCluster\n10028-a,pf80s-a\n10028-b,pf80s-b\n")
    ds = tmp_path / "shards"
    assert cli_main(["ingest", f"table={tmp_path / 'table.csv'}", f"out={ds}", "box=32", "progress=false",
                     f"facts={tmp_path / 'facts.csv'}"]) == 0
    assert cli_main(["split", f"dataset={ds}", "fractions=[0.5,0.5,0]", "group_key=SequenceCluster"]) == 0
    capsys.readouterr()
    split = json.loads((ds / "split.json").read_text())
    assert sorted(split["assignment"].values()) == ["train", "val"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "experiment=tiny", f"data.path={ds}", f"out={tmp_path / 'run'}", "data.image_size=32",
            "train.batch_size_per_gpu=4", "train.progress=false", "model.kwargs.embed_dim=48",
            "model.kwargs.num_heads=2", "train.max_steps=3", "train.checkpoint_every=100"])
    train(cfg)
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert (tmp_path / "run" / "backbone.safetensors").is_file()
