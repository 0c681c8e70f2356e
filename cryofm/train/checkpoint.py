"""Checkpoints: atomic, periodic, keep the last K; full resume state; resolved config beside each.

``<run>/checkpoints/ckpt-<step>.pt`` holds the model (student, teacher, centering buffers), the
optimiser, the step (= batches consumed: the data position), the number of loader workers and the
config. Each rank also writes its RNG states to ``ckpt-<step>.rng<rank>.pt`` *before* rank 0 writes
the main file, so a main file on disk means a complete checkpoint. ``ckpt-<step>.yaml`` is the
resolved config. Files are written to a temporary name and renamed (a SIGKILL leaves no torn file).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryofm.utils import atomic

_CKPT = re.compile(r"^ckpt-(\d{8})\.pt$")


def ckpt_path(ckpt_dir: Path, step: int) -> Path:
    """Main checkpoint file of ``step``."""
    return Path(ckpt_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints ``(step, path)``, oldest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT.match(p.name))]
    return sorted(out)


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    ck = list_checkpoints(ckpt_dir)
    return ck[-1][1] if ck else None


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states of this process."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_rng(ckpt_dir: Path, step: int, rank: int) -> None:
    """This rank's RNG states for ``step`` (atomic)."""
    with atomic.atomic_path(Path(ckpt_dir) / f"ckpt-{step:08d}.rng{rank}.pt") as tmp:
        torch.save(rng_state(), tmp)


def load_rng(ckpt_dir: Path, step: int, rank: int) -> bool:
    """Restore this rank's RNG states of ``step``; False when the file is absent."""
    p = Path(ckpt_dir) / f"ckpt-{step:08d}.rng{rank}.pt"
    if not p.is_file():
        return False
    set_rng_state(torch.load(p, weights_only=False))
    return True


def save_checkpoint(
    ckpt_dir: Path, step: int, payload: dict[str, Any], config_yaml: str, keep_last: int = 3
) -> Path:
    """Write ``ckpt-<step>.pt`` and ``ckpt-<step>.yaml`` atomically; remove all but the last K."""
    ckpt_dir = Path(ckpt_dir)
    atomic.write_text(ckpt_dir / f"ckpt-{step:08d}.yaml", config_yaml)
    path = ckpt_path(ckpt_dir, step)
    with atomic.atomic_path(path) as tmp:
        torch.save({**payload, "step": step}, tmp)
    prune(ckpt_dir, keep_last)
    return path


def prune(ckpt_dir: Path, keep_last: int) -> None:
    """Delete checkpoints (and their RNG / config files) older than the last ``keep_last``."""
    if keep_last <= 0:
        return
    for step, _ in list_checkpoints(ckpt_dir)[:-keep_last]:
        for f in Path(ckpt_dir).glob(f"ckpt-{step:08d}.*"):
            f.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint file (on CPU)."""
    return torch.load(path, map_location="cpu", weights_only=False)
