"""TeachCLIP (Tian et al., "Holistic Features are almost Sufficient for Text-to-Video Retrieval",
CVPR 2024).

The student keeps one vector per video (its AFA aggregator, :class:`mtvr.aggregation.AFAAggregator`),
so retrieval costs nothing extra, and learns from teachers in two ways::

    L = w_gt · InfoNCE(S_l; τ) + w_coarse · L_coarse + w_fine · L_fine         (averaged over languages l)

**Coarse-grained** (video-text level): row distributions ``P_S = softmax(S_l/τ_d)``,
``P_T = softmax(T̄/τ_d)`` with ``T̄ = mean_k T_k``, in both directions (rows and columns), averaged:

* ``ce``: ``−1/B Σ_i Σ_j P_T[i,j] · log P_S[i,j]``
* ``pearson``: ``1/B Σ_i (1 − ρ(P_S[i,:], P_T[i,:]))`` (ρ: Pearson correlation)
* ``l1``: ``1/B Σ_i Σ_j |P_S[i,j] − P_T[i,j]|``

**Fine-grained** (frame level): the teachers' caption-to-own-frame relevance
``q_i = softmax_t(mean_k F_k[i, t] / τ_f)`` over the real frames of video i is the target of the
student's AFA frame weights ``w_i`` (same three distances, over real frames only).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .contrastive import info_nce
from .inputs import DistillInputs

DISTANCES = ("ce", "pearson", "l1")


def _pearson_distance(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of ``1 − Pearson(p_i, q_i)``, only over ``mask``-ed entries when given."""
    m = torch.ones_like(p) if mask is None else mask.to(p.dtype)
    n = m.sum(-1, keepdim=True).clamp_min(1.0)
    pc = (p - (p * m).sum(-1, keepdim=True) / n) * m
    qc = (q - (q * m).sum(-1, keepdim=True) / n) * m
    corr = (pc * qc).sum(-1) / (pc.norm(dim=-1) * qc.norm(dim=-1)).clamp_min(1e-8)
    return (1.0 - corr).mean()


def distribution_distance(student_p: torch.Tensor, teacher_p: torch.Tensor, kind: str,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Distance between row distributions (student probabilities vs teacher probabilities)."""
    m = torch.ones_like(student_p) if mask is None else mask.to(student_p.dtype)
    if kind == "ce":
        return -(teacher_p * torch.log(student_p.clamp_min(1e-12)) * m).sum(-1).mean()
    if kind == "pearson":
        return _pearson_distance(student_p, teacher_p, mask)
    if kind == "l1":
        return ((student_p - teacher_p).abs() * m).sum(-1).mean()
    raise ValueError(f"unknown distance {kind!r}; choose one of {DISTANCES}")


class TeachCLIPLoss(nn.Module):
    def __init__(self, w_gt: float = 1.0, w_coarse: float = 1.0, w_fine: float = 1.0, coarse: str = "pearson",
                 fine: str = "ce", temperature: float = 0.05, distill_temperature: float = 0.1,
                 frame_temperature: float = 0.1) -> None:
        super().__init__()
        for name, kind in (("coarse", coarse), ("fine", fine)):
            if kind not in DISTANCES:
                raise ValueError(f"unknown {name} distance {kind!r}; choose one of {DISTANCES}")
        self.w_gt, self.w_coarse, self.w_fine = w_gt, w_coarse, w_fine
        self.coarse, self.fine = coarse, fine
        self.temperature, self.distill_temperature, self.frame_temperature = temperature, distill_temperature, frame_temperature

    def coarse_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        tau = self.distill_temperature
        rows = distribution_distance(torch.softmax(student / tau, -1), torch.softmax(teacher / tau, -1), self.coarse)
        cols = distribution_distance(torch.softmax(student.T / tau, -1), torch.softmax(teacher.T / tau, -1), self.coarse)
        return 0.5 * (rows + cols)

    def fine_loss(self, weights: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = (teacher_logits.mean(0) / self.frame_temperature).masked_fill(~mask, float("-inf"))
        target = torch.softmax(logits, -1).detach()
        return distribution_distance(weights, target, self.fine, mask)

    def forward(self, inputs: DistillInputs) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = inputs.teacher_sims().mean(0)
        nce, coarse = [], []
        for lang in inputs.student_text:
            s = inputs.student_sims(lang)
            nce.append(info_nce(s, self.temperature))
            coarse.append(self.coarse_loss(s, teacher))
        nce_m, coarse_m = torch.stack(nce).mean(), torch.stack(coarse).mean()
        loss = self.w_gt * nce_m + self.w_coarse * coarse_m
        logs = {"contrastive": float(nce_m.detach()), "coarse": float(coarse_m.detach())}
        if self.w_fine:
            if inputs.student_frame_weights is None or inputs.teacher_frame_logits is None:
                raise ValueError("TeachCLIP's fine-grained term needs the student's AFA frame weights and the "
                                 "teachers' frame logits: use aggregator 'afa' for the student")
            fine = self.fine_loss(inputs.student_frame_weights, inputs.teacher_frame_logits, inputs.frame_mask)
            loss = loss + self.w_fine * fine
            logs["fine"] = float(fine.detach())
        return loss, logs
