"""Stack paths of a real RELION project layout, and paths that must never be opened."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryofm.data import dataset
from cryofm.data.normalize import normalize
from cryofm.errors import InputError
from cryofm.io.mrc import write_stack
from cryofm.io.particles import read_particles
from cryofm.io.paths import StackResolver, project_dir, table_file

BOX = 16


def _stack(path: Path, n: int, seed: int) -> np.ndarray:
    imgs = np.random.default_rng(seed).normal(size=(n, BOX, BOX)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_stack(path, imgs, voxel_size=1.0)
    return imgs


def _star(path: Path, names: list[str], psize: float = 2.0) -> Path:
    """A RELION 3.1+ particle STAR (optics block) naming ``names``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n"
                    f"_rlnImageSize #3\n_rlnImageDimensionality #4\n1 {psize} {BOX} 2\n\n"
                    "# version 30001\n\ndata_particles\n\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n"
                    "_rlnDefocusU #3\n" + "".join(f"{n} 1 {10000 + i}\n" for i, n in enumerate(names)))
    return path


@pytest.fixture
def project(tmp_path):
    """A RELION project: default_pipeline.star, Extract/job012/Movies/*.mrcs, Refine3D/job020/run_data.star
    naming the stacks relative to the project dir (as RELION does), and a decoy stack of the same name
    beside the STAR file holding different images."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "default_pipeline.star").write_text("data_pipeline_general\n\n_rlnPipeLineJobCounter 21\n")
    imgs = {m: _stack(proj / "Extract" / "job012" / "Movies" / f"{m}.mrcs", 3, seed=i)
            for i, m in enumerate(("mic1", "mic2"))}
    names = [f"{k:06d}@Extract/job012/Movies/{m}.mrcs" for m in ("mic1", "mic2") for k in (1, 2, 3)]
    star = _star(proj / "Refine3D" / "job020" / "run_data.star", names)
    decoy = proj / "Refine3D" / "job020" / "mic1.mrcs"
    _stack(decoy, 3, seed=99)
    return proj, star, imgs, decoy


def test_relion_project_layout_ingests_the_named_stacks(project, tmp_path, monkeypatch, capsys):
    from cryofm.cli import main

    proj, star, imgs, _ = project
    monkeypatch.chdir(proj)  # RELION users run from the project dir
    out = tmp_path / "ds"
    rc = main(["ingest", "input=Refine3D/job020/run_data.star", "experiment=p", f"out={out}",
               f"box={BOX}", "progress=false"])
    assert rc == 0, capsys.readouterr().err
    got = list(dataset.iter_samples(out))
    assert [r["ImageName"] for _, r in got] == [f"{k:06d}@Extract/job012/Movies/{m}.mrcs"
                                                 for m in ("mic1", "mic2") for k in (1, 2, 3)]
    want = np.concatenate([imgs["mic1"], imgs["mic2"]])
    # the stacks under the project dir, not the same-named decoy beside the STAR
    np.testing.assert_allclose(np.stack([img for img, _ in got]), normalize(want), atol=3e-3)
    assert [r["DefocusU"] for _, r in got] == [10000.0 + i for i in range(6)]
    settings = dataset.load_manifest(out)["experiments"]["p"]["settings"]
    assert "stack_substitutions" not in settings


def test_project_dir_found_from_the_star_file_wherever_the_cwd_is(project, tmp_path, monkeypatch):
    proj, star, _, _ = project
    monkeypatch.chdir(tmp_path)
    assert project_dir(star.parent, "relion") == proj
    df = read_particles(star)
    assert set(df["_stack"]) == {str(proj / "Extract/job012/Movies/mic1.mrcs"),
                                 str(proj / "Extract/job012/Movies/mic2.mrcs")}
    r = StackResolver(star, None, "relion")
    assert r.folders == [proj, star.parent] and r.root == proj


def test_missing_named_stack_falls_back_to_the_one_beside_the_star_and_says_so(project):
    proj, star, imgs, decoy = project
    (proj / "Extract/job012/Movies/mic1.mrcs").unlink()
    df = read_particles(star)
    assert set(df["_stack"]) == {str(star.parent / "mic1.mrcs"),
                                 str(proj / "Extract/job012/Movies/mic2.mrcs")}
    notes = df.attrs["stack_notes"]
    assert len(notes) == 1 and notes[0].startswith("Extract/job012/Movies/mic1.mrcs (not found as written")
    assert notes[0].endswith(f"-> {star.parent / 'mic1.mrcs'}")


def test_two_same_named_candidates_are_ambiguous(project):
    proj, star, imgs, decoy = project
    (proj / "Extract/job012/Movies/mic1.mrcs").rename(proj / "mic1.mrcs")  # now beside the STAR and in proj
    with pytest.raises(InputError) as exc:
        read_particles(star)
    msg = str(exc.value)
    assert msg.startswith(f"{star}: row 1 (000001@Extract/job012/Movies/mic1.mrcs): ")
    assert "several files share its name" in msg and "ambiguous" in msg


def test_missing_stack_error_names_the_folders_searched(project, capsys):
    from cryofm.cli import main

    proj, star, _, decoy = project
    decoy.unlink()
    (proj / "Extract/job012/Movies/mic2.mrcs").unlink()
    rc = main(["ingest", f"input={star}", "experiment=p", f"out={proj / 'out'}", "progress=false"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err == (f"cryofm ingest: error: {star}: 000001@Extract/job012/Movies/mic2.mrcs: particle stack "
                   f"not found (searched: {proj}, {star.parent})")
    assert not (proj / "out").exists()


def test_explicit_root_is_the_containment_root(project, tmp_path):
    proj, star, _, _ = project
    df = read_particles(star, root=proj)
    assert set(df["_stack"]) == {str(proj / f"Extract/job012/Movies/mic{i}.mrcs") for i in (1, 2)}
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(InputError, match=r"leads outside .*elsewhere \(root=\); not opened"):
        read_particles(_star(tmp_path / "x" / "p.star", [f"1@{proj}/Extract/job012/Movies/mic1.mrcs"]),
                       root=other)


@pytest.mark.parametrize(("name", "problem"), [
    ("000001@../../../x.mrcs", "leads outside"),
    ("000001@/etc/passwd.mrcs", "leads outside"),
    ("000001@/etc/passwd", "is not an MRC stack name"),
    ("000001@default_pipeline.star", "is not an MRC stack name"),
    ("000001@Extract/../../../../outside.mrcs", "leads outside"),
])
def test_hostile_image_names_are_refused_before_opening(project, name, problem, monkeypatch):
    proj, _, _, _ = project
    star = _star(proj / "Select" / "job030" / "particles.star",
                 ["000001@Extract/job012/Movies/mic1.mrcs", name])
    opened = []
    import cryofm.io.mrc as mrc

    real = mrc.Stack.__init__
    monkeypatch.setattr(mrc.Stack, "__init__", lambda self, p: opened.append(p) or real(self, p))
    with pytest.raises(InputError) as exc:
        read_particles(star)
    msg = str(exc.value)
    assert msg.startswith(f"{star}: row 2 ({name}): ") and problem in msg and "\n" not in msg
    assert opened == []


def test_symlink_inside_the_project_is_followed(project, tmp_path):
    """RELION projects link Movies/ etc. to storage elsewhere: a link the user made is theirs."""
    proj, _, imgs, _ = project
    storage = tmp_path / "storage"
    (proj / "Extract/job012/Movies").rename(storage)
    (proj / "Extract/job012/Movies").symlink_to(storage)
    df = read_particles(proj / "Refine3D/job020/run_data.star")
    assert Path(df["_stack"].iloc[0]).resolve() == storage / "mic1.mrcs"


def test_absolute_names_through_a_linked_project_path(project, tmp_path):
    """A project reached through a symlink (/home -> /mnt/home): absolute names written with the
    linked path are inside it."""
    proj, _, _, _ = project
    link = tmp_path / "linked"
    link.symlink_to(proj)
    star = _star(link / "Select" / "job031" / "abs.star",
                 [f"1@{link}/Extract/job012/Movies/mic1.mrcs", f"2@{link}/Extract/job012/Movies/mic2.mrcs"])
    df = read_particles(star)
    assert df["_stack"].tolist() == [f"{link}/Extract/job012/Movies/mic1.mrcs",
                                     f"{link}/Extract/job012/Movies/mic2.mrcs"]
    with pytest.raises(InputError, match="leads outside"):
        read_particles(_star(link / "Select" / "job032" / "out.star", [f"1@{tmp_path}/x.mrcs"]))


def test_table_file_stays_in_the_tables_folder_or_root_either_spelling(tmp_path):
    real = tmp_path / "real"
    (real / "seqs").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)  # /home -> /mnt/home style: the folder has two spellings
    table = link / "t.csv"
    assert table_file("seqs/a.fasta", table, None, "row 1") == link / "seqs" / "a.fasta"
    # an absolute name written through the resolved spelling is still inside
    assert table_file(str(real / "seqs" / "a.fasta"), table, None, "row 1") == real / "seqs" / "a.fasta"
    want = r"row 1: .* leads outside .* \(the table's folder\); not opened"
    for bad in ("../x.fasta", "seqs/../../x.fasta", str(tmp_path / "x.fasta")):
        with pytest.raises(InputError, match=want):
            table_file(bad, table, None, "row 1")
    assert table_file("../x.fasta", table, tmp_path, "row 1") == tmp_path / "x.fasta"  # root= allows it
