"""Long videos to per-segment frame features: one decode per file, segments encoded in batches.

Files are decoded by ``workers`` threads (PyAV decodes and scales outside the GIL), each running one
:class:`~mtvr.video.segment_decode.SegmentDecoder` pass per file and handing its segments over a bounded
queue (memory stays flat); the calling thread encodes batches of segments with the frame encoder.
Used by :meth:`mtvr.Retriever.add_videos` and :func:`mtvr.video.extract.extract_features` when
``segments`` is ``"window"`` or ``"shots"``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError, VideoDecodeError
from .clips import ClipSpec, encode_clips
from .segment_decode import SegmentDecoder, SegmentFailure, SegmentFrames
from .segments import Segment, check_mode, check_window

SOURCES = "sources.json"  # in a store of segments: {clip id: file name}, for the index's metadata


def segment_id(clip_id: str, segment: Segment) -> str:
    """The id of a segment: the file's clip id and the time range (Media Fragments ``#t=start,end``)."""
    return f"{clip_id}#t={segment.start:.2f},{segment.end:.2f}"


def segment_metadata(spec: ClipSpec, segment: Segment, mode: str) -> dict[str, Any]:
    """Where a segment comes from: file name, start, end (seconds), the parent clip id and the mode."""
    return {
        "file": Path(spec.path).name,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "video": spec.clip_id,
        "segment": mode,
    }


@dataclass
class EncodedSegments:
    """One encoded batch: segment ids, their file specs and segments, frame features ``[B, T, D]``."""

    ids: list[str]
    specs: list[ClipSpec]
    segments: list[Segment]
    features: np.ndarray
    num_real: list[int]


@dataclass
class SegmentOptions:
    """How files are cut: ``segments`` mode, ``window``/``stride`` seconds, the shot detector's threshold."""

    segments: str = "window"
    window: float = 4.0
    stride: float = 2.0
    shot_threshold: float = 27.0
    min_shot: float = 0.5
    errors: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_mode(self.segments)
        self.window, self.stride = check_window(self.window, self.stride)


_DONE = object()
DECODE_THREAD = "mtvr-segment-decode"  # the name (prefix) of the decoding threads


def _decode_files(
    specs: Sequence[ClipSpec], opts: SegmentOptions, num_frames: int, size: int, workers: int
) -> Iterator[tuple[ClipSpec, SegmentFrames | SegmentFailure | VideoDecodeError | object]]:
    """``(spec, item)`` for every segment of every file; ``item`` is ``_DONE`` after a file's last segment."""

    def items(spec: ClipSpec) -> Iterator[tuple[ClipSpec, Any]]:
        frames = None
        try:
            frames = SegmentDecoder(
                spec.path,
                opts.segments,
                window=opts.window,
                stride=opts.stride,
                num_frames=num_frames,
                size=size,
                shot_threshold=opts.shot_threshold,
                min_shot=opts.min_shot,
            ).__iter__()
            for item in frames:
                yield spec, item
        except VideoDecodeError as exc:
            yield spec, exc
        except Exception as exc:  # noqa: BLE001 - anything a decoder throws fails this file only
            yield spec, VideoDecodeError(f"cannot decode {spec.path}: {type(exc).__name__}: {exc}")
        finally:
            if frames is not None:
                frames.close()  # an abandoned pass closes its container now, not when garbage-collected
        yield spec, _DONE

    if workers <= 1:  # decode in this thread, streaming each file's segments
        for spec in specs:
            yield from items(spec)
        return
    # one bounded queue per file keeps each file's segments in order and the output in input order
    lock = threading.Lock()
    stop = threading.Event()  # set when the consumer is done, early or not: every worker then returns
    todo = list(enumerate(specs))
    queues = [queue.Queue(maxsize=64) for _ in specs]

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                i, spec = todo.pop(0)
            pairs = items(spec)
            try:
                for pair in pairs:
                    while not stop.is_set():  # a bounded put that notices an abandoned iteration
                        try:
                            queues[i].put(pair, timeout=0.05)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            finally:
                pairs.close()  # closes the decoder's container (and FFmpeg's own threads) now

    threads = [
        threading.Thread(target=worker, name=f"{DECODE_THREAD}-{n}", daemon=True)
        for n in range(min(workers, len(specs)))
    ]
    for t in threads:
        t.start()
    try:
        for q in queues:
            while True:
                spec, item = q.get()
                yield spec, item
                if item is _DONE:
                    break
    finally:  # also when the caller stops iterating early (break, an exception, close()): stop and join
        stop.set()
        for t in threads:
            t.join()


def encode_segments(
    specs: Sequence[ClipSpec],
    encoder: Any,
    opts: SegmentOptions,
    num_frames: int,
    batch_size: int = 16,
    workers: int = 0,
    on_file_done: Any = None,
) -> Iterator[EncodedSegments]:
    """Encode every segment of every file in batches; failures are appended to ``opts.errors``.

    ``on_file_done(spec, n_segments)`` is called once a file's segments have all been yielded. A caller that
    stops iterating early (``break``, an exception, ``close()``) stops and joins the decoding threads.
    """
    decoded = _decode_files(specs, opts, num_frames, encoder.image_size, workers)
    with contextlib.closing(decoded):  # an abandoned or failed iteration stops the decoding threads at once
        yield from _batches(decoded, encoder, opts, batch_size, on_file_done)


def _batches(
    decoded: Iterator[tuple[ClipSpec, Any]], encoder: Any, opts: SegmentOptions, batch_size: int, on_file_done: Any
) -> Iterator[EncodedSegments]:
    """The batches of :func:`encode_segments` from the decoded ``(spec, item)`` pairs."""
    batch: list[tuple[ClipSpec, SegmentFrames]] = []
    counts: dict[str, int] = {}

    def flush() -> EncodedSegments | None:
        if not batch:
            return None
        feats = encode_clips(encoder, np.stack([b.frames for _, b in batch]))
        out = EncodedSegments(
            [segment_id(s.clip_id, b.segment) for s, b in batch],
            [s for s, _ in batch],
            [b.segment for _, b in batch],
            feats,
            [b.num_real for _, b in batch],
        )
        batch.clear()
        return out

    for spec, item in decoded:
        if item is _DONE:
            done = flush()
            if done is not None:
                yield done
            if on_file_done is not None:
                on_file_done(spec, counts.get(spec.clip_id, 0))
            continue
        if isinstance(item, VideoDecodeError):
            opts.errors.append({"file": spec.path, "clip": spec.clip_id, "reason": str(item)})
        elif isinstance(item, SegmentFailure):
            opts.errors.append(
                {
                    "file": spec.path,
                    "clip": spec.clip_id,
                    "start": round(item.segment.start, 3),
                    "end": round(item.segment.end, 3),
                    "reason": item.reason,
                }
            )
        else:
            counts[spec.clip_id] = counts.get(spec.clip_id, 0) + 1
            batch.append((spec, item))
            if len(batch) >= batch_size:
                yield flush()


def extract_segment_features(
    clips: Sequence[ClipSpec],
    store_dir: str | Path,
    encoder: Any,
    opts: SegmentOptions,
    num_frames: int = 12,
    workers: int = 2,
    batch_size: int = 16,
    progress: bool = True,
) -> Any:
    """:func:`~mtvr.video.extract.extract_features` for ``segments="window"|"shots"``: one decode per file.

    A file's segments are written in one shard once the whole file is done (atomic), so an interrupted run
    never leaves half a file; a resumed run skips every file whose segments (same content hash) are stored.
    The store's manifest records the segmenting: another window/stride needs another store.
    """
    import json
    import time

    from tqdm.auto import tqdm

    from ..atomic import atomic_write_text
    from .clips import ExtractionSummary, check_unique_clips
    from .store import ERRORS, FeatureStore, StoreManifest, entry_key, file_hash

    clips = check_unique_clips(clips)
    for spec in clips:
        if spec.start is not None or spec.end is not None:
            raise OptionError(f"clip {spec.clip_id!r} has bounds: segments={opts.segments!r} cuts whole files only")
    manifest = StoreManifest(
        encoder=encoder.name,
        num_frames=num_frames,
        image_size=encoder.image_size,
        sampling="uniform",
        feature_dim=encoder.feature_dim,
        segments=opts.segments,
        window=opts.window,
        stride=opts.stride,
        shot_threshold=opts.shot_threshold if opts.segments == "shots" else None,
    )
    store = FeatureStore(store_dir, manifest)
    summary = ExtractionSummary()
    t0 = time.perf_counter()
    stored = {}  # clip id -> content hashes of its stored segments
    for key in store._keys:
        sid, content = key.split("|")[:2]
        stored.setdefault(sid.split("#t=")[0], set()).add(content)
    todo, hashes = [], {}
    for spec in clips:
        try:
            hashes[spec.clip_id] = file_hash(spec.path)
        except OSError:
            hashes[spec.clip_id] = "missing"
        if hashes[spec.clip_id] in stored.get(spec.clip_id, ()):
            summary.skipped += 1
        else:
            todo.append(spec)
    pending: dict[str, list] = {}
    bar = tqdm(total=len(clips), initial=summary.skipped, desc="extract segments", unit="file", disable=not progress)

    def file_done(spec: ClipSpec, _n: int) -> None:
        rows = pending.pop(spec.clip_id, [])
        if rows:
            store.write_shard(
                [r[0] for r in rows],
                [entry_key(r[0], hashes[spec.clip_id], r[1].start, r[1].end) for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
            )
            summary.done += 1
        else:
            summary.failed += 1
        bar.update(1)

    try:
        for batch in encode_segments(todo, encoder, opts, num_frames, batch_size, workers, on_file_done=file_done):
            for sid, spec, seg, f, n in zip(batch.ids, batch.specs, batch.segments, batch.features, batch.num_real):
                pending.setdefault(spec.clip_id, []).append((sid, seg, f, n))
    finally:
        bar.close()
    summary.errors = opts.errors
    summary.seconds = time.perf_counter() - t0
    sources_path = store.root / SOURCES
    sources = json.loads(sources_path.read_text(encoding="utf-8")) if sources_path.is_file() else {}
    sources.update({spec.clip_id: Path(spec.path).name for spec in clips})
    atomic_write_text(sources_path, json.dumps(sources, ensure_ascii=False, indent=0))
    atomic_write_text(store.root / ERRORS, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in summary.errors))
    return summary


def segment_metadata_from_store(store: Any) -> dict[str, dict[str, Any]]:
    """``{segment id: metadata}`` for a feature store of segments (``file``, ``start``, ``end``, ``video``)."""
    import json

    path = store.root / SOURCES
    sources = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = {}
    for sid in store.clip_ids:
        clip, sep, span = sid.rpartition("#t=")
        if not sep:
            continue
        start, end = (float(v) for v in span.split(","))
        out[sid] = {
            "file": sources.get(clip, clip),
            "start": start,
            "end": end,
            "video": clip,
            "segment": store.manifest.segments,
        }
    return out
