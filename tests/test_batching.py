"""The server's encoder thread (issue 26 item 3): concurrent requests share encoder batches and get their own
results; a full queue answers 503 with Retry-After; a failing request does not take the others down."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from mtvr.serve.batching import QueryBatcher, ServerBusy


@pytest.fixture(scope="module")
def retriever(tiny_encoder_dir):
    import torch

    from mtvr import Retriever

    torch.manual_seed(0)
    r = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24)
    words = ["red circle", "blue square", "green triangle", "a dog runs", "slicing onions", "a man sings"]
    r.add([f"v{i}" for i in range(len(words))], embeddings=r.encode_text(words))
    return r


def test_concurrent_requests_share_batches_and_get_their_own_hits(retriever):
    queries = [f"query number {i} about {w}" for i, w in enumerate(["dogs", "onions", "circles", "men"] * 8)]
    expected = [[h.video_id for h in hits] for hits in retriever.search(queries, k=3)]
    gate = threading.Event()

    def encode(texts: list[str]) -> np.ndarray:
        gate.wait(10)  # hold the first batch so that the other requests queue up behind it
        return retriever.encode_text(texts)

    batcher = QueryBatcher(encode, max_batch=16)

    def finish(embeddings: np.ndarray) -> list[str]:
        return [h.video_id for h in retriever.index.search(embeddings, k=3)[0]]

    futures = [batcher.submit([q], finish) for q in queries]
    gate.set()
    assert [f.result(timeout=30) for f in futures] == expected
    assert batcher.queries == len(queries) and batcher.batches <= 4  # 1 + 32 queued queries in batches of <= 16
    batcher.close()


def test_two_encoder_workers_encode_two_batches_at_once_and_stop_on_close():
    """``workers=2`` (``mtvr serve --encoder-workers``): while one batch is being encoded, the second worker takes
    the next batch from the queue; every request still gets its own rows."""
    both_inside = threading.Barrier(2, timeout=10)  # broken (an error) unless the first two encodes overlap
    calls: list[str] = []
    lock = threading.Lock()

    def encode(texts: list[str]) -> np.ndarray:
        with lock:
            calls.append(threading.current_thread().name)
            first_two = len(calls) <= 2
        if first_two:  # the first call holds its worker here, so only the other worker can make the second
            both_inside.wait()
        return np.array([[float(ord(t[0]))] for t in texts])

    batcher = QueryBatcher(encode, max_batch=2, workers=2)
    futures = [batcher.submit([q], lambda e: e[:, 0].tolist()) for q in "abcd"]  # >= 2 batches of <= 2
    assert [f.result(timeout=10) for f in futures] == [[97.0], [98.0], [99.0], [100.0]]
    assert len(set(calls[:2])) == 2 and batcher.queries == 4
    workers = list(batcher._threads)
    batcher.close()
    assert not any(t.is_alive() for t in workers)


def test_a_full_queue_refuses_with_server_busy_and_recovers():
    gate = threading.Event()
    batcher = QueryBatcher(lambda texts: (gate.wait(10), np.zeros((len(texts), 2)))[1], max_batch=2, max_queue=3)
    held = [batcher.submit(["a", "b"], len), batcher.submit(["c"], len)]
    with pytest.raises(ServerBusy) as busy:
        batcher.submit(["d"], len)
    assert busy.value.retry_after >= 1
    gate.set()
    assert [f.result(timeout=10) for f in held] == [2, 1]
    assert batcher.submit(["e"], len).result(timeout=10) == 1  # room again once served
    batcher.close()


def test_one_failing_request_does_not_fail_the_batch_or_the_worker():
    batcher = QueryBatcher(lambda texts: np.ones((len(texts), 2)), max_batch=8)

    def bad(_: np.ndarray) -> None:
        raise ValueError("this request is broken")

    ok, broken = batcher.submit(["a"], len), batcher.submit(["b"], bad)
    with pytest.raises(ValueError, match="broken"):
        broken.result(timeout=10)
    assert ok.result(timeout=10) == 1
    failing = QueryBatcher(lambda texts: 1 / 0, max_batch=8)
    with pytest.raises(ZeroDivisionError):
        failing.submit(["x"], len).result(timeout=10)
    with pytest.raises(ZeroDivisionError):  # the worker is still alive and answers the next request
        asyncio.run(failing.run(["y"], len))
    batcher.close()
    failing.close()


def test_the_server_answers_503_with_retry_after_when_the_queue_is_full(retriever):
    from fastapi.testclient import TestClient

    from mtvr.serve import ServeSettings, create_app

    app = create_app(retriever, settings=ServeSettings(max_queue=1))
    client = TestClient(app)
    assert client.get("/search", params={"q": "a dog runs", "k": 2}).status_code == 200
    gate = threading.Event()
    batcher = app.state.batcher
    first = batcher.submit(["hold the worker"], lambda _: gate.wait(10))  # occupies the only queue slot
    response = client.get("/search", params={"q": "a dog runs"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "waiting" in response.json()["error"]
    gate.set()
    first.result(timeout=10)
    assert client.get("/search", params={"q": "a dog runs", "k": 2}).json()["hits"][0]["video_id"] == "v3"


def test_serve_options_reach_the_batcher(retriever):
    from mtvr.commands import build_parser
    from mtvr.commands.serve import settings_from_args
    from mtvr.serve import create_app

    args = build_parser().parse_args(
        ["serve", "m", "--index", "i", "--max-batch", "4", "--batch-wait-ms", "2.5", "--max-queue", "9"]
    )
    batcher = create_app(retriever, settings=settings_from_args(args)).state.batcher
    assert (batcher.max_batch, batcher.max_wait, batcher.max_queue) == (4, 0.0025, 9)
    with pytest.raises(ValueError, match="max_queue"):
        settings_from_args(build_parser().parse_args(["serve", "m", "--index", "i", "--max-queue", "0"]))


def test_the_encoder_thread_uses_one_torch_thread_unless_told(monkeypatch):
    import torch

    def encode_like_the_retriever(texts):
        from mtvr.threads import torch_threads

        with torch_threads(len(texts)):
            return np.full((len(texts), 1), torch.get_num_threads())

    capped = QueryBatcher(encode_like_the_retriever)
    assert capped.submit(["a"] * 8, lambda e: int(e[0, 0])).result(timeout=10) == 1  # 8 texts: still 1 thread
    monkeypatch.setenv("MTVR_NUM_THREADS", "2")
    assert QueryBatcher(encode_like_the_retriever).threads == 2
    capped.close()
