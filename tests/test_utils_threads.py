"""train.threads=auto: the CPUs a process may use, shared by local ranks, less workers and load."""

from __future__ import annotations

import pytest

from cryofm.utils.threads import auto_threads, busy_elsewhere, resolve_threads


def test_auto_threads_arithmetic():
    env = {"SLURM_CPUS_PER_TASK": "8", "LOCAL_WORLD_SIZE": "2"}
    # 8 CPUs / 2 ranks = 4; one core busy elsewhere -> 3; one data worker -> 2
    assert auto_threads(num_workers=1, environ=env, load=1.7) == 2
    # a load above the share leaves one core for this process, never zero
    assert auto_threads(num_workers=0, environ=env, load=10.0) == 1
    assert auto_threads(num_workers=5, environ=env, load=0.0) == 1


def test_omp_num_threads_caps_auto():
    env = {"SLURM_CPUS_PER_TASK": "8", "OMP_NUM_THREADS": "3"}
    assert auto_threads(environ=env, load=0.0) == 3  # 8 free, capped at 3
    assert auto_threads(environ={**env, "OMP_NUM_THREADS": "16"}, load=0.0) == 8
    assert auto_threads(environ={**env, "OMP_NUM_THREADS": ""}, load=0.0) == 8


def test_busy_elsewhere_bounds():
    assert busy_elsewhere(4, load=2.9) == 2
    assert busy_elsewhere(4, load=9.0) == 3
    assert busy_elsewhere(1, load=3.0) == 0


def test_resolve_threads_values():
    assert resolve_threads(None) is None
    assert resolve_threads(3) == 3
    with pytest.raises(ValueError, match="train.threads"):
        resolve_threads(0)
