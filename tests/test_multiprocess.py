"""Two real processes (torchrun, gloo, CPU) train exactly like one process on the same global batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import recipe_dict
from mtvr import Retriever

HERE = Path(__file__).resolve().parent
TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")


def run(nproc, recipe_path, out, tmp_path, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    cmd = (
        [TORCHRUN, "--nproc_per_node", str(nproc), "--master_port", str(29500 + nproc + os.getpid() % 500)]
        if nproc > 1
        else [sys.executable]
    )
    proc = subprocess.run(
        cmd + [str(HERE / "ddp_worker.py"), str(recipe_path), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_two_processes_equal_one_process_on_the_global_batch(tmp_path, tiny_encoder_dir):
    torch.manual_seed(0)
    teacher = Retriever.from_text_encoder(str(tiny_encoder_dir), video_feature_dim=12, embed_dim=16)
    teacher.save_pretrained(tmp_path / "teacher")
    outs = {}
    for nproc in (1, 2):
        r = recipe_dict(tmp_path / f"p{nproc}", tiny_encoder_dir, epochs=2, n_train=40)  # 40 clips: 16 + 16 + 8
        r["teachers"] = [{"name": "en", "checkpoint": str(tmp_path / "teacher")}]
        r["optim"]["grad_clip"] = None
        path = tmp_path / f"recipe{nproc}.json"
        path.write_text(json.dumps(r))
        stdout = run(nproc, path, tmp_path / f"first{nproc}.safetensors", tmp_path)
        outs[nproc] = load_file(str(tmp_path / f"first{nproc}.safetensors"))
        # logs once: the main process alone prints
        assert stdout.count("epoch 1/2:") == 1 and stdout.count("epoch 2/2:") == 1, stdout
        assert stdout.count("student (c2kd)") == 1
        assert (tmp_path / f"p{nproc}" / "run" / "best" / "results.json").is_file()
    one, two = outs[1], outs[2]
    assert one.keys() == two.keys() and len(one) > 10
    assert torch.allclose(one["loss"], two["loss"], atol=1e-5, rtol=0), (one["loss"], two["loss"])
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-5, rtol=1e-4), k
    assert "global batch 16 over 2 process(es)" in stdout


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_resume_under_two_processes_and_a_changed_recipe_is_refused(tmp_path, tiny_encoder_dir):
    r = recipe_dict(tmp_path, tiny_encoder_dir, epochs=1, n_train=40)
    r["teachers"][0]["epochs"] = 1
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(r))
    run(2, path, tmp_path / "a.safetensors", tmp_path)
    r["optim"]["epochs"] = 2  # more epochs may be added on resume
    path.write_text(json.dumps(r))
    stdout = run(2, path, tmp_path / "b.safetensors", tmp_path, "--resume")
    assert stdout.count("resumed from") == 1 and stdout.count("epoch 2/2:") == 1
    assert "epoch 1/2:" not in stdout
    r["optim"]["lr"] = 0.5
    path.write_text(json.dumps(r))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.run(
        [sys.executable, str(HERE / "ddp_worker.py"), str(path), str(tmp_path / "c"), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "optim.lr: 0.003 -> 0.5" in proc.stderr
