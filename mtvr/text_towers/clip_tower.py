"""The ``clip`` text tower: CLIP's text side (``CLIPTextModelWithProjection``, its ``text_embeds``), e.g. the
English text tower of ``openai/clip-vit-base-patch32`` as a teacher (Radford et al., ICML 2021). Stored like
``transformers``: ``text_config`` in ``config.json``, weights in ``model.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import PretrainedTower, TextTower, pretrained_tokenizer, text_config_from_dict


class CLIPTextTower(TextTower):
    kind = "clip"

    @classmethod
    def load(cls, folder: Path) -> PretrainedTower:
        from transformers import AutoConfig, CLIPTextModelWithProjection

        tokenizer = pretrained_tokenizer(folder, f"{cls.kind} text tower")
        full = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        text_cfg = getattr(full, "text_config", full)
        if hasattr(full, "projection_dim"):  # a full CLIPModel checkpoint: its projection size is the outer one
            text_cfg.projection_dim = full.projection_dim
        encoder = CLIPTextModelWithProjection.from_pretrained(str(folder), config=text_cfg, use_safetensors=True)
        return PretrainedTower(encoder, tokenizer, encoder.config.to_dict())

    @classmethod
    def from_config(cls, text_config: dict[str, Any], folder: Path | None) -> nn.Module:
        from transformers import CLIPTextModelWithProjection

        return CLIPTextModelWithProjection(text_config_from_dict(text_config))

    @classmethod
    def encode(cls, encoder: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).text_embeds

    @classmethod
    def output_dim(cls, encoder: nn.Module) -> int:
        return int(encoder.config.projection_dim)
