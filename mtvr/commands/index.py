"""``mtvr index``: build a faiss index of videos from a feature store."""

from __future__ import annotations

import argparse
import sys

from tqdm.auto import tqdm

from .options import add_device, add_ray_address, add_segments, segment_kwargs

NAME = "index"
HELP = "build a faiss index of videos from a feature store, or straight from video files"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", required=True, help="model folder or Hub id (a trained or zero-shot retriever)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help="feature store folder written by `mtvr extract-features`")
    src.add_argument(
        "--videos",
        nargs="+",
        help="video files or folders: decode, encode and index them (with --segments: moments of long videos)",
    )
    s.add_argument("--out", required=True, help="index folder to write (atomically)")
    s.add_argument("--kind", default="flat", help="flat (exact), hnsw, ivfpq, sq8 or a faiss factory string")
    s.add_argument(
        "--target-recall",
        type=float,
        metavar="R",
        help="tune ef_search / nprobe to reach this recall@10 against exact search (e.g. 0.95)",
    )
    s.add_argument(
        "--tune-queries",
        metavar="FILE",
        help="UTF-8 text file, one query per line (e.g. the dataset's captions): measure --target-recall on these "
        "real queries instead of synthetic ones",
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
    add_segments(s)
    s.add_argument("--workers", type=int, default=2, help="with --videos: files decoded in parallel (default 2)")
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


def run_videos(args: argparse.Namespace, retriever) -> int:
    """``--videos``: decode + encode + index (``Retriever.add_videos``), each file decoded once."""
    from ..video.extract import clips_from_source

    sources = args.videos if len(args.videos) > 1 else args.videos[0]
    added = retriever.add_videos(clips_from_source(sources), workers=args.workers, **segment_kwargs(args))
    for e in added.errors:
        span = f" [{e['start']}-{e['end']} s]" if "start" in e else ""
        print(f"skipped {e['file']}{span}: {e['reason']}", file=sys.stderr)
    if not added.video_ids:
        print("mtvr index: error: no video could be indexed", file=sys.stderr)
        return 1
    retriever.save_index(args.out)
    what = "clips" if args.segments == "clip" else f"{args.segments} segments"
    print(f"indexed {len(added.video_ids)} {what} into {args.out} ({args.kind})")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        if args.videos or args.segments != "clip":
            print(
                "mtvr index: error: --engine ray indexes a feature store of clips (no --videos/--segments)",
                file=sys.stderr,
            )
            return 2
        return run_ray(args)
    from ..retriever import Retriever
    from ..video.segment_extract import segment_metadata_from_store
    from ..video.store import FeatureStore

    options = {"target_recall": args.target_recall} if args.target_recall else {}
    tune_texts = read_tune_queries(args)
    retriever = Retriever.from_pretrained(args.model, device=args.device, index_kind=args.kind, **options)
    if args.videos:
        code = run_videos(args, retriever)
        if code:
            return code
    else:
        store = FeatureStore(args.features)
        segmented = store.manifest.segments != "clip"
        if args.segments != "clip" and args.segments != store.manifest.segments:
            print(
                f"mtvr index: error: --segments {args.segments} but {args.features} holds "
                f"{store.manifest.segments} entries (segments are cut by `mtvr extract-features --segments`)",
                file=sys.stderr,
            )
            return 2
        meta = segment_metadata_from_store(store) if segmented else {}
        ids = store.clip_ids
        for start in tqdm(range(0, len(ids), args.batch_size), desc="index", unit="batch"):
            chunk = ids[start : start + args.batch_size]
            entries = store.get_many(chunk)
            retriever.add(
                chunk,
                features=[f for f, _ in entries],
                num_frames=[n for _, n in entries],
                metadata=[meta.get(c) for c in chunk] if segmented else None,
            )
        retriever.save_index(args.out)
        print(f"indexed {len(ids)} videos from {args.features} into {args.out} ({args.kind})")
    index = retriever.index
    if tune_texts:
        index.tune(queries=retriever.encode_text(tune_texts))
        retriever.save_index(args.out)
    if args.target_recall:
        knob = "ef_search" if "hnsw" in args.kind.lower() else "nprobe"
        measured = (
            "n/a (exact search)"
            if index.measured_recall is None
            else f"{index.measured_recall:.3f} on {index.measured_on}"
        )
        print(
            f"target recall@{index.recall_k} {args.target_recall}: {knob} = {getattr(index, knob)}, "
            f"measured recall {measured}"
        )
    return 0


def read_tune_queries(args: argparse.Namespace) -> list[str]:
    """The non-empty lines of ``--tune-queries`` (checked before any encoding work starts)."""
    from pathlib import Path

    from ..errors import OptionError

    if not args.tune_queries:
        return []
    if not args.target_recall:
        raise OptionError("--tune-queries needs --target-recall (the recall to reach on those queries)")
    path = Path(args.tune_queries)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"--tune-queries {path}: cannot read it as UTF-8 text ({exc})") from None
    texts = [line for line in lines if line]
    if not texts:
        raise OptionError(f"--tune-queries {path}: no queries (one per line)")
    return texts
