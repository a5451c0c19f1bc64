"""The index package's public API: backend registry, metadata accessors, filters, from_faiss, and no module
outside ``mtvr/index/`` touching an index's private state."""

import ast
from pathlib import Path

import numpy as np
import pytest

from mtvr.errors import FilterError, IndexLoadError, VideoIndexError
from mtvr.index import IndexBackend, SearchHit, VideoIndex, faiss, open_index, register_backend, registered_backends

ROOT = Path(__file__).resolve().parents[1]


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_open_dispatches_folders_to_faiss_and_schemes_to_registered_backends(tmp_path):
    x = _unit(20, 8, 0)
    index = VideoIndex(8)
    index.add([f"v{i}" for i in range(20)], x, [{"file": f"f{i % 3}.mp4"} for i in range(20)])
    index.save(tmp_path / "idx")
    for location in (tmp_path / "idx", str(tmp_path / "idx"), f"faiss://{tmp_path / 'idx'}"):
        opened = VideoIndex.open(location)
        assert isinstance(opened, VideoIndex) and opened.ids == index.ids
        assert opened.metadata("v4") == {"file": "f1.mp4"}
    with pytest.raises(IndexLoadError, match="not found"):
        open_index(tmp_path / "missing")
    with pytest.raises(VideoIndexError, match="no index backend for nosuch://"):
        open_index("nosuch://host#c")

    opened_with = {}

    def opener(location, **options):
        opened_with.update(location=location, **options)
        return index

    register_backend("toy-db", opener)
    assert "toy-db" in registered_backends() and "faiss" in registered_backends()
    assert IndexBackend.open("toy-db://h:1#coll", dim=8) is index
    assert opened_with == {"location": "toy-db://h:1#coll", "dim": 8}
    register_backend("toy-lazy", "mtvr.index.base:split_location")  # a "module:function" is imported on first use
    assert open_index("toy-lazy://h#c") == ("toy-lazy", "toy-lazy://h#c")


def test_metadata_accessor_filtered_search_and_remove_where():
    x, q = _unit(300, 16, 1), _unit(5, 16, 2)
    index = VideoIndex(16)
    meta = [{"file": f"f{i % 4}.mp4", "start": float(i)} for i in range(300)]
    index.add([f"v{i}" for i in range(300)], x, meta)
    assert index.count == 300 and index.metadata("v5") == {"file": "f1.mp4", "start": 5.0}
    index.metadata("v5")["file"] = "changed"  # a copy: the index is unchanged
    assert index.metadata("v5")["file"] == "f1.mp4"
    with pytest.raises(VideoIndexError, match="not in the index"):
        index.metadata("nope")
    hits = index.search(q, k=7, filter={"file": "f2.mp4"})
    allowed = np.array([i for i in range(300) if i % 4 == 2])
    sims = q @ x[allowed].T
    for row, s in zip(hits, sims):
        expected = [f"v{allowed[j]}" for j in np.argsort(-s)[:7]]
        assert [h.video_id for h in row] == expected and [h.rank for h in row] == list(range(1, 8))
        assert all(isinstance(h, SearchHit) and h.metadata["file"] == "f2.mp4" for h in row)
    both = index.search(q, k=500, filter={"file": {"$in": ["f0.mp4", "f3.mp4"]}})
    assert all(len(row) == 150 for row in both)
    assert index.search(q, k=3, filter={"file": "none.mp4"}) == [[] for _ in range(5)]
    with pytest.raises(FilterError):
        index.search(q, k=3, filter="file == 'a'")
    assert [h.video_id for h in index.search(q, k=3, filter={})[0]] == [h.video_id for h in index.search(q, k=3)[0]]
    late = index.search(q, k=300, filter={"start": {"$gte": 290}})
    assert sorted(h.video_id for h in late[0]) == sorted(f"v{i}" for i in range(290, 300))
    assert index.remove_where({"file": "f1.mp4"}) == 75 and len(index) == 225
    assert "v5" not in index and index.remove_where({"file": "f1.mp4"}) == 0


def test_filtered_search_on_an_hnsw_index_keeps_only_matching_videos():
    x, q = _unit(2000, 16, 3), _unit(10, 16, 4)
    index = VideoIndex(16, "hnsw", ef_search=256)
    index.add([f"v{i}" for i in range(2000)], x, [{"shard": i % 10} for i in range(2000)])
    hits = index.search(q, k=10, filter={"shard": 3})
    assert all(len(row) == 10 and all(h.metadata["shard"] == 3 for h in row) for row in hits)


def test_from_faiss_wraps_a_filled_index_with_metadata(tmp_path):
    x = _unit(500, 16, 5)
    raw = faiss.index_factory(16, "IVF8,Flat", faiss.METRIC_INNER_PRODUCT)
    raw.train(x)
    raw.add_with_ids(x, np.arange(100, 600, dtype=np.int64))
    ids = [f"v{i}" for i in range(500)]
    index = VideoIndex.from_faiss(
        raw, ids, np.arange(100, 600), [{"n": i} for i in range(500)], kind="IVF8,Flat", nprobe=8
    )
    hit = index.search(x[7], k=1)[0][0]
    assert hit.video_id == "v7" and hit.metadata == {"n": 7}
    index.add(["new"], _unit(1, 16, 6))  # new ints do not collide with the wrapped ones (raw is wrapped, not copied)
    assert len(index) == 501 and index.search(_unit(1, 16, 6), k=1)[0][0].video_id == "new"
    loaded = VideoIndex.load(index.save(tmp_path / "i"))
    assert loaded.kind == "IVF8,Flat" and loaded.nprobe == 8 and loaded.metadata("v9") == {"n": 9}
    with pytest.raises(VideoIndexError, match="holds 501 vectors but 2 video ids"):
        VideoIndex.from_faiss(raw, ["a", "b"], kind="IVF8,Flat")


PRIVATE = {"_index", "_int_of", "_id_of", "_next", "_metadata", "_tombstones", "_exact", "_flat_ids", "_lock"}


def test_no_module_outside_the_index_package_touches_its_private_state():
    offenders = []
    for path in (ROOT / "mtvr").rglob("*.py"):
        if "index" in path.relative_to(ROOT / "mtvr").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_a_sharded_index_keeps_metadata(tmp_path):
    from mtvr.scale.sharded_index import build_sharded_index

    x = _unit(400, 16, 7)
    ids = [f"v{i}" for i in range(400)]
    index = build_sharded_index(
        ids,
        x,
        tmp_path / "s",
        factory="IVF4,Flat",
        num_shards=3,
        engine="local",
        nprobe=4,
        metadata=[{"file": f"f{i % 2}.mp4"} for i in range(400)],
    )
    loaded = VideoIndex.load(tmp_path / "s")
    assert loaded.metadata("v3") == {"file": "f1.mp4"} and index.search(x[3], k=1)[0][0].metadata == {"file": "f1.mp4"}
    assert all(h.metadata["file"] == "f0.mp4" for h in loaded.search(x[:3], k=5, filter={"file": "f0.mp4"})[0])


def test_a_sharded_ivfpq_index_tunes_to_a_target_recall(tmp_path):
    from mtvr.scale.sharded_index import build_sharded_index

    x = _unit(3000, 32, 8)
    ids = [f"v{i}" for i in range(3000)]
    index = build_sharded_index(
        ids, x, tmp_path / "s", factory="IVF32,Flat", num_shards=2, engine="local", nprobe=1, target_recall=0.9
    )
    loaded = VideoIndex.load(tmp_path / "s")
    assert loaded.target_recall == 0.9 and loaded.measured_recall >= 0.9 and loaded.nprobe == index.nprobe > 1
