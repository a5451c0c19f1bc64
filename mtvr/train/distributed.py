"""Cross-process helpers for training with several processes (DDP through ``accelerate`` / ``torchrun``).

Contrastive and distillation losses compare every caption with every video of the batch, so with N
processes each holding b clips, the loss must see all N·b clips. :func:`gather_with_grad` concatenates
a tensor from every process in rank order and keeps the autograd graph (as open_clip's
``gather_features(gather_with_grad=True)`` and sentence-transformers' ``all_gather_with_grad`` do):
the backward of ``torch.distributed.nn.functional.all_gather`` sums the gradients that every process
computes for each slice, so after DDP averages the parameter gradients, N processes take exactly the
step that one process takes on the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``[b, ...]`` on each of N processes → ``[N·b, ...]`` on every process, differentiable."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """``[b, ...]`` on each process → ``[N·b, ...]`` (no gradient; for indices, masks, teachers)."""
    if world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def process_state():
    """accelerate's process state, created the way the trainer needs it.

    On a machine without CUDA, accelerate recognises a ``torchrun`` launch only when asked for the CPU
    (``cpu=True``); otherwise every process would believe it is alone. The state is a singleton: the
    first call decides.
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
