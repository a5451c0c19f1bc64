"""A readers-writer lock: many concurrent searches, or one mutation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many readers or one writer; a waiting writer goes first.

    New readers wait while a writer is waiting, so a stream of overlapping searches cannot starve an
    ``add`` / ``remove`` (the writer gets the lock as soon as the searches already running finish).
    The standard library has no readers-writer lock, hence this small one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())  # never re-entered: a plain lock is cheaper than RLock
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._read_guard = _ReadGuard(self)

    def read(self) -> _ReadGuard:
        """``with lock.read():`` holds a read lock for the block (a plain context object, not a generator:
        entering and leaving costs a third of a ``contextmanager``'s, and every search takes it)."""
        return self._read_guard

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _ReadGuard:
    """The context object of :meth:`ReadWriteLock.read` (stateless: one per lock serves every thread)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_read()
