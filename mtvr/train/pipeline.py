"""`train`: run a recipe end to end: teachers -> cache their outputs -> student -> one export.

Each model is trained by :class:`~mtvr.train.trainer.Trainer` with its own
:class:`~mtvr.train.config.TrainingConfig` (a teacher's comes from its own recipe entry, see
:meth:`TrainingConfig.for_teacher`). Teachers given as checkpoints are loaded, the others are trained first;
their outputs for the training set are cached once (frame-level embeddings too when the loss's registration
asks for them); the student is trained against them; each trained model's folder (weights, tokenizer,
``results.json``) is written exactly once, when its training ends, from the best validation epoch. The
returned :class:`TrainResult` says what happened (best epochs, why each training stopped, validation curves,
the teachers' folders and the exported student folder), so that callers never read the trainer's internals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..clipset import ClipSet
from ..clipset import load_clipset as _load_clipset
from ..config import DEFAULT_TEXT_TOWER, FrameEncoderConfig
from ..distill import build_loss, loss_spec
from ..errors import DatasetError, FeatureStoreError, ModelLoadError, RecipeError
from ..evaluation import evaluate_clipset, results_entry, versions
from ..modeling import VideoTextModel
from ..retriever import Retriever
from ..video.store import FeatureStore
from .config import TrainingConfig
from .distributed import process_state
from .recipe import Recipe, TeacherSpec
from .trainer import FitResult, TeacherCache, Trainer, _log_info, stop_reason

GIVEN = "given"  # stop reason of a teacher loaded from a checkpoint (not trained by this run)


@dataclass
class ModelRun:
    """One model of a pipeline run: its exported folder and how its training went."""

    name: str
    folder: Path  # the exported model folder (``Retriever.from_pretrained`` reads it)
    best_epoch: int | None  # the validation epoch whose weights were exported (None: not trained here)
    stop_reason: str  # "early stopping", "epoch cap", or "given" (a checkpoint named by the recipe)
    history: list[dict] = field(default_factory=list)  # per epoch: loss, validation mean R@1, seconds
    config: TrainingConfig | None = None  # how it was trained (None: not trained here)

    @property
    def validation_curve(self) -> list[float]:
        """Validation mean R@1 after each epoch."""
        return [h["eval_mean_R@1"] for h in self.history]

    @property
    def best_validation_r1(self) -> float | None:
        return next((h["eval_mean_R@1"] for h in self.history if h["epoch"] == self.best_epoch), None)

    @property
    def epochs_trained(self) -> int:
        return self.history[-1]["epoch"] if self.history else 0


@dataclass
class TrainResult:
    """What :func:`train` produced: the student (exported once, to ``best_dir``) and its teachers."""

    output_dir: Path
    student: ModelRun
    teachers: dict[str, ModelRun] = field(default_factory=dict)  # by the recipe's teacher name, in its order
    results: dict = field(default_factory=dict)  # the exported ``results.json`` (main process only)

    @property
    def best_dir(self) -> Path:
        """The exported student folder."""
        return self.student.folder

    @property
    def export_dir(self) -> Path:
        return self.student.folder

    @property
    def best_epoch(self) -> int:
        return self.student.best_epoch or 0

    @property
    def history(self) -> list[dict]:
        return self.student.history

    @property
    def stop_reason(self) -> str:
        return self.student.stop_reason

    @property
    def validation_curve(self) -> list[float]:
        return self.student.validation_curve


def load_clipset(dataset: str, config: str, split: str, features: Any, languages: list[str]) -> ClipSet:
    """A split of the recipe's data; a dataset or feature-store problem is reported as a recipe error."""
    try:
        return _load_clipset(dataset, config, split, features, languages)
    except (DatasetError, FeatureStoreError) as exc:
        raise RecipeError(f"data: {exc}") from exc


def new_model(
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
    text_centering: bool = False,
    centering_texts: ClipSet | None = None,
) -> tuple[VideoTextModel, Any]:
    """A new model (and its tokenizer) over the feature store's frame features, its text tower from
    ``spec_text``; ``trainable_layers`` freezes the lower layers (0: the whole tower, outputs cached);
    ``text_centering`` takes its mean from every caption of ``centering_texts`` in ``languages`` (training split)."""
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
        text_centering=text_centering,
        frame_encoder=FrameEncoderConfig(
            name_or_path=m.encoder, num_frames=m.num_frames, image_size=m.image_size, sampling=m.sampling
        ),
    )
    if trainable_layers is not None:  # frozen as loaded: its outputs are the checkpoint's, shared per process
        model.freeze_text_layers(
            trainable_layers, shared_cache_key=f"{spec_text}|{text_tower}|{model.config.text_prompt}"
        )
    if text_centering:
        if centering_texts is None:
            raise RecipeError("text_centering needs the training captions")
        model.set_text_mean(_mean_tower_output(model, tokenizer, centering_texts, languages))
    return model, tokenizer


def distinct_captions(clips: ClipSet, languages: list[str]) -> list[str]:
    """Every distinct caption of ``clips`` in ``languages``, shortest first, ties in text order.

    The order must not depend on the process: the captions are encoded in batches padded to their longest
    member, and a different batch composition changes the tower's outputs in the last bits (more under bf16
    autocast), which was enough for two runs of one seed to stop the teacher at different epochs. A set's order
    of strings changes with every process's hash seed; sorting on (length, text) does not."""
    return sorted({t for lang in languages for caps in clips.captions[lang] for t in caps}, key=lambda t: (len(t), t))


def _mean_tower_output(model: VideoTextModel, tokenizer: Any, clips: ClipSet, languages: list[str]) -> torch.Tensor:
    """The mean pooled text-tower output over every caption of ``clips`` in ``languages`` (distinct texts once).

    For a frozen tower this also fills its per-text cache in large batches, before the first step."""
    texts = distinct_captions(clips, languages)
    total, n = None, 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():  # not inference_mode: the cached outputs are later inputs of trained projections
        for i in range(0, len(texts), 256):
            batch = texts[i : i + 256]
            enc = model.tower.tokenize(tokenizer, batch, model.config.max_text_length, device, model.config.text_prompt)
            pooled = model.text_tower_outputs(**enc).float().sum(0)
            total, n = (pooled if total is None else total + pooled), n + len(batch)
    model.train(was_training)
    assert total is not None
    return total / n


def cache_teachers(teachers: list[Retriever], train: ClipSet, need_frames: bool) -> TeacherCache:
    """Every teacher's embeddings of every English training caption and clip (and, when the loss asks for
    them, its normalised frame-level embeddings), computed once under ``torch.inference_mode``."""
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


def export_best(
    trainer: Trainer, fit: FitResult, folder: Path, results_of: Callable[[Retriever], dict], extra: dict[str, str]
) -> dict:
    """Write ``folder`` once: the best epoch's weights, the tokenizer, ``results.json`` (``results_of`` evaluates
    the staged folder as a user will load it) and ``extra`` files. Returns the results."""
    if trainer.load_best(fit):
        source = trainer.retriever()
    else:  # a run of an older mtvr, already finished: its best epoch is only in its exported folder
        source = Retriever.from_pretrained(folder)
    results: dict = {}

    def add_results(staged: Path) -> dict[str, str]:
        results.update(results_of(Retriever.from_pretrained(staged)))
        return {"results.json": json.dumps(results, indent=2), **extra}

    source.save_pretrained(folder, extra_files=add_results)
    return results


def train(
    recipe: Recipe,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = _log_info,
    step_callback: Callable[[Trainer, int, torch.Tensor], None] | None = None,
) -> TrainResult:
    """Run a recipe end to end; returns the exported student folder and how each model's training went.

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
    given: dict[str, Retriever] = {}
    for spec in recipe.teachers:  # teachers from checkpoints are checked before anything is trained
        if spec.checkpoint:
            t = given[spec.name] = Retriever.from_pretrained(spec.checkpoint)
            if t.config.video_feature_dim != store.manifest.feature_dim:
                raise RecipeError(
                    f"teacher {spec.name!r} takes {t.config.video_feature_dim}-d frame features but the "
                    f"feature store {d.features} holds {store.manifest.feature_dim}-d features"
                )
    teachers: list[Retriever] = []
    teacher_runs: dict[str, ModelRun] = {}
    for spec in recipe.teachers:
        if spec.name in given:
            teacher = given[spec.name]
            folder = teacher.source_folder or Path(spec.checkpoint or "")
            teacher_runs[spec.name] = ModelRun(spec.name, folder, None, GIVEN)
        else:
            teacher, teacher_runs[spec.name] = _teacher(
                recipe, spec, store, train_set, eval_set, langs, resume, progress, main_log
            )
        teachers.append(teacher)
    config = TrainingConfig.for_student(recipe)
    main_log(
        f"student ({recipe.loss.name}): {recipe.student.text_encoder}, {len(train_set)} training clips, "
        f"languages {', '.join(langs)}, global batch {config.batch_size} over {proc.num_processes} "
        f"process(es)"
    )
    s = recipe.student
    torch.manual_seed(recipe.seed)
    model, tokenizer = new_model(
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
        s.text_centering,
        train_set,
    )
    loss_fn = recipe.build_loss()
    # the loss's registration says whether it reads the teachers' frame-level embeddings too
    cache = (
        cache_teachers(teachers, train_set, need_frames=loss_spec(recipe.loss.name).needs_frames) if teachers else None
    )
    trainer = Trainer(
        model,
        tokenizer,
        loss_fn,
        langs,
        out,
        config,
        teachers=cache,
        progress=progress,
        log=main_log,
        step_callback=step_callback,
        settings=recipe.to_dict(),
    )
    fit = trainer.fit(train_set, eval_set, resume=resume)
    best_dir = out / "best"
    results: dict = {}
    if proc.is_main_process:

        def student_results(exported: Retriever) -> dict:
            evals = [results_entry(evaluate_clipset(exported, eval_set, langs), d.dataset, d.config, d.eval_split)]
            if d.test_split:
                test_set = load_clipset(d.dataset, d.config, d.test_split, d.features, langs)
                evals.append(
                    results_entry(evaluate_clipset(exported, test_set, langs), d.dataset, d.config, d.test_split)
                )
            return {
                "model": recipe.name,
                "best_epoch": fit.best_epoch,
                "stop_reason": fit.stop_reason,
                "evaluations": evals,
                "history": fit.history,
                "recipe": recipe.to_dict(),
                "versions": versions(),
            }

        results = export_best(trainer, fit, best_dir, student_results, {"recipe.yaml": recipe.to_yaml()})
    proc.wait_for_everyone()
    student = ModelRun(recipe.name, best_dir, fit.best_epoch, fit.stop_reason, fit.history, config)
    return TrainResult(out, student, teacher_runs, results)


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
) -> tuple[Retriever, ModelRun]:
    """Train one teacher (contrastive, on English or on every language) with its own training config."""
    proc = process_state()
    out = Path(recipe.output_dir) / "teachers" / spec.name
    best_dir = out / "best"
    config = TrainingConfig.for_teacher(recipe, spec)
    if resume and (best_dir / "results.json").is_file():
        log(f"teacher {spec.name!r}: already trained at {best_dir}")
        done = json.loads((best_dir / "results.json").read_text())
        history = done.get("history", [])  # a teacher trained by an older mtvr may have none
        reason = done.get("stop_reason") or stop_reason(history, config)
        run = ModelRun(spec.name, best_dir, done.get("best_epoch"), reason, history, config)
        return Retriever.from_pretrained(best_dir), run
    t_langs = ["en"] if spec.mode == "english" else langs
    log(f"teacher {spec.name!r} ({spec.mode}): {spec.text_encoder}, {config.describe()}")
    model, tokenizer = new_model(
        spec.text_encoder,
        spec.aggregator,
        spec.embed_dim,
        store,
        t_langs,
        text_tower=spec.text_tower,
        text_prompt=spec.text_prompt,
        trainable_layers=spec.trainable_layers,
        text_centering=spec.text_centering,
        centering_texts=train_set,
    )
    trainer = Trainer(
        model,
        tokenizer,
        build_loss("contrastive", temperature=spec.temperature),
        t_langs,
        out,
        config,
        progress=progress,
        log=log,
        settings=recipe.to_dict(),
    )
    fit = trainer.fit(train_set, eval_set, resume=resume)
    if proc.is_main_process:

        def teacher_results(exported: Retriever) -> dict:
            report = evaluate_clipset(exported, eval_set, ["en"])
            d = recipe.data
            return {
                "model": spec.name,
                "best_epoch": fit.best_epoch,
                "stop_reason": fit.stop_reason,
                "training": config.to_dict(),
                "history": fit.history,
                "evaluations": [results_entry(report, d.dataset, d.config, d.eval_split)],
            }

        export_best(trainer, fit, best_dir, teacher_results, {})
    proc.wait_for_everyone()
    run = ModelRun(spec.name, best_dir, fit.best_epoch, fit.stop_reason, fit.history, config)
    return Retriever.from_pretrained(best_dir), run
