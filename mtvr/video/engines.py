"""Extraction engines: what runs the decode -> encode -> store arrow of :func:`mtvr.video.extract.extract_features`.

``"local"`` (worker processes on this machine, or this process with ``workers=0``) is built in. Other engines
register themselves: :mod:`mtvr.scale` registers ``"ray"`` (Ray Data across a cluster) when it is imported, so
this package never imports the scale-out code. An engine is a function with the signature of
``extract_features`` minus ``engine`` (see :func:`mtvr.scale.ray_extract.extract_features_ray`), given as a
callable or a ``"module:function"`` string imported on first use. Third-party engines can also be declared in
the ``mtvr.extraction_engines`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import OptionError

Engine = Callable[..., Any]
_ENGINES: dict[str, Engine | str] = {}
# packages that register engines when imported, tried when an engine name is unknown (reached by name at run
# time, like the dataset builders, so that no import runs from this package to them)
PLUGIN_PACKAGES = ("mtvr.scale",)


def register_engine(name: str, engine: Engine | str) -> None:
    """Make ``extract_features(..., engine=name)`` run ``engine``."""
    if not isinstance(name, str) or not name or name == "local":
        raise OptionError(f"an extraction engine needs a name other than 'local', got {name!r}")
    _ENGINES[name] = engine


def registered_engines() -> list[str]:
    """Every engine name, the plug-in packages' included."""
    _discover()
    return sorted({"local", *_ENGINES})


def _discover() -> None:
    for package in PLUGIN_PACKAGES:
        try:
            importlib.import_module(package)
        except ImportError:  # an optional extra that is not installed
            continue
    from importlib.metadata import entry_points

    for ep in entry_points(group="mtvr.extraction_engines"):
        _ENGINES.setdefault(ep.name, ep.value)


def get_engine(name: str) -> Engine:
    """The runner of a registered engine (not ``"local"``, which ``extract_features`` runs itself)."""
    if name not in _ENGINES:
        _discover()
    if name not in _ENGINES:
        raise OptionError(f"unknown extraction engine {name!r}; choose one of {sorted({'local', *_ENGINES})}")
    engine = _ENGINES[name]
    if isinstance(engine, str):
        module, _, attr = engine.partition(":")
        engine = getattr(importlib.import_module(module), attr)
        _ENGINES[name] = engine
    return engine
