"""How one model is trained: the :class:`TrainingConfig` that :class:`~mtvr.train.trainer.Trainer` reads.

A recipe describes a whole run (data, teachers, student, loss); the trainer trains one model and needs only
the settings below. :meth:`TrainingConfig.for_student` takes them from the recipe's ``optim``;
:meth:`TrainingConfig.for_teacher` from the teacher's own entry (``epochs``, ``lr``, ``text_encoder_lr``, and
its ``optim`` block), falling back to the recipe's ``optim`` only for keys the teacher leaves unset, and says
which (``inherited``), so that a teacher never takes the student's batch size, decay or patience silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import RecipeError

if TYPE_CHECKING:
    from .recipe import Recipe, TeacherSpec

# the optimisation keys a teacher may set in its own ``optim`` block; unset ones are the recipe's ``optim.*``
TEACHER_OPTIM_KEYS = (
    "batch_size",
    "lr_decay",
    "weight_decay",
    "grad_clip",
    "languages_per_step",
    "early_stopping_patience",
    "early_stopping_min_delta",
)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything :class:`~mtvr.train.trainer.Trainer` needs to train one model.

    Args:
        epochs: the epoch cap.
        lr: learning rate of the heads (projections, temporal pooling) and of the loss's own parameters.
        text_encoder_lr: the pretrained text encoder's own rate (``None``: ``lr``).
        lr_decay: exponential decay of every rate per epoch.
        batch_size: the **global** batch (split over processes); a contrastive batch needs at least 2 clips.
        weight_decay: Adam's L2 weight decay.
        grad_clip: gradient-norm clipping (``None``: none).
        languages_per_step: a random subset of this many languages per step (``None``: all).
        early_stopping_patience: stop when validation mean R@1 has not improved for this many epochs.
        early_stopping_min_delta: a validation gain (points) not above this does not count.
        seed: data order, caption choice and dropout RNG of epoch ``e`` depend only on ``(seed, e)``.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` (accelerate's autocast).
        inherited: the keys taken from the recipe's ``optim`` (a teacher that did not set them); for logs.
    """

    epochs: int
    lr: float
    text_encoder_lr: float | None = None
    lr_decay: float = 0.9
    batch_size: int = 64
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    languages_per_step: int | None = None
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    seed: int = 0
    mixed_precision: str = "no"
    inherited: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise RecipeError(f"training config: epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise RecipeError(f"training config: batch_size {self.batch_size}: a contrastive batch needs 2 clips")
        if not self.lr > 0 or (self.text_encoder_lr is not None and not self.text_encoder_lr > 0):
            raise RecipeError(
                f"training config: learning rates must be positive, got {self.lr}, {self.text_encoder_lr}"
            )
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise RecipeError(
                f"training config: mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}"
            )

    @classmethod
    def for_student(cls, recipe: Recipe) -> TrainingConfig:
        """The student's settings: the recipe's ``optim``, ``seed`` and ``mixed_precision``."""
        o = recipe.optim
        return cls(
            epochs=o.epochs,
            lr=o.lr,
            text_encoder_lr=o.text_encoder_lr,
            seed=recipe.seed,
            mixed_precision=recipe.mixed_precision,
            **{k: getattr(o, k) for k in TEACHER_OPTIM_KEYS},
        )

    @classmethod
    def for_teacher(cls, recipe: Recipe, spec: TeacherSpec) -> TrainingConfig:
        """A teacher's settings: its own ``epochs``, ``lr``, ``text_encoder_lr`` and ``optim.*``; a key its
        ``optim`` leaves unset (null) is the recipe's ``optim`` value, and is listed in ``inherited``."""
        own = spec.optim.model_dump()
        inherited = tuple(k for k in TEACHER_OPTIM_KEYS if own.get(k) is None)
        values = {k: getattr(recipe.optim, k) if k in inherited else own[k] for k in TEACHER_OPTIM_KEYS}
        return cls(
            epochs=spec.epochs,
            lr=spec.lr,
            text_encoder_lr=spec.text_encoder_lr,
            seed=recipe.seed,
            mixed_precision=recipe.mixed_precision,
            inherited=inherited,
            **values,
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (``inherited`` left out)."""
        out = asdict(self)
        out.pop("inherited")
        return out

    def describe(self) -> str:
        """One line for the training log: the settings, and which came from the recipe's ``optim``."""
        line = (
            f"{self.epochs} epochs, lr {self.lr:g}"
            + (f" (text encoder {self.text_encoder_lr:g})" if self.text_encoder_lr else "")
            + f", batch {self.batch_size}, decay {self.lr_decay:g}/epoch, weight decay {self.weight_decay:g}, "
            f"patience {self.early_stopping_patience or 'none'}"
        )
        if self.inherited:
            line += f"; from the recipe's optim: {', '.join(self.inherited)}"
        return line
