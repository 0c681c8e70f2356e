"""Task labels and cryoPANDA binning against hand-computed bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cryofm.probe import tasks as T


def _records(**cols):
    n = len(next(iter(cols.values())))
    return {"uid": [f"e/s/{i}" for i in range(n)], **cols}


def test_molecular_weight_bins_are_20_kda_from_0_to_1000():
    task = T.make_task(
        {"name": "mw", "source": "MolecularWeight", "kind": "binned", "lo": 0, "hi": 1000, "width": 20}
    )
    assert task.n_bins() == 50
    assert task.bin_labels()[1] == "[20, 40)"
    got = T.bin_index(np.array([0.0, 19.9, 20.0, 999.0, 1500.0, -3.0, math.nan]), task)
    # left-closed bins; above/below the range into the edge bins; NaN -> -1
    assert got.tolist() == [0, 0, 1, 49, 49, 0, -1]


def test_defocus_is_mean_of_u_and_v_and_binned_by_10000_angstrom():
    task = T.make_task(
        {"name": "d", "source": "Defocus", "kind": "binned", "lo": -5000, "hi": 40000, "width": 10000}
    )
    assert task.n_bins() == 5  # [-5000,5000) ... [35000,45000) covers 40000
    rec = _records(DefocusU=[10000.0, 16000.0, None], DefocusV=[12000.0, 14000.0, 1.0])
    y, valid = T.labels(rec, task)
    # means 11000 -> bin 1, 15000 -> bin 2, missing U -> invalid
    assert y[:2].tolist() == [1, 2] and valid.tolist() == [True, True, False]
    assert task.unit == "Å"


def test_effective_pixel_size_is_pixel_size_times_box_over_224():
    rec = _records(
        ImagePixelSize=[1.0, 1.31, None],
        ImageSize=[448, 320, None],
        EffectiveImagePixelSize=[None, None, 2.5],
        EffectiveImageSize=[None, None, 112],
    )
    v = T.source_values(rec, "PixelSize224")
    np.testing.assert_allclose(v, [2.0, 1.31 * 320 / 224, 2.5 * 112 / 224])
    task = T.make_task(
        {"name": "px", "source": "PixelSize224", "kind": "binned", "lo": 0.875, "hi": 3, "width": 0.25}
    )
    # (2.0 - 0.875)/0.25 = 4.5 -> 4 ; (1.8714 - 0.875)/0.25 = 3.99 -> 3 ; 1.25 -> 1
    assert T.labels(rec, task)[0].tolist() == [4, 3, 1]


def test_categorical_labels_and_missing():
    task = T.make_task({"name": "sym", "source": "Symmetry", "kind": "categorical"})
    y, valid = T.labels(_records(Symmetry=["C1", None, "D7"]), task)
    assert y[0] == "C1" and y[2] == "D7" and valid.tolist() == [True, False, True]


def test_regression_labels_keep_units():
    task = T.make_task({"name": "mw", "source": "MolecularWeight", "kind": "regression"})
    y, valid = T.labels(_records(MolecularWeight=[801.5, None]), task)
    assert y[0] == 801.5 and valid.tolist() == [True, False] and task.unit == "kDa"


def test_cap_per_class_balances_bins():
    y = np.array([0] * 50 + [1] * 7 + [2] * 20)
    idx = T.cap_per_class(y, cap=10, seed=1)
    _, counts = np.unique(y[idx], return_counts=True)
    assert counts.tolist() == [10, 7, 10]
    assert len(np.unique(idx)) == len(idx)
    assert len(T.cap_per_class(y, cap=0)) == len(y)


def test_unknown_field_or_kind_is_rejected():
    with pytest.raises(KeyError):
        T.make_task({"source": "NoSuchField", "kind": "regression"})
    with pytest.raises(ValueError):
        T.make_task({"source": "MolecularWeight", "kind": "histogram"})


def test_default_tasks_cover_paper_list():
    names = {t.name for t in T.default_tasks()}
    for n in (
        "Symmetry",
        "ProteinClass",
        "MolecularWeight_bins",
        "Defocus_bins",
        "EMDBResolution_bins",
        "PixelSize224_bins",
        "MaxDiameter_reg",
        "Defocus_reg",
    ):
        assert n in names
