"""Regression guard of the pretraining: a short ``experiment=tiny`` run on the control set must leave
the ln K plateau and give features that beat its own random init on a kNN probe — and each of three
known ways of breaking DINO must make that guard fail.

The full learning curve is ``bench/bench_learning.py``; this is its fast version (one thread,
~1,000 control particles, 400 steps).
"""

from __future__ import annotations

import math

import pytest
import torch

from cryofm.cli import compose
from cryofm.probe.curve import cls_features, knn_accuracy, loss_at, random_init, run_config, teacher_backbones
from cryofm.simulate.control import control_particles, write_control_dataset
from cryofm.train.loop import train

STEPS = 400


@pytest.fixture(scope="module")
def control_set(tmp_path_factory):
    return write_control_dataset(tmp_path_factory.mktemp("control") / "ds", n_per_class=128, noise=0.5)


def guard(run) -> dict[str, float]:
    """What the guard checks, measured on a finished run."""
    probe_train = control_particles(32, noise=0.5, seed=101)
    probe_test = control_particles(32, noise=0.5, seed=202)
    (x_tr, y_tr), (x_te, y_te) = probe_train, probe_test
    *_, (step, trained) = teacher_backbones(run)
    init = random_init(run_config(run))
    knn = [knn_accuracy(cls_features(b, x_tr), y_tr, cls_features(b, x_te), y_te) for b in (init, trained)]
    losses = loss_at(run, step)
    return {"knn_init": knn[0], "knn_trained": knn[1], "dino": losses["dino_loss_over_lnK"],
            "entropy": losses["dino_target_entropy_over_lnK"]}


def passes(g: dict[str, float]) -> bool:
    """Off the plateau (DINO loss below 0.97 ln K), not collapsed (teacher targets keep more than
    half of ln K of entropy) and features better than random init by 0.1 in kNN accuracy."""
    return g["dino"] < 0.97 and g["entropy"] > 0.5 and g["knn_trained"] >= g["knn_init"] + 0.10


def run_tiny(control_set, out) -> dict[str, float]:
    cfg = compose("train", ["experiment=tiny", f"data.path={control_set}", f"out={out}",
                            f"optim.epochs={STEPS / 25}", f"train.checkpoint_every={STEPS}",
                            "train.progress=false", "train.threads=1"])
    train(cfg)
    return guard(out)


def test_short_run_leaves_ln_k_and_beats_random_init(control_set, tmp_path):
    g = run_tiny(control_set, tmp_path / "run")
    assert passes(g), g
    assert math.isfinite(g["dino"])


def _same_view_dino(dino_loss):
    def mutated(student_logits, teacher_probs, student_temp=0.1):
        return dino_loss(student_logits, list(teacher_probs)[::-1], student_temp)  # global i meets teacher i
    return mutated


def test_guard_fails_when_the_teacher_gets_the_students_view(control_set, tmp_path, monkeypatch):
    import cryofm.ssl.meta_arch as ma

    monkeypatch.setattr(ma, "dino_loss", _same_view_dino(ma.dino_loss))
    assert not passes(run_tiny(control_set, tmp_path / "run"))


def test_guard_fails_without_centering(control_set, tmp_path, monkeypatch):
    import cryofm.ssl.meta_arch as ma

    def plain_softmax(self, logits, temp, which):
        return torch.softmax(logits.float() / temp, dim=-1)

    monkeypatch.setattr(ma.SSLMetaArch, "_targets", plain_softmax)
    assert not passes(run_tiny(control_set, tmp_path / "run"))


def test_guard_fails_when_global_crops_come_from_different_particles(control_set, tmp_path, monkeypatch):
    import cryofm.data.pipeline as pl

    multi_crop = pl.multi_crop

    def mismatched(images, cfg, g):
        out = multi_crop(images, cfg, g)
        m = images.shape[0] if images.dim() == 3 else 1
        second = out["global_crops"][m:]
        out["global_crops"] = torch.cat([out["global_crops"][:m], second.roll(1, dims=0)])
        return out

    monkeypatch.setattr(pl, "multi_crop", mismatched)
    assert not passes(run_tiny(control_set, tmp_path / "run"))
