"""Where the moments of a long video are: fixed windows, detected shots, or the whole file.

Modes (``segments=`` of :meth:`mtvr.Retriever.add_videos`, ``mtvr index`` and ``mtvr extract-features``):

* ``"clip"``: one segment, the whole file (short clips; mtvr's behaviour before segmenting).
* ``"window"``: overlapping windows of ``window`` seconds every ``stride`` seconds (``0 < stride <= window``);
  the last window ends at the end of the file, so every second is covered. A file shorter than one window
  is one segment, the whole file (never an error: a collection mixes short and long files).
* ``"shots"``: shots cut by PySceneDetect's ``ContentDetector`` (HSV-difference threshold, Castellano's
  PySceneDetect); a shot longer than ``window`` is split into windows inside it, so a 3-minute static shot
  still gives moments a few seconds long.

This module plans segments from a duration and shot boundaries (pure, no decoding); the single pass that
decodes a file once for all its segments is :mod:`mtvr.video.segment_decode`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import SegmentError

SEGMENT_MODES = ("clip", "window", "shots")
DEFAULT_WINDOW = 4.0
DEFAULT_STRIDE = 2.0


@dataclass(frozen=True, order=True)
class Segment:
    """A time range ``[start, end)`` of a file, in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def check_mode(segments: str) -> str:
    if segments not in SEGMENT_MODES:
        raise SegmentError(f"segments={segments!r} is not a segmenting mode; use one of {', '.join(SEGMENT_MODES)}")
    return segments


def check_window(window: float, stride: float) -> tuple[float, float]:
    """Validate ``window``/``stride`` seconds: finite, > 0, ``stride <= window`` (else moments would have gaps)."""
    for name, value in (("window", window), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SegmentError(f"{name} must be a number of seconds, got {type(value).__name__} ({value!r:.40})")
        if not math.isfinite(value) or value <= 0:
            raise SegmentError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    if stride > window:
        raise SegmentError(
            f"stride {stride} s is longer than window {window} s: the seconds between windows would never be "
            "indexed; use stride <= window"
        )
    return float(window), float(stride)


def plan_windows(duration: float, window: float, stride: float, offset: float = 0.0) -> list[Segment]:
    """Windows ``[offset + k·stride, … + window)`` covering ``[offset, offset + duration)``.

    The last window is moved back to end exactly at the end (full length, more overlap) instead of being
    cut short; a duration shorter than ``window`` gives one segment, the whole range.
    """
    window, stride = check_window(window, stride)
    if not math.isfinite(duration) or duration <= 0:
        raise SegmentError(f"cannot plan windows over a duration of {duration!r} s")
    end = offset + duration
    if duration <= window:
        return [Segment(offset, end)]
    out = []
    k = 0
    while True:
        s = offset + k * stride
        if s + window >= end - 1e-9:
            last = Segment(max(offset, end - window), end)
            if not out or out[-1] != last:
                out.append(last)
            return out
        out.append(Segment(s, s + window))
        k += 1


def shots_from_cuts(cuts: Iterable[float], duration: float) -> list[Segment]:
    """Shots between cut times (seconds, any order; cuts outside ``(0, duration)`` are ignored)."""
    inner = sorted({float(c) for c in cuts if 0 < c < duration})
    bounds = [0.0, *inner, float(duration)]
    return [Segment(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def split_long_shots(shots: Sequence[Segment], window: float, stride: float) -> list[Segment]:
    """Shots no longer than ``window`` stay whole; longer ones become windows inside the shot."""
    window, stride = check_window(window, stride)
    out: list[Segment] = []
    for shot in shots:
        if shot.duration <= window:
            out.append(shot)
        else:
            out.extend(plan_windows(shot.duration, window, stride, offset=shot.start))
    return out


def clip_to_duration(segments: Sequence[Segment], duration: float) -> tuple[list[Segment], list[tuple[Segment, str]]]:
    """Segments asked for by the caller, cut at the end of the file.

    Returns ``(kept, rejected)``: a segment that ends past the end is shortened to it; one that starts at or
    past the end is rejected with the reason (reported, never fatal for the other segments).
    """
    kept, rejected = [], []
    for seg in segments:
        if seg.start >= duration:
            rejected.append((seg, f"segment [{seg.start:.2f}, {seg.end:.2f}] s starts past the end ({duration:.2f} s)"))
        else:
            kept.append(Segment(seg.start, min(seg.end, duration)))
    return kept, rejected
