"""MMseqs2, the field's tool: ``mmseqs easy-cluster`` (or ``easy-search`` all against all for
``linkage="connected"``), run on the unique chain sequences in a temporary folder.

``easy-cluster in.fasta res tmp --min-seq-id X -c C --cov-mode 0 --cluster-mode 0
--single-step-clustering 1`` writes ``res_cluster.tsv`` (representative, member per line):
identity over the alignment length, coverage of both sequences >= C, greedy set cover.

Single-step by default (``cascaded=False``): MMseqs2's default cascaded workflow first clusters
with linclust and then clusters only the representatives of that step, so a member can lose its
closest representative. On the tests' table it does: A36 (36 % identical to A) stays alone because
A already joined A50's cluster in the first step, though A has more neighbours. One all-against-all
set cover is what cryofm's exact path computes too; for hundreds of experiments it costs seconds.
``cascaded=True`` runs MMseqs2's default (for very large tables).

``easy-search`` (``linkage="connected"``) writes BLAST-tab pairs above the same thresholds (here at
the highest sensitivity, ``-s 7.5``), whose connected components are taken.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryofm.curate.pairwise import components
from cryofm.errors import InputError


def binary(name: str = "mmseqs") -> str | None:
    """Path of the ``mmseqs`` executable, None when it is not installed."""
    return shutil.which(name)


def version(exe: str) -> str:
    """``mmseqs version`` (e.g. ``14-7e284``)."""
    try:
        return subprocess.run([exe, "version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no message"]
        raise InputError("mmseqs", f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {tail[0]}")


def cluster(seqs: Sequence[str], min_seq_id: float, coverage: float, linkage: str = "cluster",
            exe: str = "mmseqs", threads: int = 1, extra: Sequence[str] = (),
            cascaded: bool = False) -> tuple[list[int], list[str]]:
    """Representative (cluster) index per sequence, and the command that ran."""
    with tempfile.TemporaryDirectory(prefix="cryofm-mmseqs-") as tmp:
        d = Path(tmp)
        (d / "in.fasta").write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
        common = ["--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0",
                  "--threads", str(max(1, threads)), "-v", "1", *map(str, extra)]
        if linkage == "connected":
            cmd = [exe, "easy-search", "in.fasta", "in.fasta", "res.m8", "tmp", "-s", "7.5", *common]
            _run(cmd, d)
            pairs = []
            for line in (d / "res.m8").read_text().splitlines():
                q, t = line.split("\t")[:2]
                if q != t:
                    pairs.append((int(q[1:]), int(t[1:]), 0.0))
            return components(len(seqs), pairs), cmd
        steps = [] if cascaded else ["--single-step-clustering", "1"]
        cmd = [exe, "easy-cluster", "in.fasta", "res", "tmp", "--cluster-mode", "0", *steps, *common]
        _run(cmd, d)
        rep = list(range(len(seqs)))
        for line in (d / "res_cluster.tsv").read_text().splitlines():
            r, m = line.split("\t")[:2]
            rep[int(m[1:])] = int(r[1:])
        return rep, cmd
