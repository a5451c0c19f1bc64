"""Thread counts of the query path: one thread for tiny batches, all of them (or ``MTVR_NUM_THREADS``) for large ones.

Encoding one query (a few dozen tokens through a small transformer) or searching one HNSW query is too little work
to split: an OpenMP parallel region costs a fork/join and, when another process competes for the cores, its
threads spin at the barrier waiting for a descheduled sibling. Measured on 2 shared cores (issue 26,
``benchmarks/search.py``): one HNSW query at ef 192 over 100k vectors took 3-4x longer through faiss's default
parallel region than on the calling thread; one MiniLM query encode with torch's two threads against a busy
process took 417 ms vs 12 ms on one thread. Batches keep every thread.

``MTVR_NUM_THREADS`` (a positive integer) caps the threads mtvr uses for large batches (torch and faiss), e.g. one
per worker when several server processes share a machine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import MtvrError

ENV_VAR = "MTVR_NUM_THREADS"
SMALL_TEXT_BATCH = 4  # below this many texts, encode on the calling thread
SMALL_SEARCH_BATCH = 8  # below this many queries, search on the calling thread


class ThreadSettingError(MtvrError, ValueError):
    """``MTVR_NUM_THREADS`` is not a positive integer."""


def configured_threads() -> int | None:
    """``MTVR_NUM_THREADS`` as a positive integer, or ``None`` when unset."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ThreadSettingError(f"{ENV_VAR}={raw!r}: expected a positive integer number of threads")
    return int(raw)


_CAP = threading.local()


@contextmanager
def thread_cap(threads: int) -> Iterator[None]:
    """Use at most ``threads`` for every batch run by the calling thread inside the block (e.g. the server's
    encoder thread: on 2 cores shared with other processes, one torch thread encoded a list of 16 queries 2-3x
    faster than two)."""
    before = getattr(_CAP, "value", None)
    _CAP.value = max(1, int(threads))
    try:
        yield
    finally:
        _CAP.value = before


def threads_for(batch: int, small: int, available: int) -> int:
    """Threads for a batch of ``batch`` items: 1 below ``small``, else ``MTVR_NUM_THREADS`` or ``available``
    (at most the :func:`thread_cap` of the calling thread)."""
    if batch < small:
        return 1
    configured = configured_threads()
    wanted = available if configured is None else configured
    cap = getattr(_CAP, "value", None)
    return wanted if cap is None else min(wanted, cap)


@contextmanager
def torch_threads(batch: int) -> Iterator[int]:
    """Run torch ops in the block with the thread count :func:`threads_for` picks for ``batch`` texts.

    ``torch.set_num_threads`` is process-wide: concurrent callers may see each other's setting (a thread count,
    never a wrong result); the server encodes on one thread of its own, so it is unaffected.
    """
    import torch

    before = torch.get_num_threads()
    wanted = threads_for(batch, SMALL_TEXT_BATCH, _default_torch_threads(before))
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if wanted != before:
            torch.set_num_threads(before)


_TORCH_DEFAULT: int | None = None


def _default_torch_threads(current: int) -> int:
    """torch's thread count as first seen (before mtvr changed it), the 'all threads' of a large batch."""
    global _TORCH_DEFAULT
    if _TORCH_DEFAULT is None:
        _TORCH_DEFAULT = current
    return _TORCH_DEFAULT


class faiss_threads:  # noqa: N801 - used like the function-style context managers above
    """``with faiss_threads(faiss, batch):`` runs faiss searches in the block on one thread for small batches
    (the OpenMP setting of the calling thread); ``as`` gives the thread count.

    A class rather than a ``contextmanager`` generator: every search enters it, and a generator-based context
    costs ~2 us, a tenth of the Python side of one search (issue 26).
    """

    __slots__ = ("_faiss", "_before", "_wanted")

    def __init__(self, faiss: object, batch: int) -> None:
        self._faiss = faiss
        self._before = faiss.omp_get_max_threads()  # type: ignore[attr-defined]
        self._wanted = threads_for(batch, SMALL_SEARCH_BATCH, self._before)

    def __enter__(self) -> int:
        if self._wanted != self._before:
            self._faiss.omp_set_num_threads(self._wanted)  # type: ignore[attr-defined]
        return self._wanted

    def __exit__(self, *exc: object) -> None:
        if self._wanted != self._before:
            self._faiss.omp_set_num_threads(self._before)  # type: ignore[attr-defined]
