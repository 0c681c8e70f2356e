"""MRC stacks: real files against their raw header bytes, and every corrupt-header case."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.errors import InputError
from cryofm.io.mrc import open_stack, stack_info, write_stack
from tests.conftest import shared_file


def _raw_header(path):
    """nx, ny, nz, mode and the cell x length straight from the first 1024 bytes."""
    h = np.fromfile(path, dtype="<i4", count=4)
    cella = np.fromfile(path, dtype="<f4", count=13)[10]
    return int(h[0]), int(h[1]), int(h[2]), int(h[3]), float(cella)


@pytest.mark.parametrize(("folder", "name", "voxel"), [
    ("trpv1_particles", "trpv1_small_stack.mrcs", 4.88),
    ("relion_cryosparc_formats", "relion31.mrcs", None),
    ("relion_cryosparc_formats", "empiar_10076_7.mrc", None),
    ("relion_cryosparc_formats", "ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs", None),
])
def test_real_stacks(shared_data, folder, name, voxel):
    path = shared_file(folder, name)
    nx, ny, nz, mode, cella = _raw_header(path)
    n, shape, vs = stack_info(path)
    assert (n, shape) == (nz, (ny, nx)) and mode == 2
    if voxel is not None:
        assert vs == pytest.approx(voxel, rel=1e-5)
    elif cella == 0:
        assert np.isnan(vs)  # a zero cell is "unknown", not 0 Å/px
    with open_stack(path) as s:
        last = s.read(n - 1)
        raw = np.fromfile(path, dtype="<f4", offset=path.stat().st_size - nx * ny * 4).reshape(ny, nx)
        np.testing.assert_array_equal(last, raw)
        np.testing.assert_array_equal(s.read_range(n - 2, n)[1], raw)
        with pytest.raises(InputError, match=f"image index {n + 1} \\(1-based\\) is past the end"):
            s.read(n)


def _good(tmp_path, n=4, size=16):
    p = tmp_path / "good.mrcs"
    write_stack(p, np.arange(n * size * size, dtype=np.float32).reshape(n, size, size), voxel_size=2.0)
    return p


def test_truncated(tmp_path):
    p = _good(tmp_path)
    data = p.read_bytes()
    bad = tmp_path / "trunc.mrcs"
    bad.write_bytes(data[:-100])
    with pytest.raises(InputError) as exc:
        open_stack(bad)
    assert str(exc.value) == (f"{bad}: truncated or corrupt MRC: the header promises 4 images of 16x16 "
                              f"({1024 + 4 * 16 * 16 * 4} bytes) but the file has {len(data) - 100} bytes")


def test_bad_mode(tmp_path):
    data = bytearray(_good(tmp_path).read_bytes())
    data[12:16] = np.int32(4).tobytes()  # complex: not a particle image
    bad = tmp_path / "mode.mrcs"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"mode\.mrcs: unsupported MRC mode 4"):
        open_stack(bad)


def test_not_mrc_and_missing(tmp_path):
    junk = tmp_path / "junk.mrcs"
    junk.write_bytes(b"hello" * 10)
    with pytest.raises(InputError, match="junk.mrcs: not a readable MRC file"):
        open_stack(junk)
    with pytest.raises(InputError, match="absent.mrcs: particle stack not found"):
        open_stack(tmp_path / "absent.mrcs")


def test_non_square(tmp_path):
    p = tmp_path / "rect.mrcs"
    write_stack(p, np.zeros((2, 16, 20), dtype=np.float32))
    with pytest.raises(InputError, match=r"not square \(16x20\)"):
        open_stack(p)


def test_float16_and_int8_modes(tmp_path):
    for dtype in (np.float16, np.int8):
        p = tmp_path / f"{np.dtype(dtype).name}.mrcs"
        arr = (np.arange(2 * 8 * 8) % 100).reshape(2, 8, 8).astype(dtype)
        write_stack(p, arr)
        with open_stack(p) as s:
            np.testing.assert_array_equal(s.read(1), arr[1].astype(np.float32))
