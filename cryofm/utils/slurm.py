"""SLURM helpers for the sbatch scripts in ``slurm/``: host lists, the ``torchrun`` launcher and the
array task's row of the experiment table.

Command line (used by the scripts; each prints one shell-quoted line for ``eval "ARR=($(...))"``):

* ``python -m cryofm.utils.slurm torchrun`` — the ``torchrun`` launcher for this node from the SLURM
  environment (``SLURM_JOB_NUM_NODES``, ``SLURM_GPUS_ON_NODE`` or ``SLURM_GPUS_PER_NODE``,
  ``SLURM_JOB_NODELIST``, ``SLURM_JOB_ID``), one task per node, without the script's arguments
  (the sbatch script appends ``"$@"`` itself, so quoted arguments stay whole);
* ``python -m cryofm.utils.slurm table-row TABLE INDEX`` — the ``cryofm ingest`` arguments of row
  ``INDEX`` (0-based) of an experiment table, read by header like ``cryofm ingest table=``;
* ``python -m cryofm.utils.slurm head`` / ``hosts`` — the first / every host of the job.

Host lists come from ``scontrol show hostnames`` (SLURM's own expansion); where ``scontrol`` is
absent (a laptop, the tests' ``DRY_RUN``) :func:`expand_nodelist` expands SLURM's syntax itself:
``gpu[01-04,07]``, ``node-[1-2]-ib`` (text after the brackets), ``a[1-2]b[3-4]`` and comma lists.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

DEFAULT_PORT_BASE = 29500
# the columns of an experiment table that `cryofm ingest table=` reads, and the ingest key of each
TABLE_COLUMNS = ("experiment", "input", "root", "classes", "stack", "invert")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+%^-]*$")


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: ``a[1,2],b`` → ``["a[1,2]", "b"]``."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in (s.strip() for s in parts) if p]


def _expand_one(name: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", name)
    if m is None:
        return [name]
    head, tail = name[: m.start()], name[m.end():]
    out = []
    for rng in m.group(1).split(","):
        lo, _, hi = rng.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"cannot parse SLURM node list {name!r}")
        width = len(lo)
        for i in range(int(lo), int(hi or lo) + 1):
            out.extend(f"{head}{i:0{width}d}{rest}" for rest in _expand_one(tail))
    return out


def expand_nodelist(nodelist: str) -> list[str]:
    """Every host of a SLURM node list, in order (SLURM's syntax, without ``scontrol``)."""
    names = [h for part in _split_top(nodelist.strip()) for h in _expand_one(part)]
    if not names:
        raise ValueError("empty SLURM node list")
    return names


def hostnames(nodelist: str) -> list[str]:
    """Hosts of a node list: ``scontrol show hostnames`` where it exists, else :func:`expand_nodelist`."""
    if shutil.which("scontrol"):
        try:
            res = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True)
            hosts = res.stdout.split()
            if hosts:
                return hosts
        except (OSError, subprocess.SubprocessError):
            pass  # a broken scontrol: SLURM's syntax is simple enough to expand here
    return expand_nodelist(nodelist)


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: ``gpu[01-04,07]`` → ``gpu01``, ``node-[1-2]-ib`` → ``node-1-ib``."""
    return hostnames(nodelist)[0]


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


def hydra_value(value: str) -> str:
    """``value`` as a Hydra override value: unchanged when plain, else single-quoted (spaces, commas,
    brackets and ``=`` would otherwise be Hydra syntax)."""
    if _PLAIN.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_row_args(table: str | Path, index: int) -> list[str]:
    """``cryofm ingest`` arguments of row ``index`` (0-based, after the header) of an experiment table.

    Columns are found by header name, in any order, like ``cryofm ingest table=``: ``experiment`` and
    ``input`` (required), ``root``, ``classes``, ``stack``, ``invert`` (empty cells are left out);
    other columns are ignored. ValueError names the table and the problem.
    """
    path = Path(table)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [(c or "").strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): v.strip() for k, v in r.items() if isinstance(v, str)}  # short rows: None
                for r in reader]
    missing = [c for c in ("experiment", "input") if c not in header]
    if missing:
        raise ValueError(f"{path}: no {' / '.join(missing)} column (columns: {', '.join(header) or 'none'})")
    if not 0 <= index < len(rows):
        raise ValueError(f"{path}: no row for array task {index} "
                         f"({len(rows)} rows: --array=0-{max(len(rows) - 1, 0)})")
    row = rows[index]
    for col in ("experiment", "input"):
        if not row.get(col):
            raise ValueError(f"{path}: row {index + 1}: empty {col}")
    return [f"{col}={hydra_value(row[col])}" for col in TABLE_COLUMNS if row.get(col)]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``torchrun`` | ``table-row TABLE INDEX`` | ``head`` | ``hosts`` (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m cryofm.utils.slurm torchrun | table-row TABLE INDEX | head | hosts"
    if not argv or argv[0] not in ("torchrun", "table-row", "head", "hosts"):
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] in ("head", "hosts"):
            hosts = hostnames(os.environ.get("SLURM_JOB_NODELIST", "localhost"))
            print(hosts[0] if argv[0] == "head" else "\n".join(hosts))
        elif argv[0] == "table-row":
            if len(argv) != 3 or not argv[2].lstrip("-").isdigit():
                print(usage, file=sys.stderr)
                return 2
            print(shlex.join(table_row_args(argv[1], int(argv[2]))))
        else:
            script = os.environ.get("CRYOFM_SCRIPT", "train.py")
            print(shlex.join(torchrun_command(os.environ, argv[1:], script)))
    except (ValueError, OSError) as exc:
        print(f"cryofm slurm: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
