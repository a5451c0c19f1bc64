"""``mtvr search``: search an index with text queries in any language."""

from __future__ import annotations

import argparse
import json

from .options import add_device

NAME = "search"
HELP = "search an index with text queries in any language"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("query", nargs="+", help="one or more queries, in any language the model knows")
    s.add_argument("--model", required=True, help="model folder or Hub id")
    s.add_argument("--index", required=True, help="index folder written by `mtvr index` or Retriever.save_index")
    s.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    s.add_argument("--json", action="store_true", help="print the hits as JSON instead of a list")
    add_device(s)


def run(args: argparse.Namespace) -> int:
    from ..retriever import Retriever

    retriever = Retriever.from_pretrained(args.model, device=args.device)
    retriever.load_index(args.index)
    results = retriever.search(list(args.query), k=args.k)
    if args.json:
        print(json.dumps([[h.__dict__ for h in hits] for hits in results], ensure_ascii=False, indent=2))
        return 0
    for query, hits in zip(args.query, results):
        print(f"query: {query}")
        for h in hits:
            print(f"  {h.rank:>3}. {h.video_id}  {h.score:.4f}")
    return 0
