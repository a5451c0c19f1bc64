"""`VideoIndex`: the embedded default backend, a faiss index of video embeddings keyed by string video ids.

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

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmptyIndexError, IndexLoadError, VideoIndexError
from ..filtered_search import filtered_search
from ..filters import Filter, parse_filter
from ..threads import faiss_threads
from .base import IndexBackend, SearchHit, register_backend
from .blas import blas_topk
from .checks import check_embeddings, check_metadata, check_video_ids
from .columns import MetadataColumns, columns_of
from .config import IndexConfig, factory_string
from .faiss_loader import base_of, faiss, gpu_available, hnsw_of, ivf_of
from .lock import ReadWriteLock
from .persistence import IndexState, load_error, read_config, read_state, write_folder
from .tuning import check_tuning_queries, choose, knob_candidates, synthetic_queries


class VideoIndex(IndexBackend):
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
        cfg = IndexConfig(dim, kind, ef_search, ef_construction, nprobe, target_recall, recall_k)
        self.dim = cfg.dim
        self.kind = kind
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.nprobe = nprobe
        self.use_gpu = use_gpu
        self.target_recall = cfg.target_recall
        self.recall_k = cfg.recall_k
        self._measured_recall: float | None = None
        self._measured_on: str | None = None  # what the recall was measured on (real or synthetic queries)
        self._tune_queries: np.ndarray | None = None  # real query embeddings given to tune(queries=...)
        self._tune_pending = False  # vectors were added since the last recall tuning
        # exact copies of the added vectors of a quantised index, kept only for recall tuning: (int64 ids, float32)
        self._exact: list[tuple[np.ndarray, np.ndarray]] = []
        self._lock = ReadWriteLock()
        self._index: Any = None if kind == "ivfpq" else self._build(factory_string(kind, self.dim))
        self._int_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._columns = MetadataColumns()  # the metadata by int id, in columns: what filters are evaluated on
        self._tombstones: set[int] = set()
        self._next = 0
        self._flat_ids: np.ndarray | None = None  # external int ids of an id-mapped index, in storage order
        self._plan_key: tuple | None = None  # what _search_plan() was worked out for
        self._plan: tuple[bool, Any] = (False, None)

    @property
    def config(self) -> IndexConfig:
        """The index's settings (what ``index_config.json`` stores besides facts about the contents)."""
        return IndexConfig(
            self.dim, self.kind, self.ef_search, self.ef_construction, self.nprobe, self.target_recall, self.recall_k
        )

    @property
    def faiss_index(self) -> Any:
        """The faiss index underneath, for code that times or inspects faiss itself (the benchmarks' baselines).
        Read it only: adding or removing through it would desynchronise the id maps and metadata."""
        return self._index

    # ----------------------------------------------------------------- construction
    def _build(self, factory: str) -> Any:
        try:
            base = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise VideoIndexError(f"faiss cannot build index kind {factory!r}: {str(exc).splitlines()[0]}") from exc
        hnsw = hnsw_of(base)
        if hnsw is not None:
            hnsw.efConstruction = self.ef_construction
        ivf = ivf_of(base)
        if ivf is not None:
            # IVF indexes store the ids themselves. Under an IndexIDMap2, a removal compacts the id map while
            # the inverted lists keep the old sequential ids: every later hit maps to the wrong video.
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct(id) and removal by id
            return self._maybe_to_gpu(base)
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

    @classmethod
    def from_faiss(
        cls,
        raw: Any,
        video_ids: Sequence[str],
        int_ids: Sequence[int] | np.ndarray | None = None,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        *,
        kind: str,
        exact_vectors: np.ndarray | None = None,
        **options: Any,
    ) -> VideoIndex:
        """Wrap (not copy) a filled faiss index (e.g. merged IVF shards) whose vectors carry the ints ``int_ids``.

        ``video_ids[i]`` is the video of int id ``int_ids[i]`` (default ``0..n-1``); ``metadata`` has one
        dict or ``None`` per video. ``kind`` is the index's kind or factory string (e.g. ``"IVF64,PQ8"``) and
        ``options`` (``nprobe``, ``ef_search``, ``target_recall``...) its settings, stored with the index when
        it is saved. With a ``target_recall``, a quantised index needs ``exact_vectors`` (``[n, dim]``, in
        ``video_ids`` order) to measure its recall; the tuning runs before the first search or save.
        """
        video_ids = check_video_ids(video_ids)
        metadata = check_metadata(metadata, video_ids)
        ints = np.arange(len(video_ids), dtype=np.int64) if int_ids is None else np.asarray(int_ids, dtype=np.int64)
        if ints.shape != (len(video_ids),):
            raise VideoIndexError(f"{len(video_ids)} video ids but {ints.size} int ids")
        if len(set(video_ids)) != len(video_ids) or len(set(ints.tolist())) != len(ints):
            raise VideoIndexError("video ids and int ids must be unique")
        if raw.ntotal != len(video_ids):
            raise VideoIndexError(f"the faiss index holds {raw.ntotal} vectors but {len(video_ids)} video ids")
        index = cls(int(raw.d), "ivfpq", **options)  # "ivfpq" builds nothing yet: ``raw`` takes its place
        index.kind = kind
        index._restore(
            IndexState(
                raw=index._maybe_to_gpu(raw),
                ids=list(zip(ints.tolist(), video_ids)),
                metadata={v: m for v, m in zip(video_ids, metadata or []) if m},
                next=int(ints.max()) + 1 if len(ints) else 0,
            )
        )
        if index.target_recall is not None and len(video_ids):
            if exact_vectors is not None:
                x = np.asarray(exact_vectors, dtype=np.float32)
                if x.shape != (len(video_ids), index.dim):
                    raise VideoIndexError(
                        f"exact_vectors have shape {x.shape}; expected ({len(video_ids)}, {index.dim})"
                    )
                index._exact = [(ints.copy(), np.ascontiguousarray(x))]
            elif not index._stores_exact_vectors():
                raise VideoIndexError("a quantised index with a target_recall needs exact_vectors to measure recall")
            index._tune_pending = True
        return index

    def _restore(self, state: IndexState) -> None:
        """Replace the contents (used by ``load`` and ``from_faiss``)."""
        if state.raw is not None:
            self._index = ivf_without_id_map(state.raw)
        self._int_of = {v: i for i, v in state.ids}
        self._id_of = {i: v for i, v in state.ids}
        self._metadata = state.metadata
        self._columns = columns_of([i for i, _ in state.ids], [state.metadata.get(v) for _, v in state.ids])
        self._tombstones = set(state.tombstones)
        self._next = state.next
        self._measured_recall = state.measured_recall
        self._measured_on = state.measured_on
        self._tune_queries = state.tune_queries
        self._exact = [state.tuning_vectors] if state.tuning_vectors is not None else []
        self._flat_ids = None

    # ----------------------------------------------------------------- contents
    def __len__(self) -> int:
        return len(self._int_of)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._int_of

    @property
    def ids(self) -> list[str]:
        return list(self._int_of)

    def metadata(self, video_id: str) -> dict[str, Any]:
        """A copy of one video's metadata (``{}`` when it has none); unknown ids raise :class:`VideoIndexError`."""
        with self._lock.read():
            if video_id not in self._int_of:
                raise VideoIndexError(f"video id {video_id!r} is not in the index")
            return dict(self._metadata.get(video_id, {}))

    def metadata_items(self) -> list[tuple[str, dict[str, Any]]]:
        """``(video id, copy of its metadata)`` for every video that has metadata."""
        with self._lock.read():
            return [(v, dict(m)) for v, m in self._metadata.items()]

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
        x = check_embeddings(video_ids, embeddings, self.dim)
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
                self._index = self._build(factory_string(self.kind, self.dim, len(video_ids)))
            if not self._index.is_trained:
                self._train(x)
            ints = np.arange(self._next, self._next + len(video_ids), dtype=np.int64)
            self._columns.reserve(self._next + len(video_ids))  # allocates before anything changes
            self._index.add_with_ids(x, ints)
            self._next += len(video_ids)
            self._flat_ids = None
            for v, i, meta in zip(video_ids, ints.tolist(), metadata or [None] * len(video_ids)):
                self._int_of[v] = i
                self._id_of[i] = v
                if meta:
                    self._metadata[v] = meta
            self._columns.add(ints, metadata or [None] * len(video_ids))
            if self.target_recall is not None:
                if not self._stores_exact_vectors():  # quantised storage: keep the exact vectors to measure
                    self._exact.append((ints, x.copy()))
                self._tune_pending = True  # tuned once, before the next search / save / read of the result

    def _train(self, x: np.ndarray) -> None:
        ivf = ivf_of(self._index)
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
            gone = np.array([self._int_of[v] for v in video_ids], dtype=np.int64)
            self._exact = [(i[keep], e[keep]) for i, e in self._exact for keep in [~np.isin(i, gone)]]
        ints = np.array([self._int_of.pop(v) for v in video_ids], dtype=np.int64)
        for v, i in zip(video_ids, ints.tolist()):
            self._id_of.pop(i, None)
            self._metadata.pop(v, None)
        self._columns.remove(ints)
        try:
            self._index.remove_ids(ints)
        except RuntimeError:  # HNSW cannot delete: filter at search time
            self._tombstones.update(ints.tolist())

    def remove_where(self, filter: Mapping[str, Any] | Filter) -> int:
        """Remove every video whose metadata matches ``filter`` (e.g. ``{"file": "a.mp4"}``: all its moments),
        selected on the metadata columns in one step with the removal. Returns how many were removed."""
        wanted = parse_filter(filter)
        if not wanted:
            raise VideoIndexError("remove_where needs a non-empty filter (to remove everything, build a new index)")
        with self._lock.write():
            gone = [self._id_of[i] for i in np.flatnonzero(self._columns.mask(wanted)).tolist()]
            if gone:
                self._remove_locked(gone)
        return len(gone)

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

    def search(
        self, queries: np.ndarray, k: int = 10, filter: Mapping[str, Any] | Filter | None = None
    ) -> list[list[SearchHit]]:
        """The ``k`` best videos for each query row, best first.

        ``k`` larger than the number of videos returns every video. Searching an empty index raises
        :class:`VideoIndexError`. ``filter`` (:mod:`mtvr.filters`: ``{"file": "a.mp4"}``,
        ``{"start": {"$lt": 60}}``...) keeps only the videos whose metadata matches; exact kinds then still
        return the exact top ``k`` of those.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise VideoIndexError(f"k must be a positive integer, got {k!r}")
        wanted = parse_filter(filter) or None  # an empty filter matches everything
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise VideoIndexError(f"queries have shape {q.shape}; this index expects [n, {self.dim}]")
        self._tune_if_pending()
        with self._lock.read():
            if not self._int_of:
                raise EmptyIndexError("the index is empty: add videos (Retriever.add / add_videos) before searching")
            if wanted:
                scores, ints, k_eff = self._search_filtered(q, int(k), wanted)
            else:
                k_eff = min(int(k), len(self._int_of))
                fetch = min(k_eff + len(self._tombstones), self._index.ntotal)
                is_flat, params = self._search_plan()
                flat = self._flat_view() if is_flat else None
                if flat is not None:
                    scores, ints = blas_topk(flat[0], flat[1], q, fetch)
                else:
                    with faiss_threads(faiss, len(q)):  # no OpenMP parallel region for a handful of queries
                        scores, ints = (
                            self._index.search(q, fetch, params=params)
                            if params is not None
                            else self._index.search(q, fetch)
                        )
            return self._hits(scores, ints, k_eff)

    def assemble_hits(self, scores: np.ndarray, ints: np.ndarray, k: int) -> list[list[SearchHit]]:
        """The hits :meth:`search` returns for raw faiss results of this index (``scores``/``ints`` ``[n, fetch]``):
        at most ``k`` per row, best first. Public so that the hit assembly can be timed on its own
        (``benchmarks/search.py``)."""
        with self._lock.read():
            return self._hits(scores, ints, k)

    def _hits(self, scores: np.ndarray, ints: np.ndarray, k: int) -> list[list[SearchHit]]:
        """At most ``k`` hits per row of faiss results, skipping -1 and removed ids (read lock held).

        The Python side of a single-query search: one ``tolist`` per matrix, bound lookups, hits built by
        :meth:`SearchHit.fast` (issue 26: profiled with ``benchmarks/search.py``).
        """
        id_of, meta_of, hit = self._id_of.get, self._metadata.get, SearchHit.fast
        results = []
        for row_scores, row_ints in zip(scores.tolist(), ints.tolist()):
            hits: list[SearchHit] = []
            for s, i in zip(row_scores, row_ints):
                vid = id_of(i)  # -1 and removed ids are not in _id_of
                if vid is None:
                    continue
                if len(hits) == k:
                    break
                hits.append(hit(vid, s, len(hits) + 1, meta_of(vid) or {}))
            results.append(hits)
        return results

    def _search_filtered(self, q: np.ndarray, k: int, wanted: Filter) -> tuple[Any, Any, int]:
        """``(scores, int ids, k)`` among the videos whose metadata matches ``wanted`` (read lock held).

        The filter is a boolean mask over the int ids, computed on the metadata columns
        (:mod:`mtvr.index.columns`, milliseconds at 100k videos); the selection runs inside the faiss search
        (:func:`mtvr.filtered_search.filtered_search`), so a selective filter still returns ``min(k, matching
        videos)`` hits.
        """
        mask = self._columns.mask(wanted)
        with faiss_threads(faiss, len(q)):
            found = filtered_search(
                self._index, q, k, mask, ef_search=self.ef_search, nprobe=self.nprobe, id_map=self._storage_ids()
            )
        return found.scores, found.ints, min(k, int(np.count_nonzero(mask)))

    def _storage_ids(self) -> np.ndarray | None:
        """The external int ids of an id-mapped CPU index in storage order (cached until the next mutation)."""
        if not isinstance(self._index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            return None
        if self._flat_ids is None:
            self._flat_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return self._flat_ids

    def _flat_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(vectors, ids)`` as zero-copy numpy views of a CPU ``IndexFlatIP``, else ``None``.

        Exact search then runs as one BLAS matrix product + partial sort: on the 2-core machines measured
        (benchmarks/search.py) faiss's own flat scan is single-threaded for one query and 0.6-0.7x the
        speed of the BLAS product. Results are identical (same vectors, same inner products).
        """
        base = base_of(self._index)
        if not isinstance(base, faiss.IndexFlat) or base.metric_type != faiss.METRIC_INNER_PRODUCT:
            return None
        if not isinstance(self._index, (faiss.IndexIDMap, faiss.IndexIDMap2)) or base.ntotal == 0:
            return None
        xb = faiss.rev_swig_ptr(base.get_xb(), base.ntotal * self.dim).reshape(base.ntotal, self.dim)
        return xb, self._storage_ids()

    def _search_plan(self) -> tuple[bool, Any]:
        """``(maybe a flat index, search parameters)``, cached per faiss object and knob values.

        Working them out (SWIG downcasts, a new parameters object) cost ~0.1 ms per call, a quarter of one
        HNSW query at 10k videos (issue 26: single-query latency against hnswlib).
        """
        key = (id(self._index), self.ef_search, self.nprobe)
        if self._plan_key != key:
            base = base_of(self._index)
            self._plan = (isinstance(base, faiss.IndexFlat), self._search_params())
            self._plan_key = key
        return self._plan

    def _search_params(self, selector: Any = None) -> Any:
        extra = {} if selector is None else {"sel": selector}
        base = base_of(self._index)
        if hnsw_of(base) is not None:
            return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, 1), **extra)
        if ivf_of(self._index) is not None:
            return faiss.SearchParametersIVF(nprobe=self.nprobe, **extra)
        return faiss.SearchParameters(**extra) if selector is not None else None

    # ----------------------------------------------------------------- recall target
    def tune(
        self,
        target_recall: float | None = None,
        sample: int = 1000,
        seed: int = 0,
        queries: np.ndarray | None = None,
    ) -> float | None:
        """Pick the smallest ``ef_search`` (HNSW) or ``nprobe`` (IVF) whose recall@``recall_k`` against exact
        search reaches ``target_recall`` (one-sided 95 % lower bound), autofaiss-style.

        ``queries`` (``[m, dim]``, e.g. the embedded captions of the dataset the index is built from) are real
        query embeddings to measure on: the target then holds for queries like them. They are kept (and saved) with
        the index and used again when videos are added later. Without them the recall is measured on synthetic
        queries matched to unseen queries' difficulty (:mod:`mtvr.index.tuning`), ``sample`` of each kind.

        Returns the measured recall (``None`` for kinds without a speed/recall knob, which are exact or fixed).
        The choice, the recall and what it was measured on (:attr:`measured_on`) are stored in
        ``index_config.json``.
        """
        if target_recall is not None:
            if not 0.0 < float(target_recall) <= 1.0:
                raise VideoIndexError(f"target_recall must be in (0, 1], got {target_recall!r}")
            self.target_recall = float(target_recall)
        if self.target_recall is None:
            raise VideoIndexError("no target_recall: pass one to tune() or to VideoIndex(...)")
        if queries is not None:
            self._tune_queries = check_tuning_queries(queries, self.dim)
        with self._lock.write():
            self._tune_pending = False
            return self._tune_locked(sample, seed)

    @property
    def measured_on(self) -> str | None:
        """What :attr:`measured_recall` was measured on (real or synthetic queries, how many)."""
        self._tune_if_pending()
        return self._measured_on

    def _stores_exact_vectors(self) -> bool:
        base = base_of(self._index)
        return isinstance(base, (faiss.IndexFlat, faiss.IndexHNSWFlat))

    def _exact_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(int ids, float32 vectors)`` of every live video, as added (not quantised)."""
        if self._exact:
            return (
                np.concatenate([i for i, _ in self._exact]),
                np.ascontiguousarray(np.concatenate([e for _, e in self._exact])),
            )
        if not self._stores_exact_vectors():
            raise VideoIndexError(
                f"index kind {self.kind!r} stores quantised vectors: set target_recall before adding videos so "
                "that the exact vectors are measured"
            )
        base = base_of(self._index)
        xb = base.reconstruct_n(0, base.ntotal)
        ints = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        live = np.array([i in self._id_of for i in ints.tolist()], dtype=bool)
        return ints[live], np.ascontiguousarray(xb[live], dtype=np.float32)

    def _tune_locked(self, sample: int = 1000, seed: int = 0) -> float | None:
        ivf = ivf_of(self._index)
        knob = "ef_search" if hnsw_of(base_of(self._index)) is not None else ("nprobe" if ivf is not None else None)
        if knob is None or not self._id_of:
            self._measured_recall = self._measured_on = None
            return None
        ints, xb = self._exact_vectors()
        k = min(self.recall_k, len(xb))
        if self._tune_queries is not None:
            query_sets = {"real queries": self._tune_queries}
            on = f"{len(self._tune_queries)} real queries"
        else:
            query_sets = synthetic_queries(xb, sample, seed)
            on = f"{sample} synthetic queries of each kind ({', '.join(query_sets)}; the lowest recall)"
        dead = self._tombstones

        def search_at(q: np.ndarray, kk: int, value: int) -> np.ndarray:
            setattr(self, knob, value)
            found = self._index.search(q, min(kk + len(dead), self._index.ntotal), params=self._search_params())[1]
            if dead:  # removed ids are filtered from results by search(): measure what it returns
                live = [[i for i in row if i not in dead] + [-1] * kk for row in found.tolist()]
                return np.array([row[:kk] for row in live], dtype=np.int64)
            return found

        candidates = knob_candidates(knob, k, ivf.nlist if ivf is not None else None)
        best = choose(search_at, candidates, query_sets, xb, ints, k, self.target_recall)
        setattr(self, knob, best.value)
        self._measured_recall = best.recall
        self._measured_on = on
        return self._measured_recall

    def reconstruct(self, video_id: str) -> np.ndarray:
        """The stored vector of one video (approximate for quantised kinds)."""
        with self._lock.read():
            return self._index.reconstruct(self._int_of[video_id])

    # ----------------------------------------------------------------- persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``index.faiss``, ``ids.json`` and ``index_config.json`` atomically into ``folder``."""
        self._tune_if_pending()
        with self._lock.read():
            state = IndexState(
                raw=self._index,
                ids=[(i, v) for v, i in self._int_of.items()],
                metadata=self._metadata,
                tombstones=self._tombstones,
                next=self._next,
                measured_recall=self._measured_recall,
                measured_on=self._measured_on,
                tuning_vectors=self._exact_vectors() if self._exact else None,
                tune_queries=self._tune_queries,
            )
            return write_folder(folder, self.config, state)

    @classmethod
    def load(cls, folder: str | os.PathLike, use_gpu: bool | str = "auto") -> VideoIndex:
        """Load a folder written by :meth:`save`, checking it first.

        Counts, shapes, the ids file and a SHA-256 checksum of ``index.faiss`` are verified; any
        mismatch raises :class:`IndexLoadError` naming the folder and the file.
        """
        folder = Path(folder)
        cfg, state = read_config(folder)
        options = {k: cfg[k] for k in IndexConfig.option_names() if cfg.get(k) is not None}
        try:
            index = cls(cfg["dim"], cfg["kind"], use_gpu=use_gpu, **options)
        except (VideoIndexError, TypeError) as exc:
            raise load_error(folder, "index_config.json", str(exc)) from None
        saved = read_state(folder, cfg, state, index.dim)
        if saved.raw is not None:
            index._check_kind(saved.raw, folder)
            saved.raw = index._maybe_to_gpu(saved.raw)
        try:
            index._restore(saved)
        except VideoIndexError as exc:
            raise load_error(folder, "index.faiss", str(exc)) from None
        return index

    def _check_kind(self, raw: Any, folder: Path) -> None:
        """``index.faiss`` must hold the structure ``index_config.json`` names (its kind decides the search
        knobs and the recall tuning: an HNSW config over a flat index would load and be tuned wrongly)."""
        expected = faiss.index_factory(self.dim, factory_string(self.kind, self.dim, max(raw.ntotal, 1)))
        want = type(faiss.downcast_index(expected)).__name__
        inner = raw.index if isinstance(raw, (faiss.IndexIDMap, faiss.IndexIDMap2)) else raw
        have = type(faiss.downcast_index(inner)).__name__
        if want.replace("IndexFlatIP", "IndexFlat") != have.replace("IndexFlatIP", "IndexFlat"):
            raise load_error(
                folder, "index.faiss", f"holds a {have} but index_config.json says kind {self.kind!r} ({want})"
            )

    def close(self) -> None:
        """Nothing to release: the index lives in memory until it is garbage-collected."""


def ivf_without_id_map(raw: Any) -> Any:
    """An IVF index saved inside an ``IndexIDMap2`` (as mtvr did before issue 25) as a plain IVF index whose
    inverted lists hold the external ids; any other index is returned as is.

    Such an index is sound only if no video was ever removed from it: its lists then hold each sequential
    id ``0..n-1`` exactly once. Otherwise a removal has already broken the id map (the hits pointed at the
    wrong videos) and :class:`VideoIndexError` says to rebuild it: the right mapping cannot be recovered.
    """
    if not isinstance(raw, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return raw
    inner = faiss.downcast_index(raw.index)
    ivf = ivf_of(inner)
    if ivf is None:
        return raw
    id_map = faiss.vector_to_array(raw.id_map).astype(np.int64)
    invlists = ivf.invlists

    def list_ids(l: int) -> np.ndarray:
        n = invlists.list_size(l)
        return faiss.rev_swig_ptr(invlists.get_ids(l), n).astype(np.int64) if n else np.zeros(0, np.int64)

    stored = [list_ids(l) for l in range(ivf.nlist)]
    every = np.concatenate(stored) if stored else np.zeros(0, np.int64)
    if len(every) != len(id_map) or not np.array_equal(np.sort(every), np.arange(len(id_map))):
        raise VideoIndexError(
            "an IVF index whose id map a removal broke (before mtvr's fix, remove()/add(replace=True) on IVF "
            "mapped hits to the wrong videos): its true ids are lost"
        )
    for l, ids in enumerate(stored):
        if len(ids):
            external = np.ascontiguousarray(id_map[ids])
            codes = faiss.rev_swig_ptr(invlists.get_codes(l), len(ids) * invlists.code_size).copy()
            invlists.update_entries(l, 0, len(ids), faiss.swig_ptr(external), faiss.swig_ptr(codes))
    inner.referenced_objects = [raw]  # the wrapper owns the inner index: keep it alive as long as the inner one
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return inner


def _open_folder(location: str | os.PathLike, **options: Any) -> VideoIndex:
    """The faiss opener of :func:`mtvr.index.open_index`: a folder written by :meth:`VideoIndex.save`."""
    path = Path(location)
    if not path.exists():
        raise IndexLoadError(f"index folder {path} not found")
    return VideoIndex.load(path, **options)


register_backend("faiss", _open_folder)
