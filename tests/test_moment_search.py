"""Moments through the Retriever: long files indexed as windows / shots, searched, removed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_segments import long_video

from mtvr import Retriever
from mtvr.config import FrameEncoderConfig
from mtvr.errors import SegmentError, VideoIndexError


@pytest.fixture()
def shape_retriever(tiny_encoder_dir):
    torch.manual_seed(0)
    return Retriever.from_text_encoder(
        str(tiny_encoder_dir),
        device="cpu",
        video_feature_dim=43,
        embed_dim=24,
        max_frames=4,
        frame_encoder=FrameEncoderConfig(name_or_path="mtvr/shape-stats", num_frames=4, image_size=32),
    )


def test_add_videos_indexes_windows_with_timestamps_and_remove_takes_them_all(shape_retriever, tmp_path):
    a = long_video(tmp_path / "a.mp4")
    b = long_video(tmp_path / "b.mp4", scene_frames=10)  # 5 s: two windows of 4 s
    r = shape_retriever
    out = r.add_videos([a, b], metadata={"a": {"year": 2024}}, segments="window", window=4, stride=2)
    assert out.errors == [] and len(out.video_ids) == 7 + 2 == len(r.index)
    meta = r.index._metadata
    assert meta["a#t=0.00,4.00"] == {
        "file": "a.mp4",
        "start": 0.0,
        "end": 4.0,
        "video": "a",
        "segment": "window",
        "year": 2024,
    }
    assert meta["b#t=1.00,5.00"]["end"] == 5.0 and "year" not in meta["b#t=1.00,5.00"]
    hits = r.search("a red circle", k=3)
    assert all({"file", "start", "end"} <= set(h.metadata) for h in hits)
    with pytest.raises(VideoIndexError, match="already has segments"):
        r.add_videos([a], segments="window", window=4, stride=2)
    out = r.add_videos([a], segments="shots", window=4, stride=2, shot_threshold=20, replace=True)
    assert len(r.index) == 5 + 2 and all(m["segment"] == "shots" for v, m in meta.items() if m["video"] == "a")
    assert r.remove(["a"]) == 5 and len(r.index) == 2
    with pytest.raises(VideoIndexError):
        r.remove(["no-such-file"])


def test_add_videos_bad_options_and_bad_files(shape_retriever, tmp_path):
    a = long_video(tmp_path / "a.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    r = shape_retriever
    for kw in ({"window": 0}, {"stride": -1}, {"window": 2, "stride": 3}, {"segments": "scenes"}):
        with pytest.raises(SegmentError):
            r.add_videos([a], **{"segments": "window", **kw})
    out = r.add_videos([a, tmp_path / "junk.mp4"], segments="window", window=4, stride=4)
    assert [e["clip"] for e in out.errors] == ["junk"] and len(out.video_ids) == 4
    assert np.allclose(np.linalg.norm(out.embeddings, axis=1), 1, atol=1e-5)


def test_feature_store_of_segments_is_resumable_and_keyed_by_segmenting(tmp_path):
    from mtvr.video.extract import ClipSpec, extract_features
    from mtvr.video.shape_encoder import ShapeStatsEncoder
    from mtvr.video.store import FeatureStore

    a = long_video(tmp_path / "a.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    clips = [ClipSpec("a", str(a)), ClipSpec("junk", str(tmp_path / "junk.mp4"))]
    enc = ShapeStatsEncoder(image_size=32)
    store_dir = tmp_path / "store"
    s = extract_features(
        clips, store_dir, enc, num_frames=4, workers=2, segments="window", window=4, stride=2, progress=False
    )
    assert (s.done, s.failed, s.skipped) == (1, 1, 0) and s.errors[0]["clip"] == "junk"
    store = FeatureStore(store_dir)
    assert sorted(store.clip_ids)[:2] == ["a#t=0.00,4.00", "a#t=10.00,14.00"] and len(store) == 7
    assert store.get("a#t=2.00,6.00")[0].shape == (4, 43) and store.manifest.window == 4.0
    again = extract_features(
        clips, store_dir, enc, num_frames=4, workers=0, segments="window", window=4, stride=2, progress=False
    )
    assert (again.done, again.skipped) == (0, 1)  # resumed: the file already stored is not decoded again
    with pytest.raises(ValueError, match="use another output folder"):
        extract_features(clips, store_dir, enc, num_frames=4, segments="window", window=6, stride=3, progress=False)
    with pytest.raises(ValueError, match="use another output folder"):
        extract_features(clips, store_dir, enc, num_frames=4, progress=False)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "IVF16,Flat", "sq8"])
@pytest.mark.parametrize("every", [2, 150])
def test_a_selective_filter_still_returns_k_hits_when_k_match(kind, every):
    from mtvr.index import VideoIndex

    rng = np.random.default_rng(0)
    n, d = 2000, 32
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(n)]
    meta = [{"file": f"f{i % every}.mp4", "n": i} for i in range(n)]
    index = VideoIndex(d, kind)
    index.add(ids, x, meta)
    q = x[:5] + 0.05 * rng.standard_normal((5, d)).astype(np.float32)
    for row, hits in zip(q, index.search(q, k=10, filter={"file": "f1.mp4"})):
        assert len(hits) == 10 and all(h.metadata["file"] == "f1.mp4" for h in hits)  # 1000 or 14 match
        if kind in ("flat", "hnsw"):  # exact over the selected ids (flat; HNSW below the threshold) or near it
            chosen = [i for i in range(n) if i % every == 1]
            truth = np.array(chosen)[np.argsort(-(x[chosen] @ row))[:10]]
            found = {int(h.video_id[1:]) for h in hits}
            assert len(found & set(truth.tolist())) >= (10 if kind == "flat" else 8)
    assert index.search(q[:1], k=10, filter={"file": "none.mp4"}) == [[]]
    assert index.search(q[:1], k=10, filter={"n": {"$gte": 10, "$lt": 13}})[0].__len__() == 3


def test_retriever_search_filters_groups_merges_and_never_overlaps(shape_retriever, tmp_path):
    from mtvr.errors import FilterError

    a = long_video(tmp_path / "a.mp4")
    b = long_video(tmp_path / "b.mp4")
    r = shape_retriever
    r.add_videos([a, b], metadata={"a": {"year": 2021}, "b": {"year": 2024}}, segments="window", window=4, stride=2)
    windows = r.search("a red circle", k=20, nms=False)
    assert len(windows) == 14  # every window, overlapping
    moments = r.search("a red circle", k=20)
    for f in ("a.mp4", "b.mp4"):  # temporal NMS: no two moments of a file overlap
        spans = sorted((h.metadata["start"], h.metadata["end"]) for h in moments if h.metadata["file"] == f)
        assert all(s2 >= e1 for (_, e1), (s2, _) in zip(spans, spans[1:]))
    assert len(moments) < len(windows) and [h.rank for h in moments] == list(range(1, len(moments) + 1))
    only_b = r.search("a red circle", k=3, filter={"file": "b.mp4"})
    assert len(only_b) == 3 and {h.metadata["file"] for h in only_b} == {"b.mp4"}
    assert {h.metadata["year"] for h in r.search("x", k=5, filter={"year": {"$gte": 2022}})} == {2024}
    assert r.search("x", k=5, filter={"no_such_key": 1}) == []
    assert r.search(["x", "y"], k=5, filter={"file": "zzz.mp4"}) == [[], []]
    with pytest.raises(FilterError, match="year"):
        r.search("x", k=5, filter={"year": {"$gte": "2020"}})
    grouped = r.search("a red circle", k=5, group_by="file")
    assert sorted(h.metadata["file"] for h in grouped) == ["a.mp4", "b.mp4"]
    merged = r.search("a red circle", k=20, merge=True, nms=True)
    assert all(h.metadata["end"] - h.metadata["start"] >= 4 for h in merged)
    wide = r.search("a red circle", k=20, merge=True, merge_margin=10.0)  # every neighbour scores within 10
    assert [(h.metadata["start"], h.metadata["end"], h.metadata["windows"]) for h in wide] == [(0, 15, 7), (0, 15, 7)]
    with pytest.raises(VideoIndexError):
        r.search("x", group_by="channel")


def test_cli_segments_filters_and_timestamps_reach_the_code(shape_retriever, tmp_path, capsys):
    import json

    from mtvr.cli import main

    long_video(tmp_path / "videos" / "a.mp4")
    long_video(tmp_path / "videos" / "b.mp4", scene_frames=10)
    shape_retriever.save_pretrained(tmp_path / "model")
    model, videos = str(tmp_path / "model"), str(tmp_path / "videos")
    # straight from the files: windows of 6 s every 3 s
    args = ["index", "--model", model, "--videos", videos, "--out", str(tmp_path / "ix"), "--segments", "window"]
    assert main([*args, "--window", "6", "--stride", "3", "--workers", "1"]) == 0
    assert "indexed 5 window segments" in capsys.readouterr().out  # a: 0-6 3-9 6-12 9-15, b: 0-5
    search = ["search", "a red circle", "--model", model, "--index", str(tmp_path / "ix"), "-k", "10", "--json"]
    assert main([*search, "--no-nms"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]
    assert len(hits) == 5 and {(h["start"], h["end"]) for h in hits if h["metadata"]["file"] == "a.mp4"} == {
        (0, 6),
        (3, 9),
        (6, 12),
        (9, 15),
    }
    assert main([*search, "--filter", "file=b.mp4"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]
    assert [(h["metadata"]["file"], h["start"], h["end"]) for h in hits] == [("b.mp4", 0, 5)]
    assert main([*search, "--group-by", "file"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]) == 2
    assert main([*search, "--filter", "file=zzz.mp4"]) == 0 and json.loads(capsys.readouterr().out) == [[]]
    assert main([*search, "--filter", "start>=abc"]) != 0  # a clear one-line error naming the key
    assert "'start'" in capsys.readouterr().err
    # through a feature store of shots, then an index of it: the same metadata
    store = str(tmp_path / "store")
    assert (
        main(
            [
                "extract-features",
                videos,
                "--out",
                store,
                "--encoder",
                "mtvr/shape-stats",
                "--num-frames",
                "4",
                "--segments",
                "shots",
                "--shot-threshold",
                "20",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["index", "--model", model, "--features", store, "--out", str(tmp_path / "ix2")]) == 0
    assert (
        main(
            [
                "search",
                "x",
                "--model",
                model,
                "--index",
                str(tmp_path / "ix2"),
                "-k",
                "20",
                "--no-nms",
                "--filter",
                "file=a.mp4",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    for span in ("0.00-3.00 s", "3.00-6.00 s", "12.00-15.00 s"):
        assert f"a.mp4 {span}" in text
    assert (
        main(["index", "--model", model, "--features", store, "--out", str(tmp_path / "ix3"), "--segments", "window"])
        == 2
    )


def test_demo_moment_stage_indexes_one_long_video_and_prints_timestamps(shape_retriever, tmp_path, capsys):
    from mtvr.demo.moments import moment_stage
    from mtvr.video.decode import probe
    from mtvr.video.render import write_video

    rng = np.random.default_rng(0)
    for i in range(3):  # three 2-s clips of 16 frames at 8 fps
        frames = np.zeros((16, 32, 32, 3), np.uint8) + rng.integers(0, 255, 3).astype(np.uint8)
        write_video(tmp_path / "videos" / f"c{i}.mp4", frames, fps=8)
    result = moment_stage(shape_retriever, tmp_path, ["c0", "c1", "c2"], lambda cid: ("de", f"ein kreis {cid}"), 0)
    long_path = tmp_path / "long_video" / "long_multi_shapes.mp4"
    assert probe(long_path)["duration"] == pytest.approx(6.0)
    assert result["windows"] == 5 and 2 <= len(result["moments"]) <= 3  # 0-2 1-3 2-4 3-5 4-6, no overlaps
    assert result["truth"]["end"] - result["truth"]["start"] == pytest.approx(2.0)
    out = capsys.readouterr().out
    assert "true moment:" in out and f"{result['moments'][0]['start']:.1f}-{result['moments'][0]['end']:.1f} s" in out


def test_a_file_corrupt_mid_way_keeps_its_decoded_windows_in_the_index(shape_retriever, tmp_path):
    path = long_video(tmp_path / "long.mp4", codec="mpeg4")
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 2 : n // 2 + n // 4] = np.random.default_rng(0).integers(0, 256, n // 4, dtype=np.uint8).tobytes()
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    out = shape_retriever.add_videos([tmp_path / "bad.mp4"], segments="window", window=4, stride=2)
    assert out.video_ids and out.errors  # the windows decoded before the failure are indexed, the rest reported
    assert len(out.video_ids) + len(out.errors) == 7 and len(shape_retriever.index) == len(out.video_ids)
    assert all({"file", "start", "end", "reason"} <= set(e) for e in out.errors)
    last_kept = max(shape_retriever.index.metadata(v)["end"] for v in out.video_ids)
    assert all(e["end"] > last_kept for e in out.errors)


def _new_threads(before, timeout=5.0):
    import threading
    import time

    deadline = time.monotonic() + timeout
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["break", "exception"])
def test_abandoning_segment_decoding_early_leaves_no_thread_alive(shape_retriever, tmp_path, how):
    """Decoding threads whose consumer stopped early (a break, an exception while encoding) used to block on
    their full queue forever; they are stopped and joined when the iteration ends."""
    import threading

    from mtvr.video.clips import ClipSpec
    from mtvr.video.segment_extract import SegmentOptions, encode_segments

    files = [long_video(tmp_path / f"{n}.mp4") for n in "abc"]  # 15 s each: 74 windows, more than a queue holds
    specs = [ClipSpec(f.stem, str(f)) for f in files]
    opts = SegmentOptions("window", window=0.4, stride=0.2)
    encoder = shape_retriever.frame_encoder
    before = set(threading.enumerate())
    if how == "break":
        for batch in encode_segments(specs, encoder, opts, num_frames=2, batch_size=4, workers=2):
            assert len(batch.ids) == 4
            break
    else:
        calls = []

        def fail_on_second(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt  # a user's Ctrl-C while segments are being embedded
            return real(*args, **kwargs)

        real = shape_retriever.encode_video_features
        shape_retriever.encode_video_features = fail_on_second
        with pytest.raises(KeyboardInterrupt):
            shape_retriever.add_videos(files, segments="window", window=0.4, stride=0.2, workers=2)
        assert len(calls) == 2 and (shape_retriever.index is None or len(shape_retriever.index) == 0)
    assert _new_threads(before) == []
