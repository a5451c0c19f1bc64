"""The settings of a faiss index, listed once: constructor options, ``index_config.json`` keys, and the factory."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import VideoIndexError

KIND_ALIASES = {"flat": "Flat", "exact": "Flat", "hnsw": "HNSW32", "sq8": "SQ8", "hnsw_sq8": "HNSW32,SQ8"}

# written beside the options in index_config.json: facts about the saved index, not settings
RECORD_KEYS = ("measured_recall", "measured_on", "count", "ntotal", "index_sha256", "faiss_version")


@dataclass
class IndexConfig:
    """How a faiss :class:`~mtvr.index.VideoIndex` is built and searched (saved in ``index_config.json``)."""

    dim: int
    kind: str = "flat"
    ef_search: int = 128
    ef_construction: int = 80
    nprobe: int = 32
    target_recall: float | None = None
    recall_k: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or int(self.dim) <= 0:
            raise VideoIndexError(f"dim must be a positive integer, got {self.dim!r}")
        self.dim = int(self.dim)
        if self.target_recall is not None:
            if not 0.0 < float(self.target_recall) <= 1.0:
                raise VideoIndexError(f"target_recall must be in (0, 1], got {self.target_recall!r}")
            self.target_recall = float(self.target_recall)
        self.recall_k = int(self.recall_k)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The settings besides ``dim`` and ``kind`` (keyword options of ``VideoIndex``)."""
        return tuple(f.name for f in fields(cls) if f.name not in ("dim", "kind"))

    @classmethod
    def known_keys(cls) -> set[str]:
        """Every key an ``index_config.json`` may hold."""
        return {f.name for f in fields(cls)} | set(RECORD_KEYS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def factory_string(kind: str, dim: int, n: int | None = None) -> str:
    """The ``faiss.index_factory`` string of an index kind.

    ``ivfpq`` gets about ``4·sqrt(n)`` lists for ``n`` vectors and ``m`` 8-bit sub-quantizers (``dim % m == 0``).
    """
    if kind == "ivfpq":
        nlist = max(1, min(65536, int(4 * math.sqrt(max(n or 1, 1)))))
        m = next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= max(1, dim // 8))
        return f"IVF{nlist},PQ{m}"
    return KIND_ALIASES.get(kind.lower(), kind)
