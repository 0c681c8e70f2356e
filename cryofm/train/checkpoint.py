"""Checkpoints: atomic, periodic, keep the last K; full resume state; resolved config beside each.

``<run>/checkpoints/ckpt-<step>.pt`` holds the model (student, teacher, centering buffers), the
optimiser, the step (= batches consumed: the data position), the number of loader workers and the
config. Each rank also writes its RNG states to ``ckpt-<step>.rng<rank>.pt`` *before* rank 0 writes
the main file, so a main file on disk means a complete checkpoint. ``ckpt-<step>.yaml`` is the
resolved config. Files are written to a temporary name and renamed (a SIGKILL leaves no torn file).

Every file is read with ``torch.load(weights_only=True)``: it holds only tensors and plain Python
values (the RNG states are converted: NumPy's key array to a tensor, Python's state to a list of
ints), so a planted or tampered ``ckpt-*.pt`` cannot run code; it is refused with an
:class:`~cryofm.errors.InputError`. A checkpoint that cannot be read (truncated, e.g. a disk that
filled up or a partial copy) is skipped with one warning, and the newest intact one is used.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryofm.errors import InputError
from cryofm.utils import atomic

log = logging.getLogger(__name__)

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
    """Python, NumPy, torch (and CUDA) generator states of this process, as tensors and plain types
    (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    st: dict[str, Any] = {
        "python": {"version": int(version), "state": [int(v) for v in internal],
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"bit_generator": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (also the tuples older cryofm versions stored)."""
    py, nps = st["python"], st["numpy"]
    if isinstance(py, dict):
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    else:
        random.setstate(tuple(py))
    if isinstance(nps, dict):
        np.random.set_state((nps["bit_generator"], nps["keys"].numpy().astype(np.uint32), nps["pos"],
                             nps["has_gauss"], nps["cached_gaussian"]))
    else:
        np.random.set_state(tuple(nps))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class CorruptCheckpointError(Exception):
    """A checkpoint file that cannot be read back (truncated or damaged), as opposed to a refused one."""


def _numpy_array_globals() -> list:
    """What unpickling a NumPy array needs (and nothing that can run code): RNG files written by
    cryofm before the states became tensors hold NumPy's key array."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    # a file pickled under NumPy 1.x names the function numpy.core.multiarray._reconstruct
    return [_reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
            type(np.dtype(np.uint32))]


def safe_load(path: str | Path, numpy_arrays: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU (``numpy_arrays``: NumPy arrays allowed too).

    Raises InputError when the file asks to run code or build objects other than tensors and plain
    values (a tampered or foreign file: refused, never executed), CorruptCheckpointError when it cannot
    be read at all.
    """
    allowed = _numpy_array_globals() if numpy_arrays else []
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(allowed):
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the refusal says it all
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) or "Unsupported" in str(exc):
            raise InputError(path, "refused: the file asks to run code or build objects other than "
                                   "tensors (not a cryofm checkpoint, or tampered with)") from None
        raise CorruptCheckpointError(f"{path}: {str(exc).splitlines()[0]}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError,
            ArithmeticError, struct.error) as exc:  # random bytes reach the unpickler's internals
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise CorruptCheckpointError(f"{path}: {str(exc).splitlines()[0]}") from exc


def save_rng(ckpt_dir: Path, step: int, rank: int) -> None:
    """This rank's RNG states for ``step`` (atomic)."""
    with atomic.atomic_path(Path(ckpt_dir) / f"ckpt-{step:08d}.rng{rank}.pt") as tmp:
        torch.save(rng_state(), tmp)


def load_rng(ckpt_dir: Path, step: int, rank: int) -> bool:
    """Restore this rank's RNG states of ``step``; False when the file is absent."""
    p = Path(ckpt_dir) / f"ckpt-{step:08d}.rng{rank}.pt"
    if not p.is_file():
        return False
    try:
        set_rng_state(safe_load(p, numpy_arrays=True))
    except CorruptCheckpointError as exc:
        log.warning("unreadable RNG state %s (%s): reseeding instead", p.name, exc)
        return False
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
    """The payload of a checkpoint file (on CPU); InputError / CorruptCheckpointError as :func:`safe_load`."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or "model" not in payload or "step" not in payload:
        raise InputError(path, "not a cryofm checkpoint (no model / step)")
    return payload


def load_latest(ckpt_dir: str | Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint that reads back, and its payload; ``(None, None)`` when there is none.

    A newer file that cannot be read (truncated) is skipped with one warning line naming it; a file
    that is refused (it would run code) stops with InputError instead of being skipped silently.
    """
    for _, path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return path, load_checkpoint(path)
        except CorruptCheckpointError as exc:
            log.warning("checkpoint %s cannot be read (%s): falling back to the previous one",
                        path, str(exc).split(": ", 1)[-1])
    return None, None
