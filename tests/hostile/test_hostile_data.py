"""Hostile and malformed input for ``cryofm ingest | split | inspect | merge``.

Every case runs the real command (``cryofm.cli.main`` in-process; a few through a subprocess, to see
what a shell user sees) and checks what a user gets: exit status 2, exactly one line on stderr of the
form ``cryofm <cmd>: error: <file or key>: <problem>`` naming the right file or key, no traceback,
and the output folder exactly as it was before (nothing created, nothing that existed removed).
Inputs are tiny generated files (16 px images) and, where present, the real files of ../shared/data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cryofm.cli import main
from cryofm.io.mrc import write_stack
from tests.conftest import ROOT, SHARED_DATA

BOX = 16
FORMATS = SHARED_DATA / "relion_cryosparc_formats"


# -- tiny inputs ---------------------------------------------------------------------------------
def _star(path: Path, names: list[str], psize: str = "2.0", dim: str | None = None) -> Path:
    optics = "_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n" + ("_rlnImageDimensionality #3\n" if dim else "")
    path.write_text(f"data_optics\n\nloop_\n{optics}1 {psize} {dim or ''}\n\n"
                    "data_particles\n\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n"
                    + "".join(f"{n} 1\n" for n in names))
    return path


def _inputs(d: Path, n: int = 4) -> Path:
    """``d/s.mrcs`` (n random 16 px images) and ``d/p.star`` naming them; returns the STAR."""
    d.mkdir(parents=True, exist_ok=True)
    write_stack(d / "s.mrcs", np.random.default_rng(0).normal(size=(n, BOX, BOX)).astype(np.float32))
    return _star(d / "p.star", [f"{i}@s.mrcs" for i in range(1, n + 1)])


def _write_cs(path: Path, fields: dict[str, np.ndarray]) -> Path:
    dtype = [(k, v.dtype, v.shape[1:]) for k, v in fields.items()]
    arr = np.zeros(len(next(iter(fields.values()))), dtype=dtype)
    for k, v in fields.items():
        arr[k] = v
    with open(path, "wb") as fh:
        np.save(fh, arr)
    return path


def _tree(folder: Path) -> dict[str, tuple[int, int]] | None:
    """Everything under ``folder`` (relative path -> size, mtime), or None when it does not exist."""
    if not folder.exists():
        return None
    out = {".": (0, 0)}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def _dataset(root: Path, n_exp: int = 3) -> Path:
    """A finished dataset of ``n_exp`` experiments x 4 particles (2 per shard), with facts."""
    from cryofm.data import ingest
    from cryofm.data.manifest import merge_manifests

    rng = np.random.default_rng(1)
    for i in range(n_exp):
        items = [(rng.normal(size=(BOX, BOX)).astype(np.float32), {}) for _ in range(4)]
        ingest.ingest_arrays(root, f"exp{i}", items, box=BOX, shard_size=2, merge=False, progress=False,
                             facts={"SequenceCluster": f"c{i % 2}", "ProteinClass": "ribosome"})
    merge_manifests(root)
    return root


@pytest.fixture(scope="module")
def base_dataset(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("hostile_ds") / "ds")


@pytest.fixture
def ds(base_dataset, tmp_path) -> Path:
    """A private copy of the finished dataset (cases may damage it)."""
    return Path(shutil.copytree(base_dataset, tmp_path / "ds"))


# -- the checks ----------------------------------------------------------------------------------
def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_one_line(err: str, cmd: str, name: str | Path, problem: str) -> None:
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    head = f"cryofm {cmd}: error: {name}: "
    assert lines[0].startswith(head), f"{lines[0]!r} does not start with {head!r}"
    assert problem in lines[0][len(head):], f"{problem!r} not in {lines[0]!r}"


def _check(capsys, cmd: str, argv: list[str], name: str | Path, problem: str, watch: Path) -> None:
    """Run ``cryofm cmd argv``: exit 2, one line naming ``name``, ``watch`` unchanged."""
    before = _tree(watch)
    rc, _, err = _run(capsys, [cmd, *argv])
    assert rc == 2, err
    _assert_one_line(err, cmd, name, problem)
    assert _tree(watch) == before, "the failed run left something behind or removed something"


# ================================================================================================
# ingest
# ================================================================================================
# Option values: (id, overrides, key named, problem). Inputs are good; the out folder does not exist.
INGEST_OPTIONS = [
    ("box-zero", ["box=0"], "box", "must be an integer in [8, 4096], got 0"),
    ("box-text", ["box=abc"], "box", "must be an integer in [8, 4096], got 'abc'"),
    ("box-float", ["box=1.5"], "box", "must be an integer"),
    ("box-bool", ["box=true"], "box", "must be an integer"),
    ("box-huge", ["box=100000"], "box", "got 100000"),
    ("dtype", ["dtype=float64"], "dtype", "must be one of float16, uint8, got 'float64'"),
    ("norm", ["norm=foo"], "norm", "must be one of whole, background, got 'foo'"),
    ("shard-size-zero", ["shard_size=0"], "shard_size", "must be an integer in [1, 10000000], got 0"),
    ("shard-size-negative", ["shard_size=-3"], "shard_size", "got -3"),
    ("shard-size-text", ["shard_size=many"], "shard_size", "got 'many'"),
    ("workers-negative", ["workers=-1"], "workers", "must be an integer in [1, 1024], got -1"),
    ("workers-zero", ["workers=0"], "workers", "got 0"),
    ("threads-negative", ["threads=-1"], "threads", "must be an integer in [0, 1024], got -1"),
    ("invert-word", ["invert=maybe"], "invert", "must be true or false, got 'maybe'"),
    ("overwrite-number", ["overwrite=2"], "overwrite", "must be true or false, got 2"),
    ("merge-text", ["merge=abc"], "merge", "must be true or false"),
    ("progress-list", ["progress=[1,2]"], "progress", "must be true or false"),
    ("dedup-enabled", ["dedup.enabled=please"], "dedup.enabled", "must be true or false"),
    ("dedup-fraction", ["dedup.enabled=true", "dedup.fraction=0"], "dedup.fraction", "must be a number > 0"),
    ("dedup-diameter", ["dedup.enabled=true", "dedup.diameter_A=-5"], "dedup.diameter_A", "got -5"),
    ("experiment-bad-id", ["experiment=a/b"], "experiment", "bad experiment id 'a/b'"),
    ("experiment-count", ["experiment=[A,B]"], "experiment", "1 input files but 2 experiment ids"),
]


@pytest.mark.parametrize(("overrides", "key", "problem"), [c[1:] for c in INGEST_OPTIONS],
                         ids=[c[0] for c in INGEST_OPTIONS])
def test_ingest_bad_option_values(tmp_path, capsys, overrides, key, problem):
    star = _inputs(tmp_path / "in")
    argv = [f"input={star}", "experiment=e", f"out={tmp_path / 'out'}", "progress=false", *overrides]
    if overrides[0].startswith("progress"):
        argv.remove("progress=false")
    _check(capsys, "ingest", argv, key, problem, tmp_path / "out")


def test_ingest_required_keys(tmp_path, capsys):
    star = _inputs(tmp_path / "in")
    _check(capsys, "ingest", [f"input={star}", "experiment=e"], "out", "required", tmp_path / "in")
    _check(capsys, "ingest", ["experiment=e", f"out={tmp_path / 'o'}"], "input", "required", tmp_path / "o")
    _check(capsys, "ingest", [f"input={star}", f"out={tmp_path / 'o'}"], "experiment", "required",
           tmp_path / "o")


def test_ingest_duplicate_experiment_ids(tmp_path, capsys):
    star = _inputs(tmp_path / "in")
    _check(capsys, "ingest", [f"input=[{star},{star}]", "experiment=[A,A]", f"out={tmp_path / 'o'}"],
           "experiment", "experiment id(s) given twice: ['A']", tmp_path / "o")


# Named files that are not there or not right: (id, override builder (in_dir -> override), name, problem)
def _missing(key: str, what: str):
    return (f"{key}-missing", lambda d: f"{key}={d / 'nope'}", lambda d: d / "nope", what)


INGEST_FILES = [
    ("root-missing", lambda d: f"root={d / 'nope'}", lambda d: d / "nope", "root= folder not found"),
    ("root-is-file", lambda d: f"root={d / 'p.star'}", lambda d: d / "p.star", "root= is not a folder"),
    _missing("stack", "particle stack not found"),
    _missing("classes", "class table not found"),
    _missing("facts", "facts table not found"),
    _missing("table", "experiment table not found"),
]


@pytest.mark.parametrize(("override", "name", "problem"), [c[1:] for c in INGEST_FILES],
                         ids=[c[0] for c in INGEST_FILES])
def test_ingest_named_files_missing(tmp_path, capsys, override, name, problem):
    d = tmp_path / "in"
    star = _inputs(d)
    argv = [f"out={tmp_path / 'out'}", "progress=false", override(d)]
    if not argv[-1].startswith("table="):
        argv += [f"input={star}", "experiment=e"]
    _check(capsys, "ingest", argv, name(d), problem, tmp_path / "out")


def test_ingest_input_is_a_folder(tmp_path, capsys):
    d = tmp_path / "in"
    _inputs(d)
    _check(capsys, "ingest", [f"input={d}", "experiment=e", f"out={tmp_path / 'out'}", "progress=false"],
           str(d), "is a folder, not a particle metadata file", tmp_path / "out")


# Output folders cryofm cannot use: (id, out builder (tmp) -> path, problem)
def _ro_dir(tmp: Path) -> Path:
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


_ROOT_SKIP = pytest.mark.skipif(os.geteuid() == 0, reason="root writes into mode-0555 folders")
INGEST_OUT = [
    pytest.param(lambda t: (t / "f.txt", t / "f.txt"), "exists and is not a folder", id="out-is-file"),
    pytest.param(lambda t: (t / "f.txt" / "sub", t / "f.txt" / "sub"), "cannot write here",
                 id="out-under-file"),
    pytest.param(lambda t: (Path("/proc/cryofm-hostile/out"),) * 2, "cannot write here", id="out-under-proc"),
    pytest.param(lambda t: (Path("/sys/cryofm-hostile"),) * 2, "cannot write here", id="out-under-sys"),
    pytest.param(lambda t: (_ro_dir(t), t / "ro" / "out"), "cannot write here", id="out-read-only",
                 marks=_ROOT_SKIP),
]


@pytest.mark.parametrize(("out", "problem"), INGEST_OUT)
def test_ingest_unusable_out(tmp_path, capsys, out, problem):
    star = _inputs(tmp_path / "in")
    (tmp_path / "f.txt").write_text("a user's file\n")
    path, name = out(tmp_path)
    _check(capsys, "ingest", [f"input={star}", "experiment=e", f"out={path}", "progress=false"], name,
           problem, tmp_path)
    assert (tmp_path / "f.txt").read_text() == "a user's file\n"


# Hostile or broken particle metadata and stacks: (id, builder (in_dir) -> (input file, name, problem))
def _case_star(names, **kw):
    def build(d: Path):
        _inputs(d)
        star = _star(d / "bad.star", names, **kw)
        return star, star
    return build


def _with(build_extra: Callable[[Path], None], names, **kw):
    def build(d: Path):
        _inputs(d)
        build_extra(d)
        star = _star(d / "bad.star", names, **kw)
        return star, star
    return build


def _garbage_stack(d: Path) -> None:
    (d / "junk.mrcs").write_bytes(b"\x00garbage" * 40)


def _truncated_stack(d: Path) -> None:
    write_stack(d / "cut.mrcs", np.ones((4, BOX, BOX), np.float32))
    with open(d / "cut.mrcs", "r+b") as fh:
        fh.truncate(1024 + 2 * BOX * BOX * 4)


def _volume(d: Path) -> None:
    write_stack(d / "vol.mrc", np.random.default_rng(0).normal(size=(BOX, BOX, BOX)).astype(np.float32))


def _nan_stack(d: Path) -> None:
    imgs = np.ones((2, BOX, BOX), np.float32)
    imgs[1, 3, 3] = np.nan
    with warnings.catch_warnings():  # mrcfile warns about the NaN it is asked to write
        warnings.simplefilter("ignore", RuntimeWarning)
        write_stack(d / "nan.mrcs", imgs)


def _file(name: str, data: bytes):
    def build(d: Path):
        _inputs(d)
        (d / name).write_bytes(data)
        return d / name, d / name
    return build


def _cs(fields_of: Callable[[Path], dict[str, np.ndarray]], name: str = "p.cs"):
    def build(d: Path):
        _inputs(d)
        p = _write_cs(d / name, fields_of(d))
        return p, p
    return build


def _wrong_passthrough(d: Path):
    job = d / "J7"
    job.mkdir(parents=True)
    _write_cs(job / "J7_passthrough_particles.cs", {"uid": np.array([1, 5], np.uint64),
                                                    "ctf/df1_A": np.ones(2, np.float32)})
    p = _write_cs(job / "J7_particles.cs", {"uid": np.array([1, 2], np.uint64),
                                            "blob/path": np.array([b"s.mrcs"] * 2),
                                            "blob/idx": np.arange(2, dtype=np.uint32)})
    return p, job / "J7_passthrough_particles.cs"


def _empty_block(d: Path):
    _inputs(d)
    p = d / "empty.star"
    p.write_text("data_particles\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n")
    return p, p


def _no_image_name(d: Path):
    _inputs(d)
    p = d / "noname.star"
    p.write_text("data_particles\n\nloop_\n_rlnDefocusU #1\n10000\n")
    return p, p


_ZERO = np.zeros(1, np.uint32)
INGEST_INPUTS = [
    ("input-missing", lambda d: (d / "nope.star", d / "nope.star"), "particle metadata file not found"),
    ("input-suffix", _file("p.txt", b"1@s.mrcs\n"), "unknown particle metadata format '.txt'"),
    ("star-binary", _file("bin.star", bytes(range(256)) * 8), "no particle block with rlnImageName"),
    ("star-no-rows", _empty_block, "STAR particle block has no rows"),
    ("star-no-image-name", _no_image_name, "lacks required column(s) rlnImageName"),
    ("name-dotdot", _case_star(["1@s.mrcs", "2@../../../x.mrcs"]), "row 2 (2@../../../x.mrcs): stack path"),
    ("name-absolute", _case_star(["1@/etc/passwd.mrcs"]), "row 1 (1@/etc/passwd.mrcs): stack path"),
    ("name-etc-passwd", _case_star(["1@/etc/passwd"]), "'/etc/passwd' is not an MRC stack name"),
    ("name-not-mrc", _case_star(["1@p.star"]), "row 1 (1@p.star): 'p.star' is not an MRC stack name"),
    ("index-zero", _case_star(["0@s.mrcs"]), "bad image name '0@s.mrcs': indices are 1-based"),
    ("index-past-end", _case_star(["1@s.mrcs", "9@s.mrcs"]), "row 2 (9@s.mrcs): image index 9 (1-based"),
    ("stack-missing", _case_star(["1@gone.mrcs"]), "1@gone.mrcs: particle stack not found (searched: "),
    ("pixel-size-negative", _case_star(["1@s.mrcs"], psize="-1.5"),
     "rlnImagePixelSize: row 1 (1@s.mrcs): pixel size -1.5 is not a positive number"),
    ("pixel-size-zero", _case_star(["1@s.mrcs"], psize="0"), "pixel size 0 is not a positive number"),
    ("pixel-size-nan", _case_star(["1@s.mrcs"], psize="nan"), "pixel size nan is not a positive number"),
    ("dimensionality-3", _case_star(["1@s.mrcs"], dim="3"),
     "rlnImageDimensionality: row 1 (1@s.mrcs): 3-D particles (sub-tomograms) are not supported"),
    ("cs-garbage", _file("junk.cs", b"\x93NUMPY garbage"), "not a cryoSPARC .cs file"),
    ("cs-passthrough-only", _cs(lambda d: {"uid": np.array([1], np.uint64),
                                           "ctf/df1_A": np.ones(1, np.float32)}),
     ".cs file has no image paths (blob/path, blob/idx)"),
    ("cs-bad-sign", _cs(lambda d: {"blob/path": np.array([b"s.mrcs"]), "blob/idx": _ZERO,
                                   "blob/sign": np.zeros(1, np.float32)}),
     "blob/sign: row 1 (1@s.mrcs): 0.0"),
    ("cs-float-idx", _cs(lambda d: {"blob/path": np.array([b"s.mrcs"]), "blob/idx": np.array([0.5])}),
     "blob/idx must hold whole numbers, got dtype float64"),
    ("cs-dotdot", _cs(lambda d: {"blob/path": np.array([b"../../x.mrc"]), "blob/idx": _ZERO}),
     "row 1 (1@../../x.mrc): stack path '../../x.mrc' leads outside"),
    ("cs-wrong-passthrough", _wrong_passthrough, "1 of 2 particles of J7_particles.cs (by uid) are not in"),
]

# the file named in these is the stack, not the metadata
INGEST_STACKS = [
    ("stack-garbage", _garbage_stack, ["1@junk.mrcs"], "junk.mrcs", "not a readable MRC file"),
    ("stack-truncated", _truncated_stack, ["1@cut.mrcs"], "cut.mrcs", "truncated or corrupt MRC"),
    ("stack-volume", _volume, ["vol.mrc"], "vol.mrc", "vol.mrc names one image, but the file holds 16"),
    ("stack-nan", _nan_stack, ["1@nan.mrcs", "2@nan.mrcs"], "nan.mrcs", "particle 2@nan.mrcs: NaN or Inf"),
]


@pytest.mark.parametrize(("build", "problem"), [c[1:] for c in INGEST_INPUTS],
                         ids=[c[0] for c in INGEST_INPUTS])
def test_ingest_hostile_metadata(tmp_path, capsys, build, problem):
    inp, name = build(tmp_path / "in")
    _check(capsys, "ingest", [f"input={inp}", "experiment=e", f"out={tmp_path / 'out'}", "progress=false",
                              f"box={BOX}"], name, problem, tmp_path / "out")


@pytest.mark.parametrize(("extra", "names", "stack", "problem"), [c[1:] for c in INGEST_STACKS],
                         ids=[c[0] for c in INGEST_STACKS])
def test_ingest_broken_stacks(tmp_path, capsys, extra, names, stack, problem):
    d = tmp_path / "in"
    star = _with(extra, names)(d)[0]
    _check(capsys, "ingest", [f"input={star}", "experiment=e", f"out={tmp_path / 'out'}", "progress=false",
                              f"box={BOX}"], d / stack, problem, tmp_path / "out")


def test_ingest_hostile_name_opens_nothing_outside(tmp_path, capsys, monkeypatch):
    """A STAR pointing at a real MRC outside its folder: refused before any file is opened."""
    outside = tmp_path / "secret"
    outside.mkdir()
    write_stack(outside / "x.mrcs", np.ones((2, BOX, BOX), np.float32))
    d = tmp_path / "in"
    _inputs(d)
    star = _star(d / "bad.star", ["1@s.mrcs", f"1@{outside / 'x.mrcs'}"])
    import cryofm.io.mrc as mrc

    opened: list[Path] = []
    real = mrc.Stack.__init__
    monkeypatch.setattr(mrc.Stack, "__init__", lambda self, p: opened.append(Path(p)) or real(self, p))
    _check(capsys, "ingest", [f"input={star}", "experiment=e", f"out={tmp_path / 'out'}"], star,
           f"row 2 (1@{outside / 'x.mrcs'}): stack path", tmp_path / "out")
    assert opened == []


# experiment tables: (id, csv text, name builder (table path) -> name, problem)
INGEST_TABLES = [
    ("table-binary", None, lambda t: t, "not a readable CSV table"),
    ("table-no-input", "experiment,root\nA,.\n", lambda t: t, "experiment table has no 'input' column"),
    ("table-no-rows", "experiment,input\n", lambda t: t, "experiment table has no rows"),
    ("table-bad-invert", "experiment,input,invert\nA,{star},maybe\n", lambda t: f"{t}: row 1: invert",
     "must be true or false, got 'maybe'"),
    ("table-bad-id", "experiment,input\nA.B,{star}\n", lambda t: f"{t}: row 1", "bad experiment id 'A.B'"),
    ("table-missing-root", "experiment,input,root\nA,{star},/nonexistent/cryofm\n",
     lambda t: "/nonexistent/cryofm", "root= folder not found"),
]


@pytest.mark.parametrize(("text", "name", "problem"), [c[1:] for c in INGEST_TABLES],
                         ids=[c[0] for c in INGEST_TABLES])
def test_ingest_bad_tables(tmp_path, capsys, text, name, problem):
    star = _inputs(tmp_path / "in")
    table = tmp_path / "in" / "t.csv"
    if text is None:
        table.write_bytes(b"\xff\xfe\x00\x01" * 100)
    else:
        table.write_text(text.format(star=star))
    _check(capsys, "ingest", [f"table={table}", f"out={tmp_path / 'out'}", "progress=false"], name(table),
           problem, tmp_path / "out")


def test_ingest_table_and_input_together(tmp_path, capsys):
    star = _inputs(tmp_path / "in")
    table = tmp_path / "in" / "t.csv"
    table.write_text(f"experiment,input\nA,{star}\n")
    _check(capsys, "ingest", [f"table={table}", f"input={star}", "experiment=e", f"out={tmp_path / 'o'}"],
           "table", "give table= or input=/experiment=, not both", tmp_path / "o")


@pytest.mark.parametrize(("text", "problem"), [
    ("experiment: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "expected a mapping"),
    ("B:\n  EMPIAR: EMPIAR-1\n", "unknown experiment id 'e' (not in the facts table)"),
    ("e:\n  MolecularWeight: heavy\n", "experiment e: field 'MolecularWeight': cannot read 'heavy'"),
    (b"\xff\xfe\x00\x9c binary", "not valid YAML"),
], ids=["facts-yaml-syntax", "facts-yaml-list", "facts-unknown-id", "facts-bad-value", "facts-binary"])
def test_ingest_bad_facts(tmp_path, capsys, text, problem):
    star = _inputs(tmp_path / "in")
    facts = tmp_path / "in" / "facts.yaml"
    if isinstance(text, bytes):
        facts.write_bytes(text)
    else:
        facts.write_text(text)
    _check(capsys, "ingest", [f"input={star}", "experiment=e", f"facts={facts}", f"out={tmp_path / 'o'}",
                              "progress=false"], facts, problem, tmp_path / "o")


def test_ingest_into_an_existing_dataset_keeps_it_as_it_was(ds, tmp_path, capsys):
    """A bad experiment added to a finished dataset: the error, and the dataset untouched."""
    d = tmp_path / "in"
    _inputs(d)
    star = _star(d / "bad.star", ["1@s.mrcs", "7@s.mrcs"])
    (ds / "NOTES.txt").write_text("the user's own file\n")
    _check(capsys, "ingest", [f"input={star}", "experiment=new", f"out={ds}", "progress=false", f"box={BOX}"],
           star, "(7@s.mrcs): image index 7 (1-based", ds)
    assert (ds / "NOTES.txt").is_file()


def test_ingest_rerun_after_the_star_was_edited(tmp_path, capsys):
    star = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    rc, _, err = _run(capsys, ["ingest", f"input={star}", "experiment=e", f"out={out}", "progress=false",
                               f"box={BOX}"])
    assert rc == 0, err
    star.write_text(star.read_text().replace("2@s.mrcs", "3@s.mrcs"))
    _check(capsys, "ingest", [f"input={star}", "experiment=e", f"out={out}", "progress=false", f"box={BOX}"],
           star, "changed since experiment 'e' was ingested", out)


def test_ingest_real_star_with_dotdot_stacks(tmp_path, capsys, shared_data):
    star = FORMATS / "sta_testing.star"
    if not star.is_file():
        pytest.skip(f"{star} is absent")
    _check(capsys, "ingest", [f"input={star}", "experiment=sta", f"out={tmp_path / 'out'}"], star,
           "row 1 (000001@../tilts/particleseries/ay19102021_L3_position6_ribo_it09_bin1_1.82A.mrcs): stack "
           "path '../tilts/particleseries/", tmp_path / "out")


def test_ingest_real_cs_without_its_stacks(tmp_path, capsys, shared_data):
    cs = FORMATS / "cryosparc_P12_J24_001_particles.cs"
    if not cs.is_file():
        pytest.skip(f"{cs} is absent")
    _check(capsys, "ingest", [f"input={cs}", "experiment=j24", f"out={tmp_path / 'out'}"], cs,
           f"particle stack not found (searched: {FORMATS})", tmp_path / "out")


def test_ingest_real_stack_through_a_hostile_name(tmp_path, capsys, shared_data):
    """The real relion31.mrcs named by absolute path from a STAR elsewhere: outside, not opened."""
    real = FORMATS / "relion31.mrcs"
    if not real.is_file():
        pytest.skip(f"{real} is absent")
    (tmp_path / "in").mkdir()
    star = _star(tmp_path / "in" / "p.star", [f"1@{real}"])
    _check(capsys, "ingest", [f"input={star}", "experiment=e", f"out={tmp_path / 'out'}"], star,
           f"leads outside {tmp_path / 'in'} (the metadata file's folder); not opened", tmp_path / "out")


# ================================================================================================
# split
# ================================================================================================
SPLIT_OPTIONS = [
    ("fractions-text", ["fractions=abc"], "fractions", "must be three non-negative numbers"),
    ("fractions-two", ["fractions=[0.5,0.1]"], "fractions", "got [0.5, 0.1]"),
    ("fractions-sum", ["fractions=[0.5,0.6,0.1]"], "fractions", "(they sum to 1.2)"),
    ("fractions-negative", ["fractions=[-0.5,1.0,0.5]"], "fractions", "non-negative"),
    ("fractions-words", ["fractions=[a,b,c]"], "fractions", "got ['a', 'b', 'c']"),
    ("seed-text", ["seed=abc"], "seed", "must be an integer in [0, 4294967295], got 'abc'"),
    ("seed-negative", ["seed=-1"], "seed", "got -1"),
    ("group-key-misspelt", ["group_key=SequenceClustr"], "group_key",
     "'SequenceClustr' is not a schema field, and no experiment has that fact (available: ProteinClass, "
     "SequenceCluster"),
    ("group-key-list", ["group_key=[a,b]"], "group_key", "must be a single value"),
    ("stratify-key-absent", ["stratify_key=EMPIAR"], "stratify_key", "'EMPIAR' is a schema field, but no"),
    ("heldout-unknown", ["heldout=[exp0,nope]"], "heldout", "unknown experiment id(s) ['nope']"),
    ("train-unknown", ["train=[nope]"], "train", "unknown experiment id(s) ['nope']"),
    ("train-and-heldout", ["train=[exp0]", "heldout=[exp0]"], "train", "forced into both train and heldout"),
    ("fractions-no-train", ["fractions=[0,0,1]"], "fractions", "leaves no training experiment"),
    ("heldout-everything", ["heldout=[exp0,exp1,exp2]"], "heldout", "leaves no training experiment"),
]


@pytest.mark.parametrize(("overrides", "key", "problem"), [c[1:] for c in SPLIT_OPTIONS],
                         ids=[c[0] for c in SPLIT_OPTIONS])
def test_split_bad_options(ds, capsys, overrides, key, problem):
    _check(capsys, "split", [f"dataset={ds}", *overrides], key, problem, ds)


def _garbage_manifest(ds: Path) -> Path:
    (ds / "manifest.json").write_text("{not json")
    return ds / "manifest.json"


def _list_manifest(ds: Path) -> Path:
    (ds / "manifest.json").write_text("[1, 2, 3]")
    return ds / "manifest.json"


def _no_manifest(ds: Path) -> Path:
    (ds / "manifest.json").unlink()
    return ds / "manifest.json"


def _hostile_shard_path(ds: Path) -> Path:
    m = json.loads((ds / "manifest.json").read_text())
    m["shards"][0]["path"] = "../../../etc/passwd"
    (ds / "manifest.json").write_text(json.dumps(m))
    return ds / "manifest.json"


DATASET_DAMAGE = [
    ("manifest-garbage", _garbage_manifest, "not valid JSON"),
    ("manifest-list", _list_manifest, "not a cryofm manifest (no experiments / shards)"),
    ("manifest-absent", _no_manifest, "no manifest: not a cryofm dataset"),
    ("manifest-hostile-shard-path", _hostile_shard_path,
     "shard path '../../../etc/passwd' leads outside the dataset's shards/ folder: refused"),
]


@pytest.mark.parametrize(("damage", "problem"), [c[1:] for c in DATASET_DAMAGE],
                         ids=[c[0] for c in DATASET_DAMAGE])
def test_split_damaged_dataset(ds, capsys, damage, problem):
    name = damage(ds)
    _check(capsys, "split", [f"dataset={ds}"], name, problem, ds)


@pytest.mark.parametrize("cmd", ["split", "inspect", "merge"])
def test_dataset_key_required_missing_or_a_file(tmp_path, capsys, cmd):
    (tmp_path / "f.json").write_text("{}")
    _check(capsys, cmd, [], "dataset", "required (dataset=<dataset folder>)", tmp_path)
    _check(capsys, cmd, [f"dataset={tmp_path / 'nope'}"], tmp_path / "nope", "no such folder", tmp_path)
    _check(capsys, cmd, [f"dataset={tmp_path / 'f.json'}"], tmp_path / "f.json", "not a folder", tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into mode-0555 folders")
def test_split_read_only_dataset(ds, capsys):
    ds.chmod(0o555)
    try:
        _check(capsys, "split", [f"dataset={ds}"], ds / "split.json", "Permission denied", ds)
    finally:
        ds.chmod(0o755)


# ================================================================================================
# inspect
# ================================================================================================
INSPECT_OPTIONS = [
    ("per-experiment-zero", ["per_experiment=0"], "per_experiment", "must be an integer in [1, 64], got 0"),
    ("per-experiment-text", ["per_experiment=abc"], "per_experiment", "got 'abc'"),
    ("max-experiments-negative", ["max_experiments=-1"], "max_experiments", "got -1"),
    ("seed-text", ["seed=abc"], "seed", "must be an integer"),
    ("verify-word", ["verify=maybe"], "verify", "must be true or false, got 'maybe'"),
]


@pytest.mark.parametrize(("overrides", "key", "problem"), [c[1:] for c in INSPECT_OPTIONS],
                         ids=[c[0] for c in INSPECT_OPTIONS])
def test_inspect_bad_options(ds, capsys, overrides, key, problem):
    _check(capsys, "inspect", [f"dataset={ds}", *overrides], key, problem, ds)


@pytest.mark.parametrize(("where", "problem"), [
    ("dir", "montage= is a folder, not a PNG file name"),
    ("proc", "cannot write here"),
    ("under-file", "exists and is not a folder"),
    ("jpg", "must be a .png file name"),
], ids=["montage-is-dir", "montage-under-proc", "montage-under-file", "montage-not-png"])
def test_inspect_unwritable_montage(ds, tmp_path, capsys, where, problem):
    (tmp_path / "f.txt").write_text("x")
    png, name = {"dir": (tmp_path, tmp_path), "jpg": (tmp_path / "m.jpg", "montage"),
                 "proc": (Path("/proc/cryofm-hostile/m.png"), Path("/proc/cryofm-hostile")),
                 "under-file": (tmp_path / "f.txt" / "m.png", tmp_path / "f.txt")}[where]
    _check(capsys, "inspect", [f"dataset={ds}", f"montage={png}"], name, problem, tmp_path)


@pytest.mark.parametrize(("damage", "problem"), [c[1:] for c in DATASET_DAMAGE],
                         ids=[c[0] for c in DATASET_DAMAGE])
def test_inspect_damaged_dataset(ds, capsys, damage, problem):
    name = damage(ds)
    _check(capsys, "inspect", [f"dataset={ds}", "montage=false"], name, problem, ds)


def test_inspect_garbage_split(ds, capsys):
    (ds / "split.json").write_text('{"seed": 0}')
    _check(capsys, "inspect", [f"dataset={ds}", "montage=false"], ds / "split.json",
           "not a cryofm split (no assignment)", ds)


def test_inspect_split_with_an_unknown_side(ds, capsys):
    (ds / "split.json").write_text('{"assignment": {"exp0": "train", "exp1": "testing"}}')
    _check(capsys, "inspect", [f"dataset={ds}", "montage=false"], ds / "split.json",
           "assignment of 'exp1' is 'testing', not one of train, val, heldout", ds)


def test_train_split_names_an_experiment_the_dataset_lacks(ds, capsys):
    assignment = {"exp0": "train", "exp1": "val", "exp2": "heldout", "ghost": "train"}
    (ds / "split.json").write_text(json.dumps({"assignment": assignment}))
    from cryofm.data.dataset import split_urls
    from cryofm.errors import InputError

    with pytest.raises(InputError, match=r"names experiment\(s\) \['ghost'\] the dataset does not have") as e:
        split_urls(ds, "train")
    assert e.value.path == str(ds / "split.json")


def test_inspect_verify_names_the_bad_shard(ds, capsys):
    shard = sorted((ds / "shards" / "exp1").glob("*.tar"))[0]
    shard.write_bytes(b"garbage")
    _check(capsys, "inspect", [f"dataset={ds}", "verify=true", "montage=false"], shard,
           "checksum mismatch or missing shard", ds)


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_inspect_without_verify_survives_a_bad_shard(ds, capsys, damage):
    """No crash on a missing or garbage shard: the summary, the montage, and counted warnings."""
    shard = sorted((ds / "shards" / "exp1").glob("*.tar"))[0]
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(b"\x00not a tar\x00" * 100)
    rc, out, err = _run(capsys, ["inspect", f"dataset={ds}", "per_experiment=4"])
    assert rc == 0, err
    assert "Traceback" not in err and "12 particles, 3 experiments, 6 shards" in out
    assert (ds / "inspect_montage.png").is_file()
    lines = err.strip().split("\n")
    rel = str(shard.relative_to(ds))
    want = "missing" if damage == "missing" else "differ in size from the manifest"
    assert any(line.startswith("warning: 1 shard(s)") and want in line and rel in line for line in lines), err
    unread = "warning: 2 particle(s) of the montage could not be read"
    assert any(line.startswith(unread) for line in lines), err


# ================================================================================================
# merge
# ================================================================================================
def _exp_json(ds: Path, text: str | None = None, edit: Callable[[dict], None] | None = None) -> Path:
    p = ds / "experiments" / "exp0.json"
    if text is not None:
        p.write_text(text)
    else:
        m = json.loads(p.read_text())
        edit(m)
        p.write_text(json.dumps(m))
    return p


def _exp_bytes(ds: Path, data: bytes) -> Path:
    p = ds / "experiments" / "exp0.json"
    p.write_bytes(data)
    return p


MERGE_DAMAGE = [
    ("experiment-json-garbage", lambda ds: _exp_json(ds, "{oops"), "not valid JSON"),
    ("experiment-json-binary", lambda ds: _exp_bytes(ds, b"\xff\xfe\x00garbage"), "not valid JSON"),
    ("experiment-json-no-shards", lambda ds: _exp_json(ds, edit=lambda m: m.pop("shards")),
     "not a cryofm experiment manifest (no shards)"),
    ("experiment-json-bad-count", lambda ds: _exp_json(ds, edit=lambda m: m["shards"][0].update(n="many")),
     "not a cryofm experiment manifest (bad or missing"),
    ("experiment-json-hostile-path", lambda ds: _exp_json(
        ds, edit=lambda m: m["shards"][0].update(path="/etc/passwd")),
     "shard path '/etc/passwd' leads outside the dataset's shards/ folder: refused"),
    ("experiment-json-negative-n", lambda ds: _exp_json(ds, edit=lambda m: m.update(n=-5)),
     "n must be a whole number >= 0, got -5"),
    ("experiment-json-text-n", lambda ds: _exp_json(ds, edit=lambda m: m.update(n="many")),
     "n must be a whole number >= 0, got 'many'"),
    ("experiment-json-n-not-shards", lambda ds: _exp_json(ds, edit=lambda m: m.update(n=3)),
     "n = 3, but its shards hold 4 particles"),
    ("experiment-json-facts-list", lambda ds: _exp_json(ds, edit=lambda m: m.update(facts=[1, 2])),
     "facts must be a mapping"),
    ("experiment-json-zero-pixels", lambda ds: _exp_json(ds, edit=lambda m: m["pixel_stats"].update(count=0)),
     "pixel_stats.count must be a whole number >= 1, got 0"),
    ("experiment-json-schema", lambda ds: _exp_json(ds, edit=lambda m: m.update(schema_version="9.9")),
     "schema_version '9.9': this cryofm reads schema 1.x"),
    ("experiment-json-copy", lambda ds: _copy_exp(ds),
     "names experiment 'exp0', but the file is exp0_copy.json"),
]


def _copy_exp(ds: Path) -> Path:
    src = ds / "experiments" / "exp0.json"
    dst = ds / "experiments" / "exp0_copy.json"
    dst.write_text(src.read_text())
    return dst


@pytest.mark.parametrize(("damage", "problem"), [c[1:] for c in MERGE_DAMAGE],
                         ids=[c[0] for c in MERGE_DAMAGE])
def test_merge_damaged_experiment_manifests(ds, capsys, damage, problem):
    name = damage(ds)
    _check(capsys, "merge", [f"dataset={ds}"], name, problem, ds)


def test_merge_nothing_to_merge(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _check(capsys, "merge", [f"dataset={tmp_path / 'empty'}"], tmp_path / "empty",
           "no ingested experiments (experiments/*.json) to merge", tmp_path / "empty")


def test_merge_bad_verify_value(ds, capsys):
    _check(capsys, "merge", [f"dataset={ds}", "verify=perhaps"], "verify", "must be true or false", ds)


def test_merge_verify_missing_shard(ds, capsys):
    shard = sorted((ds / "shards" / "exp2").glob("*.tar"))[1]
    shard.unlink()
    rel = shard.relative_to(ds)
    _check(capsys, "merge", [f"dataset={ds}", "verify=true"], ds / rel,
           "checksum mismatch or missing (1 shard(s) bad)", ds)


# ================================================================================================
# through a subprocess: what a shell user sees (one line, exit 2, no traceback)
# ================================================================================================
@pytest.mark.parametrize(("args", "name", "problem"), [
    (["ingest", "input={star}", "experiment=e", "out={tmp}/out", "box=abc"], "box", "must be an integer"),
    (["split", "dataset={tmp}", "fractions=[0.5,0.1]"], "fractions", "summing to 1"),
    (["ingest", "input={tmp}/bad.star", "experiment=e", "out={tmp}/out"], "{tmp}/bad.star",
     "row 1 (1@../../../../etc/x.mrcs): stack path"),
], ids=["ingest-box", "split-fractions", "ingest-dotdot"])
def test_subprocess_one_line(tmp_path, args, name, problem):
    star = _inputs(tmp_path)
    _star(tmp_path / "bad.star", ["1@../../../../etc/x.mrcs"])
    fill = {"star": star, "tmp": tmp_path}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CRYOFM_DEBUG", None)
    before = _tree(tmp_path)
    r = subprocess.run([sys.executable, "-m", "cryofm.cli", *[a.format(**fill) for a in args]],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    _assert_one_line(r.stderr, args[0], name.format(**fill), problem)
    assert _tree(tmp_path) == before
