"""Distillation objectives, one module each: contrastive base, C2KD, TeachText, TeachCLIP, MCKD."""

from __future__ import annotations

from typing import Any

from torch import nn

from .c2kd import C2KDLoss
from .contrastive import ContrastiveLoss, info_nce
from .inputs import DistillInputs
from .mckd import MCKDLoss
from .teachclip import TeachCLIPLoss
from .teachtext import TeachTextLoss

LOSSES: dict[str, type[nn.Module]] = {
    "contrastive": ContrastiveLoss,
    "c2kd": C2KDLoss,
    "teachtext": TeachTextLoss,
    "teachclip": TeachCLIPLoss,
    "mckd": MCKDLoss,
}
NEEDS_TEACHER = {"c2kd", "teachtext", "teachclip", "mckd"}


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad options for loss {name!r}: {exc}") from exc


__all__ = ["C2KDLoss", "ContrastiveLoss", "DistillInputs", "LOSSES", "MCKDLoss", "NEEDS_TEACHER", "TeachCLIPLoss",
           "TeachTextLoss", "build_loss", "info_nce"]
