"""The translation interface: ``Translator.translate(texts, src, tgt) -> list[str]``."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ..errors import (
    OptionError,
    TranslationError,  # noqa: F401  (re-exported; defined with mtvr's other errors)
)

# Languages of the C2KD datasets (Multi-MSRVTT, Multi-YouCook2, VATEX) and their names.
LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "cs": "Czech",
    "zh": "Chinese",
    "ru": "Russian",
    "vi": "Vietnamese",
    "sw": "Swahili",
    "es": "Spanish",
    "ja": "Japanese",
}


def check_language(code: str, supported: Sequence[str] | None = None) -> str:
    supported = list(supported or LANGUAGE_NAMES)
    if code not in supported:
        raise OptionError(f"unknown language code {code!r}; supported: {', '.join(sorted(supported))}")
    return code


class Translator(abc.ABC):
    """A machine-translation backend.

    ``name`` identifies the backend and ``model_id(src, tgt)`` the model used for a pair; both are
    part of the translation cache key and of the metadata stored with every translation.
    """

    name: str = "base"

    @abc.abstractmethod
    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        """Translate ``texts`` from ``src`` to ``tgt`` (ISO 639-1 codes), one output per input."""

    def model_id(self, src: str, tgt: str) -> str:
        return self.name

    def supports(self, src: str, tgt: str) -> bool:
        return True
