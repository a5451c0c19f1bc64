"""Index a feature store into Milvus from Ray workers: no merged file, no single writer.

::

    clip ids ──► embed (actor pool running the retriever's video tower: one per GPU, or CPU actors)
             ──► write (actor pool: each actor holds one Milvus connection and inserts its batches)
             ──► the driver only counts what was written

Each write actor adds its batch with :meth:`mtvr.index.milvus.MilvusIndex.add` (ids and embeddings checked,
a failed batch taken back), so batches land in Milvus in parallel, straight from the workers. The driver
creates the collection before the workers start, so they never race to create it.

Milvus Lite is single-process: with a ``milvus-lite://`` location the workers embed in parallel but the
driver writes (a Milvus server is what takes parallel writers). A rerun with ``replace=True`` overwrites
the clips already written; without it, a clip already in the collection fails the run with a clear error.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..index.milvus import MilvusIndex, parse_location
from .ray_runtime import ensure_ray
from .sharded_index import embedding_dataset

logger = logging.getLogger(__name__)


@dataclass
class MilvusIndexSummary:
    """What :func:`index_store_into_milvus` wrote: clips, how many writers, seconds, and where."""

    written: int
    writers: int
    seconds: float
    location: str

    def __str__(self) -> str:
        rate = self.written / self.seconds if self.seconds else 0.0
        return (
            f"indexed {self.written} clips into {self.location} from {self.writers} parallel writer(s) "
            f"in {self.seconds:.1f} s ({rate:.0f} clips/s)"
        )


class _MilvusWriter:
    """A Ray Data actor: one Milvus connection; adds each batch of embeddings it is given (with each moment's
    metadata when the store holds segments: read from the store by the actor, not shipped with every batch)."""

    def __init__(
        self, location: str, token: str | None, replace: bool, options: dict[str, Any], store_dir: str | None = None
    ) -> None:
        from ..video.segment_extract import store_entry_metadata

        self.index = MilvusIndex(location, token=token, create=False, **options)
        self.replace = replace
        self.meta = store_entry_metadata(store_dir) if store_dir is not None else {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [str(c) for c in batch["clip_id"]]
        metadata = [self.meta.get(c) for c in ids] if self.meta else None
        self.index.add(ids, np.stack(batch["embedding"]), metadata, replace=self.replace)
        return {"written": np.array([len(ids)], dtype=np.int64)}


def index_store_into_milvus(
    model: str | Path,
    store_dir: str | Path,
    location: str,
    *,
    token: str | None = None,
    batch_size: int = 1024,
    num_embedders: int | None = None,
    num_writers: int = 4,
    device: str | None = None,
    replace: bool = False,
    segments: str | None = None,
    **index_options: Any,
) -> MilvusIndexSummary:
    """Embed every clip of a feature store on Ray and write the embeddings into the Milvus ``location``.

    ``num_writers`` actors write in parallel (1 for Milvus Lite, where the driver writes). ``index_options``
    go to :class:`~mtvr.index.milvus.MilvusIndex` (``index_type``, ``index_params``, ``timeout``...). A store of
    segments is written with each moment's ``file``, ``start``, ``end`` and ``video``; ``segments``, when given,
    must be what it holds.
    """
    from ..retriever import Retriever
    from ..video.segment_extract import store_entry_metadata
    from ..video.store import FeatureStore

    meta = store_entry_metadata(store_dir, segments)  # checked before Ray starts
    loc = parse_location(location)
    token = token if token is not None else os.environ.get("MILVUS_TOKEN")  # the workers may not share this env
    ray = ensure_ray()
    ids = FeatureStore(store_dir).clip_ids
    dim = Retriever.from_pretrained(model, device="cpu").config.embed_dim
    t0 = time.perf_counter()
    with MilvusIndex(loc, dim=dim, token=token, **index_options) as index:  # create it once, before the workers
        if loc.lite:
            num_writers = 1
        else:
            index.close()
        ds = embedding_dataset(model, store_dir, ids, batch_size, num_embedders, device)
        written = 0
        if loc.lite:
            for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
                chunk = [str(c) for c in batch["clip_id"]]
                metadata = [meta.get(c) for c in chunk] if meta else None
                index.add(chunk, np.stack(batch["embedding"]), metadata, replace=replace)
                written += len(batch["clip_id"])
        else:
            ds = ds.map_batches(
                _MilvusWriter,
                fn_constructor_kwargs={
                    "location": str(loc),
                    "token": token,
                    "replace": replace,
                    "options": index_options,
                    "store_dir": str(store_dir) if meta else None,
                },
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=max(1, num_writers)),
                num_cpus=0,
            )
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                written += int(np.sum(batch["written"]))
    return MilvusIndexSummary(written, max(1, num_writers), time.perf_counter() - t0, str(loc))
