"""Exact inner-product top-k by one matrix product: the fast path for flat indexes on the CPU."""

from __future__ import annotations

import numpy as np


def blas_topk(xb: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` by one matrix product (BLAS, all cores) and a partial sort.

    Returns ``(scores [n_q, k], ids [n_q, k])``, best first; ``ids`` are taken from ``ids`` by row of ``xb``.
    """
    sims = q @ xb.T
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), (len(q), sims.shape[1]))
    top = np.take_along_axis(sims, part, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    pos = np.take_along_axis(part, order, 1)
    return np.take_along_axis(top, order, 1), ids[pos]
