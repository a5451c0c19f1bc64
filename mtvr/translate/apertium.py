"""Apertium: Debian's rule-based translator (``apt install apertium apertium-eng-spa``), real and offline.

Language pairs are Apertium modes; Debian's pairs name them with ISO 639-3 codes (``eng-spa``,
``eng-cat``, ``hbs-eng``, ``isl-eng``, ``mkd-eng``) or ISO 639-1 codes (``en-gl``, ``eo-en``, ``eu-en``):
mtvr takes ISO 639-1 codes (``es``, ``gl``...) and finds whichever mode is installed. Texts are sent one per
line through ``apertium -u MODE`` (``-u``: no unknown-word marks).

English pairs in Debian 12 and their directions (``/usr/share/apertium/modes/``): apertium-eng-spa (en↔es),
apertium-eng-cat (en↔ca), apertium-en-gl (en↔gl), apertium-eo-en (en↔eo), apertium-hbs-eng (en↔hbs,
Serbo-Croatian), apertium-eu-en (eu→en only), apertium-isl-eng (is→en only), apertium-mkd-eng (mk→en only).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from .base import TranslationError, Translator

ISO3 = {
    "en": "eng",
    "es": "spa",
    "ca": "cat",
    "fr": "fra",
    "pt": "por",
    "it": "ita",
    "de": "deu",
    "gl": "glg",
    "eo": "epo",
    "eu": "eus",
    "is": "isl",
    "mk": "mkd",
    "hbs": "hbs",
    "sh": "hbs",
}


def apertium_modes() -> list[str]:
    if shutil.which("apertium") is None:
        return []
    out = subprocess.run(["apertium", "-l"], capture_output=True, text=True)
    return [m.strip() for m in out.stdout.split() if m.strip()]


class ApertiumTranslator(Translator):
    name = "apertium"

    def __init__(self) -> None:
        if shutil.which("apertium") is None:
            raise TranslationError(
                "the apertium backend needs Debian's apertium: "
                "`sudo apt-get install apertium apertium-eng-spa` (make test does this as root)"
            )
        self.modes = apertium_modes()

    def _find(self, src: str, tgt: str) -> str | None:
        """The installed mode for ``src``→``tgt`` under either code style (``eng-spa`` or ``en-gl``)."""
        for a in dict.fromkeys((ISO3.get(src, src), src)):
            for b in dict.fromkeys((ISO3.get(tgt, tgt), tgt)):
                if f"{a}-{b}" in self.modes:
                    return f"{a}-{b}"
        return None

    def _mode(self, src: str, tgt: str) -> str:
        mode = self._find(src, tgt)
        if mode is None:
            raise TranslationError(
                f"apertium has no {src}→{tgt} pair (mode {ISO3.get(src, src)}-{ISO3.get(tgt, tgt)} or {src}-{tgt}); "
                f"installed modes: {', '.join(self.modes) or 'none'} (e.g. apt-get install apertium-eng-spa)"
            )
        return mode

    def supports(self, src: str, tgt: str) -> bool:
        return self._find(src, tgt) is not None

    def model_id(self, src: str, tgt: str) -> str:
        return f"apertium/{self._mode(src, tgt)}"

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        mode = self._mode(src, tgt)
        lines = [" ".join(t.split()) for t in texts]  # one text per line
        proc = subprocess.run(
            ["apertium", "-u", mode], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            raise TranslationError(f"apertium {mode} failed: {proc.stderr.strip()[:300]}")
        out = proc.stdout.split("\n")
        if out and out[-1] == "":
            out = out[:-1]
        if len(out) != len(lines):
            raise TranslationError(f"apertium {mode} returned {len(out)} lines for {len(lines)} inputs")
        return [o.strip() for o in out]
