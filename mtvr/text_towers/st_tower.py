"""The ``sentence-transformers`` text tower: a sentence-transformers pipeline (``modules.json``: Transformer,
Pooling with its own mode — mean, CLS, max…, Dense, Normalize…), loaded with sentence-transformers itself, so
that e.g. ``sentence-transformers/LaBSE`` (CLS + Dense + Normalize) or a multilingual CLIP student (mean + Dense
into CLIP space) computes what its authors trained (Reimers & Gurevych, EMNLP 2019 / 2020). Saved as a complete
sentence-transformers folder ``text_tower/`` inside the mtvr folder; its weights are not repeated in
``model.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .base import PretrainedTower, TextTower, drop_unused_pooler, find_transformer_layers
from .safety import load_sentence_transformer

ST_FOLDER = "text_tower"


def st_transformer(encoder: nn.Module) -> Any:
    """The Transformer module of a sentence-transformers pipeline (its first module)."""
    return encoder[0]


class SentenceTransformersTower(TextTower):
    kind = "sentence-transformers"
    own_folder = True

    @classmethod
    def load(cls, folder: Path) -> PretrainedTower:
        st = load_sentence_transformer(folder)
        return PretrainedTower(st, st.tokenizer, {}, max_text_length=int(st.max_seq_length))

    @classmethod
    def from_config(cls, text_config: dict[str, Any], folder: Path | None) -> nn.Module:
        if folder is None or not (folder / ST_FOLDER).is_dir():
            raise ModelLoadError(f"{folder}: a sentence-transformers text tower needs its {ST_FOLDER}/ folder")
        return load_sentence_transformer(folder / ST_FOLDER)

    @classmethod
    def prepare(cls, encoder: nn.Module) -> nn.Module:
        drop_unused_pooler(st_transformer(encoder).auto_model)
        return encoder

    @classmethod
    def encode(cls, encoder: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return encoder(dict(inputs))["sentence_embedding"]

    @classmethod
    def output_dim(cls, encoder: nn.Module) -> int:
        get = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
        return int(get())

    @classmethod
    def layers(cls, encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
        return find_transformer_layers(st_transformer(encoder).auto_model)

    @classmethod
    def save(cls, encoder: nn.Module, folder: Path) -> dict[str, Any]:
        encoder.save(str(folder / ST_FOLDER), safe_serialization=True)
        return {}

    @classmethod
    def load_tokenizer(cls, folder: Path, text_config: dict[str, Any], encoder: nn.Module | None = None) -> Any:
        """The pipeline brings its own tokenizer (checked when its folder was loaded)."""
        if encoder is not None:
            return encoder.tokenizer
        return super().load_tokenizer(folder, text_config, encoder)
