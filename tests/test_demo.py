"""The reduced demo end to end (fewer clips and epochs): every stage runs for real, offline."""

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from mtvr import Retriever


@pytest.mark.slow  # CI runs the same reduced demo from the installed wheel (`make wheel-check`)
@pytest.mark.skipif(shutil.which("apertium") is None, reason="the demo translates Spanish with apertium")
def test_reduced_demo_end_to_end(tmp_path, capsys):
    from mtvr.demo.pipeline import LANGUAGES, run_demo

    assert run_demo(tmp_path / "demo", small=True, seed=0) == 0
    out = capsys.readouterr().out
    for n in range(1, 8):
        assert f"[{n}/7]" in out
    assert "C2KD beats the baseline (test R@1) significantly in" in out and "premise: the English teacher" in out
    assert "mtvr serve " in out and "--index " in out and (tmp_path / "demo" / "index" / "index.faiss").is_file()
    assert "find a moment in one long video" in out and "true moment:" in out
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    chance = results["chance_R@1"]
    for lang in LANGUAGES:  # the reduced run still learns every language
        assert results["c2kd"][lang]["R@1"] >= 2 * chance
        assert results["baseline"][lang]["R@1"] > chance
        c = results["c2kd"][lang]
        assert c["ci_low"] <= c["R@1"] <= c["ci_high"]
        d = results["difference_c2kd_minus_baseline"][lang]
        assert d["ci_low"] <= d["diff"] <= d["ci_high"] and d["significant"] == (d["ci_low"] > 0 or d["ci_high"] < 0)
    hub = tmp_path / "demo" / "hub" / "mtvr" / "multi-shapes-c2kd"
    card = ModelCard.load(hub / "README.md")
    assert set(card.data.language) == set(LANGUAGES) and card.data.eval_results
    retriever = Retriever.from_pretrained(hub)
    assert retriever.config.frame_encoder.name_or_path == "mtvr/shape-stats"
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "data:image/png;base64," in report and report.count("<h3") == 3 and "95% CI" in report
    es = json.loads((tmp_path / "demo" / "dataset" / "build_report.json").read_text())["languages_report"]["es"]
    assert es["backend"] == "apertium" and es["chrf"] > 30


def test_demo_statistics():
    import numpy as np

    from mtvr.demo.stats import bootstrap_ci, chance_r1, paired_difference
    from mtvr.metrics import text_to_video_ranks

    keys = ["a", "b", "a", "c"]  # videos 0 and 2 both answer a query about "a"
    sims = np.array([[0.1, 0.5, 0.9, 0.2], [0.3, 0.2, 0.1, 0.4], [0.5, 0.5, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # query 0: best relevant 0.9 is top; query 1: b scores 0.2 under 0.3 and 0.4; ties count against the model
    assert text_to_video_ranks(sims, video_groups=keys).tolist() == [1, 3, 2, 4]
    assert abs(chance_r1(keys, keys) - 100 * (2 / 4 + 1 / 4 + 2 / 4 + 1 / 4) / 4) < 1e-9
    lo, hi = bootstrap_ci(np.r_[np.zeros(500), np.full(500, 100.0)], seed=0)
    assert 45 < lo < 50 < hi < 55
    same = paired_difference(np.full(100, 50.0), np.full(100, 50.0))
    assert same["diff"] == 0 and not same["significant"]
    better = paired_difference(np.zeros(200), np.r_[np.zeros(100), np.full(100, 100.0)])
    assert better["significant"] and better["ci_low"] > 0


def test_multi_shapes_scenes_and_simulated_mt_errors(tmp_path):
    """The builder writes each clip's scene (evaluation counts every clip of the scene as correct) and puts
    simulated MT errors in training captions only, never in English, validation or test."""
    from datasets_builders.multi_shapes import parse_caption
    from datasets_builders.shapes_grammar import scene_of
    from mtvr.dataset_publishing import build_dataset
    from mtvr.train.data import build_clipset, load_rows

    sizes = {"train": 24, "validation": 6, "test": 10}
    build_dataset(
        "multi_shapes",
        tmp_path / "ds",
        languages=["en", "de", "zh"],
        video_dir=str(tmp_path / "videos"),
        split_sizes=sizes,
        translation_noise=0.5,
        language_configs=False,
    )
    noisy = 0
    for split, n in sizes.items():
        rows = load_rows(str(tmp_path / "ds"), "all", split)
        assert len(rows) == n
        for r in rows:
            clip, template = parse_caption(r["captions"]["en"])
            assert r["scene"] == scene_of(clip)
            exact = r["translation"]["de"]["model"] == "mtvr/multi-shapes-lexicon"
            assert exact or split == "train"
            noisy += not exact
    assert 0 < noisy < 2 * sizes["train"]  # about half of the 48 training captions in de and zh

    class Store:  # the clip set needs features; the scenes come from the rows
        root = "mem"

        def __contains__(self, cid):
            return True

        def get_many(self, ids):
            import numpy as np

            return [(np.zeros((2, 3), np.float32), 2) for _ in ids]

    rows = load_rows(str(tmp_path / "ds"), "all", "test")
    clips = build_clipset(rows, Store(), ["en"])
    assert clips.video_groups == [r["scene"] for r in rows]
    assert build_clipset([{**r, "scene": None} for r in rows], Store(), ["en"]).video_groups is None


def test_training_summary_says_whether_early_stopping_ended_training():
    """The demo's summary reads the training pipeline's run object (its stop reason comes from the trainer's
    early-stopping rule, mtvr.train.trainer.stop_reason)."""
    from mtvr.demo.training import training_summary
    from mtvr.train import ModelRun, TrainingConfig
    from mtvr.train.trainer import stop_reason

    config = TrainingConfig(epochs=6, lr=1e-3, early_stopping_patience=2)

    def run(curve):
        best = 1 + max(range(len(curve)), key=lambda i: (curve[i], -i))
        history = [{"epoch": e + 1, "eval_mean_R@1": r} for e, r in enumerate(curve)]
        return ModelRun("m", Path("m"), best, stop_reason(history, config), history, config)

    stopped = training_summary(run([10, 20, 30, 29, 28]))  # patience ran out after epoch 3
    assert stopped["stopped_by"] == "early stopping" and stopped["best_epoch"] == 3
    capped = training_summary(run([10, 20, 30, 31, 32, 33]))  # still rising at the cap
    assert capped["stopped_by"] == "epoch cap" and capped["best_validation_mean_R@1"] == 33
    assert capped["epoch_cap"] == 6 and capped["validation_curve"] == [10, 20, 30, 31, 32, 33]
    assert training_summary(run([10, 20, 30, 31, 32, 31]))["stopped_by"] == "epoch cap"
