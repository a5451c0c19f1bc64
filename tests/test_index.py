"""VideoIndex: exact search against brute force, HNSW recall, IVF-PQ, persistence."""

import numpy as np
import pytest

from mtvr import VideoIndex
from mtvr.errors import VideoIndexError


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_equals_numpy_brute_force():
    x, q = _unit(3000, 64, 0), _unit(50, 64, 1)
    index = VideoIndex(64)
    index.add([f"v{i}" for i in range(len(x))], x)
    hits = index.search(q, k=10)
    expected = np.argsort(-(q @ x.T), axis=1)[:, :10]
    sims = q @ x.T
    for qi, (row, exp) in enumerate(zip(hits, expected)):
        assert [h.video_id for h in row] == [f"v{i}" for i in exp]
        np.testing.assert_allclose([h.score for h in row], sims[qi, exp], rtol=1e-4)


def test_hnsw_recall_at_10_on_20000_vectors():
    x, q = _unit(20000, 32, 2), _unit(200, 32, 3)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    index = VideoIndex(32, "hnsw", ef_search=128)
    index.add([str(i) for i in range(len(x))], x)
    found = index.search(q, k=10)
    recall = np.mean([len({int(h.video_id) for h in row} & set(e.tolist())) / 10 for row, e in zip(found, exact)])
    assert recall >= 0.95, recall


def test_hnsw_remove_filters_tombstones(tmp_path):
    x = _unit(500, 16, 4)
    index = VideoIndex(16, "hnsw")
    index.add([str(i) for i in range(500)], x)
    top = index.search(x[:1], k=1)[0][0].video_id
    assert top == "0"
    index.remove(["0"])
    hits = index.search(x[:1], k=5)[0]
    assert "0" not in [h.video_id for h in hits] and len(hits) == 5
    index.save(tmp_path / "i")
    loaded = VideoIndex.load(tmp_path / "i")
    assert [h.video_id for h in loaded.search(x[:1], k=5)[0]] == [h.video_id for h in hits]


def test_ivfpq_trains_on_first_add_and_finds_near_duplicates():
    x = _unit(4000, 64, 5)
    index = VideoIndex(64, "ivfpq", nprobe=64)
    index.add([str(i) for i in range(len(x))], x)
    hits = index.search(x[:20], k=5)
    assert (
        np.mean([row[0].video_id == str(i) or str(i) in [h.video_id for h in row] for i, row in enumerate(hits)]) >= 0.9
    )
    small = VideoIndex(64, "IVF256,Flat")
    with pytest.raises(VideoIndexError, match="at least 256"):
        small.add(["a", "b"], x[:2])


def test_factory_strings_and_bad_kinds():
    x = _unit(300, 16, 6)
    idx = VideoIndex(16, "HNSW16,SQ8")
    idx.add([str(i) for i in range(300)], x)
    assert idx.search(x[3], k=1)[0][0].video_id == "3"
    with pytest.raises(VideoIndexError, match="cannot build"):
        VideoIndex(16, "NotAnIndex")


def test_bad_shapes_and_k():
    idx = VideoIndex(8)
    with pytest.raises(VideoIndexError, match="shape"):
        idx.add(["a"], np.zeros((1, 9), np.float32))
    with pytest.raises(VideoIndexError, match="NaN"):
        idx.add(["a"], np.full((1, 8), np.nan, np.float32))
    idx.add(["a"], _unit(1, 8, 0))
    with pytest.raises(VideoIndexError, match="positive"):
        idx.search(_unit(1, 8, 0), k=0)


def test_flat_blas_fast_path_equals_faiss_after_removals():
    import faiss

    x, q = _unit(2000, 32, 8), _unit(20, 32, 9)
    index = VideoIndex(32)
    index.add([f"v{i}" for i in range(2000)], x)
    index.remove([f"v{i}" for i in range(0, 2000, 3)])
    ours = index.search(q, k=7)
    raw_scores, raw_ids = index.faiss_index.search(q, 7)  # faiss's own flat scan
    for row, ids, scores in zip(ours, raw_ids, raw_scores):
        assert [h.video_id for h in row] == [f"v{i}" for i in ids]
        np.testing.assert_allclose([h.score for h in row], scores, rtol=1e-5)
    assert isinstance(faiss.downcast_index(index.faiss_index.index), faiss.IndexFlat)
