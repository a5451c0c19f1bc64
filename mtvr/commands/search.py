"""``mtvr search``: search an index with text queries in any language."""

from __future__ import annotations

import argparse
import json

from .options import (
    INDEX_LOCATION_HELP,
    add_device,
    add_milvus_token,
    add_text_encoder,
    apply_text_encoder,
    index_options,
)

NAME = "search"
HELP = "search an index with text queries in any language"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("query", nargs="+", help="one or more queries, in any language the model knows")
    s.add_argument("--model", required=True, help="model folder or Hub id")
    s.add_argument("--index", required=True, help=INDEX_LOCATION_HELP)
    add_milvus_token(s)
    s.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    s.add_argument("--json", action="store_true", help="print the hits as JSON instead of a list")
    s.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata filter, repeatable (AND): file=a.mp4, year>=2020, lang:in=es,ca, or a JSON object",
    )
    s.add_argument("--group-by", choices=["file"], help="file: the best moment of each file only")
    s.add_argument("--merge", action="store_true", help="merge adjacent windows that score alike into one moment")
    s.add_argument(
        "--no-nms", action="store_true", help="return every overlapping window (no temporal non-maximum suppression)"
    )
    add_device(s)
    add_text_encoder(s)


def run(args: argparse.Namespace) -> int:
    from ..filters import filter_from_args
    from ..retriever import Retriever

    wanted = filter_from_args(args.filter) or None  # a wrong filter fails before the model loads
    retriever = Retriever.from_pretrained(args.model, device=args.device)
    retriever.load_index(args.index, **index_options(args, args.index))
    apply_text_encoder(retriever, args)
    results = retriever.search(
        list(args.query),
        k=args.k,
        filter=wanted,
        group_by=args.group_by,
        merge=args.merge,
        nms=not args.no_nms,
    )
    if args.json:
        rows = [
            [{**h.__dict__, "start": h.metadata.get("start"), "end": h.metadata.get("end")} for h in hits]
            for hits in results
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for query, hits in zip(args.query, results):
        print(f"query: {query}")
        for h in hits:
            span = ""
            if h.metadata.get("start") is not None and h.metadata.get("end") is not None:
                span = f"  {h.metadata.get('file', '')} {h.metadata['start']:.2f}-{h.metadata['end']:.2f} s"
            print(f"  {h.rank:>3}. {h.video_id}  {h.score:.4f}{span}")
        if not hits:
            print("  (no hit: nothing matches the filter)")
    return 0
