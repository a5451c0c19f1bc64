"""Dataset folders read in one place: dataset rows (captions per language) joined with the feature store.

Used by training, evaluation and the demo. Problems with the dataset or the store raise
:class:`~mtvr.errors.DatasetError`; training reports them as recipe errors (the recipe names the data).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError
from .video.store import FeatureStore

logger = logging.getLogger(__name__)


@dataclass
class ClipSet:
    """Clips of one split: frame features and, per language, the captions of each clip.

    ``captions[lang][i]`` lists the sentences of clip ``i`` (parallel across languages: sentence ``j``
    in German translates sentence ``j`` in English).
    """

    clip_ids: list[str]
    features: torch.Tensor  # float32 [N, T, D]
    mask: torch.Tensor  # bool [N, T]
    captions: dict[str, list[list[str]]]
    # clips that answer each other's captions equally (the dataset's optional ``scene`` column, e.g.
    # Multi-Shapes clips with the same shape, colour, motion and background); None: one correct clip each
    video_groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.clip_ids)

    def flat_captions(self, language: str) -> tuple[list[str], np.ndarray]:
        """All sentences in ``language`` and the clip index each describes (for evaluation)."""
        texts, owner = [], []
        for i, sents in enumerate(self.captions[language]):
            texts.extend(sents)
            owner.extend([i] * len(sents))
        return texts, np.asarray(owner, dtype=np.int64)


def local_data_files(folder: Path, config: str, split: str) -> list[Path]:
    """The Parquet files of ``config``/``split`` listed by the dataset card's YAML ``configs:``."""
    import yaml

    card = folder / "README.md"
    if not card.is_file():
        raise DatasetError(f"{folder} has no README.md: not a dataset folder written by `mtvr build-dataset`")
    text = card.read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---")[1]) if text.startswith("---") else {}
    configs = {c["config_name"]: c for c in (meta or {}).get("configs", [])}
    if config not in configs:
        raise DatasetError(f"{folder}: no config {config!r}; the card lists {sorted(configs)}")
    files = {d["split"]: d["path"] for d in configs[config]["data_files"]}
    if split not in files:
        raise DatasetError(f"{folder}: config {config!r} has no split {split!r}; it has {sorted(files)}")
    paths = sorted(folder.glob(files[split]))
    if not paths:
        raise DatasetError(f"{folder}: no file matches {files[split]!r}")
    return paths


def load_rows(dataset: str, config: str, split: str) -> list[dict]:
    """Rows of a dataset split: a local folder (Parquet + card, read directly) or a Hub id (``datasets``).

    Local folders are read with pyarrow rather than ``load_dataset``: ``datasets`` keys its cache of a
    local folder by the folder's name, so a rebuilt folder could be served stale from the cache.
    """
    if Path(dataset).is_dir():
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = local_data_files(Path(dataset), config, split)
        return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
    from datasets import load_dataset

    if "/" not in dataset or dataset.startswith((".", "/")):
        raise DatasetError(f"dataset {dataset!r} not found (a folder from `mtvr build-dataset` or a Hub id)")
    try:
        ds = load_dataset(dataset, config, split=split)
    except ValueError as exc:
        raise DatasetError(f"dataset {dataset!r}, config {config!r}, split {split!r}: {exc}") from None
    return ds.to_list()


def build_clipset(rows: Sequence[dict], store: FeatureStore, languages: Sequence[str], where: str = "") -> ClipSet:
    if not rows:
        raise DatasetError(f"{where}: the split is empty")
    have = set(rows[0]["captions"])
    missing = [l for l in languages if l not in have]
    if missing:
        raise DatasetError(f"{where}: languages {missing} are absent from the dataset (it has {sorted(have)})")
    order: dict[str, int] = {}
    caps: dict[str, list[list[str]]] = {l: [] for l in languages}
    scenes: list[str | None] = []
    for r in rows:
        cid = r["clip_id"]
        if cid not in order:
            order[cid] = len(order)
            scenes.append(r.get("scene"))
            for l in languages:
                caps[l].append([])
        i = order[cid]
        for l in languages:
            text = r["captions"].get(l) or r["captions"]["en"]  # a dropped translation falls back to English
            caps[l][i].append(text)
    ids = list(order)
    present = [c in store for c in ids]
    if not any(present):
        raise DatasetError(f"{where}: none of the {len(ids)} clips is in the feature store {store.root}")
    if not all(present):
        logger.warning(
            "%s: %d of %d clips have no features (failed extraction?) and are left out",
            where,
            present.count(False),
            len(ids),
        )
    keep = [i for i, p in enumerate(present) if p]
    ids = [ids[i] for i in keep]
    caps = {l: [c[i] for i in keep] for l, c in caps.items()}
    groups = [scenes[i] for i in keep]
    entries = store.get_many(ids)
    feats = torch.from_numpy(np.stack([f for f, _ in entries]).astype(np.float32))
    nums = torch.tensor([n for _, n in entries])
    mask = torch.arange(feats.shape[1])[None, :] < nums[:, None]
    return ClipSet(ids, feats, mask, caps, groups if all(g is not None for g in groups) else None)


def load_clipset(
    dataset: str, config: str, split: str, features: str | os.PathLike, languages: Sequence[str]
) -> ClipSet:
    if not Path(features).is_dir():
        raise DatasetError(f"feature store {features} not found: run `mtvr extract-features` first")
    store = FeatureStore(features)
    return build_clipset(load_rows(dataset, config, split), store, languages, where=f"{dataset}[{split}]")
