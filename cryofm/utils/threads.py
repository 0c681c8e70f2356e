"""How many intra-op threads a training process should use, from the CPUs it may really use.

torch's default is one thread per core of the machine, whatever the process may use and whoever
else runs there. On a shared 2-core box with a background load of ~3 that oversubscribes the cores:
every parallel region waits at a barrier for a thread that is not running, and the demo's step went
from 1.3 s to 14–18 s (11×). ``train.threads=auto`` takes instead

    CPUs this process may use  (``SLURM_CPUS_PER_TASK`` when SLURM set it, else the affinity mask)
    ÷ processes on this node  (``LOCAL_WORLD_SIZE`` under torchrun)
    − its data-loader workers  (each runs one thread)
    − the cores other processes keep busy  (runnable tasks now, from /proc/stat, less this process)

and at least 1, and at most ``OMP_NUM_THREADS`` when that is set (a user's or torchrun's explicit
cap; it also keeps runs that must agree bit for bit, such as a resumed run and an uninterrupted one,
on the same thread count whatever the load). ``bench/bench_threads.py`` measures the step time
under a synthetic load with it.
"""

from __future__ import annotations

import os


def available_cpus(environ: dict[str, str] | None = None) -> int:
    """CPUs this process may use: ``SLURM_CPUS_PER_TASK``, else ``os.sched_getaffinity``, else
    ``os.cpu_count()``."""
    env = os.environ if environ is None else environ
    slurm = env.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def runnable_elsewhere(samples: int = 5, interval_s: float = 0.02) -> float:
    """Tasks other than this one that are runnable right now: the median of ``samples`` readings of
    ``procs_running`` in ``/proc/stat`` (minus this process), which follows a load as it starts — the
    1-minute load average lags it by a minute. Falls back to ``os.getloadavg()`` off Linux."""
    import statistics
    import time

    vals = []
    for i in range(samples):
        try:
            with open("/proc/stat") as fh:
                line = next(x for x in fh if x.startswith("procs_running"))
            vals.append(int(line.split()[1]) - 1)
        except (OSError, StopIteration, ValueError):
            try:
                return float(os.getloadavg()[0])
            except (AttributeError, OSError):
                return 0.0
        if i + 1 < samples:
            time.sleep(interval_s)
    return float(statistics.median(vals))


def busy_elsewhere(cpus: int, load: float | None = None) -> int:
    """Cores other processes keep busy, at most ``cpus - 1``: ``load`` (runnable tasks elsewhere)
    rounded down, measured by :func:`runnable_elsewhere` when not given."""
    if load is None:
        load = runnable_elsewhere()
    return max(0, min(cpus - 1, int(load)))


def auto_threads(num_workers: int = 0, local_world_size: int | None = None,
                 environ: dict[str, str] | None = None, load: float | None = None) -> int:
    """Intra-op threads for one training process (see the module docstring)."""
    env = os.environ if environ is None else environ
    local = local_world_size or int(env.get("LOCAL_WORLD_SIZE", "1") or 1)
    share = max(1, available_cpus(env) // max(local, 1))
    free = share - busy_elsewhere(share, load)
    n = max(1, free - int(num_workers))
    cap = env.get("OMP_NUM_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        n = min(n, int(cap))
    return n


def resolve_threads(value, num_workers: int = 0) -> int | None:
    """``train.threads``: ``auto`` → :func:`auto_threads`; a positive int as given; ``null`` → None
    (torch's default)."""
    if value is None:
        return None
    if str(value) == "auto":
        return auto_threads(num_workers)
    n = int(value)
    if n < 1:
        raise ValueError(f"train.threads must be auto, null or >= 1, got {value!r}")
    return n
