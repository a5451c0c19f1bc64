"""Frame sampling and decoding: read only the frames needed, at reduced resolution.

``sample_frames(path, num_frames, start=None, end=None)`` returns a :class:`SampledFrames` holding
``uint8 [T, S, S, 3]`` RGB frames (shorter side resized to ``S``, then centre-cropped). decord is the
default backend (its ``width``/``height`` arguments make the decoder scale while decoding and
``get_batch`` seeks to the needed frames only); PyAV is the fallback when decord is missing or cannot
open a file.

Sampling (frame indices inside ``[first, last)`` of the clip, ``n = last - first``):

* ``uniform`` (indexing, evaluation): the middle frame of ``T`` equal segments,
  ``first + floor((i + 0.5) · n / T)`` for ``i = 0..T-1``.
* ``random`` (training): a uniformly random frame inside each of the ``T`` segments.

A clip with fewer than ``T`` frames uses all of them and repeats the last one; ``num_real`` says how
many are real.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import (
    OptionError,
    VideoDecodeError,  # noqa: E402  (defined with mtvr's other errors)
)


@dataclass
class SampledFrames:
    frames: np.ndarray  # uint8 [T, S, S, 3]
    num_real: int
    indices: list[int]
    backend: str
    fps: float
    total_frames: int


def uniform_indices(first: int, last: int, num_frames: int) -> list[int]:
    """Middle frame of ``num_frames`` equal segments of ``[first, last)``; all frames when fewer."""
    n = last - first
    if n <= 0:
        raise OptionError(f"empty frame range [{first}, {last})")
    if n <= num_frames:
        return list(range(first, last))
    return [first + int(math.floor((i + 0.5) * n / num_frames)) for i in range(num_frames)]


def random_indices(first: int, last: int, num_frames: int, rng: np.random.Generator) -> list[int]:
    """A random frame inside each of ``num_frames`` equal segments of ``[first, last)``."""
    n = last - first
    if n <= 0:
        raise OptionError(f"empty frame range [{first}, {last})")
    if n <= num_frames:
        return list(range(first, last))
    bounds = np.linspace(first, last, num_frames + 1)
    lo, hi = (
        np.ceil(bounds[:-1]).astype(int),
        np.maximum(np.ceil(bounds[1:]).astype(int), np.ceil(bounds[:-1]).astype(int) + 1),
    )
    return [int(rng.integers(a, b)) for a, b in zip(lo, hi)]


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the shorter side equal to ``short_side``, aspect ratio kept (even sizes)."""
    scale = short_side / min(width, height)
    w, h = max(short_side, round(width * scale)), max(short_side, round(height * scale))
    return w + (w % 2), h + (h % 2)


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    if h < size or w < size:  # decoder rounding: pad by edge replication
        frames = np.pad(frames, ((0, 0), (0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
        h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top : top + size, left : left + size])


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(f"file not found: {path}")
    if path.is_dir():
        raise VideoDecodeError(f"{path} is a folder, not a video")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"empty file (0 bytes): {path}")


def probe(path: str | os.PathLike) -> dict:
    """Width, height, fps, frame count and duration of the first video stream (PyAV, headers only)."""
    import av

    path = Path(path)
    _check_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"no video stream in {path} (audio-only or not a video)")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration
                else (container.duration / 1e6 if container.duration else 0.0)
            )
            return {
                "width": stream.codec_context.width,
                "height": stream.codec_context.height,
                "fps": fps,
                "frames": int(stream.frames or 0),
                "duration": duration,
            }
    except VideoDecodeError:
        raise
    except Exception as exc:  # av raises many error types for corrupt input
        raise VideoDecodeError(f"cannot open {path}: {type(exc).__name__}: {exc}") from exc


def _frame_range(total: int, fps: float, start: float | None, end: float | None, path: Path) -> tuple[int, int]:
    if total <= 0:
        raise VideoDecodeError(f"no decodable frames in {path}")
    first = 0 if start is None else int(math.floor(start * fps))
    last = total if end is None else min(total, int(math.ceil(end * fps)))
    if start is not None and end is not None and end <= start:
        raise VideoDecodeError(f"clip [{start}, {end}] of {path} has end <= start")
    if first >= total:
        raise VideoDecodeError(
            f"clip [{start}, {end}] s lies past the end of {path} ({total} frames, {total / fps:.2f} s)"
        )
    return first, max(last, first + 1)


def _pick(first: int, last: int, num_frames: int, sampling: str, rng: np.random.Generator | None) -> list[int]:
    if sampling == "uniform":
        return uniform_indices(first, last, num_frames)
    if sampling == "random":
        return random_indices(first, last, num_frames, rng or np.random.default_rng())
    raise OptionError(f"unknown sampling {sampling!r}; use 'uniform' or 'random'")


def _pad(frames: np.ndarray, num_frames: int) -> np.ndarray:
    if len(frames) >= num_frames:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], num_frames - len(frames), axis=0)])


def decode_decord(
    path: Path, indices_for: callable, size: int | None, info: dict
) -> tuple[np.ndarray, list[int], float, int]:
    import decord

    kwargs = {}
    if size:
        w, h = resized_size(info["width"], info["height"], size)
        kwargs = {"width": w, "height": h}
    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **kwargs)
    total, fps = len(vr), float(vr.get_avg_fps() or info["fps"])
    idx = indices_for(total, fps)
    frames = vr.get_batch(idx).asnumpy()
    return frames, idx, fps, total


def decode_pyav(
    path: Path, indices_for: callable, size: int | None, info: dict
) -> tuple[np.ndarray, list[int], float, int]:
    """Decode with PyAV: seek near the first needed frame, convert only the needed frames."""
    import av

    fps = info["fps"]
    w, h = resized_size(info["width"], info["height"], size) if size else (info["width"], info["height"])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = info["frames"] or int(round(info["duration"] * fps))
        if total <= 0:
            total = sum(1 for _ in container.decode(stream))
            container.seek(0)
        idx = indices_for(total, fps)
        wanted = sorted(set(idx))
        got: dict[int, np.ndarray] = {}
        tb, start_pts = stream.time_base, stream.start_time or 0
        if wanted[0] > 0:
            container.seek(int(start_pts + wanted[0] / fps / tb), stream=stream, backward=True, any_frame=False)
        count = None
        for frame in container.decode(stream):
            if frame.pts is not None:
                i = int(round(float((frame.pts - start_pts) * tb) * fps))
            else:
                count = 0 if count is None else count + 1
                i = count
            if i in got or i not in wanted:
                if i > wanted[-1]:
                    break
                continue
            got[i] = frame.to_ndarray(format="rgb24", width=w, height=h)
            if len(got) == len(wanted):
                break
    if not got:
        raise VideoDecodeError(f"no frame could be decoded from {path}")
    # frames the stream ended before (truncated file, wrong frame count): use the nearest decoded one
    keys = np.array(sorted(got))
    frames = np.stack([got[int(keys[np.abs(keys - i).argmin()])] for i in idx])
    return frames, idx, fps, total


def sample_frames(
    path: str | os.PathLike,
    num_frames: int = 12,
    start: float | None = None,
    end: float | None = None,
    size: int | None = 224,
    sampling: str = "uniform",
    backend: str = "auto",
    rng: np.random.Generator | None = None,
) -> SampledFrames:
    """Sample ``num_frames`` RGB frames from a video file or from its clip ``[start, end]`` (seconds).

    ``size`` is the output side (shorter side resized, then centre crop); ``None`` keeps the full size.
    ``backend`` is ``auto`` (decord, PyAV if decord fails), ``decord`` or ``pyav``. Raises
    :class:`VideoDecodeError` with the reason for any unreadable input.
    """
    from ..option_values import positive_int

    path = Path(path)
    num_frames = positive_int("num_frames", num_frames)  # 0 or -3 used to return no frames
    if size is not None:
        size = positive_int("size", size)  # 0 used to mean full size; that is None
    for name, value in (("start", start), ("end", end)):
        if value is not None and (not math.isfinite(float(value)) or float(value) < 0):
            raise VideoDecodeError(f"{path}: segment {name} {value!r} must be a finite number of seconds >= 0")
    if start is not None and end is not None and float(end) <= float(start):
        raise VideoDecodeError(f"{path}: segment end <= start ({end} <= {start})")
    info = probe(path)
    if info["width"] <= 0 or info["height"] <= 0:
        raise VideoDecodeError(f"{path}: video stream has no frame size")

    def indices_for(total: int, fps: float) -> list[int]:
        first, last = _frame_range(total, fps, start, end, path)
        return _pick(first, last, num_frames, sampling, rng)

    backends = {"auto": ["decord", "pyav"], "decord": ["decord"], "pyav": ["pyav"]}.get(backend)
    if backends is None:
        raise OptionError(f"unknown backend {backend!r}; use 'auto', 'decord' or 'pyav'")
    errors = []
    for name in backends:
        try:
            decoder = decode_decord if name == "decord" else decode_pyav
            frames, idx, fps, total = decoder(path, indices_for, size, info)
            break
        except VideoDecodeError as exc:
            if "past the end" in str(exc) or "end <= start" in str(exc):
                raise
            errors.append(f"{name}: {exc}")
        except ImportError as exc:
            errors.append(f"{name}: not installed ({exc})")
        except Exception as exc:  # decord raises DECORDError, av raises av.error.*
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    else:
        raise VideoDecodeError(f"cannot decode {path}: " + "; ".join(errors))
    if size:
        frames = center_crop(frames, size)
    return SampledFrames(_pad(frames, num_frames), min(len(idx), num_frames), list(idx), name, fps, total)
