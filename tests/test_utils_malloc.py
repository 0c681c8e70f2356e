"""keep_freed_memory: freed large tensors' pages are reused, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from cryofm.utils.malloc import keep_freed_memory

PROBE = """
import resource, sys, torch
from cryofm.utils.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):  # a training step's pattern: large tensors made, used, all freed; again
    f0 = faults()
    xs = [torch.ones(64, 1 << 18) for _ in range(3)]  # 64 MiB each
    y = xs[0] * 2 + xs[1]  # two more
    del xs, y
print(faults() - f0)  # page faults of the last round
"""


def _last_round_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_64_mib_tensors_are_reused_instead_of_faulted_in_again():
    pages = 5 * (64 << 20) // 4096  # five 64 MiB tensors of 4 KiB pages per round
    default, kept = _last_round_faults("default"), _last_round_faults("keep")
    assert default > 0.9 * pages, default  # glibc's default: new mappings, every page faulted in again
    assert kept < 0.4 * pages, kept  # kept in the heap: most pages are already there (measured 1 of 5)


def test_thresholds_out_of_range_are_refused():
    with pytest.raises(ValueError, match="malloc thresholds"):
        keep_freed_memory(mmap_threshold=1 << 31)
    with pytest.raises(ValueError, match="malloc thresholds"):
        keep_freed_memory(trim_threshold=0)
