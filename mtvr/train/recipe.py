"""Training recipes: the YAML files in ``models/`` that ``mtvr train`` runs and model cards quote.

Every key is checked before training starts; an unknown key is an error that names it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..errors import RecipeError


@dataclass
class DataSpec:
    dataset: str = ""             # folder written by `mtvr build-dataset`, or a Hub dataset id
    config: str = "all"
    features: str = ""            # feature store folder (`mtvr extract-features`)
    languages: list[str] = field(default_factory=lambda: ["en"])
    train_split: str = "train"
    eval_split: str = "validation"
    test_split: str | None = None


@dataclass
class TeacherSpec:
    name: str = "teacher"
    checkpoint: str | None = None  # a Retriever folder / Hub id; trained first when missing
    text_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    aggregator: str = "mean"
    embed_dim: int = 256
    mode: str = "english"          # english | translate-train (when trained here)
    epochs: int = 5
    lr: float = 1e-4
    temperature: float = 0.05


@dataclass
class StudentSpec:
    text_encoder: str = "sentence-transformers/LaBSE"
    aggregator: str = "mean"
    embed_dim: int = 256
    max_text_length: int = 64
    seqtransf_layers: int = 2


@dataclass
class LossSpec:
    name: str = "c2kd"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimSpec:
    lr: float = 1e-4
    text_encoder_lr: float | None = None  # the pretrained text encoder's own rate (None: lr)
    lr_decay: float = 0.9          # exponential decay per epoch
    batch_size: int = 64
    epochs: int = 5
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    languages_per_step: int | None = None  # a random subset of the languages at each step (None: all)


@dataclass
class Recipe:
    name: str = "mtvr-student"
    seed: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    teachers: list[TeacherSpec] = field(default_factory=list)
    student: StudentSpec = field(default_factory=StudentSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    mixed_precision: str = "no"    # no | fp16 | bf16
    output_dir: str = "runs/mtvr-student"
    cache_teachers: bool = True
    description: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
                          + f"; known keys: {sorted(names)}")
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        sub = {DataSpec, StudentSpec, LossSpec, OptimSpec}
        if hint in sub:
            kwargs[key] = _build(hint, value, f"{where}.{key}")
        elif key == "teachers":
            if not isinstance(value, list):
                raise RecipeError(f"{where}.teachers: expected a list")
            kwargs[key] = [_build(TeacherSpec, v, f"{where}.teachers[{i}]") for i, v in enumerate(value)]
        else:
            kwargs[key] = value
    return cls(**kwargs)


def load_recipe(path: str | os.PathLike | dict, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe (a YAML file or a dict). Relative paths resolve against the file's folder."""
    base = None
    if isinstance(path, dict):
        data = path
    else:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe {path} not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise RecipeError(f"{path}: not valid YAML ({exc})") from None
        base = path.parent
    data = _merge(data, overrides or {})
    recipe = _build(Recipe, data, str(path) if base else "recipe")
    validate(recipe)
    return recipe


def _merge(data: dict, overrides: dict) -> dict:
    out = dict(data)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            out[head] = _merge(dict(out.get(head) or {}), {rest: value})
        else:
            out[key] = value
    return out


def validate(recipe: Recipe) -> None:
    from ..aggregation import AGGREGATORS
    from ..distill import LOSSES, NEEDS_TEACHER

    if recipe.loss.name not in LOSSES:
        raise RecipeError(f"loss.name: unknown loss {recipe.loss.name!r}; choose one of {sorted(LOSSES)}")
    if recipe.loss.name in NEEDS_TEACHER and not recipe.teachers:
        raise RecipeError(f"loss {recipe.loss.name!r} distils from teachers: add at least one under 'teachers'")
    for agg in [recipe.student.aggregator] + [t.aggregator for t in recipe.teachers]:
        if agg not in AGGREGATORS:
            raise RecipeError(f"unknown aggregator {agg!r}; choose one of {sorted(AGGREGATORS)}")
    for t in recipe.teachers:
        if t.mode not in ("english", "translate-train"):
            raise RecipeError(f"teacher {t.name!r}: mode must be 'english' or 'translate-train', got {t.mode!r}")
    if recipe.mixed_precision not in ("no", "fp16", "bf16"):
        raise RecipeError(f"mixed_precision must be no, fp16 or bf16, got {recipe.mixed_precision!r}")
    if not recipe.data.dataset:
        raise RecipeError("data.dataset is required (a folder from `mtvr build-dataset` or a Hub dataset id)")
    if not recipe.data.features:
        raise RecipeError("data.features is required (a feature store from `mtvr extract-features`)")
    if "en" not in recipe.data.languages and recipe.teachers:
        raise RecipeError("data.languages must include 'en': the teachers read the English captions")
