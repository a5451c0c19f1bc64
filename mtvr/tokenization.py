"""One tokenization helper for training and inference.

Hugging Face *fast* tokenizers keep their truncation/padding settings as mutable state on the Rust
backend, and every call with other settings rewrites it: two threads tokenizing at once (concurrent
``Retriever.search`` calls, one of them counting the untruncated length of a long query) can see each
other's settings. Every call therefore goes through one lock per tokenizer.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
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


def token_count(tokenizer: Any, text: str) -> int:
    """Number of tokens of ``text`` without truncation (special tokens included)."""
    with tokenizer_lock(tokenizer):
        return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def tokenize(tokenizer: Any, texts: list[str], max_length: int, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Pad to the longest text, truncate to ``max_length``, keep only the model's inputs, move to ``device``."""
    with tokenizer_lock(tokenizer):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items() if k in MODEL_INPUTS}
