"""The Ray executor of the extraction pipeline (:mod:`mtvr.video.pipeline`): its arrows, spread over a cluster.

::

    clips ──► decode + sample frames (CPU tasks: the pipeline's own ClipDecoder)
          ──► encode (an actor pool: one actor per GPU, or CPU actors; ``batch_size`` clips per call)
          ──► the driver hands EncodedBatch events to the same sink as every executor (the feature store)

Resumable like the local executors (the sink and the resume logic are shared): clips whose key is in the store
are skipped before anything is scheduled; failures land in ``errors.jsonl``; shards are written atomically, so a
killed driver leaves a readable store and a rerun continues; a killed decode task or encoder actor is retried by
Ray (``max_retries`` / ``max_restarts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..video.clips import ClipSpec, ExtractionSummary, encode_clips
from ..video.pipeline import ClipDecoder, Decoded, EncodedBatch, Event, ExtractionJob, SourceDone, make_encoder
from .ray_runtime import ensure_ray

logger = logging.getLogger(__name__)
RETRIES = 3


def _decode_row(row: dict, decoder: ClipDecoder) -> dict:
    """A Ray Data task: decode one clip with the pipeline's decoder (never raises for bad input)."""
    spec = ClipSpec(row["clip_id"], row["path"], row["start"], row["end"])
    (item,) = list(decoder(spec))
    s = decoder.sampling
    if not item.ok:
        frames = np.zeros((s.num_frames, s.image_size, s.image_size, 3), np.uint8)
        return {**row, "key": "", "frames": frames, "num_real": 0, "error": item.error}
    return {**row, "key": item.key, "frames": item.frames, "num_real": int(item.num_real), "error": ""}


class _Encode:
    """A Ray Data actor: holds one frame encoder (one per GPU) and encodes batches of decoded clips."""

    def __init__(self, encoder: Any, device: str | None, cpu_threads: int | None = None) -> None:
        if cpu_threads:  # Ray pins OMP_NUM_THREADS to the actor's num_cpus (1); a CPU encoder wants the cores
            import torch

            torch.set_num_threads(cpu_threads)
        self.encoder = make_encoder(encoder, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.array([not e for e in batch["error"]], dtype=bool)
        frames = batch.pop("frames")
        t = frames.shape[1]
        feats = np.zeros((len(ok), t, self.encoder.feature_dim), np.float32)
        if ok.any():
            feats[ok] = encode_clips(self.encoder, frames[ok])
        batch["features"] = feats
        return batch


def ray_executor(job: ExtractionJob) -> Iterator[Event]:
    """Run ``job`` on Ray: decode tasks, then an encoder actor pool (one actor per GPU in the cluster, else
    ``options["num_encoders"]`` CPU actors, default 1); the driver yields the pipeline's events."""
    if not isinstance(job.decoder, ClipDecoder):
        raise OptionError("the ray executor extracts whole clips; segments run with a local executor")
    ray = ensure_ray(job.options.get("address"))
    ray.data.DataContext.get_current().enable_progress_bars = job.progress
    if not job.specs:
        return
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = gpus if gpus else (job.options.get("num_encoders") or 1)
    items = [{"clip_id": s.clip_id, "path": s.path, "start": s.start, "end": s.end} for s in job.specs]
    by_id = {s.clip_id: s for s in job.specs}
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), max(1, len(items) // 4)))
    ds = ds.map(_decode_row, fn_kwargs={"decoder": job.decoder}, num_cpus=1, max_retries=RETRIES)
    ds = ds.map_batches(
        _Encode,
        fn_constructor_kwargs={"encoder": job.encoder, "device": job.device},
        batch_size=job.batch_size,
        batch_format="numpy",
        concurrency=actors,
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else 1,
        max_restarts=RETRIES,
        max_task_retries=RETRIES,
    )
    for batch in ds.iter_batches(batch_size=job.batch_size, batch_format="numpy"):
        done, failed, ok, rows = [], [], [], []
        for i, cid in enumerate(batch["clip_id"]):
            spec = by_id[str(cid)]
            done.append(SourceDone(spec))
            if batch["error"][i]:
                failed.append(Decoded(spec, error=str(batch["error"][i])))
            else:
                ok.append(Decoded(spec, num_real=int(batch["num_real"][i]), key=str(batch["key"][i])))
                rows.append(i)
        yield from failed
        if ok:
            yield EncodedBatch(ok, batch["features"][rows])
        yield from done


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
    """Decode, encode and store every clip not yet in the store, on Ray (the pipeline with :func:`ray_executor`).

    ``encoder`` is a frame-encoder name (registered, Hub id, folder), a picklable factory returning one, or an
    encoder object (pickled to the actors). With GPUs in the cluster there is one encoder actor per GPU;
    otherwise ``num_encoders`` CPU actors (default 1).
    """
    from ..video.extract import extract_clips

    options: dict[str, Any] = {"address": address, "num_encoders": num_encoders}
    return extract_clips(
        clips, store_dir, encoder, num_frames, sampling, 0, shard_size, batch_size, progress, device, "ray", **options
    )
