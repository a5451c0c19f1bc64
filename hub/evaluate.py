#!/usr/bin/env python
"""Reproduce the figures of an mtvr model card (uploaded beside every published model).

Needs only ``pip install "mtvr[cpu]"``. Downloads the model and the evaluation dataset by id (or takes
local folders), extracts frame features with the model's own frame encoder when the dataset has videos
(or reads a feature store given with ``--features``), recomputes every evaluation in the model's
``results.json`` and exits with status 1 when a figure differs by more than ``--tolerance``.

    python evaluate.py --model mtvr/c2kd-labse-multi-youcook2 --dataset mtvr/multi_youcook2 --features yc2_features/
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

COMPARED = ("R@1", "R@5", "R@10", "MdR")


def extract_for_dataset(retriever, dataset: str, config: str, split: str, out: Path) -> Path:
    from mtvr.train.data import load_rows
    from mtvr.video.encoder import build_frame_encoder
    from mtvr.video.extract import ClipSpec, extract_features

    rows = load_rows(dataset, config, split)
    clips = {
        r["clip_id"]: ClipSpec(r["clip_id"], r["video_path"], r.get("start"), r.get("end"))
        for r in rows
        if r.get("video_path")
    }
    if not clips:
        raise SystemExit(f"{dataset} has no video paths: pass --features with a feature store")
    fe = retriever.config.frame_encoder
    encoder = build_frame_encoder(fe.name_or_path, device=retriever.device)
    summary = extract_features(list(clips.values()), out, encoder, num_frames=fe.num_frames, workers=2)
    print(f"features: {summary}")
    return out


def compare(expected: dict, got: dict, tolerance: float) -> list[str]:
    problems = []
    for lang, res in expected["languages"].items():
        if lang not in got["languages"]:
            problems.append(f"{lang}: not evaluated")
            continue
        for key in COMPARED:
            e, g = float(res["t2v"][key]), float(got["languages"][lang]["t2v"][key])
            if abs(e - g) > tolerance:
                problems.append(f"{lang} {key}: card says {e:.2f}, measured {g:.2f}")
    return problems


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default=str(here) if (here / "config.json").is_file() else None,
        help="model folder or Hub id (default: the folder of this script)",
    )
    p.add_argument("--dataset", help="dataset folder or Hub id (default: the one in results.json)")
    p.add_argument("--features", help="feature store; default: extract from the dataset's videos")
    p.add_argument("--split", help="only this split (default: every split in results.json)")
    p.add_argument("--results", help="expected results (default: the model's results.json)")
    p.add_argument("--tolerance", type=float, default=0.5, help="allowed difference (percentage points / ranks)")
    p.add_argument("--revision")
    p.add_argument("--out", help="write the measured results here")
    args = p.parse_args(argv)
    if not args.model:
        p.error("--model is required")

    from mtvr import Retriever
    from mtvr.evaluation import evaluate_dataset, results_entry

    retriever = Retriever.from_pretrained(args.model, revision=args.revision)
    results_path = Path(args.results) if args.results else retriever.source_folder / "results.json"
    if not results_path.is_file():
        raise SystemExit(f"no results to reproduce: {results_path} not found")
    expected = json.loads(results_path.read_text())
    measured, problems = [], []
    for ev in expected.get("evaluations", []):
        if args.split and ev["split"] != args.split:
            continue
        dataset = args.dataset or ev["dataset"]
        features = args.features
        with tempfile.TemporaryDirectory(prefix="mtvr-eval-") as tmp:
            if not features:
                features = str(
                    extract_for_dataset(retriever, dataset, ev.get("config", "all"), ev["split"], Path(tmp) / "store")
                )
            report = evaluate_dataset(
                retriever,
                dataset,
                features,
                split=ev["split"],
                config=ev.get("config", "all"),
                languages=list(ev["languages"]),
            )
        got = results_entry(report, dataset, ev.get("config", "all"), ev["split"])
        measured.append(got)
        print(f"\n{dataset} [{ev['split']}]\n{report.to_markdown()}")
        problems += [f"[{ev['split']}] {m}" for m in compare(ev, got, args.tolerance)]
    if not measured:
        raise SystemExit("nothing evaluated: no evaluation in results.json matches the arguments")
    if args.out:
        Path(args.out).write_text(json.dumps({"evaluations": measured}, indent=2) + "\n")
    if problems:
        print("\nMISMATCH with the model card:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nall {sum(len(m['languages']) for m in measured)} language results reproduce within {args.tolerance}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
