"""Moments in the server and its page: /search with filter and start/end, and a real browser playing a moment."""

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from test_segments import long_video  # noqa: E402
from test_serve import _chromium, _free_port  # noqa: E402

from mtvr.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def moments_served(tmp_path_factory, tiny_encoder_dir):
    import torch

    from mtvr import Retriever
    from mtvr.config import FrameEncoderConfig

    root = tmp_path_factory.mktemp("serve_moments")
    torch.manual_seed(0)
    r = Retriever.from_text_encoder(
        str(tiny_encoder_dir),
        device="cpu",
        video_feature_dim=43,
        embed_dim=24,
        max_frames=4,
        frame_encoder=FrameEncoderConfig(name_or_path="mtvr/shape-stats", num_frames=4, image_size=32),
    )
    videos = root / "videos"
    long_video(videos / "a.mp4")
    long_video(videos / "b.mp4")
    r.add_videos(
        [videos / "a.mp4", videos / "b.mp4"],
        metadata={"a": {"year": 2021}, "b": {"year": 2024}},
        segments="window",
        window=4,
        stride=2,
    )
    r.save_pretrained(root / "model")
    r.save_index(root / "index")
    return {"retriever": r, "root": root, "videos": videos}


@pytest.fixture(scope="module")
def client(moments_served):
    return TestClient(create_app(moments_served["retriever"], videos_dir=moments_served["videos"]))


def test_search_returns_moments_with_start_end_and_filters(client):
    body = client.get("/search", params={"q": "a red circle", "k": 20}).json()
    hits = body["hits"]
    assert hits and all(h["start"] is not None and h["end"] > h["start"] for h in hits)
    for f in ("a.mp4", "b.mp4"):  # moments: no two of a file overlap
        spans = sorted((h["start"], h["end"]) for h in hits if h["metadata"]["file"] == f)
        assert all(s2 >= e1 for (_, e1), (s2, _) in zip(spans, spans[1:]))
    only_b = client.get("/search", params={"q": "x", "k": 5, "filter": "file=b.mp4"}).json()
    assert len(only_b["hits"]) == 3 and {h["metadata"]["file"] for h in only_b["hits"]} == {"b.mp4"}
    assert only_b["filter"] == {"file": {"$eq": "b.mp4"}}
    js = client.get("/search", params={"q": "x", "k": 5, "filter": '{"year": {"$gte": 2022}}'}).json()
    assert {h["metadata"]["year"] for h in js["hits"]} == {2024}
    ranged = client.get("/search", params={"q": "x", "k": 20, "filter": "file=a.mp4; start>=6"}).json()["hits"]
    assert ranged and all(h["start"] >= 6 and h["metadata"]["file"] == "a.mp4" for h in ranged)
    none = client.get("/search", params={"q": "x", "filter": "nokey=1"})
    assert none.status_code == 200 and none.json()["hits"] == []
    grouped = client.get("/search", params={"q": "x", "k": 5, "group_by": "file"}).json()["hits"]
    assert len(grouped) == 2
    post = client.post("/search", json={"queries": ["x", "y"], "k": 3, "filter": {"file": "a.mp4"}}).json()
    assert all(h["metadata"]["file"] == "a.mp4" for r in post["results"] for h in r["hits"])
    thumb = client.get(hits[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    "params, word",
    [
        ({"filter": "year>=abc"}, "year"),
        ({"filter": '{"year": [1, [2]]}'}, "year"),
        ({"filter": "{not json"}, "JSON"),
        ({"filter": "justakey"}, "justakey"),
        ({"group_by": "channel"}, "group_by"),
    ],
)
def test_bad_filters_are_a_400_naming_the_key(client, params, word):
    r = client.get("/search", params={"q": "x", **params})
    assert r.status_code in (400, 422) and word in r.json()["error"]
    post = client.post("/search", json={"queries": ["x"], "filter": {"year": {"$lt": "z"}}})
    assert post.status_code == 400 and "year" in post.json()["error"]


@pytest.fixture(scope="module")
def server(moments_served):
    port = _free_port()
    root = moments_served["root"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtvr.cli",
            "serve",
            str(root / "model"),
            "--index",
            str(root / "index"),
            "--videos",
            str(moments_served["videos"]),
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


@pytest.mark.skipif(_chromium() is None, reason="no chromium + chromedriver (apt-get install chromium chromium-driver)")
def test_a_real_browser_plays_a_moment_from_its_start_and_stops_at_its_end(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(server + "/")
        driver.find_element(By.ID, "filter").send_keys("file=b.mp4; start>=4")
        driver.find_element(By.ID, "q").send_keys("a red circle" + Keys.ENTER)
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .hit")))
        cards = driver.find_elements(By.CSS_SELECTOR, "#results .hit")
        assert all(c.get_attribute("data-video-id").startswith("b#t=") for c in cards)
        first = cards[0]
        start, end = (float(v) for v in first.get_attribute("data-video-id").split("#t=")[1].split(","))
        assert start >= 4
        badge = first.find_element(By.CSS_SELECTOR, ".span").text  # the time range on the thumbnail
        assert badge == f"{start:.1f} s – {end:.1f} s"
        first.click()
        WebDriverWait(driver, 30).until(  # playback starts at the moment, not at 0
            lambda d: d.execute_script(
                "const v = document.getElementById('video'); return v.readyState >= 2 && !v.paused && v.currentTime > 0"
            )
        )
        now = driver.execute_script("return document.getElementById('video').currentTime")
        assert start - 0.01 <= now < end
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.getElementById('video').paused"))
        stopped = driver.execute_script("return document.getElementById('video').currentTime")
        assert end - 0.6 <= stopped <= end + 0.6  # stopped at the moment's end
    finally:
        driver.quit()


def test_page_offers_a_filter_box_and_a_loop_switch(client):
    html = client.get("/").text
    assert 'id="filter"' in html and 'id="loop"' in html and "timeupdate" in html
