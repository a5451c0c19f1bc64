"""`extract_features`: videos → frame features in a :class:`~mtvr.video.store.FeatureStore`.

Decoding runs in worker processes and overlaps with encoding in the main process; a bounded window
of decoded clips keeps memory flat. Bad inputs (missing, empty, corrupt, truncated, audio-only, a
clip past the end, a decoder crash) are reported in ``errors.jsonl`` and never stop the run. Clips
whose key is already in the store are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..errors import DatasetError, OptionError, OptionTypeError, VideoSourceError
from ..option_values import positive_int
from .clips import ClipSpec, ExtractionSummary, check_unique_clips, encode_clips
from .decode import VideoDecodeError, sample_frames
from .store import ERRORS, FeatureStore, StoreManifest, entry_key, file_hash

logger = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ts"}


def die_with_parent(parent_pid: int) -> None:
    """Decode workers end when the extracting process dies, even by ``kill -9`` (Linux ``PR_SET_PDEATHSIG``).

    Without it a killed ``extract-features`` leaves its workers (and, through them, multiprocessing's
    resource tracker, which waits for every holder of its pipe) running.
    """
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
        if os.getppid() != parent_pid:  # the parent died before prctl took effect: do not linger
            os._exit(1)


def as_clip_specs(videos: Sequence) -> list[ClipSpec]:
    """Normalise paths, ``(path, start, end)`` tuples, dicts and ClipSpecs to ClipSpecs."""
    specs = []
    for v in videos:
        if isinstance(v, ClipSpec):
            specs.append(v)
        elif isinstance(v, (str, Path)) and Path(v).is_dir():  # a folder: every video under it
            specs.extend(videos_in_folder(Path(v)))
        elif isinstance(v, (str, Path)):
            specs.append(ClipSpec(Path(v).stem, str(v)))
        elif isinstance(v, dict):
            specs.append(
                ClipSpec(str(v.get("clip_id") or Path(v["path"]).stem), str(v["path"]), v.get("start"), v.get("end"))
            )
        elif isinstance(v, (tuple, list)) and len(v) == 3:
            p, s, e = v
            specs.append(ClipSpec(f"{Path(p).stem}_{s}_{e}", str(p), s, e))
        else:
            raise OptionTypeError(f"cannot read a video from {v!r}: give a path, (path, start, end) or a ClipSpec")
    return specs


def videos_in_folder(folder: Path) -> list[ClipSpec]:
    """Every video file under ``folder``, its id the path inside the folder without the suffix (so
    ``a/clip.avi`` and ``b/clip.avi`` are two videos, ``a/clip`` and ``b/clip``)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise VideoSourceError(f"no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) under {folder}")
    return [ClipSpec(p.relative_to(folder).with_suffix("").as_posix(), str(p)) for p in files]


def clips_from_source(source: str | Path | Sequence[str | Path], split: str | None = None) -> list[ClipSpec]:
    """Clips from a folder of videos, a list of files, a text file of paths, or a built dataset folder.

    A dataset folder (written by ``mtvr build-dataset``) holds Parquet files with ``clip_id``,
    ``video_path``, ``start`` and ``end`` columns.
    """
    if isinstance(source, (list, tuple)):
        if split:
            raise OptionError(f"split={split!r} applies to a dataset folder, not to a list of videos")
        return check_unique_clips(as_clip_specs(source))
    source = Path(source)
    if source.is_dir():
        parquet = sorted(source.rglob("*.parquet"))
        if parquet:
            return clips_from_parquet(parquet, split)
        if split:
            raise OptionError(f"split={split!r}: {source} is a folder of videos, not a dataset folder; drop the split")
        return videos_in_folder(source)
    if source.is_file() and source.suffix == ".txt":
        return [ClipSpec(Path(line).stem, line.strip()) for line in source.read_text().splitlines() if line.strip()]
    if source.is_file():
        return [ClipSpec(source.stem, str(source))]
    raise VideoSourceError(f"video source {source} does not exist")


def clips_from_parquet(files: Sequence[Path], split: str | None = None) -> list[ClipSpec]:
    import pyarrow.parquet as pq

    seen: dict[str, ClipSpec] = {}
    for f in files:
        if split and split not in f.name and split not in f.parent.name:
            continue
        table = pq.read_table(f, columns=None)
        cols = set(table.column_names)
        if not {"clip_id", "video_path"} <= cols:
            raise DatasetError(
                f"{f}: a dataset file needs clip_id and video_path columns (has {sorted(cols)}); "
                "build the dataset with --video-dir"
            )
        for row in table.select([c for c in ("clip_id", "video_path", "start", "end") if c in cols]).to_pylist():
            if row["video_path"]:
                seen.setdefault(
                    row["clip_id"], ClipSpec(row["clip_id"], row["video_path"], row.get("start"), row.get("end"))
                )
    return list(seen.values())


def _decode_job(spec: ClipSpec, num_frames: int, image_size: int, sampling: str) -> dict:
    """Runs in a worker: hash + decode one clip; never raises for bad input."""
    try:
        content = file_hash(spec.path) if Path(spec.path).is_file() else "missing"
        key = entry_key(spec.clip_id, content, spec.start, spec.end)
        sampled = sample_frames(spec.path, num_frames, spec.start, spec.end, size=image_size, sampling=sampling)
        return {"spec": spec, "key": key, "frames": sampled.frames, "num_real": sampled.num_real}
    except (VideoDecodeError, ValueError, OSError) as exc:
        return {"spec": spec, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - anything a decoder throws is a per-clip failure
        return {"spec": spec, "error": f"{type(exc).__name__}: {exc}"}


def _key_of(spec: ClipSpec) -> str | None:
    try:
        return entry_key(spec.clip_id, file_hash(spec.path), spec.start, spec.end)
    except OSError:
        return None


def clips_to_extract(clips: list[ClipSpec], store: FeatureStore) -> tuple[list[ClipSpec], int]:
    """``(clips still to extract, number skipped)``: a clip whose key (id + file hash + bounds) is already
    in the store is skipped, so an interrupted run resumes where it stopped (both engines)."""
    todo, skipped = [], 0
    for spec in clips:
        key = _key_of(spec) if spec.clip_id in store else None
        if key is not None and store.has_key(key):
            skipped += 1
        else:
            todo.append(spec)
    return todo, skipped


def extract_features(
    clips: Iterable[ClipSpec],
    store_dir: str | Path,
    encoder,
    num_frames: int = 12,
    sampling: str = "uniform",
    workers: int = 2,
    shard_size: int = 64,
    clips_per_batch: int | None = None,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
    segments: str = "clip",
    window: float = 4.0,
    stride: float = 2.0,
    shot_threshold: float = 27.0,
    device: str | None = None,
) -> ExtractionSummary:
    """Decode, encode and store every clip not yet in the store at ``store_dir``.

    ``encoder`` is a frame encoder (``encode(uint8 [N, S, S, 3]) -> [N, D]``, with ``name``,
    ``feature_dim`` and ``image_size``) or the name of one (a CLIP Hub id or folder, ``mtvr/shape-stats``),
    built on ``device``. ``workers=0`` decodes in this process. ``engine="ray"`` runs the same steps on
    Ray Data (the engine :mod:`mtvr.scale` registers in :mod:`mtvr.video.engines`; ``address`` joins a cluster, a named
    encoder is built in each encoder actor, ``clips_per_batch`` clips per encoder call, default 16),
    writing the same store. ``segments="window"|"shots"`` stores one entry per segment of each
    file (``window``/``stride`` seconds, shot detector threshold), each file decoded once
    (:func:`mtvr.video.segment_extract.extract_segment_features`).
    """
    num_frames = positive_int("num_frames", num_frames)  # 0 used to end in a ZeroDivisionError
    shard_size = positive_int("shard_size", shard_size)
    if segments != "clip":
        if engine != "local":
            raise OptionError(f"segments={segments!r} runs with engine='local' only, got engine={engine!r}")
        from .segment_extract import SegmentOptions, extract_segment_features

        if isinstance(encoder, str):
            from .encoder import build_frame_encoder

            encoder = build_frame_encoder(encoder, device=device)
        opts = SegmentOptions(segments, window, stride, shot_threshold)
        return extract_segment_features(
            list(clips), store_dir, encoder, opts, num_frames, workers, clips_per_batch or 16, progress
        )
    if engine != "local":
        from .engines import get_engine

        return get_engine(engine)(
            clips,
            store_dir,
            encoder,
            num_frames=num_frames,
            sampling=sampling,
            batch_size=clips_per_batch or 16,
            shard_size=shard_size,
            device=device,
            address=address,
            progress=progress,
        )
    if isinstance(encoder, str):
        from .encoder import build_frame_encoder

        encoder = build_frame_encoder(encoder, device=device)
    clips = check_unique_clips(clips)
    manifest = StoreManifest(
        encoder=encoder.name,
        num_frames=num_frames,
        image_size=encoder.image_size,
        sampling=sampling,
        feature_dim=encoder.feature_dim,
    )
    store = FeatureStore(store_dir, manifest)
    summary = ExtractionSummary()
    start_time = time.perf_counter()
    todo, summary.skipped = clips_to_extract(clips, store)
    clips_per_batch = clips_per_batch or max(1, 256 // num_frames)
    pending: list[dict] = []

    def flush(force: bool = False) -> None:
        if pending and (force or len(pending) >= shard_size):
            store.write_shard(
                [p["spec"].clip_id for p in pending],
                [p["key"] for p in pending],
                [p["features"] for p in pending],
                [p["num_real"] for p in pending],
            )
            pending.clear()

    batch: list[dict] = []

    def encode_batch() -> None:
        if not batch:
            return
        feats = encode_clips(encoder, np.stack([b["frames"] for b in batch]))
        for b, f in zip(batch, feats):
            pending.append({"spec": b["spec"], "key": b["key"], "features": f, "num_real": b["num_real"]})
        summary.done += len(batch)
        batch.clear()
        flush()

    bar = tqdm(total=len(clips), initial=summary.skipped, desc="extract features", unit="clip", disable=not progress)
    try:
        for result in _decoded(todo, num_frames, encoder.image_size, sampling, workers):
            bar.update(1)
            if "error" in result:
                spec = result["spec"]
                summary.failed += 1
                summary.errors.append({"file": spec.path, "clip": spec.clip_id, "reason": result["error"]})
                continue
            batch.append(result)
            if len(batch) >= clips_per_batch:
                encode_batch()
        encode_batch()
        flush(force=True)
    finally:
        bar.close()
        # pending features of an interrupted run are lost; what is in shards is complete
    summary.seconds = time.perf_counter() - start_time
    atomic_write_text(store.root / ERRORS, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in summary.errors))
    return summary


def _decoded(todo: list[ClipSpec], num_frames: int, size: int, sampling: str, workers: int):
    """Yield decode results in input order; a worker crash (e.g. a decoder segfault) fails only its clip.

    After a crash the clips that were in flight are retried one at a time in a fresh pool: the one
    that crashes alone is reported as failed.
    """
    if workers <= 0:
        for spec in todo:
            yield _decode_job(spec, num_frames, size, sampling)
        return
    ctx = mp.get_context("spawn")
    queue: deque[ClipSpec] = deque(todo)
    careful = 0  # clips still to run one at a time after a crash
    while queue:
        inflight: deque[tuple[ClipSpec, cf.Future]] = deque()
        try:
            with cf.ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                while queue or inflight:
                    window = 1 if careful else 4 * workers
                    while queue and len(inflight) < window:
                        spec = queue.popleft()
                        inflight.append((spec, pool.submit(_decode_job, spec, num_frames, size, sampling)))
                    result = inflight[0][1].result()
                    inflight.popleft()
                    careful = max(0, careful - 1)
                    yield result
        except BrokenProcessPool:
            if careful and len(inflight) == 1:
                spec, _ = inflight.popleft()
                careful -= 1
                yield {"spec": spec, "error": "the decoder crashed on this file (worker process died)"}
            else:
                careful = len(inflight)
            queue.extendleft(reversed([s for s, _ in inflight]))
