"""Frame encoders by name: what ``frame_encoder.name_or_path`` of a model, ``mtvr extract-features --encoder`` and
``extract_features(encoder="...")`` build.

A frame encoder turns images ``uint8 [N, S, S, 3]`` into features ``float32 [N, D]`` (:class:`FrameEncoder`).
Named encoders are registered here (built in: ``mtvr/shape-stats``, the weight-free encoder of the offline demo);
every other name is a CLIP-family vision checkpoint (a Hub id or a local folder) read by
:class:`mtvr.video.encoder.CLIPFrameEncoder`. Adding an encoder is one module with the class and one
:func:`register_frame_encoder` call (here for a built-in one, or in the package that brings it; or the
``mtvr.frame_encoders`` entry-point group). The class is called with keywords: ``name_or_path=``, ``device=``
and the caller's options (``precision``, ``batch_size``... for CLIP; ``image_size`` for shape-stats).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..registry import Registry


class FrameEncoder(Protocol):
    name: str
    feature_dim: int
    image_size: int

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """``uint8 [N, S, S, 3]`` → ``float32 [N, D]``; encoders that see motion also have ``encode_clips``
        (``uint8 [B, T, S, S, 3]`` → ``[B, T, D]``)."""


def _check_encoder(name: str, factory: Any) -> None:
    from ..errors import ComponentError

    if not callable(factory):
        raise ComponentError(f"frame encoder {name!r} must be a class or a factory, got {factory!r}")


FRAME_ENCODERS: Registry[Callable[..., FrameEncoder]] = Registry(
    "frame encoder", entry_points="mtvr.frame_encoders", check=_check_encoder
)
FRAME_ENCODERS.register("mtvr/shape-stats", "mtvr.video.shape_encoder:ShapeStatsEncoder")
CHECKPOINT_ENCODER = "mtvr.video.encoder:CLIPFrameEncoder"  # any name not registered: a CLIP vision checkpoint


def register_frame_encoder(name: str, encoder: Callable[..., FrameEncoder] | str) -> None:
    """Make the frame encoder name ``name`` build ``encoder`` (a class, or ``"package.module:Class"``)."""
    FRAME_ENCODERS.register(name, encoder)


def frame_encoder_names() -> list[str]:
    """The registered encoder names (any other name is read as a CLIP vision checkpoint)."""
    return FRAME_ENCODERS.names()


def build_frame_encoder(name_or_path: str, device: Any = None, **options: Any) -> FrameEncoder:
    """The encoder named ``name_or_path``: a registered one, else a CLIP-family vision checkpoint."""
    import importlib

    if str(name_or_path) in frame_encoder_names():
        factory = FRAME_ENCODERS.get(str(name_or_path))
    else:
        module, _, attr = CHECKPOINT_ENCODER.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(name_or_path=name_or_path, device=device, **options)
