"""Atomic writes: a crash never leaves a half-written file or folder behind.

Files are written beside their destination under a temporary name and moved into place with
:func:`os.replace` (atomic on POSIX within one filesystem). Folders are built in a temporary
sibling folder and renamed into place; an existing destination is swapped out and removed only
after the new folder is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_folder(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``destination`` in one rename.

    On an exception the temporary folder is removed and ``destination`` is left untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(destination)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-{os.getpid()}-", dir=destination.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)
        if destination.exists():
            old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            os.replace(destination, old)
            os.replace(staging, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(destination: Path) -> list[Path]:
    """Remove staging folders of ``destination`` left by a process that was killed (``kill -9``).

    A staging folder is named ``.<name>.tmp-<pid>-<random>``; one whose process no longer exists is
    garbage (its writer can never finish it). Returns what was removed.
    """
    removed = []
    prefix = f".{destination.name}.tmp-"
    for p in destination.parent.glob(f"{glob_escape(prefix)}*"):
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if p.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
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
