"""Foundation: VideoTextModel save/load, Retriever API and its bad inputs."""

import json
import threading
import warnings

import numpy as np
import pytest
import torch

from mtvr import ModelLoadError, Retriever, UnsafeWeightsError, VideoTextConfig
from mtvr.errors import VideoIndexError


def _features(n, seed=0, d=16, t_max=8):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, t_max + 1)), d)).astype(np.float32) for _ in range(n)]


def test_config_round_trips_through_json(tmp_path):
    cfg = VideoTextConfig(
        text_model_name_or_path="x",
        text_config={"model_type": "bert"},
        embed_dim=8,
        aggregator="afa",
        languages=["en", "de"],
    )
    cfg.save(tmp_path)
    assert VideoTextConfig.load(tmp_path) == cfg


@pytest.mark.parametrize("aggregator", ["mean", "seqtransf", "afa"])
def test_save_load_gives_identical_embeddings(tiny_encoder_dir, tmp_path, aggregator):
    torch.manual_seed(1)
    r = Retriever.from_text_encoder(
        str(tiny_encoder_dir),
        device="cpu",
        video_feature_dim=16,
        embed_dim=24,
        aggregator=aggregator,
        max_frames=8,
        seqtransf_heads=4,
    )
    texts = ["a person is slicing onions", "una persona corta cebollas", "一个人在切洋葱"]
    feats = _features(5)
    r.save_pretrained(tmp_path / "model")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "model").iterdir()}
    assert not any(p.suffix in (".bin", ".pt") for p in (tmp_path / "model").iterdir())
    r2 = Retriever.from_pretrained(tmp_path / "model", device="cpu")
    np.testing.assert_array_equal(r.encode_text(texts), r2.encode_text(texts))
    np.testing.assert_array_equal(r.encode_video_features(feats), r2.encode_video_features(feats))
    emb = r2.encode_text(texts)
    assert emb.dtype == np.float32 and emb.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_variable_length_features_equal_single_encoding(tiny_retriever):
    feats = _features(6, seed=3)
    batched = tiny_retriever.encode_video_features(feats)
    one_by_one = np.concatenate([tiny_retriever.encode_video_features([f]) for f in feats])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_save_pretrained_is_atomic(tiny_retriever, tmp_path, monkeypatch):
    target = tmp_path / "model"
    tiny_retriever.save_pretrained(target)
    before = sorted(p.name for p in target.iterdir())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny_retriever.tokenizer, "save_pretrained", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny_retriever.save_pretrained(target)
    assert sorted(p.name for p in target.iterdir()) == before  # old model untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no half-written staging folder left


def test_search_end_to_end_and_metadata(tiny_retriever):
    feats = _features(20, seed=5)
    ids = [f"video{i}" for i in range(20)]
    tiny_retriever.add(ids, features=feats, metadata=[{"title": f"clip {i}"} for i in range(20)])
    hits = tiny_retriever.search("una persona corta cebollas", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(h.video_id in ids for h in hits)
    assert hits[0].metadata["title"].startswith("clip")
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # same as brute force
    q = tiny_retriever.encode_text(["una persona corta cebollas"])
    v = tiny_retriever.encode_video_features(feats)
    assert [h.video_id for h in hits] == [ids[i] for i in np.argsort(-(q @ v.T)[0])[:5]]
    many = tiny_retriever.search(["a man plays guitar", "mtu anakata vitunguu"], k=3)
    assert len(many) == 2 and all(len(h) == 3 for h in many)


def test_bad_queries(tiny_retriever):
    tiny_retriever.add(["a", "b"], features=_features(2))
    with pytest.raises(ValueError, match="empty"):
        tiny_retriever.search("   ")
    with pytest.raises(TypeError, match="not a string"):
        tiny_retriever.search(["ok", 42])
    with pytest.raises(TypeError):
        tiny_retriever.search(3.5)
    with pytest.raises(ValueError, match="no query"):
        tiny_retriever.search([])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hits = tiny_retriever.search("onions " * 1500, k=1)  # 10,500 characters
    assert len(hits) == 1
    assert any("truncated" in str(w.message) for w in caught)


def test_index_errors(tiny_retriever):
    with pytest.raises(VideoIndexError, match="empty"):
        tiny_retriever.search("anything")
    tiny_retriever.add(["a", "b", "c"], features=_features(3))
    with pytest.raises(VideoIndexError, match="already in the index"):
        tiny_retriever.add(["c"], features=_features(1))
    with pytest.raises(VideoIndexError, match="twice"):
        tiny_retriever.add(["x", "x"], features=_features(2))
    hits = tiny_retriever.search("anything", k=50)  # k larger than the index: every video, once
    assert sorted(h.video_id for h in hits) == ["a", "b", "c"]
    tiny_retriever.add(["c"], features=_features(1, seed=9), replace=True)
    assert len(tiny_retriever.index) == 3
    assert tiny_retriever.remove(["a"]) == 1
    assert "a" not in [h.video_id for h in tiny_retriever.search("anything", k=10)]
    with pytest.raises(VideoIndexError, match="not in the index"):
        tiny_retriever.remove(["a"])
    with pytest.raises(ValueError, match="exactly one"):
        tiny_retriever.add(["z"])


def test_missing_or_corrupt_model_folders(tiny_retriever, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        Retriever.from_pretrained(tmp_path / "nope")
    folder = tiny_retriever.save_pretrained(tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        Retriever.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="not an mtvr model"):
        Retriever.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json"):
        Retriever.from_pretrained(folder)

    folder = tiny_retriever.save_pretrained(tmp_path / "m2")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model weights"):
        Retriever.from_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        Retriever.from_pretrained(folder)

    folder = tiny_retriever.save_pretrained(tmp_path / "m3")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        Retriever.from_pretrained(folder)


def test_unknown_hub_id_offline_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="not in the Hub cache|not found"):
        Retriever.from_pretrained("mtvr/does-not-exist-anywhere")


def test_search_is_thread_safe(tiny_retriever):
    feats = _features(50, seed=2)
    tiny_retriever.add([f"v{i}" for i in range(50)], features=feats)
    queries = ["a person is slicing onions", "a man plays the guitar", "一个人在切洋葱", "mtu anakata"]
    expected = {q: [h.video_id for h in tiny_retriever.search(q, k=5)] for q in queries}
    errors, results = [], []

    def worker(i):
        try:
            for j in range(10):
                q = queries[(i + j) % len(queries)]
                results.append((q, [h.video_id for h in tiny_retriever.search(q, k=5)]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    adder = threading.Thread(
        target=lambda: tiny_retriever.add([f"extra{i}" for i in range(5)], features=_features(5, seed=11))
    )
    for t in threads + [adder]:
        t.start()
    for t in threads + [adder]:
        t.join()
    assert not errors
    assert len(results) == 80
    new_ids = {f"extra{i}" for i in range(5)}
    for q, ids in results:  # before the concurrent add: identical; after it: only new ids may enter
        assert ids == expected[q] or new_ids & set(ids) or ids == [h.video_id for h in tiny_retriever.search(q, k=5)]


def test_save_and_load_index(tiny_retriever, tmp_path):
    tiny_retriever.add([f"v{i}" for i in range(10)], features=_features(10), metadata=[{"i": i} for i in range(10)])
    before = tiny_retriever.search("onions", k=4)
    tiny_retriever.save_index(tmp_path / "idx")
    tiny_retriever.index = None
    tiny_retriever.load_index(tmp_path / "idx")
    assert tiny_retriever.search("onions", k=4) == before


def test_real_minilm_text_tower_ranks_paraphrase_first():
    from mtvr.modeling import VideoTextModel
    from mtvr.packaged import packaged_minilm_path

    path = packaged_minilm_path()
    torch.manual_seed(0)
    model = VideoTextModel.from_text_encoder(str(path), video_feature_dim=16, embed_dim=384)
    # with an identity projection the text tower is exactly all-MiniLM-L6-v2's sentence embedding
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.eye(384))
        model.text_projection.bias.zero_()
    from transformers import AutoTokenizer

    r = Retriever(model, AutoTokenizer.from_pretrained(str(path)), device="cpu")
    anchor, para, other = r.encode_text(
        [
            "A man is slicing an onion in the kitchen.",
            "Someone cuts up an onion on a kitchen counter.",
            "The stock market fell sharply on Tuesday.",
        ]
    )
    assert anchor @ para > anchor @ other + 0.3
