"""Moment retrieval: metrics (R1@IoU, mIoU) on hand-computed cases; temporal NMS, merging and grouping."""

from __future__ import annotations

import math

import pytest

from mtvr.errors import VideoIndexError
from mtvr.index import SearchHit
from mtvr.metrics import moment_metrics, temporal_iou
from mtvr.moments import group_by_file, merge_adjacent, temporal_nms, to_moments


def test_temporal_iou_by_hand():
    assert temporal_iou((0, 4), (2, 6)) == pytest.approx(2 / 6)
    assert temporal_iou((0, 4), (0, 4)) == 1.0
    assert temporal_iou((0, 4), (4, 8)) == 0.0
    assert temporal_iou((1, 3), (0, 10)) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        temporal_iou((3, 1), (0, 1))
    with pytest.raises(ValueError):
        temporal_iou((0, math.nan), (0, 1))


def test_moment_metrics_by_hand():
    gt = [("a", 10, 20), ("a", 0, 10), [("b", 0, 4), ("b", 30, 34)], ("c", 5, 10)]
    preds = [
        [("a", 12, 20)],  # IoU 8/10 = 0.8: correct at 0.5 and 0.7
        [("a", 4, 12), ("a", 0, 10)],  # IoU 6/12 = 0.5 at rank 1 (correct at 0.5 only); exact at rank 2
        [("b", 31, 35)],  # best window (30, 34): IoU 3/5 = 0.6
        [("x", 5, 10)],  # wrong file: IoU 0
    ]
    m = moment_metrics(preds, gt, ks=(1, 2))
    assert m["R1@0.5"] == pytest.approx(75.0)
    assert m["R1@0.7"] == pytest.approx(25.0)
    assert m["R2@0.7"] == pytest.approx(50.0)
    assert m["R2@0.5"] == pytest.approx(75.0)
    assert m["mIoU"] == pytest.approx(100 * (0.8 + 0.5 + 0.6 + 0.0) / 4)
    assert moment_metrics([[]], [("a", 0, 1)]) == {"R1@0.5": 0.0, "R1@0.7": 0.0, "mIoU": 0.0}
    with pytest.raises(ValueError):
        moment_metrics([[]], [])
    with pytest.raises(ValueError):
        moment_metrics([[("a", 0, 1)]], [("a", 0, 1)], thresholds=(0,))


def hit(vid, score, file, start=None, end=None):
    meta = {"file": file}
    if start is not None:
        meta.update(start=start, end=end)
    return SearchHit(vid, score, 0, meta)


HITS = [
    hit("a@4", 0.9, "a.mp4", 4, 8),
    hit("a@2", 0.88, "a.mp4", 2, 6),
    hit("b@0", 0.85, "b.mp4", 0, 4),
    hit("a@6", 0.86, "a.mp4", 6, 10),
    hit("a@8", 0.5, "a.mp4", 8, 12),
    hit("a@20", 0.4, "a.mp4", 20, 24),
    hit("c", 0.3, "c.mp4"),
]


def test_nms_keeps_no_two_overlapping_moments_of_a_file():
    out = temporal_nms(HITS)
    assert [h.video_id for h in out] == ["a@4", "b@0", "a@8", "a@20", "c"]
    assert [h.rank for h in out] == [1, 2, 3, 4, 5]
    loose = temporal_nms(HITS, iou=0.4)  # [2, 6] vs [4, 8]: IoU 1/3 <= 0.4 is kept
    assert "a@2" in [h.video_id for h in loose]
    with pytest.raises(VideoIndexError):
        temporal_nms(HITS, iou=1.5)


def test_merge_joins_adjacent_windows_that_score_alike():
    out = merge_adjacent(HITS, margin=0.05)
    first = out[0]
    assert first.video_id == "a@4" and first.score == 0.9
    assert (first.metadata["start"], first.metadata["end"], first.metadata["windows"]) == (2, 10, 3)
    assert [h.video_id for h in out] == ["a@4", "b@0", "a@8", "a@20", "c"]  # a@8 scores 0.4 below: not merged
    assert "windows" not in out[2].metadata


def test_group_by_file_and_pipeline():
    assert [h.video_id for h in group_by_file(HITS)] == ["a@4", "b@0", "c"]
    assert [h.video_id for h in to_moments(HITS, group_by="file")] == ["a@4", "b@0", "c"]
    assert [h.video_id for h in to_moments(HITS, nms=False)] == [h.video_id for h in HITS]
    merged = to_moments(HITS, merge=True)
    assert merged[0].metadata["end"] == 10 and [h.video_id for h in merged][1] == "b@0"
    with pytest.raises(VideoIndexError):
        to_moments(HITS, group_by="channel")


def test_hits_without_times_are_never_suppressed():
    hits = [hit("a", 0.9, "a.mp4"), hit("a2", 0.85, "a.mp4"), hit("a@0", 0.8, "a.mp4", 0, 4)]
    assert [h.video_id for h in temporal_nms(hits)] == ["a", "a2", "a@0"]
    assert [h.video_id for h in group_by_file(hits)] == ["a"]


def test_metadata_with_unusable_times_is_a_hit_without_a_time_range():
    bad = [SearchHit("x", 0.9, 0, {"file": "a.mp4", "start": "intro", "end": 1.0}), hit("a@0", 0.8, "a.mp4", 0, 4)]
    bad.append(SearchHit("y", 0.7, 0, {"file": "a.mp4", "start": 3, "end": 1}))  # end before start
    assert [h.video_id for h in temporal_nms(bad)] == ["x", "a@0", "y"]
    assert [h.video_id for h in merge_adjacent(bad, margin=1.0)] == ["x", "a@0", "y"]
