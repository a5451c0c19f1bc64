"""Index kinds benchmark (issue: foundation). Prints figures and ratios against a baseline measured in the same run.

* exact faiss (IndexFlatIP through mtvr.VideoIndex) vs numpy matmul + argpartition: QPS, p50/p99 at batch 1 and 64;
* HNSW (M=32): p50 latency and recall@10 against exact, for several efSearch;
* index memory per video: float32 (Flat) vs 8-bit scalar quantisation (SQ8);
* end to end: encode a query with the real all-MiniLM-L6-v2 text tower + HNSW search.

    python benchmarks/search_kinds.py --sizes 100000 1000000

(The query path of issue 26, single-query latency against hnswlib and the stages, is ``benchmarks/search.py``.)
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np
from search import structured, unit

from _util import latencies, save, summary


def numpy_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    sims = q @ x.T
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.take_along_axis(sims, part, 1).argsort(1)[:, ::-1]
    return np.take_along_axis(part, order, 1)


def main() -> None:
    from mtvr import VideoIndex

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--hnsw-random-max", type=int, default=100_000, help="HNSW on uniform random data up to this size")
    args = p.parse_args()
    print(f"faiss {faiss.__version__}, {os.cpu_count()} CPU cores, omp threads {faiss.omp_get_max_threads()}")
    results: dict = {"dim": args.dim, "sizes": {}}
    q_all = unit(args.queries + 64 * 20, args.dim, 1)
    for n in args.sizes:
        print(f"\n=== {n:,} random unit vectors, d={args.dim} ===")
        x = unit(n, args.dim, 0)
        ids = [str(i) for i in range(n)]
        r: dict = {}
        exact = VideoIndex(args.dim, "flat")
        exact.add(ids, x)
        for batch in (1, 64):
            qs = [q_all[i * batch : (i + 1) * batch] for i in range(20 if batch == 64 else 50)]
            it = iter(range(10**9))
            m_lat = latencies(lambda: exact.search(qs[next(it) % len(qs)], 10), len(qs))
            it = iter(range(10**9))
            f_lat = latencies(lambda: exact.faiss_index.search(qs[next(it) % len(qs)], 10), len(qs))
            it = iter(range(10**9))
            n_lat = latencies(lambda: numpy_topk(x, qs[next(it) % len(qs)], 10), len(qs))
            ms, fs, ns = summary(m_lat, batch), summary(f_lat, batch), summary(n_lat, batch)
            r[f"exact_batch{batch}"] = {
                "mtvr": ms,
                "faiss_flat_scan": fs,
                "numpy": ns,
                "mtvr_vs_numpy_p50": round(ns["p50_ms"] / ms["p50_ms"], 2),
                "faiss_scan_vs_numpy_p50": round(ns["p50_ms"] / fs["p50_ms"], 2),
            }
            print(
                f"exact batch {batch:>2}: mtvr VideoIndex p50 {ms['p50_ms']:.2f} ms p99 {ms['p99_ms']:.2f} ms "
                f"{ms['qps']:.0f} q/s | faiss flat scan p50 {fs['p50_ms']:.2f} ms | numpy p50 {ns['p50_ms']:.2f} ms "
                f"p99 {ns['p99_ms']:.2f} ms {ns['qps']:.0f} q/s | mtvr/numpy {r[f'exact_batch{batch}']['mtvr_vs_numpy_p50']:.2f}x, "
                f"faiss scan/numpy {r[f'exact_batch{batch}']['faiss_scan_vs_numpy_p50']:.2f}x"
            )
        truth = exact.faiss_index.search(q_all[: args.queries], 10)[1]
        mem = {}
        for kind in ("Flat", "SQ8"):
            idx = faiss.index_factory(args.dim, kind, faiss.METRIC_INNER_PRODUCT)
            if not idx.is_trained:
                idx.train(x[:100_000])
            idx.add(x)
            mem[kind] = round(len(faiss.serialize_index(idx)) / n, 1)
            del idx
        r["bytes_per_video"] = mem
        print(
            f"memory per video: float32 {mem['Flat']:.0f} B, SQ8 {mem['SQ8']:.0f} B ({mem['Flat'] / mem['SQ8']:.1f}x less)"
        )
        del exact
        if n > args.hnsw_random_max and n != max(args.sizes):
            results["sizes"][n] = r
            continue
        if n > args.hnsw_random_max:
            # uniformly random 512-d vectors have no structure for a graph to exploit (recall collapses, see
            # the smaller size); real embeddings lie near a low-dimensional manifold: 24 latent dims + noise
            print(f"HNSW at {n:,}: structured vectors (24-d latent, 512-d ambient, noise 0.05)")
            x = structured(n, args.dim, 24, 0)
            q_all = structured(args.queries + 64 * 20, args.dim, 24, 1, basis_seed=0)
            flat = faiss.IndexFlatIP(args.dim)
            flat.add(x)
            truth = flat.search(q_all[: args.queries], 10)[1]
            del flat
            r["hnsw_data"] = "structured"
        else:
            r["hnsw_data"] = "uniform random"
        t0 = time.perf_counter()
        hnsw = VideoIndex(args.dim, "hnsw", ef_construction=40)
        hnsw.add(ids, x)
        r["hnsw_build_s"] = round(time.perf_counter() - t0, 1)
        print(f"HNSW32 build: {r['hnsw_build_s']:.0f} s")
        r["hnsw"] = {}
        for ef in args.ef:
            hnsw.ef_search = ef
            params = faiss.SearchParametersHNSW(efSearch=ef)
            found = hnsw.faiss_index.search(q_all[: args.queries], 10, params=params)[1]
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
            it = iter(range(10**9))
            lat = summary(
                latencies(
                    lambda: hnsw.faiss_index.search(q_all[next(it) % args.queries][None], 10, params=params),
                    args.queries,
                ),
                1,
            )
            r["hnsw"][ef] = {"recall@10": round(recall, 4), **lat}
            print(
                f"HNSW efSearch {ef:>4}: recall@10 {recall:.3f}, p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms "
                f"({r['exact_batch1']['mtvr']['p50_ms'] / lat['p50_ms']:.0f}x faster than exact)"
            )
        if n == max(args.sizes):
            from transformers import AutoTokenizer

            from mtvr.modeling import VideoTextModel
            from mtvr.packaged import packaged_minilm_path
            from mtvr.retriever import Retriever

            path = str(packaged_minilm_path())
            model = VideoTextModel.from_text_encoder(path, video_feature_dim=args.dim, embed_dim=args.dim)
            retr = Retriever(model, AutoTokenizer.from_pretrained(path), device="cpu", index=hnsw)
            good = [ef for ef in args.ef if r["hnsw"][ef]["recall@10"] >= 0.95]
            hnsw.ef_search = good[0] if good else max(args.ef)
            queries = [
                "a person is slicing onions in the kitchen",
                "una persona corta cebollas",
                "a man plays guitar",
                "ein Hund rennt am Strand",
                "cars racing on a track",
            ]
            it = iter(range(10**9))
            e2e = summary(latencies(lambda: retr.search(queries[next(it) % 5], k=10), 100), 1)
            enc = summary(latencies(lambda: retr.encode_text(queries[0]), 100), 1)
            r["end_to_end"] = {"ef_search": hnsw.ef_search, "query": e2e, "encode_only": enc}
            print(
                f"end to end (MiniLM encode + HNSW efSearch {hnsw.ef_search} over {n:,}): p50 {e2e['p50_ms']:.1f} ms, "
                f"p99 {e2e['p99_ms']:.1f} ms (encode alone p50 {enc['p50_ms']:.1f} ms)"
            )
        results["sizes"][n] = r
        del hnsw, x
    save("search_kinds", results)


if __name__ == "__main__":
    main()
