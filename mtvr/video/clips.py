"""What every extraction path shares: the clip to extract (:class:`ClipSpec`), the run's summary, the encoder call
on a batch of clips, and the duplicate-id check. Whole-clip extraction (:mod:`mtvr.video.extract`), segmenting
(:mod:`mtvr.video.segment_extract`) and the Ray engine (:mod:`mtvr.scale.ray_extract`) all build on it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import VideoIndexError


@dataclass(frozen=True)
class ClipSpec:
    """One clip to encode: a whole file, or the segment ``[start, end]`` seconds of it."""

    clip_id: str
    path: str
    start: float | None = None
    end: float | None = None


@dataclass
class ExtractionSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        rate = self.done / self.seconds if self.seconds else 0.0
        return (
            f"done {self.done}, skipped {self.skipped} (already in the store), failed {self.failed} "
            f"in {self.seconds:.1f} s ({rate:.2f} clips/s)"
        )


def encode_clips(encoder, clips: np.ndarray) -> np.ndarray:
    """``uint8 [B, T, S, S, 3]`` → ``[B, T, D]``; encoders that see motion implement ``encode_clips``."""
    if hasattr(encoder, "encode_clips"):
        return encoder.encode_clips(clips)
    b, t = clips.shape[:2]
    return encoder.encode(clips.reshape(b * t, *clips.shape[2:])).reshape(b, t, -1)


def check_unique_clips(clips: Iterable[ClipSpec]) -> list[ClipSpec]:
    """The clips as a list; a clip id given twice is an error (the store is keyed by clip id)."""
    clips = list(clips)
    seen: dict[str, ClipSpec] = {}
    for c in clips:
        if c.clip_id in seen:
            raise VideoIndexError(
                f"clip id {c.clip_id!r} appears more than once in the input ({seen[c.clip_id].path} and {c.path}); "
                "give one of them another id (or pass their folder: ids are then paths inside it)"
            )
        seen[c.clip_id] = c
    return clips
