"""The training loop: :class:`Trainer` trains one model (a teacher or the student) with a loss.

Built on ``accelerate``: the same code runs on the CPU, one GPU, several GPUs (DDP) and several
machines (``accelerate launch -m mtvr.cli train RECIPE``). Each process takes its share of the
batches. A :class:`~mtvr.train.config.TrainingConfig` says how to train (epochs, rates, batch, decay,
patience...); the loss says, through its registration (:mod:`mtvr.distill.registry`), which extra inputs it
needs (the teachers' outputs, their frame-level embeddings). Checkpoints are written atomically after every
epoch and the best epoch's weights kept beside them; ``resume=True`` continues from the last one and ends with
the same weights as an uninterrupted run with the same seed (on the CPU): the data order and the dropout RNG
of epoch ``e`` depend only on ``(seed, e)``. The pipeline that runs teachers, caches them, trains the student
and exports it once is :mod:`mtvr.train.pipeline`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..clipset import ClipSet
from ..distill import DistillInputs, spec_of
from ..errors import RecipeError
from ..evaluation import evaluate_clipset
from ..modeling import VideoTextModel
from ..retriever import Retriever
from .batches import epoch_loader
from .checkpoint import latest_checkpoint, load_best_weights, load_checkpoint, save_best_weights, save_checkpoint
from .config import TrainingConfig
from .distributed import gather_no_grad, gather_with_grad

logger = logging.getLogger(__name__)


def _log_info(line: str) -> None:
    """The default log: the ``mtvr.train.trainer`` logger at INFO (the ``mtvr`` CLI shows it)."""
    logger.info(line)


LOG_EVERY = 10  # steps between progress-bar loss updates

EARLY_STOPPING = "early stopping"
EPOCH_CAP = "epoch cap"


@dataclass
class FitResult:
    """What one :meth:`Trainer.fit` did: the best validation epoch (its weights are in
    ``checkpoints/best.safetensors``), the per-epoch history and why training stopped."""

    output_dir: Path
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    stop_reason: str = EPOCH_CAP  # EARLY_STOPPING or EPOCH_CAP

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"


@dataclass
class TeacherCache:
    """Frozen teachers' embeddings for every clip and sentence of the training set."""

    text: list[list[torch.Tensor]]  # per teacher: per clip, [n_sentences, E] (English captions)
    video: torch.Tensor  # [K, N, E]
    frames: torch.Tensor | None  # [K, N, T, E] normalised frame embeddings (TeachCLIP)
    _padded: torch.Tensor | None = None

    def text_of(self, clips: np.ndarray, sentences: np.ndarray) -> torch.Tensor:
        """``[K, b, E]``: each teacher's embedding of sentence ``sentences[i]`` of clip ``clips[i]``.

        One gather on a padded ``[K, N, S_max, E]`` tensor built once, not a Python loop per step.
        """
        if self._padded is None:
            k, n = len(self.text), len(self.text[0])
            s_max = max(t.shape[0] for t in self.text[0])
            padded = self.video.new_zeros((k, n, s_max, self.video.shape[-1]))
            for j, per_clip in enumerate(self.text):
                for i, emb in enumerate(per_clip):
                    padded[j, i, : emb.shape[0]] = emb
            self._padded = padded
        return self._padded[:, torch.as_tensor(clips), torch.as_tensor(sentences)]


def epochs_without_gain(curve: Sequence[float], min_delta: float = 0.0) -> int:
    """Epochs since the last one that beat the previous reference by more than ``min_delta`` (the early
    stopping rule: the reference moves only on such a gain)."""
    ref, ref_epoch = -math.inf, 0
    for epoch, value in enumerate(curve, 1):
        if value > ref + min_delta:
            ref, ref_epoch = value, epoch
    return len(curve) - ref_epoch


def stop_reason(history: Sequence[dict], config: TrainingConfig) -> str:
    """Why a training with this validation history stopped: :data:`EARLY_STOPPING` when the patience ran out,
    :data:`EPOCH_CAP` otherwise (the rule :meth:`Trainer.fit` applies after every epoch)."""
    since = epochs_without_gain([h["eval_mean_R@1"] for h in history], config.early_stopping_min_delta)
    patience = config.early_stopping_patience
    return EARLY_STOPPING if patience and since >= patience else EPOCH_CAP


def _adam(groups: list[dict], weight_decay: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters: 4x faster steps than the per-tensor loop on
    CPU for MiniLM, 19 vs 82 ms) where this torch and device have it; the per-tensor loop otherwise."""
    try:
        return torch.optim.Adam(groups, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(groups, weight_decay=weight_decay)


class Trainer:
    """Trains one model (a teacher or the student) on a :class:`ClipSet` with a distillation loss.

    Multi-process (``torchrun --nproc_per_node N -m mtvr.cli train``, ``accelerate launch --multi_gpu``):
    the batches of an epoch come from a DataLoader prepared by accelerate with ``split_batches=True``,
    every process encodes its share and the losses run on the embeddings gathered from all processes
    with gradients (:mod:`mtvr.train.distributed`), so N processes take the step one process would take
    on the same global batch. Logs, progress bars, evaluation and checkpoint writes happen on the main
    process only.
    """

    def __init__(
        self,
        model: VideoTextModel,
        tokenizer: Any,
        loss_fn: torch.nn.Module,
        languages: list[str],
        output_dir: Path,
        config: TrainingConfig,
        *,
        teachers: TeacherCache | None = None,
        progress: bool = True,
        log: Callable[[str], None] = _log_info,
        step_callback: Callable[[Trainer, int, torch.Tensor], None] | None = None,
        settings: dict | None = None,
    ) -> None:
        """``settings``: what a checkpoint must have been written under to be resumed (the pipeline passes the
        recipe; :func:`recipe_changes` lists the differences); by default the training config."""
        from accelerate import Accelerator, DataLoaderConfiguration

        self.config, self.languages, self.output_dir = config, languages, output_dir
        self.teachers, self.progress = teachers, progress
        self.settings = settings if settings is not None else {"optim": config.to_dict()}
        self.step_callback = step_callback
        # the loss says what it needs beyond the student's embeddings (its registration); an unregistered
        # loss module gets whatever teacher outputs are given
        spec = spec_of(loss_fn)
        if spec is not None and spec.needs_teacher and teachers is None:
            raise RecipeError(f"loss {spec.name!r} distils from teachers: pass their cached outputs (teachers=)")
        if spec is not None and spec.needs_frames and teachers is not None and teachers.frames is None:
            raise RecipeError(f"loss {spec.name!r} needs the teachers' frame embeddings: cache them with frames")
        self.needs_frames = (
            spec.needs_frames if spec is not None else teachers is not None and teachers.frames is not None
        )
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            cpu=not torch.cuda.is_available(),
            dataloader_config=DataLoaderConfiguration(split_batches=True, even_batches=True),
        )
        n_proc = self.accelerator.num_processes
        if config.batch_size % n_proc:
            raise RecipeError(
                f"batch_size {config.batch_size} is the global batch and must be a multiple of the {n_proc} processes"
            )
        self.log = log if self.accelerator.is_main_process else (lambda line: None)
        self.tokenizer = tokenizer
        encoder = [p for p in model.text_encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in encoder}
        heads = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        own = loss_fn.param_groups() if hasattr(loss_fn, "param_groups") else []
        own_ids = {id(p) for g in own for p in g["params"]}
        heads += [p for p in loss_fn.parameters() if id(p) not in own_ids]
        lr = config.lr
        groups = [{"params": encoder, "lr": config.text_encoder_lr or lr}, {"params": heads, "lr": lr}, *own]
        groups = [g for g in groups if g["params"]]  # a frozen text tower has no parameters to step
        optimizer = _adam(groups, config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.loss_fn = loss_fn.to(self.accelerator.device)

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def unwrapped(self) -> VideoTextModel:
        return self.accelerator.unwrap_model(self.model)

    @property
    def raw_optimizer(self) -> torch.optim.Optimizer:
        """The torch optimizer inside accelerate's wrapper (what checkpoints save and load)."""
        return getattr(self.optimizer, "optimizer", self.optimizer)

    def retriever(self) -> Retriever:
        return Retriever(self.unwrapped, self.tokenizer, device=self.accelerator.device)

    def _step_languages(self, epoch: int, step: int) -> list[str]:
        k = self.config.languages_per_step
        if not k or k >= len(self.languages):
            return self.languages
        rng = np.random.default_rng([self.config.seed, epoch, step, 2])
        return [self.languages[i] for i in sorted(rng.choice(len(self.languages), k, replace=False))]

    def _step_inputs(
        self, train: ClipSet, idx: np.ndarray, sent: np.ndarray, languages: list[str] | None = None
    ) -> DistillInputs:
        """Encode this process's clips ``idx`` and gather everything into the global batch."""
        dev = self.accelerator.device
        languages = languages or self.languages
        feats, mask = train.features[idx].to(dev), train.mask[idx].to(dev)
        # one tokenizer call per language: each language is padded to its own longest caption
        max_len, prompt = self.unwrapped.config.max_text_length, self.unwrapped.config.text_prompt
        encs = [
            self.unwrapped.tower.tokenize(
                self.tokenizer, [train.captions[l][i][sent[i]] for i in idx], max_len, dev, prompt
            )
            for l in languages
        ]
        emb, video, log_weights = self.model(features=feats, mask=mask, text_inputs=encs)
        b = len(idx)
        per_lang = {l: gather_with_grad(emb[k * b : (k + 1) * b]) for k, l in enumerate(languages)}
        glob = gather_no_grad(torch.as_tensor(idx, device=dev)).cpu()
        inputs = DistillInputs(
            per_lang,
            gather_with_grad(video),
            student_frame_log_weights=gather_with_grad(log_weights),
            frame_mask=gather_no_grad(mask),
        )
        if self.teachers is not None:
            tc, g = self.teachers, glob.numpy()
            inputs.teacher_text = tc.text_of(g, sent[g]).to(dev)
            inputs.teacher_video = tc.video[:, glob].to(dev)
            if self.needs_frames:
                inputs.teacher_frame_logits = torch.einsum(
                    "kbe,kbte->kbt", inputs.teacher_text, tc.frames[:, glob].to(dev)
                )
        return inputs

    def _check_resume(self, state: dict, path: Path) -> None:
        """Refuse to resume a run whose settings (the recipe) changed (anything but the number of epochs)."""
        old = state.get("recipe")
        if old is None:
            return
        changes = recipe_changes(old, self.settings)
        if changes:
            raise RecipeError(
                f"cannot resume from {path}: the recipe changed since that checkpoint ("
                + "; ".join(changes)
                + "). Restore the old values, or start a new output_dir."
            )

    def fit(self, train: ClipSet, evalset: ClipSet, resume: bool = False) -> FitResult:
        """Train up to ``config.epochs`` epochs with early stopping on ``evalset``'s mean R@1; the best epoch's
        weights are kept in ``checkpoints/best.safetensors`` (:meth:`load_best`), nothing is exported here."""
        acc = self.accelerator
        ckpt_dir = self.output_dir / "checkpoints"
        state = {"best_metric": -math.inf, "best_epoch": -1, "history": [], "recipe": self.settings}
        start = 0
        patience = self.config.early_stopping_patience
        min_delta = self.config.early_stopping_min_delta
        last = latest_checkpoint(ckpt_dir) if resume else None
        if last is not None:
            loaded = load_checkpoint(last, self.unwrapped, self.loss_fn, self.raw_optimizer, self.scheduler)
            self._check_resume(loaded, last)
            state.update(loaded)
            state["recipe"] = self.settings
            start = state["epoch"] + 1
            self.log(f"  resumed from {last} (epoch {state['epoch'] + 1} done)")
            since = epochs_without_gain([h["eval_mean_R@1"] for h in state["history"]], min_delta)
            if patience and since >= patience:  # the run had already stopped early: nothing is left to do
                self.log(f"  training had stopped early after epoch {start} (best: epoch {state['best_epoch']})")
                return FitResult(self.output_dir, state["best_epoch"], state["history"], EARLY_STOPPING)
        loader, sampler = epoch_loader(len(train), self.config.batch_size, self.config.seed)
        reason = EPOCH_CAP
        loader = acc.prepare(loader)
        for epoch in range(start, self.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(self.config.seed * 100_003 + epoch)
            rng = np.random.default_rng([self.config.seed, epoch, 1])
            sent = np.array([rng.integers(len(s)) for s in train.captions[self.languages[0]]])
            self.model.train()
            loader.set_epoch(epoch)  # accelerate's iteration counter (it re-sets the sampler's epoch from it)
            sampler.set_epoch(epoch)  # under several processes accelerate does not reach our sampler itself
            total, steps = torch.zeros((), device=acc.device), 0
            bar = tqdm(
                loader,
                desc=f"  epoch {epoch + 1}/{self.epochs}",
                leave=False,
                disable=not self.progress or not acc.is_local_main_process,
            )
            for step, idx in enumerate(bar):
                idx = idx.cpu().numpy()
                if len(idx) * acc.num_processes < 2:
                    continue  # a contrastive batch needs negatives (a lone last clip of one process)
                with acc.autocast():
                    loss, logs = self.loss_fn(self._step_inputs(train, idx, sent, self._step_languages(epoch, step)))
                acc.backward(loss)
                if self.step_callback is not None:
                    self.step_callback(self, step, loss.detach())
                if self.config.grad_clip:
                    acc.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                total, steps = total + loss.detach().float(), steps + 1
                if step % LOG_EVERY == 0:  # one device sync per logging step, not per loss term per step
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if steps == 0:
                raise RecipeError(
                    f"epoch {epoch + 1} trained no step: {len(train)} training clips with "
                    f"batch_size {self.config.batch_size}; a step needs at least 2 clips"
                )
            self.scheduler.step()
            entry = {"epoch": epoch + 1, "loss": float(total) / steps, "seconds": 0.0}
            if acc.is_main_process:
                self.model.eval()
                with acc.autocast():  # validation in the training precision (bf16 on CPU: 2.3x faster encoding)
                    report = evaluate_clipset(self.retriever(), evalset, self.languages)
                mean_r1 = report.mean()["R@1"]
                entry["eval_mean_R@1"] = mean_r1
                entry["seconds"] = round(time.perf_counter() - t0, 2)
                state["history"].append(entry)
                self.log(
                    f"  epoch {epoch + 1}/{self.epochs}: loss {entry['loss']:.4f}, "
                    f"validation mean R@1 {mean_r1:.1f} ({entry['seconds']:.1f} s)"
                )
                if mean_r1 > state["best_metric"]:
                    state["best_metric"], state["best_epoch"] = mean_r1, epoch + 1
                    state["best_eval"] = report.to_dict()
                    save_best_weights(ckpt_dir, self.unwrapped)
                save_checkpoint(
                    ckpt_dir, epoch, self.unwrapped, self.loss_fn, self.raw_optimizer, self.scheduler, state
                )
            acc.wait_for_everyone()
            # epochs since a gain of more than min_delta (the best checkpoint above follows every gain)
            since = epochs_without_gain([h["eval_mean_R@1"] for h in state["history"]], min_delta)
            stop = torch.tensor(int(bool(patience) and acc.is_main_process and since >= patience), device=acc.device)
            if int(gather_no_grad(stop.view(1)).max()):
                by = f" by more than {min_delta:g}" if min_delta else ""
                self.log(
                    f"  early stopping: validation R@1 has not improved{by} for {patience} epochs "
                    f"(best: epoch {state['best_epoch']})"
                )
                reason = EARLY_STOPPING
                break
        return FitResult(self.output_dir, state["best_epoch"], state["history"], reason)

    def load_best(self, result: FitResult) -> bool:
        """Put the best epoch's weights into the model; ``False`` when this run kept none (a run of an older mtvr,
        whose best epoch is only in its exported folder)."""
        return load_best_weights(result.checkpoint_dir, self.unwrapped)


def _unset(value: Any) -> bool:
    """A setting added after a checkpoint was written, at its default: null, false (an off switch such as
    ``text_centering``), or a block of those."""
    return value is None or value is False or (isinstance(value, dict) and all(_unset(v) for v in value.values()))


def recipe_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs (``optim.epochs`` and ``description`` may; a key that a
    later mtvr added, left at its null default, is no change)."""
    out = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if name in ("optim.epochs", "description", "optim.early_stopping_patience", "optim.early_stopping_min_delta"):
            continue
        if key not in old and _unset(new.get(key)):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += recipe_changes(a, b, f"{name}.")
        elif (
            isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a + b)
        ):
            for i, (x, y) in enumerate(zip(a, b)):
                out += recipe_changes(x, y, f"{name}.{i}.")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
