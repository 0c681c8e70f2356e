"""The sbatch scripts parse, and print the intended torchrun / srun command lines (DRY_RUN=1)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cryofm.utils.slurm import expand_nodelist, first_host, gpus_per_node, hostnames, torchrun_command

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "slurm").glob("*.sbatch")) + [ROOT / "slurm" / "lib.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def _dry(script: str, args: list[str], path: str | None = None, check: bool = True, **env: str):
    base = {"PATH": path or os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DRY_RUN": "1",
            "SLURM_SUBMIT_DIR": str(ROOT), "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(ROOT / "slurm" / script), *args], env={**base, **env},
                         capture_output=True, text=True, check=check)
    return out.stdout.strip() if check else out


def _fake_scontrol(tmp_path, hosts: list[str]) -> str:
    """A PATH whose ``scontrol show hostnames <list>`` prints ``hosts`` (as SLURM's would)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "scontrol"
    fake.write_text("#!/bin/sh\n[ \"$1 $2\" = \"show hostnames\" ] || exit 1\nprintf '%s\\n' "
                    + " ".join(hosts) + "\n")
    fake.chmod(0o755)
    return f"{bindir}:{os.environ['PATH']}"


def test_multinode_srun_one_task_per_node_with_rendezvous_on_first_host(tmp_path):
    """The head comes from `scontrol show hostnames` (a fake one here), and a quoted override with a
    space reaches train.py as one argument."""
    args = ["experiment=cryopanda_vitl16", "data=/d", 'wandb.name="my run"']
    line = _dry("pretrain_multinode.sbatch", args,
                path=_fake_scontrol(tmp_path, ["gpu12-ib", "gpu13-ib", "gpu14-ib", "gpu15-ib"]),
                SLURM_JOB_NUM_NODES="4", SLURM_GPUS_ON_NODE="8", SLURM_JOB_NODELIST="gpu[12-15]-ib",
                SLURM_JOB_ID="4321", SLURM_JOB_NAME="pt")
    assert shlex.split(line) == [
        "srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", f"--chdir={ROOT}",
        "torchrun", "--nnodes=4", "--rdzv_backend=c10d", "--rdzv_endpoint=gpu12-ib:29821", "--rdzv_id=4321",
        "--nproc_per_node=8", "train.py", "experiment=cryopanda_vitl16", "data=/d", 'wandb.name="my run"',
        "out=runs/pt-4321"]


def test_multinode_without_scontrol_expands_the_list_itself(tmp_path):
    line = _dry("pretrain_multinode.sbatch", ["experiment=tiny"], path="/usr/bin:/bin",
                SLURM_JOB_NUM_NODES="2", SLURM_GPUS_ON_NODE="4", SLURM_JOB_NODELIST="node-[1-2]-ib",
                SLURM_JOB_ID="7", SLURM_JOB_NAME="pt")
    assert "--rdzv_endpoint=node-1-ib:29507" in shlex.split(line)


def test_single_node_is_standalone_and_run_dir_is_stable_across_requeue():
    argv = shlex.split(_dry("pretrain_node.sbatch", ["experiment=tiny", "wandb.name=my run"],
                            SLURM_JOB_NUM_NODES="1", SLURM_GPUS_PER_NODE="h100:4", SLURM_JOB_NODELIST="gpu07",
                            SLURM_JOB_ID="99", SLURM_JOB_NAME="x"))
    assert argv == ["torchrun", "--standalone", "--nproc_per_node=4", "train.py", "experiment=tiny",
                    "wandb.name=my run", "out=runs/x-99"]


def test_ingest_array_task_reads_its_row(tmp_path):
    table = tmp_path / "exps.csv"
    table.write_text("experiment,input,root\nEMPIAR-10017,/a/p.star,/a\nEMPIAR-10028,/b/q.cs,\n")
    argv = shlex.split(_dry("ingest_array.sbatch", [], SLURM_ARRAY_TASK_ID="1", TABLE=str(table), OUT="/o"))
    assert argv[1:] == ["ingest", "experiment=EMPIAR-10028", "input=/b/q.cs", "out=/o", "merge=false",
                        "box=224"]
    argv = shlex.split(_dry("ingest_array.sbatch", [], SLURM_ARRAY_TASK_ID="0", TABLE=str(table), OUT="/o"))
    assert "root=/a" in argv and "experiment=EMPIAR-10017" in argv


def test_ingest_array_reads_the_table_by_header(tmp_path):
    """Columns in another order, a quoted field with a comma and a space, an extra column, CRLF: the
    same row as `cryofm ingest table=` reads, each value one argument (Hydra-quoted when needed)."""
    table = tmp_path / "exps.csv"
    table.write_bytes(b'notes,root,input,invert,experiment\r\n'
                      b'"first, good",/data/my proj,"/data/my proj/J24,particles.cs",true,EMPIAR-10076\r\n')
    argv = shlex.split(_dry("ingest_array.sbatch", [], SLURM_ARRAY_TASK_ID="0", TABLE=str(table), OUT="/o"))
    assert argv[1:] == ["ingest", "experiment=EMPIAR-10076", "input='/data/my proj/J24,particles.cs'",
                        "root='/data/my proj'", "invert=true", "out=/o", "merge=false", "box=224"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(argv[3:5])
    assert [o.value() for o in parsed] == ["/data/my proj/J24,particles.cs", "/data/my proj"]


def test_ingest_array_task_without_a_row_fails_with_one_line(tmp_path):
    table = tmp_path / "exps.csv"
    table.write_text("input,experiment\n/a.star,E1\n")
    env = {"TABLE": str(table), "OUT": "/o"}
    res = _dry("ingest_array.sbatch", [], check=False, SLURM_ARRAY_TASK_ID="3", **env)
    assert res.returncode == 2
    want = f"cryofm slurm: error: {table}: no row for array task 3 (1 rows: --array=0-0)"
    assert res.stderr.strip() == want
    table.write_text("path,experiment\n/a.star,E1\n")
    res = _dry("ingest_array.sbatch", [], check=False, SLURM_ARRAY_TASK_ID="0", **env)
    assert res.returncode == 2 and "no input column (columns: path, experiment)" in res.stderr


def test_eval_script_rejects_unknown_evaluation():
    with pytest.raises(subprocess.CalledProcessError):
        _dry("eval.sbatch", ["nonsense"])
    assert _dry("eval.sbatch", ["probe", "data=/d"]).endswith("eval/probe.py data=/d")


@pytest.mark.parametrize("nodelist, hosts", [
    ("gpu[01-04,07]", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"]),
    ("node-[1-2]-ib", ["node-1-ib", "node-2-ib"]),  # the old hand parser dropped the "-ib"
    ("a1,b2", ["a1", "b2"]),
    ("r[1-2]n[3-4],login", ["r1n3", "r1n4", "r2n3", "r2n4", "login"]),
    ("n[9-11]", ["n9", "n10", "n11"]),
])
def test_nodelist_expansion_without_scontrol(nodelist, hosts, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert expand_nodelist(nodelist) == hosts
    assert first_host(nodelist) == hosts[0]


def test_scontrol_is_asked_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_scontrol(tmp_path, ["x-1.cluster", "x-2.cluster"]))
    assert hostnames("x-[1-2]") == ["x-1.cluster", "x-2.cluster"]


def test_slurm_env_parsing(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpus_per_node({"SLURM_GPUS_ON_NODE": "8"}) == 8 and gpus_per_node({}) == 1
    cmd = torchrun_command({"SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "2",
                            "SLURM_JOB_NODELIST": "n[3,5]", "MASTER_PORT": "1234", "SLURM_JOB_ID": "7"}, [])
    assert "--rdzv_endpoint=n3:1234" in cmd and "--nnodes=2" in cmd
