"""One tokenization helper for training and inference.

Hugging Face *fast* tokenizers keep their truncation/padding settings as mutable state on the Rust
backend, and every call with other settings rewrites it: two threads tokenizing at once (concurrent
``Retriever.search`` calls, one of them counting the untruncated length of a long query) can see each
other's settings. Every call therefore goes through one lock per tokenizer.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The files that carry a vocabulary (fast tokenizers' tokenizer.json; WordPiece, BPE and SentencePiece files).
# tokenizer_config.json alone carries none: transformers would build a 5-token fallback vocabulary from it.
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "sentencepiece.model",
    "tokenizer.model",
    "source.spm",
)


def require_tokenizer_files(folder: str | os.PathLike, what: str, hint: str = "") -> None:
    """Refuse a folder without a tokenizer vocabulary, for every kind of text tower.

    Without these files transformers silently builds a fallback tokenizer of five special tokens:
    every word becomes ``[UNK]``, every query embeds to the same vector and results are garbage.
    ``what`` names the folder's role in the error; ``hint`` says how to fix it.
    """
    folder = Path(folder)
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        raise ModelLoadError(
            f"{what} {folder} has no tokenizer files (none of {', '.join(VOCABULARY_FILES)})"
            + (f": {hint}" if hint else "; copy the tokenizer of the checkpoint into it")
        )


def sentence_transformer_module_folders(folder: str | os.PathLike) -> list[Path]:
    """The folders of the modules of a sentence-transformers pipeline that tokenize (its Transformer
    modules), read from ``modules.json``."""
    folder = Path(folder)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        return [
            folder / m.get("path", "")
            for m in modules
            if str(m.get("type", "")).rsplit(".", 1)[-1] in ("Transformer", "CLIPModel")
        ]
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{folder / 'modules.json'}: not a sentence-transformers module list ({exc})") from exc


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def tokenizer_lock(tokenizer: Any) -> threading.Lock:
    """The lock that serialises calls into ``tokenizer``."""
    with _LOCKS_GUARD:
        try:
            lock = _LOCKS.get(tokenizer)
        except TypeError:  # not weak-referenceable: one lock per object id is still correct
            lock = None
        if lock is None:
            lock = threading.Lock()
            try:
                _LOCKS[tokenizer] = lock
            except TypeError:
                pass
        return lock


def token_count(tokenizer: Any, text: str, prompt: str = "") -> int:
    """Number of tokens of ``prompt + text`` without truncation (special tokens included)."""
    with tokenizer_lock(tokenizer):
        return len(tokenizer(prompt + text, add_special_tokens=True, truncation=False)["input_ids"])


def tokenize(
    tokenizer: Any, texts: list[str], max_length: int, device: torch.device | str, prompt: str = ""
) -> dict[str, torch.Tensor]:
    """Prepend the tower's ``prompt`` (e5's ``"query: "``), pad to the longest text, truncate to ``max_length``,
    keep only the model's inputs, move to ``device``."""
    if prompt:
        texts = [prompt + t for t in texts]
    with tokenizer_lock(tokenizer):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items() if k in MODEL_INPUTS}
