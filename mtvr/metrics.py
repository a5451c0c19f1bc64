"""Retrieval metrics: R@K, median and mean rank, per language.

**Tie convention (pessimistic).** The rank of the correct item is ``1 +`` the number of *other*
candidates whose score is greater than **or equal to** its score. A model that gives every video the
same score therefore gets the worst rank, never the best; exact ties cannot inflate R@K.

* text → video: each text has one correct video; rank among all videos.
* video → text: a video may have several captions (MSR-VTT: 20, YouCook2: 1); the rank is that of
  its best-scored caption among all texts, other captions of the same video not counting against it.
* ``video_groups`` (optional, one label per video): videos with the same label answer each other's
  captions equally well (Multi-Shapes: clips that show the same shape, colour, motion and background).
  The rank is then that of the best-scored relevant item; the other relevant items do not count
  against it. Without groups every video is its own group (the standard protocol above).

R@K are percentages (0-100), as in the papers; MdR and MnR are 1-based ranks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import EvaluationError

METRIC_KEYS = ("R@1", "R@5", "R@10", "MdR", "MnR")


def _check(sims: np.ndarray, text_to_video: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    sims = np.asarray(sims, dtype=np.float64)
    gt = np.asarray(text_to_video, dtype=np.int64)
    if sims.ndim != 2:
        raise EvaluationError(f"similarity matrix must be 2-D [texts, videos], got shape {sims.shape}")
    if gt.shape != (sims.shape[0],):
        raise EvaluationError(f"text_to_video has {gt.shape[0] if gt.ndim else 0} entries for {sims.shape[0]} texts")
    if gt.size and (gt.min() < 0 or gt.max() >= sims.shape[1]):
        raise EvaluationError(f"text_to_video holds video indices outside [0, {sims.shape[1]})")
    if not np.isfinite(sims).all():
        raise EvaluationError("similarity matrix contains NaN or infinite values")
    return sims, gt


def _groups(video_groups: Sequence | None, n_videos: int) -> np.ndarray:
    """Integer group id per video (``arange`` without groups)."""
    if video_groups is None:
        return np.arange(n_videos)
    if len(video_groups) != n_videos:
        raise EvaluationError(f"video_groups has {len(video_groups)} entries for {n_videos} videos")
    index: dict = {}
    return np.asarray([index.setdefault(g, len(index)) for g in video_groups], dtype=np.int64)


def text_to_video_ranks(
    sims: np.ndarray,
    text_to_video: Sequence[int] | None = None,
    chunk: int = 4096,
    video_groups: Sequence | None = None,
) -> np.ndarray:
    """1-based rank of the best relevant video for each text (pessimistic ties): the correct video, or with
    ``video_groups`` any video in the correct video's group."""
    if text_to_video is None:
        text_to_video = np.arange(np.asarray(sims).shape[0])
    sims, gt = _check(sims, text_to_video)
    if video_groups is None:
        ranks = np.empty(len(gt), dtype=np.int64)
        for s in range(0, len(gt), chunk):
            block = sims[s : s + chunk]
            correct = block[np.arange(len(block)), gt[s : s + chunk]]
            ranks[s : s + chunk] = (block >= correct[:, None]).sum(1)
        return ranks
    group = _groups(video_groups, sims.shape[1])
    relevant = group[None, :] == group[gt][:, None]
    best = np.where(relevant, sims, -np.inf).max(1)
    return 1 + ((sims >= best[:, None]) & ~relevant).sum(1)


def video_to_text_ranks(
    sims: np.ndarray, text_to_video: Sequence[int] | None = None, video_groups: Sequence | None = None
) -> np.ndarray:
    """1-based rank of the best relevant caption of each video among all texts (pessimistic ties): a
    caption of the video, or with ``video_groups`` a caption of any video in its group.

    Videos without any caption are skipped (they have no correct answer).
    """
    if text_to_video is None:
        text_to_video = np.arange(np.asarray(sims).shape[0])
    sims, gt = _check(sims, text_to_video)
    text_group = _groups(video_groups, sims.shape[1])[gt]
    video_group = _groups(video_groups, sims.shape[1])
    ranks = []
    for j in np.unique(gt):
        col = sims[:, j]
        own = text_group == video_group[j]
        best = col[own].max()
        ranks.append(1 + int(((col >= best) & ~own).sum()))
    return np.asarray(ranks, dtype=np.int64)


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float]:
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise EvaluationError("no ranks: the evaluation set is empty")
    out = {f"R@{k}": float(100.0 * (ranks <= k).mean()) for k in (1, 5, 10)}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(ranks.mean())
    return out


def retrieval_metrics(
    sims: np.ndarray, text_to_video: Sequence[int] | None = None, video_groups: Sequence | None = None
) -> dict[str, dict[str, float]]:
    """``{"t2v": {...}, "v2t": {...}}`` with R@1, R@5, R@10, MdR, MnR for a ``[texts, videos]`` matrix.

    ``text_to_video[i]`` is the index of the video that text ``i`` describes; when omitted the matrix is
    square and text ``i`` describes video ``i``. ``video_groups``: see the module docstring.
    """
    return {
        "t2v": metrics_from_ranks(text_to_video_ranks(sims, text_to_video, video_groups=video_groups)),
        "v2t": metrics_from_ranks(video_to_text_ranks(sims, text_to_video, video_groups)),
    }


@dataclass
class LanguageReport:
    """Metrics per language plus their mean over languages; renders as Markdown or JSON."""

    results: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    name: str = ""

    def add(self, language: str, metrics: Mapping[str, Mapping[str, float]]) -> None:
        self.results[language] = {d: dict(m) for d, m in metrics.items()}

    @property
    def languages(self) -> list[str]:
        return list(self.results)

    def mean(self, direction: str = "t2v") -> dict[str, float]:
        if not self.results:
            return {}
        return {k: float(np.mean([r[direction][k] for r in self.results.values()])) for k in METRIC_KEYS}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "languages": self.results,
            "mean": {d: self.mean(d) for d in ("t2v", "v2t") if self.results},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping) -> LanguageReport:
        return cls(
            results={k: {d: dict(m) for d, m in v.items()} for k, v in data["languages"].items()},
            name=data.get("name", ""),
        )

    def to_markdown(self, direction: str = "t2v") -> str:
        arrow = "text → video" if direction == "t2v" else "video → text"
        head = f"| language ({arrow}) | " + " | ".join(METRIC_KEYS) + " |"
        rows = [head, "|" + "---|" * (len(METRIC_KEYS) + 1)]
        for lang, res in list(self.results.items()) + [("**mean**", {direction: self.mean(direction)})]:
            m = res[direction]
            rows.append(f"| {lang} | " + " | ".join(_fmt(k, m[k]) for k in METRIC_KEYS) + " |")
        return "\n".join(rows)


def _fmt(key: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}"


def evaluate_embeddings(
    text_embeddings: Mapping[str, np.ndarray],
    video_embeddings: np.ndarray,
    text_to_video: Mapping[str, Sequence[int]] | Sequence[int],
    name: str = "",
) -> LanguageReport:
    """Per-language report from text embeddings per language and one set of video embeddings."""
    report = LanguageReport(name=name)
    for lang, emb in text_embeddings.items():
        t2v = text_to_video[lang] if isinstance(text_to_video, Mapping) else text_to_video
        report.add(lang, retrieval_metrics(np.asarray(emb) @ np.asarray(video_embeddings).T, t2v))
    return report


def chance_r_at_k(num_videos: int, k: int = 1) -> float:
    return 100.0 * min(k, num_videos) / num_videos


# ---------------------------------------------------------------------- moment retrieval
# Video corpus moment retrieval as the field scores it (Moment-DETR / QVHighlights, Lei et al. 2021; TVR,
# Lei et al. 2020): a predicted moment is (file, start, end); it is correct at IoU threshold θ when it lies
# in the right file and its temporal IoU with a ground-truth window (the best one when several) is >= θ.
# R1@θ counts the top-1 prediction, Rk@θ any of the top k; mIoU is the mean IoU of the top-1 prediction
# (0 when it is in the wrong file or missing). All are percentages (0-100).

MOMENT_THRESHOLDS = (0.5, 0.7)


def temporal_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two time ranges ``(start, end)``; 0 when they do not overlap."""
    (s1, e1), (s2, e2) = (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))
    for s, e in ((s1, e1), (s2, e2)):
        if not (math.isfinite(s) and math.isfinite(e)) or e < s:
            raise EvaluationError(f"time range ({s}, {e}) must be finite with end >= start")
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = max(e1, e2) - min(s1, s2)
    return inter / union if union > 0 else float(s1 == s2 and e1 == e2)


def _moment_iou(pred: Sequence, truths: Sequence[Sequence]) -> float:
    """Best IoU of a ``(file, start, end)`` prediction with the ground-truth windows of its file."""
    return max((temporal_iou(pred[1:], t[1:]) for t in truths if t[0] == pred[0]), default=0.0)


def moment_metrics(
    predictions: Sequence[Sequence[Sequence]],
    ground_truth: Sequence[Sequence | Sequence[Sequence]],
    thresholds: Sequence[float] = MOMENT_THRESHOLDS,
    ks: Sequence[int] = (1,),
) -> dict[str, float]:
    """``{"R1@0.5", "R1@0.7", ..., "mIoU"}`` (percentages) for ranked moment predictions.

    ``predictions[q]`` lists query ``q``'s moments ``(file, start, end)`` best first (may be empty);
    ``ground_truth[q]`` is one ``(file, start, end)`` window or a list of them (any one is correct).
    Keys are ``R{k}@{θ}`` for every ``k`` in ``ks`` and ``θ`` in ``thresholds``, and ``mIoU``.
    """
    if len(predictions) != len(ground_truth):
        raise EvaluationError(f"{len(predictions)} prediction lists for {len(ground_truth)} ground-truth entries")
    if not predictions:
        raise EvaluationError("no queries: the evaluation set is empty")
    for t in thresholds:
        if not 0.0 < float(t) <= 1.0:
            raise EvaluationError(f"IoU threshold {t!r} must be in (0, 1]")
    ious = []  # per query: IoU of each of its top max(ks) predictions
    for preds, truth in zip(predictions, ground_truth):
        truths = [truth] if truth and not isinstance(truth[0], (list, tuple)) else list(truth)
        ious.append([_moment_iou(p, truths) for p in list(preds)[: max(ks)]])
    out = {}
    for k in ks:
        for t in thresholds:
            hits = [any(v >= float(t) - 1e-9 for v in row[:k]) for row in ious]
            out[f"R{k}@{t}"] = 100.0 * float(np.mean(hits))
    out["mIoU"] = 100.0 * float(np.mean([row[0] if row else 0.0 for row in ious]))
    return out


__all__: Iterable[str] = [
    "retrieval_metrics",
    "text_to_video_ranks",
    "video_to_text_ranks",
    "LanguageReport",
    "evaluate_embeddings",
    "metrics_from_ranks",
    "METRIC_KEYS",
    "moment_metrics",
    "temporal_iou",
]
