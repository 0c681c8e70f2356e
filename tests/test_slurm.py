"""The sbatch scripts parse, and print the intended torchrun / srun command lines (DRY_RUN=1)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cryofm.utils.slurm import first_host, gpus_per_node, torchrun_command

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "slurm").glob("*.sbatch")) + [ROOT / "slurm" / "lib.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def _dry(script: str, args: list[str], **env: str) -> str:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DRY_RUN": "1",
            "SLURM_SUBMIT_DIR": str(ROOT), "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(ROOT / "slurm" / script), *args], env={**base, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_multinode_srun_one_task_per_node_with_rendezvous_on_first_host():
    line = _dry("pretrain_multinode.sbatch", ["experiment=cryopanda_vitl16", "data=/d"],
                SLURM_JOB_NUM_NODES="4", SLURM_GPUS_ON_NODE="8", SLURM_JOB_NODELIST="gpu[12-15]",
                SLURM_JOB_ID="4321", SLURM_JOB_NAME="pt")
    assert line.startswith("srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c ")
    torchrun = line.split(" && ", 1)[1]
    assert shlex.split(torchrun) == [
        "torchrun", "--nnodes=4", "--rdzv_backend=c10d", "--rdzv_endpoint=gpu12:29821", "--rdzv_id=4321",
        "--nproc_per_node=8", "train.py", "experiment=cryopanda_vitl16", "data=/d", "out=runs/pt-4321"]


def test_single_node_is_standalone_and_run_dir_is_stable_across_requeue():
    argv = shlex.split(_dry("pretrain_node.sbatch", ["experiment=tiny"], SLURM_JOB_NUM_NODES="1",
                            SLURM_GPUS_PER_NODE="h100:4", SLURM_JOB_NODELIST="gpu07", SLURM_JOB_ID="99",
                            SLURM_JOB_NAME="x"))
    assert argv == ["torchrun", "--standalone", "--nproc_per_node=4", "train.py", "experiment=tiny",
                    "out=runs/x-99"]


def test_ingest_array_task_reads_its_row(tmp_path):
    table = tmp_path / "exps.csv"
    table.write_text("experiment,input,root\nEMPIAR-10017,/a/p.star,/a\nEMPIAR-10028,/b/q.cs,\n")
    argv = shlex.split(_dry("ingest_array.sbatch", [], SLURM_ARRAY_TASK_ID="1", TABLE=str(table), OUT="/o"))
    assert argv[1:] == ["ingest", "input=/b/q.cs", "experiment=EMPIAR-10028", "out=/o", "merge=false",
                        "box=224"]
    argv = shlex.split(_dry("ingest_array.sbatch", [], SLURM_ARRAY_TASK_ID="0", TABLE=str(table), OUT="/o"))
    assert "root=/a" in argv and "experiment=EMPIAR-10017" in argv


def test_eval_script_rejects_unknown_evaluation():
    with pytest.raises(subprocess.CalledProcessError):
        _dry("eval.sbatch", ["nonsense"])
    assert _dry("eval.sbatch", ["probe", "data=/d"]).endswith("eval/probe.py data=/d")


def test_slurm_env_parsing():
    assert first_host("gpu[01-04,07]") == "gpu01" and first_host("a1,b2") == "a1"
    assert gpus_per_node({"SLURM_GPUS_ON_NODE": "8"}) == 8 and gpus_per_node({}) == 1
    cmd = torchrun_command({"SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "2",
                            "SLURM_JOB_NODELIST": "n[3,5]", "MASTER_PORT": "1234", "SLURM_JOB_ID": "7"}, [])
    assert "--rdzv_endpoint=n3:1234" in cmd and "--nnodes=2" in cmd
