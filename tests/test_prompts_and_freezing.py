"""Text towers encode as their authors trained them (prompts), and can be partly or wholly frozen
(the frozen tower's outputs are cached); teachers take their own encoder learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import build_tiny_sentence_transformer, recipe_dict
from mtvr import Retriever
from mtvr.tokenization import tokenize


@pytest.fixture()
def prompted_st(tmp_path, tiny_encoder_dir):
    folder = build_tiny_sentence_transformer(tmp_path / "st", tiny_encoder_dir)
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "passage": "passage: "}})
    )
    return folder


def test_the_authors_query_prompt_is_recorded_applied_and_saved(tmp_path, prompted_st):
    torch.manual_seed(0)
    r = Retriever.from_text_encoder(
        str(prompted_st), text_tower="sentence-transformers", video_feature_dim=8, embed_dim=8
    )
    assert r.config.text_prompt == "query: "
    texts = ["a red circle", "a blue square"]
    # what the retriever computes equals the tower on the prompted texts, and differs from the bare texts
    with torch.inference_mode():
        prompted = r.model.encode_text(**tokenize(r.tokenizer, [f"query: {t}" for t in texts], 64, "cpu"))
        bare = r.model.encode_text(**tokenize(r.tokenizer, texts, 64, "cpu"))
    np.testing.assert_allclose(r.encode_text(texts), prompted.numpy(), atol=1e-6)
    assert not np.allclose(r.encode_text(texts), bare.numpy(), atol=1e-3)
    r.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["text_prompt"] == "query: "
    again = Retriever.from_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(again.encode_text(texts), r.encode_text(texts), atol=1e-6)


def test_an_explicit_prompt_overrides_and_a_tower_without_prompts_gets_none(tmp_path, prompted_st, tiny_encoder_dir):
    r = Retriever.from_text_encoder(
        str(prompted_st), text_tower="sentence-transformers", video_feature_dim=8, embed_dim=8, text_prompt=""
    )
    assert r.config.text_prompt == ""
    assert Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=8, embed_dim=8).config.text_prompt == ""


def test_frozen_tower_outputs_are_cached_and_equal_the_tower(tiny_encoder_dir):
    torch.manual_seed(0)
    r = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=8, embed_dim=8)
    texts = ["a red circle", "a blue square moving left", "a green triangle"]
    before = r.encode_text(texts)
    r.model.freeze_text_layers(0)
    assert not any(p.requires_grad for p in r.model.text_encoder.parameters())
    assert all(p.requires_grad for p in r.model.text_projection.parameters())
    r.model.train()  # cached outputs are computed without dropout whatever the mode
    enc = tokenize(r.tokenizer, texts, 64, "cpu")
    first = r.model.encode_text(**enc)
    assert len(r.model._text_cache) == 3
    # another batch (other padding, other order) hits the same cache entries
    enc2 = tokenize(r.tokenizer, [texts[2], texts[0]], 64, "cpu")
    second = r.model.encode_text(**enc2)
    assert len(r.model._text_cache) == 3
    torch.testing.assert_close(second, first[[2, 0]])
    r.model.eval()
    np.testing.assert_allclose(r.encode_text(texts), before, atol=1e-5)
    # gradients reach the projection through cached outputs
    first.sum().backward()
    assert r.model.text_projection.weight.grad is not None


def test_freezing_lower_layers_keeps_the_top_ones_trainable(tiny_encoder_dir):
    from mtvr.text_towers import transformer_layers

    r = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=8, embed_dim=8)
    hf, layers = transformer_layers("transformers", r.model.text_encoder)
    r.model.freeze_text_layers(1)
    assert [any(p.requires_grad for p in layer.parameters()) for layer in layers] == [False] * (len(layers) - 1) + [
        True
    ]
    assert not any(p.requires_grad for p in hf.embeddings.parameters())
    assert r.model._text_cache is None
    with pytest.raises(Exception, match="trainable_layers"):
        r.model.freeze_text_layers(len(layers) + 1)


def test_teacher_encoder_lr_and_frozen_layers_reach_the_training(tmp_path, tiny_encoder_dir, monkeypatch):
    from mtvr.train import load_recipe, train
    from mtvr.train import trainer as trainer_mod

    seen = []
    real_init = trainer_mod.Trainer.__init__

    def spy(self, model, *args, **kwargs):
        real_init(self, model, *args, **kwargs)
        seen.append(
            (
                sorted(g["lr"] for g in self.raw_optimizer.param_groups),
                sum(p.requires_grad for p in model.text_encoder.parameters()),
                model._text_cache is not None,
            )
        )

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", spy)
    r = recipe_dict(tmp_path, tiny_encoder_dir, epochs=1)
    r["teachers"][0].update({"lr": 3e-3, "text_encoder_lr": 1e-5, "epochs": 1})
    r["student"]["trainable_layers"] = 0
    path = tmp_path / "r.yaml"
    import yaml

    path.write_text(yaml.safe_dump(r))
    train(load_recipe(path), progress=False)
    (teacher_lrs, teacher_trainable, teacher_cached), (student_lrs, student_trainable, student_cached) = seen
    assert teacher_lrs == [1e-5, 3e-3] and teacher_trainable > 0 and not teacher_cached
    assert student_lrs == [3e-3] and student_trainable == 0 and student_cached


def test_towers_frozen_as_loaded_share_one_cache_per_key(tiny_encoder_dir):
    a = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=8, embed_dim=8)
    b = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=8, embed_dim=8)
    a.model.freeze_text_layers(0, shared_cache_key="tiny-shared-test")
    b.model.freeze_text_layers(0, shared_cache_key="tiny-shared-test")
    a.encode_text(["a red circle"])
    assert b.model._text_cache is a.model._text_cache and len(b.model._text_cache) == 1
    c = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=8, embed_dim=8)
    c.model.freeze_text_layers(0)
    assert c.model._text_cache == {}


def test_text_centering_mean_comes_from_the_training_captions_and_is_saved(tmp_path, tiny_encoder_dir):
    """student.text_centering: the trainer sets the mean tower output over every training caption of the
    student's languages; encode_text subtracts it before the projection; the saved folder keeps it; a checkpoint
    leaves the frozen tower out (it is rebuilt from the pretrained checkpoint)."""
    import yaml
    from safetensors.torch import load_file

    from mtvr.clipset import load_clipset
    from mtvr.train import load_recipe, train

    r = recipe_dict(tmp_path, tiny_encoder_dir, loss="contrastive", epochs=1, teachers=[])
    r["student"].update({"trainable_layers": 0, "text_centering": True})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    result = train(load_recipe(path), progress=False)
    saved = Retriever.from_pretrained(result.best_dir)
    assert saved.config.text_centering
    # the expected mean, computed independently from the pretrained tower and the training captions
    fresh = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=8, embed_dim=8)
    d = r["data"]
    train_set = load_clipset(d["dataset"], "all", "train", d["features"], ["en", "de"])
    texts = sorted({t for lang in ("en", "de") for caps in train_set.captions[lang] for t in caps})
    with torch.no_grad():
        pooled = fresh.model.text_tower_outputs(**tokenize(fresh.tokenizer, texts, 64, "cpu"))
    torch.testing.assert_close(saved.model.text_feature_mean, pooled.mean(0), atol=1e-5, rtol=1e-4)
    assert saved.model.text_feature_mean.abs().sum() > 0
    # encode_text = projection of the centred tower output
    enc = tokenize(saved.tokenizer, ["a red circle"], 64, "cpu")
    with torch.no_grad():
        raw = saved.model.text_tower_outputs(**enc)
        expect = torch.nn.functional.normalize(saved.model.text_projection(raw - saved.model.text_feature_mean), dim=-1)
        torch.testing.assert_close(saved.model.encode_text(**enc), expect)
    ckpt = next((Path(r["output_dir"]) / "checkpoints").glob("epoch-*")) / "model.safetensors"
    keys = set(load_file(str(ckpt)))
    assert "text_feature_mean" in keys and not any(k.startswith("text_encoder.") for k in keys)


def test_a_checkpoint_from_before_text_centering_still_resumes():
    """A recipe saved before ``text_centering`` existed is no change when the new key is off, a change when on."""
    from mtvr.train.trainer import recipe_changes

    old = {"student": {"text_encoder": "x", "trainable_layers": 0}}
    assert recipe_changes(old, {"student": {"text_encoder": "x", "trainable_layers": 0, "text_centering": False}}) == []
    on = recipe_changes(old, {"student": {"text_encoder": "x", "trainable_layers": 0, "text_centering": True}})
    assert on == ["student.text_centering: None -> True"]
