"""`VideoIndex`: a faiss index of video embeddings keyed by string video ids.

Kinds (all inner product, i.e. cosine similarity on the L2-normalised embeddings mtvr produces):

* ``"flat"`` (default): exact search (``IndexFlatIP``).
* ``"hnsw"``: graph search for millions of videos (``HNSW32``; ``ef_search`` trades speed for recall).
* ``"ivfpq"``: inverted lists + product quantisation, trained on the first ``add``; the number of
  lists is chosen from the number of vectors (about ``4·sqrt(n)``).
* ``"sq8"``: exact scan over 8-bit scalar-quantised vectors (4× less memory than float32).
* any other string is passed to ``faiss.index_factory`` (e.g. ``"IVF1024,PQ64"``, ``"HNSW32,SQ8"``).

On a machine with faiss-gpu and a GPU, indexes that faiss can move to the GPU are moved there
(``use_gpu="auto"``). ``search`` may be called from many threads at once: searches share a read
lock, ``add``/``remove`` take the write lock. Indexes that cannot delete vectors in place (HNSW) mark
removed ids and filter them from results.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_folder
from .errors import IndexError_, MtvrError


class _LazyFaiss:
    """Stands for the ``faiss`` module until an index is really built or loaded.

    ``import mtvr`` (and every command that builds datasets or trains) works without faiss; the first
    use of ``faiss.<name>`` imports it, replaces this stand-in, and explains what to install if missing.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            import faiss as module
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "building or loading a video index needs faiss: install `mtvr[cpu]` (faiss-cpu) or "
                "`mtvr[gpu]` (faiss-gpu), never both"
            ) from exc
        globals()["faiss"] = module
        return getattr(module, name)


faiss: Any = _LazyFaiss()

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
INDEX_CONFIG_FILE = "index_config.json"

KIND_ALIASES = {"flat": "Flat", "exact": "Flat", "hnsw": "HNSW32", "sq8": "SQ8", "hnsw_sq8": "HNSW32,SQ8"}


@dataclass(frozen=True)
class SearchHit:
    """One result of a search: the video id, its cosine score, its 1-based rank and its metadata."""

    video_id: str
    score: float
    rank: int
    metadata: dict[str, Any] = field(default_factory=dict)


class _ReadWriteLock:
    """Many readers or one writer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VideoIndex:
    """Video embeddings in a faiss index, with string ids and per-video metadata."""

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        ef_search: int = 128,
        ef_construction: int = 80,
        nprobe: int = 32,
        use_gpu: bool | str = "auto",
    ) -> None:
        if int(dim) <= 0:
            raise IndexError_(f"dim must be positive, got {dim}")
        self.dim = int(dim)
        self.kind = kind
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.nprobe = nprobe
        self.use_gpu = use_gpu
        self._lock = _ReadWriteLock()
        self._index: Any = None if kind == "ivfpq" else self._build(self._factory_string(kind))
        self._int_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._tombstones: set[int] = set()
        self._next = 0
        self._flat_ids: np.ndarray | None = None  # external int ids of a CPU flat index, in storage order

    # ----------------------------------------------------------------- construction
    def _factory_string(self, kind: str, n: int | None = None) -> str:
        if kind == "ivfpq":
            nlist = max(1, min(65536, int(4 * math.sqrt(max(n or 1, 1)))))
            m = next(m for m in (64, 32, 16, 8, 4, 2, 1) if self.dim % m == 0 and m <= max(1, self.dim // 8))
            return f"IVF{nlist},PQ{m}"
        return KIND_ALIASES.get(kind.lower(), kind)

    def _build(self, factory: str) -> Any:
        try:
            base = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise IndexError_(f"faiss cannot build index kind {factory!r}: {str(exc).splitlines()[0]}") from exc
        hnsw = _hnsw_of(base)
        if hnsw is not None:
            hnsw.efConstruction = self.ef_construction
        index = faiss.IndexIDMap2(base)
        return self._maybe_to_gpu(index)

    def _maybe_to_gpu(self, index: Any) -> Any:
        if self.use_gpu is False or not gpu_available():
            if self.use_gpu is True:
                warnings.warn("use_gpu=True but faiss has no GPU here (install faiss-gpu); using the CPU")
            return index
        try:
            return faiss.index_cpu_to_all_gpus(index)
        except RuntimeError as exc:  # e.g. HNSW has no GPU version
            warnings.warn(f"index kind {self.kind!r} stays on the CPU: {str(exc).splitlines()[0]}")
            return index

    # ----------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self._int_of)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._int_of

    @property
    def ids(self) -> list[str]:
        return list(self._int_of)

    # ----------------------------------------------------------------- mutation
    def add(
        self,
        video_ids: Sequence[str],
        embeddings: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        replace: bool = False,
    ) -> None:
        """Add ``embeddings [n, dim]`` under ``video_ids``.

        Duplicate ids (inside the call, or already in the index) raise :class:`IndexError_` unless
        ``replace=True``, which first removes the existing entries.
        """
        video_ids = [str(v) for v in video_ids]
        x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise IndexError_(f"embeddings have shape {x.shape}; this index expects [n, {self.dim}]")
        if x.shape[0] != len(video_ids):
            raise IndexError_(f"{len(video_ids)} video ids but {x.shape[0]} embeddings")
        if not np.isfinite(x).all():
            bad = video_ids[int(np.where(~np.isfinite(x).all(1))[0][0])]
            raise IndexError_(f"embedding of video {bad!r} has NaN or infinite values")
        if metadata is not None and len(metadata) != len(video_ids):
            raise IndexError_(f"{len(video_ids)} video ids but {len(metadata)} metadata entries")
        seen: set[str] = set()
        for v in video_ids:
            if v in seen:
                raise IndexError_(f"video id {v!r} appears twice in this add() call")
            seen.add(v)
        with self._lock.write():
            existing = [v for v in video_ids if v in self._int_of]
            if existing and not replace:
                raise IndexError_(
                    f"video id {existing[0]!r} is already in the index "
                    f"({len(existing)} duplicates); pass replace=True to overwrite"
                )
            if existing:
                self._remove_locked(existing)
            if self._index is None:
                self._index = self._build(self._factory_string(self.kind, len(video_ids)))
            if not self._index.is_trained:
                self._train(x)
            ints = np.arange(self._next, self._next + len(video_ids), dtype=np.int64)
            self._index.add_with_ids(x, ints)
            self._next += len(video_ids)
            self._flat_ids = None
            for v, i, meta in zip(video_ids, ints.tolist(), metadata or [None] * len(video_ids)):
                self._int_of[v] = i
                self._id_of[i] = v
                if meta:
                    self._metadata[v] = dict(meta)

    def _train(self, x: np.ndarray) -> None:
        ivf = _ivf_of(self._index)
        needed = ivf.nlist if ivf is not None else 1
        if x.shape[0] < needed:
            raise IndexError_(
                f"index kind {self.kind!r} must be trained on at least {needed} vectors "
                f"in its first add(), got {x.shape[0]}; use kind='flat' for small collections"
            )
        self._index.train(x)

    def remove(self, video_ids: Sequence[str]) -> int:
        """Remove videos by id; unknown ids raise :class:`IndexError_`. Returns how many were removed."""
        video_ids = [str(v) for v in video_ids]
        with self._lock.write():
            unknown = [v for v in video_ids if v not in self._int_of]
            if unknown:
                raise IndexError_(f"video id {unknown[0]!r} is not in the index ({len(unknown)} unknown ids)")
            self._remove_locked(video_ids)
        return len(video_ids)

    def _remove_locked(self, video_ids: Sequence[str]) -> None:
        self._flat_ids = None
        ints = np.array([self._int_of.pop(v) for v in video_ids], dtype=np.int64)
        for v, i in zip(video_ids, ints.tolist()):
            self._id_of.pop(i, None)
            self._metadata.pop(v, None)
        try:
            self._index.remove_ids(ints)
        except RuntimeError:  # HNSW cannot delete: filter at search time
            self._tombstones.update(ints.tolist())

    # ----------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int = 10) -> list[list[SearchHit]]:
        """The ``k`` best videos for each query row, best first.

        ``k`` larger than the number of videos returns every video. Searching an empty index raises
        :class:`IndexError_`.
        """
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise IndexError_(f"k must be a positive integer, got {k!r}")
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise IndexError_(f"queries have shape {q.shape}; this index expects [n, {self.dim}]")
        with self._lock.read():
            if not self._int_of:
                raise IndexError_("the index is empty: add videos (Retriever.add / add_videos) before searching")
            k_eff = min(int(k), len(self._int_of))
            fetch = min(k_eff + len(self._tombstones), self._index.ntotal)
            flat = self._flat_view()
            if flat is not None:
                scores, ints = _blas_topk(flat[0], flat[1], q, fetch)
            else:
                params = self._search_params()
                scores, ints = (
                    self._index.search(q, fetch, params=params) if params is not None else self._index.search(q, fetch)
                )
            results = []
            for row_scores, row_ints in zip(scores, ints):
                hits: list[SearchHit] = []
                for s, i in zip(row_scores.tolist(), row_ints.tolist()):
                    vid = self._id_of.get(i) if i >= 0 else None
                    if vid is None:
                        continue
                    hits.append(SearchHit(vid, float(s), len(hits) + 1, self._metadata.get(vid, {})))
                    if len(hits) == k_eff:
                        break
                results.append(hits)
        return results

    def _flat_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(vectors, ids)`` as zero-copy numpy views of a CPU ``IndexFlatIP``, else ``None``.

        Exact search then runs as one BLAS matrix product + partial sort: on the 2-core machines measured
        (benchmarks/search.py) faiss's own flat scan is single-threaded for one query and 0.6-0.7x the
        speed of the BLAS product. Results are identical (same vectors, same inner products).
        """
        base = _base_of(self._index)
        if not isinstance(base, faiss.IndexFlat) or base.metric_type != faiss.METRIC_INNER_PRODUCT:
            return None
        if not isinstance(self._index, (faiss.IndexIDMap, faiss.IndexIDMap2)) or base.ntotal == 0:
            return None
        if self._flat_ids is None:
            self._flat_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        xb = faiss.rev_swig_ptr(base.get_xb(), base.ntotal * self.dim).reshape(base.ntotal, self.dim)
        return xb, self._flat_ids

    def _search_params(self) -> Any:
        base = _base_of(self._index)
        if _hnsw_of(base) is not None:
            return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, 1))
        if _ivf_of(self._index) is not None:
            return faiss.SearchParametersIVF(nprobe=self.nprobe)
        return None

    def reconstruct(self, video_id: str) -> np.ndarray:
        """The stored vector of one video (approximate for quantised kinds)."""
        with self._lock.read():
            return self._index.reconstruct(self._int_of[video_id])

    # ----------------------------------------------------------------- persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``index.faiss``, ``ids.json`` and ``index_config.json`` atomically into ``folder``."""
        folder = Path(folder)
        with self._lock.read(), atomic_folder(folder) as tmp:
            if self._index is not None:
                index = self._index
                if hasattr(faiss, "index_gpu_to_cpu") and gpu_available():
                    try:
                        index = faiss.index_gpu_to_cpu(index)
                    except RuntimeError:
                        pass
                faiss.write_index(index, str(tmp / INDEX_FILE))
            (tmp / IDS_FILE).write_text(
                json.dumps(
                    {
                        "ids": [[i, v] for v, i in self._int_of.items()],
                        "metadata": self._metadata,
                        "tombstones": sorted(self._tombstones),
                        "next": self._next,
                    },
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )
            (tmp / INDEX_CONFIG_FILE).write_text(
                json.dumps(
                    {
                        "dim": self.dim,
                        "kind": self.kind,
                        "ef_search": self.ef_search,
                        "ef_construction": self.ef_construction,
                        "nprobe": self.nprobe,
                        "faiss_version": faiss.__version__,
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, use_gpu: bool | str = "auto") -> VideoIndex:
        folder = Path(folder)
        try:
            cfg = json.loads((folder / INDEX_CONFIG_FILE).read_text(encoding="utf-8"))
            state = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise MtvrError(f"{folder} is not a saved mtvr index: {Path(exc.filename).name} is missing") from exc
        except json.JSONDecodeError as exc:
            raise MtvrError(f"{folder}: corrupt index files ({exc})") from exc
        cfg.pop("faiss_version", None)
        index = cls(cfg.pop("dim"), cfg.pop("kind"), use_gpu=use_gpu, **cfg)
        if (folder / INDEX_FILE).is_file():
            index._index = index._maybe_to_gpu(faiss.read_index(str(folder / INDEX_FILE)))
        index._int_of = {v: int(i) for i, v in state["ids"]}
        index._id_of = {int(i): v for i, v in state["ids"]}
        index._metadata = state.get("metadata", {})
        index._tombstones = set(state.get("tombstones", []))
        index._next = int(state.get("next", len(index._int_of)))
        return index


def _blas_topk(xb: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` by one matrix product (BLAS, all cores) and a partial sort."""
    sims = q @ xb.T
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), (len(q), sims.shape[1]))
    top = np.take_along_axis(sims, part, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    pos = np.take_along_axis(part, order, 1)
    return np.take_along_axis(top, order, 1), ids[pos]


def _base_of(index: Any) -> Any:
    if isinstance(index, faiss.IndexIDMap) or isinstance(index, faiss.IndexIDMap2):
        return faiss.downcast_index(index.index)
    return index


def _hnsw_of(index: Any) -> Any:
    base = faiss.downcast_index(index)
    return base.hnsw if hasattr(base, "hnsw") else None


def _ivf_of(index: Any) -> Any:
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None
