"""Training: recipes, the training config, the loop (:mod:`.trainer`) and the pipeline (:mod:`.pipeline`)."""

from .config import TrainingConfig
from .pipeline import ModelRun, TrainResult, train
from .recipe import Recipe, load_recipe
from .trainer import Trainer

__all__ = ["ModelRun", "Recipe", "TrainResult", "Trainer", "TrainingConfig", "load_recipe", "train"]
