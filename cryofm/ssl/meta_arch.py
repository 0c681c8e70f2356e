"""The DINOv2 meta-architecture: student and EMA teacher (backbone + DINO head + iBOT head) and the
objective (DINO on CLS + iBOT on masked patches + KoLeo on the student's global CLS).

The teacher sees the global crops only, unmasked; the student sees all crops, its global crops
masked (iBOT). Centering is Sinkhorn-Knopp (DINOv2) or softmax (DINO), chosen in ``ssl.centering``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cryofm.models.backbone import backbone_kwargs, create_backbone, embed_dim
from cryofm.models.heads import DINOHead
from cryofm.models.masked import MaskedBackbone
from cryofm.ssl.centering import SoftmaxCenter, sinkhorn_knopp
from cryofm.ssl.dino_loss import dino_loss
from cryofm.ssl.ibot_loss import ibot_loss
from cryofm.ssl.koleo_loss import koleo_loss


class Branch(nn.Module):
    """One side (student or teacher): masked backbone, DINO head, iBOT head.

    ``forward`` returns ``cls`` (backbone CLS of the global crops), ``cls_logits`` (DINO head on the
    CLS of every crop: globals first, crop-major) and ``patch_logits`` (iBOT head on the patches
    where ``masks`` is True), both divided by ``temp``. ``mask_input`` puts the mask token into the
    input (student) or not (teacher).
    """

    def __init__(self, backbone: nn.Module, dino_head: DINOHead, ibot_head: DINOHead):
        super().__init__()
        self.backbone = MaskedBackbone(backbone)
        self.dino_head = dino_head
        self.ibot_head = ibot_head

    def forward(
        self,
        global_crops: torch.Tensor,
        local_crops: torch.Tensor | None,
        masks: torch.Tensor,
        mask_input: bool = True,
        temp: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        g = self.backbone(global_crops, masks if mask_input else None)
        cls = [g["cls"]]
        if local_crops is not None and local_crops.shape[0]:
            cls.append(self.backbone(local_crops)["cls"])
        patches = g["patch"][masks]
        if self.ibot_head is self.dino_head and not self.dino_head.use_bn:  # shared: one call for both
            n_cls = sum(c.shape[0] for c in cls)
            # split, not two slices: a slice's backward zero-fills the whole [N, K] gradient
            cls_logits, patch_logits = self.dino_head(torch.cat([*cls, patches]), temp).split(
                [n_cls, patches.shape[0]])
            return {"cls": g["cls"], "cls_logits": cls_logits, "patch_logits": patch_logits}
        return {
            "cls": g["cls"],
            "cls_logits": self.dino_head(torch.cat(cls), temp),
            "patch_logits": self.ibot_head(patches, temp),
        }


def build_branch(model_cfg, ssl_cfg, img_size: int) -> tuple[Branch, dict[str, Any]]:
    """A student/teacher branch from the ``model`` and ``ssl`` config groups; also the backbone kwargs.

    With ``ssl.ibot.separate_head: false`` the iBOT head is the DINO head itself (``ssl.ibot.head``
    is then ignored), as DINOv2's option of that name does.
    """
    extra = dict(model_cfg.get("kwargs") or {})
    kw = backbone_kwargs(
        model_cfg.name, img_size, int(model_cfg.in_chans), float(model_cfg.drop_path_rate), **extra
    )
    bb = create_backbone(
        model_cfg.name, img_size, int(model_cfg.in_chans), float(model_cfg.drop_path_rate), **extra
    )
    d = embed_dim(bb)

    def head(h) -> DINOHead:
        return DINOHead(d, int(h.n_prototypes), int(h.hidden_dim), int(h.bottleneck_dim),
                        int(h.nlayers), bool(h.get("use_bn", False)))

    dino_head = head(ssl_cfg.dino.head)
    # DINOv2's ibot.separate_head: false shares the DINO head (one module under both names)
    ibot_head = head(ssl_cfg.ibot.head) if bool(ssl_cfg.ibot.get("separate_head", True)) else dino_head
    return Branch(bb, dino_head, ibot_head), kw


class SSLMetaArch(nn.Module):
    """Student, teacher and centering state; :meth:`forward` computes the losses of one batch."""

    def __init__(self, model_cfg, ssl_cfg, img_size: int):
        super().__init__()
        self.student, self.backbone_kwargs = build_branch(model_cfg, ssl_cfg, img_size)
        self.teacher, _ = build_branch(model_cfg, ssl_cfg, img_size)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.cfg = ssl_cfg
        self.centering = str(ssl_cfg.centering)
        if self.centering == "softmax":
            self.dino_center = SoftmaxCenter(
                int(ssl_cfg.dino.head.n_prototypes), float(ssl_cfg.center_momentum)
            )
            self.ibot_center = SoftmaxCenter(
                int(ssl_cfg.ibot.head.n_prototypes), float(ssl_cfg.center_momentum)
            )
        elif self.centering != "sinkhorn_knopp":
            raise ValueError(f"unknown centering {self.centering!r} (sinkhorn_knopp or softmax)")

    def train(self, mode: bool = True) -> SSLMetaArch:
        """Train mode for the student; the teacher never drops paths (as in DINOv2), but its heads'
        BatchNorm layers (``use_bn``) use the statistics of the batch, as the student's do."""
        super().train(mode)
        self.teacher.eval()
        for m in self.teacher.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(mode)
        return self

    def _targets(self, logits: torch.Tensor, temp: float, which: str) -> torch.Tensor:
        if self.centering == "softmax":
            return getattr(self, f"{which}_center")(logits, temp)
        n_rows = None
        if which == "ibot":  # masked-patch counts differ between ranks: use the global count
            n = torch.tensor(float(logits.shape[0]), device=logits.device)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(n)
            n_rows = n
        return sinkhorn_knopp(logits, temp, int(self.cfg.sinkhorn_iters), n_rows)

    def forward(
        self, batch: dict[str, torch.Tensor], teacher_temp: float, student: nn.Module | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts for ``batch`` (keys ``global_crops``, ``local_crops``, ``masks``).

        ``student`` is the (possibly DDP/FSDP-wrapped) student to call; default ``self.student``.
        """
        student = self.student if student is None else student
        g, loc, masks = batch["global_crops"], batch.get("local_crops"), batch["masks"]
        n_g = int(self.cfg.n_global_crops)
        # the heads divide by the temperatures (folded into their prototype scale); softmax
        # centering subtracts its centre from the raw logits first
        t_temp = teacher_temp if self.centering == "sinkhorn_knopp" else 1.0
        with torch.no_grad():
            t = self.teacher(g, None, masks, mask_input=False, temp=t_temp)
            t_cls = self._targets(t["cls_logits"].float(), teacher_temp / t_temp, "dino").chunk(n_g)
            t_patch = self._targets(t["patch_logits"].float(), teacher_temp / t_temp, "ibot")
        s = student(g, loc, masks, mask_input=True, temp=float(self.cfg.student_temp))
        n_crops = s["cls_logits"].shape[0] // (g.shape[0] // n_g)
        s_cls = list(s["cls_logits"].float().chunk(n_crops))
        parts = {"dino_loss": dino_loss(s_cls, list(t_cls), 1.0)}
        parts["ibot_loss"] = ibot_loss(s["patch_logits"].float(), t_patch, masks, 1.0)
        # the loss term is divided by every global crop (as in DINOv2) though only some are masked;
        # ibot_ce is the cross-entropy per masked image, the number to compare with ln K
        n_masked = masks.any(dim=-1).sum().clamp_min(1)
        parts["ibot_ce"] = parts["ibot_loss"].detach() * masks.shape[0] / n_masked
        parts["koleo_loss"] = sum(koleo_loss(c) for c in s["cls"].chunk(n_g))
        with torch.no_grad():  # how far the teacher's targets are from a uniform guess (ln K)
            t_all = torch.cat(t_cls)
            parts["dino_target_entropy"] = -(t_all * t_all.clamp_min(1e-30).log()).sum(-1).mean()
        w = self.cfg
        loss = (
            float(w.dino.loss_weight) * parts["dino_loss"]
            + float(w.ibot.loss_weight) * parts["ibot_loss"]
            + float(w.koleo.loss_weight) * parts["koleo_loss"]
        )
        return loss, {k: float(v.detach()) for k, v in parts.items()}
