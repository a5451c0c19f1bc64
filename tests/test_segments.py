"""Segmenting long videos: window / shot planning, and the single decode pass that samples every segment."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mtvr.errors import MtvrError, SegmentError, VideoDecodeError
from mtvr.video.decode import sample_frames
from mtvr.video.render import write_video
from mtvr.video.segment_decode import SegmentFailure, SegmentFrames, decode_segments
from mtvr.video.segments import (
    Segment,
    check_mode,
    clip_to_duration,
    plan_windows,
    shots_from_cuts,
    split_long_shots,
)

# five 3-second scenes at 10 fps whose backgrounds differ in hue and brightness: cuts at 3, 6, 9, 12 s
COLOURS = [(220, 40, 40), (20, 90, 20), (250, 250, 250), (10, 10, 120), (230, 200, 30)]


def long_video(path, codec="libx264", scene_frames=30, fps=10):
    frames = []
    for c in COLOURS:
        for j in range(scene_frames):
            f = np.zeros((64, 96, 3), np.uint8)
            f[:] = c
            f[10 + j % 20 : 30 + j % 20, 20:40] = 128
            frames.append(f)
    return write_video(path, frames, fps=fps, codec=codec)


def test_plan_windows_by_hand():
    assert plan_windows(10, 4, 2) == [Segment(0, 4), Segment(2, 6), Segment(4, 8), Segment(6, 10)]
    # the last window is moved back to end at the end of the file: full length, every second covered
    assert plan_windows(9, 4, 2) == [Segment(0, 4), Segment(2, 6), Segment(4, 8), Segment(5, 9)]
    assert plan_windows(8, 4, 4) == [Segment(0, 4), Segment(4, 8)]
    assert plan_windows(3, 4, 2) == [Segment(0, 3)]  # shorter than a window: the whole file
    assert plan_windows(4, 4, 1, offset=10) == [Segment(10, 14)]
    assert plan_windows(5, 4, 1, offset=10) == [Segment(10, 14), Segment(11, 15)]


@pytest.mark.parametrize(
    "window, stride, word",
    [
        (0, 1, "window"),
        (-4, 2, "window"),
        (4, 0, "stride"),
        (4, -1, "stride"),
        (2, 4, "stride"),
        (float("nan"), 1, "window"),
        ("4", 2, "window"),
        (4, True, "stride"),
    ],
)
def test_bad_window_or_stride(window, stride, word):
    with pytest.raises(SegmentError, match=word) as info:
        plan_windows(10, window, stride)
    assert isinstance(info.value, MtvrError) and isinstance(info.value, ValueError)


def test_modes_shots_and_clipping():
    with pytest.raises(SegmentError, match="scenes"):
        check_mode("scenes")
    shots = shots_from_cuts([6, 3, 0, 20, 3], 10)
    assert shots == [Segment(0, 3), Segment(3, 6), Segment(6, 10)]
    assert split_long_shots(shots, 3, 1.5) == [
        Segment(0, 3),
        Segment(3, 6),
        Segment(6, 9),
        Segment(7, 10),
    ]
    kept, rejected = clip_to_duration([Segment(1, 4), Segment(8, 30), Segment(12, 14)], 10)
    assert kept == [Segment(1, 4), Segment(8, 10)]
    assert [s for s, _ in rejected] == [Segment(12, 14)] and "past the end" in rejected[0][1]


def test_one_decode_gives_every_window_the_frames_of_a_separate_decode(tmp_path):
    path = long_video(tmp_path / "long.mp4")
    dec = decode_segments(path, "window", window=4, stride=2, num_frames=6, size=32)
    out = list(dec)
    assert [o.segment for o in out] == plan_windows(15, 4, 2)
    assert all(isinstance(o, SegmentFrames) and o.frames.shape == (6, 32, 32, 3) for o in out)
    # one pass: each of the 150 frames decoded once although the windows overlap twice
    assert dec.stats.frames_decoded == 150 and dec.stats.duration == pytest.approx(15.0)
    assert dec.stats.frames_converted == len({i for o in out for i in o.indices}) < 6 * len(out)
    for o in out:
        ref = sample_frames(path, 6, o.segment.start, o.segment.end, size=32, backend="pyav")
        assert o.indices == ref.indices
        np.testing.assert_array_equal(o.frames, ref.frames)


def test_shots_are_cut_where_the_scenes_change_and_long_shots_are_split(tmp_path):
    path = long_video(tmp_path / "long.mp4")
    dec = decode_segments(path, "shots", window=4, stride=2, num_frames=4, size=32)
    out = list(dec)
    assert dec.stats.cuts == pytest.approx([3.0, 6.0, 9.0, 12.0])
    assert [o.segment for o in out] == [Segment(0, 3), Segment(3, 6), Segment(6, 9), Segment(9, 12), Segment(12, 15)]
    for o in out:  # every frame of a shot shows that shot's background
        scene = int(o.segment.start // 3)
        assert np.abs(o.frames[:, 0, 0].astype(int) - COLOURS[scene]).max() < 30
    split = list(decode_segments(path, "shots", window=2, stride=1, num_frames=4, size=32))
    assert [o.segment for o in split][:2] == [Segment(0, 2), Segment(1, 3)]
    assert max(o.segment.duration for o in split) <= 2


def test_a_file_shorter_than_the_window_is_one_segment(tmp_path):
    path = long_video(tmp_path / "long.mp4")
    out = list(decode_segments(path, "window", window=60, stride=30, num_frames=4, size=32))
    assert [o.segment for o in out] == [Segment(0, 15)]
    assert [o.segment for o in decode_segments(path, "clip", num_frames=4, size=32)] == [Segment(0, 15)]


def test_corrupt_mid_way_keeps_the_decoded_segments_and_reports_the_rest(tmp_path):
    path = long_video(tmp_path / "long.mp4", codec="mpeg4")
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 2 : n // 2 + n // 4] = np.random.default_rng(0).integers(0, 256, n // 4, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    dec = decode_segments(bad, "window", window=4, stride=2, num_frames=4, size=32)
    out = list(dec)
    ok = [o for o in out if isinstance(o, SegmentFrames)]
    failed = [o for o in out if isinstance(o, SegmentFailure)]
    assert ok and failed and dec.stats.failed_at is not None
    assert [o.segment for o in out] == plan_windows(15, 4, 2)  # every window is either kept or reported
    assert all(o.segment.end <= dec.stats.failed_at + 1e-6 for o in ok)
    assert all("decoding stopped" in f.reason for f in failed)
    # shots: the shots closed before the failure are kept, the rest of the file reported as one failure
    out = list(decode_segments(bad, "shots", window=4, stride=2, num_frames=4, size=32))
    assert isinstance(out[-1], SegmentFailure) and out[-1].segment.end == pytest.approx(15.0)
    assert [o.segment for o in out[:2]] == [Segment(0, 3), Segment(3, 6)]


def test_a_truncated_stream_reports_the_windows_past_its_end(tmp_path):
    path = long_video(tmp_path / "long.mkv", codec="mpeg4")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: os.path.getsize(path) * 2 // 5])
    out = list(decode_segments(cut, "window", window=4, stride=2, num_frames=4, size=32))
    kinds = [type(o).__name__ for o in out]
    assert "SegmentFrames" in kinds and "SegmentFailure" in kinds
    assert kinds == sorted(kinds, key=lambda k: k != "SegmentFrames")  # kept first, then the reported rest


def test_undecodable_files_raise(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 100)
    for name in ("empty.mp4", "junk.mp4", "missing.mp4"):
        with pytest.raises(VideoDecodeError, match=name):
            list(decode_segments(tmp_path / name, "window"))
    with pytest.raises(SegmentError):
        decode_segments(tmp_path / "junk.mp4", "window", window=2, stride=3)


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))  # every thread of this process, FFmpeg's native ones included


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_closing_a_decoder_abandoned_mid_way_stops_ffmpegs_decoding_threads(tmp_path):
    path = long_video(tmp_path / "long.mp4")
    before = _tasks()
    dec = decode_segments(path, "window", window=0.4, stride=0.2, num_frames=2, size=32)
    held = iter(dec)  # a caller that keeps its iterator and stops reading
    assert isinstance(next(held), SegmentFrames)
    assert _tasks() > before or os.cpu_count() == 1  # FFmpeg decodes with its own threads while the pass is open
    dec.close()
    assert _tasks() == before
    assert list(held) == []  # the pass is over
    with decode_segments(path, "window", window=4, stride=2, num_frames=2, size=32) as dec2:
        for _ in dec2:
            break
    assert _tasks() == before
    assert len(list(decode_segments(path, "window", window=4, stride=2, num_frames=2, size=32))) == 7
