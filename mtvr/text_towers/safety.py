"""Loading a text tower's files safely: safetensors only, sentence-transformers' own module classes only.

Shared by every tower kind (and by the CLIP vision encoder, which refuses pickle-only checkpoints too).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..config import PICKLE_SUFFIXES
from ..errors import ModelLoadError, UnsafeModulesError, UnsafeWeightsError
from ..tokenization import require_tokenizer_files, sentence_transformer_module_folders

ST_PACKAGE = "sentence_transformers"


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


def check_modules_json(folder: Path) -> list[dict]:
    """The entries of ``folder/modules.json``, refusing any module class outside sentence-transformers.

    Each ``type`` is an import path that sentence-transformers imports and instantiates: a folder from
    anywhere could name any class of any installed package. Only sentence-transformers' own module
    classes are allowed (their dotted path starts with ``sentence_transformers.`` and, imported, is a
    class defined inside that package).
    """
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


def read_modules(folder: Path) -> list[str]:
    """The module types of a sentence-transformers folder (for cards and tests)."""
    return [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
