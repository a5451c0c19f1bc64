"""The text-tower interface and its registry: a class per kind, found by the ``text_tower`` name in ``config.json``.

A tower kind says everything mtvr needs to know about one way of turning text into a vector: how to load it
from a pretrained checkpoint, how to rebuild it from a saved mtvr folder, how to encode, its output size, how
to save it, and its tokenizer. :class:`mtvr.modeling.VideoTextModel`, :class:`mtvr.Retriever` and the recipes
reach a tower only through :func:`get_tower`, never by comparing kind names.

Adding a kind is one new module with a :class:`TextTower` subclass and one :func:`register_tower` call (the
built-in kinds are registered in :mod:`mtvr.text_towers`; another package can register its own, or declare
it in the ``mtvr.text_towers`` entry-point group).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ComponentError, ModelLoadError
from ..registry import Registry
from ..tokenization import require_tokenizer_files, token_count, tokenize
from .safety import refuse_pickle_only


@dataclass
class PretrainedTower:
    """A tower loaded from a pretrained checkpoint, before it becomes part of a model.

    ``text_config`` is what ``config.json`` records to rebuild the architecture (``{}`` when the tower keeps a
    folder of its own); ``max_text_length`` is the checkpoint's own truncation length, when it has one.
    """

    encoder: nn.Module
    tokenizer: Any
    text_config: dict[str, Any]
    max_text_length: int | None = None


class TextTower:
    """One kind of text tower. Subclasses set :attr:`kind` and implement :meth:`load`, :meth:`from_config`,
    :meth:`encode` and :meth:`output_dim`; the rest has defaults that suit Hugging Face encoders.

    Methods are class methods over the encoder module, which the model owns (``VideoTextModel.text_encoder``):
    the weights of a tower live in the model's state dict, so saved folders keep their tensor names.
    """

    kind: ClassVar[str] = ""
    # True: the tower saves itself in a folder of its own (save / from_config) and its weights are not written
    # to the model's model.safetensors
    own_folder: ClassVar[bool] = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None) -> PretrainedTower:
        """The tower of a pretrained checkpoint (local folder or Hub id; safetensors only, no remote code)."""
        from ..hub.download import resolve_folder

        folder = resolve_folder(name_or_path, revision=revision)
        refuse_pickle_only(folder, "text tower")
        return cls.load(folder)

    @classmethod
    def load(cls, folder: Path) -> PretrainedTower:
        """Load the checkpoint in a local ``folder`` (already checked for pickle-only weights)."""
        raise _missing(cls, "load")

    @classmethod
    def from_config(cls, text_config: dict[str, Any], folder: Path | None) -> nn.Module:
        """The architecture saved in an mtvr folder (``config.json``'s ``text_config``; the model's weights are
        loaded over it afterwards), or the tower's own folder inside ``folder`` when :attr:`own_folder`."""
        raise _missing(cls, "from_config")

    @classmethod
    def prepare(cls, encoder: nn.Module) -> nn.Module:
        """Drop what the tower never uses (e.g. a BERT pooler), so that every parameter takes part in a step."""
        return encoder

    # ------------------------------------------------------------------ use
    @classmethod
    def encode(cls, encoder: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, H]`` sentence vectors (before mtvr's projection and L2 normalisation)."""
        raise _missing(cls, "encode")

    @classmethod
    def output_dim(cls, encoder: nn.Module) -> int:
        """``H``, the size of :meth:`encode`'s vectors."""
        raise _missing(cls, "output_dim")

    @classmethod
    def layers(cls, encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
        """``(hf_model, layers)``: the Hugging Face model inside the tower and its transformer layers (to freeze)."""
        return find_transformer_layers(encoder)

    # ------------------------------------------------------------------ saving
    @classmethod
    def save(cls, encoder: nn.Module, folder: Path) -> dict[str, Any]:
        """Write what the tower keeps outside ``model.safetensors`` into ``folder``; return the ``text_config``
        that ``config.json`` records."""
        return encoder.config.to_dict()

    # ------------------------------------------------------------------ tokenizer
    @classmethod
    def load_tokenizer(cls, folder: Path, text_config: dict[str, Any], encoder: nn.Module | None = None) -> Any:
        """The tokenizer saved beside a model. A folder without tokenizer files is refused: transformers would
        otherwise fall back to a tiny default vocabulary, every word would become ``[UNK]``."""
        from transformers import AutoTokenizer

        require_tokenizer_files(
            folder,
            "model folder",
            "save the model with Retriever.save_pretrained, which writes the tokenizer beside it",
        )
        config = text_config_from_dict(text_config) if text_config else None
        return AutoTokenizer.from_pretrained(str(folder), config=config, trust_remote_code=False)

    @classmethod
    def save_tokenizer(cls, tokenizer: Any, folder: Path) -> None:
        tokenizer.save_pretrained(str(folder))

    @classmethod
    def tokenize(
        cls, tokenizer: Any, texts: list[str], max_length: int, device: torch.device | str, prompt: str = ""
    ) -> dict[str, torch.Tensor]:
        """The encoder's inputs for ``texts`` (``prompt`` prepended, padded, truncated to ``max_length``)."""
        return tokenize(tokenizer, texts, max_length, device, prompt)

    @classmethod
    def token_count(cls, tokenizer: Any, text: str, prompt: str = "") -> int:
        """How many tokens ``prompt + text`` makes without truncation (to warn about truncated queries)."""
        return token_count(tokenizer, text, prompt)


REQUIRED = ("load", "from_config", "encode", "output_dim")


def _missing(cls: type, method: str) -> ComponentError:
    return ComponentError(f"text tower {cls.__name__} ({cls.kind!r}) does not implement {method}()")


# ---------------------------------------------------------------------- the registry
REQUIRED = ("load", "from_config", "encode", "output_dim")


def _missing(cls: type, method: str) -> ComponentError:
    return ComponentError(f"text tower {cls.__name__} ({cls.kind!r}) does not implement {method}()")


def _check_tower(kind: str, tower: Any) -> None:
    if not (isinstance(tower, type) and issubclass(tower, TextTower)):
        raise ComponentError(f"text tower {kind!r} must be a TextTower subclass, got {tower!r}")
    lacking = [m for m in REQUIRED if getattr(tower, m).__func__ is getattr(TextTower, m).__func__]
    if lacking:
        raise ComponentError(f"text tower {kind!r} ({tower.__name__}) does not implement {', '.join(lacking)}")


# unknown kinds come from config.json or an argument: a ModelLoadError, as for any unreadable model folder
TEXT_TOWERS: Registry[type[TextTower]] = Registry(
    "text tower kind", entry_points="mtvr.text_towers", check=_check_tower, unknown_error=ModelLoadError
)


def register_tower(kind: str, tower: type[TextTower] | str) -> None:
    """Make ``text_tower: kind`` (recipes, ``config.json``, ``from_text_encoder(text_tower=kind)``) use ``tower``:
    a :class:`TextTower` subclass, or ``"package.module:Class"`` imported on first use."""
    TEXT_TOWERS.register(kind, tower)


def tower_kinds() -> list[str]:
    """Every registered kind, sorted."""
    return TEXT_TOWERS.names()


def get_tower(kind: str) -> type[TextTower]:
    """The tower class registered as ``kind``; an unknown kind raises :class:`ModelLoadError` listing them."""
    return TEXT_TOWERS.get(kind)


# ---------------------------------------------------------------------- helpers the kinds share
def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over tokens (Reimers & Gurevych, Sentence-BERT, 2019)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


def drop_unused_pooler(encoder: nn.Module) -> nn.Module:
    """Remove a BERT-style ``pooler`` that mean / CLS-token pooling never uses.

    An unused parameter makes DDP fail at the second step ("Expected to have finished reduction in the
    prior iteration"); removing it is cleaner than ``find_unused_parameters=True`` (an extra graph
    traversal every step). transformers' encoders skip a ``None`` pooler in ``forward``.
    """
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def find_transformer_layers(hf: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """``(hf, layers)``: the stack of transformer layers of a Hugging Face model (``encoder.layer`` of BERT /
    XLM-R / MPNet, ``text_model.encoder.layers`` of CLIP)."""
    for path in ("encoder.layer", "text_model.encoder.layers", "encoder.layers", "transformer.layer"):
        obj: Any = hf
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return hf, obj
    raise ModelLoadError(f"cannot find the transformer layers of {type(hf).__name__} to freeze them")


def pretrained_tokenizer(folder: Path, what: str) -> Any:
    """The tokenizer of a pretrained checkpoint folder (refused without vocabulary files, no remote code)."""
    from transformers import AutoTokenizer

    require_tokenizer_files(folder, what)
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)


def text_config_from_dict(data: dict[str, Any]):
    """Rebuild a transformers config from ``to_dict()`` output, without remote code."""
    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ModelLoadError("text_config has no model_type: cannot rebuild the text encoder")
    try:
        from transformers import AutoConfig

        return AutoConfig.for_model(model_type, **data)
    except ValueError as exc:
        raise ModelLoadError(
            f"text encoder type {model_type!r} is not known to this transformers version: {exc}"
        ) from exc


def authors_query_prompt(name_or_path: str, revision: str | None = None) -> str:
    """The prompt a tower's authors put before queries: ``prompts["query"]`` of its
    ``config_sentence_transformers.json`` (multilingual-e5: ``"query: "``, which its authors also use for
    symmetric tasks such as caption-to-caption retrieval), or ``""``. mtvr applies it to queries and
    captions alike (:attr:`mtvr.config.VideoTextConfig.text_prompt`)."""
    from ..hub.download import resolve_folder

    path = resolve_folder(name_or_path, revision=revision) / "config_sentence_transformers.json"
    try:
        prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    except FileNotFoundError:
        return ""
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{path} cannot be read ({exc})") from exc
    prompt = prompts.get("query", "") if isinstance(prompts, dict) else ""
    if not isinstance(prompt, str):
        raise ModelLoadError(f"{path}: prompts.query must be a string, got {prompt!r}")
    return prompt
