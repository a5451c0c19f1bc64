"""A persistent translation cache (SQLite) and the translator wrapper that uses it.

Every translation is stored under ``(backend, model, source, target, text)``, committed batch by
batch, so an interrupted build resumes and a rebuild translates nothing twice. Identical texts are
translated once.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import TranslationError
from .base import Translator

SCHEMA = """CREATE TABLE IF NOT EXISTS translations (
    key TEXT PRIMARY KEY, backend TEXT, model TEXT, src TEXT, tgt TEXT, source TEXT, translation TEXT)"""


def _key(backend: str, model: str, src: str, tgt: str, text: str) -> str:
    return hashlib.sha256("\x1f".join((backend, model, src, tgt, text)).encode("utf-8")).hexdigest()


class TranslationCache:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise TranslationError(f"translation cache {self.path}: is a folder; give a file path (e.g. cache.sqlite)")
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database": never overwrite someone's file
            raise TranslationError(
                f"translation cache {self.path}: not an SQLite translation cache ({exc}); give another path"
            ) from None

    def get_many(self, backend: str, model: str, src: str, tgt: str, texts: Sequence[str]) -> dict[str, str]:
        keys = {_key(backend, model, src, tgt, t): t for t in texts}
        found: dict[str, str] = {}
        items = list(keys)
        with self._lock:
            for i in range(0, len(items), 500):
                chunk = items[i : i + 500]
                rows = self._db.execute(
                    f"SELECT key, translation FROM translations WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update({keys[k]: v for k, v in rows})
        return found

    def put_many(self, backend: str, model: str, src: str, tgt: str, pairs: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(_key(backend, model, src, tgt, s), backend, model, src, tgt, s, t) for s, t in pairs],
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedTranslator(Translator):
    """Deduplicate, look up the cache, translate only the misses in batches, store each batch at once."""

    def __init__(
        self,
        backend: Translator,
        cache: TranslationCache | str | os.PathLike | None,
        batch_size: int = 64,
        progress: bool = True,
    ) -> None:
        self.backend = backend
        self.cache = TranslationCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self.batch_size = batch_size
        self.progress = progress
        self.name = backend.name
        self.backend_calls = 0
        self.translated = 0

    def model_id(self, src: str, tgt: str) -> str:
        return self.backend.model_id(src, tgt)

    def supports(self, src: str, tgt: str) -> bool:
        return self.backend.supports(src, tgt)

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        if src == tgt:
            return list(texts)
        unique = list(dict.fromkeys(texts))
        model = self.model_id(src, tgt)
        done = self.cache.get_many(self.name, model, src, tgt, unique) if self.cache is not None else {}
        todo = [t for t in unique if t not in done]
        bar = tqdm(
            total=len(todo),
            desc=f"translate {src}→{tgt} ({self.name})",
            unit="sent",
            disable=not self.progress or len(todo) < 2 * self.batch_size,
        )
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            out = self.backend.translate(chunk, src, tgt)
            self.backend_calls += 1
            self.translated += len(chunk)
            if len(out) != len(chunk):
                raise TranslationError(f"backend {self.name} returned {len(out)} translations for {len(chunk)} texts")
            pairs = list(zip(chunk, out))
            if self.cache is not None:
                self.cache.put_many(self.name, model, src, tgt, pairs)
            done.update(pairs)
            bar.update(len(chunk))
        bar.close()
        return [done[t] for t in texts]
