"""Write frames to a video file with PyAV (used by the synthetic demo dataset and the tests)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 10, codec: str = "libx264",
                pix_fmt: str = "yuv420p", options: dict[str, str] | None = None) -> Path:
    """Encode ``uint8 [H, W, 3]`` RGB frames to ``path`` (container from the suffix), atomically."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream(codec, rate=fps, options=options or {})
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            for frame in [first, *frames]:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
