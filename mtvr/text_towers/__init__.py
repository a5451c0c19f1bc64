"""Text towers: what turns tokenized text into one vector, exactly as the checkpoint's authors built it.

Each kind is a :class:`~mtvr.text_towers.base.TextTower` subclass in a module of its own, registered under the
name that ``config.json`` records as ``text_tower`` (and recipes as ``text_tower:``):

* ``transformers`` (:mod:`.transformers_tower`): any Hugging Face encoder with attention-masked mean pooling.
* ``sentence-transformers`` (:mod:`.st_tower`): a sentence-transformers pipeline as its authors saved it.
* ``clip`` (:mod:`.clip_tower`): CLIP's text tower with its projection.
* ``use-multilingual`` (:mod:`.use_tower`): Google's USE-multilingual-v3 (CNN, its own SentencePiece tokenizer).

Loading is safetensors only (a folder whose weights exist only as pickle is refused, :mod:`.safety`) and never
runs remote code. A new kind: one module with a ``TextTower`` subclass and one :func:`register_tower` line
(here for a built-in kind, or in the package that brings it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import PICKLE_SUFFIXES
from .base import (
    TEXT_TOWERS,
    PretrainedTower,
    TextTower,
    authors_query_prompt,
    drop_unused_pooler,
    find_transformer_layers,
    get_tower,
    mean_pool,
    register_tower,
    text_config_from_dict,
    tower_kinds,
)
from .safety import (
    ST_PACKAGE,
    check_modules_json,
    is_sentence_transformers_folder,
    load_sentence_transformer,
    read_modules,
    refuse_pickle_only,
)

# the built-in kinds, imported on first use (as mtvr.builders names the dataset builders)
register_tower("transformers", "mtvr.text_towers.transformers_tower:TransformersTower")
register_tower("sentence-transformers", "mtvr.text_towers.st_tower:SentenceTransformersTower")
register_tower("clip", "mtvr.text_towers.clip_tower:CLIPTextTower")
register_tower("use-multilingual", "mtvr.text_towers.use_tower:USEMultilingualTower")


def load_pretrained_tower(kind: str, name_or_path: str, revision: str | None = None) -> tuple[nn.Module, Any, dict]:
    """``(encoder, tokenizer, text_config)`` of a pretrained tower of ``kind`` (local folder or Hub id)."""
    loaded = get_tower(kind).from_pretrained(name_or_path, revision)
    return loaded.encoder, loaded.tokenizer, loaded.text_config


def transformer_layers(kind: str, encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """``(hf_model, layers)``: the Hugging Face model inside a tower of ``kind`` and its transformer layers."""
    return get_tower(kind).layers(encoder)


def freeze_lower_layers(tower: type[TextTower], encoder: nn.Module, trainable_layers: int) -> int:
    """Freeze a tower but for its top ``trainable_layers`` transformer layers (and, when that is not 0, the
    modules around the transformer, e.g. a sentence-transformers Dense). Returns the number of layers."""
    from ..errors import ModelLoadError

    hf, layers = tower.layers(encoder)
    if trainable_layers > len(layers):
        raise ModelLoadError(f"trainable_layers {trainable_layers} > the {len(layers)} layers of the text encoder")
    for p in encoder.parameters():
        p.requires_grad_(trainable_layers > 0)
    for p in hf.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[len(layers) - trainable_layers :] if trainable_layers else []:
        for p in layer.parameters():
            p.requires_grad_(True)
    return len(layers)


def encode_with_tower(kind: str, encoder: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, H]`` sentence vectors of a tower of ``kind`` (before mtvr's projection and L2 normalisation)."""
    return get_tower(kind).encode(encoder, inputs)


__all__ = [
    "PICKLE_SUFFIXES",
    "ST_PACKAGE",
    "TEXT_TOWERS",
    "PretrainedTower",
    "TextTower",
    "authors_query_prompt",
    "check_modules_json",
    "drop_unused_pooler",
    "encode_with_tower",
    "find_transformer_layers",
    "freeze_lower_layers",
    "get_tower",
    "is_sentence_transformers_folder",
    "load_pretrained_tower",
    "load_sentence_transformer",
    "mean_pool",
    "read_modules",
    "refuse_pickle_only",
    "register_tower",
    "text_config_from_dict",
    "tower_kinds",
    "transformer_layers",
]
