"""The ``mtvr`` command: index, search, evaluate, extract-features, build-dataset, train, push, demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm


def _kv(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"mtvr: expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def cmd_index(args: argparse.Namespace) -> int:
    from .retriever import Retriever
    from .video.store import FeatureStore

    retriever = Retriever.from_pretrained(args.model, device=args.device, index_kind=args.kind)
    store = FeatureStore(args.features)
    ids = store.clip_ids
    for start in tqdm(range(0, len(ids), args.batch_size), desc="index", unit="batch"):
        chunk = ids[start:start + args.batch_size]
        entries = store.get_many(chunk)
        retriever.add(chunk, features=[f for f, _ in entries], num_frames=[n for _, n in entries])
    retriever.save_index(args.out)
    print(f"indexed {len(ids)} videos from {args.features} into {args.out} ({args.kind})")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .retriever import Retriever

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_dataset, results_entry, versions
    from .retriever import Retriever

    retriever = Retriever.from_pretrained(args.model, device=args.device)
    report = evaluate_dataset(retriever, args.dataset, args.features, split=args.split, config=args.config,
                              languages=args.languages)
    print(report.to_markdown())
    if args.out:
        out = {"model": str(args.model), "evaluations": [results_entry(report, args.dataset, args.config, args.split)],
               "versions": versions()}
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from .video.encoder import build_frame_encoder
    from .video.extract import clips_from_source, extract_features

    sources = args.source if len(args.source) > 1 else args.source[0]
    clips = clips_from_source(sources, split=args.split)
    encoder = build_frame_encoder(args.encoder, device=args.device)
    summary = extract_features(clips, args.out, encoder, num_frames=args.num_frames, workers=args.workers,
                               shard_size=args.shard_size)
    print(summary)
    if summary.failed:
        print(f"{summary.failed} clips failed: see {Path(args.out) / 'errors.jsonl'}")
    return 0


def cmd_build_dataset(args: argparse.Namespace) -> int:
    from datasets_builders.publish import build_dataset, push_dataset_folder

    kwargs: dict[str, Any] = {"backend": args.backend, "backend_options": _kv(args.backend_option)}
    for name in ("video_dir", "translations_file", "translation_cache", "quality_threshold"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.splits:
        kwargs["splits"] = args.splits
    kwargs["threshold_action"] = args.threshold_action
    meta = build_dataset(args.builder, args.out, config_name=args.config, data_dir=args.data_dir,
                         languages=args.languages, repo_id=args.push_to_hub, **kwargs)
    print((Path(args.out) / "build_report.md").read_text())
    print(f"wrote {args.out}: configs {sorted(meta['counts'])}")
    if args.push_to_hub:
        print(push_dataset_folder(args.out, args.push_to_hub, token=args.token, private=args.private))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import load_recipe, train

    recipe = load_recipe(args.recipe, overrides=_kv(args.set))
    result = train(recipe, resume=args.resume)
    if not result.results:  # not the main process of a multi-process run: the main one reports
        return 0
    print(f"best epoch {result.best_epoch}; exported to {result.best_dir}")
    for ev in result.results["evaluations"]:
        from .eval import LanguageReport

        print(f"\n{ev['dataset']} [{ev['split']}]\n" + LanguageReport.from_dict(ev).to_markdown())
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .retriever import Retriever

    retriever = Retriever.from_pretrained(args.model_dir, device="cpu")
    url = retriever.push_to_hub(args.repo_id, token=args.token, private=args.private,
                                commit_message=args.message, revision=args.revision)
    print(url)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.pipeline import run_demo

    return run_demo(args.out, small=args.small, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtvr", description="Multilingual text-to-video retrieval.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="build a faiss index of videos from a feature store")
    s.add_argument("--model", required=True, help="model folder or Hub id")
    s.add_argument("--features", required=True, help="feature store folder (mtvr extract-features)")
    s.add_argument("--out", required=True, help="index folder to write")
    s.add_argument("--kind", default="flat", help="flat (exact), hnsw, ivfpq, sq8 or a faiss factory string")
    s.add_argument("--batch-size", type=int, default=1024)
    s.add_argument("--device")
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("search", help="search an index with text queries in any language")
    s.add_argument("query", nargs="+")
    s.add_argument("--model", required=True)
    s.add_argument("--index", required=True)
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--json", action="store_true")
    s.add_argument("--device")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("evaluate", help="per-language R@1/5/10, MdR, MnR on a dataset split")
    s.add_argument("--model", required=True)
    s.add_argument("--dataset", required=True, help="folder from mtvr build-dataset, or a Hub dataset id")
    s.add_argument("--features", required=True)
    s.add_argument("--split", default="test")
    s.add_argument("--config", default="all")
    s.add_argument("--languages", nargs="+")
    s.add_argument("--out", help="write results.json here")
    s.add_argument("--device")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("extract-features", help="videos -> frame features (resumable feature store)")
    s.add_argument("source", nargs="+", help="a folder of videos, video files, a .txt list, or a dataset folder")
    s.add_argument("--out", required=True)
    s.add_argument("--encoder", default="openai/clip-vit-base-patch32")
    s.add_argument("--num-frames", type=int, default=12)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--shard-size", type=int, default=64)
    s.add_argument("--split", help="with a dataset folder: only this split")
    s.add_argument("--device")
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("build-dataset", help="build Multi-MSRVTT / Multi-YouCook2 by machine translation")
    s.add_argument("builder", help="multi_youcook2, multi_msrvtt or multi_shapes")
    s.add_argument("--out", required=True)
    s.add_argument("--data-dir", help="folder with the official annotation files (default: download)")
    s.add_argument("--config")
    s.add_argument("--languages", nargs="+")
    s.add_argument("--backend", default="transformers", help="transformers, ctranslate2, apertium or none")
    s.add_argument("--backend-option", nargs="*", metavar="KEY=VALUE", help='e.g. family=nllb num_beams=4')
    s.add_argument("--video-dir")
    s.add_argument("--splits", nargs="+")
    s.add_argument("--translations-file")
    s.add_argument("--translation-cache")
    s.add_argument("--quality-threshold", type=float)
    s.add_argument("--threshold-action", default="flag", choices=["flag", "drop"])
    s.add_argument("--push-to-hub", metavar="REPO_ID")
    s.add_argument("--private", action="store_true")
    s.add_argument("--token", help="Hub token (default: HF_TOKEN or your login); never printed")
    s.set_defaults(func=cmd_build_dataset)

    s = sub.add_parser("train", help="train teachers and a multilingual student from a recipe")
    s.add_argument("recipe")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    s.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override recipe keys, e.g. optim.epochs=2")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("push", help="publish a model folder to the Hugging Face Hub")
    s.add_argument("model_dir")
    s.add_argument("repo_id")
    s.add_argument("--token")
    s.add_argument("--private", action="store_true")
    s.add_argument("--message")
    s.add_argument("--revision")
    s.set_defaults(func=cmd_push)

    s = sub.add_parser("demo", help="the whole product end to end, offline, on a synthetic dataset")
    s.add_argument("--out", default="demo_output")
    s.add_argument("--small", action="store_true", help="fewer clips and epochs (CI)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import MtvrError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (MtvrError, FileNotFoundError, ValueError) as exc:
        print(f"mtvr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
