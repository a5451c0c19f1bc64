"""The translate-and-score step shared by every multilingual dataset builder.

Each unique English caption is translated once into every language (through the persistent SQLite
cache of :class:`mtvr.translate.CachedTranslator`), translated back to English, and scored with sentence
chrF against the original: the per-caption quality estimate that the datasets publish.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetBuildError
from .cache import CachedTranslator
from .quality import corpus_scores, sentence_chrf

DEFAULT_CACHE = Path(os.environ.get("MTVR_CACHE", Path.home() / ".cache" / "mtvr")) / "translations.sqlite"


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


@dataclass
class TranslationSettings:
    """How captions are translated and scored (the builders fill it from their config).

    Args:
        backend: a registered backend (:data:`mtvr.translate.BACKENDS`: ``transformers``, ``ctranslate2``,
            ``apertium``...) or ``"none"`` (only with ``translations_file``).
        backend_options: keyword arguments of the backend (e.g. ``{"family": "nllb"}``).
        translations_file: existing translations (JSONL/CSV, an ``en`` column and one per language).
        translation_cache: the SQLite cache file (default ``~/.cache/mtvr/translations.sqlite``).
        quality_threshold: round-trip chrF under which a translation is flagged (or dropped).
        threshold_action: ``flag`` or ``drop``.
        back_translate: compute the round-trip quality estimate.
        batch_size: sentences per backend call.
    """

    backend: str | None = "transformers"
    backend_options: dict[str, Any] = field(default_factory=dict)
    translations_file: str | None = None
    translation_cache: str | None = None
    quality_threshold: float | None = None
    threshold_action: str = "flag"
    back_translate: bool = True
    batch_size: int = 64

    def __post_init__(self) -> None:
        from . import backend_names

        if self.backend not in (None, "none") and self.backend not in backend_names():
            raise DatasetBuildError(
                f"unknown translation backend {self.backend!r}; choose one of {backend_names()} or none"
            )


def translate_and_score(
    captions_en: Sequence[str], config: TranslationSettings, languages: Sequence[str]
) -> tuple[dict[str, dict[str, list]], dict[str, dict]]:
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
            from . import build_translator

            backend = build_translator(config.backend, **config.backend_options)
        except (TypeError, ValueError) as exc:
            raise DatasetBuildError(f"backend {config.backend!r}: {exc}") from None
        unsupported = [
            l for l in languages if l != "en" and hasattr(backend, "supports") and not backend.supports("en", l)
        ]
        if unsupported:
            raise DatasetBuildError(
                f"backend {config.backend!r} cannot translate English into {', '.join(unsupported)}; "
                "choose another backend (e.g. transformers) or other languages"
            )
        translator = CachedTranslator(backend, config.translation_cache or DEFAULT_CACHE, batch_size=config.batch_size)
    elif given is None and any(lang != "en" for lang in languages):  # English alone needs no translator
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
                raise DatasetBuildError(
                    f"translations file {config.translations_file} has no {lang!r} translation "
                    f"for {len(missing)} captions, e.g. {missing[0]!r}"
                )
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
        per_lang[lang] = {
            "text": texts,
            "back": back,
            "chrf": chrf,
            "flagged": flagged,
            "backend": backend_name,
            "model": model,
        }
        report[lang] = {
            "backend": backend_name,
            "model": model,
            "captions": len(captions_en),
            "unique": len(unique),
            "translated_now": translated_now,
            "from_cache": len(unique) - translated_now if given is None else 0,
            "flagged": sum(flagged),
            "dropped": sum(flagged) if config.threshold_action == "drop" else 0,
            "seconds": round(time.perf_counter() - t0, 2),
            **scores,
        }
    if translator is not None:
        report["_backend_calls"] = translator.backend_calls
        report["_translated"] = translator.translated
    return per_lang, report
