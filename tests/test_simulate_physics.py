"""Physics of the simulator against answers known independently of the code under test."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import starfile
from scipy.spatial.transform import Rotation

from cryofm.simulate import ctf as C
from cryofm.simulate import densities as D
from cryofm.simulate import noise as N
from cryofm.simulate import symmetry as S
from cryofm.simulate.projection import Projector, project_real
from cryofm.simulate.rotations import euler_to_matrix, matrix_to_euler, random_rotations
from tests.conftest import shared_file

RNG = np.random.default_rng(7)  # module constants only: each test draws from its own generator
N_BOX, SIGMA = 24, 2.0
CENTRES = RNG.uniform(-5, 5, (5, 3))  # blob centres (x, y, z) in voxels


def _blobs() -> np.ndarray:
    r = np.arange(N_BOX) - N_BOX // 2
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    return sum(np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * SIGMA**2))
               for c in CENTRES).astype(np.float32)


def test_wavelength_matches_published_values():
    # relativistic electron wavelengths (Williams & Carter): 200 kV 0.02508 Å, 300 kV 0.01969 Å
    assert C.wavelength(300.0) == pytest.approx(0.019687, abs=2e-6)
    assert C.wavelength(200.0) == pytest.approx(0.025079, abs=2e-6)


def _analytic_zeros(defocus, voltage, cs_mm, w, n_max):
    """Zeros of sin(π λ Δf s² − π/2 Cs λ³ s⁴ + arctan(w/√(1−w²))): a quadratic in s²."""
    lam = 12.2642598 / np.sqrt(voltage * 1e3 * (1 + 0.978475e-6 * voltage * 1e3))
    a, b, k3 = 0.5 * np.pi * cs_mm * 1e7 * lam**3, np.pi * lam * defocus, np.arctan(w / np.sqrt(1 - w * w))
    n = np.arange(1, n_max + 1)
    u = (b - np.sqrt(b * b - 4 * a * (n * np.pi - k3))) / (2 * a)
    return np.sqrt(u)


def test_ctf_zero_crossings_match_analytic_formula():
    zeros = _analytic_zeros(15000.0, 300.0, 2.7, 0.07, 6)
    assert np.abs(C.ctf_1d(zeros, 15000.0, 300.0, 2.7, 0.07)).max() < 1e-9
    # on the 2D grid: sign changes between neighbouring samples bracket the analytic zeros
    size, apix = 512, 1.0
    img = C.ctf_2d(size, apix, 15000.0, 15000.0, 0.0, 300.0, 2.7, 0.07)[0].numpy()
    row = img[size // 2, size // 2:]  # along +x, frequency k / (size apix)
    flips = np.nonzero(np.diff(np.sign(row)))[0]
    freqs = (flips + 0.5) / (size * apix)
    np.testing.assert_allclose(freqs[:6], zeros, atol=0.5 / (size * apix))


def test_ctf_astigmatism_and_envelope():
    size, apix, u, v, ang = 512, 1.0, 20000.0, 12000.0, 30.0
    img = C.ctf_2d(size, apix, u, v, ang, 300.0, 2.7, 0.1, bfactor=0.0)[0].numpy()
    for defocus, theta in ((u, ang), (v, ang + 90.0)):
        t = np.deg2rad(theta)
        k = np.arange(1, size // 2 - 2, 0.25)
        xs, ys = size // 2 + k * np.cos(t), size // 2 + k * np.sin(t)
        from scipy.ndimage import map_coordinates
        prof = map_coordinates(img, [ys, xs], order=1)
        first = k[np.nonzero(np.diff(np.sign(prof)))[0][0]] / (size * apix)
        assert first == pytest.approx(_analytic_zeros(defocus, 300.0, 2.7, 0.1, 1)[0], rel=0.02)
    b = 200.0
    env = C.ctf_2d(64, 2.0, 10000.0, 10000.0, 0.0, bfactor=b)[0].numpy()
    fx, fy = C.frequency_grid(64, 2.0)
    assert np.all(np.abs(env) <= np.exp(-b * (fx**2 + fy**2) / 4) + 1e-6)
    # a 90° phase plate with no amplitude contrast transfers zero frequency fully
    assert C.ctf_2d(8, 1.0, 5000.0, 5000.0, 0.0, amplitude_contrast=0.0, phase_shift=90.0)[0, 4, 4] == \
        pytest.approx(1.0, abs=1e-6)


def test_relion_euler_matches_scipy_and_round_trips():
    rng = np.random.default_rng(79)
    rot, tilt, psi = rng.uniform(-180, 180, 20), rng.uniform(1, 179, 20), rng.uniform(-180, 180, 20)
    A = euler_to_matrix(rot, tilt, psi)
    ref = Rotation.from_euler("ZYZ", np.stack([rot, tilt, psi], 1), degrees=True).as_matrix()
    np.testing.assert_allclose(A, np.transpose(ref, (0, 2, 1)), atol=1e-12)
    np.testing.assert_allclose(euler_to_matrix(*matrix_to_euler(A)), A, atol=1e-9)
    # gimbal lock (tilt 0 or 180): rot and psi are not separable; the matrix still round-trips
    flat = euler_to_matrix([30.0, 30.0], [0.0, 180.0], [40.0, 40.0])
    rot_, tilt_, _ = matrix_to_euler(flat)
    np.testing.assert_allclose(tilt_, [0.0, 180.0], atol=1e-9)
    np.testing.assert_allclose(rot_, [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(euler_to_matrix(*matrix_to_euler(flat)), flat, atol=1e-9)


@pytest.mark.parametrize(("pad", "tol"), [(2, 0.06), (4, 0.015)])
def test_fourier_slice_theorem(pad, tol):
    """The 2D FFT of a projection equals the 3D DFT of the volume on the rotated central plane
    (computed directly, voxel by voxel); the trilinear-interpolation error falls as 1 / pad²."""
    vol = _blobs()
    rots = random_rotations(2, np.random.default_rng(97))
    proj = Projector(vol, 1.0, pad=pad).project(rots)
    r = np.arange(N_BOX) - N_BOX // 2
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    pos = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    ky, kx = np.meshgrid(r, r, indexing="ij")
    plane = np.stack([kx.ravel(), ky.ravel(), np.zeros(kx.size)], 1)
    for A, p in zip(rots, proj, strict=True):
        k3 = plane @ A  # Aᵀ (kx, ky, 0) as rows
        direct = np.exp(-2j * np.pi * (k3 @ pos.T) / N_BOX) @ vol.ravel()
        f2 = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(p))).ravel()
        assert np.abs(f2 - direct).max() / np.abs(direct).max() < tol


def test_projection_of_gaussians_is_analytic_and_matches_real_space():
    vol = _blobs()
    rots = random_rotations(4, np.random.default_rng(113))
    fourier = Projector(vol, 1.0).project(rots)
    real = project_real(vol, rots)
    r = np.arange(N_BOX) - N_BOX // 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    for A, f, rs in zip(rots, fourier, real, strict=True):
        amp = SIGMA * np.sqrt(2 * np.pi)  # ∫ exp(-z²/2σ²) dz
        truth = sum(amp * np.exp(-((xx - q[0]) ** 2 + (yy - q[1]) ** 2) / (2 * SIGMA**2))
                    for q in (CENTRES @ A.T))  # a feature at r lands at (A r)[:2]
        assert np.abs(f - truth).max() / truth.max() < 0.03
        assert np.corrcoef(f.ravel(), rs.ravel())[0, 1] > 0.999


def test_shift_moves_particle_by_minus_origin():
    vol = _blobs()
    p = Projector(vol, 2.0)
    A = euler_to_matrix([20.0], [50.0], [10.0])
    base = p.project(A)[0]
    moved = p.project(A, shifts=np.array([[6.0, -4.0]]))[0]  # origin in Å = (3, -2) px
    np.testing.assert_allclose(moved, np.roll(base, (2, -3), axis=(0, 1)), atol=1e-3 * base.max())


@pytest.mark.parametrize(("kind", "group"), [("ring", "D6"), ("blob", "C3")])
def test_symmetric_density_projects_identically_under_its_operators(kind, group):
    dens = D.procedural(kind, group, diameter=100.0, pixel_size=4.0, resolution=10.0, seed=3)
    proj = Projector(dens.volume, dens.pixel_size)
    A = random_rotations(2, np.random.default_rng(11))  # its own generator: not the test order's
    ops = S.operators(group)
    imgs = proj.project(np.concatenate([a @ ops.transpose(0, 2, 1) for a in A]))  # poses A Sᵀ
    imgs = imgs.reshape(len(A), len(ops), -1)
    for stack in imgs:
        scale = np.abs(stack[0]).max()
        # interpolation alone: over 60 random poses at most 0.029 (D6) / 0.032 (C3) of the peak,
        # against >= 0.17 for a rotation outside the group (below)
        assert np.abs(stack - stack[0]).max() / scale < 0.05
    # a rotation that is not in the group changes the image (the check can fail)
    n = S.parse(group)[1]
    off = proj.project(A[:1] @ S._rz(np.pi / n).T)[0].ravel()
    assert np.abs(off - imgs[0, 0]).max() / np.abs(imgs[0, 0]).max() > 0.1


def test_gaussian_volume_integrates_to_weights():
    pts = np.array([[0.0, 0.0, 0.0], [10.0, -6.0, 3.0]])
    vol = D.gaussian_volume(pts, np.array([2.0, 5.0]), sigma=3.0, box=32, pixel_size=1.5)
    assert vol.sum() * 1.5**3 == pytest.approx(7.0, rel=1e-3)


def test_gaussian_noise_reaches_requested_snr():
    clean = np.stack([np.outer(np.hanning(64), np.hanning(64))] * 200).astype(np.float32)
    noisy = N.add_gaussian_noise(clean, 0.1, np.random.default_rng(0))
    ratio = clean.reshape(200, -1).var(1) / (noisy - clean).reshape(200, -1).var(1)
    assert ratio.mean() == pytest.approx(0.1, rel=0.03)
    counts = N.shot_noise(np.zeros((50, 32, 32)), dose=40.0, pixel_size=1.5, contrast=0.1,
                          rng=np.random.default_rng(1))
    assert counts.mean() == pytest.approx(40.0 * 1.5**2, rel=0.01)
    assert counts.var() == pytest.approx(40.0 * 1.5**2, rel=0.05)  # Poisson: variance = mean


def test_trpv1_projections_match_their_real_particles():
    """Projections of the TRPV1 map at the STAR poses, shifted and CTF-modulated, correlate better
    with the matching real particle than with any other particle."""
    star = starfile.read(shared_file("trpv1_particles", "trpv1_small_stack.star"))
    vol = mrcfile.read(shared_file("trpv1_particles", "trpv1_volume.mrc"))
    # rlnImageName points at batch_0_restacked.mrc: map its 1-based indices onto the shipped stack
    stack = mrcfile.read(shared_file("trpv1_particles", "trpv1_small_stack.mrcs"))
    optics, parts = star["optics"].iloc[0], star["particles"]
    index = parts["rlnImageName"].str.split("@").str[0].astype(int).to_numpy() - 1
    images = stack[index]
    apix, size = float(optics["rlnImagePixelSize"]), int(optics["rlnImageSize"])
    A = euler_to_matrix(parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"])
    ctf = {"defocus_u": parts["rlnDefocusU"].to_numpy(), "defocus_v": parts["rlnDefocusV"].to_numpy(),
           "defocus_angle": parts["rlnDefocusAngle"].to_numpy(), "voltage": float(optics["rlnVoltage"]),
           "cs": float(optics["rlnSphericalAberration"]),
           "amplitude_contrast": float(optics["rlnAmplitudeContrast"]),
           "bfactor": parts["rlnCtfBfactor"].to_numpy(), "phase_shift": parts["rlnPhaseShift"].to_numpy()}
    shifts = parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()
    proj = Projector(vol, apix).project(A, size=size, shifts=shifts, ctf=ctf)

    def z(a):
        a = a.reshape(len(a), -1)
        return (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)

    corr = z(proj) @ z(images).T / (size * size)
    off = corr - np.diag(np.full(len(corr), np.inf))
    assert np.all(np.diag(corr) > off.max(axis=1))
    assert np.all(np.diag(corr) > 0.1)


def test_ctf_and_phase_flip_act_on_the_spectrum():
    """Image spectrum = projection spectrum × CTF (or × |CTF| with phase flipping)."""
    vol = _blobs()
    p = Projector(vol, 2.0)
    A = random_rotations(1, np.random.default_rng(205))
    ctf = {"defocus_u": 12000.0, "defocus_v": 11000.0, "defocus_angle": 20.0, "voltage": 300.0,
           "cs": 2.7, "amplitude_contrast": 0.1}
    plain = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(p.project(A)[0])))
    ref = C.ctf_2d(N_BOX, 2.0, **ctf)[0].numpy()
    for flip, expect in ((False, ref), (True, np.abs(ref))):
        img = p.project(A, ctf=ctf, phase_flip=flip)[0]
        spec = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img)))
        strong = np.abs(plain) > 1e-3 * np.abs(plain).max()
        strong[0, :] = strong[:, 0] = False  # the unpaired Nyquist row / column of an even box
        np.testing.assert_allclose((spec / plain)[strong].real, expect[strong], atol=2e-3)


def test_groel_map_projects_identically_under_its_sevenfold_axis():
    """EMD-1997 (GroEL, D7 with the 7-fold along z): the C7 operators leave projections unchanged;
    a rotation by half the step (not in the group) does not."""
    dens = D.from_map(shared_file("emd1997_groel", "1997.map"), "D7", 7.0, max_box=48)
    proj = Projector(dens.volume, dens.pixel_size)
    A = random_rotations(1, np.random.default_rng(0))[0]
    imgs = proj.project(np.stack([A @ op.T for op in S.operators("C7")] + [A @ S._rz(np.pi / 7).T]))
    corr = [np.corrcoef(imgs[0].ravel(), im.ravel())[0, 1] for im in imgs[1:]]
    assert min(corr[:-1]) > 0.99
    assert corr[-1] < 0.9
