"""``mtvr serve``: search behind an HTTP API and a web page (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import MissingDependencyError
from .options import (
    INDEX_LOCATION_HELP,
    add_device,
    add_milvus_token,
    add_text_encoder,
    apply_text_encoder,
    index_options,
)

NAME = "serve"
HELP = "search behind an HTTP API and a web page (FastAPI + uvicorn)"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model folder or Hub id")
    s.add_argument("--index", required=True, help=INDEX_LOCATION_HELP)
    add_milvus_token(s)
    s.add_argument("--videos", help="folder of the video files, for thumbnails and playback")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--token-file", help="file holding a bearer token that every request must carry (never logged)")
    s.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; CORS is off by default)",
    )
    s.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    s.add_argument("--max-batch", type=int, default=16, help="queries encoded together by the encoder (default 16)")
    s.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="wait this long for more queries before encoding a batch (default 0: take what is queued; a GPU "
        "may gain from a few ms)",
    )
    s.add_argument(
        "--max-queue",
        type=int,
        default=256,
        help="queries waiting before requests are refused with 503 + Retry-After (default 256)",
    )
    s.add_argument(
        "--encoder-workers",
        type=int,
        default=2,
        help="encoder threads, each taking its own batch from the queue while the other's batch is encoded or "
        "answered (default 2: on 2 CPU cores 1.3-1.6x the requests/s of one; benchmarks/serve.py)",
    )
    add_device(s)
    add_text_encoder(s)


def settings_from_args(args: argparse.Namespace, token: str | None = None) -> Any:
    """The :class:`~mtvr.serve.ServeSettings` the command line asks for."""
    from ..serve import ServeSettings

    return ServeSettings(
        max_k=args.max_k,
        token=token,
        cors_origins=list(args.cors_origin),
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_queue=args.max_queue,
        encoder_workers=args.encoder_workers,
    )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError('mtvr serve needs FastAPI and uvicorn: pip install "mtvr[serve]"') from exc
    from ..retriever import Retriever
    from ..serve import create_app
    from ..serve.app import read_token_file

    token = read_token_file(args.token_file) if args.token_file else None
    retriever = Retriever.from_pretrained(args.model, device=args.device)
    retriever.load_index(args.index, **index_options(args, args.index))
    apply_text_encoder(retriever, args)
    settings = settings_from_args(args, token)
    app = create_app(retriever, videos_dir=args.videos, settings=settings)
    print(
        f"mtvr serve: {len(retriever.index)} videos from {args.index}; http://{args.host}:{args.port}/ "
        f"(API docs at /docs){'; bearer token required' if token else ''}",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if not getattr(args, "verbose", False) else "info",
        access_log=getattr(args, "verbose", False),
    )
    return 0
