"""The one extraction pipeline: decode → batch → encode → sink, with interchangeable executors.

::

    sources (ClipSpec) ──decode──► Decoded items (frames of a clip, or of each segment of a file)
                       ──batch───► ``batch_size`` items ──encode (the frame encoder)──► EncodedBatch
                       ──sink────► a feature store (extract_features), embeddings (Retriever.encode_videos),
                                   the index (Retriever.add_videos with segments)

A *decoder* turns one source into its items (:class:`ClipDecoder`: one clip sampled as the frame encoder's
:class:`Sampling` says; :class:`mtvr.video.segment_extract.SegmentSource`: every segment of a file from one
decode pass). An *executor* runs decode and encode and yields, in input order, :class:`EncodedBatch` es,
failed :class:`Decoded` items and a :class:`SourceDone` after each source's last item:

* ``inline``: decode and encode in this thread;
* ``processes``: decode in ``workers`` worker processes (a decoder crash fails only its source), encode here;
* ``threads``: decode in ``workers`` threads, each streaming one source's items over a bounded queue (long
  files: memory stays flat), encode here;
* ``ray``: decode tasks and encoder actors on a Ray cluster, registered by :mod:`mtvr.scale` when it is imported
  (this package never imports it).

Executors are registered in :data:`EXECUTORS` (``register_executor``; the ``mtvr.extraction_executors``
entry-point group); the sinks do not depend on which one ran.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoDecodeError
from ..registry import Registry
from .clips import ClipSpec, encode_clips


# ---------------------------------------------------------------------- what flows through the pipeline
@dataclass(frozen=True)
class Sampling:
    """How frames are sampled for the frame encoder: ``num_frames`` per clip, ``image_size`` pixels square,
    ``uniform`` or ``random`` positions (:func:`mtvr.video.decode.sample_frames`)."""

    num_frames: int
    image_size: int
    sampling: str = "uniform"

    @classmethod
    def of(cls, config: Any, encoder: Any) -> Sampling:
        """The sampling a model's ``frame_encoder`` config asks for, at its encoder's image size."""
        return cls(int(config.num_frames), int(encoder.image_size), str(config.sampling))


@dataclass
class Decoded:
    """One decoded item: the frames of a clip (or of one segment of a file), or why it failed.

    ``key`` is the feature store's entry key (id + file content + bounds) where the decoder computes it."""

    spec: ClipSpec
    frames: np.ndarray | None = None
    num_real: int = 0
    key: str | None = None
    segment: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class SourceDone:
    """Every item of ``spec`` has gone by (encoded or failed)."""

    spec: ClipSpec


@dataclass
class EncodedBatch:
    """Encoded items (their frames released) and their frame features ``[B, T, D]``."""

    items: list[Decoded]
    features: np.ndarray

    @property
    def num_real(self) -> list[int]:
        return [d.num_real for d in self.items]


Event = EncodedBatch | Decoded | SourceDone
Decoder = Callable[[ClipSpec], Iterator[Decoded]]


@dataclass(frozen=True)
class ClipDecoder:
    """The decoder of whole clips (a file or its ``[start, end]``): hash + sample one clip; never raises for bad
    input (picklable, so that worker processes and Ray tasks run it)."""

    sampling: Sampling

    def __call__(self, spec: ClipSpec) -> Iterator[Decoded]:
        yield decode_clip(spec, self.sampling)


def decode_clip(spec: ClipSpec, sampling: Sampling) -> Decoded:
    """Hash + decode one clip; a bad input (missing, corrupt, truncated, a crash of the decoder's code) is a
    failed item, never an exception."""
    from .decode import sample_frames
    from .store import entry_key, file_hash

    try:
        content = file_hash(spec.path) if Path(spec.path).is_file() else "missing"
        key = entry_key(spec.clip_id, content, spec.start, spec.end)
        s = sample_frames(
            spec.path, sampling.num_frames, spec.start, spec.end, size=sampling.image_size, sampling=sampling.sampling
        )
        return Decoded(spec, s.frames, s.num_real, key)
    except (VideoDecodeError, ValueError, OSError) as exc:
        return Decoded(spec, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - anything a decoder throws is a per-clip failure
        return Decoded(spec, error=f"{type(exc).__name__}: {exc}")


@dataclass
class ExtractionJob:
    """What an executor runs.

    ``encoder`` is the frame encoder as the caller gave it (an object, a registered or checkpoint name, or a
    factory): the Ray executor builds it in each encoder actor. ``local_encoder`` is it built in this process
    (the in-process executors use it). ``options`` are executor-specific (Ray: ``address``, ``num_encoders``).
    """

    specs: list[ClipSpec]
    decoder: Decoder
    encoder: Any
    local_encoder: Any = None
    batch_size: int = 16
    workers: int = 0
    device: str | None = None
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- decode stages
def decode_inline(specs: Sequence[ClipSpec], decoder: Decoder, workers: int = 0) -> Iterator[Decoded | SourceDone]:
    for spec in specs:
        items = decoder(spec)
        try:
            yield from items
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # an abandoned source releases its decoder now
        yield SourceDone(spec)


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


def _decode_all(decoder: Decoder, spec: ClipSpec) -> list[Decoded]:
    """Runs in a worker process: every item of one source."""
    return list(decoder(spec))


def decode_in_processes(specs: Sequence[ClipSpec], decoder: Decoder, workers: int) -> Iterator[Decoded | SourceDone]:
    """Items in input order, sources decoded in ``workers`` processes; a worker crash (e.g. a decoder segfault)
    fails only its source. After a crash the sources that were in flight are retried one at a time in a fresh
    pool: the one that crashes alone is reported as failed."""
    if workers <= 0:
        yield from decode_inline(specs, decoder)
        return
    ctx = mp.get_context("spawn")
    todo: deque[ClipSpec] = deque(specs)
    careful = 0  # sources still to run one at a time after a crash
    while todo:
        inflight: deque[tuple[ClipSpec, cf.Future]] = deque()
        try:
            with cf.ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                while todo or inflight:
                    window = 1 if careful else 4 * workers
                    while todo and len(inflight) < window:
                        spec = todo.popleft()
                        inflight.append((spec, pool.submit(_decode_all, decoder, spec)))
                    items = inflight[0][1].result()
                    spec, _ = inflight.popleft()
                    careful = max(0, careful - 1)
                    yield from items
                    yield SourceDone(spec)
        except BrokenProcessPool:
            if careful and len(inflight) == 1:
                spec, _ = inflight.popleft()
                careful -= 1
                yield Decoded(spec, error="the decoder crashed on this file (worker process died)")
                yield SourceDone(spec)
            else:
                careful = len(inflight)
            todo.extendleft(reversed([s for s, _ in inflight]))


THREAD_NAME = "mtvr-decode"  # the name (prefix) of the decoding threads


def decode_in_threads(specs: Sequence[ClipSpec], decoder: Decoder, workers: int) -> Iterator[Decoded | SourceDone]:
    """Items in input order, sources decoded by ``workers`` threads (PyAV decodes and scales outside the GIL),
    each streaming its source's items over a bounded queue so that memory stays flat for long files. A consumer
    that stops early (``break``, an exception, ``close()``) stops and joins the threads."""
    if workers <= 1:
        yield from decode_inline(specs, decoder)
        return
    lock = threading.Lock()
    stop = threading.Event()  # set when the consumer is done, early or not: every worker then returns
    todo = list(enumerate(specs))
    queues: list[queue.Queue] = [queue.Queue(maxsize=64) for _ in specs]

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                i, spec = todo.pop(0)
            for item in decode_inline([spec], decoder):  # closes the source's decoder when it ends or is abandoned
                while not stop.is_set():  # a bounded put that notices an abandoned iteration
                    try:
                        queues[i].put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return

    threads = [
        threading.Thread(target=worker, name=f"{THREAD_NAME}-{n}", daemon=True) for n in range(min(workers, len(specs)))
    ]
    for t in threads:
        t.start()
    try:
        for q in queues:
            while True:
                item = q.get()
                yield item
                if isinstance(item, SourceDone):
                    break
    finally:
        stop.set()
        for t in threads:
            t.join()


# ---------------------------------------------------------------------- batch + encode stage
def encode_stage(
    decoded: Iterable[Decoded | SourceDone], encoder: Any, batch_size: int
) -> Iterator[EncodedBatch | Decoded | SourceDone]:
    """Batch the decoded items ``batch_size`` at a time (across sources) and encode each batch; failed items pass
    through at once, and a source's :class:`SourceDone` follows the batch that holds its last item."""
    batch: list[Decoded] = []
    waiting: list[SourceDone] = []

    def flush() -> Iterator[EncodedBatch | SourceDone]:
        if batch:
            features = encode_clips(encoder, np.stack([d.frames for d in batch]))
            for d in batch:
                d.frames = None
            yield EncodedBatch(list(batch), features)
            batch.clear()
        yield from waiting
        waiting.clear()

    for item in decoded:
        if isinstance(item, SourceDone):
            if batch:
                waiting.append(item)
            else:
                yield item
        elif not item.ok:
            yield item
        else:
            batch.append(item)
            if len(batch) >= batch_size:
                yield from flush()
    yield from flush()


# ---------------------------------------------------------------------- executors
Executor = Callable[[ExtractionJob], Iterator[Event]]


def _in_process(stage: Callable[..., Iterator[Decoded | SourceDone]]) -> Executor:
    def run(job: ExtractionJob) -> Iterator[Event]:
        encoder = job.local_encoder if job.local_encoder is not None else make_encoder(job.encoder, job.device)
        decoded = stage(job.specs, job.decoder, job.workers)
        try:
            yield from encode_stage(decoded, encoder, job.batch_size)
        finally:
            close = getattr(decoded, "close", None)
            if close is not None:
                close()  # an abandoned run stops its decoding threads or processes now

    return run


EXECUTORS: Registry[Executor] = Registry(
    "extraction executor", entry_points="mtvr.extraction_executors", plugins=("mtvr.scale",)
)
EXECUTORS.register("inline", _in_process(decode_inline))
EXECUTORS.register("processes", _in_process(decode_in_processes))
EXECUTORS.register("threads", _in_process(decode_in_threads))


def register_executor(name: str, executor: Executor | str) -> None:
    """Make ``name`` run extraction jobs with ``executor(job) -> events`` (or ``"package.module:function"``)."""
    EXECUTORS.register(name, executor)


def run(job: ExtractionJob, executor: str = "inline") -> Iterator[Event]:
    """The events of ``job`` run by the executor registered as ``executor``."""
    return EXECUTORS.get(executor)(job)


def make_encoder(encoder: Any, device: str | None) -> Any:
    """An encoder from a registered / checkpoint name, a factory, or an encoder object (returned as is)."""
    if isinstance(encoder, str):
        from .frame_encoders import build_frame_encoder

        return build_frame_encoder(encoder, device=device)
    if callable(encoder) and not hasattr(encoder, "encode"):
        return encoder()
    return encoder
