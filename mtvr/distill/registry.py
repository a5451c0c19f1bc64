"""The registry of distillation losses: each loss declares what it needs, its citation and its card sentence.

A loss is one module of :mod:`mtvr.distill` whose class is decorated with :func:`register_loss`; the recipe
validates loss names against this registry, the trainer asks it whether the loss needs teachers' frame-level
embeddings, and the model card reads the citation and the method sentence from it. Adding a loss is one new
file and one decorator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import ComponentError


@dataclass(frozen=True)
class LossSpec:
    """What the rest of mtvr needs to know about a loss."""

    name: str
    cls: type[nn.Module]
    needs_teacher: bool  # the recipe must name at least one teacher
    needs_frames: bool = False  # the teachers' frame-level video embeddings are cached too (TeachCLIP's AFA)
    card_method: str = ""  # the model card's sentence on how the model was trained
    citation: str | None = None  # BibTeX of the paper the loss follows

    def recipe_options(self, options: dict[str, Any], num_teachers: int) -> dict[str, Any]:
        """The loss options of a recipe, completed from the recipe (e.g. one weight per teacher)."""
        hook = getattr(self.cls, "options_for_recipe", None)
        return hook(dict(options), num_teachers) if hook is not None else dict(options)


_LOSSES: dict[str, LossSpec] = {}


def register_loss(
    name: str,
    *,
    needs_teacher: bool,
    needs_frames: bool = False,
    card_method: str = "",
    citation: str | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make ``cls`` the loss ``name`` of recipes (``loss.name``) and of ``build_loss``."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _LOSSES and _LOSSES[name].cls is not cls:
            raise ComponentError(f"a loss named {name!r} is already registered ({_LOSSES[name].cls.__name__})")
        _LOSSES[name] = LossSpec(name, cls, needs_teacher, needs_frames, card_method, citation)
        return cls

    return decorate


def loss_spec(name: str) -> LossSpec:
    """The registered loss ``name``; an unknown name raises :class:`~mtvr.errors.ComponentError` listing them."""
    try:
        return _LOSSES[name]
    except KeyError:
        raise ComponentError(f"unknown loss {name!r}; choose one of {sorted(_LOSSES)}") from None


def spec_of(loss: nn.Module) -> LossSpec | None:
    """The registration of ``loss``'s class (what it needs from the trainer); ``None`` for an unregistered module."""
    return next((s for s in _LOSSES.values() if type(loss) is s.cls), None)


class _Classes(Mapping[str, type[nn.Module]]):
    """``LOSSES``: name -> class, a live view of the registry (losses registered later appear in it)."""

    def __getitem__(self, name: str) -> type[nn.Module]:
        return _LOSSES[name].cls

    def __iter__(self) -> Iterator[str]:
        return iter(_LOSSES)

    def __len__(self) -> int:
        return len(_LOSSES)


class _NeedsTeacher:
    """``NEEDS_TEACHER``: the names of losses that need teachers (a live view)."""

    def __contains__(self, name: object) -> bool:
        return name in _LOSSES and _LOSSES[name].needs_teacher

    def __iter__(self) -> Iterator[str]:
        return (n for n, s in _LOSSES.items() if s.needs_teacher)


LOSSES: Mapping[str, type[nn.Module]] = _Classes()
NEEDS_TEACHER = _NeedsTeacher()
