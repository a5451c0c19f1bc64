"""The single-query search path (issue 26): cheap hits, thread counts by batch size, the read lock."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from mtvr import VideoIndex
from mtvr.index.base import SearchHit
from mtvr.index.lock import ReadWriteLock
from mtvr.threads import SMALL_SEARCH_BATCH, faiss_threads


def test_fast_hits_equal_constructed_hits_and_stay_frozen():
    fast = SearchHit.fast("v1", 0.5, 1, {"file": "a.mp4"})
    assert fast == SearchHit("v1", 0.5, 1, {"file": "a.mp4"})
    assert dataclasses.asdict(fast) == {"video_id": "v1", "score": 0.5, "rank": 1, "metadata": {"file": "a.mp4"}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.score = 1.0  # type: ignore[misc]


def test_search_hits_have_python_types_ranks_and_their_own_metadata():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for kind in ("flat", "hnsw"):
        index = VideoIndex(8, kind)
        index.add([f"v{i}" for i in range(50)], x, metadata=[{"n": i} if i % 2 else None for i in range(50)])
        index.remove(["v0"])
        rows = index.search(x[:3], k=5)
        for q, hits in zip(x[:3], rows):
            assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
            assert all(type(h.score) is float and type(h.video_id) is str for h in hits)
            assert "v0" not in [h.video_id for h in hits]
            for h in hits:
                i = int(h.video_id[1:])
                assert h.metadata == ({"n": i} if i % 2 else {})
                assert h.score == pytest.approx(float(x[i] @ q), abs=1e-5)
        empty = [h for h in rows[0] + rows[1] if not h.metadata]
        if len(empty) > 1:
            empty[0].metadata["x"] = 1  # a hit's metadata of a video without any is its own dict
            assert not empty[1].metadata and index.metadata(empty[1].video_id) == {}


def test_faiss_runs_small_batches_on_one_thread_and_restores_the_setting():
    import faiss

    before = faiss.omp_get_max_threads()
    with faiss_threads(faiss, 1) as n:
        assert n == 1 and faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
    with faiss_threads(faiss, SMALL_SEARCH_BATCH) as n:
        assert n == before and faiss.omp_get_max_threads() == before


def test_read_lock_admits_readers_together_and_a_writer_alone():
    lock = ReadWriteLock()
    inside, seen, order = [], [], []
    gate = threading.Barrier(3)

    def reader() -> None:
        with lock.read():
            inside.append(1)
            gate.wait(timeout=5)  # both readers are inside at once, or this times out
            seen.append(len(inside))
            time.sleep(0.05)
            order.append("read")

    def writer() -> None:
        gate.wait(timeout=5)
        with lock.write():
            order.append("write")

    threads = [threading.Thread(target=f) for f in (reader, reader, writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert seen == [2, 2] and order == ["read", "read", "write"]
    with lock.read():  # the guard is reusable and releases on exceptions
        pass
    with pytest.raises(KeyError):
        with lock.read():
            raise KeyError("x")
    with lock.write():
        pass


def test_exact_topk_in_query_chunks_equals_one_product(monkeypatch):
    import mtvr.index.blas as blas

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((37, 16)).astype(np.float32)
    ids = np.arange(1000, 1500)
    whole = blas.blas_topk(xb, ids, q, 7)
    monkeypatch.setattr(blas, "CHUNK_ELEMENTS", 500 * 5)  # 5 queries per chunk: 8 chunks, the last one short
    chunked = blas.blas_topk(xb, ids, q, 7)
    np.testing.assert_array_equal(whole[1], chunked[1])
    np.testing.assert_allclose(whole[0], chunked[0], rtol=1e-5)  # BLAS blocking differs by shape: last bits
    truth = np.argsort(-(q @ xb.T), axis=1, kind="stable")[:, :7] + 1000
    np.testing.assert_array_equal(chunked[1], truth)
