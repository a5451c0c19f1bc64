"""`FeatureStore`: frame features on disk, in safetensors shards a person can open.

Layout of a store folder::

    manifest.json                  encoder, num_frames, image_size, sampling, feature_dim, dtype
    shards/shard-000000.safetensors  "features" float16 [N, T, D], "num_frames" int32 [N];
                                     header metadata: "clip_ids" and "keys" (JSON lists)
    errors.jsonl                   clips that could not be processed: {"file", "clip", "reason"}

Shards are written to a temporary name and renamed into place, so a store killed in the middle of a
shard holds only complete shards and stays readable; a resumed run skips every key already stored.
An entry's key is ``clip id + file content hash + clip bounds``; the encoder and the sampling are the
store's (``manifest.json``), so a run with another encoder must use another store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_json
from ..errors import FeatureStoreError, FeatureStoreNotFoundError, MissingClipsError

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
SHARD_RE = re.compile(r"^shard-(\d{6})\.safetensors$")


@dataclass
class StoreManifest:
    encoder: str
    num_frames: int
    image_size: int
    sampling: str
    feature_dim: int
    dtype: str = "float16"
    format: str = "mtvr-feature-store"
    version: int = 1
    segments: str = "clip"  # "window" / "shots": entries are segments of files (ids "clip#t=start,end")
    window: float | None = None
    stride: float | None = None
    shot_threshold: float | None = None


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes (hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def entry_key(clip_id: str, content_hash: str, start: float | None, end: float | None) -> str:
    return f"{clip_id}|{content_hash}|{'' if start is None else f'{start:.3f}'}|{'' if end is None else f'{end:.3f}'}"


class FeatureStore:
    """Read and append frame features keyed by clip id."""

    def __init__(self, root: str | os.PathLike, manifest: StoreManifest | None = None) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if path.is_file():
            existing = StoreManifest(**json.loads(path.read_text(encoding="utf-8")))
            if manifest is not None and _comparable(existing) != _comparable(manifest):
                raise FeatureStoreError(
                    f"feature store {self.root} was built with {_comparable(existing)}, "
                    f"not {_comparable(manifest)}: use another output folder"
                )
            self.manifest = existing
        elif manifest is None:
            raise FeatureStoreNotFoundError(
                f"{path} not found: {self.root} is not a feature store (create one with `mtvr extract-features`)"
            )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "shards").mkdir(exist_ok=True)
            atomic_write_json(path, asdict(manifest))
            self.manifest = manifest
        self._where: dict[str, tuple[Path, int]] = {}  # clip id -> (shard, row); later shards win
        self._keys: set[str] = set()
        self.refresh()

    # ----------------------------------------------------------------- reading
    def shard_paths(self) -> list[Path]:
        folder = self.root / "shards"
        return sorted(p for p in folder.iterdir() if SHARD_RE.match(p.name)) if folder.is_dir() else []

    def refresh(self) -> None:
        from safetensors import safe_open

        self._where.clear()
        self._keys.clear()
        for shard in self.shard_paths():
            with safe_open(str(shard), "np") as f:
                meta = f.metadata() or {}
            for row, (cid, key) in enumerate(zip(json.loads(meta["clip_ids"]), json.loads(meta["keys"]))):
                self._where[cid] = (shard, row)
                self._keys.add(key)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._where

    @property
    def clip_ids(self) -> list[str]:
        return list(self._where)

    def has_key(self, key: str) -> bool:
        return key in self._keys

    @property
    def keys(self) -> frozenset[str]:
        """The entry keys (clip id | content hash | bounds) of everything stored."""
        return frozenset(self._keys)

    def get(self, clip_id: str) -> tuple[np.ndarray, int]:
        """``(features float16 [T, D], number of real frames)`` of one clip."""
        return self.get_many([clip_id])[0]

    def get_many(self, clip_ids: Sequence[str]) -> list[tuple[np.ndarray, int]]:
        from safetensors import safe_open

        missing = [c for c in clip_ids if c not in self._where]
        if missing:
            raise MissingClipsError(f"{len(missing)} clips are not in feature store {self.root}, e.g. {missing[0]!r}")
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, c in enumerate(clip_ids):
            shard, row = self._where[c]
            by_shard.setdefault(shard, []).append((i, row))
        out: list = [None] * len(clip_ids)
        for shard, pairs in by_shard.items():
            with safe_open(str(shard), "np") as f:
                feats, nums = f.get_tensor("features"), f.get_tensor("num_frames")
            for i, row in pairs:
                out[i] = (feats[row], int(nums[row]))
        return out

    def iter_all(self) -> Iterator[tuple[str, np.ndarray, int]]:
        for cid, (feats, n) in zip(self.clip_ids, self.get_many(self.clip_ids)):
            yield cid, feats, n

    def errors(self) -> list[dict]:
        path = self.root / ERRORS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    # ----------------------------------------------------------------- writing
    def write_shard(
        self, clip_ids: Sequence[str], keys: Sequence[str], features: Sequence[np.ndarray], num_frames: Sequence[int]
    ) -> Path:
        """Write one shard atomically (temporary name, fsync, rename)."""
        from safetensors.numpy import save

        if not clip_ids:
            raise FeatureStoreError("empty shard")
        t, d = self.manifest.num_frames, self.manifest.feature_dim
        arr = np.stack([np.asarray(f, dtype=np.float16) for f in features])
        if arr.shape[1:] != (t, d):
            raise FeatureStoreError(f"features of shape {arr.shape[1:]} do not fit this store ([{t}, {d}])")
        data = save(
            {"features": arr, "num_frames": np.asarray(num_frames, dtype=np.int32)},
            metadata={"clip_ids": json.dumps(list(clip_ids)), "keys": json.dumps(list(keys))},
        )
        existing = [int(SHARD_RE.match(p.name).group(1)) for p in self.shard_paths()]
        path = self.root / "shards" / f"shard-{(max(existing) + 1 if existing else 0):06d}.safetensors"
        from ..atomic import atomic_write_bytes

        atomic_write_bytes(path, data)
        for row, (cid, key) in enumerate(zip(clip_ids, keys)):
            self._where[cid] = (path, row)
            self._keys.add(key)
        return path

    def append_errors(self, records: Iterable[dict]) -> None:
        with open(self.root / ERRORS, "a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def clear_errors(self) -> None:
        (self.root / ERRORS).unlink(missing_ok=True)


def _comparable(m: StoreManifest) -> dict:
    out = {"encoder": m.encoder, "num_frames": m.num_frames, "image_size": m.image_size, "sampling": m.sampling}
    if m.segments != "clip":  # a store of segments is only resumed with the same segmenting
        out.update(segments=m.segments, window=m.window, stride=m.stride, shot_threshold=m.shot_threshold)
    return out
