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
import torch.nn.functional as F

from cryofm.cli import compose
from cryofm.data.augment import make_crops, multicrop_config
from cryofm.probe.curve import cls_features, knn_accuracy, loss_at, random_init, run_config, teacher_backbones
from cryofm.simulate.control import control_particles, write_control_dataset
from cryofm.ssl.centering import sinkhorn_knopp
from cryofm.ssl.meta_arch import SSLMetaArch
from cryofm.train import checkpoint as ck
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
    logged = loss_at(run, step)["dino_loss_over_lnK"]
    return {"knn_init": knn[0], "knn_trained": knn[1], "logged_dino": logged, **cross_view(run)}


@torch.no_grad()
def cross_view(run) -> dict[str, float]:
    """The trained student's DINO cross-entropy against the trained teacher's Sinkhorn targets of the
    *other* global crop of new particles, over ln K, computed here independently of the training
    code's pairing (a training loop that pairs a crop with itself logs a low loss it never earned),
    and the entropy of those targets over ln K."""
    cfg = run_config(run)
    arch = SSLMetaArch(cfg.model, cfg.ssl, int(cfg.data.image_size))
    arch.load_state_dict(ck.load_checkpoint(ck.latest_checkpoint(run / "checkpoints"))["model"])
    arch.eval()
    x, _ = control_particles(32, noise=0.5, seed=303)
    crops = multicrop_config(cfg.augment, int(cfg.data.image_size))
    g = make_crops(torch.from_numpy(x), crops.global_crops, crops, torch.Generator().manual_seed(0))
    a, b = g.chunk(2)

    def head(branch, im):
        return branch.dino_head(branch.backbone(im)["cls"])

    ln_k = math.log(int(cfg.ssl.dino.head.n_prototypes))
    temp = float(cfg.ssl.teacher.temp)
    t_b = sinkhorn_knopp(head(arch.teacher, b), temp)
    s_a = F.log_softmax(head(arch.student, a) / float(cfg.ssl.student_temp), dim=-1)
    ce = -(t_b * s_a).sum(-1).mean()
    entropy = -(t_b * t_b.clamp_min(1e-30).log()).sum(-1).mean()
    return {"dino": float(ce) / ln_k, "entropy": float(entropy) / ln_k}


def passes(g: dict[str, float]) -> bool:
    """Off the plateau across views (cross-view DINO loss below 0.97 ln K), not collapsed (the
    teacher's targets keep more than half of ln K of entropy) and features better than random init
    by 0.1 in kNN accuracy."""
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
    assert g["logged_dino"] < 0.97, g  # the training log says the same


def _same_view_dino(dino_loss):
    def mutated(student_logits, teacher_probs, student_temp=0.1):
        return dino_loss(student_logits, list(teacher_probs)[::-1], student_temp)  # global i meets teacher i
    return mutated


def test_guard_fails_when_the_teacher_gets_the_students_view(control_set, tmp_path, monkeypatch):
    import cryofm.ssl.meta_arch as ma

    monkeypatch.setattr(ma, "dino_loss", _same_view_dino(ma.dino_loss))
    g = run_tiny(control_set, tmp_path / "run")
    assert not passes(g), g


def test_guard_fails_without_centering(control_set, tmp_path, monkeypatch):
    import cryofm.ssl.meta_arch as ma

    def plain_softmax(self, logits, temp, which):
        return torch.softmax(logits.float() / temp, dim=-1)

    monkeypatch.setattr(ma.SSLMetaArch, "_targets", plain_softmax)
    g = run_tiny(control_set, tmp_path / "run")
    assert not passes(g), g


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
    g = run_tiny(control_set, tmp_path / "run")
    assert not passes(g), g
