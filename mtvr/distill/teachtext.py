"""TeachText (Croitoru et al., "TeachText: CrossModal Generalized Distillation for Text-Video
Retrieval", ICCV 2021).

The teachers' similarity matrices are averaged, ``T̄ = mean_k T_k``, and the student's matrix is
regressed onto it with a Smooth-L1 (Huber, δ = 1) loss, added to the contrastive base with weight λ::

    L = mean_l [ InfoNCE(S_l; τ) + λ · SmoothL1(S_l, T̄) ]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .contrastive import info_nce
from .inputs import DistillInputs
from .registry import register_loss

CITATION = """@inproceedings{croitoru2021teachtext,
  title={TeachText: CrossModal Generalized Distillation for Text-Video Retrieval},
  author={Croitoru, Ioana and Bogolin, Simion-Vlad and Leordeanu, Marius and Jin, Hailin and Zisserman, Andrew and Albanie, Samuel and Liu, Yang},
  booktitle={ICCV}, year={2021}}"""
CARD_METHOD = "The student was trained with TeachText distillation from English teachers."


@register_loss(
    "teachtext",
    needs_teacher=True,
    card_method=CARD_METHOD,
    citation=CITATION,
)
class TeachTextLoss(nn.Module):
    def __init__(self, weight: float = 1.0, temperature: float = 0.05) -> None:
        super().__init__()
        self.weight, self.temperature = weight, temperature

    def forward(self, inputs: DistillInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = inputs.teacher_sims().mean(0)
        nce, reg = [], []
        for lang in inputs.student_text:
            s = inputs.student_sims(lang)
            nce.append(info_nce(s, self.temperature))
            reg.append(F.smooth_l1_loss(s, target))
        nce_m, reg_m = torch.stack(nce).mean(), torch.stack(reg).mean()
        return nce_m + self.weight * reg_m, {"contrastive": nce_m.detach(), "smooth_l1": reg_m.detach()}
