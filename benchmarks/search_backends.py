"""faiss vs Milvus Lite on the same vectors and queries (issue 24). Figures and ratios from one run.

For each backend — exact faiss (the recall reference), faiss HNSW and Milvus Lite HNSW, both with
M=32, efConstruction=80, ef=128 — it measures:

* add throughput (vectors/s, in batches of 10,000); Milvus builds its HNSW graphs when a segment is
  sealed, so a flush plus the first search is timed apart as "build" and counted in "add + build";
* single-query latency (p50/p99) and batch-of-64 latency;
* recall@10 against exact search;
* filtered search at 1 % selectivity (``{"file": "f0.mp4"}``, 1 file of 100) and at 50 % (``$in`` 50 of
  the 100 files): p50 latency and recall@10 against the exact filtered top 10.

Vectors are a mixture of 2,000 clusters (video moments come in scenes: near-duplicates around a
centre), L2-normalised; queries are fresh draws from the same clusters. ::

    python benchmarks/search_backends.py --n 100000 --dim 512
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _util import latencies, summary

COMMITTED = Path(__file__).resolve().parent / "results_committed"


def clustered(n: int, d: int, clusters: int, seed: int, spread: float = 0.35) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random centres (fixed by ``d`` and ``clusters``)."""
    centres = np.random.default_rng(12345).standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + spread / np.sqrt(d) * rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(found: list[list], truth: np.ndarray, ids: list[str]) -> float:
    return float(
        np.mean([len({h.video_id for h in row} & {ids[i] for i in t}) / len(t) for row, t in zip(found, truth)])
    )


def exact_topk(x: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    sims = q @ x.T
    if mask is not None:
        sims[:, ~mask] = -np.inf
    return np.argsort(-sims, axis=1)[:, :k]


def measure(name: str, index, ids, x, meta, q, truth, filters, masks, args) -> dict:
    out: dict = {"backend": name}
    t0 = time.perf_counter()
    for s in range(0, len(x), args.add_batch):
        index.add(ids[s : s + args.add_batch], x[s : s + args.add_batch], meta[s : s + args.add_batch])
    out["add_s"] = round(time.perf_counter() - t0, 2)
    t1 = time.perf_counter()
    if hasattr(index, "flush"):  # Milvus: seal the segments and build their HNSW graphs now
        index.flush()
    index.search(q[:1], k=10)
    out["build_s"] = round(time.perf_counter() - t1, 3)
    out["add_per_s"] = round(len(x) / out["add_s"], 1)
    out["add_and_build_per_s"] = round(len(x) / (out["add_s"] + out["build_s"]), 1)
    it = iter(range(10**9))
    single = latencies(lambda: index.search(q[next(it) % len(q)], k=10), repeats=args.queries)
    out["single"] = summary(single, 1)
    batch = latencies(lambda: index.search(q[:64], k=10), repeats=args.batches, warmup=1)
    out["batch64"] = summary(batch, 64)
    out["recall@10"] = round(recall(index.search(q, k=10), truth, ids), 4)
    for label, flt in filters.items():
        it = iter(range(10**9))
        lat = latencies(lambda flt=flt: index.search(q[next(it) % len(q)], k=10, filter=flt), repeats=args.filtered)
        found = index.search(q, k=10, filter=flt)
        out[f"filtered_{label}"] = {
            **summary(lat, 1),
            "recall@10": round(recall(found, exact_topk(x, q, 10, masks[label]), ids), 4),
        }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    from mtvr.index import VideoIndex
    from mtvr.index.milvus import MilvusIndex

    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=100, help="single queries timed")
    p.add_argument("--batches", type=int, default=3, help="batches of 64 queries timed")
    p.add_argument("--filtered", type=int, default=50, help="filtered single queries timed per selectivity")
    p.add_argument("--add-batch", type=int, default=10_000)
    p.add_argument("--with-flat", action="store_true", help="also time exact faiss (recall is always against exact)")
    p.add_argument("--out", default=str(COMMITTED / "search_backends.json"))
    args = p.parse_args()

    x = clustered(args.n, args.dim, 2000, seed=0)
    q = clustered(max(args.queries, 64), args.dim, 2000, seed=1)
    ids = [f"v{i}" for i in range(args.n)]
    files = np.arange(args.n) % 100
    meta = [{"file": f"f{f}.mp4", "start": float(i // 100), "end": float(i // 100 + 1)} for i, f in enumerate(files)]
    filters = {"1pct": {"file": "f0.mp4"}, "50pct": {"file": {"$in": [f"f{f}.mp4" for f in range(50)]}}}
    masks = {"1pct": files == 0, "50pct": files < 50}
    truth = exact_topk(x, q, 10)

    results = []
    if args.with_flat:
        results.append(measure("faiss-flat", VideoIndex(args.dim), ids, x, meta, q, truth, filters, masks, args))
    hnsw = VideoIndex(args.dim, "hnsw", ef_search=128, ef_construction=80)
    results.append(measure("faiss-hnsw", hnsw, ids, x, meta, q, truth, filters, masks, args))
    del hnsw
    with tempfile.TemporaryDirectory(prefix="mtvr-milvus-bench-") as tmp:
        with MilvusIndex(
            f"milvus-lite://{tmp}/bench.db#bench",
            dim=args.dim,
            index_params={"M": 32, "efConstruction": 80},
            ef_search=128,
        ) as lite:
            results.append(measure("milvus-lite-hnsw", lite, ids, x, meta, q, truth, filters, masks, args))

    by = {r["backend"]: r for r in results}
    f, m = by["faiss-hnsw"], by["milvus-lite-hnsw"]
    ratios = {
        "add_throughput_faiss_over_milvus": round(f["add_per_s"] / m["add_per_s"], 2),
        "add_and_build_faiss_over_milvus": round(f["add_and_build_per_s"] / m["add_and_build_per_s"], 2),
        "single_p50_milvus_over_faiss": round(m["single"]["p50_ms"] / f["single"]["p50_ms"], 2),
        "batch64_p50_milvus_over_faiss": round(m["batch64"]["p50_ms"] / f["batch64"]["p50_ms"], 2),
        "filtered_1pct_p50_milvus_over_faiss": round(m["filtered_1pct"]["p50_ms"] / f["filtered_1pct"]["p50_ms"], 2),
        "filtered_50pct_p50_milvus_over_faiss": round(m["filtered_50pct"]["p50_ms"] / f["filtered_50pct"]["p50_ms"], 2),
        "recall@10": {r["backend"]: r["recall@10"] for r in results},
    }
    print("\nratios (faiss HNSW vs Milvus Lite HNSW, same vectors, same run):")
    for k, v in ratios.items():
        print(f"  {k}: {v}")
    import milvus_lite
    import pymilvus

    data = {
        "machine": {"cpu_count": os.cpu_count(), "note": "2 cores shared with other jobs unless stated otherwise"},
        "versions": {"pymilvus": pymilvus.__version__, "milvus_lite": milvus_lite.__version__},
        "n": args.n,
        "dim": args.dim,
        "results": results,
        "ratios": ratios,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
