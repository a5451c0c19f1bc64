"""``mtvr zero-shot``: assemble a multilingual video retriever from public CLIP checkpoints (no training)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_device

NAME = "zero-shot"
HELP = "assemble a multilingual video retriever from public CLIP checkpoints (no training)"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--text",
        default="sentence-transformers/clip-ViT-B-32-multilingual-v1",
        help="multilingual sentence-transformers text tower aligned to CLIP (Hub id or folder)",
    )
    s.add_argument("--vision", default="openai/clip-vit-base-patch32", help="the matching CLIP checkpoint")
    s.add_argument("--num-frames", type=int, default=12, help="frames per video (default 12)")
    s.add_argument("--out", required=True, help="model folder to write")
    s.add_argument("--videos", nargs="+", help="video files or folders to index right away")
    s.add_argument("--index", help="index folder to write with --videos (default: OUT-index)")
    add_device(s)


def run(args: argparse.Namespace) -> int:
    from ..retriever import Retriever

    retriever = Retriever.from_zero_shot(
        text=args.text, vision=args.vision, device=args.device, num_frames=args.num_frames
    )
    retriever.save_pretrained(args.out)
    print(f"zero-shot retriever ({args.text} + {args.vision}) written to {args.out}")
    if args.videos:
        result = retriever.add_videos(args.videos)
        index_dir = args.index or str(Path(args.out).with_name(Path(args.out).name + "-index"))
        retriever.save_index(index_dir)
        print(
            f"indexed {len(result.video_ids)} videos into {index_dir}"
            + (f"; {len(result.errors)} failed" if result.errors else "")
        )
        print(f'search: mtvr search "..." --model {args.out} --index {index_dir}')
    return 0
