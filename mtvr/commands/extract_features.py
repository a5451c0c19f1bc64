"""``mtvr extract-features``: videos -> frame features (a resumable feature store)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import add_device, add_ray_address, add_segments, segment_kwargs

NAME = "extract-features"
HELP = "videos -> frame features (resumable feature store)"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("source", nargs="+", help="a folder of videos, video files, a .txt list, or a dataset folder")
    s.add_argument("--out", required=True, help="feature store folder (created, or resumed when it exists)")
    s.add_argument(
        "--encoder",
        default="openai/clip-vit-base-patch32",
        help="CLIP vision checkpoint (Hub id or folder), or mtvr/shape-stats",
    )
    s.add_argument("--num-frames", type=int, default=12, help="frames sampled uniformly per clip (default 12)")
    s.add_argument("--workers", type=int, default=2, help="decode worker processes (default 2)")
    s.add_argument("--shard-size", type=int, default=64, help="clips per safetensors shard (default 64)")
    s.add_argument("--split", help="with a dataset folder: only this split")
    s.add_argument(
        "--engine",
        default="local",
        help="local: worker processes on this machine; ray: a Ray Data pipeline (pip install 'mtvr[ray]'); or another "
        "registered extraction engine or executor (inline, processes, threads...)",
    )
    add_ray_address(s)
    s.add_argument(
        "--batch-size",
        type=int,
        help="clips per encoder call (default: 16 with --engine ray, 256 frames' worth locally)",
    )
    add_segments(s)
    add_device(s)


def run(args: argparse.Namespace) -> int:
    from ..errors import OptionError
    from ..video.extract import clips_from_source, extract_features, extraction_engines

    if args.engine not in extraction_engines():  # before any video is listed
        raise OptionError(f"--engine {args.engine!r}: choose one of {extraction_engines()}")
    sources = args.source if len(args.source) > 1 else args.source[0]
    clips = clips_from_source(sources, split=args.split)
    summary = extract_features(
        clips,
        args.out,
        args.encoder,  # a name: built here (local) or in each Ray encoder actor, on --device
        num_frames=args.num_frames,
        workers=args.workers,
        shard_size=args.shard_size,
        clips_per_batch=args.batch_size,
        engine=args.engine,
        address=args.address,
        device=args.device,
        **segment_kwargs(args),
    )
    print(summary)
    if summary.failed:
        print(f"{summary.failed} clips failed: see {Path(args.out) / 'errors.jsonl'}", file=sys.stderr)
        if summary.done == 0 and summary.skipped == 0:
            print("mtvr extract-features: error: every clip failed; nothing was extracted", file=sys.stderr)
            return 1
    return 0
