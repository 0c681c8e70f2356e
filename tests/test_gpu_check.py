"""bench/gpu_check.sh --dry-run: every GPU check runs at tiny sizes on the CPU and says PASS (the
attention kernels need CUDA: SKIP), one line each, and the equalities it reports are the real ones."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(400)
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    env.pop("OUT", None)
    res = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# cryofm GPU check") and "dry run" in lines[1]
    status = {ln.split()[0]: ln.split()[1] for ln in lines[2:]}
    assert status == {"bf16": "PASS", "ddp": "PASS", "fsdp2": "PASS", "attention": "SKIP", "compile": "PASS",
                      "throughput": "PASS", "learning": "PASS"}
    text = "\n".join(lines)
    # in one process on the CPU, DDP and FSDP2 (world of one) reproduce the plain step exactly
    for name in ("ddp", "fsdp2"):
        row = next(ln for ln in lines if ln.startswith(name + " "))
        assert "first gradients rel L2 0.0e+00" in row and "max rel diff 0.0e+00" in row, row
    assert re.search(r"throughput .* largest batch tried that fits 4: .* samples/s", text)
    assert re.search(r"learning .*10 steps.*pixels", text)
