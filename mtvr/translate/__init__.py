"""Machine translation for dataset building: one interface, several backends, a persistent cache."""

from __future__ import annotations

from typing import Any

from ..errors import ComponentError
from .base import LANGUAGE_NAMES, TranslationError, Translator, check_language
from .cache import CachedTranslator, TranslationCache
from .quality import corpus_scores, sentence_chrf

BACKENDS = ("transformers", "ctranslate2", "apertium")


def build_translator(backend: str, **kwargs: Any) -> Translator:
    """``transformers`` | ``ctranslate2`` | ``apertium`` (options are passed to the backend)."""
    if backend == "apertium":
        from .apertium import ApertiumTranslator

        return ApertiumTranslator(**kwargs)
    if backend == "transformers":
        from .seq2seq import TransformersTranslator

        return TransformersTranslator(**kwargs)
    if backend == "ctranslate2":
        from .seq2seq import CTranslate2Translator

        return CTranslate2Translator(**kwargs)
    raise ComponentError(f"unknown translation backend {backend!r}; choose one of {BACKENDS}")


__all__ = [
    "BACKENDS",
    "CachedTranslator",
    "LANGUAGE_NAMES",
    "TranslationCache",
    "TranslationError",
    "Translator",
    "build_translator",
    "check_language",
    "corpus_scores",
    "sentence_chrf",
]
