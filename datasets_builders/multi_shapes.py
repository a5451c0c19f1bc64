"""Multi-Shapes: a synthetic multilingual video dataset for the offline demo and the tests.

A few hundred short clips rendered to real MP4 files with PyAV: a coloured shape (circle, square,
triangle, star) that moves left/right/up/down, grows or shrinks over a black, white or gray
background. English captions come from a compositional grammar; German, French, Czech, Chinese,
Russian, Vietnamese and Japanese from per-language grammars and lexicons written for this dataset
(:mod:`datasets_builders.shapes_grammar`; clips drawn by :mod:`datasets_builders.shapes_render`); **Spanish goes through the real apertium MT backend** with its round-trip
chrF, so the translation path of the real builders runs for real. Splits: train / validation / test.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import datasets
import numpy as np

from mtvr.errors import DatasetBuildError, DatasetError
from mtvr.video.render import write_video

from .common import MultilingualVideoConfig, build_rows, example_features, resolve_languages, translate_and_score
from .shapes_grammar import BACKGROUNDS, COLOURS, LANGUAGES, MOTIONS, SHAPES, Clip, caption, scene_of
from .shapes_render import render_clip

ALL_LANGUAGES = LANGUAGES + ("es",)
SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}


class MultiShapesConfig(MultilingualVideoConfig):
    """Options of Multi-Shapes.

    Args:
        num_clips: clips to render, split by ``SPLIT_FRACTIONS`` (unless ``split_sizes`` is given).
        split_sizes: ``{"train": n, "validation": n, "test": n}``: exact split sizes.
        translation_noise: the fraction of **training** captions in each grammar language that describe a
            clip differing in one attribute (colour, shape or motion): simulated machine-translation errors.
            Validation and test captions stay exact, like a human-checked test set; English is the
            original and never noisy.
    """

    def __init__(
        self,
        *args,
        num_clips: int = 360,
        seed: int = 0,
        frames: int = 16,
        size: int = 64,
        split_sizes: dict[str, int] | None = None,
        translation_noise: float = 0.0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.num_clips, self.seed, self.frames, self.size = num_clips, seed, frames, size
        self.split_sizes = dict(split_sizes) if split_sizes else None
        if not 0.0 <= float(translation_noise) < 1.0:
            raise DatasetBuildError(f"translation_noise must be in [0, 1), got {translation_noise!r}")
        self.translation_noise = float(translation_noise)


def mistranslate(clip: Clip, rng: np.random.Generator) -> Clip:
    """The clip with one attribute (colour, shape or motion) replaced by another value: what a
    translation that gets one word wrong describes."""
    attribute = ["colour", "shape", "motion"][int(rng.integers(3))]
    values = {"colour": COLOURS, "shape": SHAPES, "motion": MOTIONS}[attribute]
    current = getattr(clip, attribute)
    wrong = [v for v in values if v != current][int(rng.integers(len(values) - 1))]
    return dataclasses.replace(clip, **{attribute: wrong})


def sample_clips(n: int, seed: int) -> list[Clip]:
    """``n`` clips covering the attribute grid as evenly as possible, in a seeded random order."""
    grid = [Clip(*a) for a in itertools.product(SHAPES, COLOURS, MOTIONS, BACKGROUNDS)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(grid))
    reps = -(-n // len(grid))
    return [grid[i] for i in np.concatenate([rng.permutation(order) for _ in range(reps)])[:n]]


_PARSED: dict[str, tuple[Clip, int]] = {}


def parse_caption(english: str) -> tuple[Clip, int]:
    """``(clip, template)`` of an English Multi-Shapes caption (one table of every caption, built once)."""
    if not _PARSED:
        for clip in (Clip(*a) for a in itertools.product(SHAPES, COLOURS, MOTIONS, BACKGROUNDS)):
            for t in (0, 1):
                _PARSED[caption(clip, "en", t)] = (clip, t)
    try:
        return _PARSED[english]
    except KeyError:
        raise DatasetError(f"not a Multi-Shapes caption: {english!r}") from None


def recaption(english: str, lang: str) -> str:
    """The caption in ``lang`` (a grammar language) of the clip an English caption describes, with the other
    template: a query worded unlike the clip's own captions."""
    clip, template = parse_caption(english)
    return caption(clip, lang, 1 - template)


class MultiShapes(datasets.GeneratorBasedBuilder):
    """``MultiShapes(config_name="all", video_dir=..., num_clips=360, backend="apertium")``."""

    BUILDER_CONFIG_CLASS = MultiShapesConfig
    BUILDER_CONFIGS = [
        MultiShapesConfig(name="all", default_languages=ALL_LANGUAGES, backend="apertium", description="all languages")
    ]
    DEFAULT_CONFIG_NAME = "all"

    def _info(self) -> datasets.DatasetInfo:
        self.languages = resolve_languages(self.config, ALL_LANGUAGES)
        features = example_features(self.languages)
        # what the clip shows ("shape colour motion background"): clips with the same scene answer each
        # other's captions, so evaluation counts any of them as correct (mtvr.metrics, video_groups)
        features["scene"] = datasets.Value("string")
        return datasets.DatasetInfo(description=__doc__, features=features, license="cc0-1.0", citation="")

    def _split_generators(self, dl_manager):
        if not self.config.video_dir:
            raise DatasetBuildError("multi_shapes renders its clips: pass video_dir= (where to write the MP4 files)")
        video_dir = Path(self.config.video_dir)
        if self.config.split_sizes:
            sizes = self.config.split_sizes
            unknown = sorted(set(sizes) - set(SPLIT_FRACTIONS))
            if unknown:
                raise DatasetBuildError(
                    f"split_sizes: unknown splits {unknown}; Multi-Shapes has {list(SPLIT_FRACTIONS)}"
                )
            n_train, n_val = int(sizes.get("train", 0)), int(sizes.get("validation", 0))
            clips = sample_clips(n_train + n_val + int(sizes.get("test", 0)), self.config.seed)
        else:
            clips = sample_clips(self.config.num_clips, self.config.seed)
            n = len(clips)
            n_train, n_val = int(n * SPLIT_FRACTIONS["train"]), int(n * SPLIT_FRACTIONS["validation"])
        rows = []
        for i, clip in enumerate(datasets.utils.tqdm(clips, desc="render clips", unit="clip")):
            split = "train" if i < n_train else "validation" if i < n_train + n_val else "test"
            cid = f"shapes{i:04d}"
            path = video_dir / f"{cid}.mp4"
            if not path.is_file():  # a re-run keeps what was rendered
                rng = np.random.default_rng([self.config.seed, i])
                # MPEG-4 Part 2 in MP4: byte-identical from run to run (libx264 was seen not to be, even on
                # one thread), so a seed gives the same dataset
                write_video(
                    path,
                    render_clip(clip, rng, self.config.size, self.config.frames),
                    fps=8,
                    codec="mpeg4",
                    options={"qscale": "2"},
                )
            template = i % 2
            rows.append(
                {
                    "clip_id": cid,
                    "video_id": cid,
                    "sentence_id": "0",
                    "split": split,
                    "start": None,
                    "end": None,
                    "caption": caption(clip, "en", template),
                    "clip": clip,
                    "template": template,
                }
            )
        mt_langs = [l for l in self.languages if l not in LANGUAGES]  # es: through the MT backend
        per_lang, self.build_report = translate_and_score([r["caption"] for r in rows], self.config, ["en"] + mt_langs)
        unique = self.build_report.pop("_unique")
        grammar_langs = [l for l in self.languages if l in LANGUAGES and l != "en"]
        position = {c: i for i, c in enumerate(unique)}
        for lang in grammar_langs:
            texts = [None] * len(unique)
            for r in rows:
                texts[position[r["caption"]]] = caption(r["clip"], lang, r["template"])
            noisy = 0
            for n, r in enumerate(rows):  # simulated MT errors: a training caption in `lang` names a wrong attribute
                if r["split"] != "train" or not self.config.translation_noise:
                    continue
                rng = np.random.default_rng([self.config.seed, n, sum(map(ord, lang))])
                if rng.random() < self.config.translation_noise:
                    r.setdefault("noisy", {})[lang] = caption(mistranslate(r["clip"], rng), lang, r["template"])
                    noisy += 1
            per_lang[lang] = {
                "text": texts,
                "back": [None] * len(unique),
                "chrf": [None] * len(unique),
                "flagged": [False] * len(unique),
                "backend": "grammar",
                "model": "mtvr/multi-shapes-lexicon",
            }
            self.build_report[lang] = {
                "backend": "grammar",
                "model": "mtvr/multi-shapes-lexicon",
                "captions": len(rows),
                "unique": len(unique),
                "translated_now": 0,
                "from_cache": 0,
                "flagged": 0,
                "dropped": 0,
                "seconds": 0.0,
                "simulated_errors": noisy,
            }
        return [
            datasets.SplitGenerator(
                name=s,
                gen_kwargs={"rows": [r for r in rows if r["split"] == s], "per_lang": per_lang, "unique": unique},
            )
            for s in SPLIT_FRACTIONS
        ]

    def _generate_examples(self, rows, per_lang, unique):
        noisy = {r["clip_id"]: r["noisy"] for r in rows if "noisy" in r}
        scene = {r["clip_id"]: scene_of(r["clip"]) for r in rows}
        for key, example in build_rows(rows, self.config, self.languages, per_lang, unique):
            example["scene"] = scene[example["clip_id"]]
            for lang, text in noisy.get(example["clip_id"], {}).items():
                example["captions"][lang] = text
                example["translation"][lang]["model"] = "mtvr/multi-shapes-lexicon+simulated-mt-error"
                example["translation"][lang]["flagged"] = False
            yield key, example
