"""``mtvr build-dataset``: build Multi-MSRVTT / Multi-YouCook2 by machine translation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import add_hub_token, parse_kv

NAME = "build-dataset"
HELP = "build Multi-MSRVTT / Multi-YouCook2 by machine translation"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("builder", help="multi_youcook2, multi_msrvtt or multi_shapes")
    s.add_argument("--out", required=True, help="dataset folder to write: Parquet + card + build report")
    s.add_argument("--data-dir", help="folder with the official annotation files")
    s.add_argument("--config", help="builder config, e.g. 1k-A or full for multi_msrvtt")
    s.add_argument("--languages", nargs="+", help="target languages (default: the builder's list)")
    s.add_argument(
        "--backend",
        default="transformers",
        help="a registered translation backend (built in: transformers, ctranslate2, apertium) or none",
    )
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
    add_hub_token(s)


def run(args: argparse.Namespace) -> int:
    from ..dataset_publishing import build_dataset, push_dataset_folder
    from ..errors import OptionError
    from ..translate import backend_names

    if args.backend != "none" and args.backend not in backend_names():  # before any annotation is read
        raise OptionError(f"--backend {args.backend!r}: choose one of {backend_names()} or none")
    kwargs: dict[str, Any] = {"backend": args.backend, "backend_options": parse_kv(args.backend_option)}
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
