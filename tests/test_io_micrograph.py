"""Micrograph reader: MRC, 8/16-bit PNG, TIFF, JPEG give the same pixels in the same frame."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import tifffile
from PIL import Image

from cryofm.errors import InputError
from cryofm.io.micrograph import list_micrographs, read_micrograph
from tests.conftest import shared_file

RNG = np.random.default_rng(0)
U16 = RNG.integers(0, 65535, size=(40, 60), dtype=np.uint16)  # not square: rows ≠ columns


def test_16bit_png_tiff_and_mrc_round_trip(tmp_path):
    Image.fromarray(U16).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", U16)
    with mrcfile.new(tmp_path / "a.mrc") as m:
        m.set_data(U16.astype(np.float32))
    for name in ("a.png", "a.tif", "a.mrc"):
        a = read_micrograph(tmp_path / name)
        assert a.dtype == np.float32 and a.shape == (40, 60)
        np.testing.assert_array_equal(a, U16.astype(np.float32))


def test_8bit_jpeg_rgb_and_movie(tmp_path):
    u8 = (U16 >> 8).astype(np.uint8)
    Image.fromarray(u8).save(tmp_path / "a.jpg", quality=100)
    assert np.abs(read_micrograph(tmp_path / "a.jpg") - u8).mean() < 2.0  # lossy but close
    Image.fromarray(np.stack([u8] * 3, -1)).save(tmp_path / "rgb.png")  # grey stored as RGB
    np.testing.assert_allclose(read_micrograph(tmp_path / "rgb.png"), u8, atol=1)
    frames = RNG.normal(size=(3, 16, 16)).astype(np.float32)
    with mrcfile.new(tmp_path / "movie.mrcs") as m:
        m.set_data(frames)
    np.testing.assert_allclose(read_micrograph(tmp_path / "movie.mrcs"), frames.mean(0), rtol=1e-6)


def test_bad_micrographs_raise_input_error(tmp_path):
    (tmp_path / "broken.mrc").write_bytes(b"not an mrc file")
    with pytest.raises(InputError, match="broken.mrc"):
        read_micrograph(tmp_path / "broken.mrc")
    with pytest.raises(InputError, match="no such file"):
        read_micrograph(tmp_path / "missing.png")
    with pytest.raises(InputError, match="no micrographs"):
        list_micrographs(tmp_path / "*.tif")


def test_real_cryoppp_png(shared_data):
    f = shared_file("cryoppp_10028", "valid", "images", "065_10028.png")
    a = read_micrograph(f)
    assert a.shape == (1024, 1024)
    np.testing.assert_array_equal(a, np.asarray(Image.open(f)).astype(np.float32))
    assert [p.name for p in list_micrographs(f.parent)] == ["065_10028.png"]
