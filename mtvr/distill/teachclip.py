"""TeachCLIP (Tian et al., "Holistic Features are almost Sufficient for Text-to-Video Retrieval",
CVPR 2024).

Follows the official code, ``ruc-aimc-lab/TeachCLIP``: ``train.py`` (``train_epoch``) and
``modules/modeling.py`` (the student's AFA). The student keeps one vector per video (its AFA
aggregator, :class:`mtvr.aggregation.AFAAggregator`), so retrieval costs nothing extra. With student
logits ``P = S_l/τ`` (official: ``logit_scale · cos / beta``, ``logit_scale = 100``, ``beta = 1``, so
τ ≈ 0.01) and teacher logits ``Q_k = T_k/τ_t`` (the teacher's own scale, ``distill_temperature``)::

    L = w_gt · ½[CE(P, I) + CE(Pᵀ, I)] + w_coarse · mean_k C(P, Q_k) + w_fine · mean_k F(w, q_k)

averaged over the languages ``l`` of the batch. **Coarse** ``C`` (video-text level):

* ``ce``:      ``mean_ij(−softmax(Q)·log_softmax(P)) + mean_ij(−softmax(Qᵀ)·log_softmax(Pᵀ))``
  (element means over the B×B matrix, both directions summed);
* ``pearson``: ``mean_i(1 − ρ(softmax(P)_i, softmax(Q)_i)) + the same on the transposes``;
* ``l1``:      ``SmoothL1(Q, P)`` on the logits themselves, element mean.

**Fine** ``F`` (frame level): the student's AFA frame weights ``w = softmax_t(s/τ_w)`` (τ_w = 1) learn
the teacher's caption-to-own-frame relevance ``q_k = softmax_t(F_k[i, t]/τ_f)`` (official: the softmax
of the teacher's sentence-frame similarities, τ_f = 1):

* ``ce``: ``mean_it(−log w · q)``; ``pearson``: ``mean_i(1 − ρ(w_i, q_i))``; ``l1``: ``SmoothL1(w, q)``.

Official weights: ``ce`` coarse → ``w_gt = 1, w_coarse = 10, w_fine = 1``; otherwise
``w_gt = 0.2, w_coarse = 1, w_fine = 2``. With several teachers the per-teacher distances are averaged.

Deliberate deviations from the official code, each for a reason:

* Padded frames are masked: ``w`` and ``q`` are softmaxes over the real frames and every frame-level
  mean runs over real frames only (equal to the official element means when there is no padding).
* ``log w`` is computed with ``log_softmax`` (the official code takes ``torch.log`` of the softmax);
  identical where the softmax does not underflow, finite where it does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import OptionError
from .contrastive import info_nce
from .inputs import DistillInputs
from .registry import register_loss

DISTANCES = ("ce", "pearson", "l1")


def _pearson_rows(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 − Pearson(p_i, q_i)`` per row over the ``mask``-ed entries."""
    m = mask.to(p.dtype)
    n = m.sum(-1, keepdim=True).clamp_min(1.0)
    pc = (p - (p * m).sum(-1, keepdim=True) / n) * m
    qc = (q - (q * m).sum(-1, keepdim=True) / n) * m
    # clamp: a one-frame row has no variance (the official code would divide 0 by 0 there)
    return 1.0 - (pc * qc).sum(-1) / (pc.norm(dim=-1) * qc.norm(dim=-1)).clamp_min(1e-12)


def coarse_distance(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Official ``distill_method`` distance between a student and one teacher logit matrix ``[B, B]``."""
    if kind == "l1":
        return F.smooth_l1_loss(student_logits, teacher_logits)
    total = student_logits.new_zeros(())
    full = torch.ones_like(student_logits, dtype=torch.bool)
    for p, q in ((student_logits, teacher_logits), (student_logits.T, teacher_logits.T)):
        if kind == "ce":
            total = total + (-(torch.softmax(q, -1) * torch.log_softmax(p, -1))).mean()
        elif kind == "pearson":
            total = total + _pearson_rows(torch.softmax(p, -1), torch.softmax(q, -1), full).mean()
        else:
            raise OptionError(f"unknown distance {kind!r}; choose one of {DISTANCES}")
    return total


def fine_distance(
    student_log_weights: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str
) -> torch.Tensor:
    """Official ``fine_method`` distance between AFA log-weights and a target distribution ``[B, T]``."""
    m = mask.to(target.dtype)
    count = m.sum().clamp_min(1.0)
    if kind == "ce":
        logw = student_log_weights.masked_fill(~mask, 0.0)
        return -(logw * target * m).sum() / count
    w = student_log_weights.exp()
    if kind == "pearson":
        return _pearson_rows(w, target, mask).mean()
    if kind == "l1":
        return (F.smooth_l1_loss(w, target, reduction="none") * m).sum() / count
    raise OptionError(f"unknown distance {kind!r}; choose one of {DISTANCES}")


CITATION = """@inproceedings{tian2024teachclip,
  title={Holistic Features are almost Sufficient for Text-to-Video Retrieval},
  author={Tian, Kaibin and Zhao, Ruixiang and Xin, Zijie and Lan, Bangxiang and Li, Xirong},
  booktitle={CVPR}, year={2024}}"""
CARD_METHOD = "The student was trained with TeachCLIP distillation (coarse- and fine-grained) from English teachers."


@register_loss(
    "teachclip",
    needs_teacher=True,
    needs_frames=True,
    card_method=CARD_METHOD,
    citation=CITATION,
)
class TeachCLIPLoss(nn.Module):
    """TeachCLIP objective; see the module docstring for the equations and the official code it follows.

    Args:
        w_gt / w_coarse / w_fine: weights of the ground-truth, coarse and fine terms.
        coarse / fine: distances (``ce``, ``pearson``, ``l1``); official default ``pearson`` / ``ce``.
        temperature: τ of the student logits (official 1/logit_scale ≈ 0.01).
        distill_temperature: τ_t of the teacher logits (the teachers' scale, ≈ 0.01 for CLIP teachers).
        frame_temperature: τ_f of the teachers' frame relevance softmax (official 1).
    """

    def __init__(
        self,
        w_gt: float = 0.2,
        w_coarse: float = 1.0,
        w_fine: float = 2.0,
        coarse: str = "pearson",
        fine: str = "ce",
        temperature: float = 0.01,
        distill_temperature: float = 0.01,
        frame_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        for name, kind in (("coarse", coarse), ("fine", fine)):
            if kind not in DISTANCES:
                raise OptionError(f"unknown {name} distance {kind!r}; choose one of {DISTANCES}")
        if min(temperature, distill_temperature, frame_temperature) <= 0:
            raise OptionError("temperatures must be positive")
        self.w_gt, self.w_coarse, self.w_fine = w_gt, w_coarse, w_fine
        self.coarse, self.fine = coarse, fine
        self.temperature, self.distill_temperature = temperature, distill_temperature
        self.frame_temperature = frame_temperature

    def coarse_loss(self, student: torch.Tensor, teachers: torch.Tensor) -> torch.Tensor:
        """``mean_k C(S/τ, T_k/τ_t)`` for student ``[B, B]`` and teachers ``[K, B, B]`` (cosines)."""
        p = student / self.temperature
        return torch.stack([coarse_distance(p, t / self.distill_temperature, self.coarse) for t in teachers]).mean()

    def fine_loss(
        self, log_weights: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``mean_k F(w, q_k)`` for log-weights ``[B, T]`` and teacher frame similarities ``[K, B, T]``."""
        if mask is None:
            mask = torch.ones(log_weights.shape, dtype=torch.bool, device=log_weights.device)
        out = []
        for f in teacher_logits:
            target = torch.softmax((f / self.frame_temperature).masked_fill(~mask, float("-inf")), -1).detach()
            out.append(fine_distance(log_weights, target, mask, self.fine))
        return torch.stack(out).mean()

    def forward(self, inputs: DistillInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teachers = inputs.teacher_sims()
        nce, coarse = [], []
        for lang in inputs.student_text:
            s = inputs.student_sims(lang)
            nce.append(info_nce(s, self.temperature))
            coarse.append(self.coarse_loss(s, teachers))
        nce_m, coarse_m = torch.stack(nce).mean(), torch.stack(coarse).mean()
        loss = self.w_gt * nce_m + self.w_coarse * coarse_m
        logs = {"contrastive": nce_m.detach(), "coarse": coarse_m.detach()}
        if self.w_fine:
            if inputs.student_frame_log_weights is None or inputs.teacher_frame_logits is None:
                raise OptionError(
                    "TeachCLIP's fine-grained term needs the student's AFA frame weights and the "
                    "teachers' frame logits: use aggregator 'afa' or 'seqtransf+afa' for the student"
                )
            fine = self.fine_loss(inputs.student_frame_log_weights, inputs.teacher_frame_logits, inputs.frame_mask)
            loss = loss + self.w_fine * fine
            logs["fine"] = fine.detach()
        return loss, logs
