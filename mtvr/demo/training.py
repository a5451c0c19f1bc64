"""The demo's training stages (3 and 4) for one seed, and how a training run is summarised.

Everything comes from the training pipeline's result (:class:`mtvr.train.TrainResult`): the teachers' folders
and runs, best epochs, why each training stopped, the validation curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .recipes import demo_recipe
from .stage import Stage

TEACHER_MIN_VAL_R1 = 5.0  # a teacher under this validation R@1 (%) has not learned: the demo says so


def train_seed(out: Path, s: int, seed: int, small: bool, stage: Stage) -> dict[str, Any]:
    """Stages 3-4 for one seed: the English teacher and the C2KD student, then the translate-train baseline
    (same student, optimiser and seed). Returns the runs, the recipes and the teacher's validation R@1."""
    from ..train import train

    tag = "" if s == seed else f" (seed {s})"
    recipes = {
        name: demo_recipe(name, out / ("" if s == seed else f"seed{s}"), small, s) for name in ("baseline", "c2kd")
    }
    for r in recipes.values():  # every seed reads the one dataset and feature store
        r.data.dataset, r.data.features = str(out / "dataset"), str(out / "features")
    spec = recipes["c2kd"].teachers[0]
    with stage(3, f"train the English teacher ({spec.text_encoder}) and the C2KD student{tag}"):
        c2kd_run = train(recipes["c2kd"], resume=True, progress=False)
        teacher = next(iter(c2kd_run.teachers.values()))
        if teacher.history:  # a teacher trained by an older mtvr has none
            stage.say(f"teacher: {stopped_line(teacher)}")
        teacher_val = teacher_validation_r1(teacher.folder)
        if teacher_val < TEACHER_MIN_VAL_R1:
            stage.say(
                f"WARNING: the English teacher{tag} did not learn (validation R@1 {teacher_val:.1f}): "
                "this seed's C2KD distils from a collapsed teacher and its comparison says nothing about C2KD"
            )
        stage.say(stopped_line(c2kd_run.student))
    with stage(4, f"train the translate-train baseline (same student, optimiser and seed){tag}"):
        base_run = train(recipes["baseline"], resume=True, progress=False)
        stage.say(stopped_line(base_run.student))
    return {"c2kd": c2kd_run, "baseline": base_run, "teacher_val": teacher_val, "recipes": recipes}


def teacher_validation_r1(folder: Path) -> float:
    """The exported teacher's validation mean text-to-video R@1 (its ``results.json``)."""
    import json

    return json.loads((folder / "results.json").read_text())["evaluations"][0]["mean"]["t2v"]["R@1"]


def training_summary(run: Any) -> dict[str, Any]:
    """Best validation epoch, epochs trained and why training stopped (early stopping or the epoch cap), from a
    :class:`mtvr.train.ModelRun` (or a :class:`mtvr.train.TrainResult`: its student)."""
    run = getattr(run, "student", run)
    config = run.config
    return {
        "best_epoch": run.best_epoch,
        "best_validation_mean_R@1": run.best_validation_r1,
        "epochs_trained": run.epochs_trained,
        "epoch_cap": config.epochs,
        "early_stopping_patience": config.early_stopping_patience,
        "stopped_by": run.stop_reason,
        "validation_curve": [round(r, 2) for r in run.validation_curve],
    }


def stopped_line(run: Any) -> str:
    """One line: the best validation epoch and whether early stopping or the epoch cap ended training."""
    t = training_summary(run)
    line = (
        f"best validation mean R@1 {t['best_validation_mean_R@1']:.1f} at epoch {t['best_epoch']} of "
        f"{t['epochs_trained']} trained (cap {t['epoch_cap']})"
    )
    if t["stopped_by"] == "epoch cap":
        return line + ": WARNING, the epoch cap ended training before validation R@1 stopped improving"
    return line + ": stopped because validation R@1 stopped improving"
