"""mtvr: multilingual text-to-video retrieval.

Build multilingual video-text datasets by machine translation, distil English text-video teachers
into multilingual students (C2KD, TeachText, TeachCLIP, MCKD) and search videos in any language.

The public names below are imported lazily (PEP 562): ``import mtvr`` and ``mtvr --help`` do not
load torch, transformers or faiss until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "FrameEncoderConfig": ".config",
    "VideoTextConfig": ".config",
    "ModelLoadError": ".errors",
    "MtvrError": ".errors",
    "UnsafeWeightsError": ".errors",
    "SearchHit": ".index",
    "VideoIndex": ".index",
    "VideoTextModel": ".modeling",
    "Retriever": ".retriever",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .config import FrameEncoderConfig, VideoTextConfig
    from .errors import ModelLoadError, MtvrError, UnsafeWeightsError
    from .index import SearchHit, VideoIndex
    from .modeling import VideoTextModel
    from .retriever import Retriever


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mtvr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
