"""`train`: run a recipe. Teachers first (when not given), then the multilingual student.

Built on ``accelerate``: the same code runs on the CPU, one GPU, several GPUs (DDP) and several
machines (``accelerate launch -m mtvr.cli train RECIPE``). Each process takes its share of the
batches; teachers are frozen, evaluated under ``torch.inference_mode`` and their embeddings are
cached once for the whole training set (``cache_teachers``). Checkpoints are written atomically after
every epoch; ``resume=True`` continues from the last one and ends with the same weights as an
uninterrupted run with the same seed (on the CPU): the data order and the dropout RNG of epoch ``e``
depend only on ``(seed, e)``.
"""

from __future__ import annotations

import json
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
from ..clipset import load_clipset as _load_clipset
from ..config import DEFAULT_TEXT_TOWER, FrameEncoderConfig
from ..distill import DistillInputs, build_loss, loss_spec
from ..errors import DatasetError, FeatureStoreError, ModelLoadError, RecipeError
from ..evaluation import evaluate_clipset, results_entry, versions
from ..modeling import VideoTextModel
from ..retriever import Retriever
from ..video.store import FeatureStore
from .batches import epoch_loader
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .distributed import gather_no_grad, gather_with_grad, process_state
from .recipe import Recipe, TeacherSpec

logger = logging.getLogger(__name__)


def load_clipset(dataset: str, config: str, split: str, features: Any, languages: list[str]) -> ClipSet:
    """A split of the recipe's data; a dataset or feature-store problem is reported as a recipe error."""
    try:
        return _load_clipset(dataset, config, split, features, languages)
    except (DatasetError, FeatureStoreError) as exc:
        raise RecipeError(f"data: {exc}") from exc


def _log_info(line: str) -> None:
    """The default log: the ``mtvr.train.trainer`` logger at INFO (the ``mtvr`` CLI shows it)."""
    logger.info(line)


LOG_EVERY = 10  # steps between progress-bar loss updates


@dataclass
class TrainResult:
    output_dir: Path
    best_dir: Path
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)


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


def _adam(groups: list[dict], weight_decay: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters: 4x faster steps than the per-tensor loop on
    CPU for MiniLM, 19 vs 82 ms) where this torch and device have it; the per-tensor loop otherwise."""
    try:
        return torch.optim.Adam(groups, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(groups, weight_decay=weight_decay)


def _new_model(
    spec_text: str,
    aggregator: str,
    embed_dim: int,
    store: FeatureStore,
    languages: list[str],
    max_text_length: int = 64,
    seqtransf_layers: int = 2,
    text_tower: str = DEFAULT_TEXT_TOWER,
    text_prompt: str | None = None,
    trainable_layers: int | None = None,
) -> tuple[VideoTextModel, Any]:
    m = store.manifest
    model, tokenizer = VideoTextModel.from_text_encoder_with_tokenizer(
        spec_text,
        text_tower=text_tower,
        video_feature_dim=m.feature_dim,
        embed_dim=embed_dim,
        aggregator=aggregator,
        max_frames=max(m.num_frames, 1),
        max_text_length=max_text_length,
        seqtransf_layers=seqtransf_layers,
        languages=list(languages),
        text_prompt=text_prompt,
        frame_encoder=FrameEncoderConfig(
            name_or_path=m.encoder, num_frames=m.num_frames, image_size=m.image_size, sampling=m.sampling
        ),
    )
    if trainable_layers is not None:  # frozen as loaded: its outputs are the checkpoint's, shared per process
        model.freeze_text_layers(
            trainable_layers, shared_cache_key=f"{spec_text}|{text_tower}|{model.config.text_prompt}"
        )
    return model, tokenizer


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
        recipe: Recipe,
        model: VideoTextModel,
        tokenizer: Any,
        loss_fn: torch.nn.Module,
        languages: list[str],
        output_dir: Path,
        epochs: int,
        lr: float,
        teachers: TeacherCache | None = None,
        progress: bool = True,
        log: Callable[[str], None] = _log_info,
        text_encoder_lr: float | None = None,
        step_callback: Callable[[Trainer, int, torch.Tensor], None] | None = None,
    ) -> None:
        from accelerate import Accelerator, DataLoaderConfiguration

        self.recipe, self.languages, self.output_dir = recipe, languages, output_dir
        self.epochs, self.teachers, self.progress = epochs, teachers, progress
        self.step_callback = step_callback
        self.accelerator = Accelerator(
            mixed_precision=recipe.mixed_precision,
            cpu=not torch.cuda.is_available(),
            dataloader_config=DataLoaderConfiguration(split_batches=True, even_batches=True),
        )
        n_proc = self.accelerator.num_processes
        if recipe.optim.batch_size % n_proc:
            raise RecipeError(
                f"optim.batch_size {recipe.optim.batch_size} is the global batch and must be a multiple "
                f"of the {n_proc} processes"
            )
        self.log = log if self.accelerator.is_main_process else (lambda line: None)
        self.tokenizer = tokenizer
        encoder = [p for p in model.text_encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in encoder}
        heads = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        own = loss_fn.param_groups() if hasattr(loss_fn, "param_groups") else []
        own_ids = {id(p) for g in own for p in g["params"]}
        heads += [p for p in loss_fn.parameters() if id(p) not in own_ids]
        groups = [{"params": encoder, "lr": text_encoder_lr or lr}, {"params": heads, "lr": lr}, *own]
        groups = [g for g in groups if g["params"]]  # a frozen text tower has no parameters to step
        optimizer = _adam(groups, recipe.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=recipe.optim.lr_decay)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.loss_fn = loss_fn.to(self.accelerator.device)

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
        k = self.recipe.optim.languages_per_step
        if not k or k >= len(self.languages):
            return self.languages
        rng = np.random.default_rng([self.recipe.seed, epoch, step, 2])
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
            if tc.frames is not None:
                inputs.teacher_frame_logits = torch.einsum(
                    "kbe,kbte->kbt", inputs.teacher_text, tc.frames[:, glob].to(dev)
                )
        return inputs

    def _check_resume(self, state: dict, path: Path) -> None:
        """Refuse to resume a run whose recipe changed (anything but the number of epochs)."""
        old = state.get("recipe")
        if old is None:
            return
        changes = recipe_changes(old, self.recipe.to_dict())
        if changes:
            raise RecipeError(
                f"cannot resume from {path}: the recipe changed since that checkpoint ("
                + "; ".join(changes)
                + "). Restore the old values, or start a new output_dir."
            )

    def fit(self, train: ClipSet, evalset: ClipSet, resume: bool = False) -> TrainResult:
        acc = self.accelerator
        ckpt_dir = self.output_dir / "checkpoints"
        state = {"best_metric": -math.inf, "best_epoch": -1, "history": [], "recipe": self.recipe.to_dict()}
        start = 0
        patience = self.recipe.optim.early_stopping_patience
        min_delta = self.recipe.optim.early_stopping_min_delta
        last = latest_checkpoint(ckpt_dir) if resume else None
        if last is not None:
            loaded = load_checkpoint(last, self.unwrapped, self.loss_fn, self.raw_optimizer, self.scheduler)
            self._check_resume(loaded, last)
            state.update(loaded)
            state["recipe"] = self.recipe.to_dict()
            start = state["epoch"] + 1
            self.log(f"  resumed from {last} (epoch {state['epoch'] + 1} done)")
            since = epochs_without_gain([h["eval_mean_R@1"] for h in state["history"]], min_delta)
            if patience and since >= patience:  # the run had already stopped early: nothing is left to do
                self.log(f"  training had stopped early after epoch {start} (best: epoch {state['best_epoch']})")
                return TrainResult(self.output_dir, self.output_dir / "best", state["best_epoch"], state["history"])
        best_dir = self.output_dir / "best"
        loader, sampler = epoch_loader(len(train), self.recipe.optim.batch_size, self.recipe.seed)
        loader = acc.prepare(loader)
        for epoch in range(start, self.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(self.recipe.seed * 100_003 + epoch)
            rng = np.random.default_rng([self.recipe.seed, epoch, 1])
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
                if self.recipe.optim.grad_clip:
                    acc.clip_grad_norm_(self.model.parameters(), self.recipe.optim.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                total, steps = total + loss.detach().float(), steps + 1
                if step % LOG_EVERY == 0:  # one device sync per logging step, not per loss term per step
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if steps == 0:
                raise RecipeError(
                    f"epoch {epoch + 1} trained no step: {len(train)} training clips with "
                    f"optim.batch_size {self.recipe.optim.batch_size}; a step needs at least 2 clips"
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
                    self.retriever().save_pretrained(best_dir)
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
                break
        return TrainResult(self.output_dir, best_dir, state["best_epoch"], state["history"])


def recipe_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs (``optim.epochs`` and ``description`` may)."""
    out = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if name in ("optim.epochs", "description", "optim.early_stopping_patience", "optim.early_stopping_min_delta"):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += recipe_changes(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def _cache_teachers(teachers: list[Retriever], train: ClipSet, need_frames: bool) -> TeacherCache:
    texts, videos, frames = [], [], []
    for t in teachers:
        dev = t.device
        with torch.inference_mode():
            flat, owner = train.flat_captions("en")
            emb = torch.from_numpy(t.encode_text(flat))
            per_clip: list[list[torch.Tensor]] = [[] for _ in range(len(train))]
            for e, o in zip(emb, owner.tolist()):
                per_clip[o].append(e)
            texts.append([torch.stack(p) for p in per_clip])
            videos.append(
                torch.from_numpy(t.encode_video_features(list(train.features), num_frames=train.mask.sum(1).tolist()))
            )
            if need_frames:
                f = t.model.encode_frames(train.features.to(dev)).float().cpu()
                frames.append(torch.nn.functional.normalize(f, dim=-1))
    return TeacherCache(texts, torch.stack(videos), torch.stack(frames) if need_frames else None)


def _check_text_encoders(recipe: Recipe) -> None:
    """Every text encoder the run will load is found before anything trains (a missing student
    encoder used to surface only after the teachers had trained)."""
    from ..hub.download import resolve_folder

    needed = [(f"teachers.{i}.text_encoder", t.text_encoder) for i, t in enumerate(recipe.teachers) if not t.checkpoint]
    for key, name in [*needed, ("student.text_encoder", recipe.student.text_encoder)]:
        try:
            resolve_folder(name)
        except ModelLoadError as exc:
            raise RecipeError(f"{key}: {exc}") from None


def train(
    recipe: Recipe,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = _log_info,
    step_callback: Callable[[Trainer, int, torch.Tensor], None] | None = None,
) -> TrainResult:
    """Run a recipe end to end; returns where the best student was exported.

    Under several processes every process runs this function; only the main process logs and writes
    the exported folders, and the others wait for it before they read them.
    """
    proc = process_state()
    main_log = log if proc.is_main_process else (lambda line: None)
    torch.manual_seed(recipe.seed)
    out = Path(recipe.output_dir)
    d = recipe.data
    langs = list(dict.fromkeys(d.languages))
    if not Path(d.features).is_dir():
        raise RecipeError(f"data.features: feature store {d.features} not found; run `mtvr extract-features` first")
    store = FeatureStore(d.features)
    train_set = load_clipset(d.dataset, d.config, d.train_split, d.features, langs)
    eval_set = load_clipset(d.dataset, d.config, d.eval_split, d.features, langs)
    _check_text_encoders(recipe)
    given = {}
    for spec in recipe.teachers:  # teachers from checkpoints are checked before anything is trained
        if spec.checkpoint:
            t = given[spec.name] = Retriever.from_pretrained(spec.checkpoint)
            if t.config.video_feature_dim != store.manifest.feature_dim:
                raise RecipeError(
                    f"teacher {spec.name!r} takes {t.config.video_feature_dim}-d frame features but the "
                    f"feature store {d.features} holds {store.manifest.feature_dim}-d features"
                )
    teachers = [
        given.get(spec.name) or _teacher(recipe, spec, store, train_set, eval_set, langs, resume, progress, main_log)
        for spec in recipe.teachers
    ]
    main_log(
        f"student ({recipe.loss.name}): {recipe.student.text_encoder}, {len(train_set)} training clips, "
        f"languages {', '.join(langs)}, global batch {recipe.optim.batch_size} over {proc.num_processes} "
        f"process(es)"
    )
    s = recipe.student
    torch.manual_seed(recipe.seed)
    model, tokenizer = _new_model(
        s.text_encoder,
        s.aggregator,
        s.embed_dim,
        store,
        langs,
        s.max_text_length,
        s.seqtransf_layers,
        s.text_tower,
        s.text_prompt,
        s.trainable_layers,
    )
    loss_fn = recipe.build_loss()
    cache = (
        _cache_teachers(teachers, train_set, need_frames=loss_spec(recipe.loss.name).needs_frames) if teachers else None
    )
    trainer = Trainer(
        recipe,
        model,
        tokenizer,
        loss_fn,
        langs,
        out,
        recipe.optim.epochs,
        recipe.optim.lr,
        teachers=cache,
        progress=progress,
        log=main_log,
        text_encoder_lr=recipe.optim.text_encoder_lr,
        step_callback=step_callback,
    )
    result = trainer.fit(train_set, eval_set, resume=resume)
    if proc.is_main_process:
        best = Retriever.from_pretrained(result.best_dir)
        evals = [results_entry(evaluate_clipset(best, eval_set, langs), d.dataset, d.config, d.eval_split)]
        if d.test_split:
            test_set = load_clipset(d.dataset, d.config, d.test_split, d.features, langs)
            evals.append(results_entry(evaluate_clipset(best, test_set, langs), d.dataset, d.config, d.test_split))
        result.results = {
            "model": recipe.name,
            "best_epoch": result.best_epoch,
            "evaluations": evals,
            "history": result.history,
            "recipe": recipe.to_dict(),
            "versions": versions(),
        }
        best.save_pretrained(
            result.best_dir,
            extra_files={"results.json": json.dumps(result.results, indent=2), "recipe.yaml": recipe.to_yaml()},
        )
    proc.wait_for_everyone()
    return result


def _teacher(
    recipe: Recipe,
    spec: TeacherSpec,
    store: FeatureStore,
    train_set: ClipSet,
    eval_set: ClipSet,
    langs: list[str],
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
) -> Retriever:
    proc = process_state()
    out = Path(recipe.output_dir) / "teachers" / spec.name
    if resume and (out / "best" / "results.json").is_file():
        log(f"teacher {spec.name!r}: already trained at {out / 'best'}")
        return Retriever.from_pretrained(out / "best")
    t_langs = ["en"] if spec.mode == "english" else langs
    log(f"teacher {spec.name!r} ({spec.mode}): {spec.text_encoder}, {spec.epochs} epochs")
    model, tokenizer = _new_model(
        spec.text_encoder,
        spec.aggregator,
        spec.embed_dim,
        store,
        t_langs,
        text_tower=spec.text_tower,
        text_prompt=spec.text_prompt,
        trainable_layers=spec.trainable_layers,
    )
    trainer = Trainer(
        recipe,
        model,
        tokenizer,
        build_loss("contrastive", temperature=spec.temperature),
        t_langs,
        out,
        spec.epochs,
        spec.lr,
        progress=progress,
        log=log,
        text_encoder_lr=spec.text_encoder_lr,
    )
    result = trainer.fit(train_set, eval_set, resume=resume)
    if proc.is_main_process:
        teacher = Retriever.from_pretrained(result.best_dir)
        report = evaluate_clipset(teacher, eval_set, ["en"])
        teacher.save_pretrained(
            result.best_dir,
            extra_files={
                "results.json": json.dumps(
                    {
                        "model": spec.name,
                        "best_epoch": result.best_epoch,
                        "history": result.history,
                        "evaluations": [
                            results_entry(report, recipe.data.dataset, recipe.data.config, recipe.data.eval_split)
                        ],
                    },
                    indent=2,
                )
            },
        )
    proc.wait_for_everyone()
    return Retriever.from_pretrained(result.best_dir)
