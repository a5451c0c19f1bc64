"""The ``mtvr`` command: index, search, evaluate, extract-features, build-dataset, train, push, demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def cmd_index_ray(args: argparse.Namespace) -> int:
    from .scale.ray_runtime import ensure_ray
    from .scale.sharded_index import build_sharded_index, embed_store

    ensure_ray(args.address)
    ids, emb = embed_store(args.model, args.features, engine="ray", batch_size=args.batch_size, device=args.device)
    kind = None if args.kind in ("ivfpq", "flat") else args.kind
    index = build_sharded_index(ids, emb, args.out, factory=kind, num_shards=args.shards, engine="ray")
    print(f"indexed {len(ids)} videos from {args.features} into {args.out} ({index.kind}, {args.shards} shards merged)")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return cmd_index_ray(args)
    from .retriever import Retriever
    from .video.store import FeatureStore

    options = {"target_recall": args.target_recall} if args.target_recall else {}
    retriever = Retriever.from_pretrained(args.model, device=args.device, index_kind=args.kind, **options)
    store = FeatureStore(args.features)
    ids = store.clip_ids
    for start in tqdm(range(0, len(ids), args.batch_size), desc="index", unit="batch"):
        chunk = ids[start : start + args.batch_size]
        entries = store.get_many(chunk)
        retriever.add(chunk, features=[f for f, _ in entries], num_frames=[n for _, n in entries])
    retriever.save_index(args.out)
    print(f"indexed {len(ids)} videos from {args.features} into {args.out} ({args.kind})")
    index = retriever.index
    if args.target_recall:
        knob = "ef_search" if "hnsw" in args.kind.lower() else "nprobe"
        measured = "n/a (exact search)" if index.measured_recall is None else f"{index.measured_recall:.3f}"
        print(
            f"target recall@{index.recall_k} {args.target_recall}: {knob} = {getattr(index, knob)}, "
            f"measured recall {measured}"
        )
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
    from .atomic import atomic_write_text
    from .evaluation import evaluate_dataset, results_entry, versions
    from .retriever import Retriever

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


def cmd_extract(args: argparse.Namespace) -> int:
    from .video.encoder import build_frame_encoder
    from .video.extract import clips_from_source, extract_features

    sources = args.source if len(args.source) > 1 else args.source[0]
    clips = clips_from_source(sources, split=args.split)
    encoder = build_frame_encoder(args.encoder, device=args.device)
    summary = extract_features(
        clips, args.out, encoder, num_frames=args.num_frames, workers=args.workers, shard_size=args.shard_size
    )
    print(summary)
    if summary.failed:
        print(f"{summary.failed} clips failed: see {Path(args.out) / 'errors.jsonl'}", file=sys.stderr)
        if summary.done == 0 and summary.skipped == 0:
            print("mtvr extract-features: error: every clip failed; nothing was extracted", file=sys.stderr)
            return 1
    return 0


def cmd_build_dataset(args: argparse.Namespace) -> int:
    from .dataset_publishing import build_dataset, push_dataset_folder

    kwargs: dict[str, Any] = {"backend": args.backend, "backend_options": _kv(args.backend_option)}
    for name in ("video_dir", "translations_file", "translation_cache", "quality_threshold"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.splits:
        kwargs["splits"] = args.splits
    kwargs["threshold_action"] = args.threshold_action
    meta = build_dataset(
        args.builder,
        args.out,
        config_name=args.config,
        data_dir=args.data_dir,
        languages=args.languages,
        repo_id=args.push_to_hub,
        **kwargs,
    )
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
        from .metrics import LanguageReport

        print(f"\n{ev['dataset']} [{ev['split']}]\n" + LanguageReport.from_dict(ev).to_markdown())
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .retriever import Retriever

    retriever = Retriever.from_pretrained(args.model_dir, device="cpu")
    url = retriever.push_to_hub(
        args.repo_id, token=args.token, private=args.private, commit_message=args.message, revision=args.revision
    )
    print(url)
    return 0


def cmd_zero_shot(args: argparse.Namespace) -> int:
    from .retriever import Retriever

    retriever = Retriever.from_zero_shot(
        text=args.text, vision=args.vision, device=args.device, num_frames=args.num_frames
    )
    retriever.save_pretrained(args.out)
    print(f"zero-shot retriever ({args.text} + {args.vision}) written to {args.out}")
    if args.videos:
        result = retriever.add_videos(args.videos)
        index_dir = args.index or str(Path(args.out).with_name(Path(args.out).name + "-index"))
        retriever.save_index(index_dir)
        print(
            f"indexed {len(result.video_ids)} videos into {index_dir}"
            + (f"; {len(result.errors)} failed" if result.errors else "")
        )
        print(f'search: mtvr search "..." --model {args.out} --index {index_dir}')
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError('mtvr serve needs FastAPI and uvicorn: pip install "mtvr[serve]"') from exc
    from .retriever import Retriever
    from .serve import ServeSettings, create_app

    token = None
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
        if not token:
            raise ValueError(f"--token-file {args.token_file} is empty")
    retriever = Retriever.from_pretrained(args.model, device=args.device)
    retriever.load_index(args.index)
    settings = ServeSettings(max_k=args.max_k, token=token, cors_origins=list(args.cors_origin))
    app = create_app(retriever, videos_dir=args.videos, settings=settings)
    print(
        f"mtvr serve: {len(retriever.index)} videos from {args.index}; http://{args.host}:{args.port}/ "
        f"(API docs at /docs){'; bearer token required' if token else ''}",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if not getattr(args, "verbose", False) else "info",
        access_log=getattr(args, "verbose", False),
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.pipeline import run_demo

    return run_demo(args.out, small=args.small, seed=args.seed, seeds=args.seeds)


def _common() -> argparse.ArgumentParser:
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


def _device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    common = _common()
    p = argparse.ArgumentParser(
        prog="mtvr",
        description="Multilingual text-to-video retrieval: build multilingual "
        "video datasets, train students by distillation, index and search videos.",
        parents=[common],
    )
    p.add_argument("--version", action="version", version=f"mtvr {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    s = command("index", "build a faiss index of videos from a feature store")
    s.add_argument("--model", required=True, help="model folder or Hub id (a trained or zero-shot retriever)")
    s.add_argument("--features", required=True, help="feature store folder written by `mtvr extract-features`")
    s.add_argument("--out", required=True, help="index folder to write (atomically)")
    s.add_argument("--kind", default="flat", help="flat (exact), hnsw, ivfpq, sq8 or a faiss factory string")
    s.add_argument(
        "--target-recall",
        type=float,
        metavar="R",
        help="tune ef_search / nprobe to reach this recall@10 against exact search (e.g. 0.95)",
    )
    s.add_argument("--batch-size", type=int, default=1024, help="videos encoded per batch (default 1024)")
    s.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: embed in parallel and build an IVF-PQ index as merged shards",
    )
    s.add_argument("--shards", type=int, default=8, help="with --engine ray: shards built in parallel (default 8)")
    s.add_argument("--address", help="with --engine ray: the cluster to join (ray://HEAD:10001 or auto)")
    _device(s)
    s.set_defaults(func=cmd_index)

    s = command("search", "search an index with text queries in any language")
    s.add_argument("query", nargs="+", help="one or more queries, in any language the model knows")
    s.add_argument("--model", required=True, help="model folder or Hub id")
    s.add_argument("--index", required=True, help="index folder written by `mtvr index` or Retriever.save_index")
    s.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    s.add_argument("--json", action="store_true", help="print the hits as JSON instead of a list")
    _device(s)
    s.set_defaults(func=cmd_search)

    s = command("evaluate", "per-language R@1/5/10, MdR, MnR on a dataset split")
    s.add_argument("--model", required=True, help="model folder or Hub id")
    s.add_argument("--dataset", required=True, help="folder from mtvr build-dataset, or a Hub dataset id")
    s.add_argument("--features", required=True, help="feature store of the dataset's clips")
    s.add_argument("--split", default="test", help="dataset split (default test)")
    s.add_argument("--config", default="all", help="dataset config (default all)")
    s.add_argument("--languages", nargs="+", help="languages to evaluate (default: the model's)")
    s.add_argument("--out", help="write results.json here (atomically)")
    _device(s)
    s.set_defaults(func=cmd_evaluate)

    s = command("extract-features", "videos -> frame features (resumable feature store)")
    s.add_argument("source", nargs="+", help="a folder of videos, video files, a .txt list, or a dataset folder")
    s.add_argument("--out", required=True, help="feature store folder (created, or resumed when it exists)")
    s.add_argument(
        "--encoder",
        default="openai/clip-vit-base-patch32",
        help="CLIP vision checkpoint (Hub id or folder), or mtvr/shape-stats",
    )
    s.add_argument("--num-frames", type=int, default=12, help="frames sampled uniformly per clip (default 12)")
    s.add_argument("--workers", type=int, default=2, help="decode worker processes (default 2)")
    s.add_argument("--shard-size", type=int, default=64, help="clips per safetensors shard (default 64)")
    s.add_argument("--split", help="with a dataset folder: only this split")
    s.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: worker processes on this machine; ray: a Ray Data pipeline (pip install 'mtvr[ray]')",
    )
    s.add_argument("--address", help="with --engine ray: the cluster to join (ray://HEAD:10001 or auto)")
    s.add_argument("--batch-size", type=int, default=16, help="with --engine ray: clips per encoder call")
    _device(s)
    s.set_defaults(func=cmd_extract)

    s = command("build-dataset", "build Multi-MSRVTT / Multi-YouCook2 by machine translation")
    s.add_argument("builder", help="multi_youcook2, multi_msrvtt or multi_shapes")
    s.add_argument("--out", required=True, help="dataset folder to write: Parquet + card + build report")
    s.add_argument("--data-dir", help="folder with the official annotation files")
    s.add_argument("--config", help="builder config, e.g. 1k-A or full for multi_msrvtt")
    s.add_argument("--languages", nargs="+", help="target languages (default: the builder's list)")
    s.add_argument("--backend", default="transformers", help="transformers, ctranslate2, apertium or none")
    s.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend option, repeatable: --backend-option family=nllb --backend-option num_beams=4",
    )
    s.add_argument("--video-dir", help="folder of the videos; examples then carry their video_path")
    s.add_argument("--splits", nargs="+", help="only these splits")
    s.add_argument("--translations-file", help="existing translations (JSONL/CSV with an en column)")
    s.add_argument("--translation-cache", help="SQLite translation cache (default ~/.cache/mtvr)")
    s.add_argument("--quality-threshold", type=float, help="round-trip chrF under which a translation is flagged")
    s.add_argument(
        "--threshold-action",
        default="flag",
        choices=["flag", "drop"],
        help="flag low-quality translations, or drop them (default flag)",
    )
    s.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the folder as a Hub dataset repository")
    s.add_argument("--private", action="store_true", help="create the Hub repository as private")
    s.add_argument("--token", help="Hub token (default: HF_TOKEN or your login); never printed")
    s.set_defaults(func=cmd_build_dataset)

    s = command("train", "train teachers and a multilingual student from a recipe")
    s.add_argument("recipe", help="recipe YAML, e.g. models/c2kd-multi-msrvtt.yaml")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, repeatable: --set optim.epochs=2 --set seed=1",
    )
    s.set_defaults(func=cmd_train)

    s = command("push", "publish a model folder to the Hugging Face Hub")
    s.add_argument("model_dir", help="model folder (e.g. runs/NAME/best)")
    s.add_argument("repo_id", help="Hub repository, e.g. your-org/c2kd-labse-multi-msrvtt")
    s.add_argument("--token", help="Hub token (default: HF_TOKEN or your login); never printed")
    s.add_argument("--private", action="store_true", help="create the repository as private")
    s.add_argument("--message", help="commit message")
    s.add_argument("--revision", help="branch to push to")
    s.set_defaults(func=cmd_push)

    s = command("zero-shot", "assemble a multilingual video retriever from public CLIP checkpoints (no training)")
    s.add_argument(
        "--text",
        default="sentence-transformers/clip-ViT-B-32-multilingual-v1",
        help="multilingual sentence-transformers text tower aligned to CLIP (Hub id or folder)",
    )
    s.add_argument("--vision", default="openai/clip-vit-base-patch32", help="the matching CLIP checkpoint")
    s.add_argument("--num-frames", type=int, default=12, help="frames per video (default 12)")
    s.add_argument("--out", required=True, help="model folder to write")
    s.add_argument("--videos", nargs="+", help="video files or folders to index right away")
    s.add_argument("--index", help="index folder to write with --videos (default: OUT-index)")
    _device(s)
    s.set_defaults(func=cmd_zero_shot)

    s = command("serve", "search behind an HTTP API and a web page (FastAPI + uvicorn)")
    s.add_argument("model", help="model folder or Hub id")
    s.add_argument("--index", required=True, help="index folder (mtvr index / Retriever.save_index)")
    s.add_argument("--videos", help="folder of the video files, for thumbnails and playback")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--token-file", help="file holding a bearer token that every request must carry (never logged)")
    s.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; CORS is off by default)",
    )
    s.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    _device(s)
    s.set_defaults(func=cmd_serve)

    s = command("demo", "the whole product end to end, offline, on a synthetic dataset")
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
    s.set_defaults(func=cmd_demo)
    for extra in EXTRA_COMMANDS:
        extra(command)
    return p


EXTRA_COMMANDS: list = []  # functions that add subcommands (serve, zero-shot), registered below


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import MtvrError

    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
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
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mtvr {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MtvrError, FileNotFoundError, ValueError, ImportError) as exc:
        if verbose:
            traceback.print_exc()
        print(f"mtvr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
