"""The demo's data stages: build Multi-Shapes (the ``multi_shapes`` builder) and extract its frame features.

The synthetic data (caption grammar, renderer, simulated MT errors) lives with its builder in
``datasets_builders``; the demo reaches that module by name at run time (:func:`mtvr.builders.builder_module`),
never by an import, so that imports point one way (``datasets_builders`` -> ``mtvr``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..builders import builder_module

SIZES = {"train": 500, "validation": 300, "test": 1000}
SMALL_SIZES = {"train": 160, "validation": 60, "test": 120}
TRANSLATION_NOISE = 0.3  # simulated MT errors in the non-English training captions


def shapes() -> Any:
    """The Multi-Shapes builder's module (its grammar helpers: ``ALL_LANGUAGES``, ``recaption``)."""
    return builder_module("multi_shapes")


# the grammar languages, and Spanish through apertium
LANGUAGES: list[str] = list(shapes().ALL_LANGUAGES)


def build_demo_dataset(out: Path, sizes: dict[str, int], seed: int) -> dict:
    """Multi-Shapes with ``sizes`` clips per split in ``out/dataset`` (MP4 files in ``out/videos``); returns the
    build report. A re-run keeps the rendered clips and the translation cache."""
    from ..dataset_publishing import build_dataset

    return build_dataset(
        "multi_shapes",
        out / "dataset",
        video_dir=str(out / "videos"),
        split_sizes=sizes,
        translation_noise=TRANSLATION_NOISE,
        seed=seed,
        translation_cache=str(out / "translations.sqlite"),
        language_configs=False,
    )


def extract_demo_features(out: Path) -> Any:
    """Frame features of every clip of ``out/dataset`` into ``out/features`` (stored clips are skipped)."""
    from ..video import clips_from_source, extract_features
    from ..video.shape_encoder import ShapeStatsEncoder

    return extract_features(
        clips_from_source(out / "dataset"),
        out / "features",
        ShapeStatsEncoder(),
        num_frames=8,
        workers=2,
        progress=False,
    )


def rows(dataset: Path, split: str) -> list[dict]:
    """The rows of a split of the demo's dataset."""
    from ..clipset import load_rows

    return load_rows(str(dataset), "all", split)


def recaption(english: str, lang: str) -> str:
    """The caption in ``lang`` of the clip an English caption describes, with the other template."""
    return shapes().recaption(english, lang)
