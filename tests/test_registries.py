"""Adding a component is one new class and one registration: a toy loss, extraction engine, text tower, translation
backend and frame encoder, each used through the same paths as the built-in ones (recipe validation, build_loss,
the trainer's needs, the model card; extract_features and its CLI; Retriever.from_text_encoder, encode, save and
load; translate-and-score and build-dataset; feature extraction and add_videos)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtvr.config import VideoTextConfig
from mtvr.distill import LOSSES, NEEDS_TEACHER, build_loss, loss_spec, register_loss
from mtvr.errors import ComponentError, ModelLoadError, RecipeError
from mtvr.hub.card import render_model_card
from mtvr.text_towers import TEXT_TOWERS, PretrainedTower, TextTower, get_tower, register_tower, tower_kinds
from mtvr.train.recipe import Recipe, validate
from mtvr.translate import Translator

TOY_CITATION = "@misc{toy2026, title={A Toy Loss}}"


@register_loss(
    "toy-margin", needs_teacher=True, needs_frames=True, card_method="Trained with a toy margin.", citation=TOY_CITATION
)
class ToyMarginLoss(nn.Module):
    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, inputs):  # pragma: no cover - not trained here
        return torch.zeros(())

    @staticmethod
    def options_for_recipe(options: dict, num_teachers: int) -> dict:
        options.setdefault("margin", 0.1 * num_teachers)
        return options


def _recipe(loss: str, teachers: int = 1, **options) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "toy",
            "data": {"dataset": "d", "features": "f", "languages": ["en", "de"]},
            "teachers": [{"name": f"t{i}"} for i in range(teachers)],
            "loss": {"name": loss, "options": options},
        }
    )


def test_a_registered_loss_is_known_to_recipes_the_trainer_and_the_card():
    assert "toy-margin" in LOSSES and "toy-margin" in NEEDS_TEACHER and LOSSES["toy-margin"] is ToyMarginLoss
    spec = loss_spec("toy-margin")
    assert spec.needs_frames and not loss_spec("c2kd").needs_frames and loss_spec("teachclip").needs_frames
    assert build_loss("toy-margin", margin=0.5).margin == 0.5
    with pytest.raises(ComponentError, match="bad options for loss 'toy-margin'"):
        build_loss("toy-margin", margn=0.5)
    recipe = _recipe("toy-margin", teachers=2)
    validate(recipe)  # the name is validated against the registry
    assert recipe.build_loss().margin == pytest.approx(0.2)  # the loss completed its options from the recipe
    with pytest.raises(RecipeError, match="distils from teachers"):
        validate(_recipe("toy-margin", teachers=0))
    with pytest.raises(RecipeError, match=r"unknown loss 'nope'.*toy-margin"):
        validate(_recipe("nope"))
    with pytest.raises(ComponentError, match="already registered"):
        register_loss("toy-margin", needs_teacher=False)(nn.Identity)
    config = VideoTextConfig(text_model_name_or_path="x", languages=["en"])
    card = render_model_card(config, {"evaluations": []}, "org/toy", recipe_yaml="loss: {name: toy-margin}\n")
    assert TOY_CITATION in card and "Trained with a toy margin." in card
    assert loss_spec("c2kd").citation in card  # C2KD is cited on every card


def test_a_registered_extraction_engine_runs_from_extract_features(tmp_path):
    from mtvr.video.engines import register_engine, registered_engines
    from mtvr.video.extract import extract_features

    seen = {}

    def toy_engine(clips, store_dir, encoder, **options):
        seen.update(clips=list(clips), store_dir=store_dir, encoder=encoder, **options)
        return "toy summary"

    register_engine("toy", toy_engine)
    assert "toy" in registered_engines() and "ray" in registered_engines()
    got = extract_features(["a.mp4"], tmp_path, "mtvr/shape-stats", num_frames=3, engine="toy", clips_per_batch=5)
    assert got == "toy summary" and seen["num_frames"] == 3 and seen["batch_size"] == 5 and seen["clips"] == ["a.mp4"]


def test_the_cli_reaches_a_registered_engine_and_refuses_an_unknown_one(tmp_path, capsys):
    from mtvr.cli import main
    from mtvr.video.engines import register_engine

    seen = {}

    def cli_engine(clips, store_dir, encoder, **options):
        seen.update(clips=[c.clip_id for c in clips], encoder=encoder, **options)
        from mtvr.video.clips import ExtractionSummary

        return ExtractionSummary(done=len(seen["clips"]))

    register_engine("toy-cli", cli_engine)
    (tmp_path / "v.mp4").write_bytes(b"")
    args = ["extract-features", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "s"), "--encoder", "mtvr/shape-stats"]
    assert main([*args, "--engine", "toy-cli", "--num-frames", "3"]) == 0
    assert seen["clips"] == ["v"] and seen["encoder"] == "mtvr/shape-stats" and seen["num_frames"] == 3
    assert main([*args, "--engine", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--engine 'nope': choose one of" in err and "toy-cli" in err and "threads" in err


# ---------------------------------------------------------------------- a text tower kind
class ToyBagOfWords(nn.Module):
    """A hashed bag of words: an embedding per bucket, masked mean over the words."""

    def __init__(self, buckets: int = 31, dim: int = 8) -> None:
        super().__init__()
        self.buckets, self.dim = buckets, dim
        self.embed = nn.Embedding(buckets, dim)


class ToyWordTokenizer:
    """Words hashed into buckets (no Hugging Face tokenizer at all): the tower owns its tokenization."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets

    def ids(self, text: str) -> list[int]:
        import zlib

        return [zlib.crc32(w.encode()) % self.buckets for w in text.lower().split()] or [0]


class ToyTower(TextTower):
    """One new class: load, rebuild from config, encode, output size, save, tokenizer."""

    kind = "toy-bow"

    @classmethod
    def load(cls, folder):
        import json

        from safetensors.torch import load_file

        cfg = json.loads((folder / "toy.json").read_text())
        encoder = ToyBagOfWords(**cfg)
        encoder.load_state_dict(load_file(str(folder / "toy.safetensors")))
        return PretrainedTower(encoder, ToyWordTokenizer(cfg["buckets"]), cfg, max_text_length=16)

    @classmethod
    def from_config(cls, text_config, folder):
        return ToyBagOfWords(**text_config)

    @classmethod
    def encode(cls, encoder, inputs):
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return (encoder.embed(inputs["input_ids"]) * mask).sum(1) / mask.sum(1)

    @classmethod
    def output_dim(cls, encoder):
        return encoder.dim

    @classmethod
    def save(cls, encoder, folder):
        return {"buckets": encoder.buckets, "dim": encoder.dim}

    @classmethod
    def load_tokenizer(cls, folder, text_config, encoder=None):
        return ToyWordTokenizer(text_config["buckets"])

    @classmethod
    def save_tokenizer(cls, tokenizer, folder):
        pass  # the buckets are in config.json's text_config

    @classmethod
    def tokenize(cls, tokenizer, texts, max_length, device, prompt=""):
        rows = [tokenizer.ids(prompt + t)[:max_length] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    @classmethod
    def token_count(cls, tokenizer, text, prompt=""):
        return len(tokenizer.ids(prompt + text))


def _toy_checkpoint(folder):
    import json

    from safetensors.torch import save_file

    folder.mkdir()
    torch.manual_seed(0)
    (folder / "toy.json").write_text(json.dumps({"buckets": 31, "dim": 8}))
    save_file(ToyBagOfWords(31, 8).state_dict(), str(folder / "toy.safetensors"))
    return folder


def test_a_registered_text_tower_is_validated_encodes_saves_loads_and_searches(tmp_path):
    import numpy as np

    from mtvr import Retriever

    register_tower("toy-bow", ToyTower)
    assert "toy-bow" in TEXT_TOWERS and "toy-bow" in tower_kinds() and get_tower("toy-bow") is ToyTower
    recipe = Recipe.model_validate(
        {
            "name": "toy",
            "data": {"dataset": "d", "features": "f"},
            "teachers": [{"name": "t", "text_tower": "toy-bow"}],
            "student": {"text_encoder": "x", "text_tower": "toy-bow"},
        }
    )
    assert recipe.student.text_tower == recipe.teachers[0].text_tower == "toy-bow"
    assert "toy-bow" in Recipe.model_json_schema()["$defs"]["StudentSpec"]["properties"]["text_tower"]["enum"]
    with pytest.raises(Exception, match=r"unknown text tower kind 'nope'.*toy-bow"):
        Recipe.model_validate({"name": "toy", "student": {"text_tower": "nope"}})

    r = Retriever.from_text_encoder(
        str(_toy_checkpoint(tmp_path / "ckpt")), device="cpu", text_tower="toy-bow", embed_dim=4, video_feature_dim=6
    )
    assert r.config.max_text_length == 16  # the checkpoint's own truncation length
    texts = ["a red circle", "a blue square grows", "a red circle"]
    emb = r.encode_text(texts)
    assert emb.shape == (3, 4) and np.allclose(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])
    r.add([f"v{i}" for i in range(3)], features=[np.eye(3, 6, k=i, dtype=np.float32) for i in range(3)])
    assert len(r.search("a red circle", k=2)) == 2
    r.save_pretrained(tmp_path / "model")
    loaded = Retriever.from_pretrained(tmp_path / "model", device="cpu")
    assert loaded.config.text_tower == "toy-bow" and loaded.config.text_config == {"buckets": 31, "dim": 8}
    assert np.allclose(loaded.encode_text(texts), emb, atol=1e-6)


def test_an_incomplete_or_clashing_text_tower_is_refused():
    class Half(TextTower):
        kind = "half"

        @classmethod
        def encode(cls, encoder, inputs):
            return inputs["input_ids"]

    with pytest.raises(ComponentError, match=r"'half'.*does not implement load, from_config, output_dim"):
        register_tower("half", Half)
    with pytest.raises(ComponentError, match="already registered"):
        register_tower("clip", ToyTower)
    with pytest.raises(ModelLoadError, match=r"unknown text tower kind 'nope'; choose one of .*clip"):
        get_tower("nope")


def test_no_tower_kind_name_is_compared_outside_its_own_module():
    """The model, the retriever, the recipe and the trainer reach towers through the registry only: none of them
    compares a tower kind with a kind's name, passes or defaults one, or lists the kinds (the names live in
    mtvr/text_towers/, the default in mtvr/config.py, the zero-shot choice in mtvr/zero_shot.py)."""
    import ast
    from pathlib import Path

    import mtvr

    root = Path(mtvr.__file__).parent
    kinds = set(tower_kinds())

    def names_kind(node) -> bool:
        return any(isinstance(n, ast.Constant) and n.value in kinds for n in ast.walk(node))

    found = []
    for rel in ("modeling.py", "retriever.py", "train/recipe.py", "train/trainer.py"):
        for node in ast.walk(ast.parse((root / rel).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and "tower" in ast.unparse(node) and names_kind(node):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
            elif isinstance(node, ast.keyword) and node.arg == "text_tower" and names_kind(node.value):
                found.append(f"{rel}:{node.value.lineno} text_tower={ast.unparse(node.value)}")
            elif isinstance(node, ast.AnnAssign) and "tower" in ast.unparse(node.target) and names_kind(node):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
                for a, d in zip(args, defaults + node.args.kw_defaults):
                    if "tower" in a.arg and d is not None and names_kind(d):
                        found.append(f"{rel}:{node.lineno} {a.arg}={ast.unparse(d)}")
    assert not found, found


# ---------------------------------------------------------------------- a translation backend
class ReverseTranslator(Translator):
    """Reverses the word order: its own inverse, so a round trip is exact."""

    name = "toy-reverse"

    def translate(self, texts, src, tgt):
        return [" ".join(reversed(t.split())) for t in texts]


def test_a_registered_translation_backend_translates_scores_and_is_validated(tmp_path, capsys):
    from mtvr.cli import main
    from mtvr.errors import DatasetBuildError
    from mtvr.translate import BACKENDS, build_translator, register_backend
    from mtvr.translate.scoring import TranslationSettings, translate_and_score

    register_backend("toy-reverse", ReverseTranslator)
    assert "toy-reverse" in BACKENDS and "apertium" in BACKENDS
    assert build_translator("toy-reverse").translate(["a red circle"], "en", "de") == ["circle red a"]
    settings = TranslationSettings(backend="toy-reverse", translation_cache=str(tmp_path / "cache.sqlite"))
    per_lang, report = translate_and_score(["a red circle", "a blue square grows"], settings, ["en", "de"])
    assert per_lang["de"]["text"] == ["circle red a", "grows square blue a"]
    assert per_lang["de"]["backend"] == "toy-reverse" and per_lang["de"]["chrf"] == [100.0, 100.0]
    with pytest.raises(DatasetBuildError, match=r"unknown translation backend 'nope'.*toy-reverse"):
        TranslationSettings(backend="nope")
    with pytest.raises(ComponentError, match="must be a Translator subclass"):
        register_backend("bad", dict)
    # the CLI refuses an unregistered name in one line, before reading any annotation
    assert main(["build-dataset", "multi_shapes", "--out", str(tmp_path / "ds"), "--backend", "nope"]) == 2
    assert "--backend 'nope': choose one of" in capsys.readouterr().err and not (tmp_path / "ds").exists()


# ---------------------------------------------------------------------- a frame encoder
class MeanColourEncoder:
    """Each frame's mean colour: a 3-d feature."""

    feature_dim = 3
    image_size = 16

    def __init__(self, name_or_path: str, device=None, **_):
        self.name = name_or_path

    def encode(self, frames):
        return frames.reshape(len(frames), -1, 3).mean(1).astype("float32") / 255.0


def test_a_registered_frame_encoder_extracts_features_and_indexes_videos(tmp_path, tiny_encoder_dir):
    import numpy as np

    from mtvr import Retriever
    from mtvr.config import FrameEncoderConfig
    from mtvr.video import FeatureStore, build_frame_encoder, clips_from_source, extract_features
    from mtvr.video.frame_encoders import frame_encoder_names, register_frame_encoder
    from mtvr.video.render import write_video

    register_frame_encoder("toy/mean-colour", MeanColourEncoder)
    assert "toy/mean-colour" in frame_encoder_names() and "mtvr/shape-stats" in frame_encoder_names()
    assert isinstance(build_frame_encoder("toy/mean-colour"), MeanColourEncoder)
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0)]):
        frames = np.zeros((8, 32, 32, 3), np.uint8)
        frames[:] = colour
        write_video(tmp_path / "clips" / f"c{i}.mp4", frames, fps=8, codec="mpeg4")
    summary = extract_features(
        clips_from_source(tmp_path / "clips"), tmp_path / "store", "toy/mean-colour", num_frames=2, workers=0
    )
    store = FeatureStore(tmp_path / "store")
    assert summary.done == 2 and store.manifest.encoder == "toy/mean-colour" and store.manifest.feature_dim == 3
    red = store.get_many(["c0"])[0][0]
    assert red.shape == (2, 3) and red[:, 0].min() > 0.6 and red[:, 1].max() < 0.2
    r = Retriever.from_text_encoder(
        str(tiny_encoder_dir),
        device="cpu",
        embed_dim=8,
        video_feature_dim=3,
        frame_encoder=FrameEncoderConfig(name_or_path="toy/mean-colour", num_frames=2, image_size=16),
    )
    added = r.add_videos([str(tmp_path / "clips" / "c0.mp4"), str(tmp_path / "clips" / "c1.mp4")])
    assert added.video_ids == ["c0", "c1"] and isinstance(r.frame_encoder, MeanColourEncoder)
