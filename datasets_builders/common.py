"""The shared translate-and-score step and the example schema of the multilingual video datasets.

Every builder turns its annotations into rows with English captions, then calls
:func:`translate_and_score`: each unique English caption is translated once into every language
(through the persistent SQLite cache of :class:`mtvr.translate.CachedTranslator`), translated back to
English, and scored with sentence chrF against the original (the per-caption quality estimate).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import datasets

from mtvr.errors import DatasetBuildError
from mtvr.translate import CachedTranslator, build_translator, check_language, corpus_scores, sentence_chrf

DEFAULT_CACHE = Path(os.environ.get("MTVR_CACHE", Path.home() / ".cache" / "mtvr")) / "translations.sqlite"


@dataclass
class MultilingualVideoConfig(datasets.BuilderConfig):
    """Options shared by the multilingual video builders.

    Args:
        languages: language codes to produce (English is always included, as the original).
        backend: ``transformers`` | ``ctranslate2`` | ``apertium`` | ``"none"`` (only with ``translations_file``).
        backend_options: keyword arguments of the backend (e.g. ``{"family": "nllb"}`` or local ``models``).
        translations_file: existing translations (JSONL/CSV with an ``en`` column and one column per
            language) used instead of translating.
        translation_cache: the SQLite cache file.
        quality_threshold: round-trip chrF under which a translation is flagged (or dropped).
        threshold_action: ``flag`` (keep, mark ``flagged``) or ``drop`` (caption set to None, flagged).
        back_translate: compute the round-trip quality estimate.
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
    meta = {"backend": datasets.Value("string"), "model": datasets.Value("string"),
            "chrf": datasets.Value("float32"), "back_translation": datasets.Value("string"),
            "flagged": datasets.Value("bool")}
    return datasets.Features({
        "clip_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "sentence_id": datasets.Value("string"),
        "split": datasets.Value("string"),
        "start": datasets.Value("float64"),
        "end": datasets.Value("float64"),
        "video_path": datasets.Value("string"),
        "captions": {lang: datasets.Value("string") for lang in languages},
        "translation": {lang: meta for lang in languages if lang != "en"},
    })


def resolve_languages(config: MultilingualVideoConfig, supported: Sequence[str]) -> list[str]:
    langs = list(config.languages or config.default_languages)
    for code in langs:
        try:
            check_language(code, supported)
        except ValueError as exc:
            raise DatasetBuildError(str(exc)) from None
    return ["en"] + [l for l in dict.fromkeys(langs) if l != "en"]


def load_translations_file(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """``{english: {lang: text}}`` from a JSONL or CSV file with an ``en`` column."""
    path = Path(path)
    if not path.is_file():
        raise DatasetBuildError(f"translations file {path} not found")
    rows: list[dict] = []
    if path.suffix in (".jsonl", ".json"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetBuildError(f"{path}, line {i}: not valid JSON ({exc})") from None
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows, 1):
        if "en" not in row:
            raise DatasetBuildError(f"{path}, record {i}: no 'en' field (the English original is the key)")
        out[row["en"]] = {k: v for k, v in row.items() if k != "en"}
    return out


def translate_and_score(captions_en: Sequence[str], config: MultilingualVideoConfig,
                        languages: Sequence[str]) -> tuple[dict[str, dict[str, list]], dict[str, dict]]:
    """Translate the unique English captions into each language and score the round trip.

    Returns ``(per_language, report)``: ``per_language[lang]`` maps ``"text"``, ``"back"``, ``"chrf"``,
    ``"flagged"``, ``"backend"``, ``"model"`` to lists/values aligned with the unique captions
    (``report["_unique"]`` lists them); ``report[lang]`` holds counts, time and corpus scores.
    """
    unique = list(dict.fromkeys(captions_en))
    given = load_translations_file(config.translations_file) if config.translations_file else None
    translator = None
    if config.backend and config.backend != "none":
        try:
            backend = build_translator(config.backend, **config.backend_options)
        except (TypeError, ValueError) as exc:
            raise DatasetBuildError(f"backend {config.backend!r}: {exc}") from None
        translator = CachedTranslator(backend, config.translation_cache or DEFAULT_CACHE,
                                      batch_size=config.translation_batch_size)
    elif given is None:
        raise DatasetBuildError("no translation backend and no translations_file: give one of them")
    if config.threshold_action not in ("flag", "drop"):
        raise DatasetBuildError(f"threshold_action must be 'flag' or 'drop', got {config.threshold_action!r}")
    per_lang: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {"_unique": unique, "_captions": len(captions_en)}
    for lang in languages:
        if lang == "en":
            continue
        t0 = time.perf_counter()
        before = translator.translated if translator else 0
        if given is not None:
            missing = [c for c in unique if lang not in given.get(c, {})]
            if missing and translator is None:
                raise DatasetBuildError(f"translations file {config.translations_file} has no {lang!r} translation "
                                        f"for {len(missing)} captions, e.g. {missing[0]!r}")
            texts = [given.get(c, {}).get(lang) for c in unique]
            backend_name, model = "file", Path(config.translations_file).name
            if missing:
                fill = dict(zip(missing, translator.translate(missing, "en", lang)))
                texts = [t if t is not None else fill[c] for t, c in zip(texts, unique)]
        else:
            texts = translator.translate(unique, "en", lang)
            backend_name, model = translator.name, translator.model_id("en", lang)
        translated_now = (translator.translated - before) if translator else 0
        back, chrf = [None] * len(unique), [None] * len(unique)
        scores: dict[str, Any] = {}
        if config.back_translate and translator is not None:
            back = translator.translate(texts, lang, "en")
            chrf = sentence_chrf(back, unique)
            scores = corpus_scores(back, unique)
        thr = config.quality_threshold
        flagged = [thr is not None and c is not None and c < thr for c in chrf]
        per_lang[lang] = {"text": texts, "back": back, "chrf": chrf, "flagged": flagged,
                          "backend": backend_name, "model": model}
        report[lang] = {"backend": backend_name, "model": model, "captions": len(captions_en), "unique": len(unique),
                        "translated_now": translated_now, "from_cache": len(unique) - translated_now if given is None else 0,
                        "flagged": sum(flagged), "dropped": sum(flagged) if config.threshold_action == "drop" else 0,
                        "seconds": round(time.perf_counter() - t0, 2), **scores}
    if translator is not None:
        report["_backend_calls"] = translator.backend_calls
        report["_translated"] = translator.translated
    return per_lang, report


def translated_split_generators(builder: datasets.GeneratorBasedBuilder, rows: Sequence[dict],
                                splits: Sequence[str]) -> list[datasets.SplitGenerator]:
    """Translate and score the rows' captions once, then one SplitGenerator per split (sets ``build_report``)."""
    per_lang, builder.build_report = translate_and_score([r["caption"] for r in rows], builder.config, builder.languages)
    unique = builder.build_report.pop("_unique")
    return [datasets.SplitGenerator(name=split, gen_kwargs={"rows": [r for r in rows if r["split"] == split],
                                                            "per_lang": per_lang, "unique": unique})
            for split in splits]


def build_rows(rows: Sequence[dict], config: MultilingualVideoConfig, languages: Sequence[str],
               per_lang: dict[str, dict[str, list]], unique: Sequence[str]):
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
            meta[lang] = {"backend": d["backend"], "model": d["model"], "chrf": d["chrf"][i],
                          "back_translation": d["back"][i], "flagged": bool(d["flagged"][i])}
        path = None
        if video_dir is not None:
            path = str(find_video(video_dir, row["video_id"]) or video_dir / f"{row['video_id']}.mp4")
        yield f"{row['clip_id']}#{row['sentence_id']}", {
            "clip_id": row["clip_id"], "video_id": row["video_id"], "sentence_id": str(row["sentence_id"]),
            "split": row["split"], "start": row.get("start"), "end": row.get("end"), "video_path": path,
            "captions": captions, "translation": meta}


def find_video(video_dir: Path, video_id: str) -> Path | None:
    for suffix in (".mp4", ".mkv", ".webm", ".avi", ".mov"):
        p = video_dir / f"{video_id}{suffix}"
        if p.is_file():
            return p
    hits = list(video_dir.glob(f"**/{video_id}.*"))
    return hits[0] if hits else None


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DatasetBuildError(f"{what} not found at {path}: pass data_dir= pointing at the folder that holds it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetBuildError(f"{path} is malformed or truncated JSON (line {exc.lineno}, column {exc.colno}: "
                                f"{exc.msg}); download it again") from None


def config_dict(config: MultilingualVideoConfig) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name not in ("data_files", "description")}
