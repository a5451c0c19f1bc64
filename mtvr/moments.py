"""From ranked segment hits to moments: temporal NMS per file, merging of adjacent windows, one hit per file.

Overlapping windows of one file that all match a query are one moment, not several results. Given hits
ranked best first (each with ``metadata["file"]`` and ``start``/``end`` seconds; a hit without them covers
its whole file), in this order:

1. :func:`merge_adjacent` (optional, ``merge=True``): for each file, the best remaining window grows into a
   run of windows of that file that overlap or touch it (gap ``<= gap`` seconds) and score within
   ``margin`` of it; the moment spans the run (``start`` of the first, ``end`` of the last), keeps the
   best score and says how many windows it merged (``metadata["windows"]``).
2. :func:`temporal_nms`: greedy non-maximum suppression per file (as in temporal action detection, e.g.
   BMN, Lin et al. 2019): a hit is dropped when its temporal IoU with a better kept hit of the same file
   exceeds ``iou``. The default ``iou=0`` drops any overlap: no two returned moments of a file overlap.
   Hits without ``start``/``end`` (whole clips) are never suppressed: nothing says where they lie.
3. :func:`group_by_file` (``group_by="file"``): the best moment of each file only.

Ranks are renumbered 1..n after each step. The functions are pure (hits in, hits out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .errors import VideoIndexError

GROUP_BY = (None, "file")


def _span(hit: Any) -> tuple[Any, float, float]:
    """(file key, start, end) of a hit: its ``file`` (the id when none) and its segment (whole file if none)."""
    meta = hit.metadata or {}
    key = meta.get("file", hit.video_id)
    start, end = meta.get("start"), meta.get("end")
    if not (_seconds(start) and _seconds(end)) or end < start:  # no usable time range (missing or not numbers)
        return key, 0.0, math.inf
    return key, float(start), float(end)


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    union = max(a[1], b[1]) - min(a[0], b[0])
    return 1.0 if math.isinf(union) else inter / union


def _reranked(hits: Sequence[Any]) -> list[Any]:
    """The hits with ranks 1, 2, ... — new objects only where a rank changes (hits are frozen dataclasses; on an
    index of whole clips nothing is removed, so a search pays nothing here)."""
    return [h if h.rank == r else replace(h, rank=r) for r, h in enumerate(hits, 1)]


def temporal_nms(hits: Sequence[Any], iou: float = 0.0) -> list[Any]:
    """Keep hits (best first) whose temporal IoU with every better kept hit of the same file is ``<= iou``."""
    if not 0.0 <= float(iou) < 1.0:
        raise VideoIndexError(f"nms iou must be in [0, 1), got {iou!r}")
    kept: list[Any] = []
    by_file: dict[Any, list[tuple[float, float]]] = {}
    for h in hits:
        key, s, e = _span(h)
        if math.isinf(e):  # no time range (a whole clip): nothing to compare, never suppressed
            kept.append(h)
            continue
        spans = by_file.setdefault(key, [])
        if any(_iou((s, e), other) > iou for other in spans):
            continue
        spans.append((s, e))
        kept.append(h)
    return _reranked(kept)


def merge_adjacent(hits: Sequence[Any], margin: float = 0.05, gap: float = 0.0) -> list[Any]:
    """Merge each file's best window with the windows next to it that score within ``margin`` of it.

    ``hits`` are best first. A merged moment takes the best window's id and score and the union of the
    run's times; ``metadata["windows"]`` counts the windows merged. Windows used by a moment are not
    returned on their own. Hits without times are left as they are.
    """
    if not math.isfinite(margin) or margin < 0 or not math.isfinite(gap) or gap < 0:
        raise VideoIndexError(f"merge margin and gap must be finite and >= 0, got {margin!r}, {gap!r}")
    used = [False] * len(hits)
    spans = [_span(h) for h in hits]
    out = []
    for i, h in enumerate(hits):
        if used[i]:
            continue
        used[i] = True
        key, s, e = spans[i]
        if math.isinf(e):
            out.append(h)
            continue
        n = 1
        grew = True
        while grew:  # absorb neighbours of the current run until none qualifies
            grew = False
            for j in range(i + 1, len(hits)):
                kj, sj, ej = spans[j]
                if used[j] or kj != key or math.isinf(ej) or hits[j].score < h.score - margin:
                    continue
                if sj <= e + gap and ej >= s - gap:
                    used[j] = True
                    s, e, n, grew = min(s, sj), max(e, ej), n + 1, True
        if n > 1:
            h = replace(h, metadata={**(h.metadata or {}), "start": s, "end": e, "windows": n})
        out.append(h)
    return _reranked(out)


def group_by_file(hits: Sequence[Any]) -> list[Any]:
    """The best hit of each file, best first."""
    seen: set[Any] = set()
    out = []
    for h in hits:
        key = _span(h)[0]
        if key not in seen:
            seen.add(key)
            out.append(h)
    return _reranked(out)


def to_moments(
    hits: Sequence[Any],
    *,
    nms: bool = True,
    nms_iou: float = 0.0,
    merge: bool = False,
    merge_margin: float = 0.05,
    group_by: str | None = None,
) -> list[Any]:
    """Apply merge (optional), temporal NMS (default on) and grouping (optional) to ranked hits."""
    if group_by not in GROUP_BY:
        raise VideoIndexError(f"group_by={group_by!r}: use None or 'file'")
    if not math.isfinite(merge_margin) or merge_margin < 0:
        raise VideoIndexError(f"merge margin must be finite and >= 0, got {merge_margin!r}")
    out = list(hits)
    if merge:
        out = merge_adjacent(out, margin=merge_margin)
    if nms:
        out = temporal_nms(out, iou=nms_iou)
    if group_by == "file":
        out = group_by_file(out)
    return out
