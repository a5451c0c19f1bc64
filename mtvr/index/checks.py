"""Checks every index backend applies to what callers pass in: video ids and metadata.

Search filters are checked by :func:`mtvr.filters.parse_filter` (one filter language for every backend).
"""

from __future__ import annotations

import json
from typing import Any

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
