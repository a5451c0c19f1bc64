"""The example schema of the multilingual video datasets and the builders' common steps.

Every builder turns its annotations into rows with English captions, then calls
:func:`translate_and_score`, which runs mtvr's public translate-and-score step
(:mod:`mtvr.translate.scoring`) with the settings of the builder's config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from mtvr.errors import DatasetBuildError
from mtvr.translate import check_language
from mtvr.translate.scoring import TranslationSettings
from mtvr.translate.scoring import translate_and_score as _translate_and_score


@dataclass
class MultilingualVideoConfig(datasets.BuilderConfig):
    """Options shared by the multilingual video builders.

    Args:
        languages: language codes to produce (English is always included, as the original).
        backend, backend_options, translations_file, translation_cache, quality_threshold,
        threshold_action, back_translate, translation_batch_size: the translation settings, as
            documented in :class:`mtvr.translate.scoring.TranslationSettings`.
        video_dir: folder of the videos; when given, each example carries its ``video_path``.
        splits: the splits to build (default: all of the dataset).
    """

    languages: list[str] | None = None
    backend: str | None = "transformers"
    backend_options: dict[str, Any] = field(default_factory=dict)
    translations_file: str | None = None
    translation_cache: str | None = None
    quality_threshold: float | None = None
    threshold_action: str = "flag"
    back_translate: bool = True
    video_dir: str | None = None
    splits: list[str] | None = None
    default_languages: tuple[str, ...] = ()
    translation_batch_size: int = 64


def example_features(languages: Sequence[str]) -> datasets.Features:
    meta = {
        "backend": datasets.Value("string"),
        "model": datasets.Value("string"),
        "chrf": datasets.Value("float32"),
        "back_translation": datasets.Value("string"),
        "flagged": datasets.Value("bool"),
    }
    return datasets.Features(
        {
            "clip_id": datasets.Value("string"),
            "video_id": datasets.Value("string"),
            "sentence_id": datasets.Value("string"),
            "split": datasets.Value("string"),
            "start": datasets.Value("float64"),
            "end": datasets.Value("float64"),
            "video_path": datasets.Value("string"),
            "captions": {lang: datasets.Value("string") for lang in languages},
            "translation": {lang: meta for lang in languages if lang != "en"},
        }
    )


def resolve_languages(config: MultilingualVideoConfig, supported: Sequence[str]) -> list[str]:
    langs = list(config.languages or config.default_languages)
    for code in langs:
        try:
            check_language(code, supported)
        except ValueError as exc:
            raise DatasetBuildError(str(exc)) from None
    return ["en"] + [l for l in dict.fromkeys(langs) if l != "en"]


def translation_settings(config: MultilingualVideoConfig) -> TranslationSettings:
    return TranslationSettings(
        backend=config.backend,
        backend_options=dict(config.backend_options),
        translations_file=config.translations_file,
        translation_cache=config.translation_cache,
        quality_threshold=config.quality_threshold,
        threshold_action=config.threshold_action,
        back_translate=config.back_translate,
        batch_size=config.translation_batch_size,
    )


def translate_and_score(
    captions_en: Sequence[str], config: MultilingualVideoConfig, languages: Sequence[str]
) -> tuple[dict[str, dict[str, list]], dict[str, dict]]:
    """:func:`mtvr.translate.scoring.translate_and_score` with the builder config's settings."""
    return _translate_and_score(captions_en, translation_settings(config), languages)


def translated_split_generators(
    builder: datasets.GeneratorBasedBuilder, rows: Sequence[dict], splits: Sequence[str]
) -> list[datasets.SplitGenerator]:
    """Translate and score the rows' captions once, then one SplitGenerator per split (sets ``build_report``)."""
    empty = [split for split in splits if not any(r["split"] == split for r in rows)]
    if empty:  # datasets would fail later with 'Instruction "validation" corresponds to no data!'
        has = sorted({r["split"] for r in rows})
        raise DatasetBuildError(
            f"the annotations hold no {' or '.join(map(repr, empty))} examples (they have {has}); "
            f"build only the splits they have (splits={has})"
        )
    per_lang, builder.build_report = translate_and_score(
        [r["caption"] for r in rows], builder.config, builder.languages
    )
    unique = builder.build_report.pop("_unique")
    return [
        datasets.SplitGenerator(
            name=split,
            gen_kwargs={"rows": [r for r in rows if r["split"] == split], "per_lang": per_lang, "unique": unique},
        )
        for split in splits
    ]


def build_rows(
    rows: Sequence[dict],
    config: MultilingualVideoConfig,
    languages: Sequence[str],
    per_lang: dict[str, dict[str, list]],
    unique: Sequence[str],
):
    """Yield ``(key, example)`` for rows with ``clip_id, video_id, sentence_id, split, start, end, caption``."""
    position = {c: i for i, c in enumerate(unique)}
    video_dir = Path(config.video_dir) if config.video_dir else None
    for row in rows:
        i = position[row["caption"]]
        captions, meta = {"en": row["caption"]}, {}
        for lang in languages:
            if lang == "en":
                continue
            d = per_lang[lang]
            drop = d["flagged"][i] and config.threshold_action == "drop"
            captions[lang] = None if drop else d["text"][i]
            meta[lang] = {
                "backend": d["backend"],
                "model": d["model"],
                "chrf": d["chrf"][i],
                "back_translation": d["back"][i],
                "flagged": bool(d["flagged"][i]),
            }
        path = None
        if video_dir is not None:
            vid = check_video_id(row["video_id"], f"clip {row['clip_id']!r}")
            path = str(find_video(video_dir, vid) or video_dir / f"{vid}.mp4")
        yield (
            f"{row['clip_id']}#{row['sentence_id']}",
            {
                "clip_id": row["clip_id"],
                "video_id": row["video_id"],
                "sentence_id": str(row["sentence_id"]),
                "split": row["split"],
                "start": row.get("start"),
                "end": row.get("end"),
                "video_path": path,
                "captions": captions,
                "translation": meta,
            },
        )


VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_ID_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


def check_caption(caption: Any, where: str) -> str:
    """A caption with something to translate, stripped: not only whitespace, NULs, zero-width or other
    control and format characters (those would be translated into empty strings)."""
    import unicodedata

    if not isinstance(caption, str) or not any(
        not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in caption
    ):
        raise DatasetBuildError(
            f"{where} must be a non-empty string with visible text (not only spaces, NULs, zero-width or control "
            f"characters), got {caption!r:.60}; fix that record"
        )
    return caption.strip()


def check_video_id(video_id: Any, where: str) -> str:
    """Ids are data, never paths or patterns: letters, digits and ``_ . = + -`` only (no ``/``, ``..``, ``*``)."""
    if not isinstance(video_id, str) or not _ID_CHARS.match(video_id) or ".." in video_id:
        raise DatasetBuildError(
            f"{where}: video id {video_id!r} is not a plain id (letters, digits, '_', '.', '=', '+', '-'; "
            "no path separators, '..' or wildcards); fix or remove that record"
        )
    return video_id


def find_video(video_dir: Path, video_id: str) -> Path | None:
    """The file of ``video_id`` in ``video_dir`` (any common suffix, in a sub-folder too), matched by
    exact name: the id is never used as a path or a glob pattern."""
    names = {f"{video_id}{suffix}" for suffix in VIDEO_SUFFIXES}
    for suffix in VIDEO_SUFFIXES:
        p = video_dir / f"{video_id}{suffix}"
        if p.is_file() and p.parent == video_dir:
            return p
    for root, _, files in os.walk(video_dir):
        for name in sorted(files):
            if name in names:
                return Path(root) / name
    return None


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DatasetBuildError(f"{what} not found at {path}: pass data_dir= pointing at the folder that holds it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetBuildError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); convert it to UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise DatasetBuildError(
            f"{path} is malformed or truncated JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); download it again"
        ) from None


def config_dict(config: MultilingualVideoConfig) -> dict:
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in ("data_files", "description")
    }
