"""The default torch device: the GPU when there is one (one helper for every tower and backend)."""

from __future__ import annotations

import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` means CUDA when available, else the CPU.

    A device that does not exist here (``cuda`` without a GPU, ``bogus``) raises
    :class:`~mtvr.errors.OptionError` naming it, before any model is loaded.
    """
    if device is not None:
        from .option_values import device as checked_device

        return checked_device("device", device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
