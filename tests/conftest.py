"""Shared fixtures: the real data beside the checkout (``../shared/data``), skipped when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it skip cleanly on a checkout without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real-data tests run only beside the shared folder)")
    return SHARED_DATA


def shared_file(*parts: str) -> Path:
    """A file under ``../shared/data`` or a skip when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture
def one_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread is much faster than two.
    Test modules of small tensor ops use it for every test (``pytestmark``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
