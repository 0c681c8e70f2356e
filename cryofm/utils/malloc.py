"""Keep freed large buffers in the process heap (glibc ``mallopt``) instead of returning them to the OS.

PyTorch has no caching allocator on the CPU: every tensor is a ``malloc`` and glibc serves blocks
above its mmap threshold (at most 32 MiB by its own dynamic rule) with a fresh ``mmap``, unmapped
again on ``free``. A DINOv2 step at 65,536 prototypes makes a dozen such [rows, K] tensors (logits,
softmax, their gradients: 62 MB each for 239 rows), and every one is a new mapping whose pages the
kernel faults in and zeroes on first touch: a product into a new [239, 65,536] tensor took 30 ms,
8 ms into an existing one (2 CPU threads). Raising the mmap threshold to 1 GiB and the trim
threshold likewise keeps such blocks in the heap for the next step: the same product 10–12 ms, and
``bench/bench_trainer.py``'s step ÷ bare backbone step at K 65,536 fell from 1.63 to 1.51 in one
sitting (system time of the run 21 → 9 s). The price: the heap does not shrink back after a peak
(what jemalloc / tcmalloc, PyTorch's advice for CPU training, also do). No effect off glibc.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied: tuple[int, int] | None = None


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Set glibc's mmap and trim thresholds (bytes; at most 2³¹ − 1) for this process; True when
    applied (Linux with glibc), False elsewhere. Idempotent."""
    global _applied
    if _applied == (mmap_threshold, trim_threshold):
        return True
    if not (0 < mmap_threshold < 1 << 31 and 0 < trim_threshold < 1 << 31):
        raise ValueError(f"malloc thresholds must be in (0, 2^31), got {mmap_threshold}, {trim_threshold}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim_threshold)) == 1 and ok
    if ok:
        _applied = (mmap_threshold, trim_threshold)
    return ok
