"""Training: recipes, a tiny end-to-end C2KD run, kill-and-resume, bad recipes."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import planted_data, recipe_dict  # noqa: F401
from mtvr import Retriever
from mtvr.errors import RecipeError
from mtvr.train import load_recipe, train


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


@pytest.mark.parametrize(
    "loss,options,aggregator",
    [
        ("teachtext", {"weight": 1.0}, "mean"),
        ("teachclip", {"w_fine": 1.0}, "afa"),
        ("mckd", {}, "seqtransf"),
        ("contrastive", {}, "mean"),
    ],
)
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
    assert ckpts == ["best.safetensors", "epoch-0000"]  # the best epoch's weights, kept until the one export
    assert not (tmp_path / "b" / "run" / "best").exists()
    logs = []
    train(cut, resume=True, progress=False, log=logs.append)
    assert any("resumed from" in l for l in logs)
    a = load_file(str(tmp_path / "a" / "run" / "checkpoints" / "epoch-0002" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "checkpoints" / "epoch-0002" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ea = load_file(str(tmp_path / "a" / "run" / "best" / "model.safetensors"))
    eb = load_file(str(tmp_path / "b" / "run" / "best" / "model.safetensors"))
    assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)


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


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("optim", "lr", "fast", r"optim\.lr: Input should be a valid number.*'fast'"),
        ("optim", "epochs", "three", r"optim\.epochs: Input should be a valid integer.*'three'"),
        ("optim", "epochs", 2.5, r"optim\.epochs: Input should be a valid integer"),
        ("optim", "batch_size", 1, r"optim\.batch_size: Input should be greater than or equal to 2"),
        ("optim", "lr_decay", 0, r"optim\.lr_decay: Input should be greater than 0"),
        (None, "mixed_precision", "fp8", r"mixed_precision: Input should be 'no', 'fp16' or 'bf16'"),
        ("student", "aggregator", "max", r"student\.aggregator: Value error, unknown aggregator 'max'"),
        (None, "seed", -1, r"seed: Input should be greater than or equal to 0"),
    ],
)
def test_recipe_types_and_ranges_are_checked_with_the_file_and_key(
    tmp_path, tiny_encoder_dir, section, key, value, message
):
    import yaml

    r = recipe_dict(tmp_path, tiny_encoder_dir)
    if section:
        r[section] = {**r[section], key: value}
    else:
        r[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(r))
    with pytest.raises(RecipeError, match=message) as err:
        load_recipe(path)
    assert str(path) in str(err.value)
    # --set overrides are validated the same way
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(recipe_dict(tmp_path / "g", tiny_encoder_dir)))
    with pytest.raises(RecipeError, match=message):
        load_recipe(good, overrides={f"{section}.{key}" if section else key: value})


def test_loss_options_are_type_checked_before_training(tmp_path, tiny_encoder_dir):
    r = recipe_dict(tmp_path, tiny_encoder_dir)
    with pytest.raises(RecipeError, match=r"loss\.options: bad options for loss 'c2kd': balance: .*'high'"):
        load_recipe({**r, "loss": {"name": "c2kd", "options": {"balance": "high"}}})
    with pytest.raises(RecipeError, match=r"beta: Extra inputs are not permitted"):
        load_recipe({**r, "loss": {"name": "c2kd", "options": {"beta": 0.5}}})
    with pytest.raises(RecipeError, match=r"balance must be in \[0, 1\]"):
        load_recipe({**r, "loss": {"name": "c2kd", "options": {"balance": 2}}})


def test_every_shipped_recipe_validates():
    recipes = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.yaml"))
    assert len(recipes) >= 6
    for path in recipes:
        load_recipe(path)


def test_early_stopping_stops_on_validation(tmp_path, tiny_encoder_dir):
    r = recipe_dict(tmp_path, tiny_encoder_dir, epochs=30)
    r["teachers"][0]["epochs"] = 1
    r["optim"]["early_stopping_patience"] = 1
    r["optim"]["lr"] = 1e-6  # nothing improves after the first epoch
    logs = []
    result = train(load_recipe(r), progress=False, log=logs.append)
    assert any("early stopping" in l for l in logs)
    assert len(result.history) < 30 and result.stop_reason == "early stopping"


def test_early_stopping_min_delta_ignores_small_gains(tmp_path, tiny_encoder_dir):
    """An improvement smaller than min_delta does not reset the patience (here none can reach 100 points):
    training stops after patience + 1 epochs, and the best checkpoint still follows every improvement."""
    r = recipe_dict(tmp_path, tiny_encoder_dir, epochs=30)
    r["teachers"][0]["epochs"] = 1
    r["optim"]["early_stopping_patience"] = 2
    r["optim"]["early_stopping_min_delta"] = 100.0
    logs = []
    result = train(load_recipe(r), progress=False, log=logs.append)
    assert len(result.history) == 3
    assert any("has not improved by more than 100 for 2 epochs" in l for l in logs)
    curve = [h["eval_mean_R@1"] for h in result.history]
    assert result.best_epoch == 1 + curve.index(max(curve))
    logs.clear()  # resuming a run that stopped early trains nothing more
    again = train(load_recipe(r), resume=True, progress=False, log=logs.append)
    assert again.history == result.history and again.best_epoch == result.best_epoch
    assert result.stop_reason == again.stop_reason == "early stopping"
    assert any("training had stopped early after epoch 3" in l for l in logs)


def test_the_pipeline_exports_each_model_once_and_reports_its_runs(tmp_path, tiny_encoder_dir, monkeypatch):
    """Regression: ``train()`` used to write the student folder at every validation gain and once more with its
    results (the teacher's too). Now each model folder is written once, from the best epoch, and the result
    object says where the teachers and the student are, their best epochs, validation curves and stop reasons."""
    writes = []
    real_save = Retriever.save_pretrained

    def counting_save(self, folder, extra_files=None):  # a spy: records the folder and really writes it
        writes.append(Path(folder))
        return real_save(self, folder, extra_files=extra_files)

    monkeypatch.setattr(Retriever, "save_pretrained", counting_save)
    r = recipe_dict(tmp_path, tiny_encoder_dir, epochs=4)
    r["teachers"][0]["epochs"] = 4
    result = train(load_recipe(r), progress=False, log=lambda s: None)
    student_dir, teacher_dir = tmp_path / "run" / "best", tmp_path / "run" / "teachers" / "en" / "best"
    curve = result.validation_curve
    assert len(set(curve)) > 1  # the validation curve moved: the old code wrote the folder more than once
    assert writes.count(student_dir) == 1 and writes.count(teacher_dir) == 1, writes
    assert result.export_dir == result.best_dir == student_dir
    assert result.best_epoch == 1 + curve.index(max(curve)) and result.stop_reason == "epoch cap"
    teacher = result.teachers["en"]
    assert teacher.folder == teacher_dir and teacher.epochs_trained == 4 and teacher.config.epochs == 4
    assert teacher.best_validation_r1 == max(teacher.validation_curve)
    saved = json.loads((student_dir / "results.json").read_text())
    assert saved["best_epoch"] == result.best_epoch and saved["stop_reason"] == "epoch cap"
    assert json.loads((teacher_dir / "results.json").read_text())["best_epoch"] == teacher.best_epoch
    # the exported weights are the best epoch's: its validation R@1 is what the exported folder scores
    assert saved["evaluations"][0]["mean"]["t2v"]["R@1"] == pytest.approx(max(curve), abs=1e-6)


def test_a_teacher_trains_with_its_own_config_and_says_what_it_inherits(tmp_path, tiny_encoder_dir):
    r = recipe_dict(tmp_path, tiny_encoder_dir, epochs=1)
    r["teachers"][0].update({"epochs": 2, "optim": {"batch_size": 8, "lr_decay": 0.5, "early_stopping_patience": 3}})
    r["optim"].update({"batch_size": 16, "lr_decay": 0.9, "weight_decay": 0.01})
    logs = []
    result = train(load_recipe(r), progress=False, log=logs.append)
    teacher = result.teachers["en"]
    assert (teacher.config.batch_size, teacher.config.lr_decay, teacher.config.early_stopping_patience) == (8, 0.5, 3)
    assert teacher.config.weight_decay == 0.01 and "weight_decay" in teacher.config.inherited
    assert "batch_size" not in teacher.config.inherited
    assert (result.student.config.batch_size, result.student.config.early_stopping_patience) == (16, None)
    line = next(l for l in logs if l.startswith("teacher 'en'"))
    assert "batch 8" in line and "decay 0.5" in line and "from the recipe's optim: weight_decay" in line
    saved = json.loads((teacher.folder / "results.json").read_text())["training"]
    assert saved["batch_size"] == 8 and saved["lr_decay"] == 0.5 and saved["weight_decay"] == 0.01
    # the teacher's own batch size really decides its steps: 240 clips / 8 = 30 steps, not 240 / 16 = 15
    assert teacher.config.batch_size != result.student.config.batch_size


def test_resume_accepts_checkpoints_written_before_teachers_had_their_own_optim(tmp_path, tiny_encoder_dir):
    from mtvr.train.trainer import recipe_changes

    new = load_recipe(recipe_dict(tmp_path, tiny_encoder_dir)).to_dict()
    old = json.loads(json.dumps(new))
    del old["teachers"][0]["optim"]  # a recipe of an older mtvr
    assert recipe_changes(old, new) == []
    changed = json.loads(json.dumps(new))
    changed["teachers"][0]["optim"]["batch_size"] = 8
    assert recipe_changes(new, changed) == ["teachers.0.optim.batch_size: None -> 8"]


def test_the_trainer_gives_a_loss_what_its_registration_asks_for(tmp_path, tiny_encoder_dir):
    """TeachCLIP is registered as needing the teachers' frame embeddings, C2KD as needing teachers: the trainer
    refuses to start without them instead of training on missing inputs."""
    from mtvr.distill import build_loss
    from mtvr.modeling import VideoTextModel
    from mtvr.train import Trainer, TrainingConfig
    from mtvr.train.trainer import TeacherCache

    model, tok = VideoTextModel.from_text_encoder_with_tokenizer(
        str(tiny_encoder_dir), video_feature_dim=12, embed_dim=16, aggregator="afa", max_frames=4
    )
    config = TrainingConfig(epochs=1, lr=1e-3, batch_size=4)
    cache = TeacherCache([[torch.zeros(1, 16)]], torch.zeros(1, 1, 16), None)
    with pytest.raises(RecipeError, match="frame embeddings"):
        Trainer(model, tok, build_loss("teachclip"), ["en"], tmp_path, config, teachers=cache)
    with pytest.raises(RecipeError, match="distils from teachers"):
        Trainer(model, tok, build_loss("c2kd"), ["en"], tmp_path, config)
    assert not Trainer(model, tok, build_loss("c2kd"), ["en"], tmp_path, config, teachers=cache).needs_frames


def test_the_frozen_tower_cache_is_filled_in_the_same_order_in_every_process():
    """Two runs of one seed differed from the first epoch (loss 1.7498 vs 1.7499; the teacher then stopped at
    another epoch): the distinct captions were a set sorted by length only, so equal-length captions came in the
    order of the process's string hash seed, the batches padded differently and the tower's outputs moved in the
    last bits. The order must be the same under any PYTHONHASHSEED."""
    import subprocess
    import sys

    code = (
        "import json, types\n"
        "from mtvr.train.pipeline import distinct_captions\n"
        "caps = {'en': [['a red circle', 'a blue square'], ['a red circle', 'green dots']],"
        " 'de': [['ein roter Kreis', 'ein blaues Viereck'], ['gruene Punkte', 'ein roter Kreis']],"
        " 'xx': [[f'clip {c}' for c in 'abcdefgh']]}\n"
        "print(json.dumps(distinct_captions(types.SimpleNamespace(captions=caps), ['en', 'de', 'xx'])))\n"
    )
    orders = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in range(4)
    }
    assert len(orders) == 1, orders
    texts = json.loads(orders.pop())
    assert texts == sorted(set(texts), key=lambda t: (len(t), t)) and len(texts) == 14
