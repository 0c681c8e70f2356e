"""The learning curve of a pretraining run: the teacher's frozen CLS features at each checkpoint,
scored by a kNN and a linear probe next to the random-init backbone (the run's own step 0) and raw
pixels on the same particles (DESIGN.md, "Evidence that the model learns").

A run dir written by :func:`cryofm.train.loop.train` with ``train.keep_last=0`` keeps every
checkpoint; :func:`teacher_backbones` rebuilds the teacher backbone of each (and of step 0, from the
run's seed) without the training package's loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from cryofm.models.backbone import create_backbone
from cryofm.probe.linear import fit_logistic
from cryofm.report.runlog import read_metrics

TEACHER = "teacher.backbone.backbone."


def run_config(run_dir: str | Path) -> DictConfig:
    """The resolved config a run wrote (``<run>/config.yaml``)."""
    return OmegaConf.load(Path(run_dir) / "config.yaml")


def random_init(cfg: DictConfig) -> nn.Module:
    """The backbone a run started from: :class:`cryofm.ssl.meta_arch.SSLMetaArch` built right after
    ``torch.manual_seed(cfg.seed)`` (as ``train`` does on rank 0), so step 0 of the curve is the
    run's own initialisation. The global torch RNG state is restored afterwards."""
    from cryofm.ssl.meta_arch import SSLMetaArch

    state = torch.get_rng_state()
    try:
        torch.manual_seed(int(cfg.seed))
        arch = SSLMetaArch(cfg.model, cfg.ssl, int(cfg.data.image_size))
    finally:
        torch.set_rng_state(state)
    return arch.teacher.backbone.backbone.eval()


def teacher_backbones(run_dir: str | Path) -> Iterator[tuple[int, nn.Module]]:
    """``(step, teacher backbone)`` for step 0 (random init) and every checkpoint of the run."""
    from cryofm.train import checkpoint as ck

    cfg = run_config(run_dir)
    yield 0, random_init(cfg)
    kw = dict(cfg.model.get("kwargs") or {})
    for step, path in ck.list_checkpoints(Path(run_dir) / "checkpoints"):
        model = ck.load_checkpoint(path)["model"]
        bb = create_backbone(cfg.model.name, int(cfg.data.image_size), int(cfg.model.in_chans), 0.0, **kw)
        bb.load_state_dict({k[len(TEACHER):]: v for k, v in model.items() if k.startswith(TEACHER)})
        yield step, bb.eval()


@torch.no_grad()
def cls_features(backbone: nn.Module, images: np.ndarray, mean: float = 0.0, std: float = 1.0,
                 batch: int = 256) -> np.ndarray:
    """CLS tokens [N, D] (after the final norm) of per-particle-normalised ``images`` [N, H, W],
    normalised with the dataset statistics ``mean`` / ``std`` as in training."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy((np.asarray(images[i:i + batch], np.float32) - mean) / std)[:, None]
        out.append(backbone.forward_features(x)[:, 0].float().numpy())
    return np.concatenate(out)


def knn_accuracy(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
                 k: int = 20) -> float:
    """Accuracy of a ``k``-nearest-neighbour vote (cosine distance) of probe-train labels."""
    clf = KNeighborsClassifier(n_neighbors=min(k, len(x_tr)), metric="cosine").fit(x_tr, y_tr)
    return float(clf.score(x_te, y_te))


def linear_accuracy(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
                    seed: int = 0) -> float:
    """Test accuracy of cryofm's logistic probe (standardised features, ``C`` chosen on a quarter of
    probe-train held out for validation, :func:`cryofm.probe.linear.fit_logistic`)."""
    idx = np.random.default_rng(seed).permutation(len(x_tr))
    n_val = max(1, len(idx) // 4)
    val, tr = idx[:n_val], idx[n_val:]
    res = fit_logistic(x_tr[tr], y_tr[tr], x_tr[val], y_tr[val], {"test": (x_te, y_te)}, seed=seed)
    return float(res.test["test"]["accuracy"])


def probe_scores(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> dict[str, float]:
    """``{"knn": ..., "linear": ...}`` accuracies."""
    return {"knn": knn_accuracy(x_tr, y_tr, x_te, y_te), "linear": linear_accuracy(x_tr, y_tr, x_te, y_te)}


def loss_at(run_dir: str | Path, step: int, window: int = 25) -> dict[str, float]:
    """Mean DINO loss, teacher target entropy and iBOT CE per masked image over the ``window`` steps
    before ``step`` (the first ``window`` steps for step 0), each also divided by ln K."""
    rows = read_metrics(run_dir)
    cfg = run_config(run_dir)
    ln_k = math.log(int(cfg.ssl.dino.head.n_prototypes))
    ln_k_ibot = math.log(int(cfg.ssl.ibot.head.n_prototypes))
    sel = [r for r in rows if (step - window <= r["step"] < step) or (step == 0 and r["step"] < window)]
    out: dict[str, float] = {}
    for key, lk in (("dino_loss", ln_k), ("dino_target_entropy", ln_k), ("ibot_ce", ln_k_ibot)):
        vals = [float(r[key]) for r in sel if key in r]
        if vals:
            out[key] = float(np.mean(vals))
            out[f"{key}_over_lnK"] = out[key] / lk
    return out


def learning_curve(run_dir: str | Path, probe_train: tuple[np.ndarray, np.ndarray],
                   probe_test: tuple[np.ndarray, np.ndarray], mean: float = 0.0,
                   std: float = 1.0) -> list[dict[str, float]]:
    """One row per evaluated step (0 = random init, then every checkpoint): kNN and linear probe
    accuracies of the teacher's CLS features on ``probe_test`` after fitting on ``probe_train``
    (``(images [N, H, W], labels [N])`` each), with the losses of :func:`loss_at`."""
    (x_tr, y_tr), (x_te, y_te) = probe_train, probe_test
    rows = []
    for step, bb in teacher_backbones(run_dir):
        f_tr, f_te = cls_features(bb, x_tr, mean, std), cls_features(bb, x_te, mean, std)
        rows.append({"step": step, **probe_scores(f_tr, y_tr, f_te, y_te), **loss_at(run_dir, step)})
    return rows


def pixel_scores(probe_train: tuple[np.ndarray, np.ndarray],
                 probe_test: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """The raw-pixel baseline: :func:`probe_scores` on the flattened images."""
    (x_tr, y_tr), (x_te, y_te) = probe_train, probe_test
    return probe_scores(x_tr.reshape(len(x_tr), -1), y_tr, x_te.reshape(len(x_te), -1), y_te)
