"""Training: recipes, data, checkpoints and the accelerate-based trainer."""

from .recipe import Recipe, load_recipe
from .trainer import TrainResult, train

__all__ = ["Recipe", "TrainResult", "load_recipe", "train"]
