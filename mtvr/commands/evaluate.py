"""``mtvr evaluate``: per-language R@1/5/10, MdR, MnR on a dataset split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import add_device

NAME = "evaluate"
HELP = "per-language R@1/5/10, MdR, MnR on a dataset split"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", required=True, help="model folder or Hub id")
    s.add_argument("--dataset", required=True, help="folder from mtvr build-dataset, or a Hub dataset id")
    s.add_argument("--features", required=True, help="feature store of the dataset's clips")
    s.add_argument("--split", default="test", help="dataset split (default test)")
    s.add_argument("--config", default="all", help="dataset config (default all)")
    s.add_argument("--languages", nargs="+", help="languages to evaluate (default: the model's)")
    s.add_argument("--out", help="write results.json here (atomically)")
    add_device(s)


def run(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_text
    from ..evaluation import evaluate_dataset, results_entry, versions
    from ..retriever import Retriever

    retriever = Retriever.from_pretrained(args.model, device=args.device)
    report = evaluate_dataset(
        retriever, args.dataset, args.features, split=args.split, config=args.config, languages=args.languages
    )
    print(report.to_markdown())
    if args.out:
        out = {
            "model": str(args.model),
            "evaluations": [results_entry(report, args.dataset, args.config, args.split)],
            "versions": versions(),
        }
        atomic_write_text(Path(args.out), json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0
