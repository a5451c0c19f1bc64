"""The ``mtvr`` command line: one module per subcommand, each with its arguments beside its handler.

A subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; adding one
is a new module here and one line in :data:`COMMANDS`. Shared options live in :mod:`mtvr.commands.options`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from . import build_dataset, demo, evaluate, extract_features, index, push, search, serve, train, zero_shot
from .options import check_option_values, common_parser

COMMANDS: list[ModuleType] = [
    index,
    search,
    evaluate,
    extract_features,
    build_dataset,
    train,
    push,
    zero_shot,
    serve,
    demo,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``mtvr`` parser with every subcommand of :data:`COMMANDS` (``args.func`` is its ``run``)."""
    from .. import __version__

    common = common_parser()
    p = argparse.ArgumentParser(
        prog="mtvr",
        description="Multilingual text-to-video retrieval: build multilingual "
        "video datasets, train students by distillation, index and search videos.",
        parents=[common],
    )
    p.add_argument("--version", action="version", version=f"mtvr {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        s = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP, parents=[common])
        command.add_arguments(s)
        s.set_defaults(func=command.run)
    return p


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    progress = logging.getLogger("mtvr")  # mtvr's own progress lines, plain, on stderr
    if not progress.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.propagate = verbose
    progress.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtvr ARGV``; errors print as one line ``mtvr COMMAND: error: ...`` (exit 2), ``-v`` adds the traceback."""
    from ..errors import MtvrError

    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _setup_logging(verbose)
    try:
        check_option_values(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mtvr {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MtvrError, FileNotFoundError, ValueError, ImportError) as exc:
        if verbose:
            traceback.print_exc()
        print(f"mtvr {args.command}: error: {exc}", file=sys.stderr)
        return 2
