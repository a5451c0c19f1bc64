"""Bad input, round two (issue 25): each test builds the hostile input itself and checks the one-line
error naming it, or the right result, with nothing lost or corrupted."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

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


# ------------------------------------------------------------------ the server
@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_encoder_dir):
    """A model and an index of four real MP4 files (their own copies: tests delete one)."""
    import numpy as np
    import torch

    from mtvr.video.render import write_video

    root = tmp_path_factory.mktemp("serve2")
    torch.manual_seed(0)
    r = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24)
    videos = root / "videos"
    names = ["red", "green", "blue", "intro"]
    for i, name in enumerate(names):
        frames = np.full((20, 32, 48, 3), 40 * i, np.uint8)
        write_video(videos / f"{name}.mp4", frames, fps=10)
    meta = [{"file": f"{n}.mp4", "start": 0.2, "end": 1.0} for n in names]
    meta[3]["start"] = "intro"  # not a number of seconds
    r.add(names, embeddings=r.encode_text(names), metadata=meta)
    r.save_pretrained(root / "model")
    return {"retriever": r, "root": root, "videos": videos}


def serve_client(served, **settings):
    from fastapi.testclient import TestClient

    from mtvr.serve import ServeSettings, create_app

    return TestClient(create_app(served["retriever"], videos_dir=served["videos"], settings=ServeSettings(**settings)))


def test_a_chunked_body_over_the_limit_is_cut_off_without_being_read_whole(served):
    """A real server on a socket: a chunked POST /search (no Content-Length) of up to 200 MB."""
    import socket
    import threading

    import uvicorn

    from mtvr.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(served["retriever"]), port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        sent, chunk = 0, b"x" * 65536
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            conn.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
            conn.settimeout(0.001)
            answer = b""
            try:
                while sent < 200 * 2**20 and not answer:
                    conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
                    try:
                        answer = conn.recv(4096)
                    except TimeoutError:
                        pass
            except (BrokenPipeError, ConnectionResetError):
                pass
            conn.settimeout(5)
            while b"\r\n\r\n" not in answer:
                more = conn.recv(4096)
                if not more:
                    break
                answer += more
    finally:
        server.should_exit = True
        thread.join(10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20 * 2**20, f"the server let the client send {sent / 2**20:.0f} MiB before answering"


def test_with_a_token_the_page_signs_in_and_its_media_load(served):
    c = serve_client(served, token="s3cret")
    page = c.get("/").text
    assert 'fetch("/login"' in page and 'id="token"' in page  # the page asks for the token when it gets a 401
    assert c.get("/search", params={"q": "red"}).status_code == 401
    assert c.post("/login", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/login", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    cookie = c.cookies.get("mtvr_token")
    assert cookie  # HttpOnly, same-site: what <img> and <video> send
    assert c.get("/search", params={"q": "red"}).status_code == 200
    assert c.get("/videos/red/thumbnail").status_code == 200 and c.get("/videos/red").status_code == 200


def test_with_a_token_the_api_docs_are_closed_and_readyz_shows_no_path(served):
    closed = serve_client(served, token="s3cret")
    assert closed.get("/docs").status_code == 401 and closed.get("/openapi.json").status_code == 401
    assert closed.get("/redoc").status_code in (401, 404)
    auth = {"Authorization": "Bearer s3cret"}
    assert "/search" in closed.get("/openapi.json", headers=auth).text
    assert closed.get("/docs", headers=auth).status_code == 200
    from fastapi.testclient import TestClient

    from mtvr.serve import create_app

    loaded = Retriever.from_pretrained(served["root"] / "model")
    loaded.index = served["retriever"].index
    ready = TestClient(create_app(loaded)).get("/readyz").json()
    assert ready["ready"] and str(served["root"]) not in json.dumps(ready) and ready["model"] == "model"
    assert serve_client(served).get("/docs").status_code == 200  # without a token: open, as before


def test_media_of_bad_metadata_or_deleted_files_are_4xx_not_500(served):
    c = serve_client(served)
    bad = c.get("/videos/intro/thumbnail")
    assert bad.status_code == 422 and "'start' is 'intro', not seconds" in bad.json()["error"]
    shutil.copy(served["videos"] / "blue.mp4", served["root"] / "blue.keep")
    (served["videos"] / "blue.mp4").unlink()  # deleted after the server started
    try:
        for headers in ({}, {"Range": "bytes=0-99"}):
            gone = c.get("/videos/blue", headers=headers)
            assert gone.status_code == 404 and "no video file for 'blue'" in gone.json()["error"]
        assert c.get("/videos/blue/thumbnail").status_code == 404
        assert c.get("/search", params={"q": "blue", "k": 4}).json()["hits"]  # search still answers
    finally:
        shutil.move(served["root"] / "blue.keep", served["videos"] / "blue.mp4")


@pytest.mark.parametrize("max_k", [0, -5, True, "many"])
def test_bad_max_k_is_refused(served, max_k):
    from mtvr.errors import OptionError

    with pytest.raises(OptionError, match=r"max_k="):
        serve_client(served, max_k=max_k)


def test_max_k_bounds_the_default_k_and_the_page(served):
    c = serve_client(served, max_k=2)
    assert len(c.get("/search", params={"q": "red"}).json()["hits"]) == 2
    assert len(c.post("/search", json={"queries": ["red"]}).json()["results"][0]["hits"]) == 2
    assert 'id="k" name="k" type="hidden" value="2"' in c.get("/").text


def test_a_real_replacement_character_in_a_query_is_a_query(served):
    c = serve_client(served)
    assert c.get("/search", params={"q": "red \ufffd"}).status_code == 200  # a real U+FFFD, sent as %EF%BF%BD
    assert c.post("/search", json={"queries": ["red \ufffd"]}).status_code == 200
    bad = c.get("/search?q=%ff%fe")
    assert bad.status_code == 400 and "not valid UTF-8" in bad.json()["error"]


# ------------------------------------------------------------------ queries
@pytest.mark.parametrize(
    "queries,error,message",
    [
        ("a \udc80 b", "QueryError", r"query #0 .* lone surrogate"),
        (["ok", "\ud800"], "QueryError", r"query #1"),
        ([], "QueryError", "no query given"),
        (["  "], "QueryError", "query #0 is empty"),
        ([3], "QueryTypeError", "query #0 is a int"),
        (42, "QueryTypeError", "a query must be a string"),
    ],
)
def test_bad_queries_raise_mtvr_errors_naming_the_query(tiny_retriever, queries, error, message):
    import numpy as np

    from mtvr import errors

    tiny_retriever.add(["a", "b"], features=[np.ones((3, 16), np.float32), np.zeros((2, 16), np.float32)])
    with pytest.raises(getattr(errors, error), match=message) as caught:
        tiny_retriever.search(queries, k=1)
    assert isinstance(caught.value, errors.MtvrError)
    assert isinstance(caught.value, TypeError if error == "QueryTypeError" else ValueError)  # old callers still catch


# ------------------------------------------------------------------ recipes and model configs
@pytest.mark.parametrize(
    "key,value,message",
    [
        ("optim.lr", float("inf"), "optim.lr: Input should be a finite number"),
        ("optim.epochs", True, "optim.epochs: Input should be a valid integer"),
        ("teachers.0.epochs", True, "teachers.0.epochs: Input should be a valid integer"),
        ("optim.batch_size", "16", "optim.batch_size: Input should be a valid integer"),
        ("teachers.0.temperature", float("inf"), "teachers.0.temperature: Input should be a finite number"),
    ],
)
def test_recipes_refuse_infinite_rates_and_booleans_as_counts(tmp_path, tiny_encoder_dir, key, value, message):
    import yaml

    from helpers import recipe_dict
    from mtvr.errors import RecipeError
    from mtvr.train import load_recipe

    data = recipe_dict(tmp_path, tiny_encoder_dir)
    node = data
    *path, last = key.split(".")
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match=f"recipe.yaml: {message}"):
        load_recipe(tmp_path / "recipe.yaml")


def test_a_missing_student_encoder_is_found_before_the_teachers_train(tmp_path, tiny_encoder_dir):
    from helpers import recipe_dict
    from mtvr.errors import RecipeError
    from mtvr.train import load_recipe, train

    data = recipe_dict(tmp_path, tiny_encoder_dir)
    data["student"]["text_encoder"] = str(tmp_path / "no-such-encoder")
    recipe = load_recipe(data)
    t0 = time.perf_counter()
    with pytest.raises(RecipeError, match=r"student.text_encoder: model folder .*no-such-encoder.* does not exist"):
        train(recipe, progress=False)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.safetensors"))  # nothing trained
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("key,value", [("aggregator", "bogus")])
def test_a_model_config_with_an_unknown_aggregator_names_the_file(tiny_retriever, tmp_path, key, value):
    tiny_retriever.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config[key] = value
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=rf"model/config.json: {key} 'bogus' is not one of"):
        Retriever.from_pretrained(tmp_path / "model")


# ------------------------------------------------------------------ dataset builders
@pytest.mark.parametrize("sentence", ["\x00\x00", "\u200b\u200d\ufeff", " \t\u2060 "])
def test_captions_without_visible_text_are_refused_by_name(tmp_path, sentence):
    from datasets_builders import MultiYouCook2
    from helpers import youcook2_fixture
    from mtvr.errors import DatasetBuildError

    data = youcook2_fixture(tmp_path, bad=lambda db: db["vid001"]["annotations"][2].update(sentence=sentence))
    b = MultiYouCook2(config_name="en", data_dir=str(data), backend="none", languages=["en"], cache_dir=str(tmp_path))
    with pytest.raises(DatasetBuildError, match=r"video 'vid001', annotation #2: 'sentence' must be .* visible text"):
        b.download_and_prepare()


def test_annotations_without_validation_videos_say_so(tmp_path):
    from datasets_builders import MultiYouCook2
    from helpers import youcook2_fixture
    from mtvr.errors import DatasetBuildError

    def all_training(db):
        for video in db.values():
            video["subset"] = "training"

    data = youcook2_fixture(tmp_path, bad=all_training)
    b = MultiYouCook2(config_name="en", data_dir=str(data), backend="none", languages=["en"], cache_dir=str(tmp_path))
    with pytest.raises(DatasetBuildError, match=r"no 'validation' examples .*splits=\['train'\]"):
        b.download_and_prepare()
    ok = MultiYouCook2(
        config_name="en",
        data_dir=str(data),
        backend="none",
        languages=["en"],
        splits=["train"],
        cache_dir=str(tmp_path),
    )
    ok.download_and_prepare()
    assert len(ok.as_dataset(split="train")) == 18


def test_msrvtt_full_counts_and_reports_what_it_leaves_out(tmp_path):
    from mtvr.dataset_publishing import build_dataset

    videos = [{"video_id": f"video{i}", "split": split} for i, split in enumerate(["train", "validate", "test", "dev"])]
    sentences = [
        {"video_id": f"video{i}", "caption": f"caption {i} {j}", "sen_id": 4 * i + j}
        for i in range(4)
        for j in range(2)
    ]
    sentences.append({"video_id": "video99", "caption": "a video nobody lists", "sen_id": 99})
    (tmp_path / "msrvtt").mkdir()
    (tmp_path / "msrvtt" / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    meta = build_dataset(
        "multi_msrvtt",
        tmp_path / "out",
        config_name="full",
        data_dir=str(tmp_path / "msrvtt"),
        backend="none",
        languages=["en"],
    )
    assert meta["counts"]["full"] == {"train": 2, "validation": 2, "test": 2}
    assert meta["skipped"] == {
        "sentences of videos not in 'videos'": 1,
        "videos of other splits (dev)": 1,
        "sentences of those videos": 2,
    }
    report = (tmp_path / "out" / "build_report.md").read_text()
    assert "Skipped: 1 sentences of videos not in 'videos'." in report and "videos of other splits (dev)" in report


@pytest.mark.parametrize("kind", ["folder", "not-sqlite"])
def test_a_translation_cache_that_is_a_folder_or_another_file_is_named(tmp_path, kind):
    from mtvr.errors import TranslationError
    from mtvr.translate.cache import TranslationCache

    path = tmp_path / "cache.sqlite"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"my precious notes, not a database\n" * 200)
    before = path.read_bytes() if kind != "folder" else None
    with pytest.raises(TranslationError, match=r"translation cache .*cache.sqlite: (is a folder|not an SQLite)"):
        TranslationCache(path)
    if before is not None:
        assert path.read_bytes() == before  # nothing overwritten


# ------------------------------------------------------------------ loads and saves
def small_index(n=5):
    import numpy as np

    from mtvr import VideoIndex

    x = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    index = VideoIndex(8, "flat")
    index.add([f"v{i}" for i in range(n)], x / np.linalg.norm(x, axis=1, keepdims=True))
    return index


def test_a_config_naming_another_kind_than_the_saved_index_is_refused(tmp_path):
    from mtvr import VideoIndex
    from mtvr.errors import IndexLoadError

    small_index().save(tmp_path / "index")
    config = json.loads((tmp_path / "index" / "index_config.json").read_text())
    config["kind"] = "hnsw"
    (tmp_path / "index" / "index_config.json").write_text(json.dumps(config))
    with pytest.raises(IndexLoadError, match=r"index/index.faiss: holds a IndexFlat.* says kind 'hnsw'"):
        VideoIndex.load(tmp_path / "index")


def test_integer_weights_are_refused_not_cast(tiny_retriever, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_retriever.save_pretrained(tmp_path / "model")
    path = tmp_path / "model" / "model.safetensors"
    weights = load_file(path)
    key = next(k for k, v in weights.items() if v.is_floating_point() and v.ndim == 2)
    weights[key] = (weights[key] * 1000).to(torch.int64)
    save_file(weights, path, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=rf"model.safetensors: tensor {key} is int64, not floating point"):
        Retriever.from_pretrained(tmp_path / "model")


def test_saving_through_a_symlink_keeps_the_link_and_leaves_nothing_behind(tmp_path):
    from mtvr import VideoIndex

    (tmp_path / "real").mkdir()
    small_index(3).save(tmp_path / "real" / "index")
    (tmp_path / "link_idx").symlink_to(tmp_path / "real" / "index", target_is_directory=True)
    (tmp_path / ".link_idx.old-999999").mkdir()  # left by an old mtvr killed mid-save (pid long gone)
    (tmp_path / "real" / ".index.old-999998").mkdir()
    small_index(5).save(tmp_path / "link_idx")
    assert (tmp_path / "link_idx").is_symlink() and len(VideoIndex.load(tmp_path / "real" / "index")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link_idx", "real"]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["index"]


KILL_CHILD = """
import os, signal, sys
import numpy as np
import mtvr.atomic as A
from mtvr import VideoIndex

dest, step = sys.argv[1], sys.argv[2]
kill = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if step == "writing":
    import mtvr.index.persistence as P
    P.sha256 = kill
elif step == "before-exchange":
    A.exchange_paths = kill
elif step == "after-exchange":
    exchange = A.exchange_paths
    A.exchange_paths = lambda a, b: (exchange(a, b), kill())
elif step == "removing-old":
    A.shutil.rmtree = kill
elif step == "between-renames":  # a system without the atomic exchange
    A.exchange_paths = lambda a, b: False
    replace, calls = os.replace, []
    def replace_then_kill(a, b):
        calls.append(a)
        if len(calls) == 2:
            kill()
        replace(a, b)
    A.os.replace = replace_then_kill
index = VideoIndex.load(dest)
index.add(["new"], np.ones((1, 8), np.float32) / np.sqrt(8))
index.save(dest)
"""


@pytest.mark.parametrize("step", ["writing", "before-exchange", "after-exchange", "removing-old", "between-renames"])
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_index(tmp_path, step):
    import os
    import subprocess
    import sys

    from mtvr import VideoIndex

    dest = tmp_path / "index"
    small_index(5).save(dest)
    proc = subprocess.run([sys.executable, "-c", KILL_CHILD, str(dest), step], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    loaded = VideoIndex.load(dest)  # never nothing: the old version (5) or the new one (6)
    expected = 6 if step in ("after-exchange", "removing-old") else 5
    assert len(loaded) == expected
    loaded.add(["later"], np.ones((1, 8), np.float32) / np.sqrt(8))
    loaded.save(dest)  # the next save cleans every leftover of the killed one
    assert sorted(os.listdir(tmp_path)) == ["index"]
    assert len(VideoIndex.load(dest)) == expected + 1


# ------------------------------------------------------------------ option values: one check for every command
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_encoder_dir):
    root = tmp_path_factory.mktemp("cli2")
    r = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24)
    r.add(["a", "b"], features=[np.ones((3, 16), np.float32), np.zeros((2, 16), np.float32)])
    r.save_pretrained(root / "model")
    r.save_index(root / "index")
    (root / "videos").mkdir()
    (root / "videos" / "clip.mp4").write_bytes(b"not decoded: the option check comes first")
    return root


CLI_CASES = [
    (["extract-features", "{videos}", "--out", "{tmp}/f", "--num-frames", "0"], "--num-frames=0: must be at least 1"),
    (["extract-features", "{videos}", "--out", "{tmp}/f", "--shard-size", "0"], "--shard-size=0: must be at least 1"),
    (["extract-features", "{videos}", "--out", "{tmp}/f", "--split", "train"], "split='train': .* not a dataset"),
    (["serve", "{model}", "--index", "{index}", "--port", "70000"], "--port=70000: must be between 1 and 65535"),
    (["serve", "{model}", "--index", "{index}", "--max-k", "0"], "--max-k=0: must be at least 1"),
    (["serve", "{model}", "--index", "{index}", "--token-file", "{videos}"], "--token-file .*videos: is a folder"),
    (["index", "--model", "{model}", "--features", "{tmp}", "--out", "{tmp}/i", "--target-recall", "0"],
     "--target-recall=0.0: must be greater than 0"),
    (["zero-shot", "--out", "{tmp}/zs", "--num-frames", "0"], "--num-frames=0: must be at least 1"),
    (["search", "hello", "--model", "{model}", "--index", "{index}", "--device", "bogus"],
     "device='bogus': not a torch device"),
]  # fmt: skip


@pytest.mark.parametrize("argv,message", CLI_CASES, ids=lambda c: c[0] if isinstance(c, list) else None)
def test_bad_option_values_are_one_line_naming_the_option(saved_model, tmp_path, capsys, argv, message):
    import re

    from mtvr.cli import main

    fill = {"videos": saved_model / "videos", "model": saved_model / "model", "index": saved_model / "index"}
    argv = [a.format(tmp=tmp_path, **fill) for a in argv]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and re.search(message, err[0]), err
    assert "Traceback" not in err[0]


def test_cuda_without_a_gpu_is_one_line(saved_model, capsys):
    from mtvr.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv = ["search", "hello", "--model", str(saved_model / "model"), "--index", str(saved_model / "index")]
    assert main([*argv, "--device", "cuda"]) == 2
    assert "device='cuda': no CUDA GPU is visible on this machine" in capsys.readouterr().err


def test_an_hf_endpoint_that_is_not_a_url_is_one_line(saved_model, capsys, monkeypatch):
    from mtvr.cli import main

    monkeypatch.setenv("HF_ENDPOINT", "huggingface.co")
    argv = ["search", "hello", "--model", str(saved_model / "model"), "--index", str(saved_model / "index")]
    assert main(argv) == 2
    assert "HF_ENDPOINT='huggingface.co': not an http(s) URL" in capsys.readouterr().err


@pytest.mark.parametrize("call", ["sample_frames-0", "sample_frames--3", "sample_frames-size0", "zero_shot"])
def test_api_counts_of_zero_are_refused(call, tmp_path):
    from mtvr.errors import OptionError
    from mtvr.video.decode import sample_frames

    with pytest.raises(OptionError, match=r"(num_frames|size)=(0|-3): must be at least 1"):
        if call == "sample_frames-0":
            sample_frames(tmp_path / "x.mp4", 0)
        elif call == "sample_frames--3":
            sample_frames(tmp_path / "x.mp4", -3)
        elif call == "sample_frames-size0":
            sample_frames(tmp_path / "x.mp4", 4, size=0)
        else:
            Retriever.from_zero_shot(text=str(tmp_path), vision=str(tmp_path), num_frames=0)


# ------------------------------------------------------------------ zero-shot --videos FOLDER; same stems
def test_zero_shot_indexes_a_folder_and_same_stems_in_subfolders(towers, tmp_path, capsys):
    from mtvr import VideoIndex
    from mtvr.cli import main
    from mtvr.video.render import write_video

    for sub, level in (("a", 40), ("b", 200)):
        write_video(tmp_path / "videos" / sub / "clip.mp4", np.full((12, 32, 32, 3), level, np.uint8), fps=6)
    argv = ["zero-shot", "--text", str(towers["sentence-transformers"]), "--vision", str(towers["clip"])]
    assert main([*argv, "--out", str(tmp_path / "zs"), "--videos", str(tmp_path / "videos"), "--num-frames", "2"]) == 0
    index = VideoIndex.load(tmp_path / "zs-index")
    assert sorted(index.ids) == ["a/clip", "b/clip"]  # both, not one
    both = [str(tmp_path / "videos" / "a" / "clip.mp4"), str(tmp_path / "videos" / "b" / "clip.mp4")]
    assert main([*argv, "--out", str(tmp_path / "zs2"), "--videos", *both, "--num-frames", "2"]) == 2
    assert "clip id 'clip' appears more than once" in capsys.readouterr().err
    assert not (tmp_path / "zs2-index").exists()
