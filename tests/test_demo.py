"""The reduced demo end to end (fewer clips and epochs): every stage runs for real, offline."""

import json
import shutil

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
    assert "C2KD beats the baseline (test R@1) in" in out
    assert "mtvr serve " in out and "--index " in out and (tmp_path / "demo" / "index" / "index.faiss").is_file()
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    chance = results["chance_R@1"]
    for lang in LANGUAGES:  # the reduced run still learns every language
        assert results["c2kd"][lang]["t2v"]["R@1"] >= 2 * chance
        assert results["baseline"][lang]["t2v"]["R@1"] > chance
    hub = tmp_path / "demo" / "hub" / "mtvr" / "multi-shapes-c2kd"
    card = ModelCard.load(hub / "README.md")
    assert set(card.data.language) == set(LANGUAGES) and card.data.eval_results
    retriever = Retriever.from_pretrained(hub)
    assert retriever.config.frame_encoder.name_or_path == "mtvr/shape-stats"
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "data:image/png;base64," in report and report.count("<h3>") == 3
    es = json.loads((tmp_path / "demo" / "dataset" / "build_report.json").read_text())["languages_report"]["es"]
    assert es["backend"] == "apertium" and es["chrf"] > 30
