"""The ``transformers`` text tower: any Hugging Face encoder (``AutoModel``) with attention-masked mean pooling
(Sentence-BERT's default, Reimers & Gurevych 2019). Its architecture is stored as ``text_config`` in
``config.json``; its weights live in the mtvr ``model.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import PretrainedTower, TextTower, drop_unused_pooler, mean_pool, pretrained_tokenizer, text_config_from_dict


class TransformersTower(TextTower):
    kind = "transformers"

    @classmethod
    def load(cls, folder: Path) -> PretrainedTower:
        from transformers import AutoConfig, AutoModel

        tokenizer = pretrained_tokenizer(folder, f"{cls.kind} text tower")
        hf_config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        encoder = AutoModel.from_pretrained(str(folder), use_safetensors=True, trust_remote_code=False)
        return PretrainedTower(encoder, tokenizer, hf_config.to_dict())

    @classmethod
    def from_config(cls, text_config: dict[str, Any], folder: Path | None) -> nn.Module:
        from transformers import AutoModel

        return AutoModel.from_config(text_config_from_dict(text_config))

    @classmethod
    def prepare(cls, encoder: nn.Module) -> nn.Module:
        return drop_unused_pooler(encoder)

    @classmethod
    def encode(cls, encoder: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return mean_pool(encoder(**inputs).last_hidden_state, inputs["attention_mask"])

    @classmethod
    def output_dim(cls, encoder: nn.Module) -> int:
        return int(encoder.config.hidden_size)
