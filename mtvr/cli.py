"""The ``mtvr`` command: index, search, evaluate, extract-features, build-dataset, train, push, zero-shot, serve,
demo. Each subcommand lives in its own module of :mod:`mtvr.commands`; this module is the entry point
(``mtvr = "mtvr.cli:main"``, ``python -m mtvr.cli``)."""

from __future__ import annotations

import sys

from .commands import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
