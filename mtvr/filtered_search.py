"""Search a faiss index restricted to a set of ids: the filter runs inside the search, not after it.

A post-filter (search ``k``, then drop what the filter rejects) returns fewer than ``k`` hits, or none, when
the filter is selective. Here the ids that pass the filter (a boolean mask over the int ids, computed on the
metadata columns of :mod:`mtvr.index.columns`) are handed to faiss as an ``IDSelectorBitmap`` in the search
parameters, so the index only ever considers them:

* exact (``Flat``): a BLAS product over the selected rows only, or, when at least a quarter of the rows is
  selected, over every row with the others masked out (no copy of the selected rows);
* ``HNSW``: the graph search skips unselected nodes (``SearchParametersHNSW(sel=...)``), with ``efSearch``
  raised to ``k / selected fraction`` (at most ``MAX_FILTER_EF``) so that the walk meets enough selected
  nodes (at ef 128 the recall@10 of a 1 % filter was 0.74 in the benchmark). When few ids are
  selected the graph walk cannot reach ``k`` of them (it returns fewer, and the walk visits ever more
  unselected nodes), so below ``exact_below`` selected ids the search is exact over those ids (their
  vectors are read back from the index), as vector databases do (Milvus, Qdrant, Weaviate switch to brute
  force under a selectivity threshold). A graph search that still returns fewer than ``k`` of the selected
  ids falls back to the exact search too. ``benchmarks/moments.py`` measures both costs;
* ``IVF``: inverted lists scanned with the selector; when the ``nprobe`` nearest lists hold fewer than
  ``k`` selected vectors, the search is repeated over every list (complete for the selected ids);
* other kinds (``SQ8``...): faiss's scan with the selector.

Every strategy returns ``min(k, number selected)`` hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_EXACT_BELOW = 2048  # selected ids under which HNSW searches exactly (see benchmarks/moments.py)
MAX_FILTER_EF = 4096  # the largest efSearch a filtered HNSW search raises itself to


@dataclass
class FilteredResult:
    scores: np.ndarray  # [nq, k] float32, -inf padding
    ints: np.ndarray  # [nq, k] int64, -1 padding
    strategy: str  # "exact" | "hnsw" | "hnsw+exact" | "ivf" | "ivf-all" | "scan"


def _topk(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(k), (len(sims), 1))
    top = np.take_along_axis(sims, part, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(top, order, 1).astype(np.float32), ids[np.take_along_axis(part, order, 1)]


def exact_over(xb: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` of ``q`` among the rows ``xb`` (ids ``ids``)."""
    if len(ids) == 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    return _topk(_product(xb, q), ids, k)


def _product(xb: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``q @ xb.T`` computed as ``(xb @ q.T).T``: for a few queries OpenBLAS then runs one matrix-vector pass
    instead of a thread-parallel GEMM (0.03 ms against 1-6 ms for 1,000 rows on 2 busy cores)."""
    return (xb @ q.T).T


def _count(ints: np.ndarray) -> int:
    return int((ints >= 0).sum(1).min()) if ints.size else 0


def as_mask(selected: np.ndarray) -> np.ndarray:
    """A boolean mask over ids (``mask[i]``: id ``i`` is selected) from a mask or an array of ids."""
    selected = np.asarray(selected)
    if selected.dtype == bool:
        return selected
    ids = selected.astype(np.int64, copy=False)
    mask = np.zeros(int(ids.max()) + 1 if len(ids) else 0, dtype=bool)
    mask[ids] = True
    return mask


def _selected_at(mask: np.ndarray, ext: np.ndarray) -> np.ndarray:
    """``mask[ext]`` for the stored ids ``ext``, ids past the end of the mask unselected."""
    if len(ext) and int(ext.max()) >= len(mask):
        mask = np.concatenate([mask, np.zeros(int(ext.max()) + 1 - len(mask), dtype=bool)])
    return mask[ext]


def filtered_search(
    index: Any,
    q: np.ndarray,
    k: int,
    selected: np.ndarray,
    *,
    ef_search: int = 128,
    nprobe: int = 32,
    exact_below: int = DEFAULT_EXACT_BELOW,
    id_map: np.ndarray | None = None,
) -> FilteredResult:
    """Top-``k`` of ``q`` among the selected external ids of ``index`` (a faiss ``IndexIDMap(2)`` or an IVF
    index holding its own ids).

    ``selected`` is a boolean mask over the external ids (``selected[i]``: id ``i`` may be returned; what
    :meth:`mtvr.index.columns.MetadataColumns.mask` gives) or an array of ids. It reaches faiss as an
    ``IDSelectorBitmap`` (one bit per id: built in microseconds, tested in one instruction per candidate),
    not as a hash set of the selected ids. ``id_map`` (the stored ids in storage order, as
    ``faiss.vector_to_array(index.id_map)``) may be passed to save copying it out of the index.
    """
    import faiss

    mask = as_mask(selected)
    n_selected = int(np.count_nonzero(mask))
    want = min(int(k), n_selected)
    if want == 0:
        return FilteredResult(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), "exact")
    base = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    hnsw = getattr(base, "hnsw", None)
    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        ivf = None

    def exact() -> tuple[np.ndarray, np.ndarray]:
        ext = id_map if id_map is not None else faiss.vector_to_array(index.id_map).astype(np.int64)
        inside = _selected_at(mask, ext)
        flat = base if isinstance(base, faiss.IndexFlat) else getattr(base, "storage", None)
        flat = faiss.downcast_index(flat) if flat is not None else None
        if isinstance(flat, faiss.IndexFlat) and flat.ntotal == len(ext):  # zero-copy view of the stored vectors
            xb = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
            if 4 * n_selected >= len(ext):
                # a dense selection: one product over every row, the others masked out, beats copying the rows
                sims = _product(xb, q)  # a new array: unselected rows are masked out in place
                sims[:, ~inside] = -np.inf
                return _topk(sims, ext, want)
            pos = np.flatnonzero(inside)
            return exact_over(xb[pos], ext[pos], q, want)
        pos = np.flatnonzero(inside)
        xb = base.reconstruct_batch(pos.astype(np.int64))
        return exact_over(np.ascontiguousarray(xb, dtype=np.float32), ext[pos], q, want)

    if isinstance(base, faiss.IndexFlat) or (hnsw is not None and n_selected <= exact_below):
        s, i = exact()
        return FilteredResult(s, i, "exact")
    bitmap = np.packbits(mask, bitorder="little")  # bit i of byte i // 8 = id i, as IDSelectorBitmap reads it
    sel = faiss.IDSelectorBitmap(bitmap)
    if hnsw is not None:
        # a walk that skips unselected nodes needs a longer candidate list to meet k selected ones: scale
        # efSearch by 1/selectivity (k / fraction, capped), as the recall column of the benchmark asks
        fraction = n_selected / max(1, index.ntotal)
        ef = max(ef_search, want, min(MAX_FILTER_EF, int(want / fraction)))
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
        s, i = index.search(q, want, params=params)
        if _count(i) >= want:
            return FilteredResult(s, i, "hnsw")
        s, i = exact()
        return FilteredResult(s, i, "hnsw+exact")
    if ivf is not None:
        s, i = index.search(q, want, params=faiss.SearchParametersIVF(sel=sel, nprobe=nprobe))
        if _count(i) >= want:
            return FilteredResult(s, i, "ivf")
        s, i = index.search(q, want, params=faiss.SearchParametersIVF(sel=sel, nprobe=ivf.nlist))
        return FilteredResult(s, i, "ivf-all")
    s, i = index.search(q, want, params=faiss.SearchParameters(sel=sel))
    return FilteredResult(s, i, "scan")
