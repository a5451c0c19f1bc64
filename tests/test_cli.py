"""The mtvr command and the recipes in models/."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtvr.cli import main
from mtvr.train import load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted((ROOT / "models").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_in_models_is_valid(recipe):
    r = load_recipe(recipe)
    assert r.name and r.data.languages[0] == "en"


def test_help_lists_the_commands():
    out = subprocess.run(
        [sys.executable, "-m", "mtvr.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in ("index", "search", "evaluate", "extract-features", "build-dataset", "train", "push", "demo"):
        assert cmd in out


def test_index_search_evaluate_through_the_cli(tmp_path, tiny_encoder_dir, capsys):
    import torch
    from test_train import planted_data

    from mtvr import Retriever

    dataset, features = planted_data(tmp_path, n_train=20, n_eval=12)
    torch.manual_seed(0)
    model = Retriever.from_text_encoder(
        str(tiny_encoder_dir), video_feature_dim=12, embed_dim=16, languages=["en", "de"]
    )
    model.save_pretrained(tmp_path / "model")
    assert (
        main(
            ["index", "--model", str(tmp_path / "model"), "--features", str(features), "--out", str(tmp_path / "index")]
        )
        == 0
    )
    assert (
        main(
            [
                "search",
                "a small red circle",
                "ein kleiner roter kreis",
                "--model",
                str(tmp_path / "model"),
                "--index",
                str(tmp_path / "index"),
                "-k",
                "3",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    hits = json.loads(out[out.index("[") :])
    assert len(hits) == 2 and [h["rank"] for h in hits[0]] == [1, 2, 3]
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "model"),
                "--dataset",
                str(dataset),
                "--features",
                str(features),
                "--split",
                "validation",
                "--out",
                str(tmp_path / "results.json"),
            ]
        )
        == 0
    )
    assert "| de |" in capsys.readouterr().out
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["evaluations"][0]["languages"]) == {"en", "de"}


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["search", "hello", "--model", str(tmp_path / "missing"), "--index", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mtvr search: error:" in err and "does not exist" in err
    (tmp_path / "bad.yaml").write_text("name: x\nbogus_key: 1\n")
    assert main(["train", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown key 'bogus_key'" in capsys.readouterr().err
