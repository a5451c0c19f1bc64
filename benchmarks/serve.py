"""`mtvr serve` under load: N concurrent clients on 127.0.0.1 against in-process `Retriever.search`.

A real text tower (the packaged all-MiniLM-L6-v2 as a sentence-transformers tower) and a flat index of
``--videos`` random video embeddings. The server is the real `mtvr serve` process (uvicorn, one worker).
Clients send ``GET /search?q=...&k=10`` with queries from MSR-VTT captions; the run is bounded in
requests and in seconds, and stops by itself. Prints requests/s, p50/p99 latency and errors, and the
in-process search latency measured in the same run.

    python benchmarks/serve.py --clients 8 --requests 400
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from _util import save

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrvtt" / "MSRVTT_JSFUSION_test.csv"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc/PID/stat``; 0.0 where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import httpx

    from mtvr import Retriever
    from mtvr.packaged import packaged_minilm_path

    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=400, help="total requests (bounded)")
    p.add_argument("--seconds", type=float, default=60.0, help="time limit of the load phase")
    p.add_argument("--videos", type=int, default=10_000)
    p.add_argument("--encoder-workers", type=int, default=2, help="`mtvr serve --encoder-workers` (default 2)")
    p.add_argument("--commit", action="store_true", help="also write benchmarks/results_committed/serve[_ENCODER].json")
    p.add_argument(
        "--text-encoder",
        default="torch",
        choices=["torch", "onnx", "onnx-int8"],
        help="the query encoder, in process and in the server (`mtvr serve --text-encoder`)",
    )
    args = p.parse_args()

    queries = (
        [r["sentence"] for r in csv.DictReader(open(CSV, encoding="utf-8"))]
        if CSV.is_file()
        else [f"a person is doing thing number {i}" for i in range(1000)]
    )
    tmp = Path(tempfile.mkdtemp(prefix="mtvr-serve-bench-"))
    r = Retriever.from_text_encoder(
        str(packaged_minilm_path()),
        device="cpu",
        text_tower="sentence-transformers",
        projection="none",
        embed_dim=384,
        video_feature_dim=384,
    )
    x = np.random.default_rng(0).standard_normal((args.videos, 384)).astype(np.float32)
    r.add([f"v{i}" for i in range(args.videos)], embeddings=x / np.linalg.norm(x, axis=1, keepdims=True))
    r.save_pretrained(tmp / "model")
    r.save_index(tmp / "index")
    agreement = None
    if args.text_encoder != "torch":
        from mtvr.commands.options import demo_queries

        agreement = r.use_text_encoder(args.text_encoder, check_queries=demo_queries())
        print(f"{args.text_encoder}: top-10 agreement with torch on the demo's queries {agreement:.2%}", flush=True)
    load_inprocess = os.getloadavg()[0]

    # baseline in the same run: in-process search, one query at a time
    inproc = []
    for q in queries[:100]:
        t0 = time.perf_counter()
        r.search(q, k=10)
        inproc.append(time.perf_counter() - t0)
    inproc_ms = np.array(inproc) * 1000
    # and in lists of 16 (one encoder batch, padded to the longest query)
    t0 = time.perf_counter()
    for s in range(0, 160, 16):
        r.search(queries[s : s + 16], k=10)
    inproc_16_qps = 160 / (time.perf_counter() - t0)

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtvr.cli",
            "serve",
            str(tmp / "model"),
            "--index",
            str(tmp / "index"),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--text-encoder",
            args.text_encoder,
            "--encoder-workers",
            str(args.encoder_workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "server.log", "wb"),  # a file, not a pipe: nobody reads it while it runs, so it never fills
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600  # a loaded 2-core machine can take minutes to import torch
        while time.time() < deadline:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        single = []  # one client alone first: its p50 against the in-process single-query p50
        with httpx.Client(base_url=base, timeout=30) as c:
            for q in queries[200:260]:
                t0 = time.perf_counter()
                c.get("/search", params={"q": q, "k": 10})
                single.append(time.perf_counter() - t0)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = iter(range(args.requests))
        stop_at = time.time() + args.seconds

        def client() -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                for i in counter:
                    if time.time() > stop_at:
                        return
                    t0 = time.perf_counter()
                    try:
                        resp = c.get("/search", params={"q": queries[i % len(queries)], "k": 10})
                        ok = resp.status_code == 200 and len(resp.json()["hits"]) == 10
                    except httpx.HTTPError as exc:
                        ok, resp = False, exc
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        if not ok:
                            errors.append(str(resp)[:100])

        load_http = os.getloadavg()[0]
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        server_cpu0, client_cpu0 = process_cpu_seconds(server.pid), time.process_time()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        # Where the cores went during the HTTP phase: the clients share the machine with the server.
        server_cpu = process_cpu_seconds(server.pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
    finally:
        server.terminate()
        server.wait(timeout=10)
    lat = np.array(latencies) * 1000
    result = {
        "text_encoder": args.text_encoder,
        "encoder_workers": args.encoder_workers,
        "mtvr_num_threads": os.environ.get("MTVR_NUM_THREADS"),  # the server's encoder threads (default 1)
        "agreement_with_torch": agreement,
        "load_inprocess_phase": round(load_inprocess, 2),
        "load_http_phase": round(load_http, 2),
        "load_end": round(os.getloadavg()[0], 2),
        "clients": args.clients,
        "requests": len(latencies),
        "errors": len(errors),
        "videos": args.videos,
        "requests_per_s": round(len(latencies) / wall, 1),
        "http_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "http_p99_ms": round(float(np.percentile(lat, 99)), 2),
        "inprocess_p50_ms": round(float(np.percentile(inproc_ms, 50)), 2),
        "inprocess_p99_ms": round(float(np.percentile(inproc_ms, 99)), 2),
        "inprocess_queries_per_s": round(1000 / float(np.mean(inproc_ms)), 1),
        "inprocess_lists_of_16_queries_per_s": round(inproc_16_qps, 1),
        "single_client_http_p50_ms": round(1000 * float(np.median(single)), 2),
        "http_phase_wall_s": round(wall, 2),
        "http_phase_server_cpu_s": round(server_cpu, 2),
        "http_phase_client_cpu_s": round(client_cpu, 2),
        "cpu_count": os.cpu_count(),
    }
    best = max(result["inprocess_queries_per_s"], result["inprocess_lists_of_16_queries_per_s"])
    result["http_over_inprocess_throughput"] = round(result["requests_per_s"] / best, 2)
    result["single_client_http_over_inprocess_p50"] = round(
        result["single_client_http_p50_ms"] / result["inprocess_p50_ms"], 2
    )
    print(
        f"{args.clients} clients, {len(latencies)} requests, {len(errors)} errors, {args.videos} videos, text encoder "
        f"{args.text_encoder}; load average {result['load_inprocess_phase']} (in-process phase), "
        f"{result['load_http_phase']} (HTTP phase), {result['load_end']} (end)"
    )
    print(
        f"HTTP: {result['requests_per_s']} requests/s, p50 {result['http_p50_ms']} ms, p99 {result['http_p99_ms']} ms"
    )
    print(
        f"in-process Retriever.search (same run, sequential): p50 {result['inprocess_p50_ms']} ms, "
        f"{result['inprocess_queries_per_s']} queries/s; in lists of 16 {result['inprocess_lists_of_16_queries_per_s']} "
        f"queries/s; HTTP / best in-process throughput {result['http_over_inprocess_throughput']}x; one client "
        f"over HTTP p50 {result['single_client_http_p50_ms']} ms = {result['single_client_http_over_inprocess_p50']}x "
        "the in-process single-query p50"
    )
    cores = result["cpu_count"] or 1
    print(
        f"HTTP phase, {wall:.1f} s on {cores} cores: server {server_cpu:.1f} CPU-s "
        f"({server_cpu / wall / cores:.0%} of the machine), clients {client_cpu:.1f} CPU-s "
        f"({client_cpu / wall / cores:.0%}; {1000 * client_cpu / max(len(latencies), 1):.2f} ms per request)"
    )
    if errors:
        print("first error:", errors[0])
    save("serve", result)
    if args.commit:
        name = "serve.json" if args.text_encoder == "torch" else f"serve_{args.text_encoder.replace('-', '_')}.json"
        out = Path(__file__).resolve().parent / "results_committed" / name
        out.parent.mkdir(exist_ok=True)
        out.write_text(__import__("json").dumps(result, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
