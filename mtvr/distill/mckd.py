"""MCKD: multi-level cross-lingual knowledge distillation for multilingual video-text retrieval
(Ma et al., IEEE TCSVT 2023).

The paper is closed-access; this implements the method its abstract describes: the English teacher's
*inter-instance structure* inside a batch is distilled into the multilingual student, together with an
explicit contrastive discrimination loss. Exact formulation (our assumptions marked *):

For teacher embeddings ``t_i`` (English captions), ``v_i`` (videos) and student embeddings
``s_i`` (captions in language l), ``u_i`` (videos), three structure matrices per model::

    text-text:   A^T = t tᵀ,  A^S = s sᵀ        (diagonal removed*: self-similarity carries no structure)
    video-video: B^T = v vᵀ,  B^S = u uᵀ        (diagonal removed*)
    text-video:  C^T = t vᵀ,  C^S = s uᵀ

Each is turned into row distributions with a softmax at temperature τ_d and distilled with
``KL(softmax(X^T/τ_d) ‖ softmax(X^S/τ_d))`` (batch-mean)::

    L_l = InfoNCE(C^S; τ_c) + λ_tt·KL_A + λ_vv·KL_B + λ_tv·KL_C,      L = mean_l L_l

With several teachers* their structure matrices are averaged element-wise before the softmax.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import RecipeError
from .contrastive import info_nce
from .inputs import DistillInputs
from .registry import register_loss


def structure_kl(teacher: torch.Tensor, student: torch.Tensor, temperature: float, drop_diagonal: bool) -> torch.Tensor:
    if drop_diagonal:
        eye = torch.eye(teacher.shape[0], dtype=torch.bool, device=teacher.device)
        teacher = teacher.masked_fill(eye, float("-inf"))
        student = student.masked_fill(eye, float("-inf"))
    p_log = F.log_softmax(teacher / temperature, -1)
    q_log = F.log_softmax(student / temperature, -1)
    terms = torch.where(torch.isfinite(p_log), p_log.exp() * (p_log - q_log), torch.zeros_like(p_log))
    return terms.sum(-1).mean()


CITATION = """@article{ma2023mckd,
  title={Multi-Level Cross-Lingual Knowledge Distillation for Multilingual Video-Text Retrieval},
  author={Ma, Ruijie and others}, journal={IEEE Transactions on Circuits and Systems for Video Technology}, year={2023}}"""
CARD_METHOD = "The student was trained with multi-level cross-lingual knowledge distillation (MCKD)."


@register_loss(
    "mckd",
    needs_teacher=True,
    card_method=CARD_METHOD,
    citation=CITATION,
)
class MCKDLoss(nn.Module):
    def __init__(
        self,
        temperature: float = 0.05,
        distill_temperature: float = 0.1,
        w_text_text: float = 1.0,
        w_video_video: float = 1.0,
        w_text_video: float = 1.0,
    ) -> None:
        super().__init__()
        self.temperature, self.distill_temperature = temperature, distill_temperature
        self.w_tt, self.w_vv, self.w_tv = w_text_text, w_video_video, w_text_video

    def forward(self, inputs: DistillInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if inputs.teacher_text is None or inputs.teacher_video is None:
            raise RecipeError("MCKD needs teacher embeddings: the recipe must name at least one teacher")
        t, v = inputs.teacher_text.detach(), inputs.teacher_video.detach()
        a_t = torch.einsum("kie,kje->kij", t, t).mean(0)
        b_t = torch.einsum("kie,kje->kij", v, v).mean(0)
        c_t = torch.einsum("kie,kje->kij", t, v).mean(0)
        u = inputs.student_video
        kl_vv = structure_kl(b_t, u @ u.T, self.distill_temperature, True)
        nce, kl_tt, kl_tv = [], [], []
        for lang, s in inputs.student_text.items():
            c_s = s @ u.T
            nce.append(info_nce(c_s, self.temperature))
            kl_tt.append(structure_kl(a_t, s @ s.T, self.distill_temperature, True))
            kl_tv.append(structure_kl(c_t, c_s, self.distill_temperature, False))
        nce_m, tt_m, tv_m = torch.stack(nce).mean(), torch.stack(kl_tt).mean(), torch.stack(kl_tv).mean()
        loss = nce_m + self.w_tt * tt_m + self.w_vv * kl_vv + self.w_tv * tv_m
        return loss, {
            "contrastive": nce_m.detach(),
            "kl_text_text": tt_m.detach(),
            "kl_video_video": kl_vv.detach(),
            "kl_text_video": tv_m.detach(),
        }
