"""Encoder threads for the server: queued queries are encoded together, with a bounded queue.

Why (issue 26, profiled with ``benchmarks/serve.py``): FastAPI runs synchronous endpoints on a pool of up to 40
threads, so 16 concurrent requests encoded 16 queries at once, each through torch's own OpenMP pool: dozens of
threads fighting over 2 cores, and the server kept under half of the in-process rate. Here every search request
goes to one queue served by a few worker threads (``workers``, default 1 here, 2 in ``mtvr serve``), each owning a
batch at a time (its torch thread count chosen by batch size, :mod:`mtvr.threads`). While a worker encodes, new
requests queue up; the next free worker takes everything queued (up to ``max_batch`` queries) and encodes it as one
batch padded to its longest query ("continuous" micro-batching: no timer, so a lone request is never delayed).
With one worker, measured on 2 cores, the machine sat half idle while a batch's answers went out and the next
requests arrived; a second worker encodes the next batch meanwhile (1.3-1.6x the requests/s with ONNX and torch
encoders). ``max_wait_ms`` > 0 adds a short wait for more queries, for devices where larger batches pay (GPUs).
The queue is bounded: when ``max_queue`` queries are waiting, new requests are refused with :class:`ServerBusy`
(the app answers 503 with ``Retry-After``) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MtvrError, OptionError
from ..threads import configured_threads, thread_cap


class ServerBusy(MtvrError, RuntimeError):
    """The search queue is full: the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Job:
    queries: list[str]
    finish: Callable[[np.ndarray], Any]  # embeddings [len(queries), dim] -> the request's result
    future: Future = field(default_factory=Future)


class QueryBatcher:
    """Encode the queries of concurrent requests in one batch on one worker thread.

    ``encode(texts) -> [n, dim]`` is the text encoder (``Retriever.encode_text``); each request passes a ``finish``
    callable that turns its rows of embeddings into its result (index search + hit assembly), run on the same worker.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray],
        *,
        max_batch: int = 16,
        max_wait_ms: float = 0.0,
        max_queue: int = 256,
        threads: int | None = None,
        workers: int = 1,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0 or workers < 1:
            raise OptionError("max_batch, max_queue and workers must be >= 1 and max_wait_ms >= 0")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        # one torch/faiss thread by default: measured faster per query on 2 shared cores (mtvr.threads);
        # MTVR_NUM_THREADS or ``threads`` choose otherwise
        self.threads = threads or configured_threads() or 1
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._waiting = 0  # queries queued or being served
        self._count_lock = threading.Lock()
        self.batches = 0  # statistics: batches run and queries served
        self.queries = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"mtvr-encoder-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # ----------------------------------------------------------------- client side
    def submit(self, queries: Sequence[str], finish: Callable[[np.ndarray], Any]) -> Future:
        """Queue a request; raises :class:`ServerBusy` when ``max_queue`` queries are already waiting."""
        with self._count_lock:
            if self._waiting + len(queries) > self.max_queue:
                raise ServerBusy(f"{self._waiting} queries are waiting (limit {self.max_queue}); retry shortly", 1)
            self._waiting += len(queries)
        job = _Job(list(queries), finish)
        self._jobs.put(job)
        return job.future

    async def run(self, queries: Sequence[str], finish: Callable[[np.ndarray], Any]) -> Any:
        """:meth:`submit` and await the result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(queries, finish))

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    # ----------------------------------------------------------------- worker
    def _gather(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """The jobs of one batch, and the job that did not fit (it starts this worker's next batch)."""
        jobs, size, carry = [first], len(first.queries), None
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                timeout = deadline - time.monotonic()
                job = self._jobs.get(timeout=timeout) if timeout > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # stop after this batch
                break
            if size + len(job.queries) > self.max_batch:
                carry = job
                break
            jobs.append(job)
            size += len(job.queries)
        return jobs, carry

    def _run(self) -> None:
        with thread_cap(self.threads):
            self._serve()

    def _serve(self) -> None:
        carry: _Job | None = None  # per worker: a job that did not fit into this worker's last batch
        while True:
            first, carry = (carry, None) if carry is not None else (self._jobs.get(), None)
            if first is None:
                return
            jobs, carry = self._gather(first)
            texts = [q for job in jobs for q in job.queries]
            try:
                embeddings = self._encode(texts)
            except BaseException as exc:  # noqa: BLE001 - a bad batch must fail its requests, not the worker
                embeddings, error = None, exc
            with self._count_lock:
                self.batches += 1
                self.queries += len(texts)
            start = 0
            for job in jobs:
                rows = slice(start, start + len(job.queries))
                start = rows.stop
                outcome: Any = None
                failure: BaseException | None = None
                try:
                    if embeddings is None:
                        raise error
                    outcome = job.finish(embeddings[rows])
                except BaseException as exc:  # noqa: BLE001 - delivered to the waiting request
                    failure = exc
                with self._count_lock:  # free the queue slots before the client can see its answer
                    self._waiting -= len(job.queries)
                if failure is None:
                    job.future.set_result(outcome)
                else:
                    job.future.set_exception(failure)
