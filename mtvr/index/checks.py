"""Checks every index backend applies to what callers pass in: video ids and metadata.

Search filters are checked by :func:`mtvr.filters.parse_filter` (one filter language for every backend).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import VideoIndexError


def check_video_ids(video_ids: Any) -> list[str]:
    """Video ids must be a sequence of strings writable as UTF-8 JSON (not one string, not numbers)."""
    if isinstance(video_ids, (str, bytes)):
        raise VideoIndexError(
            f"video_ids must be a list of ids, got the single string {video_ids!r:.60}; wrap it in a list"
        )
    ids = list(video_ids)
    for i, v in enumerate(ids):
        if not isinstance(v, str):
            raise VideoIndexError(f"video id #{i} is a {type(v).__name__} ({v!r:.40}), not a string")
        if not v:
            raise VideoIndexError(f"video id #{i} is empty")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise VideoIndexError(
                f"video id #{i} ({v!r:.60}) cannot be written as UTF-8 (lone surrogate, e.g. "
                "from a non-UTF-8 file name); decode the name first"
            ) from None
    return ids


def check_metadata(metadata: Any, video_ids: list[str]) -> list[dict[str, Any] | None] | None:
    """Each metadata entry must be ``None`` or a JSON object (strings, numbers, lists...) in UTF-8."""
    if metadata is None:
        return None
    if isinstance(metadata, dict):
        raise VideoIndexError("metadata must be a list with one entry (a dict or None) per video, got one dict")
    entries = list(metadata)
    if len(entries) != len(video_ids):
        raise VideoIndexError(f"{len(video_ids)} video ids but {len(entries)} metadata entries")
    out: list[dict[str, Any] | None] = []
    for v, meta in zip(video_ids, entries):
        if meta is None:
            out.append(None)
            continue
        if not isinstance(meta, dict):
            raise VideoIndexError(f"metadata of video {v!r} is a {type(meta).__name__}, not a dict")
        try:
            text = json.dumps(meta, ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise VideoIndexError(
                f"metadata of video {v!r} cannot be saved as UTF-8 JSON ({exc}); use plain "
                "str / int / float / bool / list / dict values (convert numpy scalars)"
            ) from None
        out.append(json.loads(text))
    return out


def check_embeddings(video_ids: list[str], embeddings: Any, dim: int) -> np.ndarray:
    """``embeddings`` as a contiguous float32 ``[len(video_ids), dim]`` array of finite values, the ids unique.

    The checks every backend's ``add`` makes before it changes anything.
    """
    x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] != dim:
        raise VideoIndexError(f"embeddings have shape {x.shape}; this index expects [n, {dim}]")
    if x.shape[0] != len(video_ids):
        raise VideoIndexError(f"{len(video_ids)} video ids but {x.shape[0]} embeddings")
    if not np.isfinite(x).all():
        bad = video_ids[int(np.where(~np.isfinite(x).all(1))[0][0])]
        raise VideoIndexError(f"embedding of video {bad!r} has NaN or infinite values")
    seen: set[str] = set()
    for v in video_ids:
        if v in seen:
            raise VideoIndexError(f"video id {v!r} appears twice in this add() call")
        seen.add(v)
    return x
