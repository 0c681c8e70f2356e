"""Regress-out and LEACE remove a nuisance linearly mixed into features; the label survives."""

from __future__ import annotations

import numpy as np

from cryofm.probe.erase import AcquisitionScaler, LeaceEraser, RegressOut, acquisition_matrix
from cryofm.probe.linear import fit_logistic, fit_ridge


def _confounded(n, rng):
    """Label in 3 dims, 2 nuisance parameters mixed into all 24 dims, plus noise."""
    y = rng.integers(0, 3, n)
    a = np.stack([rng.uniform(5000, 30000, n), rng.choice([0.8, 1.1, 1.6], n)], 1)  # defocus Å, px Å/px
    z = (a - a.mean(0)) / a.std(0)
    mix = rng.normal(size=(2, 24)) * 3.0
    x = rng.normal(size=(n, 24)) * 0.5 + z @ mix
    x[:, :3] += 3.0 * np.eye(3)[y]
    return x, y, a


def _nuisance_r2(x_tr, a_tr, x_te, a_te):
    return [
        fit_ridge(x_tr, a_tr[:, j], x_tr[:0], a_tr[:0, j], {"t": (x_te, a_te[:, j])}, grid=(1.0,)).test["t"][
            "r2"
        ]
        for j in range(a_tr.shape[1])
    ]


def test_regress_out_and_leace_remove_the_nuisance_but_keep_the_label():
    rng = np.random.default_rng(0)
    x, y, a = _confounded(1500, rng)
    tr, te = np.arange(1000), np.arange(1000, 1500)
    names = ["DefocusU", "ImagePixelSize"]
    before = _nuisance_r2(x[tr], a[tr], x[te], a[te])
    assert min(before) > 0.95

    ro = RegressOut().fit(x[tr], a[tr], names)
    xr_tr, xr_te = ro.transform(x[tr], a[tr]), ro.transform(x[te], a[te])
    assert max(_nuisance_r2(xr_tr, a[tr], xr_te, a[te])) < 0.05  # chance R² is 0

    z_tr = AcquisitionScaler().fit(a[tr], names).transform(a[tr])
    le = LeaceEraser().fit(x[tr], z_tr)
    assert le.rank == 2
    xl_tr, xl_te = le.transform(x[tr]), le.transform(x[te])
    assert max(_nuisance_r2(xl_tr, a[tr], xl_te, a[te])) < 0.05

    for xa, xb in ((xr_tr, xr_te), (xl_tr, xl_te)):
        res = fit_logistic(xa, y[tr], xa[:200], y[tr][:200], {"t": (xb, y[te])})
        assert res.test["t"]["accuracy"] > 0.95


def test_leace_cross_covariance_is_zero_and_edit_is_minimal():
    rng = np.random.default_rng(1)
    n = 500
    z = rng.normal(size=n)
    s = rng.normal(size=n)
    s -= (s - s.mean()) @ (z - z.mean()) / ((z - z.mean()) @ (z - z.mean())) * (z - z.mean())
    x = np.stack([s, 2.0 * z + 1.0], 1)
    out = LeaceEraser().fit(x, z[:, None]).transform(x)
    # hand-computed answer: the uncorrelated column is untouched, the concept column becomes its mean
    np.testing.assert_allclose(out[:, 0], s, atol=1e-10)
    np.testing.assert_allclose(out[:, 1], 1.0 + 2.0 * z.mean(), atol=1e-10)


def test_acquisition_matrix_encodes_angles_and_drops_constant_columns():
    rec = {
        "uid": ["a", "b", "c"],
        "DefocusAngle": [0.0, 45.0, 90.0],
        "Voltage": [300.0, 300.0, 300.0],
        "ElectronDose": [40.0, None, 60.0],
    }
    a, names = acquisition_matrix(rec, ["DefocusAngle", "Voltage", "ElectronDose"])
    assert names == ["DefocusAngle_cos2", "DefocusAngle_sin2", "Voltage", "ElectronDose"]
    np.testing.assert_allclose(a[:, 0], [1.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(a[:, 1], [0.0, 1.0, 0.0], atol=1e-12)
    sc = AcquisitionScaler().fit(a, names)
    assert sc.names == ["DefocusAngle_cos2", "DefocusAngle_sin2", "ElectronDose"]  # constant voltage dropped
    z = sc.transform(a)
    assert z[1, 2] == 0.0  # missing dose -> train mean
    np.testing.assert_allclose(z[[0, 2], 2], [-1.0, 1.0])
