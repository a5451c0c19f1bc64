"""The Milvus backend's own parts: escaped expressions, locations, errors, and a Milvus server shared by processes.

The behaviour it shares with faiss is tested in ``test_index_backends.py``. Here a *server* is Milvus Lite
run as one (``python -m milvus_lite server``): the real gRPC protocol that a Milvus cluster speaks, with
several client processes at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import free_port, milvus_lite_server
from mtvr.errors import IndexConnectionError, VideoIndexError
from mtvr.filters import parse_filter
from mtvr.index.milvus_expr import MatchNothing, filter_expression, ids_expression, quote

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------- expressions
def _unquote(literal: str) -> str:
    """Read a Milvus string literal back with Milvus Lite's own tokenizer (the parser that will see it)."""
    pytest.importorskip("milvus_lite")
    from milvus_lite.search.filter.tokens import TokenKind, tokenize

    tokens = [t for t in tokenize(literal) if t.kind != TokenKind.EOF]
    assert len(tokens) == 1 and tokens[0].kind == TokenKind.STRING, tokens
    return tokens[0].value


@pytest.mark.parametrize("text", ['x" or id != "', "x' or id != '", "a\\", 'a\\" or true or "', "l1\nl2\r\t", "é中"])
def test_a_quoted_string_is_one_literal_with_the_same_value(text):
    assert _unquote(quote(text)) == text


def test_filter_expressions_use_typed_columns_and_json():
    def expr(f):
        return filter_expression(parse_filter(f))

    assert expr({}) == ""
    assert expr({"file": "a.mp4"}) == '(file == "a.mp4")'
    assert expr({"file": 3}) == '(meta["file"] == 3)'
    assert expr({"start": {"$gte": 1.5, "$lt": 9}}) == "(start >= 1.5) and (start < 9)"
    assert expr({"start": "intro"}) == '(meta["start"] == "intro")'
    assert expr({"lang": {"$in": ["es", "ca"]}}) == '((meta["lang"] == "es" or meta["lang"] == "ca"))'
    assert expr({"file": {"$in": ["a", 2]}}) == '((file in ["a"] or meta["file"] == 2))'
    assert expr({'k"]': True}) == '(meta["k\\"]"] == true)'
    assert expr({"file": "x" * 5000}).startswith('(meta["file"] == "xxx')  # longer than the column: JSON
    with pytest.raises(MatchNothing):
        expr({"file": {"$in": []}})
    assert ids_expression(['a"', "b"]) == 'id in ["a\\"", "b"]'


# --------------------------------------------------------------------------------------------- locations
def test_locations_parse_and_never_hold_credentials(tmp_path, monkeypatch):
    from mtvr.index.milvus import parse_location

    lite = parse_location(f"milvus-lite://{tmp_path}/v.db#clips")
    assert (lite.lite, lite.uri, lite.collection) == (True, f"{tmp_path}/v.db", "clips")
    monkeypatch.chdir(tmp_path)
    assert parse_location("milvus-lite://rel/v.db").uri == f"{tmp_path}/rel/v.db"
    assert parse_location("milvus-lite://rel/v.db").collection == "videos"
    srv = parse_location("milvus://db.example:19531/prod#moments")
    assert (srv.uri, srv.db_name, srv.collection) == ("http://db.example:19531", "prod", "moments")
    assert str(srv) == "milvus://db.example:19531/prod#moments"
    assert parse_location("milvus://h#c").uri == "http://h:19530"
    assert parse_location("milvus+https://h#c").uri == "https://h:443"
    for bad, message in [
        ("milvus://user:secret@h:19530#c", "token"),
        ("milvus://h:19530?token=secret#c", "token"),
        ("milvus://h:19530#bad-name", "collection name"),
        ("milvus-lite:///tmp/x.sqlite#c", ".db"),
        ("qdrant://h#c", "not a Milvus location"),
        ("milvus://#c", "host"),
    ]:
        with pytest.raises(VideoIndexError, match=message) as err:
            parse_location(bad)
        assert "secret" not in str(err.value)


# --------------------------------------------------------------------------------------------- errors
def test_unreachable_server_is_one_clear_error_without_the_token(monkeypatch):
    pytest.importorskip("pymilvus")
    from mtvr.index.milvus import MilvusIndex

    monkeypatch.setenv("MILVUS_TOKEN", "root:s3cr3t-token")
    location = f"milvus://127.0.0.1:{free_port()}#clips"
    with pytest.raises(IndexConnectionError) as err:
        MilvusIndex(location, dim=8, timeout=5)
    message = str(err.value)
    assert message.startswith(f"cannot reach Milvus at {location}") and "\n" not in message
    assert "s3cr3t" not in message
    with pytest.raises(IndexConnectionError) as err:
        MilvusIndex(location, dim=8, token="other-s3cr3t", timeout=5)
    assert "s3cr3t" not in str(err.value)


def test_a_lite_file_held_by_another_process_is_refused_clearly(tmp_path):
    pytest.importorskip("milvus_lite")
    from mtvr.index.milvus import MilvusIndex

    location = f"milvus-lite://{tmp_path}/v.db#clips"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mtvr.index.milvus import MilvusIndex; "
            f"i = MilvusIndex({location!r}, dim=4); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(IndexConnectionError, match="open in another process"):
            MilvusIndex(location, dim=4)
    finally:
        holder.communicate("", timeout=60)
    with MilvusIndex(location) as index:  # free again once the holder exited
        assert index.dim == 4 and len(index) == 0


def test_existing_collection_checks_dim_and_schema(tmp_path):
    pytest.importorskip("milvus_lite")
    from pymilvus import MilvusClient

    from mtvr.errors import IndexLoadError
    from mtvr.index.milvus import MilvusIndex

    with MilvusIndex(f"milvus-lite://{tmp_path}/v.db#clips", dim=8) as index:
        index.add(["a"], np.ones((1, 8), np.float32) / np.sqrt(8))
    with pytest.raises(VideoIndexError, match="8-d vectors, not 16-d"):
        MilvusIndex(f"milvus-lite://{tmp_path}/v.db#clips", dim=16)
    with pytest.raises(VideoIndexError, match="pass dim"):
        MilvusIndex(f"milvus-lite://{tmp_path}/v.db#other")
    client = MilvusClient(f"{tmp_path}/v.db")
    client.create_collection("foreign", dimension=8)
    client.close()
    with pytest.raises(IndexLoadError, match="not an mtvr index"):
        MilvusIndex(f"milvus-lite://{tmp_path}/v.db#foreign")


def test_a_failed_batch_takes_back_the_whole_add(tmp_path, monkeypatch):
    """The server refuses the third insert batch: the two batches already written are deleted again."""
    pytest.importorskip("milvus_lite")
    import mtvr.index.milvus as mi

    monkeypatch.setattr(mi, "BATCH_BYTES", 10 * (4 * 8 + 256))  # 10 rows per insert call
    x = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    with mi.MilvusIndex(f"milvus-lite://{tmp_path}/v.db#clips", dim=8) as index:
        index.add(["keep"], x[:1], [{"file": "k.mp4"}])
        index.add(["old"], x[1:2], [{"file": "old.mp4"}])
        real_insert, real_upsert, calls = index._client.insert, index._client.upsert, []

        def refuse_third(write):
            def call(*args, **kwargs):
                calls.append(1)
                if len(calls) == 3:
                    raise RuntimeError("server refused the batch")  # a real failure mode: the server goes away
                return write(*args, **kwargs)

            return call

        monkeypatch.setattr(index._client, "insert", refuse_third(real_insert))
        with pytest.raises(VideoIndexError, match="refused"):
            index.add([f"n{i}" for i in range(39)], x[1:40])
        assert sorted(index.ids) == ["keep", "old"]
        calls.clear()
        monkeypatch.setattr(index._client, "upsert", refuse_third(real_upsert))
        with pytest.raises(VideoIndexError, match="refused"):
            index.add(
                ["old"] + [f"n{i}" for i in range(38)], x[1:40], [{"file": "new.mp4"}] + [None] * 38, replace=True
            )
        assert sorted(index.ids) == ["keep", "old"]
        assert index.metadata("old") == {"file": "old.mp4"}  # the replaced row is back as it was
        np.testing.assert_allclose(index.reconstruct("old"), x[1], rtol=1e-6)


# --------------------------------------------------------------------------------------------- a shared server
@pytest.fixture()
def milvus_server(tmp_path):
    """A Milvus Lite gRPC server on 127.0.0.1 in its own process: ``milvus://127.0.0.1:PORT``."""
    pytest.importorskip("milvus_lite")
    with milvus_lite_server(tmp_path / "server.db") as uri:
        yield uri


_CLIENT = """
import json, sys, numpy as np
from mtvr.index import VideoIndex
index = VideoIndex.open(sys.argv[1], dim=8)
if sys.argv[2] == "add":
    x = np.eye(8, dtype=np.float32)[int(sys.argv[3]) :: 2]
    index.add([f"p{sys.argv[3]}-{i}" for i in range(len(x))], x, [{"file": f"w{sys.argv[3]}.mp4"}] * len(x))
else:
    print(json.dumps({"n": len(index), "top": index.search(np.eye(8, dtype=np.float32)[3], k=1)[0][0].video_id}))
index.close()
"""


def test_several_processes_share_one_milvus_server(milvus_server, monkeypatch):
    monkeypatch.setenv("MILVUS_TOKEN", "root:Milvus")  # sent to the server, never printed
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    location = f"{milvus_server}#shared"
    writers = [
        subprocess.Popen([sys.executable, "-c", _CLIENT, location, "add", str(w)], env=env, stderr=subprocess.PIPE)
        for w in (0, 1)
    ]
    for w in writers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()[-2000:]
    out = subprocess.run(
        [sys.executable, "-c", _CLIENT, location, "read"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"n": 8' in out.stdout and '"top": "p1-1"' in out.stdout  # e3 was written by writer 1, row 1


def test_losing_the_race_to_create_a_collection_opens_the_winners(milvus_server, monkeypatch):
    """Two openers see no collection; the first creates it, the second's create fails ("File exists" on Milvus Lite,
    "already exists" on a cluster) and opens the first one's collection instead of failing (a flaky CI failure)."""
    from mtvr.index import VideoIndex
    from mtvr.index.milvus import MilvusIndex

    location = f"{milvus_server}#raced"
    first = VideoIndex.open(location, dim=8)
    first.add(["a"], np.eye(8, dtype=np.float32)[:1])
    real_open = MilvusIndex._open_collection

    def sees_nothing_yet(self, dim, create):  # the check ran before the first opener's create
        has, calls = self._client.has_collection, []
        self._client.has_collection = lambda *a, **k: bool(calls.append(1) or len(calls) > 1) and has(*a, **k)
        try:
            return real_open(self, dim, create)
        finally:
            self._client.has_collection = has

    monkeypatch.setattr(MilvusIndex, "_open_collection", sees_nothing_yet)
    with VideoIndex.open(location, dim=8) as second:
        assert list(second.ids) == ["a"] and second.search(np.eye(8, dtype=np.float32)[0], k=1)[0][0].video_id == "a"
    monkeypatch.undo()
    with pytest.raises(VideoIndexError, match="4-d"):
        VideoIndex.open(location, dim=4)  # the winner's collection is still checked against what was asked
    first.close()


# --------------------------------------------------------------------------------------------- the command line
def test_index_and_search_a_milvus_lite_collection_through_the_cli(tmp_path, tiny_encoder_dir, capsys):
    pytest.importorskip("milvus_lite")
    import json

    import torch
    from test_train import planted_data

    from mtvr import Retriever
    from mtvr.cli import main
    from mtvr.index import VideoIndex

    _, features = planted_data(tmp_path, n_train=20, n_eval=12)
    torch.manual_seed(0)
    Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=12, embed_dim=16).save_pretrained(
        tmp_path / "model"
    )
    model = str(tmp_path / "model")
    location = f"milvus-lite://{tmp_path}/videos.db#clips"
    index_args = ["index", "--model", model, "--features", str(features), "--batch-size", "7"]
    assert main([*index_args, "--uri", location, "--backend", "milvus", "--kind", "flat"]) == 0
    assert "into " + location in capsys.readouterr().out
    with VideoIndex.open(location) as index:
        n, kind = len(index), index.index_type
    assert (n, kind) == (32, "FLAT")  # --kind reached the collection; every clip of the store is in it
    assert main([*index_args, "--out", location]) == 2  # again without --replace: one clear line
    err = capsys.readouterr().err
    assert "already in the index" in err and "Traceback" not in err
    assert main([*index_args, "--out", location, "--replace"]) == 0
    capsys.readouterr()
    assert main(["search", "a small red circle", "--model", model, "--index", location, "-k", "4", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert main([*index_args, "--out", str(tmp_path / "folder"), "--backend", "milvus"]) == 2
    assert "--backend milvus but" in capsys.readouterr().err
    assert main([*index_args, "--out", location, "--target-recall", "0.9"]) == 2
    assert "--target-recall" in capsys.readouterr().err
    (tmp_path / "empty-token").write_text("\n")
    commands = [
        ["search", "q", "--model", model, "--index", location],
        ["serve", model, "--index", location],
        [*index_args, "--out", location],
    ]
    for cmd in commands:
        assert main([*cmd, "--milvus-token-file", str(tmp_path / "empty-token")]) == 2  # the file reached the opener
        assert "--milvus-token-file" in capsys.readouterr().err


def test_cli_names_an_unreachable_server_in_one_line_without_the_token(tmp_path, tiny_encoder_dir):
    pytest.importorskip("pymilvus")
    import torch

    from mtvr import Retriever

    torch.manual_seed(0)
    Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=12, embed_dim=16).save_pretrained(
        tmp_path / "model"
    )
    (tmp_path / "token").write_text("file-s3cr3t\n")
    location = f"milvus://127.0.0.1:{free_port()}#clips"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MILVUS_TOKEN": "env-s3cr3t"}
    for extra in ([], ["--milvus-token-file", str(tmp_path / "token")]):
        out = subprocess.run(
            [sys.executable, "-m", "mtvr.cli", "search", "a query", "--model", str(tmp_path / "model")]
            + ["--index", location, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert out.returncode == 2
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert lines == [f"mtvr search: error: cannot reach Milvus at {location}: " + lines[0].split(": ", 3)[-1]]
        assert "Traceback" not in out.stderr and "s3cr3t" not in out.stderr + out.stdout


def test_serve_replicas_share_one_milvus_and_see_online_deletes(milvus_server, tiny_encoder_dir, tmp_path):
    """Two serve apps (two Retrievers, two connections) on one Milvus server: same hits; a delete made by a
    third client is seen by both at once (no reload, nothing held in the replicas)."""
    pytest.importorskip("fastapi")
    import torch
    from fastapi.testclient import TestClient

    from mtvr import Retriever
    from mtvr.index import VideoIndex
    from mtvr.serve import create_app

    torch.manual_seed(0)
    Retriever.from_text_encoder(
        str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24
    ).save_pretrained(tmp_path / "model")
    captions = ["a person is slicing onions in the kitchen", "a man plays the guitar on a stage", "the cat jumps"]
    writer = Retriever.from_pretrained(tmp_path / "model", device="cpu")
    location = f"{milvus_server}#served"
    with VideoIndex.open(location, dim=24) as index:
        meta = [{"file": f"v{i}.mp4", "start": 0.0, "end": 2.0} for i in range(3)]
        index.add([f"v{i}" for i in range(3)], writer.encode_text(captions), meta)
        replicas = []
        for _ in range(2):
            r = Retriever.from_pretrained(tmp_path / "model", device="cpu")
            r.load_index(location)
            replicas.append(TestClient(create_app(r)))

        def top(client):
            body = client.get("/search", params={"q": captions[0], "k": 3}).json()
            return [h["video_id"] for h in body["hits"]]

        assert top(replicas[0]) == top(replicas[1]) and top(replicas[0])[0] == "v0"
        index.remove_where({"file": "v0.mp4"})
        assert top(replicas[0]) == top(replicas[1]) and "v0" not in top(replicas[0])


@pytest.mark.parametrize("options", [{}, {"filter": {"file": "v1.mp4"}}, {"nms": False}, {"group_by": "file"}])
def test_a_retriever_search_counts_the_collection_once(tiny_encoder_dir, tmp_path, options):
    """Issue 24: ``Retriever.search`` asked Milvus for ``count(*)`` two times per search; once is enough."""
    pytest.importorskip("milvus_lite")
    from mtvr import Retriever
    from mtvr.index import VideoIndex
    from mtvr.index.milvus import MilvusIndex

    r = Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=12, embed_dim=16)
    with VideoIndex.open(f"milvus-lite://{tmp_path}/videos.db#clips", dim=16) as index:
        x = np.random.default_rng(0).standard_normal((6, 16)).astype(np.float32)
        meta = [{"file": f"v{i % 3}.mp4", "start": 2.0 * i, "end": 2.0 * i + 2} for i in range(6)]
        index.add([f"m{i}" for i in range(6)], x / np.linalg.norm(x, axis=1, keepdims=True), meta)
        r.index = index
        counts = []
        real = MilvusIndex._count  # every count(*) query this backend sends

        def counted(self, expr):
            counts.append(expr)
            return real(self, expr)

        mp = pytest.MonkeyPatch()
        mp.setattr(MilvusIndex, "_count", counted)
        try:
            hits = r.search("a person is slicing onions", k=2, **options)
            assert hits and len(counts) == 1
            counts.clear()
            assert len(r.search(["the cat jumps", "a man plays the guitar"], k=2, **options)) == 2
            assert len(counts) == 1
            counts.clear()
            r.search_embeddings(x[:1], k=2, **options)
            assert len(counts) == 1
        finally:
            mp.undo()


def test_a_selective_filter_on_milvus_hnsw_returns_the_exact_top_k(tmp_path):
    """Milvus's filtered HNSW walk missed selected rows when they were few (recall@10 0.45 with 100 of 100k
    selected in benchmarks/search_backends.py); below ``exact_below`` selected rows the search is exact."""
    pytest.importorskip("milvus_lite")
    from mtvr.index import VideoIndex

    rng = np.random.default_rng(0)
    n, d = 4000, 32
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rare = set(range(0, n, 250))  # 16 rows
    meta = [{"file": "rare.mp4" if i in rare else f"f{i % 7}.mp4", "start": float(i)} for i in range(n)]
    q = rng.standard_normal((6, d)).astype(np.float32)
    with VideoIndex.open(f"milvus-lite://{tmp_path}/v.db#clips", dim=d, exact_below=64) as index:
        index.add([f"v{i}" for i in range(n)], x, meta)
        index.flush()  # sealed: searched through its HNSW graph
        graph_searches = []
        real_search = index._client.search
        index._client.search = lambda *a, **kw: graph_searches.append(1) or real_search(*a, **kw)
        chosen = np.array(sorted(rare))
        for row, hits in zip(q, index.search(q, k=10, filter={"file": "rare.mp4"})):
            truth = chosen[np.argsort(-(x[chosen] @ row))[:10]]
            assert [h.video_id for h in hits] == [f"v{i}" for i in truth]
            assert [h.rank for h in hits] == list(range(1, 11)) and hits[0].metadata["file"] == "rare.mp4"
            np.testing.assert_allclose([h.score for h in hits], x[truth] @ row, rtol=1e-4)
        assert len(index.search(q[:1], k=50, filter={"file": "rare.mp4"})[0]) == 16
        assert graph_searches == []  # 16 selected rows: exact over them, no graph walk
        assert [len(h) for h in index.search(q, k=10, filter={"file": "f1.mp4"})] == [10] * 6  # many: the graph
        assert graph_searches == [1]
        assert index.search(q[:1], k=10, filter={"start": {"$lt": 0}}) == [[]]
