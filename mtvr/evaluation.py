"""Evaluation of a retriever on a dataset split, per language (the numbers in ``results.json``)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

from .metrics import LanguageReport, retrieval_metrics


def evaluate_clipset(
    retriever: Any, clipset: Any, languages: Sequence[str], name: str = "", batch_size: int = 256
) -> LanguageReport:
    """Encode the split's videos once and every language's captions; R@K / MdR / MnR per language (a
    caption's relevant clips are its own clip, or every clip of its group when the split has ``scene``
    groups: see :mod:`mtvr.metrics`)."""
    videos = retriever.encode_video_features(list(clipset.features), num_frames=clipset.mask.sum(1).tolist())
    report = LanguageReport(name=name)
    for lang in languages:
        texts, owner = clipset.flat_captions(lang)
        emb = retriever.encode_text(texts, batch_size=batch_size)
        report.add(lang, retrieval_metrics(emb @ videos.T, owner, clipset.video_groups))
    return report


def evaluate_dataset(
    retriever: Any,
    dataset: str,
    features: str | os.PathLike,
    split: str = "test",
    config: str = "all",
    languages: Sequence[str] | None = None,
) -> LanguageReport:
    from .clipset import load_clipset

    langs = list(languages or retriever.config.languages or ["en"])
    clipset = load_clipset(dataset, config, split, features, langs)
    return evaluate_clipset(retriever, clipset, langs, name=f"{dataset}:{config}:{split}")


def versions() -> dict[str, str]:
    import torch
    import transformers

    from . import __version__

    return {
        "mtvr": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def results_entry(report: LanguageReport, dataset: str, config: str, split: str) -> dict:
    return {
        "dataset": dataset,
        "config": config,
        "split": split,
        "languages": report.results,
        "mean": {"t2v": report.mean("t2v"), "v2t": report.mean("v2t")},
    }
