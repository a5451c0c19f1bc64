"""C2KD: cross-lingual cross-modal knowledge distillation (Rouditchenko et al., ICASSP 2023).

Follows the official code, ``roudimit/c2kd``: ``trainer/trainer.py`` (stage ``c2kd``), ``model/loss.py``
(``NormSoftmaxLoss``) and ``train.py`` (learnable weights). English text-video teachers, fed the
**English** captions of a batch, give similarity matrices ``T_k [B, B]``; the multilingual student, fed
the captions in language ``l``, gives ``S_l``. For every language ``l`` of the batch, English included
(Eq. 2-4 of the paper)::

    L_l = β · NCE(S_l; τ_c) + (1 − β) · D(T, S_l)
    NCE(S; τ)  = CE(S/τ, I) + CE(Sᵀ/τ, I)                      (the *sum* of both directions: NormSoftmaxLoss)
    D(T, S)    = KL(softmax(T/τ_d) ‖ softmax(S/τ_d)) + KL(softmax(Tᵀ/τ_d) ‖ softmax(Sᵀ/τ_d))

softmax over rows, ``KL`` with ``reduction="batchmean"`` (``torch.nn.KLDivLoss(log_target=True)``).
β is ``balance`` and means what the paper's β means: β = 0.5 weighs the summed two-direction
cross-entropy and the summed two-direction KL equally.

Teacher pooling (``pooling``), with the plain meanings of the words:

* ``mean`` / ``min`` / ``max``: element-wise mean / minimum / maximum of the teacher matrices.
  **The official ``--teacher_sim_pool`` flag swaps min and max** (``'max'`` runs ``torch.min`` and
  ``'min'`` runs ``torch.max``): the official MSR-VTT and YouCook2 scripts pass ``min`` and so pool
  by the element-wise **maximum**. The recipes that reproduce the paper use ``pooling: max`` here.
* ``multitask``: no pooling: ``(1 − β) · Σ_k D(T_k, S_l)``, the per-teacher terms *summed*.
* ``learnable``: ``Σ_k softmax(w)_k · D(T_k, S_l)`` with weights ``w`` initialised to 0.33 each and
  trained at their own learning rate 1e-2 (the official ``learnable_multitask``); as in the official
  code the softmax weights replace ``(1 − β)``: the distillation term carries no ``(1 − β)`` factor.

Deliberate deviations from the official code:

* ``L = mean_l L_l`` (the official code sums over languages). With Adam this only rescales the loss
  by the number of languages, which Adam's update is invariant to (up to ε); it keeps the loss of a
  recipe comparable when languages are added.
* The official code adds the English contrastive term a second time through the dataset's base loss
  (``self.loss(output)`` before the language loop); here every language, English included, counts once.

Teachers are frozen: no gradient flows into ``T``. Defaults follow the paper: τ_d = 0.1; β = 0.5 for
MSR-VTT and 0.1 for YouCook2; τ_c = 0.05 (the official ``NormSoftmaxLoss`` default).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import OptionError
from .contrastive import info_nce
from .inputs import DistillInputs
from .registry import register_loss

POOLINGS = ("mean", "min", "max", "multitask", "learnable")
LEARNABLE_INIT = 0.33  # train.py: torch.tensor([0.33, 0.33, 0.33])
LEARNABLE_LR = 1e-2  # train.py: {'params': model.learnable_weights, 'lr': 1e-2}


def distill_kl(teacher: torch.Tensor, student: torch.Tensor, temperature: float) -> torch.Tensor:
    """``D(T, S)``: row KL + column KL of temperature softmaxes, batch-mean reduction each."""
    total = student.new_zeros(())
    for t, s in ((teacher, student), (teacher.T, student.T)):
        total = total + F.kl_div(
            F.log_softmax(s / temperature, dim=-1),
            F.log_softmax(t / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
    return total


CITATION = """@inproceedings{rouditchenko2023c2kd,
  title={C2KD: Cross-Lingual Cross-Modal Knowledge Distillation for Multilingual Text-Video Retrieval},
  author={Rouditchenko, Andrew and Chuang, Yung-Sung and Shvetsova, Nina and Thomas, Samuel and Feris, Rogerio and Kingsbury, Brian and Karlinsky, Leonid and Harwath, David and Kuehne, Hilde and Glass, James},
  booktitle={ICASSP}, year={2023}}"""
CARD_METHOD = "The student was trained by cross-lingual cross-modal knowledge distillation (C2KD) from English text-video teachers."


@register_loss(
    "c2kd",
    needs_teacher=True,
    card_method=CARD_METHOD,
    citation=CITATION,
)
class C2KDLoss(nn.Module):
    """C2KD objective; see the module docstring for the equations and the official code it follows.

    Args:
        balance: β, the weight of the contrastive term (``1 − β`` weighs the distillation term).
        temperature: τ_c of the contrastive term.
        distill_temperature: τ_d of the distillation softmaxes.
        pooling: ``mean``, ``min``, ``max``, ``multitask`` or ``learnable``.
        num_teachers: K (only ``learnable`` needs it, for its weights).
    """

    @staticmethod
    def options_for_recipe(options: dict, num_teachers: int) -> dict:
        """Learnable pooling gets one weight per teacher of the recipe."""
        if options.get("pooling") == "learnable":
            options.setdefault("num_teachers", num_teachers)
        return options

    def __init__(
        self,
        balance: float = 0.5,
        temperature: float = 0.05,
        distill_temperature: float = 0.1,
        pooling: str = "mean",
        num_teachers: int = 1,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise OptionError(f"unknown teacher pooling {pooling!r}; choose one of {POOLINGS}")
        if not 0.0 <= balance <= 1.0:
            raise OptionError(f"balance must be in [0, 1], got {balance}")
        if temperature <= 0 or distill_temperature <= 0:
            raise OptionError("temperatures must be positive")
        self.balance, self.temperature, self.distill_temperature = balance, temperature, distill_temperature
        self.pooling = pooling
        self.teacher_logits = (
            nn.Parameter(torch.full((num_teachers,), LEARNABLE_INIT)) if pooling == "learnable" else None
        )

    def param_groups(self) -> list[dict]:
        """Optimizer groups for the loss's own parameters (the learnable weights at lr 1e-2)."""
        return [{"params": [self.teacher_logits], "lr": LEARNABLE_LR}] if self.teacher_logits is not None else []

    def pooled_teacher(self, teachers: torch.Tensor) -> torch.Tensor:
        """Pool ``[K, B, B]`` teacher matrices into one ``[B, B]`` (mean / min / max)."""
        if self.pooling == "mean":
            return teachers.mean(0)
        if self.pooling == "min":
            return teachers.min(0).values
        if self.pooling == "max":
            return teachers.max(0).values
        raise OptionError(f"pooling {self.pooling!r} keeps the teachers apart")

    def distillation(self, student: torch.Tensor, teachers: torch.Tensor) -> torch.Tensor:
        """The weighted distillation term of one language, ``(1 − β)`` included."""
        tau = self.distill_temperature
        if self.pooling == "multitask":
            return (1.0 - self.balance) * torch.stack([distill_kl(t, student, tau) for t in teachers]).sum()
        if self.pooling == "learnable":
            if self.teacher_logits.shape[0] != teachers.shape[0]:
                raise OptionError(
                    f"C2KD learnable pooling was built for {self.teacher_logits.shape[0]} teachers "
                    f"but got {teachers.shape[0]}"
                )
            w = torch.softmax(self.teacher_logits, 0)
            return (w * torch.stack([distill_kl(t, student, tau) for t in teachers])).sum()
        return (1.0 - self.balance) * distill_kl(self.pooled_teacher(teachers), student, tau)

    def forward(self, inputs: DistillInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teachers = inputs.teacher_sims()
        nce, kl = [], []
        for lang in inputs.student_text:
            s = inputs.student_sims(lang)
            nce.append(2.0 * info_nce(s, self.temperature))  # NormSoftmaxLoss: sum of the two directions
            kl.append(self.distillation(s, teachers))
        nce_m, kl_m = torch.stack(nce).mean(), torch.stack(kl).mean()
        loss = self.balance * nce_m + kl_m
        return loss, {"contrastive": nce_m.detach(), "kl": kl_m.detach()}
