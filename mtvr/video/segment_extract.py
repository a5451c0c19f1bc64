"""Long videos to per-segment frame features: one decode per file, segments encoded in batches.

The extraction pipeline (:mod:`mtvr.video.pipeline`) with :class:`SegmentSource` as its decoder: files are decoded
by ``workers`` threads (PyAV decodes and scales outside the GIL), each running one
:class:`~mtvr.video.segment_decode.SegmentDecoder` pass per file and handing its segments over a bounded
queue (memory stays flat); the calling thread encodes batches of segments with the frame encoder.
Used by :meth:`mtvr.Retriever.add_videos` and :func:`mtvr.video.extract.extract_features` when
``segments`` is ``"window"`` or ``"shots"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError, VideoDecodeError
from .clips import ClipSpec
from .pipeline import THREAD_NAME, Decoded, EncodedBatch, ExtractionJob, run
from .segment_decode import SegmentDecoder, SegmentFailure
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


DECODE_THREAD = THREAD_NAME  # the name (prefix) of the decoding threads


@dataclass(frozen=True)
class SegmentSource:
    """The pipeline's decoder of long files: one :class:`SegmentDecoder` pass per file, an item per segment (a
    segment the pass could not give is a failed item with its segment; a file that does not decode at all, one
    failed item without)."""

    opts: SegmentOptions
    num_frames: int
    size: int

    def __call__(self, spec: ClipSpec) -> Iterator[Decoded]:
        opts = self.opts
        frames = None
        try:
            frames = SegmentDecoder(
                spec.path,
                opts.segments,
                window=opts.window,
                stride=opts.stride,
                num_frames=self.num_frames,
                size=self.size,
                shot_threshold=opts.shot_threshold,
                min_shot=opts.min_shot,
            ).__iter__()
            for item in frames:
                if isinstance(item, SegmentFailure):
                    yield Decoded(spec, segment=item.segment, error=item.reason)
                else:
                    yield Decoded(spec, item.frames, item.num_real, segment=item.segment)
        except VideoDecodeError as exc:
            yield Decoded(spec, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - anything a decoder throws fails this file only
            yield Decoded(spec, error=f"cannot decode {spec.path}: {type(exc).__name__}: {exc}")
        finally:
            if frames is not None:
                frames.close()  # an abandoned pass closes its container now, not when garbage-collected


def encode_segments(
    specs: Sequence[ClipSpec],
    encoder: Any,
    opts: SegmentOptions,
    num_frames: int,
    batch_size: int = 16,
    workers: int = 0,
    on_file_done: Any = None,
) -> Iterator[EncodedSegments]:
    """Encode every segment of every file in batches through the extraction pipeline (files decoded by
    ``workers`` threads, :func:`mtvr.video.pipeline.decode_in_threads`); failures are appended to ``opts.errors``.

    ``on_file_done(spec, n_segments)`` is called once a file's segments have all been yielded. A caller that
    stops iterating early (``break``, an exception, ``close()``) stops and joins the decoding threads.
    """
    job = ExtractionJob(
        list(specs), SegmentSource(opts, num_frames, encoder.image_size), encoder, encoder, batch_size, workers
    )
    counts: dict[str, int] = {}
    events = run(job, "threads")
    with contextlib.closing(events):  # an abandoned or failed iteration stops the decoding threads at once
        for event in events:
            if isinstance(event, EncodedBatch):
                for d in event.items:
                    counts[d.spec.clip_id] = counts.get(d.spec.clip_id, 0) + 1
                yield EncodedSegments(
                    [segment_id(d.spec.clip_id, d.segment) for d in event.items],
                    [d.spec for d in event.items],
                    [d.segment for d in event.items],
                    event.features,
                    event.num_real,
                )
            elif isinstance(event, Decoded):
                where = {} if event.segment is None else {
                    "start": round(event.segment.start, 3), "end": round(event.segment.end, 3)
                }  # fmt: skip
                opts.errors.append(
                    {"file": event.spec.path, "clip": event.spec.clip_id, **where, "reason": event.error}
                )
            elif on_file_done is not None:
                on_file_done(event.spec, counts.get(event.spec.clip_id, 0))


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
    for key in store.keys:
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


def store_entry_metadata(store: Any, segments: str | None = None) -> dict[str, dict[str, Any]]:
    """The index metadata of a feature store's entries: ``{}`` for a store of whole clips, else
    :func:`segment_metadata_from_store`. ``segments`` (``"window"``, ``"shots"``), when given other than
    ``"clip"``, must be what the store holds (the option cannot re-cut a store)."""
    from .store import FeatureStore

    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    held = store.manifest.segments
    if segments not in (None, "clip") and segments != held:
        raise OptionError(
            f"segments={segments!r} but {store.root} holds {held} entries "
            "(segments are cut by `mtvr extract-features --segments`)"
        )
    return segment_metadata_from_store(store) if held != "clip" else {}


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
