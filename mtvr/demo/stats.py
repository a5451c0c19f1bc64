"""The demo's statistics: chance with several relevant clips, bootstrap intervals, paired differences.

In Multi-Shapes a caption names a shape, a colour, a motion and a background (the clip's *scene*); several
test clips can share all four (they differ in position, speed, size and noise), and every one of them
answers the caption. A query's rank is therefore the rank of its best clip of the same scene
(``mtvr.metrics.text_to_video_ranks`` with ``video_groups``), and R@1 asks whether the top clip is relevant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def chance_r1(query_keys: Sequence, video_keys: Sequence) -> float:
    """Expected R@1 (%) of a random ranking: the mean fraction of relevant videos."""
    counts = {}
    for k in video_keys:
        counts[k] = counts.get(k, 0) + 1
    return 100.0 * float(np.mean([counts[k] / len(video_keys) for k in query_keys]))


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling queries)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, float | bool]:
    """``mean(b − a)`` over the same queries with its paired bootstrap 95 % interval; significant when the
    interval excludes 0."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    lo, hi = bootstrap_ci(diff, n_boot, seed)
    return {"diff": float(diff.mean()), "ci_low": lo, "ci_high": hi, "significant": bool(lo > 0 or hi < 0)}
