"""Training: recipes, a tiny end-to-end C2KD run, kill-and-resume, bad recipes."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import CORPUS
from datasets_builders.publish import write_rows_dataset
from mtvr import Retriever
from mtvr.errors import RecipeError
from mtvr.train import load_recipe, train
from mtvr.video.store import FeatureStore, StoreManifest

COLOURS = {"en": ["red", "blue", "green", "yellow"], "de": ["roter", "blauer", "grüner", "gelber"]}
SHAPES = {"en": ["circle", "square"], "de": ["kreis", "würfel"]}
SIZES = {"en": ["small", "big", "huge"], "de": ["kleiner", "großer", "riesiger"]}


def planted_data(tmp_path: Path, n_train=240, n_eval=48, t=4, d=12, seed=0):
    """Clips whose features encode (colour, shape); captions name them in en and de."""
    rng = np.random.default_rng(seed)
    proto = rng.standard_normal((4, 2, 3, d)).astype(np.float32)
    store = FeatureStore(tmp_path / "features", StoreManifest("planted", t, 32, "uniform", d))
    rows = {"train": [], "validation": []}
    ids, feats, nums = [], [], []
    for split, n in (("train", n_train), ("validation", n_eval)):
        for i in range(n):
            c, s, z = rng.integers(4), rng.integers(2), rng.integers(3)
            cid = f"{split}{i:03d}"
            ids.append(cid)
            feats.append(proto[c, s, z] + 0.3 * rng.standard_normal((t, d)).astype(np.float32))
            nums.append(int(rng.integers(2, t + 1)))
            caps = {l: f"a {SIZES[l][z]} {COLOURS[l][c]} {SHAPES[l][s]}" for l in ("en", "de")}
            rows[split].append({"clip_id": cid, "video_id": cid, "sentence_id": "0", "split": split, "start": None,
                                "end": None, "video_path": None, "captions": caps})
    store.write_shard(ids, ids, feats, nums)
    write_rows_dataset(tmp_path / "dataset", rows)
    return tmp_path / "dataset", tmp_path / "features"


def recipe_dict(tmp_path, encoder, loss="c2kd", epochs=3, **over):
    dataset, features = planted_data(tmp_path)
    r = {"name": "tiny", "seed": 0,
         "data": {"dataset": str(dataset), "features": str(features), "languages": ["en", "de"]},
         "teachers": [{"name": "en", "text_encoder": str(encoder), "embed_dim": 16, "epochs": 6, "lr": 3e-3}],
         "student": {"text_encoder": str(encoder), "embed_dim": 16, "aggregator": "mean"},
         "loss": {"name": loss, "options": {"balance": 0.5, "temperature": 0.1} if loss == "c2kd" else {}},
         "optim": {"lr": 3e-3, "batch_size": 16, "epochs": epochs},
         "output_dir": str(tmp_path / "run")}
    r.update(over)
    return r


def train_r1(retriever, train_dir, features):
    from mtvr.evaluation import evaluate_dataset

    return evaluate_dataset(retriever, str(train_dir), features, split="train", languages=["en", "de"]).mean()["R@1"]


def test_tiny_c2kd_run_learns_and_exports_a_retriever(tmp_path, tiny_encoder_dir):
    recipe = load_recipe(recipe_dict(tmp_path, tiny_encoder_dir, epochs=10))
    logs = []
    result = train(recipe, progress=False, log=logs.append)
    assert any("teacher 'en'" in l for l in logs)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    best = Retriever.from_pretrained(result.best_dir)
    results = json.loads((result.best_dir / "results.json").read_text())
    assert results["evaluations"][0]["languages"].keys() == {"en", "de"}
    assert (result.best_dir / "recipe.yaml").is_file()
    torch.manual_seed(0)
    untrained = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=12, embed_dim=16)
    dataset, features = tmp_path / "dataset", tmp_path / "features"
    trained_r1, untrained_r1 = train_r1(best, dataset, features), train_r1(untrained, dataset, features)
    chance = 100 / 240
    assert trained_r1 > 5 * max(untrained_r1, chance), (trained_r1, untrained_r1)


@pytest.mark.parametrize("loss,options,aggregator", [
    ("teachtext", {"weight": 1.0}, "mean"),
    ("teachclip", {"w_fine": 1.0}, "afa"),
    ("mckd", {}, "seqtransf"),
    ("contrastive", {}, "mean"),
])
def test_every_loss_trains(tmp_path, tiny_encoder_dir, loss, options, aggregator):
    r = recipe_dict(tmp_path, tiny_encoder_dir, loss=loss, epochs=1)
    r["loss"]["options"] = options
    r["student"]["aggregator"] = aggregator
    r["teachers"][0]["epochs"] = 1
    if loss == "contrastive":
        r["teachers"] = []
    result = train(load_recipe(r), progress=False, log=lambda s: None)
    assert np.isfinite(result.history[0]["loss"])


class Interrupt(Exception):
    pass


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path, tiny_encoder_dir):
    full = load_recipe(recipe_dict(tmp_path / "a", tiny_encoder_dir, epochs=3))
    train(full, progress=False, log=lambda s: None)

    cut = load_recipe(recipe_dict(tmp_path / "b", tiny_encoder_dir, epochs=3))

    def crash_in_epoch_2(line):
        if line.startswith("  epoch 2/3"):
            raise Interrupt  # dies after epoch 2's training, before its checkpoint is written

    with pytest.raises(Interrupt):
        train(cut, progress=False, log=crash_in_epoch_2)
    ckpts = sorted(p.name for p in (tmp_path / "b" / "run" / "checkpoints").iterdir())
    assert ckpts == ["epoch-0000"]
    logs = []
    train(cut, resume=True, progress=False, log=logs.append)
    assert any("resumed from" in l for l in logs)
    a = load_file(str(tmp_path / "a" / "run" / "checkpoints" / "epoch-0002" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "checkpoints" / "epoch-0002" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_recipes_fail_before_training(tmp_path, tiny_encoder_dir):
    r = recipe_dict(tmp_path, tiny_encoder_dir)
    with pytest.raises(RecipeError, match="unknown key 'learning_rate'"):
        load_recipe({**r, "optim": {**r["optim"], "learning_rate": 1}})
    with pytest.raises(RecipeError, match="unknown key 'colour'"):
        load_recipe({**r, "colour": "blue"})
    with pytest.raises(RecipeError, match="feature store .*nowhere not found"):
        train(load_recipe({**r, "data": {**r["data"], "features": str(tmp_path / "nowhere")}}), log=lambda s: None)
    with pytest.raises(RecipeError, match=r"languages \['sw'\] are absent"):
        train(load_recipe({**r, "data": {**r["data"], "languages": ["en", "sw"]}}), log=lambda s: None)
    with pytest.raises(RecipeError, match="distils from teachers"):
        load_recipe({**r, "teachers": []})
    # a teacher checkpoint with another frame-feature size than the store
    torch.manual_seed(0)
    other = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=99, embed_dim=16)
    other.save_pretrained(tmp_path / "teacher99")
    bad = {**r, "teachers": [{"name": "t", "checkpoint": str(tmp_path / "teacher99")}]}
    with pytest.raises(RecipeError, match="99-d frame features .* 12-d"):
        train(load_recipe(bad), log=lambda s: None)
