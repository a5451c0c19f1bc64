"""Distillation objectives, one module each (contrastive base, C2KD, TeachText, TeachCLIP, MCKD), registered in
:mod:`mtvr.distill.registry` with what each needs, its citation and its model-card sentence."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ComponentError
from .c2kd import C2KDLoss
from .contrastive import ContrastiveLoss, info_nce
from .inputs import DistillInputs
from .mckd import MCKDLoss
from .registry import LOSSES, NEEDS_TEACHER, LossSpec, loss_spec, register_loss, spec_of
from .teachclip import TeachCLIPLoss
from .teachtext import TeachTextLoss


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss by name; options are type-checked against its constructor's annotations.

    Raises ``ValueError`` naming the loss and the option (unknown option, wrong type, out of range).
    """
    import inspect

    from pydantic import ConfigDict, ValidationError, create_model

    cls = loss_spec(name).cls
    params = inspect.signature(cls.__init__).parameters
    fields = {
        p.name: (p.annotation if p.annotation is not inspect.Parameter.empty else Any, p.default)
        for p in list(params.values())[1:]
    }
    schema = create_model(f"{cls.__name__}Options", __config__=ConfigDict(extra="forbid", strict=False), **fields)
    try:
        checked = schema.model_validate(kwargs)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            + (f" (got {e['input']!r:.40})" if e["type"] != "extra_forbidden" else "")
            for e in exc.errors()
        )
        raise ComponentError(f"bad options for loss {name!r}: {problems}; options are {sorted(fields)}") from None
    return cls(**{k: getattr(checked, k) for k in kwargs})


__all__ = [
    "C2KDLoss",
    "ContrastiveLoss",
    "DistillInputs",
    "LOSSES",
    "LossSpec",
    "MCKDLoss",
    "NEEDS_TEACHER",
    "TeachCLIPLoss",
    "TeachTextLoss",
    "build_loss",
    "loss_spec",
    "register_loss",
    "spec_of",
    "info_nce",
]
