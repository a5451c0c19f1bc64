"""C2KD: cross-lingual cross-modal knowledge distillation (Rouditchenko et al., ICASSP 2023).

English text-video teachers, fed the **English** captions of a batch, give similarity matrices
``T_k [B, B]``; the multilingual student, fed the captions in language ``l``, gives ``S_l``. For every
language ``l`` of the batch, English included (Eq. 2-4 of the paper)::

    L_l = β · InfoNCE(S_l; τ_c)
        + (1 − β) · [ KL(softmax(T/τ_d) ‖ softmax(S_l/τ_d)) + KL(softmax(Tᵀ/τ_d) ‖ softmax(S_lᵀ/τ_d)) ]

with softmax over rows (each row a distribution), ``KL(P‖Q) = Σ_j P_j (log P_j − log Q_j)`` averaged
over the B rows ("batchmean"), and ``L = mean_l L_l``. β is ``balance``.

The teachers are pooled into ``T`` by ``pooling``:

* ``mean`` / ``min`` / ``max``: element-wise mean / minimum / maximum of the teacher matrices;
* ``multitask``: no pooling: one KL term per teacher, averaged over teachers;
* ``learnable``: ``T = Σ_k softmax(w)_k T_k`` with learned weights ``w`` (initialised equal).

Defaults follow the paper: τ_d = 0.1; β = 0.5 for MSR-VTT and 0.1 for YouCook2 / VATEX; τ_c = 0.1
(MSR-VTT) or 0.05 (YouCook2). Teachers are frozen: no gradient flows into ``T``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .contrastive import info_nce
from .inputs import DistillInputs

POOLINGS = ("mean", "min", "max", "multitask", "learnable")


def distill_kl(teacher: torch.Tensor, student: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(T/τ) ‖ softmax(S/τ)) + KL(softmax(Tᵀ/τ) ‖ softmax(Sᵀ/τ))``, batch-mean reduction."""
    total = student.new_zeros(())
    for t, s in ((teacher, student), (teacher.T, student.T)):
        total = total + F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                                 reduction="batchmean", log_target=True)
    return total


class C2KDLoss(nn.Module):
    def __init__(self, balance: float = 0.5, temperature: float = 0.1, distill_temperature: float = 0.1,
                 pooling: str = "mean", num_teachers: int = 1) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown teacher pooling {pooling!r}; choose one of {POOLINGS}")
        if not 0.0 <= balance <= 1.0:
            raise ValueError(f"balance must be in [0, 1], got {balance}")
        self.balance, self.temperature, self.distill_temperature = balance, temperature, distill_temperature
        self.pooling = pooling
        self.teacher_logits = nn.Parameter(torch.zeros(num_teachers)) if pooling == "learnable" else None

    def pooled_teacher(self, teachers: torch.Tensor) -> torch.Tensor:
        """Pool ``[K, B, B]`` teacher matrices into one ``[B, B]`` (not for ``multitask``)."""
        if self.pooling == "mean":
            return teachers.mean(0)
        if self.pooling == "min":
            return teachers.min(0).values
        if self.pooling == "max":
            return teachers.max(0).values
        if self.pooling == "learnable":
            return torch.einsum("k,kij->ij", torch.softmax(self.teacher_logits, 0), teachers)
        raise ValueError("multitask pooling keeps the teachers apart")

    def distillation(self, student: torch.Tensor, teachers: torch.Tensor) -> torch.Tensor:
        if self.pooling == "multitask":
            return torch.stack([distill_kl(t, student, self.distill_temperature) for t in teachers]).mean()
        return distill_kl(self.pooled_teacher(teachers), student, self.distill_temperature)

    def forward(self, inputs: DistillInputs) -> tuple[torch.Tensor, dict[str, float]]:
        teachers = inputs.teacher_sims()
        nce, kl = [], []
        for lang in inputs.student_text:
            s = inputs.student_sims(lang)
            nce.append(info_nce(s, self.temperature))
            kl.append(self.distillation(s, teachers))
        nce_m, kl_m = torch.stack(nce).mean(), torch.stack(kl).mean()
        loss = self.balance * nce_m + (1.0 - self.balance) * kl_m
        return loss, {"contrastive": float(nce_m.detach()), "kl": float(kl_m.detach())}
