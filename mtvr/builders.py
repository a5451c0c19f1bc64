"""The dataset builders mtvr knows, by name.

The builders live in the ``datasets_builders`` package, which builds on mtvr's public API; mtvr reaches
them only by name at run time (this registry), never by a static import, so that the import arrow
points one way. Another package can add its own with :func:`register_builder`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ComponentError, DatasetBuildError

BUILDERS: dict[str, str] = {
    "multi_msrvtt": "datasets_builders.multi_msrvtt:MultiMSRVTT",
    "multi_youcook2": "datasets_builders.multi_youcook2:MultiYouCook2",
    "multi_shapes": "datasets_builders.multi_shapes:MultiShapes",
}


def register_builder(name: str, target: str) -> None:
    """Make ``mtvr build-dataset NAME`` run the builder class at ``"package.module:Class"``."""
    if ":" not in target:
        raise ComponentError(f"builder target must look like 'package.module:Class', got {target!r}")
    BUILDERS[name] = target


def builder_module(name: str) -> Any:
    """The module of the builder registered as ``name`` (its helpers, e.g. Multi-Shapes' caption grammar, for the
    demo), imported by name at run time."""
    return importlib.import_module(get_builder(name).__module__)


def get_builder(name: str) -> Any:
    """The ``datasets.GeneratorBasedBuilder`` class registered as ``name``."""
    try:
        target = BUILDERS[name]
    except KeyError:
        raise DatasetBuildError(f"unknown dataset builder {name!r}; choose one of {sorted(BUILDERS)}") from None
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise DatasetBuildError(
            f"dataset builder {name!r} ({target}) cannot be imported: {exc}; "
            "is the mtvr package installed with its datasets_builders?"
        ) from exc
