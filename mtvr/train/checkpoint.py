"""Training checkpoints as safetensors (model, loss parameters, optimizer state) + JSON, written atomically."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save, save_file

from ..atomic import atomic_folder, atomic_write_bytes

CKPT_RE = re.compile(r"^epoch-(\d{4})$")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{idx}.{key}"] = (
                (value if torch.is_tensor(value) else torch.tensor(value)).detach().cpu().contiguous()
            )
    return tensors, {"param_groups": json.dumps(sd["param_groups"])}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name in f.keys():
            idx, key = name.split(".", 1)
            state.setdefault(int(idx), {})[key] = f.get_tensor(name)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint needs: frozen parameters (``requires_grad`` false: a frozen pretrained text tower,
    its lower layers) are left out, since the run rebuilds them from the same pretrained checkpoint; writing
    a frozen multilingual-e5 (470 MB) at every epoch cost more than the epoch's training."""
    seen: dict[int, str] = {}
    frozen = {k for k, p in module.named_parameters() if not p.requires_grad}
    out = {}
    for k, v in module.state_dict().items():
        if k in frozen:
            continue
        if v.data_ptr() in seen and v.numel():  # tied weights are stored once
            continue
        seen[v.data_ptr()] = k
        out[k] = v.detach().cpu().contiguous()
    return out


def save_checkpoint(
    folder: Path,
    epoch: int,
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict,
    keep: int = 2,
) -> Path:
    target = folder / f"epoch-{epoch:04d}"
    with atomic_folder(target) as tmp:
        save_file(_state_dict(model), str(tmp / "model.safetensors"))
        loss_state = _state_dict(loss_fn)
        if loss_state:
            save_file(loss_state, str(tmp / "loss.safetensors"))
        tensors, meta = optimizer_tensors(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"), metadata=meta)
        (tmp / "trainer_state.json").write_text(
            json.dumps({**state, "epoch": epoch, "scheduler": scheduler.state_dict()}, indent=2)
        )
    for old in sorted(p for p in folder.iterdir() if CKPT_RE.match(p.name))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    done = sorted(p for p in folder.iterdir() if CKPT_RE.match(p.name) and (p / "trainer_state.json").is_file())
    return done[-1] if done else None


def load_checkpoint(
    path: Path, model: torch.nn.Module, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict:
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
    if (path / "loss.safetensors").is_file():
        loss_fn.load_state_dict(load_file(str(path / "loss.safetensors")))
    load_optimizer_tensors(optimizer, path / "optimizer.safetensors")
    state = json.loads((path / "trainer_state.json").read_text())
    scheduler.load_state_dict(state.pop("scheduler"))
    return state


BEST_WEIGHTS = "best.safetensors"


def save_best_weights(folder: Path, model: torch.nn.Module) -> Path:
    """The weights that training changes (trainable parameters and buffers) of the best epoch so far, in
    ``folder/best.safetensors`` (atomic). Frozen parameters are left out: they equal the model's at load time.
    The exported model folder is written once, from these, when training ends."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    tensors = {k: v for k, v in _state_dict(model).items() if k in trainable}
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / BEST_WEIGHTS
    atomic_write_bytes(target, save(tensors))
    return target


def load_best_weights(folder: Path, model: torch.nn.Module) -> bool:
    """Load :func:`save_best_weights`'s file into ``model``; ``False`` when there is none."""
    path = folder / BEST_WEIGHTS
    if not path.is_file():
        return False
    model.load_state_dict(load_file(str(path)), strict=False)
    return True
