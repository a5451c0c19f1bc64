"""What every index backend offers (:class:`IndexBackend`), its result type, and the registry of backends.

A backend keeps L2-normalised video embeddings under string video ids, with one JSON metadata object per
video, and answers inner-product (cosine) top-k searches. The embedded default is faiss
(:class:`mtvr.index.VideoIndex`, a folder on disk); other backends register a URL scheme with
:func:`register_backend` and are opened by :func:`open_index` (``IndexBackend.open``)::

    VideoIndex.open("runs/index")                          # a folder written by VideoIndex.save: faiss
    VideoIndex.open("milvus-lite:///data/videos.db#clips")  # whatever registered "milvus-lite"
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoIndexError
from ..filters import Filter


@dataclass(frozen=True)
class SearchHit:
    """One result of a search: the video id, its cosine score, its 1-based rank and its metadata."""

    video_id: str
    score: float
    rank: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fast(cls, video_id: str, score: float, rank: int, metadata: dict[str, Any]) -> SearchHit:
        """The same hit as ``SearchHit(video_id, score, rank, metadata)``, built without the frozen dataclass's
        ``__init__`` (it sets each field through ``object.__setattr__``): the hit assembly of one search takes
        ~40 % less time (issue 26, ``benchmarks/search.py``). Callers pass checked values of the right types."""
        hit = object.__new__(cls)
        hit.__dict__.update(video_id=video_id, score=score, rank=rank, metadata=metadata)
        return hit


class IndexBackend(ABC):
    """The interface the :class:`~mtvr.Retriever`, the server and the scale tools use; one class per backend.

    ``dim`` is the embedding size. Mutations are all-or-nothing: a call that raises changes nothing.
    """

    dim: int

    # ----------------------------------------------------------------- contents
    @abstractmethod
    def __len__(self) -> int:
        """The number of videos in the index."""

    @abstractmethod
    def __contains__(self, video_id: object) -> bool:
        """Whether a video id is in the index."""

    @property
    @abstractmethod
    def ids(self) -> list[str]:
        """Every video id in the index."""

    @property
    def count(self) -> int:
        """The number of videos in the index (``len(index)``)."""
        return len(self)

    @abstractmethod
    def metadata(self, video_id: str) -> dict[str, Any]:
        """A copy of one video's metadata (``{}`` when it has none); unknown ids raise :class:`VideoIndexError`."""

    def metadata_items(self) -> list[tuple[str, dict[str, Any]]]:
        """``(video id, copy of its metadata)`` for every video that has metadata."""
        return [(v, m) for v in self.ids if (m := self.metadata(v))]

    # ----------------------------------------------------------------- mutation
    @abstractmethod
    def add(
        self,
        video_ids: Sequence[str],
        embeddings: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        replace: bool = False,
    ) -> None:
        """Add ``embeddings [n, dim]`` under ``video_ids`` (with one metadata dict or ``None`` per video).

        Ids already in the index raise :class:`VideoIndexError` unless ``replace=True``.
        """

    @abstractmethod
    def remove(self, video_ids: Sequence[str]) -> int:
        """Remove videos by id; unknown ids raise :class:`VideoIndexError`. Returns how many were removed."""

    def remove_where(self, filter: Mapping[str, Any] | Filter) -> int:
        """Remove every video whose metadata matches ``filter`` (e.g. ``{"file": "a.mp4"}``: all its moments).

        Returns how many were removed (0 when none match).
        """
        from ..filters import parse_filter

        wanted = parse_filter(filter)
        if not wanted:
            raise VideoIndexError("remove_where needs a non-empty filter (to remove everything, build a new index)")
        gone = [v for v in self.ids if wanted.matches(self.metadata(v))]
        return self.remove(gone) if gone else 0

    # ----------------------------------------------------------------- search
    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int = 10, filter: Mapping[str, Any] | Filter | None = None
    ) -> list[list[SearchHit]]:
        """The ``k`` best videos for each query row ``[n, dim]`` (or one ``[dim]`` query), best first.

        ``filter`` (the language of :mod:`mtvr.filters`, e.g. ``{"file": "a.mp4"}``) keeps only videos whose
        metadata matches; a malformed filter raises :class:`~mtvr.errors.FilterError` before anything is searched.
        """

    # ----------------------------------------------------------------- lifetime
    def save(self, location: str | os.PathLike | None = None) -> Any:
        """Make the index durable (a folder for faiss; a flush for a database backend)."""
        raise VideoIndexError(f"{type(self).__name__} cannot be saved")

    def close(self) -> None:
        """Release connections or files (nothing to do for an in-memory index)."""
        return None

    def __enter__(self) -> IndexBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(cls, location: str | os.PathLike, **options: Any) -> IndexBackend:
        """Open an index by location: a folder (faiss) or ``scheme://...`` of a registered backend."""
        return open_index(location, **options)


Opener = Callable[..., IndexBackend]
_BACKENDS: dict[str, Opener | str] = {}


def register_backend(scheme: str, opener: Opener | str) -> None:
    """Make ``scheme://...`` locations open with ``opener(location, **options)``.

    ``opener`` is a callable or a ``"module:function"`` string imported on first use, so that a backend's
    optional dependencies (e.g. pymilvus) are needed only by those who open such an index.
    """
    if not isinstance(scheme, str) or not scheme or "://" in scheme:
        raise VideoIndexError(f"a backend scheme is a name such as 'milvus', got {scheme!r}")
    _BACKENDS[scheme.lower()] = opener


def registered_backends() -> list[str]:
    """The registered URL schemes (``faiss`` is the folder backend)."""
    return sorted(_BACKENDS)


def _resolve(opener: Opener | str) -> Opener:
    if callable(opener):
        return opener
    module, _, name = opener.partition(":")
    return getattr(importlib.import_module(module), name)


def split_location(location: str | os.PathLike) -> tuple[str, str]:
    """``(scheme, location)``: ``"faiss"`` for a plain path, else the part before ``://`` (lower case)."""
    text = os.fspath(location)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme and scheme.replace("-", "").replace("+", "").isalnum():
            return scheme, text
    return "faiss", text


def open_index(location: str | os.PathLike, **options: Any) -> IndexBackend:
    """Open an index: a folder written by ``VideoIndex.save`` (faiss) or ``scheme://...`` of a registered backend.

    ``options`` go to the backend's opener (for faiss: ``use_gpu``).
    """
    scheme, text = split_location(location)
    if scheme not in _BACKENDS:
        raise VideoIndexError(
            f"no index backend for {scheme}:// in {text!r}; known: {', '.join(registered_backends())} "
            "(a plain folder path opens a faiss index)"
        )
    if scheme == "faiss" and text.startswith("faiss://"):
        text = text[len("faiss://") :]
    return _resolve(_BACKENDS[scheme])(Path(text) if scheme == "faiss" else text, **options)
