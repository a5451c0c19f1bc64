"""Exact inner-product top-k by one matrix product: the fast path for flat indexes on the CPU."""

from __future__ import annotations

import numpy as np

CHUNK_ELEMENTS = 1 << 25  # similarities held at once (32 Mi: 128 MiB of float32 + the partial sort's indices)


def blas_topk(xb: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` by one matrix product (BLAS, all cores) and a partial sort.

    Returns ``(scores [n_q, k], ids [n_q, k])``, best first; ``ids`` are taken from ``ids`` by row of ``xb``.
    Queries go through in chunks of ``CHUNK_ELEMENTS // len(xb)`` rows: 1,000 queries against 1M vectors
    in one product needed 4 GB of similarities and 8 GB of partial-sort indices (the recall tuner was
    killed for memory at that size, issue 26).
    """
    rows = max(1, CHUNK_ELEMENTS // max(1, len(xb)))
    if len(q) <= rows:
        return _topk(xb, ids, q, k)
    parts = [_topk(xb, ids, q[s : s + rows], k) for s in range(0, len(q), rows)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _topk(xb: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = q @ xb.T
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), (len(q), sims.shape[1]))
    top = np.take_along_axis(sims, part, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    pos = np.take_along_axis(part, order, 1)
    return np.take_along_axis(top, order, 1), ids[pos]
