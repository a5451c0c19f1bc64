"""Bad input never corrupts an index, never returns silently wrong results, never stalls (issue 14).

Each test builds its bad input itself and checks the clear error, the untouched state, or the guarantee.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mtvr import Retriever, VideoIndex
from mtvr.errors import (
    DatasetBuildError,
    HubConnectionError,
    IndexLoadError,
    ModelLoadError,
    MtvrError,
    RecipeError,
    TranslationError,
    UnsafeWeightsError,
    VideoDecodeError,
    VideoIndexError,
)

HERE = Path(__file__).resolve().parent


def unit(n, d=8, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def small_index(n=6, kind="flat"):
    idx = VideoIndex(8, kind)
    idx.add([chr(ord("a") + i) for i in range(n)], unit(n), metadata=[{"title": f"t{i}"} for i in range(n)])
    return idx


def all_ids(idx):
    return sorted(h.video_id for h in idx.search(unit(1, seed=9), k=len(idx))[0])


# ------------------------------------------------------------------ index: all-or-nothing mutations
def test_remove_with_a_repeated_id_changes_nothing():
    idx = small_index()
    with pytest.raises(VideoIndexError, match="'b' appears twice .* nothing was removed"):
        idx.remove(["b", "b"])
    assert len(idx) == 6 and all_ids(idx) == list("abcdef")


@pytest.mark.parametrize(
    "metadata,message",
    [
        ([{}, {}, "title"], "metadata of video 'z' is a str"),
        ([{}, {}, {"n": np.int64(3)}], "cannot be saved as UTF-8 JSON"),
        ([{}, {}, {"t": "\udcff"}], "cannot be saved as UTF-8 JSON"),
        ([{}, {}], "3 video ids but 2 metadata entries"),
    ],
)
def test_add_with_bad_metadata_adds_nothing(metadata, message):
    idx = small_index()
    with pytest.raises(VideoIndexError, match=message):
        idx.add(["x", "y", "z"], unit(3, seed=1), metadata=metadata)
    assert len(idx) == 6 and all_ids(idx) == list("abcdef")  # k = len(index) still finds every real id


@pytest.mark.parametrize(
    "ids,message",
    [("ab", "single string 'ab'"), (["ok", "bad\udcff"], "cannot be written as UTF-8"), ([1, 2], "is a int")],
)
def test_ids_that_cannot_be_saved_are_refused_at_add(ids, message):
    idx = small_index()
    with pytest.raises(VideoIndexError, match=message):
        idx.add(ids, unit(2, seed=2))
    assert len(idx) == 6


# ------------------------------------------------------------------ index: checked on load
def corrupt_cases():
    def missing(folder):
        (folder / "index.faiss").unlink()

    def truncated(folder):
        data = (folder / "index.faiss").read_bytes()
        (folder / "index.faiss").write_bytes(data[: len(data) // 2])

    def bitflip(folder):
        data = bytearray((folder / "index.faiss").read_bytes())
        data[len(data) // 2] ^= 0x40
        (folder / "index.faiss").write_bytes(bytes(data))

    def other_index(folder):
        other = VideoIndex(8, "flat")
        other.add(["q", "r"], unit(2, seed=5))
        other.save(folder.parent / "other")
        shutil.copy(folder.parent / "other" / "index.faiss", folder / "index.faiss")

    def fewer_ids(folder):
        state = json.loads((folder / "ids.json").read_text())
        state["ids"] = state["ids"][:-2]
        (folder / "ids.json").write_text(json.dumps(state))

    def wrong_shape(folder):
        (folder / "ids.json").write_text(json.dumps({"ids": {"a": 1}}))

    def unknown_key(folder):
        cfg = json.loads((folder / "index_config.json").read_text())
        cfg["colour"] = "blue"
        (folder / "index_config.json").write_text(json.dumps(cfg))

    def not_json(folder):
        (folder / "ids.json").write_bytes(b"\xff\xfe not json")

    return [
        (missing, "index.faiss: missing"),
        (truncated, "index.faiss: checksum mismatch"),
        (bitflip, "index.faiss: checksum mismatch"),
        (other_index, "index.faiss: checksum mismatch"),
        (fewer_ids, "ids.json: lists 4 videos"),
        (wrong_shape, "ids.json: expected an object with an 'ids' list"),
        (unknown_key, r"index_config.json: not an mtvr index config .*colour"),
        (not_json, "ids.json: not valid UTF-8 JSON"),
    ]


@pytest.mark.parametrize("damage,message", corrupt_cases(), ids=lambda c: getattr(c, "__name__", ""))
def test_damaged_index_folders_raise_one_clear_error(tmp_path, damage, message):
    folder = tmp_path / "index"
    small_index().save(folder)
    damage(folder)
    with pytest.raises(IndexLoadError, match=message) as err:
        VideoIndex.load(folder)
    assert str(folder) in str(err.value)


def test_the_cli_prints_one_line_for_a_damaged_index(tmp_path, tiny_retriever):
    tiny_retriever.save_pretrained(tmp_path / "model")
    tiny_retriever.add(["a", "b"], features=[np.ones((3, 16), np.float32), np.zeros((2, 16), np.float32)])
    tiny_retriever.save_index(tmp_path / "index")
    (tmp_path / "index" / "index.faiss").write_bytes(b"garbage")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtvr.cli",
            "search",
            "hello",
            "--model",
            str(tmp_path / "model"),
            "--index",
            str(tmp_path / "index"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "Warning" not in l and "warn" not in l]
    assert lines[-1].startswith("mtvr search: error:") and "checksum mismatch" in lines[-1]
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ index: concurrency
def test_writers_are_not_starved_by_continuous_searches():
    idx = VideoIndex(64, "flat")
    idx.add([f"v{i}" for i in range(20000)], unit(20000, 64))
    stop = threading.Event()
    q = unit(64, 64, seed=3)

    def searcher():
        while not stop.is_set():
            idx.search(q, k=10)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        t0 = time.perf_counter()
        for i in range(5):
            idx.add([f"new{i}"], unit(1, 64, seed=10 + i))
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(idx) == 20005 and elapsed < 20, elapsed


def test_concurrent_searches_with_overlong_queries_equal_sequential_ones(tiny_retriever):
    import warnings

    rng = np.random.default_rng(0)
    tiny_retriever.add([f"v{i}" for i in range(30)], features=list(rng.standard_normal((30, 4, 16)).astype(np.float32)))
    words = "a person is slicing onions in the kitchen while a man plays the guitar".split()
    queries = [" ".join(rng.choice(words, int(rng.integers(3, 400)))) for _ in range(24)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [tiny_retriever.search(q, k=5) for q in queries]
        results: dict[int, list] = {}
        errors = []

        def worker(offset):
            try:
                for rep in range(3):
                    for i in range(offset, len(queries), 4):
                        results[(i, rep, offset)] = tiny_retriever.search(queries[i], k=5)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(o,)) for o in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:1]
    for (i, _, _), hits in results.items():
        assert [(h.video_id, round(h.score, 5)) for h in hits] == [(h.video_id, round(h.score, 5)) for h in expected[i]]


# ------------------------------------------------------------------ model folders
def test_a_model_folder_without_its_tokenizer_is_refused(tiny_retriever, tmp_path):
    tiny_retriever.save_pretrained(tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (tmp_path / "m" / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="has no tokenizer files"):
        Retriever.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("embed_dim", "24", "embed_dim must be a positive integer, got '24'"),
        ("embed_dim", -5, "embed_dim must be a positive integer, got -5"),
        ("embed_dim", 24.0, "embed_dim must be a positive integer, got 24.0"),
        ("max_text_length", 0, "max_text_length must be a positive integer, got 0"),
        ("afa_temperature", "hot", "afa_temperature must be a positive number"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_name_the_file_and_key(tiny_retriever, tmp_path, key, value, message):
    tiny_retriever.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    cfg = json.loads(path.read_text())
    cfg[key] = value
    path.write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=message) as err:
        Retriever.from_pretrained(tmp_path / "m")
    assert str(path) in str(err.value)


def test_extra_files_cannot_escape_the_model_folder(tiny_retriever, tmp_path):
    for name in ("../x", "/tmp/x", "a/../../x"):
        with pytest.raises(ValueError, match="not a plain relative file name"):
            tiny_retriever.save_pretrained(tmp_path / "m", extra_files={name: "boom"})
    assert not (tmp_path / "x").exists() and not (tmp_path / "m").exists()


# ------------------------------------------------------------------ video
def test_a_negative_segment_start_is_an_error_not_a_wrap(tmp_path):
    from mtvr.video.decode import sample_frames
    from mtvr.video.render import write_video

    frames = np.zeros((20, 32, 32, 3), np.uint8)
    write_video(tmp_path / "v.mp4", frames, fps=10)
    with pytest.raises(VideoDecodeError, match="segment start -1.0 must be a finite number of seconds >= 0"):
        sample_frames(tmp_path / "v.mp4", 4, start=-1.0, end=1.0)
    with pytest.raises(VideoDecodeError, match="segment end <= start"):
        sample_frames(tmp_path / "v.mp4", 4, start=1.0, end=0.5)


KILL_POOL = """
import concurrent.futures as cf, multiprocessing as mp, os, sys, time
from mtvr.video.extract import die_with_parent  # the initializer extract_features gives its decode workers

if __name__ == "__main__":
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=die_with_parent,
                                initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(time.sleep, 120) for _ in range(2)]  # workers busy, as in the middle of a decode
        time.sleep(120)
"""


def _children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux")
def test_kill_9_leaves_no_busy_decode_worker_running(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_POOL)
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    deadline = time.time() + 60
    kids = []
    while time.time() < deadline and len(kids) < 3:  # 2 workers + multiprocessing's resource tracker
        kids = _children(proc.pid)
        time.sleep(0.2)
    assert len(kids) >= 2, "the pool never started its workers"
    time.sleep(2.0)  # the workers are inside their sleeping task
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_running(k) for k in kids):
        time.sleep(0.2)
    alive = [k for k in kids if _running(k)]
    for k in alive:  # do not leave them behind if the test fails
        os.kill(k, signal.SIGKILL)
    assert not alive, "workers outlived the killed process"


def test_extract_features_exits_non_zero_when_every_clip_failed(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"not a video")
    (bad / "b.mp4").write_bytes(b"")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtvr.cli",
            "extract-features",
            str(bad),
            "--out",
            str(tmp_path / "store"),
            "--encoder",
            "mtvr/shape-stats",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "every clip failed" in proc.stderr


# ------------------------------------------------------------------ datasets
def test_non_utf8_annotation_files_name_the_file(tmp_path):
    from datasets_builders import MultiYouCook2

    (tmp_path / "youcookii_annotations_trainval.json").write_bytes('{"database": {"é": 1}}'.encode("latin-1"))
    b = MultiYouCook2(config_name="en", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"), backend="none")
    with pytest.raises(DatasetBuildError, match=r"youcookii_annotations_trainval.json is not UTF-8 text"):
        b.download_and_prepare()


@pytest.mark.skipif(shutil.which("apertium") is None, reason="apertium not installed")
def test_an_unsupported_language_pair_is_one_clear_error(tmp_path):
    from helpers import youcook2_fixture

    data = youcook2_fixture(tmp_path / "yc")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtvr.cli",
            "build-dataset",
            "multi_youcook2",
            "--data-dir",
            str(data),
            "--languages",
            "de",
            "--backend",
            "apertium",
            "--out",
            str(tmp_path / "out"),
            "--translation-cache",
            str(tmp_path / "c.sqlite"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "backend 'apertium' cannot translate English into de" in proc.stderr


def test_stale_staging_folders_of_killed_processes_are_removed(tmp_path):
    from mtvr.atomic import atomic_folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{int(dead.stdout)}-abc"
    stale.mkdir()
    (stale / "half.parquet").write_bytes(b"half")
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "x").write_text("done")
    assert not stale.exists() and (tmp_path / "out" / "x").read_text() == "done"


# ------------------------------------------------------------------ hub
def test_a_push_that_cannot_connect_is_one_line_without_the_token(tiny_retriever, tmp_path):
    tiny_retriever.save_pretrained(tmp_path / "m")
    token = "hf_" + "SECRETSECRETSECRET"
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mtvr.cli", "push", str(tmp_path / "m"), "someone/model", "--token", token],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert token not in proc.stdout + proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("mtvr push: error:")]
    assert len(errors) == 1 and "the Hub could not be reached" in errors[0]
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ errors in general
def test_every_error_raised_on_purpose_is_an_mtvr_error():
    for cls in (
        DatasetBuildError,
        HubConnectionError,
        IndexLoadError,
        ModelLoadError,
        RecipeError,
        TranslationError,
        UnsafeWeightsError,
        VideoDecodeError,
        VideoIndexError,
    ):
        assert issubclass(cls, MtvrError), cls
    import mtvr.errors

    assert not hasattr(mtvr.errors, "IndexError_")
