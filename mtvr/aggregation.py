"""Temporal aggregation of frame embeddings into one video embedding.

Every aggregator maps frame embeddings ``x: [B, T, E]`` and a mask ``mask: [B, T]`` (``True`` for a
real frame, ``False`` for padding) to ``(video: [B, E], frame_log_weights: [B, T])``. The frame
weights say how much each frame contributed (they sum to one over the real frames; padding has log
weight ``-inf``); TeachCLIP's fine-grained distillation trains them. Log weights (not weights) are
returned so that a cross-entropy on them never takes the log of an underflowed softmax.

* ``mean``: average of the real frames.
* ``seqtransf``: CLIP4Clip's "sequential transformer" (Luo et al., Neurocomputing 2022, Sec. 3.3):
  positional embeddings + a small transformer encoder over the frames, a residual connection to the
  input frames, then the mean over real frames.
* ``afa``: TeachCLIP's attentional frame-feature aggregation (Tian et al., CVPR 2024, Eq. 3-4), on the
  projected frames: scores ``s_t = Linear(ReLU(Linear(x_t)))``; the video is
  ``v = Σ_t softmax_t(s/τ_agg)_t · x_t/‖x_t‖`` with ``τ_agg = afa_temperature`` (0.1 in the official
  ``modules/modeling.py``), and the distilled frame weights are ``softmax_t(s/τ_w)`` with
  ``τ_w = afa_weight_temperature`` (1 in the official code).
* ``seqtransf+afa``: the official TeachCLIP student: AFA runs on the output of the temporal
  transformer (seqTransf, with its residual), not on the raw frames.

Deliberate deviation from the official TeachCLIP code: both softmaxes are masked to the real frames
(the official code lets padded frames take weight), so a clip's embedding does not depend on how
much padding its batch needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from .errors import ComponentError, OptionError


class AggregatorConfig(Protocol):
    """What an aggregator reads of a model's config (:class:`mtvr.config.VideoTextConfig` has it all).

    A protocol, not an import of :mod:`mtvr.config`: the config validates aggregator names against
    :data:`AGGREGATORS`, so the import arrow points from the config to this module only."""

    aggregator: str
    embed_dim: int
    max_frames: int
    seqtransf_layers: int
    seqtransf_heads: int
    afa_temperature: float
    afa_weight_temperature: float


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of ``x [B, T, E]`` counting only positions where ``mask [B, T]`` is true."""
    weights = mask.to(x.dtype)
    return (x * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp_min(1.0)


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over dim -1 restricted to ``mask``; masked positions are ``-inf``."""
    return torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


def _uniform_log_weights(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return masked_log_softmax(torch.zeros(mask.shape, dtype=dtype, device=mask.device), mask)


class MeanAggregator(nn.Module):
    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_mean(x, mask), _uniform_log_weights(mask, x.dtype)


class TemporalTransformer(nn.Module):
    """CLIP4Clip's seqTransf body: ``h = Transformer(x + pos) + x`` (padding masked)."""

    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        heads = config.seqtransf_heads if dim % config.seqtransf_heads == 0 else 1
        self.position = nn.Embedding(config.max_frames, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=0.1, batch_first=True, norm_first=False
        )
        self.transformer = nn.TransformerEncoder(layer, config.seqtransf_layers, enable_nested_tensor=False)
        nn.init.normal_(self.position.weight, std=0.01)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.position.num_embeddings:
            raise OptionError(f"{t} frames exceed max_frames={self.position.num_embeddings} of this model")
        positions = torch.arange(t, device=x.device)
        h = self.transformer(x + self.position(positions)[None], src_key_padding_mask=~mask)
        return h + x  # residual to the input frames, as in CLIP4Clip


class SeqTransfAggregator(nn.Module):
    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        self.temporal = TemporalTransformer(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_mean(self.temporal(x, mask), mask), _uniform_log_weights(mask, x.dtype)


class AFAAggregator(nn.Module):
    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.scorer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.temperature = config.afa_temperature
        self.weight_temperature = config.afa_weight_temperature

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scorer(x).squeeze(-1)
        agg = masked_log_softmax(scores / self.temperature, mask).exp()
        frames = nn.functional.normalize(x, dim=-1)
        video = (agg.unsqueeze(-1) * frames).sum(1)
        return video, masked_log_softmax(scores / self.weight_temperature, mask)


class SeqTransfAFAAggregator(nn.Module):
    """The official TeachCLIP student: AFA on the temporal transformer's output."""

    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        self.temporal = TemporalTransformer(config)
        self.afa = AFAAggregator(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.afa(self.temporal(x, mask), mask)


AGGREGATORS: dict[str, Callable[[AggregatorConfig], nn.Module]] = {
    "mean": MeanAggregator,
    "seqtransf": SeqTransfAggregator,
    "afa": AFAAggregator,
    "seqtransf+afa": SeqTransfAFAAggregator,
}


def build_aggregator(config: AggregatorConfig) -> nn.Module:
    try:
        return AGGREGATORS[config.aggregator](config)
    except KeyError:
        raise ComponentError(f"unknown aggregator {config.aggregator!r}; choose one of {sorted(AGGREGATORS)}") from None
