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
from .errors import IndexLoadError, VideoIndexError


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
    """Many readers or one writer; a waiting writer goes first.

    New readers wait while a writer is waiting, so a stream of overlapping searches cannot starve an
    ``add`` / ``remove`` (the writer gets the lock as soon as the searches already running finish).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
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
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
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
        target_recall: float | None = None,
        recall_k: int = 10,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) <= 0:
            raise VideoIndexError(f"dim must be a positive integer, got {dim!r}")
        if target_recall is not None and not 0.0 < float(target_recall) <= 1.0:
            raise VideoIndexError(f"target_recall must be in (0, 1], got {target_recall!r}")
        self.dim = int(dim)
        self.kind = kind
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.nprobe = nprobe
        self.use_gpu = use_gpu
        self.target_recall = None if target_recall is None else float(target_recall)
        self.recall_k = int(recall_k)
        self._measured_recall: float | None = None
        self._tune_pending = False  # vectors were added since the last recall tuning
        self._exact: list[np.ndarray] = []  # float32 copies of the added vectors, kept only for recall tuning
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
            raise VideoIndexError(f"faiss cannot build index kind {factory!r}: {str(exc).splitlines()[0]}") from exc
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

        Duplicate ids (inside the call, or already in the index) raise :class:`VideoIndexError` unless
        ``replace=True``, which first removes the existing entries.
        """
        video_ids = check_video_ids(video_ids)
        metadata = check_metadata(metadata, video_ids)
        x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise VideoIndexError(f"embeddings have shape {x.shape}; this index expects [n, {self.dim}]")
        if x.shape[0] != len(video_ids):
            raise VideoIndexError(f"{len(video_ids)} video ids but {x.shape[0]} embeddings")
        if not np.isfinite(x).all():
            bad = video_ids[int(np.where(~np.isfinite(x).all(1))[0][0])]
            raise VideoIndexError(f"embedding of video {bad!r} has NaN or infinite values")
        seen: set[str] = set()
        for v in video_ids:
            if v in seen:
                raise VideoIndexError(f"video id {v!r} appears twice in this add() call")
            seen.add(v)
        with self._lock.write():
            existing = [v for v in video_ids if v in self._int_of]
            if existing and not replace:
                raise VideoIndexError(
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
                    self._metadata[v] = meta
            if self.target_recall is not None:
                if not self._stores_exact_vectors():  # quantised storage: keep the exact vectors to measure
                    self._exact.append(np.concatenate([ints[:, None].astype(np.float32), x], axis=1))
                self._tune_pending = True  # tuned once, before the next search / save / read of the result

    def _train(self, x: np.ndarray) -> None:
        ivf = _ivf_of(self._index)
        needed = ivf.nlist if ivf is not None else 1
        if x.shape[0] < needed:
            raise VideoIndexError(
                f"index kind {self.kind!r} must be trained on at least {needed} vectors "
                f"in its first add(), got {x.shape[0]}; use kind='flat' for small collections"
            )
        self._index.train(x)

    def remove(self, video_ids: Sequence[str]) -> int:
        """Remove videos by id; unknown ids raise :class:`VideoIndexError`. Returns how many were removed."""
        video_ids = check_video_ids(video_ids)
        if len(set(video_ids)) != len(video_ids):
            dup = next(v for v in video_ids if video_ids.count(v) > 1)
            raise VideoIndexError(f"video id {dup!r} appears twice in this remove() call; nothing was removed")
        with self._lock.write():
            unknown = [v for v in video_ids if v not in self._int_of]
            if unknown:
                raise VideoIndexError(f"video id {unknown[0]!r} is not in the index ({len(unknown)} unknown ids)")
            self._remove_locked(video_ids)
        return len(video_ids)

    def _remove_locked(self, video_ids: Sequence[str]) -> None:
        self._flat_ids = None
        if self._exact:
            gone = np.array([self._int_of[v] for v in video_ids], dtype=np.float32)
            self._exact = [e[~np.isin(e[:, 0], gone)] for e in self._exact]
        ints = np.array([self._int_of.pop(v) for v in video_ids], dtype=np.int64)
        for v, i in zip(video_ids, ints.tolist()):
            self._id_of.pop(i, None)
            self._metadata.pop(v, None)
        try:
            self._index.remove_ids(ints)
        except RuntimeError:  # HNSW cannot delete: filter at search time
            self._tombstones.update(ints.tolist())

    # ----------------------------------------------------------------- search
    @property
    def measured_recall(self) -> float | None:
        """Recall@``recall_k`` measured by the last tuning (``None`` when not tuned or an exact kind)."""
        self._tune_if_pending()
        return self._measured_recall

    def _tune_if_pending(self) -> None:
        """Run the recall tuning that ``add`` deferred: once for a series of adds, not once per add."""
        if self._tune_pending:
            with self._lock.write():
                if self._tune_pending:
                    self._tune_locked()
                    self._tune_pending = False

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[SearchHit]]:
        """The ``k`` best videos for each query row, best first.

        ``k`` larger than the number of videos returns every video. Searching an empty index raises
        :class:`VideoIndexError`.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise VideoIndexError(f"k must be a positive integer, got {k!r}")
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise VideoIndexError(f"queries have shape {q.shape}; this index expects [n, {self.dim}]")
        self._tune_if_pending()
        with self._lock.read():
            if not self._int_of:
                raise VideoIndexError("the index is empty: add videos (Retriever.add / add_videos) before searching")
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

    # ----------------------------------------------------------------- recall target
    def tune(self, target_recall: float | None = None, sample: int = 1000, seed: int = 0) -> float | None:
        """Pick the smallest ``ef_search`` (HNSW) or ``nprobe`` (IVF) whose recall@``recall_k`` against exact
        search reaches ``target_recall``, measured on a sample of the indexed vectors (autofaiss-style).

        Returns the measured recall (``None`` for kinds without a speed/recall knob, which are exact or
        fixed). The choice and the recall are stored with the index (``index_config.json``).
        """
        if target_recall is not None:
            if not 0.0 < float(target_recall) <= 1.0:
                raise VideoIndexError(f"target_recall must be in (0, 1], got {target_recall!r}")
            self.target_recall = float(target_recall)
        if self.target_recall is None:
            raise VideoIndexError("no target_recall: pass one to tune() or to VideoIndex(...)")
        with self._lock.write():
            self._tune_pending = False
            return self._tune_locked(sample, seed)

    def _stores_exact_vectors(self) -> bool:
        base = _base_of(self._index)
        return isinstance(base, (faiss.IndexFlat, faiss.IndexHNSWFlat))

    def _exact_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(int ids, float32 vectors)`` of every live video, as added (not quantised)."""
        if self._exact:
            data = np.concatenate(self._exact)
            return data[:, 0].astype(np.int64), np.ascontiguousarray(data[:, 1:])
        if not self._stores_exact_vectors():
            raise VideoIndexError(
                f"index kind {self.kind!r} stores quantised vectors: set target_recall before adding videos so "
                "that the exact vectors are measured"
            )
        base = _base_of(self._index)
        xb = base.reconstruct_n(0, base.ntotal)
        ints = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        live = np.array([i in self._id_of for i in ints.tolist()], dtype=bool)
        return ints[live], np.ascontiguousarray(xb[live], dtype=np.float32)

    def _tune_locked(self, sample: int = 1000, seed: int = 0) -> float | None:
        knob = (
            "ef_search"
            if _hnsw_of(_base_of(self._index)) is not None
            else ("nprobe" if _ivf_of(self._index) is not None else None)
        )
        if knob is None or not self._id_of:
            self._measured_recall = None
            return None
        ints, xb = self._exact_vectors()
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(xb), size=min(sample, len(xb)), replace=False)
        k = min(self.recall_k, len(xb))
        # Held-out-like queries: an indexed vector is itself a node of a graph index, and searches from it
        # are easier than searches for a new query. Each sampled vector is moved in a random direction by
        # its distance to its nearest neighbour: a point the index has not seen, at the spacing of the data.
        _, nn = _blas_topk(xb, np.arange(len(xb)), xb[pick], 2)
        spacing = np.linalg.norm(xb[pick] - xb[nn[:, 1]], axis=1, keepdims=True)
        step = rng.standard_normal(xb[pick].shape).astype(np.float32)
        step /= np.linalg.norm(step, axis=1, keepdims=True)
        q = xb[pick] + spacing * step
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        _, truth = _blas_topk(xb, ints, q, k)
        truth_sets = truth.tolist()
        if knob == "ef_search":
            candidates = [v for v in (16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048) if v >= k]
        else:
            nlist = _ivf_of(self._index).nlist
            candidates = sorted({min(nlist, 2**i) for i in range(0, 17)})
        best = None
        for value in candidates:
            setattr(self, knob, value)
            _, found = self._index.search(q, k, params=self._search_params())
            hits = np.array([len(set(t) & set(row)) / k for t, row in zip(truth_sets, found.tolist())])
            recall = float(hits.mean())
            best = (value, recall)
            # choose on the one-sided 95 % lower confidence bound, not the sample mean: the sample is finite
            if recall - 1.645 * hits.std(ddof=1) / np.sqrt(len(hits)) >= self.target_recall:
                break
        setattr(self, knob, best[0])
        self._measured_recall = best[1]
        if best[1] < self.target_recall:
            warnings.warn(
                f"recall@{k} {best[1]:.3f} at the largest {knob} ({best[0]}) is below the target "
                f"{self.target_recall}: use a larger index (e.g. more HNSW links or IVF lists)",
                stacklevel=3,
            )
        return self._measured_recall

    def reconstruct(self, video_id: str) -> np.ndarray:
        """The stored vector of one video (approximate for quantised kinds)."""
        with self._lock.read():
            return self._index.reconstruct(self._int_of[video_id])

    # ----------------------------------------------------------------- persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``index.faiss``, ``ids.json`` and ``index_config.json`` atomically into ``folder``."""
        folder = Path(folder)
        self._tune_if_pending()
        with self._lock.read(), atomic_folder(folder) as tmp:
            if self._index is not None:
                index = self._index
                if hasattr(faiss, "index_gpu_to_cpu") and gpu_available():
                    try:
                        index = faiss.index_gpu_to_cpu(index)
                    except RuntimeError:
                        pass
                faiss.write_index(index, str(tmp / INDEX_FILE))
            checksum = _sha256(tmp / INDEX_FILE) if (tmp / INDEX_FILE).is_file() else None
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
                        "target_recall": self.target_recall,
                        "recall_k": self.recall_k,
                        "measured_recall": self._measured_recall,
                        "count": len(self._int_of),
                        "ntotal": int(self._index.ntotal) if self._index is not None else 0,
                        "index_sha256": checksum,
                        "faiss_version": faiss.__version__,
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, use_gpu: bool | str = "auto") -> VideoIndex:
        """Load a folder written by :meth:`save`, checking it first.

        Counts, shapes, the ids file and a SHA-256 checksum of ``index.faiss`` are verified; any
        mismatch raises :class:`IndexLoadError` naming the folder and the file.
        """
        folder = Path(folder)

        def fail(file: str, why: str) -> IndexLoadError:
            return IndexLoadError(f"{folder / file}: {why}; rebuild or re-download the index folder")

        if not folder.is_dir():
            raise IndexLoadError(f"index folder {folder} not found")
        cfg = _read_json(folder, INDEX_CONFIG_FILE, fail)
        state = _read_json(folder, IDS_FILE, fail)
        known = {
            "dim",
            "kind",
            "ef_search",
            "ef_construction",
            "nprobe",
            "target_recall",
            "recall_k",
            "measured_recall",
            "count",
            "ntotal",
            "index_sha256",
            "faiss_version",
        }
        if not isinstance(cfg, dict) or set(cfg) - known or "dim" not in cfg or "kind" not in cfg:
            extra = sorted(set(cfg) - known) if isinstance(cfg, dict) else cfg
            raise fail(INDEX_CONFIG_FILE, f"not an mtvr index config (unknown or missing keys: {extra})")
        if not isinstance(state, dict) or not isinstance(state.get("ids"), list):
            raise fail(IDS_FILE, "expected an object with an 'ids' list")
        try:
            pairs = [(int(i), v) for i, v in state["ids"]]
        except (TypeError, ValueError):
            raise fail(IDS_FILE, "'ids' must be [int, string] pairs") from None
        if any(not isinstance(v, str) for _, v in pairs) or len({v for _, v in pairs}) != len(pairs):
            raise fail(IDS_FILE, "video ids must be unique strings")
        options = {
            k: cfg[k]
            for k in ("ef_search", "ef_construction", "nprobe", "target_recall", "recall_k")
            if cfg.get(k) is not None
        }
        try:
            index = cls(cfg["dim"], cfg["kind"], use_gpu=use_gpu, **options)
        except (VideoIndexError, TypeError) as exc:
            raise fail(INDEX_CONFIG_FILE, str(exc)) from None
        index._measured_recall = cfg.get("measured_recall")
        path = folder / INDEX_FILE
        if pairs and not path.is_file():
            raise fail(INDEX_FILE, f"missing, but {IDS_FILE} lists {len(pairs)} videos")
        if path.is_file():
            expected = cfg.get("index_sha256")
            if expected is not None and _sha256(path) != expected:
                raise fail(INDEX_FILE, "checksum mismatch (truncated, modified, or from another index)")
            try:
                raw = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise fail(INDEX_FILE, f"faiss cannot read it ({str(exc).splitlines()[0]})") from None
            if raw.d != index.dim:
                raise fail(INDEX_FILE, f"holds {raw.d}-d vectors but {INDEX_CONFIG_FILE} says {index.dim}")
            tombstones = set(state.get("tombstones", []))
            if raw.ntotal != len(pairs) + len(tombstones):
                raise fail(
                    IDS_FILE,
                    f"lists {len(pairs)} videos (+{len(tombstones)} removed) but {INDEX_FILE} "
                    f"holds {raw.ntotal} vectors",
                )
            index._index = index._maybe_to_gpu(raw)
        index._int_of = {v: i for i, v in pairs}
        index._id_of = {i: v for i, v in pairs}
        metadata = state.get("metadata", {})
        if not isinstance(metadata, dict) or any(not isinstance(m, dict) for m in metadata.values()):
            raise fail(IDS_FILE, "'metadata' must map video ids to objects")
        index._metadata = metadata
        index._tombstones = set(state.get("tombstones", []))
        index._next = int(state.get("next", len(index._int_of)))
        return index


def check_video_ids(video_ids: Any) -> list[str]:
    """Video ids must be a sequence of strings writable as UTF-8 JSON (not one string, not numbers)."""
    if isinstance(video_ids, (str, bytes)):
        raise VideoIndexError(
            f"video_ids must be a list of ids, got the single string {video_ids!r:.60}; wrap it in a list"
        )
    ids = list(video_ids)
    for i, v in enumerate(ids):
        if not isinstance(v, str):
            raise VideoIndexError(f"video id #{i} is a {type(v).__name__} ({v!r:.40}), not a string")
        if not v:
            raise VideoIndexError(f"video id #{i} is empty")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise VideoIndexError(
                f"video id #{i} ({v!r:.60}) cannot be written as UTF-8 (lone surrogate, e.g. "
                "from a non-UTF-8 file name); decode the name first"
            ) from None
    return ids


def check_metadata(metadata: Any, video_ids: list[str]) -> list[dict[str, Any] | None] | None:
    """Each metadata entry must be ``None`` or a JSON object (strings, numbers, lists...) in UTF-8."""
    if metadata is None:
        return None
    if isinstance(metadata, dict):
        raise VideoIndexError("metadata must be a list with one entry (a dict or None) per video, got one dict")
    entries = list(metadata)
    if len(entries) != len(video_ids):
        raise VideoIndexError(f"{len(video_ids)} video ids but {len(entries)} metadata entries")
    out: list[dict[str, Any] | None] = []
    for v, meta in zip(video_ids, entries):
        if meta is None:
            out.append(None)
            continue
        if not isinstance(meta, dict):
            raise VideoIndexError(f"metadata of video {v!r} is a {type(meta).__name__}, not a dict")
        try:
            text = json.dumps(meta, ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise VideoIndexError(
                f"metadata of video {v!r} cannot be saved as UTF-8 JSON ({exc}); use plain "
                "str / int / float / bool / list / dict values (convert numpy scalars)"
            ) from None
        out.append(json.loads(text))
    return out


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(folder: Path, name: str, fail: Any) -> Any:
    path = folder / name
    if not path.is_file():
        raise fail(name, "missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(name, f"not valid UTF-8 JSON ({exc})") from None


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
