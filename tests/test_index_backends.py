"""One behavioural suite for every index backend: faiss (a folder) and Milvus (Milvus Lite, the real engine).

Each test runs once per backend; what differs between them (how an index is made durable, how it is
reopened) is in the ``Backend`` helpers below, never in the assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mtvr.errors import MtvrError, VideoIndexError
from mtvr.filters import parse_filter

pytest.importorskip("faiss")
ROOT = Path(__file__).resolve().parents[1]
INJECTIONS = ['x" or id != "', "x' or id != '", 'a\\" or true or "', "line\nbreak", "back\\slash", '"', "'"]


class Backend:
    """How a test makes, persists and reopens an index of one backend."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.tmp = name, tmp
        self.location = str(tmp / "faiss-index") if name == "faiss" else f"milvus-lite://{tmp}/videos.db#clips"

    def make(self, dim: int):
        from mtvr.index import VideoIndex

        return VideoIndex(dim) if self.name == "faiss" else VideoIndex.open(self.location, dim=dim)

    def persist(self, index) -> None:
        """Make ``index`` durable at ``self.location`` and let go of it."""
        if self.name == "faiss":
            index.save(self.location)
        else:
            index.save()
        index.close()


@pytest.fixture(params=["faiss", "milvus-lite"])
def backend(request, tmp_path):
    if request.param == "milvus-lite":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
    opened = []
    b = Backend(request.param, tmp_path)
    make = b.make

    def tracked(dim):
        index = make(dim)
        opened.append(index)
        return index

    b.make = tracked
    yield b
    for index in opened:
        index.close()


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _moments(n):
    return [
        {"file": f"f{i % 10}.mp4", "start": float(2 * i), "end": float(2 * i + 2), "lang": ["en", "es"][i % 2], "n": i}
        for i in range(n)
    ]


def test_search_equals_brute_force_with_metadata(backend):
    x, q = _unit(300, 32, 0), _unit(8, 32, 1)
    meta = _moments(300)
    index = backend.make(32)
    index.add([f"v{i}" for i in range(300)], x, meta)
    hits = index.search(q, k=5)
    sims = q @ x.T
    for qi, row in enumerate(hits):
        expected = np.argsort(-sims[qi])[:5]
        assert [h.video_id for h in row] == [f"v{i}" for i in expected]
        assert [h.rank for h in row] == [1, 2, 3, 4, 5]
        np.testing.assert_allclose([h.score for h in row], sims[qi, expected], rtol=1e-4)
        assert [h.metadata for h in row] == [meta[i] for i in expected]
    one = index.search(q[0], k=2)  # a single query row
    assert len(one) == 1 and len(one[0]) == 2
    assert len(index.search(q[:1], k=1000)[0]) == 300  # k beyond the size returns everything


def test_count_ids_contains_metadata(backend):
    x = _unit(20, 8, 2)
    index = backend.make(8)
    assert len(index) == 0
    meta = [{"file": "a.mp4", "start": 3, "tags": ["x", "y"], "nested": {"k": 1}}] + [None] * 19
    index.add([f"v{i}" for i in range(20)], x, meta)
    assert len(index) == index.count == 20
    assert sorted(index.ids) == sorted(f"v{i}" for i in range(20))
    assert "v3" in index and "nope" not in index
    got = index.metadata("v0")
    assert got == meta[0] and isinstance(got["start"], int)  # an int comes back as an int
    assert index.metadata("v1") == {}
    with pytest.raises(VideoIndexError, match="nope"):
        index.metadata("nope")


def test_add_is_all_or_nothing_and_checked(backend):
    x = _unit(10, 8, 3)
    index = backend.make(8)
    index.add(["a", "b"], x[:2])
    bad_calls = [
        (["c", "a"], x[2:4], None, "already in the index"),
        (["c", "c"], x[2:4], None, "twice"),
        (["c", "d"], x[2:5], None, "embeddings"),
        (["c"], np.full((1, 8), np.nan, np.float32), None, "NaN"),
        (["c"], x[2:3, :4], None, "shape"),
        ("c", x[2:3], None, "single string"),
        ([3], x[2:3], None, "not a string"),
        (["c", "d"], x[2:4], [{"ok": 1}, {"bad": object()}], "JSON"),
        (["c"], x[2:3], {"file": "a"}, "one dict"),
    ]
    for ids, emb, meta, message in bad_calls:
        with pytest.raises(VideoIndexError, match=message):
            index.add(ids, emb, meta)
    assert sorted(index.ids) == ["a", "b"]
    index.add(["a", "c"], x[5:7], [{"file": "new.mp4"}, None], replace=True)
    assert sorted(index.ids) == ["a", "b", "c"]
    assert index.metadata("a") == {"file": "new.mp4"}
    assert index.search(x[5], k=1)[0][0].video_id == "a"


def test_remove_by_ids_and_by_file(backend):
    x = _unit(60, 16, 4)
    index = backend.make(16)
    index.add([f"v{i}" for i in range(60)], x, _moments(60))
    with pytest.raises(VideoIndexError, match="not in the index"):
        index.remove(["v1", "missing"])
    with pytest.raises(VideoIndexError, match="twice"):
        index.remove(["v1", "v1"])
    assert len(index) == 60  # a failed remove removed nothing
    assert index.remove(["v1", "v2"]) == 2
    assert "v1" not in index and len(index) == 58
    assert index.remove_where({"file": "f3.mp4"}) == 6  # v3, v13, ..., v53: every moment of one file
    assert not any(h.metadata["file"] == "f3.mp4" for h in index.search(x[3], k=100)[0])
    assert index.remove_where({"file": "nothing.mp4"}) == 0
    assert len(index) == 52
    top = index.search(x[1], k=3)[0]
    assert "v1" not in [h.video_id for h in top] and len(top) == 3


FILTERS = [
    {"file": "f3.mp4"},
    {"file": {"$in": ["f1.mp4", "f2.mp4", "f-none.mp4"]}},
    {"start": {"$gte": 40.0, "$lt": 60}},
    {"end": {"$lte": 10}},
    {"lang": "es", "n": {"$gt": 20}},
    {"n": 4},
    {"n": 4.0},  # 4 == 4.0
    {"n": True},  # True is not 1
    {"flag": True},
    {"flag": 1},
    {"year": "2024"},  # the string, not the number
    {"year": 2024},
    {"year": {"$gte": 2000}},  # only numeric values are in a range
    {"missing": "x"},
    {"lang": {"$in": []}},
    {"file": 7},  # a number where files are usually strings
    {"start": "intro"},  # a string where starts are usually numbers
    {"tags": "a"},  # a list never equals a scalar
]


@pytest.mark.parametrize("filter", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_filters_select_exactly_what_the_filter_language_says(backend, filter):
    n = 40
    x, q = _unit(n, 16, 5), _unit(1, 16, 6)
    meta = _moments(n)
    meta[1].update(flag=True, year=2024)
    meta[2].update(flag=1, year="2024")
    meta[3].update(year=1999.5, tags=["a"])
    meta[4].update(file=7, start="intro")
    meta[5] = {"n": 1}
    meta[6] = None
    ids = [f"v{i}" for i in range(n)]
    index = backend.make(16)
    index.add(ids, x, meta)
    wanted = parse_filter(filter)
    expected = {v for v, m in zip(ids, meta) if wanted.matches(m)}
    found = index.search(q, k=n, filter=filter)[0]
    assert {h.video_id for h in found} == expected
    assert all(wanted.matches(h.metadata) for h in found)
    order = np.argsort(-(q @ x.T)[0])
    assert [h.video_id for h in found] == [ids[i] for i in order if ids[i] in expected]  # best first
    assert len(index.search(q, k=2, filter=filter)[0]) == min(2, len(expected))


def test_bad_filters_and_k_are_refused(backend):
    index = backend.make(8)
    with pytest.raises(VideoIndexError, match="empty"):
        index.search(_unit(1, 8, 0), k=1)
    index.add(["a"], _unit(1, 8, 0), [{"file": "a.mp4"}])
    for bad in ({"file": {"$regex": "a"}}, {"": 1}, {"start": {"$gt": "x"}}, ["file"], {"file": None}):
        with pytest.raises(MtvrError):
            index.search(_unit(1, 8, 0), k=1, filter=bad)
    for k in (0, -1, True, 1.5):
        with pytest.raises(VideoIndexError, match="positive"):
            index.search(_unit(1, 8, 0), k=k)
    with pytest.raises(VideoIndexError, match="shape"):
        index.search(_unit(1, 9, 0), k=1)


@pytest.mark.parametrize("evil", INJECTIONS)
def test_ids_and_values_are_data_never_query_syntax(backend, evil):
    x = _unit(4, 8, 7)
    index = backend.make(8)
    index.add(["a", "b", evil, "x"], x, [{"file": "a.mp4"}, {"file": "b.mp4"}, {"file": evil}, {"file": "x"}])
    assert evil in index and len(index) == 4
    assert index.metadata(evil) == {"file": evil}
    assert [h.video_id for h in index.search(x[2], k=4, filter={"file": evil})[0]] == [evil]
    assert index.search(x[0], k=4, filter={"file": evil + "!"})[0] == []
    assert index.search(x[0], k=4, filter={"lang": {"$in": [evil]}})[0] == []
    assert index.remove_where({"file": evil + "!"}) == 0
    with pytest.raises(VideoIndexError, match="not in the index"):
        index.remove([evil + "!"])
    assert len(index) == 4
    assert index.remove([evil]) == 1
    assert sorted(index.ids) == ["a", "b", "x"]


def test_searches_run_while_videos_are_added(backend):
    dim, batches, per = 16, 8, 50
    x = _unit(batches * per, dim, 8)
    index = backend.make(dim)
    index.add([f"v{i}" for i in range(per)], x[:per])
    errors: list[BaseException] = []
    seen_sizes: list[int] = []
    done = threading.Event()

    def searcher(seed):
        q = _unit(3, dim, seed)
        while not done.is_set():
            try:
                hits = index.search(q, k=per * batches)
                sizes = {len(row) for row in hits}
                assert len(sizes) == 1, sizes  # every query of one call saw the same index
                assert all(h.video_id.startswith("v") for row in hits for h in row)
                seen_sizes.append(sizes.pop())
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for b in range(1, batches):
            ids = [f"v{i}" for i in range(b * per, (b + 1) * per)]
            index.add(ids, x[b * per : (b + 1) * per], [{"batch": b}] * per)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert seen_sizes and all(s % per == 0 for s in seen_sizes)  # an add is seen whole or not at all
    assert len(index) == batches * per
    assert index.search(x[-1], k=1)[0][0].video_id == f"v{batches * per - 1}"


_WRITER = """
import sys, numpy as np
from mtvr.index import VideoIndex
sys.path.insert(0, {tests!r})
from test_index_backends import Backend, _unit, _moments
from pathlib import Path
b = Backend({name!r}, Path({tmp!r}))
index = b.make(16)
index.add([f"v{{i}}" for i in range(100)], _unit(100, 16, 9), _moments(100))
index.remove(["v7"])
b.persist(index)
"""

_READER = """
import json, numpy as np, sys
from mtvr.index import VideoIndex
sys.path.insert(0, {tests!r})
from test_index_backends import _unit
index = VideoIndex.open({location!r})
hits = index.search(_unit(100, 16, 9)[:3], k=3, filter={{"lang": "en"}})
print(json.dumps({{"n": len(index), "hits": [[[h.video_id, h.metadata] for h in row] for row in hits]}}))
index.close()
"""


def test_persists_across_process_restarts(backend):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = {"tests": str(ROOT / "tests"), "name": backend.name, "tmp": str(backend.tmp), "location": backend.location}
    subprocess.run([sys.executable, "-c", _WRITER.format(**args)], check=True, env=env, timeout=300)
    out = subprocess.run(
        [sys.executable, "-c", _READER.format(**args)], check=True, env=env, timeout=300, capture_output=True, text=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == 99
    x = _unit(100, 16, 9)
    meta = _moments(100)
    for qi, row in enumerate(got["hits"]):
        order = [i for i in np.argsort(-(x[qi] @ x.T)) if i != 7 and meta[i]["lang"] == "en"][:3]
        assert row == [[f"v{i}", meta[i]] for i in order]
