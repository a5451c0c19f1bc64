"""Filters evaluated on metadata columns (mtvr.index.columns): the same answers as the filter language's own
record-by-record semantics, kept right through adds, removes, replaces, failed mutations and save/load, and no
Python call per video and clause in a filtered search."""

from __future__ import annotations

import numpy as np
import pytest

from mtvr.errors import VideoIndexError
from mtvr.filters import Clause, parse_filter
from mtvr.index.columns import MetadataColumns

BIG = 2**53 + 1  # an int that a float64 cannot hold
VALUES = [
    "a",
    "b",
    "2024",
    "",
    0,
    1,
    2,
    2.0,
    2.5,
    -1,
    2024,
    True,
    False,
    BIG,
    BIG - 1,
    float(2**53),
    1e300,
    float("inf"),
    float("nan"),
    None,
    ["a"],
    {"x": 1},
]
FILTERS = [
    {"k": "a"},
    {"k": "2024"},
    {"k": 2024},
    {"k": 2},
    {"k": 2.0},
    {"k": 1},
    {"k": True},
    {"k": False},
    {"k": 0},
    {"k": BIG},
    {"k": 2**53},
    {"k": {"$in": ["a", 2, True, "zz"]}},
    {"k": {"$in": [BIG, 0]}},
    {"k": {"$in": []}},
    {"k": {"$gt": 1}},
    {"k": {"$gte": 2, "$lt": 2024}},
    {"k": {"$lte": 0}},
    {"k": {"$gt": 2**53}},
    {"k": {"$gte": BIG}},
    {"k": {"$lt": float("inf")}},
    {"k": {"$gt": -float("inf")}},
    {"k": {"$gt": 10**400}},
    {"k": "a", "j": {"$in": [1, "b"]}},
    {"k": {"$gte": 0}, "j": 2},
    {"missing": 1},
    {"k": ["a", "b"]},
]


def _random_metadata(rng, n):
    out = []
    for _ in range(n):
        meta = {}
        for key in ("k", "j"):
            if rng.random() < 0.85:
                meta[key] = VALUES[rng.integers(len(VALUES))]
        out.append(meta if meta or rng.random() < 0.5 else None)
    return out


@pytest.mark.parametrize("filter", FILTERS, ids=[str(f) for f in FILTERS])
def test_columns_select_what_the_filter_language_says_through_adds_and_removes(filter):
    rng = np.random.default_rng(0)
    wanted = parse_filter(filter)
    cols = MetadataColumns()
    meta = _random_metadata(rng, 600)
    records = dict(enumerate(meta))
    cols.add(range(600), meta)
    gone = rng.choice(600, 200, replace=False)
    cols.remove(gone)
    for i in gone.tolist():
        del records[i]
    later = _random_metadata(rng, 3000)  # grows past the first capacity
    cols.add(range(600, 3600), later)
    records.update(zip(range(600, 3600), later))
    mask = cols.mask(wanted)
    assert mask.dtype == bool and len(mask) >= 3600
    expected = sorted(i for i, m in records.items() if wanted.matches(m))
    assert np.flatnonzero(mask).tolist() == expected


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _meta(n, tag="old"):
    return [
        {"file": f"f{i % 50}.mp4", "start": float(i % 97), "lang": ["en", "es"][i % 2], "tag": tag} for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "IVF16,Flat"])
def test_a_filtered_search_evaluates_no_metadata_in_python(kind, monkeypatch):
    """The selection came from one Python ``Filter.matches`` per video and clause (1 s at 1 % and 13 s at 50 %
    selectivity over 100k videos); it is a mask over the metadata columns now."""
    from mtvr.index import VideoIndex

    n = 5000
    x = _unit(n, 16, 0)
    index = VideoIndex(16, kind)
    index.add([f"v{i}" for i in range(n)], x, _meta(n))
    calls = []
    real = Clause.matches

    def counted(self, metadata):
        calls.append(1)
        return real(self, metadata)

    monkeypatch.setattr(Clause, "matches", counted)
    for flt in ({"file": "f3.mp4"}, {"file": {"$in": [f"f{i}.mp4" for i in range(25)]}}, {"start": {"$lt": 48.5}}):
        hits = index.search(x[:3], k=10, filter=flt)
        assert all(len(row) == 10 for row in hits)
        assert all(parse_filter(flt).matches(h.metadata) for row in hits for h in row)
    monkeypatch.setattr(Clause, "matches", real)
    assert len(calls) == 3 * 3 * 10  # only the checks above, on the returned hits; none inside the searches


@pytest.mark.parametrize("kind", ["flat", "hnsw", "IVF16,Flat"])
def test_columns_follow_remove_replace_failed_adds_and_save_load(kind, tmp_path):
    from mtvr.index import VideoIndex

    n = 600
    x = _unit(n + 50, 16, 1)
    ids = [f"v{i}" for i in range(n)]
    index = VideoIndex(16, kind)
    index.add(ids, x[:n], _meta(n))
    q = x[:4]

    def found(flt, k=n):
        return sorted({h.video_id for row in index.search(q, k=k, filter=flt) for h in row})

    def truth(flt):
        wanted = parse_filter(flt)
        return sorted(v for v in index.ids if wanted.matches(index.metadata(v)))

    f3 = {"file": "f3.mp4"}
    assert found(f3) == truth(f3) and len(truth(f3)) == 12
    assert index.remove(["v3", "v53"]) == 2
    assert found(f3) == truth(f3) and "v3" not in truth(f3)
    # replace: new metadata for ten videos; their old values no longer match
    index.add(ids[100:110], x[n : n + 10], [{"file": "new.mp4", "tag": "new"}] * 10, replace=True)
    assert found({"file": "new.mp4"}) == sorted(ids[100:110])
    assert found({"tag": "old", "start": {"$gte": 100 % 97, "$lt": 110 % 97}}) == truth(
        {"tag": "old", "start": {"$gte": 3, "$lt": 13}}
    )
    before = {str(f): found(f) for f in (f3, {"tag": "new"}, {"lang": "es", "start": {"$lt": 20}})}
    with pytest.raises(VideoIndexError):  # a duplicate id: nothing changes
        index.add(["v0", "brand-new"], x[:2], [{"file": "f3.mp4"}, {"file": "f3.mp4"}])
    with pytest.raises(VideoIndexError):  # wrong embeddings: nothing changes
        index.add(["brand-new"], x[:1, :8], [{"file": "f3.mp4"}])
    assert "brand-new" not in index
    assert {str(f): found(f) for f in (f3, {"tag": "new"}, {"lang": "es", "start": {"$lt": 20}})} == before
    assert index.remove_where({"tag": "new", "file": "new.mp4"}) == 10
    assert found({"tag": "new"}) == [] and len(index) == n - 12
    index.save(tmp_path / "idx")
    loaded = VideoIndex.load(tmp_path / "idx")
    for flt in (f3, {"lang": "es", "start": {"$lt": 20}}, {"file": {"$in": ["f1.mp4", "f2.mp4"]}}):
        assert sorted({h.video_id for row in loaded.search(q, k=n, filter=flt) for h in row}) == found(flt)
    loaded.add(["late"], x[n + 20 : n + 21], [{"file": "f3.mp4"}])  # ids after a load continue the columns
    assert "late" in {h.video_id for h in loaded.search(q, k=n, filter=f3)[0]}
