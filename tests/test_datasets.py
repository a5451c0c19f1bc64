"""Dataset builders: real MSR-VTT 1k-A file, YouCook2 fixture, real apertium, tiny Marian, kill-and-resume."""

import csv
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from datasets import load_dataset

from datasets_builders import MultiMSRVTT, MultiYouCook2
from helpers import CORPUS, SHARED, build_tiny_marian, youcook2_fixture
from mtvr.dataset_publishing import build_dataset
from mtvr.errors import DatasetBuildError

MSRVTT_DIR = SHARED / "data" / "msrvtt"
needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None, reason="apertium not installed")


@needs_apertium
def test_msrvtt_1ka_test_split_from_the_real_file(tmp_path):
    b = MultiMSRVTT(
        config_name="1k-A",
        data_dir=str(MSRVTT_DIR),
        splits=["test"],
        languages=["es"],
        backend="apertium",
        translation_cache=str(tmp_path / "cache.sqlite"),
        cache_dir=str(tmp_path / "hf"),
    )
    b.download_and_prepare()
    test = b.as_dataset(split="test")
    with open(MSRVTT_DIR / "MSRVTT_JSFUSION_test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(test) == 1000 == len(rows)
    assert test["clip_id"] == [r["video_id"] for r in rows]
    assert [c["en"] for c in test["captions"]] == [r["sentence"] for r in rows]
    es = [c["es"] for c in test["captions"]]
    assert all(es) and sum(e.lower() != r["sentence"].lower() for e, r in zip(es, rows)) > 950
    meta = test[0]["translation"]["es"]
    assert meta["backend"] == "apertium" and meta["model"] == "apertium/eng-spa" and 0 <= meta["chrf"] <= 100
    # real round trip: the English back-translation is close to the original on average
    assert sum(m["es"]["chrf"] for m in test["translation"]) / 1000 > 40
    assert b.build_report["es"]["chrf"] > 40 and "nc:6" in b.build_report["es"]["chrf_signature"]


def test_youcook2_builder_on_official_schema_with_tiny_marian(tmp_path):

    marian = build_tiny_marian(tmp_path / "marian", CORPUS)
    data = youcook2_fixture(tmp_path / "yc2")
    b = MultiYouCook2(
        config_name="all",
        data_dir=str(data),
        languages=["de"],
        backend="transformers",
        backend_options={"models": {"en-de": str(marian), "de-en": str(marian)}, "num_beams": 1, "max_new_tokens": 6},
        translation_cache=str(tmp_path / "c.sqlite"),
        video_dir=str(tmp_path / "videos"),
        quality_threshold=101.0,
        cache_dir=str(tmp_path / "hf"),
    )
    b.download_and_prepare()
    ds = b.as_dataset()
    assert set(ds) == {"train", "validation"} and len(ds["train"]) == 12 and len(ds["validation"]) == 6
    ex = ds["train"][0]
    assert ex["clip_id"] == "vid000_0" and ex["start"] == 0.0 and ex["end"] == 8.0
    assert ex["video_path"].endswith("vid000.mp4")
    assert ex["captions"]["en"] == "heat oil in a pan" and isinstance(ex["captions"]["de"], str)
    assert ex["translation"]["de"]["model"] == str(marian) and ex["translation"]["de"]["flagged"] is True
    # 6 unique captions: translated once each way, whatever the number of segments
    assert b.build_report["de"]["unique"] == 6 and b.build_report["de"]["translated_now"] == 6


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda db: db["vid000"]["annotations"][0].pop("sentence"), "vid000.*#0: 'sentence' must be a non-empty"),
        (lambda db: db["vid001"]["annotations"][1].pop("segment"), "vid001.*#1: 'segment' must be"),
        (lambda db: db["vid002"]["annotations"][0].update(segment=[5, 5]), r"segment \[5.0, 5.0\] must be finite"),
        # issue 14: each of these gets a clear error naming the file and the record
        (lambda db: db["vid000"]["annotations"][0].update(segment=None), "vid000.*#0: 'segment' must be"),
        (lambda db: db.update(vid009="a string"), "video 'vid009' is a str, not an object"),
        (lambda db: db["vid001"]["annotations"][0].update(segment=[5, float("nan")]), r"must be finite"),
        (lambda db: db["vid001"]["annotations"][0].update(segment=[-5, 3]), r"0 <= start < end"),
        (lambda db: db["vid002"]["annotations"][1].update(sentence=["a", "b"]), "#1: 'sentence' must be a non-empty"),
        (lambda db: db["vid002"]["annotations"][1].update(id=0), "segment id 0 repeats annotation #0"),
        (lambda db: db.update({"../../../../etc/passwd": db.pop("vid003")}), "is not a plain id"),
        (lambda db: db.update({"[a-z]*": db.pop("vid003")}), "is not a plain id"),
    ],
)
def test_youcook2_bad_records_name_the_record(tmp_path, mutate, message):
    data = youcook2_fixture(tmp_path, bad=mutate)
    b = MultiYouCook2(
        config_name="en", data_dir=str(data), backend="none", languages=["en"], cache_dir=str(tmp_path / "hf")
    )
    with pytest.raises(DatasetBuildError, match=message):
        b.download_and_prepare()


def test_bad_files_languages_and_backends(tmp_path):
    data = youcook2_fixture(tmp_path)
    path = data / "youcookii_annotations_trainval.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(DatasetBuildError, match="truncated JSON.*line 1"):
        MultiYouCook2(data_dir=str(data), cache_dir=str(tmp_path / "hf")).download_and_prepare()
    with pytest.raises(DatasetBuildError, match="unknown language code 'xx'.*supported: cs, de"):
        MultiYouCook2(data_dir=str(data), languages=["xx"], cache_dir=str(tmp_path / "hf2"))
    youcook2_fixture(tmp_path)
    with pytest.raises(DatasetBuildError, match="unknown translation backend 'nope'"):
        MultiYouCook2(
            data_dir=str(data), backend="nope", languages=["de"], cache_dir=str(tmp_path / "hf3")
        ).download_and_prepare()


def test_missing_apertium_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apertium on PATH
    data = youcook2_fixture(tmp_path / "d")
    with pytest.raises(Exception, match="apt-get install apertium"):
        MultiYouCook2(
            data_dir=str(data), backend="apertium", languages=["es"], cache_dir=str(tmp_path / "hf")
        ).download_and_prepare()


@needs_apertium
def test_publish_writes_parquet_and_card_that_load_dataset_reads(tmp_path):
    from huggingface_hub import DatasetCard

    data = youcook2_fixture(tmp_path / "yc2")
    meta = build_dataset(
        "multi_youcook2",
        tmp_path / "out",
        data_dir=str(data),
        languages=["es"],
        backend="apertium",
        translation_cache=str(tmp_path / "c.sqlite"),
    )
    assert meta["counts"]["all"] == {"train": 12, "validation": 6}
    ds = load_dataset(str(tmp_path / "out"), "all")
    assert set(ds) == {"train", "validation"} and ds["train"].features["captions"].keys() == {"en", "es"}
    es = load_dataset(str(tmp_path / "out"), "es", split="validation")
    assert len(es) == 6 and es[0]["captions"]["es"]
    card = DatasetCard.load(tmp_path / "out" / "README.md")
    assert set(card.data.language) == {"en", "es"} and "apertium" in card.text and "chrF" in card.text
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["languages_report"]["es"]["chrf"] > 0


def test_translations_file_replaces_the_backend(tmp_path):
    data = youcook2_fixture(tmp_path / "yc2")
    sentences = {
        s["sentence"]
        for v in json.loads((data / "youcookii_annotations_trainval.json").read_text())["database"].values()
        for s in v["annotations"]
    }
    tf = tmp_path / "tr.jsonl"
    tf.write_text("\n".join(json.dumps({"en": s, "de": f"DE:{s}"}) for s in sentences))
    b = MultiYouCook2(
        data_dir=str(data), languages=["de"], backend="none", translations_file=str(tf), cache_dir=str(tmp_path / "hf")
    )
    b.download_and_prepare()
    ex = b.as_dataset(split="train")[0]
    assert ex["captions"]["de"] == f"DE:{ex['captions']['en']}" and ex["translation"]["de"]["backend"] == "file"


BUILD_SCRIPT = """
import sys
from mtvr.dataset_publishing import build_dataset
meta = build_dataset("multi_msrvtt", sys.argv[1], config_name="1k-A", data_dir=sys.argv[2], splits=["test"],
                     languages=["es"], backend="apertium", translation_cache=sys.argv[3], translation_batch_size=25,
                     back_translate=False)
print("TRANSLATED", meta["translated"])
"""


@needs_apertium
def test_killed_build_resumes_without_translating_twice(tmp_path):
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    cache = tmp_path / "cache.sqlite"
    cmd = [sys.executable, str(script), str(tmp_path / "out"), str(MSRVTT_DIR), str(cache)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cached = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if cache.exists():
            try:
                cached = sqlite3.connect(str(cache)).execute("SELECT COUNT(*) FROM translations").fetchone()[0]
            except sqlite3.Error:
                cached = 0
            if cached >= 100:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (cached, proc.returncode)
    assert not (tmp_path / "out").exists()  # nothing half-written
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    assert leftovers  # kill -9 cannot clean up: the killed build's cache / staging folders are still there
    cached = sqlite3.connect(str(cache)).execute("SELECT COUNT(*) FROM translations").fetchone()[0]
    unique = len({r["sentence"].strip() for r in csv.DictReader(open(MSRVTT_DIR / "MSRVTT_JSFUSION_test.csv"))})
    assert 0 < cached < unique
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert int(out.split("TRANSLATED")[1]) == unique - cached  # only the missing ones went to the backend
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]  # the rerun removed them
    resumed = load_dataset(str(tmp_path / "out"), "1k-A", split="test")
    fresh_cache = tmp_path / "fresh.sqlite"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "fresh"), str(MSRVTT_DIR), str(fresh_cache)],
        capture_output=True,
        text=True,
        check=True,
    )
    fresh = load_dataset(str(tmp_path / "fresh"), "1k-A", split="test")
    assert resumed["captions"] == fresh["captions"] and resumed["clip_id"] == fresh["clip_id"]
    again = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert int(again.split("TRANSLATED")[1]) == 0  # a rebuild translates nothing


def test_ctranslate2_backend_converts_and_translates_the_same_marian(tmp_path):
    from mtvr.translate import build_translator

    marian = build_tiny_marian(tmp_path / "m", CORPUS)
    opts = {"models": {"en-de": str(marian)}, "num_beams": 1, "max_new_tokens": 6, "min_new_tokens": 6}
    texts = ["a person is slicing onions", "a man plays the guitar on a stage"]
    hf = build_translator("transformers", **opts).translate(texts, "en", "de")
    ct2 = build_translator("ctranslate2", converted_dir=str(tmp_path / "ct2"), compute_type="float32", **opts)
    out = ct2.translate(texts, "en", "de")
    # float32 conversion, greedy: the same tokens; transformers spends the last step on Marian's forced EOS
    assert all(o.startswith(h) and len(o) > len(h) for o, h in zip(out, hf)), (out, hf)
    assert (tmp_path / "ct2").is_dir() and any((tmp_path / "ct2").iterdir())
