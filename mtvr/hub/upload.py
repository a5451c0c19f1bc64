"""Uploading folders to the Hugging Face Hub. Tokens are passed through, never printed or logged."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HubConnectionError, MtvrError


def resolve_token(token: str | None = None) -> str | None:
    """The token argument, else ``HF_TOKEN``, else the user's saved login (``hf auth login``)."""
    if token:
        return token
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    return get_token()


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def upload_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    repo_type: str = "model",
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    revision: str | None = None,
) -> str:
    """``HfApi.create_repo(exist_ok=True)`` then ``upload_folder``; returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    if not folder.is_dir():
        raise MtvrError(f"nothing to upload: {folder} is not a folder")
    token = resolve_token(token)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type=repo_type,
            revision=revision,
            commit_message=commit_message or f"Upload {repo_type} with mtvr",
        )
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        raise MtvrError(
            f"uploading {folder} to {repo_type} repo {repo_id!r} failed (HTTP {status}): "
            f"{_scrub(str(exc).splitlines()[0], token)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - network errors of httpx / requests are not OSError subclasses
        if _is_connection_error(exc):
            from huggingface_hub import constants

            raise HubConnectionError(
                f"the Hub could not be reached at {constants.ENDPOINT} ({type(exc).__name__}); nothing was uploaded "
                f"to {repo_id!r}: check the network, a proxy, or HF_ENDPOINT"
            ) from None
        if isinstance(exc, (OSError, ValueError)):
            raise MtvrError(f"uploading to {repo_id!r} failed: {_scrub(str(exc), token)}") from None
        raise
    return str(getattr(info, "commit_url", info))


def _is_connection_error(exc: BaseException) -> bool:
    """A refused connection, a DNS failure or a timeout, in httpx, requests or the standard library."""
    names = {
        "ConnectError",
        "ConnectTimeout",
        "ConnectionError",
        "NameResolutionError",
        "ReadTimeout",
        "NewConnectionError",
        "MaxRetryError",
        "TimeoutException",
        "ConnectionRefusedError",
        "gaierror",
    }
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(type(c).__name__ in names for c in [exc]) or any(k.__name__ in names for k in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
