"""Temporal aggregation of frame embeddings into one video embedding.

Every aggregator maps frame embeddings ``x: [B, T, E]`` and a mask ``mask: [B, T]`` (``True`` for a
real frame, ``False`` for padding) to ``(video: [B, E], frame_weights: [B, T])``. The frame weights
say how much each frame contributed (they sum to one over the real frames and are zero on padding);
TeachCLIP's fine-grained distillation trains them.

* ``mean``: average of the real frames.
* ``seqtransf``: CLIP4Clip's "sequential transformer" (Luo et al., Neurocomputing 2022, Sec. 3.3):
  positional embeddings + a small transformer encoder over the frames, a residual connection to the
  input frames, then the mean over real frames.
* ``afa``: TeachCLIP's attentional frame-feature aggregation (Tian et al., CVPR 2024, Eq. 3-4):
  ``w = softmax_t(Linear(ReLU(Linear(x_t))) / temperature)`` over the real frames, and
  ``v = sum_t w_t * x_t / ||x_t||``: one vector per video, so retrieval costs nothing extra.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .config import VideoTextConfig


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of ``x [B, T, E]`` counting only positions where ``mask [B, T]`` is true."""
    weights = mask.to(x.dtype)
    return (x * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp_min(1.0)


def _uniform_weights(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    w = mask.to(dtype)
    return w / w.sum(1, keepdim=True).clamp_min(1.0)


class MeanAggregator(nn.Module):
    def __init__(self, config: VideoTextConfig) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_mean(x, mask), _uniform_weights(mask, x.dtype)


class SeqTransfAggregator(nn.Module):
    def __init__(self, config: VideoTextConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        heads = config.seqtransf_heads if dim % config.seqtransf_heads == 0 else 1
        self.position = nn.Embedding(config.max_frames, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.1,
                                           batch_first=True, norm_first=False)
        self.transformer = nn.TransformerEncoder(layer, config.seqtransf_layers, enable_nested_tensor=False)
        nn.init.normal_(self.position.weight, std=0.01)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.shape[1]
        if t > self.position.num_embeddings:
            raise ValueError(f"{t} frames exceed max_frames={self.position.num_embeddings} of this model")
        positions = torch.arange(t, device=x.device)
        h = self.transformer(x + self.position(positions)[None], src_key_padding_mask=~mask)
        h = h + x  # residual to the input frames, as in CLIP4Clip
        return masked_mean(h, mask), _uniform_weights(mask, x.dtype)


class AFAAggregator(nn.Module):
    def __init__(self, config: VideoTextConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.scorer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.temperature = config.afa_temperature

    def frame_weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.scorer(x).squeeze(-1) / self.temperature
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        return torch.softmax(logits, dim=-1) * mask.to(logits.dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.frame_weights(x, mask)
        frames = nn.functional.normalize(x, dim=-1)
        return (w.unsqueeze(-1) * frames).sum(1), w


AGGREGATORS: dict[str, Callable[[VideoTextConfig], nn.Module]] = {
    "mean": MeanAggregator,
    "seqtransf": SeqTransfAggregator,
    "afa": AFAAggregator,
}


def build_aggregator(config: VideoTextConfig) -> nn.Module:
    try:
        return AGGREGATORS[config.aggregator](config)
    except KeyError:
        raise ValueError(f"unknown aggregator {config.aggregator!r}; choose one of {sorted(AGGREGATORS)}") from None
