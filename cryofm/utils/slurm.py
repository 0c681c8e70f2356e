"""SLURM helpers for the sbatch scripts in ``slurm/``: head node and the ``torchrun`` command line.

Run as ``python -m cryofm.utils.slurm torchrun [train.py args ...]``: prints the ``torchrun`` command
line for this node from the SLURM environment (``SLURM_JOB_NUM_NODES``, ``SLURM_GPUS_ON_NODE`` or
``SLURM_GPUS_PER_NODE``, ``SLURM_JOB_NODELIST``, ``SLURM_JOB_ID``), one task per node.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping

DEFAULT_PORT_BASE = 29500


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: ``gpu[01-04,07]`` → ``gpu01``, ``a1,b2`` → ``a1``."""
    nodelist = nodelist.strip()
    if not nodelist:
        raise ValueError("empty SLURM node list")
    m = re.match(r"^([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if m is None:
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, _, ranges = m.groups()
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def gpus_per_node(env: Mapping[str, str]) -> int:
    """GPUs on this node from SLURM's variables (``8``, ``h100:8`` and ``8(x2)`` forms)."""
    for key in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        val = env.get(key)
        if val:
            return int(re.findall(r"\d+", val.split(":")[-1])[0])
    return 1


def torchrun_command(env: Mapping[str, str], script_args: list[str], script: str = "train.py") -> list[str]:
    """``torchrun`` argv for one task per node with a c10d rendezvous on the first host."""
    nnodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")))
    nproc = gpus_per_node(env)
    job = env.get("SLURM_JOB_ID", "0")
    port = int(env.get("MASTER_PORT", DEFAULT_PORT_BASE + int(job) % 1000))
    if nnodes == 1:
        rdzv = ["--standalone"]
    else:
        head = env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"])
        rdzv = [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={head}:{port}",
                f"--rdzv_id={job}"]
    return ["torchrun", *rdzv, f"--nproc_per_node={nproc}", script, *script_args]


def torch_env_from_slurm(env: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's variables for one SLURM task per GPU (``srun`` or submitit, no torchrun).

    Empty when torchrun's ``WORLD_SIZE`` is already set or SLURM started a single task. Otherwise
    ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` = ``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``,
    ``MASTER_ADDR`` = first host of ``SLURM_JOB_NODELIST`` and ``MASTER_PORT`` from the job id.
    """
    ntasks = int(env.get("SLURM_NTASKS", "1") or 1)
    if "WORLD_SIZE" in env or ntasks <= 1 or "SLURM_PROCID" not in env:
        return {}
    job = env.get("SLURM_JOB_ID", "0")
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": str(ntasks),
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1")),
        "MASTER_PORT": env.get("MASTER_PORT") or str(DEFAULT_PORT_BASE + int(job) % 1000),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``torchrun ARGS...`` prints the command; ``head`` prints the first host."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("torchrun", "head"):
        print("usage: python -m cryofm.utils.slurm torchrun|head [train.py args]", file=sys.stderr)
        return 2
    if argv[0] == "head":
        print(first_host(os.environ.get("SLURM_JOB_NODELIST", "localhost")))
        return 0
    script = os.environ.get("CRYOFM_SCRIPT", "train.py")
    print(shlex.join(torchrun_command(os.environ, argv[1:], script)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
