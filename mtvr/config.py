"""`VideoTextConfig`: the architecture of a :class:`~mtvr.modeling.VideoTextModel`.

It round-trips through ``config.json``. The text encoder's own Hugging Face config is stored
nested under ``text_config`` so that a saved model is rebuilt from its folder alone
(``AutoConfig.for_model``; never ``trust_remote_code``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# weight files mtvr never loads (pickle can run code): a folder holding only these is refused
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MODEL_TYPE = "mtvr-video-text"
DEFAULT_TEXT_TOWER = "transformers"  # a registered kind of mtvr.text_towers


@dataclass
class FrameEncoderConfig:
    """How videos become frame features: the frame encoder and the frame sampling.

    ``name_or_path`` is a frame encoder name (:mod:`mtvr.video.frame_encoders`: a registered one, else a
    CLIP-family vision checkpoint, Hub id or local folder, loaded with ``CLIPVisionModelWithProjection``);
    ``num_frames`` frames are sampled per clip as ``sampling`` says (``uniform`` or ``random``), by every
    extraction path (:mod:`mtvr.video.pipeline`).
    """

    name_or_path: str = "openai/clip-vit-base-patch32"
    num_frames: int = 12
    image_size: int = 224
    sampling: str = "uniform"


@dataclass
class VideoTextConfig:
    """Architecture of a dual-encoder text-video retrieval model.

    Args:
        text_model_name_or_path: the Hugging Face encoder the text tower started from.
        text_tower: the kind of text tower, a name registered in :mod:`mtvr.text_towers` (built in:
            ``transformers`` AutoModel + mean pooling, ``sentence-transformers`` the saved pipeline in
            ``text_tower/``, ``clip`` ``CLIPTextModelWithProjection``).
        text_config: the encoder's config as a dict (``PretrainedConfig.to_dict()``; empty for
            sentence-transformers towers, which keep their own folder).
        embed_dim: size of the joint embedding space.
        video_feature_dim: size of one precomputed frame feature (e.g. 512 for CLIP ViT-B/32).
        aggregator: temporal aggregation: ``mean``, ``seqtransf`` (CLIP4Clip), ``afa`` (TeachCLIP's
            attentional frame-feature aggregation) or ``seqtransf+afa`` (the official TeachCLIP student).
        max_frames: maximum number of frames (size of the positional embeddings).
        seqtransf_layers / seqtransf_heads: the ``seqtransf`` transformer.
        afa_temperature: softmax temperature of the AFA weights that aggregate the frames (0.1, official).
        afa_weight_temperature: softmax temperature of the AFA frame weights that TeachCLIP distils (1, official).
        max_text_length: tokenizer truncation length.
        text_prompt: prepended to every text before tokenization, queries and captions alike: the prompt the
            text tower's authors trained it with (``config_sentence_transformers.json`` ``prompts["query"]``,
            e.g. multilingual-e5's ``"query: "``), so that a saved model encodes exactly as it was trained.
        projection: ``linear`` (trained projections of text and frames into ``embed_dim``) or ``none``
            (towers already share a space, as a multilingual CLIP student and CLIP's image tower do).
        normalize_frames: L2-normalise each frame embedding before aggregation (CLIP4Clip's meanP).
        text_centering: subtract a fixed vector, the mean text-tower output over the training captions (the
            buffer ``text_feature_mean`` in ``model.safetensors``), before the text projection. Pretrained
            sentence encoders are anisotropic (multilingual-e5's embeddings of unrelated sentences have cosines
            of 0.7-0.85): the shared mean direction swamps what tells captions apart, and a projection trained
            over a frozen tower learns slowly (Ethayarajh, EMNLP 2019; Su et al., "Whitening sentence
            representations", 2021, centre before whitening). Measured on the demo's validation split
            (benchmarks/demo_frozen_heads.py): benchmarks/results_committed/demo_frozen_heads.log.
        zero_shot: assembled from public towers without training (``Retriever.from_zero_shot``).
        languages: languages the text tower was trained for (informative).
        frame_encoder: how raw videos are turned into frame features for this model.
    """

    text_model_name_or_path: str = ""
    text_tower: str = DEFAULT_TEXT_TOWER
    text_config: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 256
    video_feature_dim: int = 512
    aggregator: str = "mean"
    max_frames: int = 32
    seqtransf_layers: int = 2
    seqtransf_heads: int = 8
    afa_temperature: float = 0.1
    afa_weight_temperature: float = 1.0
    max_text_length: int = 64
    text_prompt: str = ""
    projection: str = "linear"
    normalize_frames: bool = False
    text_centering: bool = False
    zero_shot: bool = False
    languages: list[str] = field(default_factory=list)
    frame_encoder: FrameEncoderConfig = field(default_factory=FrameEncoderConfig)
    model_type: str = MODEL_TYPE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> VideoTextConfig:
        if not isinstance(data, dict):
            raise ModelLoadError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("model_type") != MODEL_TYPE:
            raise ModelLoadError(
                f"{source}: model_type is {data.get('model_type')!r}, not {MODEL_TYPE!r}: "
                "this is not an mtvr model folder (was it saved with Retriever.save_pretrained?)"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"{source}: unknown keys {unknown}; known keys are {sorted(known)}")
        data = dict(data)
        fe = data.pop("frame_encoder", None) or {}
        if not isinstance(fe, dict):
            raise ModelLoadError(f"{source}: frame_encoder must be an object, got {type(fe).__name__}")
        try:
            config = cls(frame_encoder=FrameEncoderConfig(**fe), **data)
        except TypeError as exc:
            raise ModelLoadError(f"{source}: bad frame_encoder entry: {exc}") from exc
        config.check(source)
        return config

    def check(self, source: str = "config") -> None:
        """Types and ranges of every value; :class:`ModelLoadError` names the file and the key."""
        positive_ints = {
            "embed_dim": self.embed_dim,
            "video_feature_dim": self.video_feature_dim,
            "max_frames": self.max_frames,
            "seqtransf_layers": self.seqtransf_layers,
            "seqtransf_heads": self.seqtransf_heads,
            "max_text_length": self.max_text_length,
            "frame_encoder.num_frames": self.frame_encoder.num_frames,
            "frame_encoder.image_size": self.frame_encoder.image_size,
        }
        for key, value in positive_ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelLoadError(f"{source}: {key} must be a positive integer, got {value!r}")
        for key in ("afa_temperature", "afa_weight_temperature"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ModelLoadError(f"{source}: {key} must be a positive number, got {value!r}")
        for key in ("text_model_name_or_path", "text_tower", "aggregator", "projection", "text_prompt"):
            if not isinstance(getattr(self, key), str):
                raise ModelLoadError(f"{source}: {key} must be a string, got {getattr(self, key)!r}")
        from .aggregation import AGGREGATORS

        if self.aggregator not in AGGREGATORS:
            raise ModelLoadError(f"{source}: aggregator {self.aggregator!r} is not one of {sorted(AGGREGATORS)}")
        for key in ("normalize_frames", "zero_shot", "text_centering"):
            if not isinstance(getattr(self, key), bool):
                raise ModelLoadError(f"{source}: {key} must be true or false, got {getattr(self, key)!r}")
        if not isinstance(self.text_config, dict):
            raise ModelLoadError(f"{source}: text_config must be an object")
        if not isinstance(self.languages, list) or not all(isinstance(l, str) for l in self.languages):
            raise ModelLoadError(f"{source}: languages must be a list of language codes")

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> VideoTextConfig:
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise ModelLoadError(
                f"{path} not found: an mtvr model folder holds config.json, model.safetensors "
                "and the tokenizer files (write one with Retriever.save_pretrained)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{path} is not valid JSON ({exc}); re-save or re-download the model") from exc
        return cls.from_dict(data, source=str(path))
