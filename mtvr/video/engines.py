"""Extraction engines: what runs the decode -> encode -> store arrow of :func:`mtvr.video.extract.extract_features`.

``"local"`` (worker processes on this machine, or this process with ``workers=0``) is built in. Other engines
register themselves: :mod:`mtvr.scale` registers ``"ray"`` (Ray Data across a cluster) when it is imported, so
this package never imports the scale-out code. An engine is a function with the signature of
``extract_features`` minus ``engine`` (see :func:`mtvr.scale.ray_extract.extract_features_ray`), given as a
callable or a ``"module:function"`` string imported on first use. Third-party engines can also be declared in
the ``mtvr.extraction_engines`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import OptionError
from ..registry import Registry

Engine = Callable[..., Any]
# packages that register engines when imported, tried when an engine name is unknown (reached by name at run
# time, like the dataset builders, so that no import runs from this package to them)
PLUGIN_PACKAGES = ("mtvr.scale",)
ENGINES: Registry[Engine] = Registry(
    "extraction engine",
    entry_points="mtvr.extraction_engines",
    plugins=PLUGIN_PACKAGES,
    reserved=("local",),
    unknown_error=OptionError,
)


def register_engine(name: str, engine: Engine | str) -> None:
    """Make ``extract_features(..., engine=name)`` run ``engine``."""
    ENGINES.register(name, engine)


def registered_engines() -> list[str]:
    """Every engine name, the plug-in packages' included."""
    return ENGINES.names()


def get_engine(name: str) -> Engine:
    """The runner of a registered engine (not ``"local"``, which ``extract_features`` runs itself)."""
    return ENGINES.get(name)
