"""`mtvr serve`: the API through the real app, a real browser on the page, and the recall target."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mtvr import VideoIndex
from mtvr.index import _blas_topk

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mtvr.serve import ServeSettings, create_app  # noqa: E402
from mtvr.video.render import write_video  # noqa: E402

CAPTIONS = {
    "red_circle": "a red circle moves to the left",
    "blue_square": "a blue square grows",
    "green_star": "a green star spins",
    "onions": "一个人在厨房里切洋葱",
    "guitar": "ein mann spielt gitarre auf der bühne",
}
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_encoder_dir):
    """A model, an index whose videos are real MP4 files, and the videos folder."""
    import torch

    from mtvr import Retriever

    root = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    r = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24)
    videos = root / "videos"
    for i, vid in enumerate(CAPTIONS):
        frames = np.zeros((30, 48, 64, 3), np.uint8)
        frames[:, :, :, i % 3] = 60 + 30 * i
        frames[:, 10:30, 5 + i * 5 : 25 + i * 5] = 255
        write_video(videos / f"{vid}.mp4", frames, fps=10)
    # each video's embedding is its caption's: the caption finds its own video first
    emb = r.encode_text(list(CAPTIONS.values()))
    meta = [{"file": f"{vid}.mp4", "start": 0.5, "end": 2.5, "title": cap} for vid, cap in CAPTIONS.items()]
    r.add(list(CAPTIONS), embeddings=emb, metadata=meta)
    r.save_pretrained(root / "model")
    r.save_index(root / "index")
    return {"retriever": r, "root": root, "videos": videos}


@pytest.fixture(scope="module")
def client(served):
    return TestClient(create_app(served["retriever"], videos_dir=served["videos"]))


def test_search_get_and_post_return_hits_with_metadata(client):
    body = client.get("/search", params={"q": "a blue square grows", "k": 3}).json()
    assert body["query"] == "a blue square grows" and len(body["hits"]) == 3
    top = body["hits"][0]
    assert top["video_id"] == "blue_square" and top["rank"] == 1 and top["start"] == 0.5 and top["end"] == 2.5
    assert top["title"] == CAPTIONS["blue_square"] and top["video_url"] == "/videos/blue_square"
    res = client.post("/search", json={"queries": [CAPTIONS["onions"], CAPTIONS["guitar"]], "k": 2}).json()
    assert [r["hits"][0]["video_id"] for r in res["results"]] == ["onions", "guitar"]


def test_health_readiness_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["videos"] == len(CAPTIONS)
    assert client.get("/docs").status_code == 200 and "/search" in client.get("/openapi.json").text


@pytest.mark.parametrize(
    "request_args,status,message",
    [
        (("get", "/search", {"params": {"q": ""}}), 400, "empty query"),
        (("get", "/search", {"params": {"q": "   "}}), 400, "empty query"),
        (("get", "/search", {"params": {"q": "x" * 10_000}}), 400, "at most 1000"),
        (("get", "/search", {"params": {"q": "a", "k": 0}}), 422, "k"),
        (("get", "/search", {"params": {"q": "a", "k": 10**9}}), 422, "k"),
        (("get", "/search", {"params": {"q": "a", "k": "many"}}), 422, "k"),
        (("get", "/search?q=%ff%fe", {}), 400, "not valid UTF-8"),
        (("get", "/search", {}), 422, "q"),
        (("post", "/search", {"json": {"queries": [], "k": 1}}), 422, "queries"),
        (("post", "/search", {"json": {"queries": ["a"] * 100}}), 422, "queries"),
        (
            ("post", "/search", {"content": b"\xff\xfe{", "headers": {"content-type": "application/json"}}),
            400,
            "error parsing the body",
        ),
        (
            ("post", "/search", {"content": b"x" * 100_000, "headers": {"content-type": "application/json"}}),
            413,
            "larger than",
        ),
        (("get", "/videos/nope/thumbnail", {}), 404, "unknown video id 'nope'"),
        (("get", "/videos/nope", {}), 404, "unknown video id"),
        (("get", "/videos/..%2F..%2Fetc%2Fpasswd", {}), 404, ""),
        (("get", "/videos/%2E%2E/thumbnail", {}), 404, ""),
        (("get", "/nowhere", {}), 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_4xx_json_error_never_a_500(client, request_args, status, message):
    method, url, kwargs = request_args
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_thumbnails_are_jpeg_keyframes_and_cached(client):
    first = client.get("/videos/green_star/thumbnail")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.content[:3] == b"\xff\xd8\xff"
    assert client.get("/videos/green_star/thumbnail").content == first.content


def test_videos_are_served_with_range_requests(client, served):
    size = (served["videos"] / "guitar.mp4").stat().st_size
    whole = client.get("/videos/guitar")
    assert whole.status_code == 200 and len(whole.content) == size and whole.headers["accept-ranges"] == "bytes"
    part = client.get("/videos/guitar", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == whole.content[100:200]


def test_bearer_token_and_cors(served):
    app = create_app(served["retriever"], videos_dir=served["videos"], settings=ServeSettings(token="s3cret"))
    c = TestClient(app)
    assert c.get("/search", params={"q": "a"}).status_code == 401
    assert c.get("/search", params={"q": "a"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/search", params={"q": "a"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # health checks stay open
    plain = TestClient(create_app(served["retriever"])).get(
        "/search", params={"q": "a"}, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in plain.headers  # CORS off unless asked
    cors = TestClient(create_app(served["retriever"], settings=ServeSettings(cors_origins=["https://app.example"])))
    allowed = cors.get("/search", params={"q": "a"}, headers={"Origin": "https://app.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"


# ------------------------------------------------------------------ a real browser against `mtvr serve`
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def server(served):
    port = _free_port()
    token_file = served["root"] / "token"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtvr.cli",
            "serve",
            str(served["root"] / "model"),
            "--index",
            str(served["root"] / "index"),
            "--videos",
            str(served["videos"]),
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    import httpx

    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    assert not token_file.exists()


def test_the_cli_server_binds_localhost_and_answers(server):
    import httpx

    assert server.startswith("http://127.0.0.1:")
    body = httpx.get(f"{server}/search", params={"q": CAPTIONS["red_circle"], "k": 1}).json()
    assert body["hits"][0]["video_id"] == "red_circle"


@pytest.mark.skipif(_chromium() is None, reason="no chromium + chromedriver (apt-get install chromium chromium-driver)")
def test_a_real_browser_searches_and_sees_the_thumbnail(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900", "--lang=zh-CN"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(server + "/")
        box = driver.find_element(By.ID, "q")
        assert driver.switch_to.active_element == box  # focused on load: type right away
        box.send_keys(CAPTIONS["onions"] + Keys.ENTER)  # a Chinese query, typed with the keyboard
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .hit")))
        first = driver.find_elements(By.CSS_SELECTOR, "#results .hit")[0]
        assert first.get_attribute("data-video-id") == "onions"
        img = first.find_element(By.TAG_NAME, "img")
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        )
        assert "一个人在厨房里切洋葱" in first.text  # the CJK title is on the page
        first.send_keys(Keys.ENTER)  # keyboard: the card is a button; Enter plays the clip
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "const v = document.getElementById('video'); return v.readyState >= 1 && v.currentTime >= 0.5"
            )
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve_page.png"))
        assert (ARTIFACTS / "serve_page.png").stat().st_size > 1000
    finally:
        driver.quit()


# ------------------------------------------------------------------ recall you can ask for
def structured(n, d=128, latent=64, seed=0, w_seed=42):
    w = np.random.default_rng(w_seed).standard_normal((latent, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, latent)).astype(np.float32) @ w + 0.1 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("target", [0.9, 0.95])
def test_hnsw_meets_a_recall_target_on_held_out_queries(tmp_path, target):
    x, queries = structured(20_000), structured(400, seed=1)
    idx = VideoIndex(128, "hnsw", target_recall=target, ef_construction=40)
    idx.add([str(i) for i in range(len(x))], x)
    assert idx.measured_recall >= target
    _, truth = _blas_topk(x, np.arange(len(x)), queries, 10)
    hits = idx.search(queries, k=10)
    recall = np.mean([len({int(h.video_id) for h in row} & set(t)) / 10 for row, t in zip(hits, truth.tolist())])
    assert recall >= target - 0.01, (recall, idx.ef_search)  # held-out queries, never seen by the tuning
    idx.save(tmp_path / "i")
    cfg = json.loads((tmp_path / "i" / "index_config.json").read_text())
    assert cfg["target_recall"] == target and cfg["ef_search"] == idx.ef_search and cfg["measured_recall"] >= target
    loaded = VideoIndex.load(tmp_path / "i")
    assert loaded.ef_search == idx.ef_search and loaded.measured_recall == idx.measured_recall


def test_ivf_meets_a_recall_target_with_nprobe():
    x, queries = structured(8_000, seed=3), structured(300, seed=4)
    idx = VideoIndex(128, "IVF64,Flat", target_recall=0.95)
    idx.add([str(i) for i in range(len(x))], x)
    _, truth = _blas_topk(x, np.arange(len(x)), queries, 10)
    hits = idx.search(queries, k=10)
    recall = np.mean([len({int(h.video_id) for h in row} & set(t)) / 10 for row, t in zip(hits, truth.tolist())])
    assert idx.measured_recall >= 0.95 and recall >= 0.94 and 1 <= idx.nprobe <= 64


def test_a_search_counts_the_index_once_off_the_event_loop_and_an_empty_index_is_503(served, tiny_encoder_dir):
    """A count is a query on a database backend (Milvus): one per request, on the encoder thread; an index
    emptied after start-up answers 503, not a traceback."""
    import threading

    import torch

    from mtvr import Retriever

    torch.manual_seed(0)
    r = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24)
    r.add(["a", "b"], embeddings=r.encode_text(["red circle", "blue square"]))
    counted: list[str] = []
    real_len = type(r.index).__len__

    class Counting(type(r.index)):
        def __len__(self):
            counted.append(threading.current_thread().name)
            return real_len(self)

    r.index.__class__ = Counting
    with TestClient(create_app(r)) as c:
        counted.clear()
        assert c.get("/search", params={"q": "red circle", "k": 1}).json()["hits"][0]["video_id"] == "a"
        assert len(counted) == 1 and counted[0].startswith("mtvr-encoder-")  # an encoder worker, not the event loop
        r.index.remove(["a", "b"])
        resp = c.get("/search", params={"q": "red circle"})
        assert resp.status_code == 503 and resp.json() == {"error": "the index is empty"}
