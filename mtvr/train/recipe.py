"""Training recipes: the YAML files in ``models/`` that ``mtvr train`` runs and model cards quote.

A recipe is a typed schema (pydantic): every key, type and range is checked before anything trains,
``--set`` overrides go through the same checks, and an error names the recipe file and the key.
``optim.batch_size`` is the **global** batch: with N processes each takes ``batch_size / N`` clips of
every batch and the losses see all of them (see :mod:`mtvr.train.trainer`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ComponentError, RecipeError


class _Spec(BaseModel):
    # strict: `epochs: true` is not 1 and `lr: "1e-3"` is not a number; allow_inf_nan: `lr: .inf` is refused
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


def _check_aggregator(value: str) -> str:
    from ..aggregation import AGGREGATORS

    if value not in AGGREGATORS:
        raise ComponentError(f"unknown aggregator {value!r}; choose one of {sorted(AGGREGATORS)}")
    return value


def _check_tower(value: str) -> str:
    """A text tower kind is a name registered in :mod:`mtvr.text_towers` (built-in or added by a package)."""
    from ..text_towers import tower_kinds

    if value not in tower_kinds():
        raise ComponentError(f"unknown text tower kind {value!r}; choose one of {tower_kinds()}")
    return value


def _tower_field() -> Any:
    """``text_tower``: validated against the tower registry (the JSON schema lists the registered kinds)."""
    from ..config import DEFAULT_TEXT_TOWER

    def schema(s: dict[str, Any]) -> None:
        from ..text_towers import tower_kinds

        s["enum"] = tower_kinds()

    return Field(
        DEFAULT_TEXT_TOWER,
        description="the kind of text tower that reads text_encoder (mtvr.text_towers: transformers mean pooling, "
        "its sentence-transformers pipeline, CLIP...)",
        json_schema_extra=schema,
    )


class DataSpec(_Spec):
    dataset: str = Field("", description="folder written by `mtvr build-dataset`, or a Hub dataset id")
    config: str = "all"
    features: str = Field("", description="feature store folder (`mtvr extract-features`)")
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    train_split: str = "train"
    eval_split: str = "validation"
    test_split: str | None = None


_PROMPT = Field(None, description='prepended to every text; null = the tower authors\' query prompt (e5: "query: ")')
_TRAINABLE = Field(
    None,
    ge=0,
    description="train only the top N transformer layers of the text encoder (embeddings and lower layers "
    "frozen); 0 freezes the whole text tower, whose outputs are then computed once per text and cached; "
    "null trains all of it",
)
_CENTERING = Field(
    False,
    description="subtract the mean text-tower output over the training captions before the projection "
    "(VideoTextConfig.text_centering: anisotropic pretrained towers such as multilingual-e5 train far faster)",
)


class TeacherOptimSpec(_Spec):
    """A teacher's own optimisation settings; a key left null is the recipe's ``optim`` value (logged as such)."""

    batch_size: int | None = Field(None, ge=2, description="global batch of the teacher (null: optim.batch_size)")
    lr_decay: float | None = Field(None, gt=0, le=1, description="exponential decay per epoch (null: optim.lr_decay)")
    weight_decay: float | None = Field(None, ge=0, description="null: optim.weight_decay")
    grad_clip: float | None = Field(None, gt=0, description="null: optim.grad_clip")
    languages_per_step: int | None = Field(None, ge=1, description="null: optim.languages_per_step")
    early_stopping_patience: int | None = Field(None, ge=1, description="null: optim.early_stopping_patience")
    early_stopping_min_delta: float | None = Field(None, ge=0, description="null: optim.early_stopping_min_delta")


class TeacherSpec(_Spec):
    name: str = "teacher"
    checkpoint: str | None = Field(None, description="a Retriever folder / Hub id; trained first when missing")
    text_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    text_tower: str = _tower_field()
    aggregator: str = "mean"
    embed_dim: int = Field(256, ge=1)
    mode: Literal["english", "translate-train"] = "english"
    epochs: int = Field(5, ge=1)
    lr: float = Field(1e-4, gt=0)
    text_encoder_lr: float | None = Field(
        None, gt=0, description="the teacher's pretrained text encoder's own rate (null: lr, as its heads)"
    )
    trainable_layers: int | None = _TRAINABLE
    text_prompt: str | None = _PROMPT
    text_centering: bool = _CENTERING
    temperature: float = Field(0.05, gt=0)
    optim: TeacherOptimSpec = Field(
        default_factory=TeacherOptimSpec,
        description="the teacher's batch size, decay, clipping, patience...; unset keys are the recipe's optim.*",
    )

    _agg = field_validator("aggregator")(_check_aggregator)
    _tower = field_validator("text_tower")(_check_tower)


class StudentSpec(_Spec):
    text_encoder: str = "sentence-transformers/LaBSE"
    text_tower: str = _tower_field()
    aggregator: str = "mean"
    embed_dim: int = Field(256, ge=1)
    max_text_length: int = Field(64, ge=2)
    seqtransf_layers: int = Field(2, ge=1)
    trainable_layers: int | None = _TRAINABLE
    text_prompt: str | None = _PROMPT
    text_centering: bool = _CENTERING

    _agg = field_validator("aggregator")(_check_aggregator)
    _tower = field_validator("text_tower")(_check_tower)


class LossSpec(_Spec):
    name: str = "c2kd"
    options: dict[str, Any] = Field(default_factory=dict)


class OptimSpec(_Spec):
    lr: float = Field(1e-4, gt=0)
    text_encoder_lr: float | None = Field(None, gt=0, description="the pretrained text encoder's own rate")
    lr_decay: float = Field(0.9, gt=0, le=1, description="exponential decay per epoch")
    batch_size: int = Field(64, ge=2, description="global batch; a contrastive batch needs at least 2 clips")
    epochs: int = Field(5, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    languages_per_step: int | None = Field(None, ge=1, description="a random subset of languages per step")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop when validation R@1 has not improved for this many epochs"
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0, description="an improvement of validation mean R@1 (points) smaller than this does not count"
    )


class Recipe(_Spec):
    name: str = "mtvr-student"
    seed: int = Field(0, ge=0)
    data: DataSpec = Field(default_factory=DataSpec)
    teachers: list[TeacherSpec] = Field(default_factory=list)
    student: StudentSpec = Field(default_factory=StudentSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    output_dir: str = "runs/mtvr-student"
    cache_teachers: bool = True
    description: str = ""

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def build_loss(self) -> Any:
        """The recipe's loss module; the loss completes its options from the recipe (e.g. C2KD's learnable pooling
        gets one weight per teacher)."""
        from ..distill import build_loss, loss_spec

        return build_loss(
            self.loss.name, **loss_spec(self.loss.name).recipe_options(self.loss.options, len(self.teachers))
        )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One line per problem: ``where: key.path: what is wrong (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {str(err['loc'][-1])!r} at {loc!r}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r:.60})"
            lines.append(f"{where}: {loc}: {err['msg']}{shown}")
    return "\n".join(lines)


def load_recipe(path: str | os.PathLike | dict, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe (a YAML file or a dict), with ``--set``-style dotted overrides."""
    if isinstance(path, dict):
        data, where = path, "recipe"
    else:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise RecipeError(f"recipe {path} not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RecipeError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    data = _merge(data, overrides or {})
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, where)) from None
    validate(recipe, where)
    return recipe


def _merge(data: dict, overrides: dict) -> dict:
    out = dict(data)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            sub = out.get(head)
            if sub is not None and not isinstance(sub, dict):
                raise RecipeError(f"--set {key}: {head!r} is not a mapping")
            out[head] = _merge(dict(sub or {}), {rest: value})
        else:
            out[key] = value
    return out


def validate(recipe: Recipe, where: str = "recipe") -> None:
    """Checks across keys (the schema checks each key alone); the loss options are type-checked too."""
    from ..distill import LOSSES, NEEDS_TEACHER

    if recipe.loss.name not in LOSSES:
        raise RecipeError(f"{where}: loss.name: unknown loss {recipe.loss.name!r}; choose one of {sorted(LOSSES)}")
    if recipe.loss.name in NEEDS_TEACHER and not recipe.teachers:
        raise RecipeError(
            f"{where}: loss {recipe.loss.name!r} distils from teachers: add at least one under 'teachers'"
        )
    try:
        recipe.build_loss()
    except ValueError as exc:
        raise RecipeError(f"{where}: loss.options: {exc}") from None
    if not recipe.data.dataset:
        raise RecipeError(f"{where}: data.dataset is required (a folder from `mtvr build-dataset` or a Hub dataset id)")
    if not recipe.data.features:
        raise RecipeError(f"{where}: data.features is required (a feature store from `mtvr extract-features`)")
    if "en" not in recipe.data.languages and recipe.teachers:
        raise RecipeError(f"{where}: data.languages must include 'en': the teachers read the English captions")
    names = [t.name for t in recipe.teachers]
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: teachers: names must be unique, got {names}")
