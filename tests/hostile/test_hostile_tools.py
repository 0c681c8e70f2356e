"""Hostile and malformed input for ``cryofm simulate | maplabels | summarize`` and the ``cryofm``
command line itself (unknown command, bad override syntax, OS errors, interrupts, ``--debug``).

Cases run ``cryofm.cli.main`` in-process, a few through a subprocess (what a shell user sees), and
check the contract of :func:`tests.hostile._hostile.check_failure`: exit status 2, one line
``cryofm <cmd>: error: <file or key>: <problem>``, no traceback, nothing created or changed.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from cryofm.cli import main
from tests.hostile._hostile import ROOT, check_failure


def _cli(capsys, tmp_path, args, names, problem=None, cmd=None, extra_outputs=()):
    cmd = cmd or args[0]
    return check_failure(capsys, lambda: main([str(a) for a in args]), f"cryofm {cmd}", names,
                         [tmp_path, *extra_outputs], problem=problem)


# -- cryofm simulate -------------------------------------------------------------------------------
SIMULATE = [
    (["mode=video"], "mode", "dataset, micrographs"),
    (["n_particles=0"], "n_particles", "in [1, 1e+08]"),
    (["n_particles=99999999999"], "n_particles", "got 99999999999"),
    (["box=abc"], "box", "integer"),
    (["snr=-1"], "snr", "> 0"),
    (["dtype=float64"], "dtype", "float16, uint8"),
    (["seed=abc"], "seed", "integer"),
    (["experiments=blob_c1"], "experiments", "list of experiment names"),
    (["micrograph_size=8"], "micrograph_size", ">= 32"),
    (["overwrite=please"], "overwrite", "true or false"),
    (["background_boxes=-1"], "background_boxes", ">= 0"),
    (["shared_data=/nonexistent/cryofm"], "shared_data", "is not a folder"),
]


@pytest.mark.parametrize("extra, key, problem", SIMULATE, ids=[s[1] for s in SIMULATE])
def test_simulate_bad_option(capsys, tmp_path, extra, key, problem):
    _cli(capsys, tmp_path, ["simulate", "preset=tiny", f"out={tmp_path / 'sim'}", *extra], f"{key}: ",
         problem)


def test_simulate_unknown_preset(capsys, tmp_path):
    _cli(capsys, tmp_path, ["simulate", "preset=huge", f"out={tmp_path / 'sim'}"], "huge.yaml",
         "unknown simulation preset")


def test_simulate_unknown_experiment(capsys, tmp_path):
    _cli(capsys, tmp_path, ["simulate", "preset=tiny", f"out={tmp_path / 'sim'}", "experiments=[nope]"],
         "tiny.yaml", "unknown experiment")


def test_simulate_out_required(capsys, tmp_path):
    _cli(capsys, tmp_path, ["simulate", "preset=tiny"], "out: ", "a value is required")


def test_simulate_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("mine")
    _cli(capsys, tmp_path, ["simulate", "preset=tiny", f"out={f}"], str(f), "not a folder")


# -- cryofm maplabels ------------------------------------------------------------------------------
@pytest.fixture
def pair(tmp_path):
    """A file named like a map and one named like a model (the option checks look only at names)."""
    m, pdb = tmp_path / "in" / "emd_1.map", tmp_path / "in" / "m.pdb"
    m.parent.mkdir()
    m.write_bytes(b"not an MRC map at all" * 64)
    pdb.write_text("ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00 10.00           C\nEND\n")
    return m, pdb


MAPLABELS = [
    (["voxel_size=0"], "voxel_size", "> 0"),
    (["interp_order=7"], "interp_order", "[0, 5]"),
    (["labels.atom_voxel=floor"], "labels.atom_voxel", "round, ceil"),
    (["cubes.overlap=64"], "cubes.overlap", "smaller than cubes.size"),
    (["cubes.normalize=minmax"], "cubes.normalize", "percentile, zscore, none"),
    (["check.min_inside=2"], "check.min_inside", "[0, 1]"),
    (["on_error=ignore"], "on_error", "skip, raise"),
    (["resolution=-3"], "resolution", "> 0"),
]


@pytest.mark.parametrize("extra, key, problem", MAPLABELS, ids=[m[1] for m in MAPLABELS])
def test_maplabels_bad_option(capsys, tmp_path, pair, extra, key, problem):
    m, pdb = pair
    _cli(capsys, tmp_path, ["maplabels", f"map={m}", f"model={pdb}", f"out={tmp_path / 'lab'}", *extra],
         f"{key}: ", problem)


def test_maplabels_missing_map(capsys, tmp_path, pair):
    _, pdb = pair
    args = ["maplabels", f"map={tmp_path / 'no.map'}", f"model={pdb}", f"out={tmp_path / 'lab'}"]
    _cli(capsys, tmp_path, args, str(tmp_path / "no.map"), "map not found")


def test_maplabels_missing_table(capsys, tmp_path):
    _cli(capsys, tmp_path, ["maplabels", f"table={tmp_path / 'pairs.csv'}", f"out={tmp_path / 'lab'}"],
         str(tmp_path / "pairs.csv"), "pairs table not found")


@pytest.mark.parametrize("name", ["../in/emd_1.map", "ABSOLUTE"])
def test_maplabels_table_path_outside_its_folder(capsys, tmp_path, pair, name):
    """A pair table may not make maplabels open files outside its folder (or root=): not opened."""
    m, pdb = pair
    t = tmp_path / "tables" / "pairs.csv"
    t.parent.mkdir()
    name = str(m) if name == "ABSOLUTE" else name
    t.write_text(f"map,model\n{name},{pdb}\n")
    _cli(capsys, tmp_path, ["maplabels", f"table={t}", f"out={tmp_path / 'lab'}"], [str(t), "line 2, map"],
         "leads outside")


def test_maplabels_out_required(capsys, tmp_path, pair):
    m, pdb = pair
    _cli(capsys, tmp_path, ["maplabels", f"map={m}", f"model={pdb}"], "out: ", "a value is required")


def test_maplabels_garbage_map_leaves_nothing(capsys, tmp_path, pair):
    """The map is read after the output folder is made: the failed run removes it."""
    m, pdb = pair
    _cli(capsys, tmp_path, ["maplabels", f"map={m}", f"model={pdb}", f"out={tmp_path / 'lab'}"], str(m))


# -- cryofm summarize ------------------------------------------------------------------------------
def test_summarize_missing_sweep(capsys, tmp_path):
    _cli(capsys, tmp_path, ["summarize", f"sweep={tmp_path / 'sw'}"], str(tmp_path / "sw"),
         "sweep folder not found")


def test_summarize_sweep_without_runs(capsys, tmp_path):
    (tmp_path / "sw").mkdir()
    _cli(capsys, tmp_path, ["summarize", f"sweep={tmp_path / 'sw'}"], str(tmp_path / "sw"), "no metrics.json")


SUMMARIZE_METRICS = [  # (metrics.json content, extra options, named, problem); None: the file is named
    ("{truncated", [], None, "not valid JSON"),
    ("[1, 2, 3]", [], None, "must hold a JSON object of metrics, got list"),
    ('{"loss": 1.5}', ["sort_by=nope"], "sort_by", "'nope' is no column of this sweep (columns: loss)"),
]


@pytest.mark.parametrize("text, extra, name, problem", SUMMARIZE_METRICS,
                         ids=["garbage", "not-an-object", "sort-by-unknown"])
def test_summarize_bad_metrics_or_sort_key(capsys, tmp_path, text, extra, name, problem):
    run = tmp_path / "sw" / "0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(text)
    _cli(capsys, tmp_path, ["summarize", f"sweep={tmp_path / 'sw'}", *extra],
         name or str(run / "metrics.json"), problem)


def test_summarize_out_is_a_file(capsys, tmp_path):
    (tmp_path / "sw").mkdir()
    f = tmp_path / "o.txt"
    f.write_text("x")
    _cli(capsys, tmp_path, ["summarize", f"sweep={tmp_path / 'sw'}", f"out={f}"], str(f), "not a folder")


# -- the cryofm command line -----------------------------------------------------------------------
def test_unknown_command(capsys, tmp_path):
    line = check_failure(capsys, lambda: main(["ingets", "out=x"]), "cryofm", "ingets", [tmp_path],
                         problem="unknown command")
    assert "ingest" in line


@pytest.mark.parametrize("override, head", [("box=[", "box=[: bad override syntax"),
                                            ("'x", "'x: bad override syntax"),
                                            ("=3", "Config group override")])
def test_bad_override_syntax(capsys, tmp_path, override, head):
    _cli(capsys, tmp_path, ["simulate", f"out={tmp_path / 's'}", override], head)


def test_unknown_key(capsys, tmp_path):
    _cli(capsys, tmp_path, ["simulate", f"out={tmp_path / 's'}", "n_particle=3"], "n_particle: no such key",
         "+n_particle=")


def test_os_error_disk_full_removes_what_the_run_wrote(capsys, tmp_path, monkeypatch):
    """A command that wrote a file and then hit ENOSPC: one line with the file and the OS's words,
    and its new output folder is gone."""
    import cryofm.cli as cli

    out = tmp_path / "sim"

    def fills_the_disk(cfg):
        (out / "part").mkdir(parents=True)
        (out / "part" / "a.bin").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "part" / "b.bin"))

    monkeypatch.setattr(cli, "_resolve", lambda target: fills_the_disk)
    _cli(capsys, tmp_path, ["simulate", f"out={out}"], str(out / "part" / "b.bin"), "No space left on device")


def test_permission_error_keeps_what_existed(capsys, tmp_path, monkeypatch):
    import cryofm.cli as cli

    out = tmp_path / "sim"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")

    def denied(cfg):
        (out / "new.json").write_text("{}")
        raise PermissionError(errno.EACCES, "Permission denied", str(out / "x.tar"))

    monkeypatch.setattr(cli, "_resolve", lambda target: denied)
    _cli(capsys, tmp_path, ["simulate", f"out={out}"], str(out / "x.tar"), "Permission denied")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_is_a_directory_error(capsys, tmp_path, monkeypatch):
    import cryofm.cli as cli

    def opens_a_folder(cfg):
        open(tmp_path)  # noqa: SIM115 - the error is the point

    monkeypatch.setattr(cli, "_resolve", lambda target: opens_a_folder)
    _cli(capsys, tmp_path, ["simulate", f"out={tmp_path / 's'}"], str(tmp_path), "Is a directory")


def test_interrupt_exits_130_and_keeps_partial_output(capsys, tmp_path, monkeypatch):
    """Ctrl-C is not bad input: status 130, and what was written stays (a rerun resumes from it)."""
    import cryofm.cli as cli

    out = tmp_path / "sim"

    def interrupted(cfg):
        out.mkdir()
        (out / "done.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_resolve", lambda target: interrupted)
    assert main(["simulate", f"out={out}"]) == 130
    assert "interrupted" in capsys.readouterr().err and (out / "done.json").is_file()


def test_debug_env_raises_the_original_error(tmp_path, monkeypatch):
    from cryofm.errors import InputError

    monkeypatch.setenv("CRYOFM_DEBUG", "1")
    with pytest.raises(InputError, match="n_particles"):
        main(["simulate", f"out={tmp_path / 's'}", "n_particles=0"])
    assert not (tmp_path / "s").exists()


def _shell(args, **env):
    return subprocess.run([sys.executable, "-m", "cryofm.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT, timeout=120)


def test_shell_user_sees_one_line_and_debug_shows_the_traceback(tmp_path):
    """What a shell sees: one line and status 2; with --debug the full traceback (and still no
    output left behind)."""
    out = tmp_path / "s"
    res = _shell(["simulate", f"out={out}", "box=abc"])
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "cryofm simulate: error: box: must be an integer >= 8 (got 'abc')"]
    res = _shell(["simulate", f"out={out}", "box=abc", "--debug"])
    assert res.returncode != 0 and "Traceback (most recent call last)" in res.stderr
    assert "InputError: box: must be an integer" in res.stderr and not out.exists()



def test_simulate_into_an_ingested_dataset_is_refused(capsys, tmp_path):
    """Simulated experiments and a new split would be mixed into the user's real data."""
    import numpy as np

    from cryofm.data.ingest import ingest_arrays

    ds = tmp_path / "real"
    rng = np.random.default_rng(0)
    ingest_arrays(ds, "empiar_10028", [(rng.normal(size=(16, 16)).astype(np.float32), {}) for _ in range(4)],
                  box=16, progress=False, source="relion:run_data.star")
    check_failure(capsys, lambda: main(["simulate", "preset=tiny", f"out={ds}"]), "cryofm simulate",
                  str(ds), [tmp_path], problem="cryofm simulate did not make (empiar_10028)")


# -- python -m cryofm.demo -------------------------------------------------------------------------
DEMO = [
    (["bogus=1"], "bogus", "no such key"),
    (["redo=[nonsense]"], "redo", "unknown stage(s) ['nonsense']"),
    (["real.diameter=-5"], "real.diameter", "positive number"),
    (["train.nproc=0"], "train.nproc", "positive number"),
]


@pytest.mark.parametrize("args,name,problem", DEMO, ids=[a[0] for a, _, _ in DEMO])
def test_demo_bad_options_stop_before_any_stage(capsys, tmp_path, args, name, problem):
    from cryofm.demo.pipeline import main as demo_main

    out = tmp_path / "demo"
    check_failure(capsys, lambda: demo_main([f"out={out}", *args]), "python -m cryofm.demo", name,
                  [tmp_path], problem=problem)
