"""Frame-feature extraction on Ray Data: the local pipeline's arrows, spread over a cluster.

::

    clips ──► decode + sample frames (CPU tasks: mtvr.video.decode, the local engine's code)
          ──► encode (an actor pool: one actor per GPU, or CPU actors; ``batch_size`` clips per call)
          ──► the driver writes shards of the same FeatureStore (same manifest, same keys)

Resumable like the local engine: clips whose key is in the store are skipped before anything is
scheduled; failures land in ``errors.jsonl``; shards are written atomically, so a killed driver leaves
a readable store and a rerun continues; a killed decode task or encoder actor is retried by Ray
(``max_retries`` / ``max_restarts``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..video.extract import (
    ClipSpec,
    ExtractionSummary,
    _decode_job,
    check_unique_clips,
    clips_to_extract,
    encode_clips,
)
from ..video.store import ERRORS, FeatureStore, StoreManifest
from .ray_runtime import ensure_ray

logger = logging.getLogger(__name__)
RETRIES = 3


def _make_encoder(encoder: Any, device: str | None) -> Any:
    """An encoder from a Hub id / folder / ``mtvr/shape-stats`` name, a factory, or an encoder object."""
    if isinstance(encoder, str):
        from ..video.encoder import build_frame_encoder

        return build_frame_encoder(encoder, device=device)
    if callable(encoder) and not hasattr(encoder, "encode"):
        return encoder()
    return encoder


def _decode_row(row: dict, num_frames: int, image_size: int, sampling: str) -> dict:
    """A Ray Data task: decode one clip with the local engine's code (never raises for bad input)."""
    spec = ClipSpec(row["clip_id"], row["path"], row["start"], row["end"])
    result = _decode_job(spec, num_frames, image_size, sampling)
    shape = (num_frames, image_size, image_size, 3)
    if "error" in result:
        return {**row, "key": "", "frames": np.zeros(shape, np.uint8), "num_real": 0, "error": result["error"]}
    return {**row, "key": result["key"], "frames": result["frames"], "num_real": int(result["num_real"]), "error": ""}


class _Encode:
    """A Ray Data actor: holds one frame encoder (one per GPU) and encodes batches of decoded clips."""

    def __init__(self, encoder: Any, device: str | None, cpu_threads: int | None = None) -> None:
        if cpu_threads:  # Ray pins OMP_NUM_THREADS to the actor's num_cpus (1); a CPU encoder wants the cores
            import torch

            torch.set_num_threads(cpu_threads)
        self.encoder = _make_encoder(encoder, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.array([not e for e in batch["error"]], dtype=bool)
        frames = batch.pop("frames")
        t = frames.shape[1]
        feats = np.zeros((len(ok), t, self.encoder.feature_dim), np.float32)
        if ok.any():
            feats[ok] = encode_clips(self.encoder, frames[ok])
        batch["features"] = feats
        return batch


def extract_features_ray(
    clips: Iterable[ClipSpec],
    store_dir: str | Path,
    encoder: str | Callable[[], Any] | Any,
    num_frames: int = 12,
    sampling: str = "uniform",
    batch_size: int = 16,
    shard_size: int = 64,
    num_encoders: int | None = None,
    device: str | None = None,
    address: str | None = None,
    progress: bool = True,
) -> ExtractionSummary:
    """Decode, encode and store every clip not yet in the store, on Ray.

    ``encoder`` is a frame-encoder name (Hub id, folder, ``mtvr/shape-stats``), a picklable factory
    returning one, or an encoder object (pickled to the actors). With GPUs in the cluster there is one
    encoder actor per GPU; otherwise ``num_encoders`` CPU actors (default 1).
    """
    ray = ensure_ray(address)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    probe = _make_encoder(encoder, "cpu" if isinstance(encoder, str) else device)
    manifest = StoreManifest(
        encoder=probe.name,
        num_frames=num_frames,
        image_size=probe.image_size,
        sampling=sampling,
        feature_dim=probe.feature_dim,
    )
    clips = check_unique_clips(clips)
    ids = [c.clip_id for c in clips]
    store = FeatureStore(store_dir, manifest)
    summary = ExtractionSummary()
    t0 = time.perf_counter()
    todo, summary.skipped = clips_to_extract(clips, store)
    if todo:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        actors = gpus if gpus else (num_encoders or 1)
        items = [{"clip_id": s.clip_id, "path": s.path, "start": s.start, "end": s.end} for s in todo]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), max(1, len(items) // 4)))
        ds = ds.map(
            _decode_row,
            fn_kwargs={"num_frames": num_frames, "image_size": probe.image_size, "sampling": sampling},
            num_cpus=1,
            max_retries=RETRIES,
        )
        ds = ds.map_batches(
            _Encode,
            fn_constructor_kwargs={"encoder": encoder, "device": device},
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=actors,
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
            max_restarts=RETRIES,
            max_task_retries=RETRIES,
        )
        pending: list[tuple[str, str, np.ndarray, int]] = []
        bar = tqdm(
            total=len(clips), initial=summary.skipped, desc="extract features (ray)", unit="clip", disable=not progress
        )
        try:
            for batch in ds.iter_batches(batch_size=shard_size, batch_format="numpy"):
                for i, cid in enumerate(batch["clip_id"]):
                    bar.update(1)
                    if batch["error"][i]:
                        summary.failed += 1
                        summary.errors.append(
                            {"file": str(batch["path"][i]), "clip": str(cid), "reason": str(batch["error"][i])}
                        )
                        continue
                    pending.append((str(cid), str(batch["key"][i]), batch["features"][i], int(batch["num_real"][i])))
                    summary.done += 1
                while len(pending) >= shard_size:
                    chunk, pending = pending[:shard_size], pending[shard_size:]
                    store.write_shard(*map(list, zip(*chunk)))
            if pending:
                store.write_shard(*map(list, zip(*pending)))
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    order = {c: i for i, c in enumerate(ids)}
    summary.errors.sort(key=lambda e: order.get(e["clip"], 0))  # the local engine's order: input order
    atomic_write_text(store.root / ERRORS, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in summary.errors))
    return summary
