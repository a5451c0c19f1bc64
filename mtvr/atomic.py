"""Atomic writes: a crash never leaves a half-written file or folder behind.

Files are written beside their destination under a temporary name and moved into place with
:func:`os.replace` (atomic on POSIX within one filesystem). Folders are built in a temporary
sibling folder and renamed into place; an existing destination is swapped out and removed only
after the new folder is complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FileSystemError


@contextlib.contextmanager
def atomic_folder(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``destination`` in one rename.

    On an exception the temporary folder is removed and ``destination`` is left untouched. A
    ``destination`` that is a symbolic link is written through: the link stays and its target is replaced.
    An existing destination is swapped with the new folder in one atomic exchange (Linux ``renameat2``),
    so at every instant the destination holds the old or the new version, even under ``kill -9``; where
    the exchange is not available, the old folder is set aside as ``.<name>.old-<pid>`` for the moment of
    two renames, and the next write or read of ``destination`` puts it back if the process died there.
    """
    destination = Path(destination)
    if destination.is_symlink():
        remove_stale_staging(destination)  # what older versions left beside the link
        destination = Path(os.path.realpath(destination))
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(destination)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-{os.getpid()}-", dir=destination.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)
        _fsync_dir(staging)
        if destination.exists():
            if exchange_paths(staging, destination):
                shutil.rmtree(staging, ignore_errors=True)  # it holds the old version now
            else:
                old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
                os.replace(destination, old)
                os.replace(staging, destination)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, destination)
        _fsync_dir(destination.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (``renameat2(RENAME_EXCHANGE)``, Linux 3.15+, glibc 2.28+).

    Returns ``False`` where the system or filesystem cannot (then nothing changed). Python has no binding
    for it, hence ctypes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise FileSystemError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def restore_interrupted_swap(destination: str | os.PathLike) -> bool:
    """Put back ``.<name>.old-<pid>`` when its writer died between its two renames and ``destination``
    is missing. Returns whether it did."""
    destination = Path(destination)
    if destination.exists() or destination.is_symlink():
        return False
    for old in _dead_leftovers(destination, ".old-"):
        with contextlib.suppress(OSError):
            os.replace(old, destination)
            return True
    return False


def _dead_leftovers(destination: Path, marker: str) -> list[Path]:
    """``.<name><marker><pid>...`` folders beside ``destination`` whose process no longer exists."""
    prefix = f".{destination.name}{marker}"
    found = []
    for p in destination.parent.glob(f"{glob_escape(prefix)}*"):
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if p.is_dir() and not p.is_symlink() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            found.append(p)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(destination: Path) -> list[Path]:
    """Clean up after a writer of ``destination`` that was killed (``kill -9``).

    Staging folders (``.<name>.tmp-<pid>-<random>``) of dead processes are garbage (their writer can
    never finish them) and are removed; a set-aside old version (``.<name>.old-<pid>``) is put back if
    ``destination`` is missing, else removed. Returns what was removed.
    """
    restore_interrupted_swap(destination)
    removed = []
    for p in _dead_leftovers(destination, ".tmp-") + _dead_leftovers(destination, ".old-"):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
