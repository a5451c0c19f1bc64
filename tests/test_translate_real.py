"""Real offline MT: Debian's apertium English pairs and OPUS-MT zh→en (CTranslate2) from an Argos package."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from mtvr.translate import TranslationError, build_translator

ROOT = Path(__file__).resolve().parents[1]
OPUS_ZH_EN = Path(os.environ.get("MTVR_OPUS_ZH_EN", ROOT / "build" / "offline-mt" / "opus-mt-zh-en.argosmodel"))
needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None, reason="apertium not installed")

# (source, target, sentence, words the translation must contain): one per English pair Debian 12 has
PAIRS = [
    ("en", "es", "the dog eats the red apple", {"perro", "manzana"}),
    ("en", "ca", "the dog eats the red apple", {"gos", "poma"}),
    ("en", "gl", "the dog eats the red apple", {"can", "mazá"}),
    ("en", "eo", "the dog eats the red apple", {"hundo", "pomon"}),
    ("en", "hbs", "the dog eats the red apple", {"jabuka"}),
    ("ca", "en", "el gos menja la poma vermella", {"dog", "apple"}),
    ("gl", "en", "o can come a mazá vermella", {"dog", "apple"}),
    ("eo", "en", "la hundo manĝas la ruĝan pomon", {"dog", "apple"}),
    ("eu", "en", "Txakurrak sagarra jaten du", {"dog", "apple"}),
    ("is", "en", "Hundurinn borðar eplið", {"dog", "apple"}),
    ("mk", "en", "Кучето јаде јаболко", {"dog"}),
]


def _installed(src: str, tgt: str) -> bool:
    try:
        return build_translator("apertium").supports(src, tgt)
    except TranslationError:
        return False


@needs_apertium
@pytest.mark.parametrize("src,tgt,text,words", PAIRS, ids=[f"{s}-{t}" for s, t, _, _ in PAIRS])
def test_apertium_translates_every_english_pair(src, tgt, text, words):
    if not _installed(src, tgt):
        pytest.skip(f"apertium pair {src}-{tgt} not installed (make system-deps)")
    tr = build_translator("apertium")
    out = tr.translate([text, "the cat sleeps"], src, tgt) if src == "en" else tr.translate([text], src, tgt)
    assert words <= set(out[0].lower().replace(".", "").split()), out
    assert tr.model_id(src, tgt).startswith("apertium/")


@needs_apertium
def test_apertium_refuses_a_direction_debian_lacks():
    tr = build_translator("apertium")
    assert not tr.supports("en", "is")  # apertium-isl-eng translates is→en only
    with pytest.raises(TranslationError, match="no en→is pair"):
        tr.translate(["a dog"], "en", "is")


@pytest.fixture(scope="module")
def opus_zh_en() -> Path:
    if not OPUS_ZH_EN.is_file():
        pytest.skip(f"{OPUS_ZH_EN} missing (make offline-mt)")
    pytest.importorskip("ctranslate2")
    pytest.importorskip("sentencepiece")
    return OPUS_ZH_EN


def test_ctranslate2_backend_runs_the_real_opus_mt_zh_en(opus_zh_en, tmp_path):
    tr = build_translator("ctranslate2", models={"zh-en": str(opus_zh_en)}, converted_dir=str(tmp_path))
    out = tr.translate(["一个男人在切洋葱", "两个孩子在公园里踢足球", "一只猫在沙发上睡觉"], "zh", "en")
    assert "onion" in out[0].lower() and "man" in out[0].lower()
    assert "park" in out[1].lower() and ("football" in out[1].lower() or "soccer" in out[1].lower())
    assert "cat" in out[2].lower() and ("sofa" in out[2].lower() or "couch" in out[2].lower())
    assert "▁" not in "".join(out)
    # only the CTranslate2 model, its vocabulary and the SentencePiece model were extracted (no pickles)
    extracted = {
        p.relative_to(next((tmp_path / "argos").iterdir())).as_posix() for p in tmp_path.rglob("*") if p.is_file()
    }
    assert "model/model.bin" in extracted and "sentencepiece.model" in extracted
    assert not [p for p in extracted if p.endswith(".pt")]


def test_argos_package_that_is_not_one_is_refused(tmp_path):
    bad = tmp_path / "bad.argosmodel"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("pkg/README.md", "no model here")
    tr = build_translator("ctranslate2", models={"zh-en": str(bad)}, converted_dir=str(tmp_path / "c"))
    with pytest.raises(TranslationError, match="no model/model.bin"):
        tr.translate(["你好"], "zh", "en")
