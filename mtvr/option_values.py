"""One validation of option values, shared by the Python API and every ``mtvr`` command.

Each check takes the option's name (as the user wrote it: ``--num-frames`` on the command line,
``num_frames`` in Python) and its value, and returns the value or raises :class:`OptionError` with one
line naming both. The command line applies the same checks by option name
(:data:`mtvr.commands.options.OPTION_CHECKS`) before any work starts, with the same words as the API.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, TypeVar

from .errors import OptionError

T = TypeVar("T")


def _number(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool):  # YAML/JSON true is not a number
        raise OptionError(f"{name}={value!r}: expected {'an integer' if kind is int else 'a number'}, got a bool")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name}={value!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise OptionError(f"{name}={value!r}: expected an integer")
    if kind is int and isinstance(value, str) and str(number) != value.strip().lstrip("+"):
        raise OptionError(f"{name}={value!r}: expected an integer")
    return number


def positive_int(name: str, value: Any) -> int:
    """An integer >= 1 (a count of frames, a batch size, a shard size, ``k``)."""
    number = _number(name, value, int)
    if number < 1:
        raise OptionError(f"{name}={number}: must be at least 1")
    return number


def int_in_range(name: str, value: Any, low: int, high: int) -> int:
    """An integer in ``[low, high]``."""
    number = _number(name, value, int)
    if not low <= number <= high:
        raise OptionError(f"{name}={number}: must be between {low} and {high}")
    return number


def port(name: str, value: Any) -> int:
    """A TCP port, 1-65535."""
    return int_in_range(name, value, 1, 65535)


def positive_finite(name: str, value: Any) -> float:
    """A finite number > 0 (a learning rate, a temperature)."""
    number = _number(name, value, float)
    if not math.isfinite(number) or number <= 0:
        raise OptionError(f"{name}={value!r}: must be a finite number greater than 0")
    return number


def fraction(name: str, value: Any) -> float:
    """A number in ``(0, 1]`` (a recall target: 0 would silently mean "no target")."""
    number = _number(name, value, float)
    if not (math.isfinite(number) and 0 < number <= 1):
        raise OptionError(f"{name}={value!r}: must be greater than 0 and at most 1")
    return number


def existing_file(name: str, value: Any) -> Path:
    """A path to a regular file that exists (not a folder)."""
    path = Path(os.path.expanduser(str(value)))
    if path.is_dir():
        raise OptionError(f"{name} {path}: is a folder, expected a file")
    if not path.is_file():
        raise OptionError(f"{name} {path}: no such file")
    return path


def http_url(name: str, value: Any) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    from urllib.parse import urlparse

    text = str(value)
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise OptionError(f"{name}={text!r}: not an http(s) URL (expected e.g. https://huggingface.co)")
    return text


def device(name: str, value: Any) -> Any:
    """A torch device that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise OptionError(f"{name}={value!r}: not a torch device (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise OptionError(f"{name}={value!r}: no CUDA GPU is visible on this machine; use cpu")
        if dev.index is not None and dev.index >= count:
            raise OptionError(f"{name}={value!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError(f"{name}={value!r}: MPS is not available on this machine; use cpu")
    return dev
