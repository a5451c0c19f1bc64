"""``mtvr index``: index videos (a feature store, or video files) into a faiss folder or a Milvus collection."""

from __future__ import annotations

import argparse
import sys

from .options import (
    INDEX_LOCATION_HELP,
    add_device,
    add_milvus_token,
    add_ray_address,
    add_segments,
    index_options,
    segment_kwargs,
)

NAME = "index"
HELP = "index videos from a feature store or video files, into a faiss folder or a Milvus collection"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", required=True, help="model folder or Hub id (a trained or zero-shot retriever)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help="feature store folder written by `mtvr extract-features`")
    src.add_argument(
        "--videos",
        nargs="+",
        help="video files or folders: decode, encode and index them (with --segments: moments of long videos)",
    )
    s.add_argument("--out", help=f"where to write: {INDEX_LOCATION_HELP} (a faiss folder is written atomically)")
    s.add_argument(
        "--backend",
        choices=["faiss", "milvus"],
        help="faiss (a folder) or milvus (a collection); default: from the --out / --uri location",
    )
    s.add_argument("--uri", help="the Milvus location to write into (same as --out with a milvus location)")
    add_milvus_token(s)
    s.add_argument(
        "--kind",
        help="faiss: flat (default, exact), hnsw, ivfpq, sq8 or a factory string; "
        "milvus: hnsw (default), flat, ivf_flat, ivf_pq, diskann... (a Milvus index type)",
    )
    s.add_argument("--replace", action="store_true", help="milvus: overwrite clips already in the collection (a rerun)")
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
        help="ray: embed in parallel, then build a faiss IVF-PQ index as merged shards, or write into Milvus "
        "straight from the workers",
    )
    s.add_argument("--shards", type=int, default=8, help="with --engine ray: shards built in parallel (default 8)")
    s.add_argument(
        "--writers",
        type=int,
        default=4,
        help="with --engine ray and a Milvus server: Ray workers writing in parallel (default 4)",
    )
    add_ray_address(s)
    add_segments(s)
    s.add_argument("--workers", type=int, default=2, help="with --videos: files decoded in parallel (default 2)")
    add_device(s)


def run_ray(args: argparse.Namespace) -> int:
    """``--engine ray`` into faiss: embed on Ray; IVF kinds built as merged shards, other kinds filled from the
    embeddings (``--kind`` and ``--target-recall`` kept)."""
    from ..scale.sharded_index import index_store_ray

    tune_texts = read_tune_queries(args)
    index = index_store_ray(
        args.model,
        args.features,
        args.out,
        kind=args.kind,
        target_recall=args.target_recall,
        batch_size=args.batch_size,
        num_shards=args.shards,
        device=args.device,
        address=args.address,
        segments=args.segments,
    )
    if tune_texts:
        from ..retriever import Retriever

        index.tune(queries=Retriever.from_pretrained(args.model, device=args.device).encode_text(tune_texts))
        index.save(args.out)
    print(f"indexed {len(index)} videos from {args.features} into {args.out} ({index.kind}, engine ray)")
    report_recall(args, index)
    return 0


def run_ray_milvus(args: argparse.Namespace) -> int:
    """``--engine ray`` into Milvus: Ray write actors insert the embeddings (no merged file)."""
    from ..index.milvus import milvus_index_type
    from ..scale.milvus_writer import index_store_into_milvus
    from ..scale.ray_runtime import ensure_ray

    ensure_ray(args.address)
    summary = index_store_into_milvus(
        args.model,
        args.features,
        args.out,
        batch_size=args.batch_size,
        num_writers=args.writers,
        device=args.device,
        replace=args.replace,
        segments=args.segments,
        index_type=milvus_index_type(args.kind),
        **index_options(args, args.out),
    )
    print(summary)
    return 0


def _target(args: argparse.Namespace) -> str:
    """The backend (``faiss`` or ``milvus``) from --out / --uri / --backend, checked; sets ``args.out``."""
    from ..errors import OptionError
    from ..index import split_location

    if args.out and args.uri and args.out != args.uri:
        raise OptionError("give the index location once: --out or --uri")
    args.out = args.uri or args.out
    if not args.out:
        raise OptionError("say where to write the index: --out FOLDER or --backend milvus --uri LOCATION")
    backend = "milvus" if split_location(args.out)[0].startswith("milvus") else "faiss"
    if args.backend and args.backend != backend:
        raise OptionError(
            f"--backend {args.backend} but {args.out} is a {backend} location "
            "(milvus-lite:///abs/path/videos.db#clips or milvus://host:19530#clips for Milvus; a folder for faiss)"
        )
    if backend == "milvus" and args.target_recall:
        raise OptionError("--target-recall tunes faiss indexes; choose a Milvus index's type with --kind")
    args.kind = args.kind or ("hnsw" if backend == "milvus" else "flat")
    return backend


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
    backend = _target(args)
    if args.engine == "ray":
        if args.videos:
            from ..errors import OptionError

            raise OptionError(
                "--engine ray indexes a feature store (--features), not --videos: extract it first with "
                "`mtvr extract-features VIDEOS --out STORE [--segments window]`, then `mtvr index --engine ray "
                "--features STORE`"
            )
        return run_ray_milvus(args) if backend == "milvus" else run_ray(args)
    from ..retriever import Retriever

    options = {"target_recall": args.target_recall} if args.target_recall is not None else {}
    tune_texts = read_tune_queries(args)
    retriever = Retriever.from_pretrained(args.model, device=args.device, index_kind=args.kind, **options)
    if backend == "milvus":
        from ..index.milvus import milvus_index_type

        retriever.load_index(
            args.out, create=True, index_type=milvus_index_type(args.kind), **index_options(args, args.out)
        )
    if args.videos:
        code = run_videos(args, retriever)
        if code:
            return code
    else:
        count = retriever.add_feature_store(
            args.features, batch_size=args.batch_size, segments=args.segments, replace=args.replace
        )
        retriever.save_index(args.out)
        print(f"indexed {count} videos from {args.features} into {args.out} ({args.kind})")
    index = retriever.index
    if tune_texts:
        index.tune(queries=retriever.encode_text(tune_texts))
        retriever.save_index(args.out)
    report_recall(args, index)
    return 0


def report_recall(args: argparse.Namespace, index) -> None:
    """With ``--target-recall``: the knob chosen and the recall measured."""
    if args.target_recall is not None:
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
