"""The faiss index folder: ``index.faiss`` + ``ids.json`` + ``index_config.json``, written atomically and
checked (keys, ids, counts, dimension, SHA-256 of ``index.faiss``) when read back."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_folder, restore_interrupted_swap
from ..errors import IndexLoadError
from .config import IndexConfig
from .faiss_loader import faiss, gpu_available

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
INDEX_CONFIG_FILE = "index_config.json"
TUNING_IDS_FILE = "tuning_ids.npy"  # exact vectors of a quantised index with a recall target (int64 ids)
TUNING_VECTORS_FILE = "tuning_vectors.npy"
TUNING_QUERIES_FILE = "tuning_queries.npy"  # the real queries given to VideoIndex.tune(queries=...)


@dataclass
class IndexState:
    """Everything of a faiss index besides its settings: the faiss object and the id/metadata maps."""

    raw: Any  # the faiss index (None: an IVF index not built yet)
    ids: list[tuple[int, str]]  # (int id inside faiss, video id)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    tombstones: set[int] = field(default_factory=set)
    next: int = 0
    measured_recall: float | None = None
    measured_on: str | None = None
    tuning_vectors: tuple[np.ndarray, np.ndarray] | None = None  # (int64 ids, float32 exact vectors)
    tune_queries: np.ndarray | None = None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_folder(folder: str | os.PathLike, config: IndexConfig, state: IndexState) -> Path:
    """Write the three files atomically into ``folder`` (a GPU index is copied to the CPU first)."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        if state.raw is not None:
            index = state.raw
            if hasattr(faiss, "index_gpu_to_cpu") and gpu_available():
                try:
                    index = faiss.index_gpu_to_cpu(index)
                except RuntimeError:
                    pass
            faiss.write_index(index, str(tmp / INDEX_FILE))
        checksum = sha256(tmp / INDEX_FILE) if (tmp / INDEX_FILE).is_file() else None
        if state.tuning_vectors is not None:
            np.save(tmp / TUNING_IDS_FILE, state.tuning_vectors[0])
            np.save(tmp / TUNING_VECTORS_FILE, state.tuning_vectors[1])
        if state.tune_queries is not None:
            np.save(tmp / TUNING_QUERIES_FILE, state.tune_queries)
        (tmp / IDS_FILE).write_text(
            json.dumps(
                {
                    "ids": [[i, v] for i, v in state.ids],
                    "metadata": state.metadata,
                    "tombstones": sorted(state.tombstones),
                    "next": state.next,
                },
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
        record = {
            **config.to_dict(),
            "measured_recall": state.measured_recall,
            "measured_on": state.measured_on,
            "count": len(state.ids),
            "ntotal": int(state.raw.ntotal) if state.raw is not None else 0,
            "index_sha256": checksum,
            "faiss_version": faiss.__version__,
        }
        (tmp / INDEX_CONFIG_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return folder


def load_error(folder: Path, file: str, why: str) -> IndexLoadError:
    return IndexLoadError(f"{folder / file}: {why}; rebuild or re-download the index folder")


def read_config(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config dict, state dict)`` of a saved folder; the keys and ids are checked, the index file is not."""
    if not folder.is_dir() and not restore_interrupted_swap(folder):  # a save killed between its two renames
        raise IndexLoadError(f"index folder {folder} not found")
    cfg = _read_json(folder, INDEX_CONFIG_FILE)
    state = _read_json(folder, IDS_FILE)
    known = IndexConfig.known_keys()
    if not isinstance(cfg, dict) or set(cfg) - known or "dim" not in cfg or "kind" not in cfg:
        extra = sorted(set(cfg) - known) if isinstance(cfg, dict) else cfg
        raise load_error(folder, INDEX_CONFIG_FILE, f"not an mtvr index config (unknown or missing keys: {extra})")
    if not isinstance(state, dict) or not isinstance(state.get("ids"), list):
        raise load_error(folder, IDS_FILE, "expected an object with an 'ids' list")
    return cfg, state


def read_state(folder: Path, cfg: dict[str, Any], state: dict[str, Any], dim: int) -> IndexState:
    """The checked :class:`IndexState` of a saved folder (the faiss index read from ``index.faiss``)."""
    try:
        pairs = [(int(i), v) for i, v in state["ids"]]
    except (TypeError, ValueError):
        raise load_error(folder, IDS_FILE, "'ids' must be [int, string] pairs") from None
    if any(not isinstance(v, str) for _, v in pairs) or len({v for _, v in pairs}) != len(pairs):
        raise load_error(folder, IDS_FILE, "video ids must be unique strings")
    path = folder / INDEX_FILE
    if pairs and not path.is_file():
        raise load_error(folder, INDEX_FILE, f"missing, but {IDS_FILE} lists {len(pairs)} videos")
    tombstones = set(state.get("tombstones", []))
    raw = None
    if path.is_file():
        expected = cfg.get("index_sha256")
        if expected is not None and sha256(path) != expected:
            raise load_error(folder, INDEX_FILE, "checksum mismatch (truncated, modified, or from another index)")
        try:
            raw = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise load_error(folder, INDEX_FILE, f"faiss cannot read it ({str(exc).splitlines()[0]})") from None
        if raw.d != dim:
            raise load_error(folder, INDEX_FILE, f"holds {raw.d}-d vectors but {INDEX_CONFIG_FILE} says {dim}")
        if raw.ntotal != len(pairs) + len(tombstones):
            raise load_error(
                folder,
                IDS_FILE,
                f"lists {len(pairs)} videos (+{len(tombstones)} removed) but {INDEX_FILE} holds {raw.ntotal} vectors",
            )
    metadata = state.get("metadata", {})
    if not isinstance(metadata, dict) or any(not isinstance(m, dict) for m in metadata.values()):
        raise load_error(folder, IDS_FILE, "'metadata' must map video ids to objects")
    return IndexState(
        raw=raw,
        ids=pairs,
        metadata=metadata,
        tombstones=tombstones,
        next=int(state.get("next", len(pairs))),
        measured_recall=cfg.get("measured_recall"),
        measured_on=cfg.get("measured_on"),
        tuning_vectors=_read_tuning_vectors(folder, dim, {i for i, _ in pairs}),
        tune_queries=_read_array(folder, TUNING_QUERIES_FILE, np.float32, 2, dim),
    )


def _read_array(folder: Path, name: str, dtype: Any, ndim: int, dim: int) -> np.ndarray | None:
    """A checked ``.npy`` file (never unpickled), or ``None`` when absent."""
    path = folder / name
    if not path.is_file():
        return None
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise load_error(folder, name, f"not a numpy array file ({exc})") from None
    if a.dtype != dtype or a.ndim != ndim or (ndim == 2 and a.shape[1] != dim):
        raise load_error(folder, name, f"expected a {np.dtype(dtype)} array of {ndim} dims, got {a.dtype} {a.shape}")
    return a


def _read_tuning_vectors(folder: Path, dim: int, live: set[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact vectors a quantised index keeps for recall tuning, checked against the ids of ``ids.json``."""
    ints = _read_array(folder, TUNING_IDS_FILE, np.int64, 1, dim)
    xb = _read_array(folder, TUNING_VECTORS_FILE, np.float32, 2, dim)
    if ints is None and xb is None:
        return None
    if ints is None or xb is None or len(ints) != len(xb):
        raise load_error(
            folder, TUNING_IDS_FILE, f"does not match {TUNING_VECTORS_FILE} (one missing or lengths differ)"
        )
    if set(ints.tolist()) != live:
        raise load_error(folder, TUNING_IDS_FILE, f"its ids differ from those in {IDS_FILE}")
    return ints, xb


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise load_error(folder, name, "missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise load_error(folder, name, f"not valid UTF-8 JSON ({exc})") from None
