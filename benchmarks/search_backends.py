"""faiss vs Milvus Lite on the same vectors and queries (issue 24), and the cost of metadata filters (issue 22).
Figures and ratios from one run.

For each backend — exact faiss (``faiss-flat``, also the recall reference), faiss HNSW and Milvus Lite HNSW,
both with M=32, efConstruction=80, ef=128 — it measures:

* add throughput (vectors/s, in batches of 10,000); Milvus builds its HNSW graphs when a segment is
  sealed, so a flush plus the first search is timed apart as "build" and counted in "add + build";
* single-query latency (p50/p99) and batch-of-64 latency;
* recall@10 against exact search;
* filtered single-query search at 0.1 %, 1 %, 10 % and 50 % selectivity: p50 latency, recall@10 against the
  exact filtered top 10, and the ratio of the filtered p50 to the unfiltered p50 of the same backend in the
  same run. The filters cover each kind of condition: equality on a 1,000-valued key (``{"file": "f0.mp4"}``,
  0.1 %), on a 100-valued key (``{"channel": "c0"}``, 1 %), a numeric range (``start`` in [50, 70): 10 %), a
  50-value ``$in`` (``channel`` in 50 of 100: 50 %) and a numeric range selecting half (``50pct_range``).

Vectors are a mixture of 2,000 clusters (video moments come in scenes: near-duplicates around a
centre), L2-normalised; queries are fresh draws from the same clusters. ::

    python benchmarks/search_backends.py --n 100000 --dim 512
    # filter cost before/after a change: run the same script on each version of the code
    PYTHONPATH=/path/to/old/checkout python benchmarks/search_backends.py --backends faiss-flat,faiss-hnsw \
        --filtered 5 --out benchmarks/results_committed/filtered_search_before.json
    python benchmarks/search_backends.py --with-flat --before benchmarks/results_committed/filtered_search_before.json
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
        k = min(k, int(mask.sum()))  # a filter selecting fewer than k: all of them is the truth
    return np.argsort(-sims, axis=1)[:, :k]


BACKENDS = ("faiss-flat", "faiss-hnsw", "milvus-lite")


def metadata(n: int) -> tuple[list[dict], dict[str, dict], dict[str, np.ndarray]]:
    """Per-vector metadata, the filters measured (label -> filter) and their selections (label -> mask)."""
    i = np.arange(n)
    file, channel = i % 1000, i % 100
    start = ((i * 7919) % 20000) / 100.0  # seconds in [0, 200), spread over the collection
    meta = [
        {"file": f"f{f}.mp4", "channel": f"c{c}", "start": float(s), "end": float(s) + 4.0}
        for f, c, s in zip(file.tolist(), channel.tolist(), start.tolist())
    ]
    filters = {
        "0.1pct": {"file": "f0.mp4"},
        "1pct": {"channel": "c0"},
        "10pct": {"start": {"$gte": 50.0, "$lt": 70.0}},
        "50pct": {"channel": {"$in": [f"c{c}" for c in range(50)]}},
        "50pct_range": {"start": {"$lt": 100.0}},
    }
    masks = {
        "0.1pct": file == 0,
        "1pct": channel == 0,
        "10pct": (start >= 50.0) & (start < 70.0),
        "50pct": channel < 50,
        "50pct_range": start < 100.0,
    }
    return meta, filters, masks


def code_version() -> str:
    """Which mtvr this run measured: the folder it was imported from and its git commit."""
    import subprocess

    import mtvr

    folder = Path(mtvr.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"{folder} @ {commit}"


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
        lat = latencies(
            lambda flt=flt: index.search(q[next(it) % len(q)], k=10, filter=flt), repeats=args.filtered, warmup=1
        )
        found = index.search(q[: args.recall_queries], k=10, filter=flt)
        out[f"filtered_{label}"] = {
            **summary(lat, 1),
            "selected": int(masks[label].sum()),
            "recall@10": round(recall(found, exact_topk(x, q[: args.recall_queries], 10, masks[label]), ids), 4),
            "p50_over_unfiltered": round(1e3 * float(np.percentile(lat, 50)) / out["single"]["p50_ms"], 3),
        }
        print(f"  {name} filtered {label}: {out[f'filtered_{label}']}", flush=True)
    print(json.dumps(out), flush=True)
    return out


def compare(results: list[dict], before_file: Path) -> dict:
    """Filtered p50 latencies of this run against a run of the same script on other code (``--before``)."""
    before = json.loads(before_file.read_text())
    old = {r["backend"]: r for r in before["results"]}
    out: dict = {"before_file": before_file.name, "before_code": before.get("code")}
    for r in results:
        b = old.get(r["backend"])
        if b is None:
            continue
        rows = {}
        for key in [k for k in r if k.startswith("filtered_") and k in b]:
            rows[key[len("filtered_") :]] = {
                "before_p50_ms": b[key]["p50_ms"],
                "after_p50_ms": r[key]["p50_ms"],
                "speedup": round(b[key]["p50_ms"] / r[key]["p50_ms"], 1),
                "before_over_unfiltered": round(b[key]["p50_ms"] / b["single"]["p50_ms"], 2),
                "after_over_unfiltered": r[key]["p50_over_unfiltered"],
            }
        out[r["backend"]] = rows
    return out


def main() -> None:
    from mtvr.index import VideoIndex

    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=100, help="single queries timed")
    p.add_argument("--batches", type=int, default=3, help="batches of 64 queries timed")
    p.add_argument("--filtered", type=int, default=50, help="filtered single queries timed per selectivity")
    p.add_argument("--recall-queries", type=int, default=64, help="queries whose filtered recall@10 is measured")
    p.add_argument("--add-batch", type=int, default=10_000)
    p.add_argument("--backends", default="faiss-hnsw,milvus-lite", help=f"comma-separated, of {', '.join(BACKENDS)}")
    p.add_argument("--with-flat", action="store_true", help="also time exact faiss (recall is always against exact)")
    p.add_argument("--before", type=Path, help="a result file of this script run on other code: compare filters")
    p.add_argument("--out", default=str(COMMITTED / "search_backends.json"))
    args = p.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.with_flat and "faiss-flat" not in backends:
        backends.insert(0, "faiss-flat")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        p.error(f"unknown backend {unknown[0]!r}; use {', '.join(BACKENDS)}")

    x = clustered(args.n, args.dim, 2000, seed=0)
    q = clustered(max(args.queries, 64, args.recall_queries), args.dim, 2000, seed=1)
    ids = [f"v{i}" for i in range(args.n)]
    meta, filters, masks = metadata(args.n)
    truth = exact_topk(x, q, 10)

    results = []
    for name in backends:
        if name == "faiss-flat":
            results.append(measure(name, VideoIndex(args.dim), ids, x, meta, q, truth, filters, masks, args))
        elif name == "faiss-hnsw":
            hnsw = VideoIndex(args.dim, "hnsw", ef_search=128, ef_construction=80)
            results.append(measure(name, hnsw, ids, x, meta, q, truth, filters, masks, args))
            del hnsw
        else:
            from mtvr.index.milvus import MilvusIndex

            with tempfile.TemporaryDirectory(prefix="mtvr-milvus-bench-") as tmp:
                with MilvusIndex(
                    f"milvus-lite://{tmp}/bench.db#bench",
                    dim=args.dim,
                    index_params={"M": 32, "efConstruction": 80},
                    ef_search=128,
                ) as lite:
                    results.append(measure(name, lite, ids, x, meta, q, truth, filters, masks, args))

    by = {r["backend"]: r for r in results}
    ratios: dict = {"recall@10": {r["backend"]: r["recall@10"] for r in results}}
    ratios["filtered_p50_over_unfiltered_p50"] = {
        r["backend"]: {label: r[f"filtered_{label}"]["p50_over_unfiltered"] for label in filters} for r in results
    }
    if "faiss-hnsw" in by and "milvus-lite" in by:
        f, m = by["faiss-hnsw"], by["milvus-lite"]
        ratios.update(
            {
                "add_throughput_faiss_over_milvus": round(f["add_per_s"] / m["add_per_s"], 2),
                "add_and_build_faiss_over_milvus": round(f["add_and_build_per_s"] / m["add_and_build_per_s"], 2),
                "single_p50_milvus_over_faiss": round(m["single"]["p50_ms"] / f["single"]["p50_ms"], 2),
                "batch64_p50_milvus_over_faiss": round(m["batch64"]["p50_ms"] / f["batch64"]["p50_ms"], 2),
                **{
                    f"filtered_{label}_p50_milvus_over_faiss": round(
                        m[f"filtered_{label}"]["p50_ms"] / f[f"filtered_{label}"]["p50_ms"], 2
                    )
                    for label in filters
                },
            }
        )
    print("\nratios (same vectors, same run):")
    for k, v in ratios.items():
        print(f"  {k}: {v}")
    data = {
        "machine": {"cpu_count": os.cpu_count(), "note": "2 cores shared with other jobs unless stated otherwise"},
        "code": code_version(),
        "versions": {},
        "n": args.n,
        "dim": args.dim,
        "filters": filters,
        "results": results,
        "ratios": ratios,
    }
    if args.before is not None:
        data["before_after"] = compare(results, args.before)
        print("\nfiltered p50 before -> after:")
        for backend, rows in data["before_after"].items():
            if isinstance(rows, dict):
                for label, row in rows.items():
                    print(f"  {backend} {label}: {row}")
    import faiss

    data["versions"]["faiss"] = faiss.__version__
    if "milvus-lite" in by:
        import milvus_lite
        import pymilvus

        data["versions"].update({"pymilvus": pymilvus.__version__, "milvus_lite": milvus_lite.__version__})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
