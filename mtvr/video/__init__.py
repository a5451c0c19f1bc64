"""Videos to frame features: decoding and sampling, frame encoders, the feature store, extraction.

Names are imported lazily (PEP 562), so that reading a feature store does not import the decoders.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SampledFrames": ".decode",
    "VideoDecodeError": ".decode",
    "random_indices": ".decode",
    "sample_frames": ".decode",
    "uniform_indices": ".decode",
    "CLIPFrameEncoder": ".encoder",
    "build_frame_encoder": ".frame_encoders",
    "register_frame_encoder": ".frame_encoders",
    "frame_encoder_names": ".frame_encoders",
    "ClipSpec": ".extract",
    "ExtractionSummary": ".extract",
    "clips_from_source": ".extract",
    "extract_features": ".extract",
    "FeatureStore": ".store",
    "StoreManifest": ".store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mtvr.video' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
