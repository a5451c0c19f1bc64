"""Write frames to a video file with PyAV (used by the synthetic demo dataset and the tests)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    deterministic: bool = True,
) -> Path:
    """Encode ``uint8 [H, W, 3]`` RGB frames to ``path`` (container from the suffix), atomically.

    ``deterministic`` encodes on one thread (x264: also without threaded lookahead). Even so libx264 was
    seen to produce different bytes from run to run on some clips; ``codec="mpeg4"`` is byte-identical.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    try:
        with av.open(str(tmp), "w") as container:
            opts = dict(options or {})
            if deterministic and codec == "libx264":  # one thread, no threaded lookahead
                opts.setdefault("x264-params", "threads=1:lookahead-threads=1:sliced-threads=0:non-deterministic=0")
            stream = container.add_stream(codec, rate=fps, options=opts)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            if deterministic:
                stream.codec_context.thread_count = 1
            for i, frame in enumerate([first, *frames]):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                vf.pts = i  # explicit timestamps: without them x264's rate control varies from run to run
                vf.time_base = Fraction(1, fps)
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
