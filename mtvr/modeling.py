"""`VideoTextModel`: a dual encoder for text-to-video retrieval.

* **Text tower**: any Hugging Face encoder (``AutoModel``) → attention-masked mean pooling →
  linear projection → L2 normalisation.
* **Video tower**: precomputed frame features ``[T, D]`` with a padding mask → linear projection per
  frame → temporal aggregation (:mod:`mtvr.aggregation`) → L2 normalisation.

Saved as ``config.json`` + ``model.safetensors``; loading never unpickles anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from .aggregation import build_aggregator
from .config import WEIGHTS_NAME, VideoTextConfig
from .errors import ModelLoadError, UnsafeWeightsError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def check_safetensors_present(folder: Path, weights_name: str = WEIGHTS_NAME) -> Path:
    """Return ``folder/weights_name``; refuse pickle-only folders with :class:`UnsafeWeightsError`."""
    path = folder / weights_name
    if path.is_file():
        return path
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickles:
        raise UnsafeWeightsError(
            f"{folder} holds weights only as pickle ({', '.join(pickles)}); mtvr loads safetensors only, "
            "because unpickling runs arbitrary code. Convert them to model.safetensors with a trusted copy."
        )
    raise ModelLoadError(f"{path} not found: the folder {folder} has no model weights")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over tokens (Reimers & Gurevych, Sentence-BERT, 2019)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


def pad_frame_features(
    features: Sequence[np.ndarray | torch.Tensor],
    max_frames: int | None = None,
    num_frames: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length ``[T_i, D]`` features into ``[B, T_max, D]`` plus a ``[B, T_max]`` mask.

    ``num_frames[i]`` (optional) says how many leading rows of ``features[i]`` are real frames.
    """
    if len(features) == 0:
        raise ValueError("no frame features given")
    tensors = [torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f) for f in features]
    dims = {t.shape[-1] for t in tensors}
    for i, t in enumerate(tensors):
        if t.ndim != 2 or t.shape[0] == 0:
            raise ValueError(f"frame features #{i} have shape {tuple(t.shape)}; expected [T, D] with T >= 1")
    if len(dims) != 1:
        raise ValueError(f"frame features have different sizes {sorted(dims)}")
    lengths = [
        t.shape[0] if num_frames is None else max(1, min(int(n), t.shape[0]))
        for t, n in zip(tensors, num_frames or [None] * len(tensors))
    ]
    t_max = max(lengths) if max_frames is None else min(max(lengths), max_frames)
    out = torch.zeros(len(tensors), t_max, dims.pop(), dtype=torch.float32)
    mask = torch.zeros(len(tensors), t_max, dtype=torch.bool)
    for i, (t, n) in enumerate(zip(tensors, lengths)):
        n = min(n, t_max)
        out[i, :n] = t[:n].float()
        mask[i, :n] = True
    return out, mask


class VideoTextModel(nn.Module):
    """Text tower + video tower sharing an ``embed_dim``-sized, L2-normalised embedding space."""

    def __init__(self, config: VideoTextConfig, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if text_encoder is None:
            if not config.text_config:
                raise ModelLoadError("VideoTextConfig.text_config is empty: cannot build the text encoder")
            text_encoder = AutoModel.from_config(text_config_from_dict(config.text_config))
        self.text_encoder = drop_unused_pooler(text_encoder)
        hidden = text_encoder.config.hidden_size
        self.text_projection = nn.Linear(hidden, config.embed_dim)
        self.video_projection = nn.Linear(config.video_feature_dim, config.embed_dim)
        self.aggregator = build_aggregator(config)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_text_encoder(
        cls, name_or_path: str, *, revision: str | None = None, **config_kwargs: Any
    ) -> VideoTextModel:
        """A new model whose text tower starts from a pretrained encoder (safetensors weights only)."""
        hf_config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=False)
        encoder = AutoModel.from_pretrained(
            name_or_path, revision=revision, use_safetensors=True, trust_remote_code=False
        )
        config = VideoTextConfig(
            text_model_name_or_path=str(name_or_path), text_config=hf_config.to_dict(), **config_kwargs
        )
        return cls(config, encoder)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` into an existing folder."""
        from safetensors.torch import save_model

        folder = Path(folder)
        self.config.text_config = self.text_encoder.config.to_dict()
        self.config.save(folder)
        save_model(self, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "mtvr": "VideoTextModel"})

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> VideoTextModel:
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        folder = Path(folder)
        config = VideoTextConfig.load(folder)
        weights = check_safetensors_present(folder)
        model = cls(config)
        try:
            missing, unexpected = load_model(model, str(weights), strict=False, device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{weights} cannot be read ({exc}); re-save or re-download the model") from exc
        # position_ids-like buffers that transformers re-creates are harmless; real weights are not.
        missing = [k for k in missing if not k.endswith("position_ids")]
        # folders saved before the unused pooler was dropped still carry its weights
        unexpected = [k for k in unexpected if not k.startswith("text_encoder.pooler.")]
        if missing or unexpected:
            raise ModelLoadError(
                f"{weights} does not match {folder / 'config.json'}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model

    # ----------------------------------------------------------------- forward
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        out = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        return nn.functional.normalize(self.text_projection(pooled), dim=-1)

    def encode_frames(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings ``[B, T, E]`` before aggregation (not normalised)."""
        return self.video_projection(features)

    def encode_video(
        self, features: torch.Tensor, mask: torch.Tensor | None = None, return_frame_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Video embeddings ``[B, E]``; with ``return_frame_weights`` also the frame log-weights ``[B, T]``."""
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        video, log_weights = self.aggregator(self.encode_frames(features), mask)
        video = nn.functional.normalize(video, dim=-1)
        return (video, log_weights) if return_frame_weights else video

    def forward(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None = None,
        text_inputs: list[dict[str, torch.Tensor]] | None = None,
        **text: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training step's encodings: ``(text [N, E], video [B, E], frame_log_weights [B, T])``.

        Texts come as tokenizer outputs (``input_ids=``, ``attention_mask=``), or as a list of them in
        ``text_inputs`` (e.g. one per language, each padded to its own length), encoded in turn and
        concatenated. Going through ``forward`` lets DDP (accelerate) synchronise gradients.
        """
        video, weights = self.encode_video(features, mask, return_frame_weights=True)
        batches = text_inputs if text_inputs is not None else [text]
        emb = torch.cat([self.encode_text(**b) for b in batches])
        return emb, video, weights


def drop_unused_pooler(encoder: nn.Module) -> nn.Module:
    """Remove a BERT-style ``pooler`` that mean pooling never uses.

    An unused parameter makes DDP fail at the second step ("Expected to have finished reduction in the
    prior iteration"); removing it is cleaner than ``find_unused_parameters=True`` (an extra graph
    traversal every step). transformers' encoders skip a ``None`` pooler in ``forward``.
    """
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def text_config_from_dict(data: dict[str, Any]):
    """Rebuild a transformers config from ``to_dict()`` output, without remote code."""
    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ModelLoadError("text_config has no model_type: cannot rebuild the text encoder")
    try:
        return AutoConfig.for_model(model_type, **data)
    except ValueError as exc:
        raise ModelLoadError(
            f"text encoder type {model_type!r} is not known to this transformers version: {exc}"
        ) from exc
