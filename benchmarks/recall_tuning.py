"""Does a recall target hold on unseen queries? (issue 26 item 1)

For each (size, dim, data kind) an HNSW ``VideoIndex`` is tuned to ``--target`` recall@10 *without* queries (the
synthetic estimator of ``mtvr.index_tuning``), then searched with held-out queries drawn from the same
distribution as the data. Printed per case: the ef_search chosen, the recall the tuner estimated, the held-out
recall at that ef, the smallest ef on the ladder whose held-out recall reaches the target (the price of being
conservative), and the estimate of the previous estimator (indexed vectors moved by 1x their nearest-neighbour
spacing) at the same ef, for comparison. Data kinds: ``structured`` (Gaussian on a latent subspace + noise, as in
``benchmarks/search.py``), ``clustered`` (a mixture of 200 such Gaussians), ``uniform`` (random unit vectors).

    python benchmarks/recall_tuning.py --cases 10000:128:structured 100000:512:structured
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from search import structured, unit

COMMITTED = Path(__file__).resolve().parent / "results_committed"


def clustered(n: int, d: int, seed: int, clusters: int = 200) -> np.ndarray:
    centres = structured(clusters, d, 64 if d >= 128 else d // 2, 7)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * structured(n, d, 16, seed + 50, basis_seed=3)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def data(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    if kind == "structured":
        return structured(n, d, 64 if d >= 128 else d // 2, seed)
    if kind == "clustered":
        return clustered(n, d, seed)
    return unit(n, d, seed)


def recall_at(index, x: np.ndarray, q: np.ndarray, ef: int, k: int = 10) -> float:
    import faiss

    from mtvr.index.blas import blas_topk as exact_topk

    truth = exact_topk(x, np.arange(len(x)), q, k)[1]
    found = index.faiss_index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=ef))[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found.tolist(), truth.tolist())]))


def old_estimate_queries(x: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
    """The previous estimator: indexed vectors moved by 1x their nearest-neighbour spacing."""
    from mtvr.index.blas import blas_topk as exact_topk

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x), m, replace=False)
    _, nn = exact_topk(x, np.arange(len(x)), x[pick], 2)
    spacing = np.linalg.norm(x[pick] - x[nn[:, 1]], axis=1, keepdims=True)
    step = rng.standard_normal(x[pick].shape).astype(np.float32)
    q = x[pick] + spacing * step / np.linalg.norm(step, axis=1, keepdims=True)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    from mtvr import VideoIndex
    from mtvr.index.tuning import EF_SEARCH_CANDIDATES as EF_CANDIDATES

    p = argparse.ArgumentParser()
    p.add_argument("--cases", nargs="+", default=["10000:128:structured", "10000:128:clustered", "10000:128:uniform"])
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--out", default=str(COMMITTED / "recall_tuning.json"))
    args = p.parse_args()
    rows = []
    for case in args.cases:
        n, d, kind = case.split(":")
        n, d = int(n), int(d)
        x, held_out = data(kind, n, d, 0), data(kind, args.queries, d, 1)
        t0 = time.perf_counter()
        idx = VideoIndex(d, "hnsw", target_recall=args.target)
        idx.add([str(i) for i in range(n)], x)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        estimate = idx.measured_recall  # runs the tuning
        tune_s = time.perf_counter() - t0
        chosen = idx.ef_search
        ladder = {ef: recall_at(idx, x, held_out, ef) for ef in EF_CANDIDATES if 16 <= ef <= max(256, 2 * chosen)}
        needed = next((ef for ef, r in ladder.items() if r >= args.target), None)
        old = recall_at(idx, x, old_estimate_queries(x, 1000), chosen)
        row = {
            "n": n,
            "dim": d,
            "data": kind,
            "ef_chosen": chosen,
            "estimated_recall": estimate,
            "measured_on": idx.measured_on,
            "held_out_recall": ladder[chosen],
            "held_out_meets_target": ladder[chosen] >= args.target,
            "smallest_ef_meeting_target_held_out": needed,
            "old_estimator_recall_at_chosen_ef": round(old, 4),
            "held_out_recall_by_ef": ladder,
            "build_s": round(build_s, 1),
            "tune_s": round(tune_s, 1),
        }
        rows.append(row)
        print(
            f"{n:>8,} x {d:<4} {kind:<10} ef {chosen:>4}: estimated {estimate:.3f}, held-out {ladder[chosen]:.3f} "
            f"({'meets' if row['held_out_meets_target'] else 'MISSES'} {args.target}); smallest sufficient ef "
            f"{needed}; old estimator at this ef {old:.3f} | build {build_s:.0f} s, tune {tune_s:.0f} s",
            flush=True,
        )
        del idx, x
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target": args.target, "held_out_queries": args.queries, "cases": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
