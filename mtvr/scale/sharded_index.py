"""Index building at scale: embed the videos of a feature store in parallel, then build a faiss IVF-PQ
index as shards and merge them.

1. **Embed** (:func:`embed_store`): Ray Data reads the store's clips in batches and an actor pool runs the
   retriever's video tower on them (one actor per GPU, or CPU actors).
2. **Train once** (:func:`train_quantizer`): the coarse quantizer and the PQ codebooks are trained on a
   sample, and the empty trained index is serialised.
3. **Add in shards**: every shard deserialises the trained index and adds its vectors (with their int ids)
   in its own Ray task (or in this process with ``engine="local"``).
4. **Merge** (``IndexIVF.merge_from``): the inverted lists of the shards are appended into one index.
   Every shard uses the same trained quantizer and codebooks, so the codes are identical to a
   single-process build's and the merged index returns the same results (tested).

The result is an ordinary mtvr index folder (``VideoIndex.load`` / ``Retriever.load_index``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..index import VideoIndex, factory_string, faiss


def default_factory(dim: int, n: int) -> str:
    """``IVF{nlist},PQ{m}``: about ``4·sqrt(n)`` lists, ``m`` sub-quantizers of 8 bits (``dim % m == 0``)."""
    return factory_string("ivfpq", dim, n)


def train_quantizer(sample: np.ndarray, factory: str) -> bytes:
    """Train the IVF quantizer and PQ codebooks on ``sample`` once; the serialised empty index."""
    index = faiss.index_factory(sample.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return faiss.serialize_index(index).tobytes()


def add_shard(trained: bytes, ints: np.ndarray, x: np.ndarray) -> bytes:
    """One shard: the trained (empty) index with these vectors added under these int ids, serialised."""
    # the IVF stores the given ids in its inverted lists itself: no id map, so shards merge by appending lists
    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    index.add_with_ids(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(ints, dtype=np.int64))
    return faiss.serialize_index(index).tobytes()


def merge_shards(trained: bytes, shards: Sequence[bytes]) -> Any:
    merged = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    for blob in shards:
        merged.merge_from(faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8)), 0)  # ids kept as given
    return merged


def build_sharded_index(
    video_ids: Sequence[str],
    embeddings: np.ndarray,
    out_dir: str | Path | None = None,
    factory: str | None = None,
    num_shards: int = 4,
    train_size: int = 100_000,
    engine: str = "ray",
    trained: bytes | None = None,
    nprobe: int = 32,
    seed: int = 0,
    metadata: Sequence[dict[str, Any] | None] | None = None,
    target_recall: float | None = None,
) -> VideoIndex:
    """An IVF-PQ :class:`VideoIndex` built as ``num_shards`` shards (Ray tasks, or local) and merged.

    ``trained`` reuses an already trained quantizer (from :func:`train_quantizer`); otherwise one is
    trained on ``train_size`` sampled vectors. ``metadata`` (one dict or ``None`` per video) is kept with
    the index. ``target_recall`` tunes ``nprobe`` against exact search on ``embeddings``. The index is saved
    to ``out_dir`` when given.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = x.shape
    if len(video_ids) != n:
        raise OptionError(f"{len(video_ids)} video ids but {n} embeddings")
    factory = factory or default_factory(dim, n)
    if trained is None:
        pick = np.random.default_rng(seed).choice(n, size=min(train_size, n), replace=False)
        trained = train_quantizer(x[np.sort(pick)], factory)
    ints = np.arange(n, dtype=np.int64)
    bounds = np.linspace(0, n, max(1, num_shards) + 1).astype(int)
    parts = [(ints[a:b], x[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if engine == "ray":
        from .ray_runtime import ensure_ray

        ray = ensure_ray()
        trained_ref = ray.put(trained)
        task = ray.remote(num_cpus=1, max_retries=3)(add_shard)
        shards = ray.get([task.remote(trained_ref, i, v) for i, v in parts])
    elif engine == "local":
        shards = [add_shard(trained, i, v) for i, v in parts]
    else:
        raise OptionError(f"engine must be 'ray' or 'local', got {engine!r}")
    index = VideoIndex.from_faiss(
        merge_shards(trained, shards),
        video_ids,
        ints,
        metadata,
        kind=factory,
        nprobe=nprobe,
        target_recall=target_recall,
        exact_vectors=x if target_recall is not None else None,
    )
    if out_dir is not None:
        index.save(out_dir)
    return index


def is_ivf_kind(kind: str, dim: int) -> bool:
    """Whether an index kind is an inverted-file index, the kind faiss can build as shards and merge."""
    return factory_string(kind, dim).upper().startswith("IVF")


def index_store_ray(
    model: str | Path,
    store_dir: str | Path,
    out_dir: str | Path,
    *,
    kind: str = "flat",
    target_recall: float | None = None,
    batch_size: int = 1024,
    num_shards: int = 8,
    device: str | None = None,
    address: str | None = None,
    segments: str | None = None,
) -> VideoIndex:
    """Embed every clip of a feature store on Ray and index it (``mtvr index --engine ray``).

    IVF kinds (``ivfpq``, ``IVF...`` factory strings) are built as ``num_shards`` shards in Ray tasks and
    merged; other kinds (``flat``, ``hnsw``, ``sq8``: faiss cannot merge them from shards) are filled in this
    process from the embeddings. ``target_recall`` tunes ``nprobe`` / ``ef_search`` either way. A store of
    segments (``mtvr extract-features --segments``) is indexed with each moment's ``file``, ``start``, ``end``
    and ``video``, as ``Retriever.add_feature_store`` does; ``segments``, when given, must be what it holds.
    """
    from ..errors import VideoIndexError
    from ..video.segment_extract import store_entry_metadata
    from .ray_runtime import ensure_ray

    meta = store_entry_metadata(store_dir, segments)  # checked before Ray starts
    ensure_ray(address)
    ids, emb = embed_store(model, store_dir, engine="ray", batch_size=batch_size, device=device)
    if not ids:
        raise VideoIndexError(f"feature store {store_dir} holds no clips: nothing to index")
    metadata = [meta.get(c) for c in ids] if meta else None
    dim = emb.shape[1]
    if is_ivf_kind(kind, dim):
        factory = None if kind == "ivfpq" else kind
        return build_sharded_index(
            ids,
            emb,
            out_dir,
            factory=factory,
            num_shards=num_shards,
            engine="ray",
            target_recall=target_recall,
            metadata=metadata,
        )
    index = VideoIndex(dim, kind, target_recall=target_recall)
    index.add(ids, emb, metadata)
    index.save(out_dir)
    return index


class _Embedder:
    """A Ray Data actor holding one retriever (its video tower), reading frame features from the store."""

    def __init__(self, model: str, store_dir: str, device: str | None) -> None:
        from ..retriever import Retriever
        from ..video.store import FeatureStore

        self.retriever = Retriever.from_pretrained(model, device=device)
        self.store = FeatureStore(store_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [str(c) for c in batch["clip_id"]]
        entries = self.store.get_many(ids)
        emb = self.retriever.encode_video_features([f for f, _ in entries], num_frames=[n for _, n in entries])
        return {"clip_id": np.array(ids, dtype=object), "embedding": emb}


def embedding_dataset(
    model: str | Path,
    store_dir: str | Path,
    ids: Sequence[str],
    batch_size: int = 1024,
    num_actors: int | None = None,
    device: str | None = None,
) -> Any:
    """A Ray dataset of ``{"clip_id", "embedding"}`` batches: an actor pool runs the model's video tower on
    the store's clips (one actor per GPU of the cluster, else ``num_actors`` CPU actors)."""
    from .ray_runtime import ensure_ray

    ray = ensure_ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    ds = ray.data.from_items([{"clip_id": c} for c in ids])
    return ds.map_batches(
        _Embedder,
        fn_constructor_kwargs={"model": str(model), "store_dir": str(store_dir), "device": device},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=gpus or num_actors or 1),
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else 1,
    )


def embed_store(
    model: str | Path,
    store_dir: str | Path,
    engine: str = "ray",
    batch_size: int = 1024,
    num_actors: int | None = None,
    device: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """``(clip ids, video embeddings)`` of every clip of a feature store, with the model's video tower."""
    from ..video.store import FeatureStore

    ids = FeatureStore(store_dir).clip_ids
    if engine == "local":
        embedder = _Embedder(str(model), str(store_dir), device)
        out = [
            embedder({"clip_id": np.array(ids[i : i + batch_size], dtype=object)})["embedding"]
            for i in range(0, len(ids), batch_size)
        ]
        return ids, np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    ds = embedding_dataset(model, store_dir, ids, batch_size=batch_size, num_actors=num_actors, device=device)
    got_ids, chunks = [], []
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        got_ids += [str(c) for c in batch["clip_id"]]
        chunks.append(batch["embedding"])
    order = {c: i for i, c in enumerate(got_ids)}
    emb = np.concatenate(chunks)[[order[c] for c in ids]]
    return ids, emb


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
