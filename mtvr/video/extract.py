"""`extract_features`: videos → frame features in a :class:`~mtvr.video.store.FeatureStore`.

The extraction pipeline (:mod:`mtvr.video.pipeline`) runs decode → batch → encode with the executor the engine
names (``local``: decoding in worker processes overlapping with encoding in this process, a bounded window of
decoded clips keeping memory flat, or in this process with ``workers=0``; ``ray``: a cluster), into the store
sink (:func:`write_to_store`). Bad inputs (missing, empty, corrupt, truncated, audio-only, a
clip past the end, a decoder crash) are reported in ``errors.jsonl`` and never stop the run. Clips
whose key is already in the store are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..errors import DatasetError, OptionError, OptionTypeError, VideoSourceError
from ..option_values import positive_int
from .clips import ClipSpec, ExtractionSummary, check_unique_clips, encode_clips  # noqa: F401  (re-exported)
from .pipeline import (
    EXECUTORS,
    ClipDecoder,
    Decoded,
    EncodedBatch,
    ExtractionJob,
    Sampling,
    die_with_parent,  # noqa: F401  (re-exported: the initializer of the decode worker processes)
    make_encoder,
    run,
)
from .store import ERRORS, FeatureStore, StoreManifest, entry_key, file_hash

logger = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ts"}


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


def extraction_engines() -> list[str]:
    """What ``extract_features(engine=...)`` accepts: ``local``, the pipeline's executors (:data:`EXECUTORS`,
    ``ray`` among them when :mod:`mtvr.scale` is installed) and whole engines (:mod:`mtvr.video.engines`)."""
    from .engines import registered_engines

    return sorted({"local", *EXECUTORS.names(), *registered_engines()})


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
    if engine not in ("local", *EXECUTORS.names()):  # a whole engine registered by another package
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
    executor = engine if engine != "local" else ("processes" if workers > 0 else "inline")
    options = {"address": address} if address is not None else {}
    return extract_clips(
        clips, store_dir, encoder, num_frames, sampling, workers, shard_size, clips_per_batch, progress, device, executor,
        **options,
    )  # fmt: skip


def extract_clips(
    clips: Iterable[ClipSpec],
    store_dir: str | Path,
    encoder: Any,
    num_frames: int = 12,
    sampling: str = "uniform",
    workers: int = 2,
    shard_size: int = 64,
    clips_per_batch: int | None = None,
    progress: bool = True,
    device: str | None = None,
    executor: str = "processes",
    **options: Any,
) -> ExtractionSummary:
    """The whole-clip extraction of :func:`extract_features`: the pipeline (:mod:`mtvr.video.pipeline`) run by
    ``executor`` into the store sink. ``options`` go to the executor (Ray: ``address``, ``num_encoders``)."""
    local = executor in ("inline", "processes", "threads")
    # an encoder given by name is built here for the manifest (on the CPU when remote actors build their own)
    probe = make_encoder(encoder, device if local or not isinstance(encoder, str) else "cpu")
    clips = check_unique_clips(clips)
    manifest = StoreManifest(
        encoder=probe.name,
        num_frames=num_frames,
        image_size=probe.image_size,
        sampling=sampling,
        feature_dim=probe.feature_dim,
    )
    store = FeatureStore(store_dir, manifest)
    summary = ExtractionSummary()
    start_time = time.perf_counter()
    todo, summary.skipped = clips_to_extract(clips, store)
    job = ExtractionJob(
        specs=todo,
        decoder=ClipDecoder(Sampling(num_frames, probe.image_size, sampling)),
        encoder=encoder,
        local_encoder=probe if local else None,
        batch_size=clips_per_batch or (max(1, 256 // num_frames) if local else 16),
        workers=workers,
        device=device,
        progress=progress,
        options=options,
    )
    desc = "extract features" if local else f"extract features ({executor})"
    bar = tqdm(total=len(clips), initial=summary.skipped, desc=desc, unit="clip", disable=not progress)
    try:
        if todo:
            write_to_store(run(job, executor), store, shard_size, summary, bar.update)
    finally:
        bar.close()
        # pending features of an interrupted run are lost; what is in shards is complete
    order = {c.clip_id: i for i, c in enumerate(clips)}
    summary.errors.sort(key=lambda e: order.get(e["clip"], 0))  # input order, whichever executor ran
    summary.seconds = time.perf_counter() - start_time
    atomic_write_text(store.root / ERRORS, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in summary.errors))
    return summary


def write_to_store(
    events: Iterable[Any], store: FeatureStore, shard_size: int, summary: ExtractionSummary, on_source: Any = None
) -> None:
    """The store sink of whole clips: encoded clips in shards of ``shard_size`` (each written atomically),
    failures counted and listed in ``summary``; ``on_source()`` after each clip (a progress bar)."""
    pending: list[tuple[str, str, np.ndarray, int]] = []
    for event in events:
        if isinstance(event, EncodedBatch):
            for d, f in zip(event.items, event.features):
                pending.append((d.spec.clip_id, d.key, f, d.num_real))
            summary.done += len(event.items)
            while len(pending) >= shard_size:
                chunk, pending = pending[:shard_size], pending[shard_size:]
                store.write_shard(*map(list, zip(*chunk)))
        elif isinstance(event, Decoded):
            summary.failed += 1
            summary.errors.append({"file": event.spec.path, "clip": event.spec.clip_id, "reason": event.error})
        elif on_source is not None:
            on_source(1)
    if pending:
        store.write_shard(*map(list, zip(*pending)))
