"""Decode a long video once and sample frames for every one of its segments from that single pass.

One sequential PyAV decode per file (never one seek-and-decode per window): each decoded frame is converted
(scaled, cropped) only if some segment needs it, and frames are freed as soon as no pending segment can use
them, so memory stays flat for hours of video.

* ``window``: the windows are planned from the probed duration; each window samples the same frame indices
  as :func:`~mtvr.video.decode.sample_frames` on ``[start, end]`` (``uniform_indices``), and is emitted as
  soon as its last frame is decoded.
* ``shots``: every frame, scaled down to ``DETECT_WIDTH`` pixels wide, goes through PySceneDetect's
  ``ContentDetector`` in the same pass; frames on a grid of ``window / num_frames`` seconds (and the first
  frame of each shot) are kept at the output size, and a shot's frames are the grid frames nearest to its
  uniform sample times. A shot is emitted when the next cut is found (long shots split into windows).
* ``clip``: one segment, the whole file.

A file that stops decoding mid-way (corrupt packets, truncated) keeps the segments decoded before the
failure; the others are reported as :class:`SegmentFailure` with the reason. Decoding the first frame
failing (not a video, missing file) raises :class:`~mtvr.errors.VideoDecodeError` like ``sample_frames``.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VideoDecodeError
from .decode import _pad, center_crop, probe, resized_size, uniform_indices
from .segments import (
    DEFAULT_STRIDE,
    DEFAULT_WINDOW,
    Segment,
    check_mode,
    check_window,
    plan_windows,
    split_long_shots,
)

DETECT_WIDTH = 160  # frames handed to the shot detector are this wide: its HSV statistics need no more


@dataclass
class SegmentFrames:
    """The sampled frames of one segment: ``uint8 [T, S, S, 3]`` RGB, ``num_real`` of them distinct."""

    segment: Segment
    frames: np.ndarray
    num_real: int
    indices: list[int]


@dataclass
class SegmentFailure:
    """A segment (or the rest of a file, ``segment`` covering it) that could not be decoded, and why."""

    segment: Segment
    reason: str


@dataclass
class DecodeStats:
    """What one pass saw: frames decoded, the decoded duration, shot cuts (seconds), and whether it failed."""

    fps: float = 0.0
    frames_decoded: int = 0
    frames_converted: int = 0
    duration: float = 0.0
    cuts: list[float] = field(default_factory=list)
    failed_at: float | None = None


def frame_index(frame, start_pts: int, time_base, fps: float, count: int) -> int:
    if frame.pts is None:
        return count
    return int(round(float((frame.pts - start_pts) * time_base) * fps))


class SegmentDecoder:
    """Iterate over the :class:`SegmentFrames` / :class:`SegmentFailure` of one file, decoding it once.

    ``stats`` is filled in while iterating (frames decoded, shot cuts, where decoding failed). ``close()`` (or
    leaving a ``with`` block) ends a pass abandoned early: the file and FFmpeg's decoding threads are released.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        segments: str = "window",
        *,
        window: float = DEFAULT_WINDOW,
        stride: float = DEFAULT_STRIDE,
        num_frames: int = 12,
        size: int | None = 224,
        shot_threshold: float = 27.0,
        min_shot: float = 0.5,
    ) -> None:
        self.path = Path(path)
        self.mode = check_mode(segments)
        self.window, self.stride = check_window(window, stride)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise VideoDecodeError(f"num_frames must be a positive integer, got {num_frames!r}")
        self.num_frames = num_frames
        self.size = size
        self.shot_threshold = float(shot_threshold)
        self.min_shot = float(min_shot)
        self.stats = DecodeStats()
        self._live: weakref.WeakSet = weakref.WeakSet()  # the passes (generators) not yet finished

    # ------------------------------------------------------------------ helpers
    def _sample(
        self, seg: Segment, stored: dict[int, np.ndarray], fps: float, total: int, wanted: list[int] | None = None
    ) -> SegmentFrames:
        """The segment's frames: its ``wanted`` indices (uniform in the segment by default), or the nearest kept."""
        first = min(int(math.floor(seg.start * fps)), total - 1)
        last = max(first + 1, min(total, int(math.ceil(seg.end * fps))))
        wanted = wanted or uniform_indices(first, last, self.num_frames)
        keys = np.array(sorted(stored))
        inside = keys[(keys >= first) & (keys < last)]
        pool = inside if len(inside) else keys
        picked = [int(pool[np.abs(pool - i).argmin()]) for i in wanted]
        frames = np.stack([stored[i] for i in picked])
        return SegmentFrames(seg, _pad(frames, self.num_frames), min(len(set(picked)), self.num_frames), picked)

    def _convert(self, frame, w: int, h: int) -> np.ndarray:
        self.stats.frames_converted += 1
        img = frame.to_ndarray(format="rgb24", width=w, height=h)
        return center_crop(img[None], self.size)[0] if self.size else img

    # ------------------------------------------------------------------ the pass
    def __iter__(self) -> Iterator[SegmentFrames | SegmentFailure]:
        passes = self._passes()
        self._live.add(passes)
        return passes

    def close(self) -> None:
        """Stop every pass still open over this file: its container and FFmpeg's decoding threads are released
        now (an iteration abandoned without ``close`` holds them until the iterator is garbage-collected)."""
        for passes in list(self._live):
            passes.close()
        self._live.clear()

    def __enter__(self) -> SegmentDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _passes(self) -> Iterator[SegmentFrames | SegmentFailure]:
        import av

        info = probe(self.path)
        if info["width"] <= 0 or info["height"] <= 0:
            raise VideoDecodeError(f"{self.path}: video stream has no frame size")
        fps = float(info["fps"])
        self.stats.fps = fps
        duration = float(info["duration"]) or (info["frames"] / fps if info["frames"] else 0.0)
        w, h = resized_size(info["width"], info["height"], self.size) if self.size else (info["width"], info["height"])
        detect = self.mode == "shots" or duration <= 0  # unknown duration: plan windows once the pass has ended
        planned: list[tuple[Segment, list[int]]] = []
        if not detect:
            plan = [Segment(0.0, duration)] if self.mode == "clip" else plan_windows(duration, self.window, self.stride)
            total_guess = max(1, int(round(duration * fps)))
            for seg in plan:
                first = min(int(math.floor(seg.start * fps)), total_guess - 1)
                last = max(first + 1, min(total_guess, int(math.ceil(seg.end * fps))))
                planned.append((seg, uniform_indices(first, last, self.num_frames)))
        wanted = {i for _, idx in planned for i in idx}
        detector = None
        if self.mode == "shots":
            from scenedetect import ContentDetector, FrameTimecode

            detector = ContentDetector(
                threshold=self.shot_threshold, min_scene_len=max(1, int(round(self.min_shot * fps)))
            )
            dw = DETECT_WIDTH
            dh = max(2, int(round(info["height"] * dw / info["width"] / 2)) * 2)
        grid = max(1, int(round(fps * self.window / self.num_frames)))
        stored: dict[int, np.ndarray] = {}
        shot_start = 0  # frame index where the current shot began
        last_i = -1
        error: str | None = None

        def close_shot(end_frame: int) -> Iterator[SegmentFrames]:
            nonlocal shot_start
            shot = Segment(shot_start / fps, end_frame / fps)
            for seg in split_long_shots([shot], self.window, self.stride):
                yield self._sample(seg, stored, fps, end_frame)
            shot_start = end_frame
            for i in [i for i in stored if i < shot_start]:
                del stored[i]

        container = None
        try:
            container = av.open(str(self.path))
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb, start_pts = stream.time_base, stream.start_time or 0
            count = -1
            for frame in container.decode(stream):
                count += 1
                i = frame_index(frame, start_pts, tb, fps, count)
                if i <= last_i:  # duplicated or reordered timestamp: keep the first frame seen
                    continue
                last_i = i
                self.stats.frames_decoded += 1
                if detector is not None:
                    small = frame.to_ndarray(format="bgr24", width=dw, height=dh)
                    cuts = detector.process_frame(FrameTimecode(timecode=i, fps=fps), small)
                    for cut in cuts:
                        if cut.frame_num > shot_start:
                            self.stats.cuts.append(cut.frame_num / fps)
                            yield from close_shot(cut.frame_num)
                    if i % grid == 0 or i == shot_start or (cuts and i not in stored):
                        stored[i] = self._convert(frame, w, h)
                elif detect:
                    if i % grid == 0:
                        stored[i] = self._convert(frame, w, h)
                elif i in wanted:
                    stored[i] = self._convert(frame, w, h)
                    while planned and planned[0][1][-1] <= i:
                        seg, idx = planned.pop(0)
                        yield self._sample(seg, stored, fps, i + 1, idx)
                    if planned:
                        low = planned[0][1][0]
                        for j in [j for j in stored if j < low]:
                            del stored[j]
        except VideoDecodeError:
            raise
        except Exception as exc:  # av raises many error types for corrupt input
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            if container is not None:
                container.close()
        total = last_i + 1
        self.stats.duration = total / fps if total > 0 else 0.0
        if total <= 0:
            raise VideoDecodeError(f"no frame could be decoded from {self.path}" + (f" ({error})" if error else ""))
        if error is not None:
            self.stats.failed_at = self.stats.duration
            rest = Segment(shot_start / fps if detect else self.stats.duration, max(duration, self.stats.duration))
            where = f"decoding stopped at {self.stats.duration:.2f} s ({error})"
            if detect:
                yield SegmentFailure(rest, where)
            for seg, _ in planned:
                yield SegmentFailure(seg, where)
            return
        if detector is not None:
            for cut in detector.post_process(FrameTimecode(timecode=last_i, fps=fps)):
                if shot_start < cut.frame_num < total:
                    self.stats.cuts.append(cut.frame_num / fps)
                    yield from close_shot(cut.frame_num)
            yield from close_shot(total)
            return
        if detect:  # windows over a file whose duration the headers did not give
            plan = [Segment(0.0, self.stats.duration)]
            if self.mode == "window":
                plan = plan_windows(self.stats.duration, self.window, self.stride)
            for seg in plan:
                yield self._sample(seg, stored, fps, total)
            return
        for seg, _ in planned:  # the file ended before the headers said (or on the last frames)
            if seg.start * fps < total - 0.5:
                yield self._sample(Segment(seg.start, min(seg.end, self.stats.duration)), stored, fps, total)
            else:
                yield SegmentFailure(
                    seg, f"the file ends at {self.stats.duration:.2f} s, before this segment (truncated?)"
                )


def decode_segments(path: str | os.PathLike, segments: str = "window", **options) -> SegmentDecoder:
    """An iterable over the segments of one file from a single decode (see :class:`SegmentDecoder`)."""
    return SegmentDecoder(path, segments, **options)
