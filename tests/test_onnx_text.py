"""The ONNX Runtime text encoder (issue 26 item 3): same embeddings as torch, accepted only when the search results
agree, refused otherwise, reachable from Retriever, `mtvr search` and `mtvr serve`."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from mtvr.commands.options import demo_queries  # noqa: E402
from mtvr.errors import OptionError, VideoIndexError  # noqa: E402
from mtvr.onnx_text import EncoderAgreementError, top_k_agreement  # noqa: E402

QUERIES = ["red circle", "a dog runs on the beach", "slicing onions", "x", "a man sings a very long song tonight"]


@pytest.fixture()
def retriever(tiny_encoder_dir):
    import torch

    from mtvr import Retriever

    torch.manual_seed(0)
    r = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24)
    x = np.random.default_rng(0).standard_normal((300, 24)).astype(np.float32)
    r.add([f"v{i}" for i in range(300)], embeddings=x / np.linalg.norm(x, axis=1, keepdims=True))
    return r


def test_onnx_encoder_gives_torchs_embeddings_and_results(retriever):
    reference = retriever.encode_text(QUERIES)
    hits_torch = retriever.search(QUERIES, k=10)
    agreement = retriever.use_text_encoder("onnx", check_queries=QUERIES + ["blue square"])
    assert agreement == 1.0 and retriever.text_encoder == "onnx"
    for batch in (QUERIES, QUERIES[:1], QUERIES[3:4], QUERIES[::-1]):  # batch and length axes are dynamic
        got = retriever.encode_text(batch)
        want = np.stack([reference[QUERIES.index(q)] for q in batch])
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert [[h.video_id for h in row] for row in retriever.search(QUERIES, k=10)] == [
        [h.video_id for h in row] for row in hits_torch
    ]
    sessions = retriever._onnx._sessions
    assert 1 in sessions  # one query runs on a one-thread session (mtvr.threads)
    retriever.use_text_encoder("torch")
    assert retriever.text_encoder == "torch" and retriever._onnx is None


def test_an_encoder_that_changes_results_is_refused_and_torch_stays(retriever):
    # 20 videos packed around each query's torch embedding (noise 0.02 per dimension): their scores lie ~1e-4 apart,
    # 500x the fp32 graph's error (1e-7: order kept) but far under int8's (1 - cos ~1e-3: order changed). With noise
    # 2e-3 the gaps were ~1e-6 and fp32 rounding swapped neighbours in 1 seed of 20 (a flaky CI failure); at 0.02
    # fp32 agreed 100% and int8 at most 24% over 20 seeds.
    reference = retriever.encode_text(QUERIES)
    rng = np.random.default_rng(1)
    near = np.repeat(reference, 20, axis=0) + 2e-2 * rng.standard_normal((20 * len(QUERIES), 24)).astype(np.float32)
    retriever.index = None
    retriever.add([f"n{i}" for i in range(len(near))], embeddings=near / np.linalg.norm(near, axis=1, keepdims=True))
    with pytest.raises(EncoderAgreementError, match=r"onnx-int8.*agree with torch on .*% of positions"):
        retriever.use_text_encoder("onnx-int8", check_queries=QUERIES, min_agreement=0.99)
    assert retriever.text_encoder == "torch"
    np.testing.assert_array_equal(retriever.encode_text(QUERIES), reference)
    assert retriever.use_text_encoder("onnx", check_queries=QUERIES) >= 0.99  # the fp32 graph keeps the order
    assert retriever.text_encoder == "onnx"


def test_bad_choices_are_one_line_errors(retriever, tiny_encoder_dir):
    from mtvr import Retriever

    with pytest.raises(OptionError, match="choose one of torch, onnx, onnx-int8"):
        retriever.use_text_encoder("tensorrt")
    with pytest.raises(OptionError, match="min_agreement"):
        retriever.use_text_encoder("onnx", QUERIES, min_agreement=1.5)
    with pytest.raises(OptionError, match="needs check_queries"):
        retriever.use_text_encoder("onnx")
    empty = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24)
    with pytest.raises(VideoIndexError, match="load an index first"):
        empty.use_text_encoder("onnx", QUERIES)


def test_agreement_counts_positions(retriever):
    q = retriever.encode_text(QUERIES)
    assert top_k_agreement(retriever.index, q, q, k=10) == 1.0
    swapped = top_k_agreement(retriever.index, q, q[::-1].copy(), k=10)  # other queries: other results
    assert swapped < 0.5


def test_default_check_queries_are_the_demos_captions_in_every_language():
    from datasets_builders.shapes_grammar import LANGUAGES

    queries = demo_queries()
    assert len(queries) == 400 and len(set(queries)) == 400
    assert "A red circle moves to the left on a black background" in demo_queries(10_000)
    assert any("圆" in q or "円" in q for q in queries) and len(LANGUAGES) == 8


def test_mtvr_search_runs_on_the_onnx_encoder(retriever, tmp_path, capsys):
    from mtvr.cli import main

    retriever.save_pretrained(tmp_path / "model")
    retriever.save_index(tmp_path / "index")
    (tmp_path / "q.txt").write_text("\n".join(QUERIES))
    argv = ["search", "red circle", "--model", str(tmp_path / "model"), "--index", str(tmp_path / "index"), "-k", "3"]
    assert main(argv + ["--json"]) == 0
    torch_out = capsys.readouterr().out
    assert main(argv + ["--json", "--text-encoder", "onnx", "--check-queries", str(tmp_path / "q.txt")]) == 0
    captured = capsys.readouterr()
    assert "text encoder onnx: top-10 results agree with torch on 100.00% of positions" in captured.err
    ids = [[h["video_id"] for h in row] for row in __import__("json").loads(captured.out)]
    assert ids == [[h["video_id"] for h in row] for row in __import__("json").loads(torch_out)]


def test_the_server_encodes_with_the_accepted_encoder(retriever):
    from fastapi.testclient import TestClient

    from mtvr.serve import create_app

    want = [h.video_id for h in retriever.search("slicing onions", k=5)]
    retriever.use_text_encoder("onnx", check_queries=QUERIES)
    calls = []
    encode = retriever._onnx.encode
    retriever._onnx.encode = lambda enc: calls.append(len(enc["input_ids"])) or encode(enc)
    with TestClient(create_app(retriever)) as client:
        got = client.get("/search", params={"q": "slicing onions", "k": 5}).json()
    assert [h["video_id"] for h in got["hits"]] == want and calls == [1]


@pytest.mark.slow
def test_minilm_onnx_encoder_matches_torch():
    from mtvr import Retriever
    from mtvr.packaged import packaged_minilm_path

    r = Retriever.from_text_encoder(
        str(packaged_minilm_path()),
        device="cpu",
        text_tower="sentence-transformers",
        projection="none",
        embed_dim=384,
        video_feature_dim=384,
    )
    x = np.random.default_rng(0).standard_normal((1000, r.config.embed_dim)).astype(np.float32)
    r.add([f"v{i}" for i in range(1000)], embeddings=x / np.linalg.norm(x, axis=1, keepdims=True))
    queries = demo_queries(100)
    reference = r.encode_text(queries)
    assert r.use_text_encoder("onnx", check_queries=queries) >= 0.99
    np.testing.assert_allclose(r.encode_text(queries), reference, atol=1e-5)
