"""Hub publishing: model card <-> results.json, evaluate.py, and downloads through a real local Hub server (olah)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from helpers import recipe_dict, youcook2_fixture
from mtvr import Retriever
from mtvr.hub.card import results_from_card, results_index
from mtvr.train import load_recipe, train

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_mtvrTESTtokenDoNotPrint1234567890"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoder_dir):
    tmp = tmp_path_factory.mktemp("hubmodel")
    r = recipe_dict(tmp, tiny_encoder_dir, loss="contrastive", epochs=2)
    r["teachers"] = []
    r["data"]["test_split"] = "validation"
    result = train(load_recipe(r), progress=False, log=lambda s: None)
    return {"model": result.best_dir, "dataset": tmp / "dataset", "features": tmp / "features", "tmp": tmp}


@pytest.fixture(scope="module")
def staged(trained):
    retriever = Retriever.from_pretrained(trained["model"])
    return retriever.stage_for_hub(trained["tmp"] / "staged", "mtvr/tiny-retriever")


def test_staged_folder_contents_and_card_round_trip(staged):
    names = sorted(p.name for p in staged.iterdir())
    assert {
        "config.json",
        "model.safetensors",
        "README.md",
        "results.json",
        "recipe.yaml",
        "evaluate.py",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= set(names)
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    card = ModelCard.load(staged / "README.md")
    results = json.loads((staged / "results.json").read_text())
    assert card.data.library_name == "mtvr" and set(card.data.language) == {"en", "de"}
    assert results_from_card(card) == results_index(results)  # model-index equals results.json
    assert len(card.data.eval_results) == 2 * 2 * 4  # 2 evaluations x 2 languages x 4 metrics
    assert 'Retriever.from_pretrained("mtvr/tiny-retriever")' in card.text and "Rouditchenko" in card.text
    assert "| de |" in card.text and "machine translations" in card.text


def test_evaluate_script_reproduces_and_detects_tampering(trained, staged, tmp_path):
    cmd = [
        sys.executable,
        str(staged / "evaluate.py"),
        "--dataset",
        str(trained["dataset"]),
        "--features",
        str(trained["features"]),
    ]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "reproduce within" in ok.stdout
    tampered = json.loads((staged / "results.json").read_text())
    tampered["evaluations"][0]["languages"]["de"]["t2v"]["R@1"] += 7.0
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    bad = subprocess.run(cmd + ["--results", str(tmp_path / "tampered.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and "de R@1: card says" in bad.stdout


def test_push_to_hub_stages_exactly_and_never_shows_the_token(trained, monkeypatch):
    import huggingface_hub

    seen = {}

    def fake_create_repo(self, repo_id, **kw):
        seen["create"] = (repo_id, kw.get("repo_type"), kw.get("exist_ok"))

    def fake_upload_folder(self, folder_path, repo_id, **kw):
        seen["upload"] = (repo_id, sorted(os.listdir(folder_path)), self.token)
        return "https://huggingface.co/mtvr/tiny-retriever/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    retriever = Retriever.from_pretrained(trained["model"])
    url = retriever.push_to_hub("mtvr/tiny-retriever", token=TOKEN)
    assert url.endswith("/commit/abc")
    assert seen["create"] == ("mtvr/tiny-retriever", "model", True)
    repo, files, token = seen["upload"]
    assert repo == "mtvr/tiny-retriever" and token == TOKEN
    assert {"README.md", "results.json", "evaluate.py", "model.safetensors", "config.json"} <= set(files)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git_repo(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "mtvr",
        "GIT_AUTHOR_EMAIL": "t@mtvr",
        "GIT_COMMITTER_NAME": "mtvr",
        "GIT_COMMITTER_EMAIL": "t@mtvr",
    }
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "upload"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory, staged, trained):
    """A real Hub-compatible server on 127.0.0.1 (olah, offline mode) serving git repositories."""
    from mtvr.dataset_publishing import build_dataset

    tmp = tmp_path_factory.mktemp("olah")
    data = youcook2_fixture(tmp / "yc2")
    sentences = {
        a["sentence"]
        for v in json.loads((data / "youcookii_annotations_trainval.json").read_text())["database"].values()
        for a in v["annotations"]
    }
    (tmp / "tr.jsonl").write_text("\n".join(json.dumps({"en": s, "de": f"[de] {s}"}) for s in sentences))
    build_dataset(
        "multi_youcook2",
        tmp / "yc2_out",
        data_dir=str(data),
        languages=["de"],
        backend="none",
        translations_file=str(tmp / "tr.jsonl"),
    )
    _git_repo(staged, tmp / "mirrors" / "models" / "mtvr" / "tiny-retriever")
    _git_repo(tmp / "yc2_out", tmp / "mirrors" / "datasets" / "mtvr" / "multi_youcook2")
    port = _free_port()
    (tmp / "olah.toml").write_text(
        textwrap.dedent(f"""
        [basic]
        host = "127.0.0.1"
        port = {port}
        repos-path = "{tmp / "repos"}"
        mirrors-path = ["{tmp / "mirrors"}"]
        mirror-netloc = "127.0.0.1:{port}"
        mirror-lfs-netloc = "127.0.0.1:{port}"
        [accessibility]
        offline = true
        """)
    )
    log = open(tmp / "olah.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "olah.server", "-c", str(tmp / "olah.toml")],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp / "olah.log").read_text()
            time.sleep(0.2)
    yield {"endpoint": f"http://127.0.0.1:{port}", "tmp": tmp, "dataset_dir": tmp / "yc2_out"}
    proc.terminate()
    proc.wait(timeout=10)


CLIENT = """
import json, sys
import numpy as np
from datasets import load_dataset
from mtvr import Retriever
hub = Retriever.from_pretrained("mtvr/tiny-retriever")
local = Retriever.from_pretrained(sys.argv[1])
texts = ["a small red circle", "ein kleiner roter kreis"]
feats = [np.random.default_rng(0).standard_normal((4, 12)).astype("float32")]
same_text = bool((hub.encode_text(texts) == local.encode_text(texts)).all())
same_video = bool((hub.encode_video_features(feats) == local.encode_video_features(feats)).all())
ds_hub = load_dataset("mtvr/multi_youcook2", "en")
ds_local = load_dataset(sys.argv[2], "en")
print(json.dumps({"hub_folder": str(hub.source_folder), "same_text": same_text, "same_video": same_video,
                  "splits": sorted(ds_hub), "same_rows": ds_hub["train"].to_list() == ds_local["train"].to_list(),
                  "n_train": len(ds_hub["train"]), "langs": sorted(ds_hub["train"][0]["captions"])}))
"""


def _client_env(server, tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=server["endpoint"],
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_DATASETS_CACHE=str(tmp / "hf_datasets"),
    )
    return env


def test_from_pretrained_and_load_dataset_over_http(hub_server, trained, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    out = subprocess.run(
        [sys.executable, str(script), str(trained["model"]), str(hub_server["dataset_dir"])],
        capture_output=True,
        text=True,
        env=_client_env(hub_server, tmp_path),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "models--mtvr--tiny-retriever" in res["hub_folder"]  # came through huggingface_hub's cache
    assert res["same_text"] and res["same_video"]
    assert res["splits"] == ["train", "validation"] and res["same_rows"] and res["n_train"] == 12
    assert res["langs"] == ["en"]


PUSH = """
import sys
from mtvr import Retriever
from mtvr.errors import MtvrError
r = Retriever.from_pretrained(sys.argv[1])
try:
    r.push_to_hub("mtvr/tiny-retriever", token=sys.argv[2])
except MtvrError as exc:
    print("ERROR", exc)
"""


def test_push_to_a_server_that_refuses_uploads_reports_without_the_token(hub_server, trained, tmp_path):
    script = tmp_path / "push.py"
    script.write_text(PUSH)
    out = subprocess.run(
        [sys.executable, str(script), str(trained["model"]), TOKEN],
        capture_output=True,
        text=True,
        env=_client_env(hub_server, tmp_path),
        timeout=300,
    )
    combined = out.stdout + out.stderr
    assert "ERROR uploading" in out.stdout and "mtvr/tiny-retriever" in out.stdout and "HTTP 405" in out.stdout
    assert TOKEN not in combined and TOKEN[3:15] not in combined
