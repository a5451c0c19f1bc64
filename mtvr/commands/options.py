"""Options and argument parsing shared by every ``mtvr`` subcommand.

Each subcommand module (``mtvr/commands/<name>.py``) defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args)``; the helpers here are what several of them share.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import option_values as values
from ..errors import OptionError

# One validation of option values for every subcommand, keyed by the argparse ``dest``: an option that
# several commands share (``--num-frames``, ``--port``...) is checked the same way wherever it appears,
# before any work starts, with one line naming the option and the value.
OPTION_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "num_frames": values.positive_int,
    "workers": lambda name, v: values.int_in_range(name, v, 0, 1024),
    "shard_size": values.positive_int,
    "batch_size": values.positive_int,
    "shards": values.positive_int,
    "k": values.positive_int,
    "max_k": values.positive_int,
    "port": values.port,
    "target_recall": values.fraction,
    "window": values.positive_finite,
    "stride": values.positive_finite,
    "token_file": values.existing_file,
    "check_queries": values.existing_file,
    "min_agreement": values.fraction,
}


def parse_kv(items: Sequence[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``: values are JSON when they parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise OptionError(f"mtvr: expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def common_parser() -> argparse.ArgumentParser:
    """Options every subcommand accepts (before or after its name)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log progress details, and print the full traceback of an error",
    )
    return common


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``: the torch device a command runs its models on."""
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available)")


def add_ray_address(parser: argparse.ArgumentParser) -> None:
    """``--address``: the Ray cluster an ``--engine ray`` command joins."""
    parser.add_argument("--address", help="with --engine ray: the cluster to join (ray://HEAD:10001 or auto)")


def add_hub_token(parser: argparse.ArgumentParser) -> None:
    """``--token``: a Hub token (never printed)."""
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or your login); never printed")


def add_segments(parser: argparse.ArgumentParser) -> None:
    """``--segments/--window/--stride/--shot-threshold``: how long videos are cut into moments."""
    parser.add_argument(
        "--segments",
        choices=["clip", "window", "shots"],
        default="clip",
        help="clip: one entry per file (default); window: overlapping windows; shots: detected shots "
        "(PySceneDetect), long shots split into windows",
    )
    parser.add_argument("--window", type=float, default=4.0, help="window length in seconds (default 4)")
    parser.add_argument("--stride", type=float, default=2.0, help="seconds between window starts (default 2)")
    parser.add_argument(
        "--shot-threshold", type=float, default=27.0, help="with --segments shots: ContentDetector threshold (27)"
    )


def segment_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The segmenting options of a parsed command line, as keyword arguments."""
    return {
        "segments": args.segments,
        "window": args.window,
        "stride": args.stride,
        "shot_threshold": args.shot_threshold,
    }


INDEX_LOCATION_HELP = (
    "a faiss index folder, or a Milvus collection: milvus-lite:///abs/path/videos.db#clips (embedded) or "
    "milvus://host:19530#clips (a server; token from --milvus-token-file or MILVUS_TOKEN)"
)


def add_text_encoder(parser: argparse.ArgumentParser) -> None:
    """``--text-encoder`` (torch or ONNX Runtime, :mod:`mtvr.onnx_text`) and the check an ONNX encoder must pass."""
    from ..onnx_text import DEFAULT_MIN_AGREEMENT, TEXT_ENCODERS

    parser.add_argument(
        "--text-encoder",
        choices=TEXT_ENCODERS,
        default="torch",
        help="what encodes queries: torch (default), onnx (ONNX Runtime, same results, faster on CPUs) or onnx-int8 "
        "(int8 weights); an ONNX encoder is used only if its top-10 results agree with torch's (--min-agreement)",
    )
    parser.add_argument(
        "--check-queries",
        metavar="FILE",
        help="with --text-encoder onnx*: queries, one per line, to compare top-10 results on (default: the demo's)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help=f"with --text-encoder onnx*: share of top-10 positions that must match torch (default {DEFAULT_MIN_AGREEMENT})",
    )


def apply_text_encoder(retriever: Any, args: argparse.Namespace) -> None:
    """Switch ``retriever`` to ``--text-encoder`` after checking it on ``--check-queries`` (prints the agreement)."""
    import sys

    if args.text_encoder == "torch":
        return
    if args.check_queries:
        text = Path(args.check_queries).read_text(encoding="utf-8")
        queries = [line.strip() for line in text.splitlines() if line.strip()]
        if not queries:
            raise OptionError(f"--check-queries {args.check_queries}: no query in the file")
    else:
        queries = demo_queries()
    agreement = retriever.use_text_encoder(args.text_encoder, check_queries=queries, min_agreement=args.min_agreement)
    if agreement is not None:
        print(
            f"mtvr: text encoder {args.text_encoder}: top-10 results agree with torch on {agreement:.2%} of positions",
            file=sys.stderr,
        )


def demo_queries(limit: int = 400) -> list[str]:
    """The demo's queries (Multi-Shapes captions in its eight grammar languages, both templates), ``limit`` of
    them spread evenly: what ``--text-encoder onnx*`` is checked on without ``--check-queries``."""
    from itertools import product

    from ..builders import builder_module

    g = builder_module("multi_shapes")  # the grammar lives with the builder (reached by name: no import)
    clips = [g.Clip(*c) for c in product(g.SHAPES, g.COLOURS, g.MOTIONS, g.BACKGROUNDS)]
    texts = [g.caption(c, lang, t) for lang in g.LANGUAGES for t in (0, 1) for c in clips]
    return texts[:: max(1, len(texts) // limit)][:limit]


def add_milvus_token(parser: argparse.ArgumentParser) -> None:
    """``--milvus-token-file``: the Milvus token for ``milvus://`` indexes, read from a file (never printed)."""
    parser.add_argument(
        "--milvus-token-file",
        metavar="FILE",
        help="file holding the token of a milvus:// index (default: the MILVUS_TOKEN variable); never printed",
    )


def index_options(args: argparse.Namespace, location: str) -> dict[str, Any]:
    """Backend options for opening ``location`` from the command line (the Milvus token, when given)."""
    from ..errors import OptionError
    from ..index import split_location

    path = getattr(args, "milvus_token_file", None)
    if not path:
        return {}
    if not split_location(location)[0].startswith("milvus"):
        raise OptionError(f"--milvus-token-file is for milvus:// indexes, not {location}")
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise OptionError(f"--milvus-token-file {path} is empty")
    return {"token": token}


def check_option_values(args: argparse.Namespace) -> None:
    """Apply :data:`OPTION_CHECKS` to every option the command was given (``None`` means not given), and
    check the environment the Hub client reads (``HF_ENDPOINT``)."""
    for dest, check in OPTION_CHECKS.items():
        value = getattr(args, dest, None)
        if value is not None:
            setattr(args, dest, check("--" + dest.replace("_", "-"), value))
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:  # huggingface_hub would fail deep inside a download with a long traceback
        values.http_url("HF_ENDPOINT", endpoint)
