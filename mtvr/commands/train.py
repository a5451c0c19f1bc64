"""``mtvr train``: train teachers and a multilingual student from a recipe."""

from __future__ import annotations

import argparse

from .options import parse_kv

NAME = "train"
HELP = "train teachers and a multilingual student from a recipe"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("recipe", help="recipe YAML, e.g. models/c2kd-multi-msrvtt.yaml")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, repeatable: --set optim.epochs=2 --set seed=1",
    )


def run(args: argparse.Namespace) -> int:
    from ..metrics import LanguageReport
    from ..train import load_recipe, train

    recipe = load_recipe(args.recipe, overrides=parse_kv(args.set))
    result = train(recipe, resume=args.resume)
    if not result.results:  # not the main process of a multi-process run: the main one reports
        return 0
    print(f"best epoch {result.best_epoch}; exported to {result.best_dir}")
    for ev in result.results["evaluations"]:
        print(f"\n{ev['dataset']} [{ev['split']}]\n" + LanguageReport.from_dict(ev).to_markdown())
    return 0
