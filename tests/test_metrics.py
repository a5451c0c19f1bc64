"""Retrieval metrics against hand-computed values, ties included."""

import json

import numpy as np
import pytest

from mtvr.metrics import LanguageReport, retrieval_metrics, text_to_video_ranks, video_to_text_ranks


def test_hand_computed_square_matrix():
    sims = np.array(
        [
            [0.9, 0.1, 0.2],  # text0 -> video0: rank 1
            [0.8, 0.5, 0.7],  # text1 -> video1: 0.8 and 0.7 beat 0.5 -> rank 3
            [0.1, 0.95, 0.6],
        ]
    )  # text2 -> video2: 0.95 beats 0.6 -> rank 2
    np.testing.assert_array_equal(text_to_video_ranks(sims), [1, 3, 2])
    m = retrieval_metrics(sims)["t2v"]
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["R@5"] == 100.0 and m["MdR"] == 2.0 and m["MnR"] == 2.0
    # video -> text: video0 column [0.9, .8, .1] rank 1; video1 [.1, .5, .95] rank 2; video2 [.2, .7, .6] rank 2
    np.testing.assert_array_equal(video_to_text_ranks(sims), [1, 2, 2])


def test_ties_are_pessimistic():
    sims = np.zeros((4, 4))  # a constant model must not look perfect
    np.testing.assert_array_equal(text_to_video_ranks(sims), [4, 4, 4, 4])
    assert retrieval_metrics(sims)["t2v"]["R@1"] == 0.0
    sims = np.array([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(text_to_video_ranks(sims), [2, 2, 1])


def test_several_captions_per_video():
    # 4 captions for 2 videos: captions 0,1 -> video 0; captions 2,3 -> video 1
    sims = np.array([[0.2, 0.3], [0.6, 0.1], [0.9, 0.4], [0.1, 0.8]])
    gt = [0, 0, 1, 1]
    np.testing.assert_array_equal(text_to_video_ranks(sims, gt), [2, 1, 2, 1])
    # video 0: best own caption 0.6; other captions >= 0.6: caption 2 (0.9) -> rank 2
    # video 1: best own caption 0.8; other captions >= 0.8: none -> rank 1
    np.testing.assert_array_equal(video_to_text_ranks(sims, gt), [2, 1])


def test_video_groups_count_every_clip_of_the_scene():
    # videos 0 and 2 show the same scene "a": a caption of either is answered by both
    groups = ["a", "b", "a"]
    sims = np.array([[0.1, 0.5, 0.9], [0.3, 0.2, 0.4], [0.6, 0.6, 0.1]])
    # text0 (video 0): video 2 (0.9) is relevant and on top -> 1; text1: 0.3 and 0.4 beat 0.2 -> 3;
    # text2 (video 2): best relevant 0.6 (video 0) ties with non-relevant video 1 -> pessimistic 2
    np.testing.assert_array_equal(text_to_video_ranks(sims, video_groups=groups), [1, 3, 2])
    # video -> text: video 0 column [.1, .3, .6]: captions 0 and 2 are relevant, best .6 -> 1;
    # video 1 [.5, .2, .6]: best own .2 under .5 and .6 -> 3; video 2 [.9, .4, .1]: best relevant .9 -> 1
    np.testing.assert_array_equal(video_to_text_ranks(sims, video_groups=groups), [1, 3, 1])
    # distinct groups are the standard protocol, with several captions per video too
    sims = np.random.default_rng(0).normal(size=(6, 3))
    gt = [0, 0, 1, 1, 2, 2]
    for f in (text_to_video_ranks, video_to_text_ranks):
        np.testing.assert_array_equal(f(sims, gt, video_groups=["x", "y", "z"]), f(sims, gt))
    with pytest.raises(ValueError, match="video_groups has 2 entries for 3 videos"):
        retrieval_metrics(sims, gt, ["x", "y"])


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="outside"):
        text_to_video_ranks(np.zeros((2, 2)), [0, 5])
    with pytest.raises(ValueError, match="entries"):
        text_to_video_ranks(np.zeros((2, 2)), [0])


def test_language_report_markdown_and_json():
    r = LanguageReport(name="demo")
    r.add("en", retrieval_metrics(np.eye(3)))
    r.add("de", retrieval_metrics(np.zeros((3, 3))))
    assert r.mean()["R@1"] == pytest.approx(50.0)
    md = r.to_markdown()
    assert "| en | 100.0 | 100.0 | 100.0 | 1.0 | 1.0 |" in md and "**mean**" in md
    back = LanguageReport.from_dict(json.loads(r.to_json()))
    assert back.results == r.results
