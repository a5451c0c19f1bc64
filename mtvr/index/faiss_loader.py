"""The ``faiss`` module, imported on first use, and helpers that look inside faiss index objects."""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError


class _LazyFaiss:
    """Stands for the ``faiss`` module until an index is really built or loaded.

    ``import mtvr`` (and every command that builds datasets or trains) works without faiss; the first
    use of ``faiss.<name>`` imports it, caches the attribute here, and explains what to install if missing.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            import faiss as module
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                "building or loading a video index needs faiss: install `mtvr[cpu]` (faiss-cpu) or "
                "`mtvr[gpu]` (faiss-gpu), never both"
            ) from exc
        value = getattr(module, name)
        setattr(self, name, value)  # later look-ups skip __getattr__
        return value


faiss: Any = _LazyFaiss()


def gpu_available() -> bool:
    """Whether faiss-gpu is installed and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def base_of(index: Any) -> Any:
    """The index inside an id map (or the index itself)."""
    if isinstance(index, faiss.IndexIDMap) or isinstance(index, faiss.IndexIDMap2):
        return faiss.downcast_index(index.index)
    return index


def hnsw_of(index: Any) -> Any:
    """The HNSW graph of an HNSW index, else ``None``."""
    base = faiss.downcast_index(index)
    return base.hnsw if hasattr(base, "hnsw") else None


def ivf_of(index: Any) -> Any:
    """The inverted-file part of an IVF index, else ``None``."""
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None
