"""Video pipeline: frame sampling and decoding, frame encoders, the feature store, extraction."""

from .decode import SampledFrames, VideoDecodeError, random_indices, sample_frames, uniform_indices
from .encoder import CLIPFrameEncoder, build_frame_encoder
from .extract import ClipSpec, ExtractionSummary, clips_from_source, extract_features
from .store import FeatureStore, StoreManifest

__all__ = ["CLIPFrameEncoder", "ClipSpec", "ExtractionSummary", "FeatureStore", "SampledFrames", "StoreManifest",
           "VideoDecodeError", "build_frame_encoder", "clips_from_source", "extract_features", "random_indices",
           "sample_frames", "uniform_indices"]
