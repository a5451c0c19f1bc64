"""`VideoTextModel`: a dual encoder for text-to-video retrieval.

* **Text tower** (:mod:`mtvr.text_towers`, the registered kind named by ``config.text_tower``: a Hugging Face
  encoder with mean pooling, a sentence-transformers pipeline as its authors saved it, CLIP's text tower...)
  → linear projection
  (or none, when the towers already share a space) → L2 normalisation.
* **Video tower**: precomputed frame features ``[T, D]`` with a padding mask → linear projection per
  frame → temporal aggregation (:mod:`mtvr.aggregation`) → L2 normalisation.

Saved as ``config.json`` + ``model.safetensors``; loading never unpickles anything.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .aggregation import build_aggregator
from .config import DEFAULT_TEXT_TOWER, WEIGHTS_NAME, VideoTextConfig
from .errors import ModelLoadError, OptionError
from .text_towers import (
    PICKLE_SUFFIXES,  # noqa: F401  (re-exported)
    TextTower,
    authors_query_prompt,
    freeze_lower_layers,
    get_tower,
    mean_pool,  # noqa: F401  (re-exported: part of mtvr.modeling's public API)
    refuse_pickle_only,
    text_config_from_dict,  # noqa: F401  (re-exported)
)


def check_safetensors_present(folder: Path, weights_name: str = WEIGHTS_NAME) -> Path:
    """Return ``folder/weights_name``; refuse pickle-only folders with :class:`UnsafeWeightsError`."""
    path = folder / weights_name
    if path.is_file():
        return path
    refuse_pickle_only(folder, "model folder")
    raise ModelLoadError(f"{path} not found: the folder {folder} has no model weights")


def pad_frame_features(
    features: Sequence[np.ndarray | torch.Tensor],
    max_frames: int | None = None,
    num_frames: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length ``[T_i, D]`` features into ``[B, T_max, D]`` plus a ``[B, T_max]`` mask.

    ``num_frames[i]`` (optional) says how many leading rows of ``features[i]`` are real frames.
    """
    if len(features) == 0:
        raise OptionError("no frame features given")
    tensors = [torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f) for f in features]
    dims = {t.shape[-1] for t in tensors}
    for i, t in enumerate(tensors):
        if t.ndim != 2 or t.shape[0] == 0:
            raise OptionError(f"frame features #{i} have shape {tuple(t.shape)}; expected [T, D] with T >= 1")
    if len(dims) != 1:
        raise OptionError(f"frame features have different sizes {sorted(dims)}")
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


_SHARED_TEXT_CACHES: dict[str, dict[bytes, torch.Tensor]] = {}  # frozen pretrained towers' outputs, per key


class VideoTextModel(nn.Module):
    """Text tower + video tower sharing an ``embed_dim``-sized, L2-normalised embedding space."""

    def __init__(
        self, config: VideoTextConfig, text_encoder: nn.Module | None = None, folder: Path | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.tower: type[TextTower] = get_tower(config.text_tower)  # the kind: how to build, encode, save
        if text_encoder is None:
            if not config.text_config and not self.tower.own_folder:
                raise ModelLoadError("VideoTextConfig.text_config is empty: cannot build the text encoder")
            text_encoder = self.tower.from_config(config.text_config, folder)
        self.text_encoder = self.tower.prepare(text_encoder)
        hidden = self.tower.output_dim(text_encoder)
        if config.projection == "none":
            for what, size in (("text tower output", hidden), ("frame features", config.video_feature_dim)):
                if size != config.embed_dim:
                    raise ModelLoadError(
                        f"projection 'none' needs {what} of size embed_dim={config.embed_dim}, got {size}"
                    )
            self.text_projection: nn.Module = nn.Identity()
            self.video_projection: nn.Module = nn.Identity()
        elif config.projection == "linear":
            self.text_projection = nn.Linear(hidden, config.embed_dim)
            self.video_projection = nn.Linear(config.video_feature_dim, config.embed_dim)
        else:
            raise ModelLoadError(f"config.json: projection must be 'linear' or 'none', got {config.projection!r}")
        self.aggregator = build_aggregator(config)
        self._text_cache: dict[bytes, torch.Tensor] | None = None
        if config.text_centering:  # filled from the training captions (set_text_mean), saved with the weights
            self.register_buffer("text_feature_mean", torch.zeros(hidden))

    # ----------------------------------------------------------------- frozen text towers
    def freeze_text_layers(self, trainable_layers: int, shared_cache_key: str | None = None) -> None:
        """Train only the top ``trainable_layers`` layers of the text tower; with 0 the whole tower is frozen
        and its outputs are computed once per distinct text and cached (:meth:`encode_text`), which makes
        training the heads over a large frozen encoder (e.g. an English teacher) cost one encoding pass.

        ``shared_cache_key`` (e.g. the pretrained checkpoint's id, for a tower frozen as loaded) shares the
        cache with every model of this process frozen under the same key (several students, a sweep)."""
        freeze_lower_layers(self.tower, self.text_encoder, trainable_layers)
        if trainable_layers:
            self._text_cache = None
        else:
            self._text_cache = _SHARED_TEXT_CACHES.setdefault(shared_cache_key, {}) if shared_cache_key else {}

    @contextlib.contextmanager
    def without_text_cache(self) -> Iterator[VideoTextModel]:
        """Inside the block :meth:`encode_text` runs the tower itself, never a frozen tower's cache (e.g. to
        trace or export the text path)."""
        cache, self._text_cache = self._text_cache, None
        try:
            yield self
        finally:
            self._text_cache = cache

    def _cached_tower_outputs(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled outputs of the frozen tower, keyed by each row's unpadded token ids (and its token types):
        a text is encoded once, in eval mode (no dropout), whatever batch it comes in."""
        cache = self._text_cache
        assert cache is not None
        mask = inputs["attention_mask"].bool()
        ids = inputs["input_ids"]
        keys = [ids[i][mask[i]].cpu().numpy().tobytes() for i in range(len(ids))]
        missing = [i for i, k in enumerate(keys) if k not in cache]
        if missing:
            was_training = self.text_encoder.training
            self.text_encoder.eval()
            sub = {k: v[missing] for k, v in inputs.items()}
            with torch.no_grad():
                pooled = self.tower.encode(self.text_encoder, sub).float().cpu()
            self.text_encoder.train(was_training)
            for i, row in zip(missing, pooled):
                cache[keys[i]] = row
        return torch.stack([cache[k] for k in keys]).to(ids.device)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_text_encoder(
        cls,
        name_or_path: str,
        *,
        revision: str | None = None,
        text_tower: str = DEFAULT_TEXT_TOWER,
        **config_kwargs: Any,
    ) -> VideoTextModel:
        """A new model whose text tower starts from a pretrained checkpoint (safetensors weights only).

        ``text_tower`` is the registered kind that reads it (:mod:`mtvr.text_towers`: ``transformers`` mean
        pooling, ``sentence-transformers`` its own pipeline, ``clip`` CLIP's text tower with its projection).
        """
        return cls.from_text_encoder_with_tokenizer(
            name_or_path, revision=revision, text_tower=text_tower, **config_kwargs
        )[0]

    @classmethod
    def from_text_encoder_with_tokenizer(
        cls,
        name_or_path: str,
        *,
        revision: str | None = None,
        text_tower: str = DEFAULT_TEXT_TOWER,
        **config_kwargs: Any,
    ) -> tuple[VideoTextModel, Any]:
        loaded = get_tower(text_tower).from_pretrained(name_or_path, revision)
        if loaded.max_text_length is not None:  # the checkpoint's own truncation length
            config_kwargs.setdefault("max_text_length", loaded.max_text_length)
        if config_kwargs.get("text_prompt") is None:  # the prompt the tower's authors trained it with
            config_kwargs["text_prompt"] = authors_query_prompt(name_or_path, revision)
        config = VideoTextConfig(
            text_model_name_or_path=str(name_or_path),
            text_tower=text_tower,
            text_config=loaded.text_config,
            **config_kwargs,
        )
        return cls(config, loaded.encoder), loaded.tokenizer

    def _state_to_save(self) -> dict[str, torch.Tensor]:
        if not self.tower.own_folder:
            return dict(self.state_dict())
        # a tower saved whole in its own folder (sentence-transformers' text_tower/): no second copy of its weights
        return {k: v for k, v in self.state_dict().items() if not k.startswith("text_encoder.")}

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` (+ ``text_tower/``) into an existing folder."""
        from safetensors.torch import save_file

        folder = Path(folder)
        self.config.text_config = self.tower.save(self.text_encoder, folder)
        self.config.save(folder)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._state_to_save().items()}
        save_file(_untie(tensors), str(folder / WEIGHTS_NAME), metadata={"format": "pt", "mtvr": "VideoTextModel"})

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> VideoTextModel:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        config = VideoTextConfig.load(folder)
        weights = check_safetensors_present(folder)
        model = cls(config, folder=folder)
        try:
            state = load_file(str(weights), device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{weights} cannot be read ({exc}); re-save or re-download the model") from exc
        expected = model._state_to_save()
        # position_ids-like buffers that transformers re-creates are harmless; real weights are not.
        missing = [k for k in expected if k not in state and not k.endswith("position_ids")]
        # folders saved before the unused pooler was dropped still carry its weights
        unexpected = [k for k in state if k not in expected and not k.startswith("text_encoder.pooler.")]
        if missing or unexpected:
            raise ModelLoadError(
                f"{weights} does not match {folder / 'config.json'}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        state = {k: v for k, v in state.items() if k in expected}
        shapes = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
        if shapes:
            k = shapes[0]
            raise ModelLoadError(
                f"{weights}: tensor {k} has shape {tuple(state[k].shape)} but config.json implies "
                f"{tuple(expected[k].shape)}; the weights and config.json do not belong together"
            )
        dtypes = [k for k, v in state.items() if expected[k].is_floating_point() and not v.is_floating_point()]
        if dtypes:  # load_state_dict would cast integers silently (e.g. int64 weights truncated to whole numbers)
            k = dtypes[0]
            raise ModelLoadError(
                f"{weights}: tensor {k} is {str(state[k].dtype).replace('torch.', '')}, not floating point "
                f"({len(dtypes)} such tensors); these are not the model's weights"
            )
        model.load_state_dict(state, strict=False)
        # tied weights (CLIP / BERT embeddings) are stored once: re-tie after loading
        if hasattr(model.text_encoder, "tie_weights"):
            model.text_encoder.tie_weights()
        return model

    # ----------------------------------------------------------------- forward
    def text_tower_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor):
        """The text tower's pooled outputs ``[B, H]`` (from the cache when the tower is frozen), before centering
        and projection."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **extra}
        if self._text_cache is not None:
            return self._cached_tower_outputs(inputs)
        return self.tower.encode(self.text_encoder, inputs)

    def set_text_mean(self, mean: torch.Tensor) -> None:
        """Set the vector that ``text_centering`` subtracts (the mean tower output over the training captions)."""
        if not self.config.text_centering:
            raise OptionError("set_text_mean: this model's config has text_centering false")
        if tuple(mean.shape) != tuple(self.text_feature_mean.shape):
            raise OptionError(
                f"set_text_mean: expected shape {tuple(self.text_feature_mean.shape)}, got {tuple(mean.shape)}"
            )
        self.text_feature_mean.copy_(mean.detach().to(self.text_feature_mean))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        pooled = self.text_tower_outputs(input_ids, attention_mask, **extra)
        if self.config.text_centering:
            pooled = pooled - self.text_feature_mean.to(pooled.dtype)
        return nn.functional.normalize(self.text_projection(pooled), dim=-1)

    def encode_frames(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings ``[B, T, E]`` before aggregation (L2-normalised with ``normalize_frames``)."""
        frames = self.video_projection(features)
        return nn.functional.normalize(frames, dim=-1) if self.config.normalize_frames else frames

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


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep one copy of tensors that share memory (tied embeddings): safetensors refuses shared storage."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for k, v in tensors.items():
        key = (v.data_ptr(), v.numel())
        if v.numel() and key in seen:
            continue
        seen[key] = k
        out[k] = v
    return out
