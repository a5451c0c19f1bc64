"""Contrastive base loss: symmetric InfoNCE (van den Oord et al., 2018; CLIP, Radford et al., 2021).

For a B×B similarity matrix ``S`` whose diagonal holds the matching pairs and a temperature τ::

    InfoNCE(S) = ½ · [ CE(S/τ, I) + CE(Sᵀ/τ, I) ]
               = -½B · Σ_i [ log softmax_j(S_ij/τ)_i + log softmax_j(S_ji/τ)_i ]

(text→video and video→text cross-entropy, averaged over the batch and the two directions).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .inputs import DistillInputs
from .registry import register_loss


def info_nce(sims: torch.Tensor, temperature: float) -> torch.Tensor:
    labels = torch.arange(sims.shape[0], device=sims.device)
    logits = sims / temperature
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


CARD_METHOD = "The model was trained contrastively on machine-translated captions (translate-train)."


@register_loss(
    "contrastive",
    needs_teacher=False,
    card_method=CARD_METHOD,
)
class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE averaged over the languages of the batch (translate-train baseline)."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, inputs: DistillInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses = [info_nce(inputs.student_sims(l), self.temperature) for l in inputs.student_text]
        loss = torch.stack(losses).mean()
        return loss, {"contrastive": loss.detach()}
