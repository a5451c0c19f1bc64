"""One registry of named components, the mechanism behind every "add one file + one registration" in mtvr.

Text tower kinds (:mod:`mtvr.text_towers`), translation backends (:mod:`mtvr.translate`), frame encoders
(:mod:`mtvr.video.frame_encoders`) and extraction engines (:mod:`mtvr.video.engines`) each keep a
:class:`Registry`: a name maps to the component itself or to ``"package.module:attribute"``, imported on first
use (so that registering a built-in costs no import, and a package low in the layers can name a component that
lives higher up without importing it). Third-party packages add theirs with ``register`` or in the registry's
entry-point group; packages named in ``plugins`` are imported when a name is unknown, so that they register
themselves (as :mod:`mtvr.scale` registers the ``ray`` engine).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ComponentError, MtvrError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → components of one kind.

    Args:
        what: what a component is, for error messages (``"text tower kind"``).
        entry_points: the ``importlib.metadata`` entry-point group other packages declare components in.
        plugins: packages imported when a name is unknown (they register components when imported).
        check: ``check(name, component)`` raises :class:`ComponentError` for a component that is not one.
        unknown_error: the error an unknown name raises (a subclass of :class:`MtvrError`).
        reserved: names that are not registrable (handled by the caller itself, e.g. the ``local`` engine).
    """

    def __init__(
        self,
        what: str,
        entry_points: str | None = None,
        plugins: tuple[str, ...] = (),
        check: Callable[[str, Any], None] | None = None,
        unknown_error: type[MtvrError] = ComponentError,
        reserved: tuple[str, ...] = (),
    ) -> None:
        self.what = what
        self.entry_points = entry_points
        self.plugins = plugins
        self.check = check
        self.unknown_error = unknown_error
        self.reserved = reserved
        self._items: dict[str, T | str] = {}

    def register(self, name: str, component: T | str) -> None:
        """Make ``name`` mean ``component`` (or ``"package.module:attribute"``, imported on first use).

        Registering the same component again is a no-op; another one under a taken name is refused."""
        if not isinstance(name, str) or not name or name in self.reserved:
            raise ComponentError(f"a {self.what} needs a non-empty name other than {self.reserved}, got {name!r}")
        if isinstance(component, str):
            if ":" not in component:
                raise ComponentError(f"{self.what} {name!r}: the target must be 'package.module:attribute'")
        elif self.check is not None:
            self.check(name, component)
        old = self._items.get(name)
        if old is not None and old is not component and old != component:
            raise ComponentError(f"a {self.what} named {name!r} is already registered ({old})")
        self._items[name] = component

    def _discover(self) -> None:
        for package in self.plugins:
            try:
                importlib.import_module(package)
            except ImportError:  # an optional extra that is not installed
                continue
        if self.entry_points:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.entry_points):
                self._items.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        """Every registered name (plug-in packages' and entry points' included), sorted."""
        self._discover()
        return sorted({*self._items, *self.reserved})

    def get(self, name: str) -> T:
        """The component registered as ``name``; an unknown name raises ``unknown_error`` listing the names."""
        if not isinstance(name, str) or name not in self._items:
            self._discover()
        if not isinstance(name, str) or name not in self._items:
            raise self.unknown_error(f"unknown {self.what} {name!r}; choose one of {self.names()}")
        component = self._items[name]
        if isinstance(component, str):
            module, _, attr = component.partition(":")
            try:
                component = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ComponentError(f"{self.what} {name!r} ({self._items[name]}) cannot be imported: {exc}") from exc
            if self.check is not None:
                self.check(name, component)
            self._items[name] = component
        return component

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return repr(tuple(self.names()))
