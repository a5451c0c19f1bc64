"""Machine translation for dataset building: one interface, several backends, a persistent cache."""

from __future__ import annotations

from typing import Any

from ..errors import ComponentError
from ..registry import Registry
from .base import LANGUAGE_NAMES, TranslationError, Translator, check_language
from .cache import CachedTranslator, TranslationCache
from .quality import corpus_scores, sentence_chrf


def _check_backend(name: str, backend: Any) -> None:
    if not (isinstance(backend, type) and issubclass(backend, Translator)):
        raise ComponentError(f"translation backend {name!r} must be a Translator subclass, got {backend!r}")


# name -> Translator subclass; `TranslationSettings.backend`, `mtvr build-dataset --backend` and the builders'
# `backend=` are validated against it. Another package adds its own with register_backend or in the
# `mtvr.translation_backends` entry-point group.
BACKENDS: Registry[type[Translator]] = Registry(
    "translation backend", entry_points="mtvr.translation_backends", check=_check_backend
)
BACKENDS.register("transformers", "mtvr.translate.seq2seq:TransformersTranslator")
BACKENDS.register("ctranslate2", "mtvr.translate.seq2seq:CTranslate2Translator")
BACKENDS.register("apertium", "mtvr.translate.apertium:ApertiumTranslator")


def register_backend(name: str, backend: type[Translator] | str) -> None:
    """Make ``backend=name`` (builders, ``mtvr build-dataset --backend``) build ``backend(**backend_options)``:
    a :class:`Translator` subclass, or ``"package.module:Class"`` imported on first use."""
    BACKENDS.register(name, backend)


def backend_names() -> list[str]:
    """Every registered translation backend."""
    return BACKENDS.names()


def build_translator(backend: str, **kwargs: Any) -> Translator:
    """The registered backend ``backend`` (built in: ``transformers``, ``ctranslate2``, ``apertium``) built with
    its options."""
    return BACKENDS.get(backend)(**kwargs)


__all__ = [
    "BACKENDS",
    "CachedTranslator",
    "LANGUAGE_NAMES",
    "TranslationCache",
    "TranslationError",
    "Translator",
    "backend_names",
    "build_translator",
    "register_backend",
    "check_language",
    "corpus_scores",
    "sentence_chrf",
]
