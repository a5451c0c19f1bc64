"""Every option of every ``mtvr`` subcommand reaches the function it configures.

The test walks the real parser: for each subcommand it lists the options argparse knows, gives each one a
distinctive value, runs the real handler with its callees (the library functions it hands the work to)
replaced by recorders, and checks that each value arrived at the parameter it configures. An option added
to a parser without being passed on (the ``extract-features --engine`` bug) fails here, and so does an
option missing from the table below.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pytest

import mtvr.commands as commands
from mtvr.cli import build_parser, main
from mtvr.index import SearchHit

SKIP = {"help", "verbose", "version"}


class Calls:
    """What the handler passed to each callee: ``{callee: [(args, kwargs), ...]}``."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[tuple, dict]]] = {}

    def record(self, name: str, *args, **kwargs) -> None:
        self.seen.setdefault(name, []).append((args, kwargs))

    def got(self, name: str, param: str | int):
        assert name in self.seen, f"{name} was never called (calls: {sorted(self.seen)})"
        args, kwargs = self.seen[name][-1]
        return args[param] if isinstance(param, int) else kwargs[param]


def fake_retriever(calls: Calls, tmp: Path):
    class FakeIndex:
        recall_k, measured_recall, ef_search, nprobe, measured_on = 10, None, 128, 32, ""

        def __len__(self):
            return 1

        def tune(self, *args, **kwargs):
            calls.record("index.tune", *args, **kwargs)

    class FakeRetriever:
        index = FakeIndex()

        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            calls.record("Retriever.from_pretrained", *args, **kwargs)
            return cls()

        @classmethod
        def from_zero_shot(cls, *args, **kwargs):
            calls.record("Retriever.from_zero_shot", *args, **kwargs)
            return cls()

        def __getattr__(self, name):
            def method(*args, **kwargs):
                calls.record(f"Retriever.{name}", *args, **kwargs)
                if name == "search":
                    return [[SearchHit("v1", 0.5, 1)] for _ in args[0]]
                if name == "add_videos":
                    return types.SimpleNamespace(video_ids=["v1"], errors=[])
                if name == "add_feature_store":
                    return 1
                if name == "encode_text":
                    return f"EMBEDDED {args[0]}"
                return "https://example.invalid/x" if name == "push_to_hub" else None

            return method

    return FakeRetriever


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Replace every callee of every handler by a recorder."""
    import mtvr.dataset_publishing as publishing
    import mtvr.demo.pipeline as demo
    import mtvr.evaluation as evaluation
    import mtvr.retriever as retriever
    import mtvr.scale.sharded_index as sharded
    import mtvr.serve as serve
    import mtvr.train as train
    import mtvr.video.extract as extract

    c = Calls()
    monkeypatch.setattr(retriever, "Retriever", fake_retriever(c, tmp_path))

    def recorder(name, result=None):
        def fn(*args, **kwargs):
            c.record(name, *args, **kwargs)
            return result(*args, **kwargs) if callable(result) else result

        return fn

    report = types.SimpleNamespace(to_markdown=lambda: "| en |")
    monkeypatch.setattr(evaluation, "evaluate_dataset", recorder("evaluate_dataset", report))
    monkeypatch.setattr(evaluation, "results_entry", recorder("results_entry", {}))
    monkeypatch.setattr(extract, "clips_from_source", recorder("clips_from_source", ["clip"]))
    summary = types.SimpleNamespace(failed=0, done=1, skipped=0)
    monkeypatch.setattr(extract, "extract_features", recorder("extract_features", summary))

    class Index(types.SimpleNamespace):
        def __len__(self):
            return 1

    index = Index(kind="flat", recall_k=10, measured_recall=None, ef_search=1, nprobe=1)
    monkeypatch.setattr(sharded, "index_store_ray", recorder("index_store_ray", index))

    def built(builder, out, **kwargs):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "build_report.md").write_text("report")
        return {"counts": {}}

    monkeypatch.setattr(publishing, "build_dataset", recorder("build_dataset", built))
    monkeypatch.setattr(publishing, "push_dataset_folder", recorder("push_dataset_folder", "url"))
    monkeypatch.setattr(train, "load_recipe", recorder("load_recipe", "RECIPE"))
    monkeypatch.setattr(train, "train", recorder("train", types.SimpleNamespace(results=None)))
    monkeypatch.setattr(demo, "run_demo", recorder("run_demo", 0))
    monkeypatch.setattr(serve, "ServeSettings", recorder("ServeSettings", "SETTINGS"))
    monkeypatch.setattr(serve, "create_app", recorder("create_app", "APP"))
    monkeypatch.setitem(sys.modules, "uvicorn", types.SimpleNamespace(run=recorder("uvicorn.run")))
    return c


# command -> (argv, {option dest: (callee, parameter) or a check(calls, out)}); values are distinctive
def TEXT_ENCODER_ARGS(queries: Path) -> list[str]:  # noqa: N802 - a table row fragment
    return ["--text-encoder", "onnx-int8", "--check-queries", str(queries), "--min-agreement", "0.95"]


TEXT_ENCODER_CHECKS = {  # the queries file's non-empty lines reach the check; the encoder is switched after loading
    "text_encoder": ("Retriever.use_text_encoder", 0),
    "check_queries": lambda calls, out: (
        calls.got("Retriever.use_text_encoder", "check_queries") == ["a dog", "ein hund"]
    ),
    "min_agreement": ("Retriever.use_text_encoder", "min_agreement"),
}


def table(tmp: Path) -> dict[str, tuple[list[str], dict]]:
    token, queries = tmp / "token", tmp / "queries.txt"
    if tmp.is_dir():
        token.write_text("s3cret\n")
        queries.write_text("a dog\n\nein hund\n")
    return {
        "index": (
            [
                "index",
                "--model",
                "M",
                "--features",
                "F",
                "--out",
                str(tmp / "o"),
                "--kind",
                "hnsw",
                "--target-recall",
                "0.93",
                "--batch-size",
                "77",
                "--device",
                "cpu:7",
                "--segments",
                "window",
                "--tune-queries",
                str(queries),
                "--replace",
            ],
            {
                "model": ("Retriever.from_pretrained", 0),
                "device": ("Retriever.from_pretrained", "device"),
                "kind": ("Retriever.from_pretrained", "index_kind"),
                "target_recall": ("Retriever.from_pretrained", "target_recall"),
                "features": ("Retriever.add_feature_store", 0),
                "batch_size": ("Retriever.add_feature_store", "batch_size"),
                "out": ("Retriever.save_index", 0),
                "replace": ("Retriever.add_feature_store", "replace"),
                # Milvus locations (--uri/--backend/--writers/--milvus-token-file): not covered by this table
                "uri": None,
                "backend": None,
                "writers": None,
                "milvus_token_file": None,
                "segments": ("Retriever.add_feature_store", "segments"),
                "tune_queries": lambda calls, out: (
                    calls.got("index.tune", "queries") == "EMBEDDED ['a dog', 'ein hund']"
                ),
                # --engine, --shards, --address: the Ray path, checked by "index-ray"; --videos & co by "index-videos"
                "engine": None,
                "shards": None,
                "address": None,
                "videos": None,
                "window": None,
                "stride": None,
                "shot_threshold": None,
                "workers": None,
            },
        ),
        "index-videos": (
            [
                "index",
                "--model",
                "M",
                "--videos",
                "a.mp4",
                "b",
                "--out",
                str(tmp / "ov"),
                "--segments",
                "shots",
                "--window",
                "3.5",
                "--stride",
                "1.5",
                "--shot-threshold",
                "31",
                "--workers",
                "3",
            ],
            {
                "videos": ("clips_from_source", 0),
                "segments": ("Retriever.add_videos", "segments"),
                "window": ("Retriever.add_videos", "window"),
                "stride": ("Retriever.add_videos", "stride"),
                "shot_threshold": ("Retriever.add_videos", "shot_threshold"),
                "workers": ("Retriever.add_videos", "workers"),
                "out": ("Retriever.save_index", 0),
            },
        ),
        "index-ray": (
            [
                "index",
                "--engine",
                "ray",
                "--model",
                "M",
                "--features",
                "F",
                "--out",
                "O",
                "--kind",
                "IVF8,Flat",
                "--target-recall",
                "0.93",
                "--batch-size",
                "77",
                "--shards",
                "5",
                "--address",
                "ray://h:1",
                "--device",
                "cpu:7",
                "--segments",
                "window",
            ],
            {
                "engine": ("index_store_ray", None),  # called at all: the Ray path was taken
                "model": ("index_store_ray", 0),
                "features": ("index_store_ray", 1),
                "out": ("index_store_ray", 2),
                "kind": ("index_store_ray", "kind"),
                "target_recall": ("index_store_ray", "target_recall"),
                "batch_size": ("index_store_ray", "batch_size"),
                "shards": ("index_store_ray", "num_shards"),
                "address": ("index_store_ray", "address"),
                "device": ("index_store_ray", "device"),
                "segments": ("index_store_ray", "segments"),
            },
        ),
        "search": (
            [
                "search",
                "q one",
                "q two",
                "--model",
                "M",
                "--index",
                "I",
                "-k",
                "7",
                "--json",
                "--device",
                "cpu:7",
                "--filter",
                "file=a.mp4",
                "--filter",
                "year>=2020",
                "--group-by",
                "file",
                "--merge",
                "--no-nms",
                *TEXT_ENCODER_ARGS(queries),
            ],
            {
                **TEXT_ENCODER_CHECKS,
                "query": ("Retriever.search", 0),
                "model": ("Retriever.from_pretrained", 0),
                "device": ("Retriever.from_pretrained", "device"),
                "index": ("Retriever.load_index", 0),
                "milvus_token_file": None,  # Milvus locations: not covered by this table
                "k": ("Retriever.search", "k"),
                "json": lambda calls, out: json.loads(out)[0][0]["video_id"] == "v1",
                "filter": ("Retriever.search", "filter"),
                "group_by": ("Retriever.search", "group_by"),
                "merge": ("Retriever.search", "merge"),
                "no_nms": lambda calls, out: calls.got("Retriever.search", "nms") is False,
            },
        ),
        "evaluate": (
            [
                "evaluate",
                "--model",
                "M",
                "--dataset",
                "D",
                "--features",
                "F",
                "--split",
                "S",
                "--config",
                "C",
                "--languages",
                "de",
                "fr",
                "--out",
                str(tmp / "r.json"),
                "--device",
                "cpu:7",
            ],
            {
                "model": ("Retriever.from_pretrained", 0),
                "device": ("Retriever.from_pretrained", "device"),
                "dataset": ("evaluate_dataset", 1),
                "features": ("evaluate_dataset", 2),
                "split": ("evaluate_dataset", "split"),
                "config": ("evaluate_dataset", "config"),
                "languages": ("evaluate_dataset", "languages"),
                "out": lambda calls, out: (tmp / "r.json").is_file(),
            },
        ),
        "extract-features": (
            [
                "extract-features",
                "A",
                "B",
                "--out",
                "O",
                "--encoder",
                "E",
                "--num-frames",
                "5",
                "--workers",
                "3",
                "--shard-size",
                "9",
                "--split",
                "S",
                "--engine",
                "ray",
                "--address",
                "ray://h:1",
                "--batch-size",
                "11",
                "--device",
                "cpu:7",
                "--segments",
                "window",
                "--window",
                "3.5",
                "--stride",
                "1.5",
                "--shot-threshold",
                "31",
            ],
            {
                "segments": ("extract_features", "segments"),
                "window": ("extract_features", "window"),
                "stride": ("extract_features", "stride"),
                "shot_threshold": ("extract_features", "shot_threshold"),
                "source": ("clips_from_source", 0),
                "split": ("clips_from_source", "split"),
                "out": ("extract_features", 1),
                "encoder": ("extract_features", 2),
                "num_frames": ("extract_features", "num_frames"),
                "workers": ("extract_features", "workers"),
                "shard_size": ("extract_features", "shard_size"),
                "engine": ("extract_features", "engine"),
                "address": ("extract_features", "address"),
                "batch_size": ("extract_features", "clips_per_batch"),
                "device": ("extract_features", "device"),
            },
        ),
        "build-dataset": (
            [
                "build-dataset",
                "B",
                "--out",
                str(tmp / "ds"),
                "--data-dir",
                "DD",
                "--config",
                "C",
                "--languages",
                "de",
                "--backend",
                "apertium",
                "--backend-option",
                "num_beams=4",
                "--video-dir",
                "V",
                "--splits",
                "test",
                "--translations-file",
                "T",
                "--translation-cache",
                "TC",
                "--quality-threshold",
                "0.42",
                "--threshold-action",
                "drop",
                "--push-to-hub",
                "org/ds",
                "--private",
                "--token",
                "tok",
            ],
            {
                "builder": ("build_dataset", 0),
                "out": ("build_dataset", 1),
                "data_dir": ("build_dataset", "data_dir"),
                "config": ("build_dataset", "config_name"),
                "languages": ("build_dataset", "languages"),
                "backend": ("build_dataset", "backend"),
                "backend_option": ("build_dataset", "backend_options"),
                "video_dir": ("build_dataset", "video_dir"),
                "splits": ("build_dataset", "splits"),
                "translations_file": ("build_dataset", "translations_file"),
                "translation_cache": ("build_dataset", "translation_cache"),
                "quality_threshold": ("build_dataset", "quality_threshold"),
                "threshold_action": ("build_dataset", "threshold_action"),
                "push_to_hub": ("push_dataset_folder", 1),
                "private": ("push_dataset_folder", "private"),
                "token": ("push_dataset_folder", "token"),
            },
        ),
        "train": (
            ["train", "R.yaml", "--resume", "--set", "seed=3"],
            {
                "recipe": ("load_recipe", 0),
                "set": ("load_recipe", "overrides"),
                "resume": ("train", "resume"),
            },
        ),
        "push": (
            ["push", "MD", "org/m", "--token", "tok", "--private", "--message", "msg", "--revision", "rev"],
            {
                "model_dir": ("Retriever.from_pretrained", 0),
                "repo_id": ("Retriever.push_to_hub", 0),
                "token": ("Retriever.push_to_hub", "token"),
                "private": ("Retriever.push_to_hub", "private"),
                "message": ("Retriever.push_to_hub", "commit_message"),
                "revision": ("Retriever.push_to_hub", "revision"),
            },
        ),
        "zero-shot": (
            [
                "zero-shot",
                "--text",
                "T",
                "--vision",
                "V",
                "--num-frames",
                "5",
                "--out",
                str(tmp / "zs"),
                "--videos",
                "a.mp4",
                "b.mp4",
                "--index",
                "IX",
                "--device",
                "cpu:7",
            ],
            {
                "text": ("Retriever.from_zero_shot", "text"),
                "vision": ("Retriever.from_zero_shot", "vision"),
                "num_frames": ("Retriever.from_zero_shot", "num_frames"),
                "device": ("Retriever.from_zero_shot", "device"),
                "out": ("Retriever.save_pretrained", 0),
                "videos": ("Retriever.add_videos", 0),
                "index": ("Retriever.save_index", 0),
            },
        ),
        "serve": (
            [
                "serve",
                "M",
                "--index",
                "I",
                "--videos",
                "V",
                "--host",
                "127.0.0.9",
                "--port",
                "8123",
                "--token-file",
                str(token),
                "--cors-origin",
                "http://a",
                "--max-k",
                "17",
                "--device",
                "cpu:7",
                "--max-batch",
                "9",
                "--batch-wait-ms",
                "3.5",
                "--max-queue",
                "77",
                "--encoder-workers",
                "3",
                *TEXT_ENCODER_ARGS(queries),
            ],
            {
                **TEXT_ENCODER_CHECKS,
                "model": ("Retriever.from_pretrained", 0),
                "device": ("Retriever.from_pretrained", "device"),
                "index": ("Retriever.load_index", 0),
                "videos": ("create_app", "videos_dir"),
                "host": ("uvicorn.run", "host"),
                "port": ("uvicorn.run", "port"),
                "token_file": ("ServeSettings", "token"),
                "cors_origin": ("ServeSettings", "cors_origins"),
                "max_batch": ("ServeSettings", "max_batch"),
                "batch_wait_ms": ("ServeSettings", "batch_wait_ms"),
                "max_queue": ("ServeSettings", "max_queue"),
                "encoder_workers": ("ServeSettings", "encoder_workers"),
                "milvus_token_file": None,  # Milvus locations: not covered by this table
                "max_k": ("ServeSettings", "max_k"),
            },
        ),
        "demo": (
            ["demo", "--out", "DO", "--small", "--seed", "4", "--seeds", "3"],
            {
                "out": ("run_demo", 0),
                "small": ("run_demo", "small"),
                "seed": ("run_demo", "seed"),
                "seeds": ("run_demo", "seeds"),
            },
        ),
    }


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_table_covers_every_subcommand_and_every_option(tmp_path):
    subs = _subparsers(build_parser())
    assert sorted(subs) == sorted(c.NAME for c in commands.COMMANDS)
    rows = table(tmp_path)
    for name, sub in subs.items():
        dests = {a.dest for a in sub._actions if a.dest not in SKIP}
        assert dests == set(rows[name][1]), f"mtvr {name}: options without a check: {dests ^ set(rows[name][1])}"


def _expected(sub: argparse.ArgumentParser, argv: list[str], dest: str):
    """The value argparse gives ``dest`` for ``argv`` (what must arrive), as the handler passes it on."""
    value = getattr(sub.parse_args(argv), dest)
    if dest in ("set", "backend_option"):  # KEY=VALUE lists are passed on as dicts
        return {k: json.loads(v) for k, v in (item.split("=", 1) for item in value)}
    if dest == "token_file":
        return Path(value).read_text().strip()
    if dest in ("source", "videos"):
        return value if len(value) > 1 else value[0]
    if dest == "filter":
        from mtvr.filters import filter_from_args

        return filter_from_args(value)
    if dest == "query":
        return list(value)
    return value


@pytest.mark.parametrize("case", list(table(Path("/unused")).keys()))
def test_every_option_reaches_the_function_it_configures(case, calls, tmp_path, capsys):
    argv, checks = table(tmp_path)[case]
    sub = _subparsers(build_parser())[argv[0]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for dest, check in checks.items():
        if check is None:
            continue
        default = sub.get_default(dest)
        value = _expected(sub, argv[1:], dest)
        assert value != default, f"mtvr {argv[0]} --{dest}: the test must give a value other than the default"
        if callable(check):
            assert check(calls, out), f"mtvr {argv[0]} --{dest} had no effect"
            continue
        callee, param = check
        if param is None:
            assert callee in calls.seen
            continue
        assert calls.got(callee, param) == value, f"mtvr {argv[0]} --{dest} did not reach {callee}({param})"
