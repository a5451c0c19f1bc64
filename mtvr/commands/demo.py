"""``mtvr demo``: the whole product end to end, offline, on a synthetic dataset."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "the whole product end to end, offline, on a synthetic dataset"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    s.add_argument("--small", action="store_true", help="fewer clips and epochs (CI)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="rerun the training N times with seeds seed..seed+N-1 and report mean and std",
    )


def run(args: argparse.Namespace) -> int:
    from ..demo.pipeline import run_demo

    return run_demo(args.out, small=args.small, seed=args.seed, seeds=args.seeds)
