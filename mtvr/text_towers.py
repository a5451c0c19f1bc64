"""Text towers: what turns tokenized text into one vector, exactly as the checkpoint's authors built it.

Three kinds, recorded as ``text_tower`` in an mtvr ``config.json``:

* ``transformers``: any Hugging Face encoder (``AutoModel``) with attention-masked mean pooling
  (Sentence-BERT's default). Its architecture is stored as ``text_config``; its weights live in the
  mtvr ``model.safetensors``.
* ``sentence-transformers``: a sentence-transformers pipeline (``modules.json``: Transformer, Pooling
  with its own mode — mean, CLS, max…, Dense, Normalize…), loaded with sentence-transformers itself,
  so that e.g. ``sentence-transformers/LaBSE`` (CLS + Dense + Normalize) or a multilingual CLIP student
  (mean + Dense into CLIP space) computes what its authors trained. Saved as a complete
  sentence-transformers folder ``text_tower/`` inside the mtvr folder.
* ``clip``: a CLIP text tower (``CLIPTextModelWithProjection``, its ``text_embeds``), e.g. the English
  text side of ``openai/clip-vit-base-patch32`` as a teacher. Stored like ``transformers``.

Loading is safetensors only (a folder whose weights exist only as pickle is refused) and never runs
remote code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import PICKLE_SUFFIXES
from .errors import ModelLoadError, UnsafeModulesError, UnsafeWeightsError
from .tokenization import require_tokenizer_files, sentence_transformer_module_folders

TEXT_TOWERS = ("transformers", "sentence-transformers", "clip")
ST_FOLDER = "text_tower"


def refuse_pickle_only(folder: Path, what: str) -> None:
    """Raise :class:`UnsafeWeightsError` when a folder (or a module folder in it) has pickle weights
    and no safetensors beside them."""
    for sub in [folder, *[p for p in folder.iterdir() if p.is_dir()]] if folder.is_dir() else []:
        pickles = sorted(p.name for p in sub.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
        if pickles and not any(p.suffix == ".safetensors" for p in sub.iterdir()):
            raise UnsafeWeightsError(
                f"{what} {sub} holds weights only as pickle ({', '.join(pickles)}); mtvr loads safetensors only, "
                "because unpickling runs arbitrary code. Convert them to safetensors with a trusted copy."
            )


ST_PACKAGE = "sentence_transformers"


def check_modules_json(folder: Path) -> list[dict]:
    """The entries of ``folder/modules.json``, refusing any module class outside sentence-transformers.

    Each ``type`` is an import path that sentence-transformers imports and instantiates: a folder from
    anywhere could name any class of any installed package. Only sentence-transformers' own module
    classes are allowed (their dotted path starts with ``sentence_transformers.`` and, imported, is a
    class defined inside that package).
    """
    import importlib

    path = folder / "modules.json"
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} cannot be read as JSON ({exc})") from exc
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelLoadError(f"{path} must be a list of module entries")
    for m in modules:
        kind = m.get("type")
        module_name, _, cls_name = str(kind).rpartition(".")
        if not isinstance(kind, str) or not module_name.startswith(ST_PACKAGE + ".") or not cls_name.isidentifier():
            raise UnsafeModulesError(
                f"{path} names the module class {kind!r}: mtvr loads only sentence-transformers' own modules "
                f"({ST_PACKAGE}.*), because modules.json is an import path that the folder controls"
            )
        sub = str(m.get("path", ""))
        if sub.startswith(("/", "\\")) or ".." in Path(sub).parts:
            raise UnsafeModulesError(f"{path}: module path {sub!r} leaves the folder")
        try:
            obj = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(f"{path}: module class {kind!r} does not exist in sentence-transformers") from exc
        if not isinstance(obj, type) or not obj.__module__.startswith(ST_PACKAGE + "."):
            raise UnsafeModulesError(f"{path}: {kind!r} is not a sentence-transformers module class")
    return modules


def load_sentence_transformer(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """A sentence-transformers model from a local folder (safetensors only, sentence-transformers' own
    module classes only, no remote code)."""
    from sentence_transformers import SentenceTransformer

    folder = Path(path)
    if not (folder / "modules.json").is_file():
        raise ModelLoadError(f"{folder} has no modules.json: it is not a sentence-transformers folder")
    check_modules_json(folder)
    refuse_pickle_only(folder, "sentence-transformers folder")
    for module_folder in sentence_transformer_module_folders(folder):
        require_tokenizer_files(module_folder, "the Transformer module of sentence-transformers folder")
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # mtvr drops the unused BERT pooler: its absence is expected
    try:
        return SentenceTransformer(
            str(folder), device=str(device), trust_remote_code=False, model_kwargs={"use_safetensors": True}
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{folder}: the sentence-transformers model cannot be loaded ({exc})") from exc
    finally:
        hf_logging.set_verbosity(level)


def is_sentence_transformers_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / "modules.json").is_file()


def drop_unused_pooler(encoder: nn.Module) -> nn.Module:
    """Remove a BERT-style ``pooler`` that mean / CLS-token pooling never uses.

    An unused parameter makes DDP fail at the second step ("Expected to have finished reduction in the
    prior iteration"); removing it is cleaner than ``find_unused_parameters=True`` (an extra graph
    traversal every step). transformers' encoders skip a ``None`` pooler in ``forward``.
    """
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over tokens (Reimers & Gurevych, Sentence-BERT, 2019)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


def tower_output_dim(kind: str, encoder: nn.Module) -> int:
    if kind == "sentence-transformers":
        get = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
        return int(get())
    if kind == "clip":
        return int(encoder.config.projection_dim)
    return int(encoder.config.hidden_size)


def st_transformer(encoder: nn.Module) -> Any:
    """The Transformer module of a sentence-transformers pipeline (its first module)."""
    return encoder[0]


def prepare_tower(kind: str, encoder: nn.Module) -> nn.Module:
    """Drop what the tower never uses (poolers) so that every parameter takes part in a step."""
    if kind == "sentence-transformers":
        drop_unused_pooler(st_transformer(encoder).auto_model)
    elif kind == "transformers":
        drop_unused_pooler(encoder)
    return encoder


def transformer_layers(kind: str, encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """``(hf_model, layers)``: the Hugging Face model inside a tower and its stack of transformer layers
    (``encoder.layer`` of BERT / XLM-R / MPNet, ``text_model.encoder.layers`` of CLIP)."""
    hf = st_transformer(encoder).auto_model if kind == "sentence-transformers" else encoder
    for path in ("encoder.layer", "text_model.encoder.layers", "encoder.layers", "transformer.layer"):
        obj: Any = hf
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return hf, obj
    raise ModelLoadError(f"cannot find the transformer layers of {type(hf).__name__} to freeze them")


def freeze_lower_layers(kind: str, encoder: nn.Module, trainable_layers: int) -> int:
    """Freeze a tower but for its top ``trainable_layers`` transformer layers (and, when that is not 0, the
    modules around the transformer, e.g. a sentence-transformers Dense). Returns the number of layers."""
    hf, layers = transformer_layers(kind, encoder)
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
    """``[B, H]`` sentence vectors (before mtvr's projection and L2 normalisation)."""
    if kind == "sentence-transformers":
        return encoder(dict(inputs))["sentence_embedding"]
    if kind == "clip":
        return encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).text_embeds
    out = encoder(**inputs)
    return mean_pool(out.last_hidden_state, inputs["attention_mask"])


def load_pretrained_tower(kind: str, name_or_path: str, revision: str | None = None) -> tuple[nn.Module, Any, dict]:
    """``(encoder, tokenizer, text_config)`` of a pretrained tower (local folder or Hub id).

    ``text_config`` is the transformers config dict for ``transformers`` / ``clip`` towers (the
    architecture mtvr stores in ``config.json``) and ``{}`` for sentence-transformers towers.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModelWithProjection

    from .hub.download import resolve_folder

    if kind not in TEXT_TOWERS:
        raise ModelLoadError(f"unknown text tower kind {kind!r}; choose one of {TEXT_TOWERS}")
    folder = resolve_folder(name_or_path, revision=revision)
    refuse_pickle_only(folder, "text tower")
    if kind == "sentence-transformers":
        st = load_sentence_transformer(folder)
        return st, st.tokenizer, {}
    require_tokenizer_files(folder, f"{kind} text tower")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if kind == "clip":
        full = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        text_cfg = getattr(full, "text_config", full)
        if hasattr(full, "projection_dim"):  # a full CLIPModel checkpoint: its projection size is the outer one
            text_cfg.projection_dim = full.projection_dim
        encoder = CLIPTextModelWithProjection.from_pretrained(str(folder), config=text_cfg, use_safetensors=True)
        return encoder, tokenizer, encoder.config.to_dict()
    hf_config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    encoder = AutoModel.from_pretrained(str(folder), use_safetensors=True, trust_remote_code=False)
    return encoder, tokenizer, hf_config.to_dict()


def authors_query_prompt(name_or_path: str, revision: str | None = None) -> str:
    """The prompt a tower's authors put before queries: ``prompts["query"]`` of its
    ``config_sentence_transformers.json`` (multilingual-e5: ``"query: "``, which its authors also use for
    symmetric tasks such as caption-to-caption retrieval), or ``""``. mtvr applies it to queries and
    captions alike (:attr:`mtvr.config.VideoTextConfig.text_prompt`)."""
    from .hub.download import resolve_folder

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


def build_tower_from_config(kind: str, text_config: dict, folder: Path | None) -> nn.Module:
    """The tower's architecture, from ``config.json`` (random weights; mtvr loads its own over them) or,
    for sentence-transformers, the ``text_tower/`` folder (with its weights)."""
    if kind == "sentence-transformers":
        if folder is None or not (folder / ST_FOLDER).is_dir():
            raise ModelLoadError(f"{folder}: a sentence-transformers text tower needs its {ST_FOLDER}/ folder")
        return load_sentence_transformer(folder / ST_FOLDER)
    from transformers import AutoModel, CLIPTextModelWithProjection

    hf_config = text_config_from_dict(text_config)
    if kind == "clip":
        return CLIPTextModelWithProjection(hf_config)
    return AutoModel.from_config(hf_config)


def save_sentence_transformer(encoder: nn.Module, folder: Path) -> None:
    encoder.save(str(folder / ST_FOLDER), safe_serialization=True)


def read_modules(folder: Path) -> list[str]:
    """The module types of a sentence-transformers folder (for cards and tests)."""
    return [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]


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
