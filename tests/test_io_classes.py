"""2D-class resolution joined onto particles from RELION model.star / cryoSPARC class averages."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.errors import InputError
from cryofm.io.classes import join_classes
from cryofm.io.particles import read_particles
from tests.conftest import shared_file

FORMATS = "relion_cryosparc_formats"


def test_cryosparc_class_averages(tmp_path, shared_data):
    parts_cs = shared_file(FORMATS, "cryosparc_J2_particles_exported.cs")
    cls = np.load(parts_cs)["alignments2D/class"]  # 0-based
    n_classes = int(cls.max()) + 1
    res = np.linspace(6.0, 20.0, n_classes).astype(np.float32)
    arr = np.zeros(n_classes, dtype=[("blob/idx", "<u4"), ("blob/res_A", "<f4")])
    arr["blob/idx"], arr["blob/res_A"] = np.arange(n_classes), res
    table = tmp_path / "J2_class_averages.cs"
    with open(table, "wb") as fh:
        np.save(fh, arr)
    df = join_classes(read_particles(parts_cs), table)
    np.testing.assert_allclose(df["ClassResolution"], res[cls])


def test_relion_model_star(tmp_path, shared_data):
    model = tmp_path / "run_it025_model.star"
    model.write_text("data_model_classes\n\nloop_\n_rlnReferenceImage #1\n_rlnClassDistribution #2\n"
                     "_rlnEstimatedResolution #3\n1@run_it025_classes.mrcs 0.5 8.5\n"
                     "2@run_it025_classes.mrcs 0.0 999.0\n3@run_it025_classes.mrcs 0.5 12.25\n")
    df = read_particles(shared_file(FORMATS, "relion31.6opticsgroups.star"))
    df["ClassNumber"] = (np.arange(len(df)) % 3) + 1
    out = join_classes(df, model)
    want = np.array([8.5, np.nan, 12.25])[np.arange(len(df)) % 3]  # 999: empty class -> missing
    np.testing.assert_allclose(out["ClassResolution"], want)
    df.loc[0, "ClassNumber"] = 7
    with pytest.raises(InputError, match=r"class\(es\) \[7\] absent from the class table \(3 classes\)"):
        join_classes(df, model)


def test_not_a_class_table(tmp_path, shared_data):
    star = shared_file(FORMATS, "relion31.star")
    with pytest.raises(InputError, match="no model_classes block"):
        join_classes(read_particles(star), star)
