"""Adding a component is one new class and one registration: a toy loss and a toy extraction engine, used
through the same paths as the built-in ones (recipe validation, build_loss, the trainer's needs, the model
card; extract_features and its CLI)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtvr.config import VideoTextConfig
from mtvr.distill import LOSSES, NEEDS_TEACHER, build_loss, loss_spec, register_loss
from mtvr.errors import ComponentError, RecipeError
from mtvr.hub.card import render_model_card
from mtvr.train.recipe import Recipe, validate

TOY_CITATION = "@misc{toy2026, title={A Toy Loss}}"


@register_loss(
    "toy-margin", needs_teacher=True, needs_frames=True, card_method="Trained with a toy margin.", citation=TOY_CITATION
)
class ToyMarginLoss(nn.Module):
    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, inputs):  # pragma: no cover - not trained here
        return torch.zeros(())

    @staticmethod
    def options_for_recipe(options: dict, num_teachers: int) -> dict:
        options.setdefault("margin", 0.1 * num_teachers)
        return options


def _recipe(loss: str, teachers: int = 1, **options) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "toy",
            "data": {"dataset": "d", "features": "f", "languages": ["en", "de"]},
            "teachers": [{"name": f"t{i}"} for i in range(teachers)],
            "loss": {"name": loss, "options": options},
        }
    )


def test_a_registered_loss_is_known_to_recipes_the_trainer_and_the_card():
    assert "toy-margin" in LOSSES and "toy-margin" in NEEDS_TEACHER and LOSSES["toy-margin"] is ToyMarginLoss
    spec = loss_spec("toy-margin")
    assert spec.needs_frames and not loss_spec("c2kd").needs_frames and loss_spec("teachclip").needs_frames
    assert build_loss("toy-margin", margin=0.5).margin == 0.5
    with pytest.raises(ComponentError, match="bad options for loss 'toy-margin'"):
        build_loss("toy-margin", margn=0.5)
    recipe = _recipe("toy-margin", teachers=2)
    validate(recipe)  # the name is validated against the registry
    assert recipe.build_loss().margin == pytest.approx(0.2)  # the loss completed its options from the recipe
    with pytest.raises(RecipeError, match="distils from teachers"):
        validate(_recipe("toy-margin", teachers=0))
    with pytest.raises(RecipeError, match=r"unknown loss 'nope'.*toy-margin"):
        validate(_recipe("nope"))
    with pytest.raises(ComponentError, match="already registered"):
        register_loss("toy-margin", needs_teacher=False)(nn.Identity)
    config = VideoTextConfig(text_model_name_or_path="x", languages=["en"])
    card = render_model_card(config, {"evaluations": []}, "org/toy", recipe_yaml="loss: {name: toy-margin}\n")
    assert TOY_CITATION in card and "Trained with a toy margin." in card
    assert loss_spec("c2kd").citation in card  # C2KD is cited on every card


def test_a_registered_extraction_engine_runs_from_extract_features(tmp_path):
    from mtvr.video.engines import register_engine, registered_engines
    from mtvr.video.extract import extract_features

    seen = {}

    def toy_engine(clips, store_dir, encoder, **options):
        seen.update(clips=list(clips), store_dir=store_dir, encoder=encoder, **options)
        return "toy summary"

    register_engine("toy", toy_engine)
    assert "toy" in registered_engines() and "ray" in registered_engines()
    got = extract_features(["a.mp4"], tmp_path, "mtvr/shape-stats", num_frames=3, engine="toy", clips_per_batch=5)
    assert got == "toy summary" and seen["num_frames"] == 3 and seen["batch_size"] == 5 and seen["clips"] == ["a.mp4"]
