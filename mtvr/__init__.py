"""mtvr: multilingual text-to-video retrieval.

Build multilingual video-text datasets by machine translation, distil English text-video teachers
into multilingual students (C2KD, TeachText, TeachCLIP, MCKD) and search videos in any language.
"""

from .config import FrameEncoderConfig, VideoTextConfig
from .errors import ModelLoadError, MtvrError, UnsafeWeightsError
from .index import SearchHit, VideoIndex
from .modeling import VideoTextModel
from .retriever import Retriever

__version__ = "0.1.0"

__all__ = [
    "FrameEncoderConfig", "ModelLoadError", "MtvrError", "Retriever", "SearchHit", "UnsafeWeightsError",
    "VideoIndex", "VideoTextConfig", "VideoTextModel", "__version__",
]
