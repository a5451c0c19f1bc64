"""Recall tuning: the smallest ``ef_search`` (HNSW) or ``nprobe`` (IVF) that reaches a target recall@k.

autofaiss-style: measured against exact search on a sample of the indexed vectors moved off the data points.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .blas import blas_topk

EF_SEARCH_CANDIDATES = (16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)


def knob_candidates(knob: str, k: int, nlist: int | None = None) -> list[int]:
    """The values tried, smallest first: ``ef_search`` (at least ``k``) or ``nprobe`` (powers of 2 up to nlist)."""
    if knob == "ef_search":
        return [v for v in EF_SEARCH_CANDIDATES if v >= k]
    return sorted({min(int(nlist or 1), 2**i) for i in range(0, 17)})


def held_out_queries(xb: np.ndarray, sample: int, seed: int) -> np.ndarray:
    """Queries near, but not on, sampled indexed vectors.

    An indexed vector is itself a node of a graph index, and searches from it are easier than searches for a
    new query. Each sampled vector is moved in a random direction by its distance to its nearest neighbour: a
    point the index has not seen, at the spacing of the data.
    """
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(xb), size=min(sample, len(xb)), replace=False)
    _, nn = blas_topk(xb, np.arange(len(xb)), xb[pick], 2)
    spacing = np.linalg.norm(xb[pick] - xb[nn[:, 1]], axis=1, keepdims=True)
    step = rng.standard_normal(xb[pick].shape).astype(np.float32)
    step /= np.linalg.norm(step, axis=1, keepdims=True)
    q = xb[pick] + spacing * step
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q


def choose_knob(
    search_at: Callable[[int, np.ndarray, int], np.ndarray],
    ints: np.ndarray,
    xb: np.ndarray,
    knob: str,
    candidates: Sequence[int],
    k: int,
    target_recall: float,
    sample: int = 1000,
    seed: int = 0,
) -> tuple[int, float]:
    """``(value, measured recall@k)``: the first candidate whose recall reaches ``target_recall``.

    ``search_at(value, queries, k)`` returns the int ids the index finds with the knob at ``value``;
    ``(ints, xb)`` are the exact vectors of the live videos. The choice is made on the one-sided 95 % lower
    confidence bound of the recall, not the sample mean (the sample is finite). Warns when even the largest
    candidate misses the target.
    """
    k = min(k, len(xb))
    q = held_out_queries(xb, sample, seed)
    _, truth = blas_topk(xb, ints, q, k)
    truth_sets = truth.tolist()
    best = (candidates[-1], 0.0)
    for value in candidates:
        found = search_at(value, q, k)
        hits = np.array([len(set(t) & set(row)) / k for t, row in zip(truth_sets, found.tolist())])
        recall = float(hits.mean())
        best = (value, recall)
        if recall - 1.645 * hits.std(ddof=1) / np.sqrt(len(hits)) >= target_recall:
            break
    if best[1] < target_recall:
        warnings.warn(
            f"recall@{k} {best[1]:.3f} at the largest {knob} ({best[0]}) is below the target "
            f"{target_recall}: use a larger index (e.g. more HNSW links or IVF lists)",
            stacklevel=4,
        )
    return best
