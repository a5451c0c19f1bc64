"""``mtvr index``: build a faiss index of videos from a feature store."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from .options import add_device, add_ray_address

NAME = "index"
HELP = "build a faiss index of videos from a feature store"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", required=True, help="model folder or Hub id (a trained or zero-shot retriever)")
    s.add_argument("--features", required=True, help="feature store folder written by `mtvr extract-features`")
    s.add_argument("--out", required=True, help="index folder to write (atomically)")
    s.add_argument("--kind", default="flat", help="flat (exact), hnsw, ivfpq, sq8 or a faiss factory string")
    s.add_argument(
        "--target-recall",
        type=float,
        metavar="R",
        help="tune ef_search / nprobe to reach this recall@10 against exact search (e.g. 0.95)",
    )
    s.add_argument("--batch-size", type=int, default=1024, help="videos encoded per batch (default 1024)")
    s.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: embed in parallel and build an IVF-PQ index as merged shards",
    )
    s.add_argument("--shards", type=int, default=8, help="with --engine ray: shards built in parallel (default 8)")
    add_ray_address(s)
    add_device(s)


def run_ray(args: argparse.Namespace) -> int:
    from ..scale.ray_runtime import ensure_ray
    from ..scale.sharded_index import build_sharded_index, embed_store

    ensure_ray(args.address)
    ids, emb = embed_store(args.model, args.features, engine="ray", batch_size=args.batch_size, device=args.device)
    kind = None if args.kind in ("ivfpq", "flat") else args.kind
    index = build_sharded_index(ids, emb, args.out, factory=kind, num_shards=args.shards, engine="ray")
    print(f"indexed {len(ids)} videos from {args.features} into {args.out} ({index.kind}, {args.shards} shards merged)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return run_ray(args)
    from ..retriever import Retriever
    from ..video.store import FeatureStore

    options = {"target_recall": args.target_recall} if args.target_recall else {}
    retriever = Retriever.from_pretrained(args.model, device=args.device, index_kind=args.kind, **options)
    store = FeatureStore(args.features)
    ids = store.clip_ids
    for start in tqdm(range(0, len(ids), args.batch_size), desc="index", unit="batch"):
        chunk = ids[start : start + args.batch_size]
        entries = store.get_many(chunk)
        retriever.add(chunk, features=[f for f, _ in entries], num_frames=[n for _, n in entries])
    retriever.save_index(args.out)
    print(f"indexed {len(ids)} videos from {args.features} into {args.out} ({args.kind})")
    index = retriever.index
    if args.target_recall:
        knob = "ef_search" if "hnsw" in args.kind.lower() else "nprobe"
        measured = "n/a (exact search)" if index.measured_recall is None else f"{index.measured_recall:.3f}"
        print(
            f"target recall@{index.recall_k} {args.target_recall}: {knob} = {getattr(index, knob)}, "
            f"measured recall {measured}"
        )
    return 0
