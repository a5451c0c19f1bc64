"""Bad input, round two (issue 25): each test builds the hostile input itself and checks the one-line
error naming it, or the right result, with nothing lost or corrupted."""

import shutil
from pathlib import Path

import pytest

from helpers import build_tiny_clip, build_tiny_sentence_transformer
from mtvr import Retriever
from mtvr.errors import ModelLoadError, UnsafeWeightsError

VOCABULARY = ("tokenizer.json", "vocab.txt", "vocab.json", "special_tokens_map.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def towers(tmp_path_factory, tiny_encoder_dir):
    root = tmp_path_factory.mktemp("towers2")
    return {
        "sentence-transformers": build_tiny_sentence_transformer(root / "st", tiny_encoder_dir, "mean", 16),
        "transformers": tiny_encoder_dir,
        "clip": build_tiny_clip(root / "clip", tiny_encoder_dir, projection_dim=16),
    }


def strip_tokenizer(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.name in VOCABULARY:
            f.unlink()


# ------------------------------------------------------------------ one tokenizer check for every tower kind
@pytest.mark.parametrize("kind", ["sentence-transformers", "transformers", "clip"])
def test_a_tower_without_tokenizer_files_is_refused_for_every_kind(towers, kind, tmp_path):
    bad = tmp_path / "no-tokenizer"
    shutil.copytree(towers[kind], bad)
    strip_tokenizer(bad)
    with pytest.raises(ModelLoadError, match=r"no-tokenizer.* has no tokenizer files"):
        Retriever.from_text_encoder(str(bad), text_tower=kind, projection="linear", embed_dim=16, video_feature_dim=16)


def test_a_saved_sentence_transformers_tower_without_tokenizer_files_is_refused(towers, tmp_path):
    r = Retriever.from_text_encoder(
        str(towers["sentence-transformers"]),
        text_tower="sentence-transformers",
        projection="none",
        embed_dim=16,
        video_feature_dim=16,
    )
    r.save_pretrained(tmp_path / "model")
    assert Retriever.from_pretrained(tmp_path / "model").tokenizer.tokenize("a man")[0] != "[UNK]"  # complete: loads
    strip_tokenizer(tmp_path / "model")
    with pytest.raises(ModelLoadError, match="has no tokenizer files"):
        Retriever.from_pretrained(tmp_path / "model")


# ------------------------------------------------------------------ vision towers: complete safetensors only
def test_a_clip_vision_checkpoint_without_its_projection_is_refused(towers, tmp_path):
    from safetensors.torch import load_file, save_file

    from mtvr.video.encoder import CLIPFrameEncoder

    bad = tmp_path / "no-projection"
    shutil.copytree(towers["clip"], bad)
    weights = {k: v for k, v in load_file(bad / "model.safetensors").items() if "visual_projection" not in k}
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"no-projection lacks 1 weight\(s\) \(visual_projection.weight\)"):
        CLIPFrameEncoder(bad, device="cpu", precision="fp32")
    assert CLIPFrameEncoder(towers["clip"], device="cpu", precision="fp32").feature_dim == 16  # complete: loads


def test_a_pickle_only_clip_vision_checkpoint_is_refused(towers, tmp_path):
    from mtvr.video.encoder import CLIPFrameEncoder

    bad = tmp_path / "pickled"
    shutil.copytree(towers["clip"], bad)
    (bad / "model.safetensors").rename(bad / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="pickled holds weights only as pickle"):
        CLIPFrameEncoder(bad, device="cpu", precision="fp32")
