"""Recall tuning: the smallest ``ef_search`` (HNSW) or ``nprobe`` (IVF) that reaches a target recall@k.

Which queries it is measured on, and tie-aware recall:

An approximate index (HNSW ``ef_search``, IVF ``nprobe``) is tuned to the smallest setting whose recall@k against
exact search reaches a target. What the recall is measured *on* decides whether the target holds for the queries
users send:

* **real queries** (``VideoIndex.tune(queries=...)``, ``mtvr index --tune-queries``): the embeddings of captions or
  logged queries. This is the measurement to trust.
* **synthetic queries** when none are known. Indexed vectors themselves are nodes of the graph and far easier than
  new queries; moving them by their nearest-neighbour spacing (the estimator used before) was measured optimistic
  on 100k x 512 vectors with 64-d structure (estimated 0.964 at ef 128, held-out 0.920; see
  ``benchmarks/recall_tuning.py``, results in ``benchmarks/results_committed/recall_tuning.json``). Two sets are measured and the *lower* recall is used:

  - ``gaussian``: draws from a Gaussian fitted to the indexed vectors (mean + covariance from an SVD of a sample),
    normalised. On data that is Gaussian-like this is the query distribution itself; on clustered data it puts
    queries between clusters, which graph search finds harder (conservative);
  - ``perturbed``: indexed vectors moved in a random direction by twice their nearest-neighbour spacing.

Recall counts ties: a returned video is correct when its exact score is at least the k-th exact score (a
collection of identical vectors has recall 1, not 0, whichever of the tied ids the index returns).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import VideoIndexError
from .blas import blas_topk

EF_SEARCH_CANDIDATES = (16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)
GAUSSIAN_FIT_SAMPLE = 20_000
SCORE_TOLERANCE = 1e-5  # float32 inner products of equal vectors computed in different orders differ by ~1e-7


def knob_candidates(knob: str, k: int, nlist: int | None = None) -> list[int]:
    """The values tried, smallest first: ``ef_search`` (at least ``k``) or ``nprobe`` (powers of 2 up to nlist)."""
    if knob == "ef_search":
        return [v for v in EF_SEARCH_CANDIDATES if v >= k]
    return sorted({min(int(nlist or 1), 2**i) for i in range(0, 17)})


@dataclass(frozen=True)
class TuningResult:
    """The chosen knob value and the recall measured at it, on which queries."""

    value: int
    recall: float
    measured_on: str
    per_set: dict[str, float]


def check_tuning_queries(queries: Any, dim: int) -> np.ndarray:
    """Real query embeddings for tuning as a normalised float32 ``[m, dim]`` array, or a clear error."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim or len(q) == 0:
        raise VideoIndexError(f"tuning queries have shape {q.shape}; expected [m >= 1, {dim}]")
    if not np.isfinite(q).all():
        raise VideoIndexError("tuning queries have NaN or infinite values")
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if (norms == 0).any():
        raise VideoIndexError("a tuning query is the zero vector")
    return np.ascontiguousarray(q / norms)


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def synthetic_queries(xb: np.ndarray, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Queries the index has not seen, at the difficulty of unseen queries (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n, dim = xb.shape
    fit = xb if n <= GAUSSIAN_FIT_SAMPLE else xb[rng.choice(n, GAUSSIAN_FIT_SAMPLE, replace=False)]
    mean = fit.mean(0)
    if len(fit) > 1:
        _, sv, vt = np.linalg.svd(fit - mean, full_matrices=False)
        scale = sv / np.sqrt(len(fit) - 1)
        gauss = mean + (rng.standard_normal((count, len(sv))).astype(np.float32) * scale) @ vt
    else:  # one vector: no spread to fit; isotropic noise around it
        gauss = mean + 0.1 * rng.standard_normal((count, dim)).astype(np.float32) / np.sqrt(dim)
    pick = rng.choice(n, size=min(count, n), replace=n < count)
    xs = xb[pick]
    if n > 1:
        _, nn_rows = blas_topk(xb, np.arange(n), xs, 2)
        # the nearest *other* row: the first neighbour is usually the vector itself, unless duplicated
        other = np.where(nn_rows[:, 0] == pick, nn_rows[:, 1], nn_rows[:, 0])
        spacing = np.linalg.norm(xs - xb[other], axis=1, keepdims=True)
    else:
        spacing = np.full((len(xs), 1), 0.1, dtype=np.float32)
    spacing = np.maximum(spacing, 1e-3)  # duplicates: still move off the node
    step = _normalise(rng.standard_normal(xs.shape).astype(np.float32))
    return {"gaussian": _normalise(gauss), "perturbed": _normalise(xs + 2.0 * spacing * step)}


def tie_aware_recall(
    xb: np.ndarray, ids: np.ndarray, q: np.ndarray, found: np.ndarray, kth_score: np.ndarray, k: int
) -> np.ndarray:
    """Per-query recall@k: the share of ``found`` ids whose exact score reaches the k-th exact score."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    flat = found.reshape(-1)
    pos = np.clip(np.searchsorted(sorted_ids, flat), 0, len(sorted_ids) - 1)
    valid = (flat >= 0) & (sorted_ids[pos] == flat)
    rows = order[pos].reshape(found.shape)
    scores = np.einsum("qd,qkd->qk", q, xb[rows])
    good = valid.reshape(found.shape) & (scores >= kth_score[:, None] - SCORE_TOLERANCE)
    # an index returning the same id twice must not count it twice
    dedup = np.array([len(set(row[g].tolist())) for row, g in zip(found, good)], dtype=np.float64)
    return np.minimum(dedup, k) / k


def choose(
    search: Callable[[np.ndarray, int, int], np.ndarray],
    candidates: Sequence[int],
    query_sets: dict[str, np.ndarray],
    xb: np.ndarray,
    ids: np.ndarray,
    k: int,
    target: float,
) -> TuningResult:
    """The smallest candidate whose recall reaches ``target`` on *every* query set.

    ``search(queries, k, value)`` returns the ids an index finds at knob ``value``. The decision uses the one-sided
    95 % lower confidence bound of the mean (the sample is finite); the recall reported is the lowest mean over the
    sets. When no candidate reaches the target, the largest is returned with its recall.
    """
    truth = {name: blas_topk(xb, ids, q, k)[0][:, -1] for name, q in query_sets.items()}
    result: TuningResult | None = None
    for value in candidates:
        per_set: dict[str, float] = {}
        passed = True
        for name, q in query_sets.items():
            hits = tie_aware_recall(xb, ids, q, search(q, k, value), truth[name], k)
            mean = float(hits.mean())
            per_set[name] = mean
            spread = float(hits.std(ddof=1)) / np.sqrt(len(hits)) if len(hits) > 1 else 0.0
            passed = passed and mean - 1.645 * spread >= target
        worst = min(per_set, key=per_set.__getitem__)
        result = TuningResult(int(value), per_set[worst], worst, per_set)
        if passed:
            break
    assert result is not None
    if result.recall < target:
        warnings.warn(
            f"recall@{k} {result.recall:.3f} at the largest setting ({result.value}) is below the target {target}: "
            "use a larger index (e.g. more HNSW links or IVF lists)",
            stacklevel=4,
        )
    return result
