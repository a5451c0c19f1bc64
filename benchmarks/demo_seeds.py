"""The demo's C2KD − translate-train comparison over several seeds (mean ± std per language).

Builds the demo data once (seed 0 of the data) and trains the baseline and the C2KD student with seeds
``0 .. N-1``; prints the per-seed paired intervals and the mean ± std over seeds, and writes
``OUT/results.json`` (``seed_summary``). Takes about N times the demo's training time.

    python benchmarks/demo_seeds.py --seeds 3 --out demo_seeds
"""

from __future__ import annotations

import argparse


def main() -> None:
    from mtvr.demo.pipeline import run_demo

    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="demo_seeds")
    p.add_argument("--small", action="store_true", help="the reduced demo (fewer clips and epochs)")
    args = p.parse_args()
    raise SystemExit(run_demo(args.out, small=args.small, seed=0, seeds=args.seeds))


if __name__ == "__main__":
    main()
