"""`MilvusIndex`: video embeddings in a Milvus collection, with the same operations and hits as the faiss index.

Open one by location (``VideoIndex.open`` / ``Retriever.load_index`` / the CLI's ``--index`` / ``--out``)::

    milvus-lite:///abs/path/videos.db#clips    # Milvus Lite: embedded, one process, a local folder
    milvus://host:19530#clips                  # a Milvus server or cluster (plain gRPC)
    milvus+https://host:443/my_db#clips        # TLS; an optional database name after the host

The collection (default ``videos``) is created on first open when ``dim`` is given. The token comes from
``token=`` or the ``MILVUS_TOKEN`` environment variable; it is never part of a location, a message or a log
line (a location carrying ``user:password@`` or ``?token=`` is refused, because locations are printed).

A row is one video (or one moment of a long video): ``id`` (VARCHAR primary key), ``vector``
(FLOAT_VECTOR, inner product on the L2-normalised embeddings), the typed metadata in scalar columns
(``file`` VARCHAR; ``start`` / ``end`` DOUBLE: filterable and indexable by Milvus) and every other
metadata key in the JSON column ``meta``. Search hits carry the metadata rebuilt exactly as it was added.

Guarantees, and where they differ from the faiss backend:

* An ``add`` / ``remove`` that raises has changed nothing that this process can see: inside one process
  writes take a write lock that searches wait for, and a failed multi-batch add deletes (or, with
  ``replace=True``, restores) the rows it had written. Milvus has no multi-row transactions, so
  *another* process may see the rows of a large add appear batch by batch, and two processes adding the
  same new id at the same moment both succeed (Milvus does not enforce primary-key uniqueness on insert).
* Milvus Lite is single-process: a second process cannot open the same ``.db`` folder while one has it
  open. Several writers, several ``mtvr serve`` replicas and online deletes at scale need a Milvus server.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    EmptyIndexError,
    IndexConnectionError,
    IndexLoadError,
    MissingDependencyError,
    VideoIndexError,
)
from ..filtered_search import DEFAULT_EXACT_BELOW
from .base import IndexBackend, SearchHit
from .checks import check_embeddings, check_metadata, check_video_ids
from .lock import ReadWriteLock
from .milvus_expr import (
    ID_FIELD,
    JSON_FIELD,
    NUM_COLUMNS,
    STR_COLUMNS,
    MatchNothing,
    filter_expression,
    ids_expression,
    in_column,
)

log = logging.getLogger(__name__)

VECTOR_FIELD = "vector"
ID_MAX_BYTES = 2048
DEFAULT_COLLECTION = "videos"
SCHEMES = ("milvus-lite", "milvus", "milvus+https", "milvus+http")
MAX_TOPK = 16384  # Milvus's largest limit per search
LOOKUP_CHUNK = 1000  # ids per `id in [...]` query
BATCH_BYTES = 4 << 20  # rows per insert RPC: about 4 MiB of vectors (Milvus's gRPC limit is 64-256 MiB)
_COLLECTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_OUTPUT = [*STR_COLUMNS, *NUM_COLUMNS, JSON_FIELD]


def _quiet_pymilvus() -> None:
    """pymilvus logs every failed RPC at ERROR *with a traceback* (its own handlers, set up at import);
    mtvr raises one clear error instead. An application that wants pymilvus's lines sets the level back."""
    for name in ("pymilvus", "pymilvus.milvus_client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise MissingDependencyError(
            'a Milvus index needs pymilvus (and milvus-lite for files): pip install "mtvr[milvus]"'
        ) from exc
    _quiet_pymilvus()
    return pymilvus


# --------------------------------------------------------------------------------------------------- locations
@dataclass(frozen=True)
class MilvusLocation:
    """A parsed Milvus location: where the engine is, which database and collection. Never holds a secret."""

    scheme: str  # "milvus-lite", "milvus" or "milvus+https"
    uri: str  # what pymilvus connects to: a local ``.db`` path, or http(s)://host:port
    collection: str
    db_name: str = ""

    @property
    def lite(self) -> bool:
        return self.scheme == "milvus-lite"

    def __str__(self) -> str:
        if self.lite:
            return f"milvus-lite://{self.uri}#{self.collection}"
        host = self.uri.split("://", 1)[1]
        return f"{self.scheme}://{host}{'/' + self.db_name if self.db_name else ''}#{self.collection}"


def parse_location(location: str | os.PathLike) -> MilvusLocation:
    """Parse ``milvus-lite:///path.db#collection`` or ``milvus[+https]://host:port[/db]#collection``."""
    text = os.fspath(location)
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise VideoIndexError(
            f"not a Milvus location: {text!r}; use milvus-lite:///abs/path/videos.db#collection or "
            "milvus://host:19530#collection"
        )
    body, _, collection = rest.partition("#")
    collection = collection or DEFAULT_COLLECTION
    if not _COLLECTION_RE.match(collection):
        raise VideoIndexError(
            f"Milvus collection name {collection!r} in {scheme}://...: use letters, digits and underscores, "
            "starting with a letter or underscore (at most 255)"
        )
    if "?" in body or "@" in body.split("/", 1)[0]:
        raise VideoIndexError(
            f"{scheme}:// location carries credentials or options: pass the token with token= or the MILVUS_TOKEN "
            "environment variable (locations are printed in logs and messages)"
        )
    if scheme == "milvus-lite":
        if not body:
            raise VideoIndexError("milvus-lite:// needs a path: milvus-lite:///abs/path/videos.db#collection")
        path = Path(body).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        if path.suffix != ".db":
            raise VideoIndexError(f"Milvus Lite path {str(path)!r} must end in .db (e.g. videos.db)")
        return MilvusLocation("milvus-lite", str(path), collection)
    host, _, db_name = body.partition("/")
    db_name = db_name.strip("/")
    if not host:
        raise VideoIndexError(f"{scheme}:// needs a host: {scheme}://host:19530#collection")
    if ":" not in host.rsplit("]", 1)[-1]:
        host += ":443" if scheme == "milvus+https" else ":19530"
    if db_name and not _COLLECTION_RE.match(db_name):
        raise VideoIndexError(f"Milvus database name {db_name!r}: use letters, digits and underscores")
    http = "https" if scheme == "milvus+https" else "http"
    return MilvusLocation("milvus+https" if http == "https" else "milvus", f"{http}://{host}", collection, db_name)


# --------------------------------------------------------------------------------------------------- Milvus Lite
class _LiteServers:
    """Counts this process's open handles on each Milvus Lite folder, and stops its in-process server at zero.

    pymilvus starts one in-process Milvus Lite server per ``.db`` path and keeps it (and the folder's lock)
    until the process exits; releasing it when the last :class:`MilvusIndex` on it closes lets another
    process open the folder after this one is done with it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}

    def acquire(self, path: str) -> None:
        with self._lock:
            self._count[path] = self._count.get(path, 0) + 1

    def release(self, path: str) -> None:
        with self._lock:
            left = self._count.get(path, 0) - 1
            if left > 0:
                self._count[path] = left
                return
            self._count.pop(path, None)
        try:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(path)
        except ImportError:  # pragma: no cover - pymilvus without milvus-lite cannot have opened it
            pass


_LITE = _LiteServers()


def _lite_held_elsewhere(path: str) -> bool:
    """Whether another process holds the Milvus Lite folder's lock (Milvus Lite is single-process)."""
    try:
        from milvus_lite import DataDirLockedError, MilvusLite
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return False
    if not Path(path).exists() or os.path.abspath(path) in getattr(server_manager_instance, "_servers", {}):
        return False  # new, or already served by this process
    try:
        MilvusLite(path).close()
    except DataDirLockedError:
        return True
    except Exception:  # noqa: BLE001 - any other problem is reported by the real open
        return False
    return False


# --------------------------------------------------------------------------------------------------- the index
class MilvusIndex(IndexBackend):
    """A Milvus collection of video embeddings with string ids and per-video metadata.

    ``index_type`` / ``index_params`` are Milvus's (``HNSW`` with ``M=32, efConstruction=80`` by default,
    like the faiss ``hnsw`` kind; ``IVF_FLAT``, ``IVF_PQ``, ``DISKANN``... on a server); ``ef_search`` /
    ``nprobe`` are the search-time knobs; a filter selecting at most ``exact_below`` rows is searched exactly
    over them (a filtered graph walk misses selected rows when they are few). ``timeout`` bounds every call, in seconds (default 60; 600 for
    Milvus Lite, which seals segments and builds their graphs in the calling process).
    """

    def __init__(
        self,
        location: str | MilvusLocation,
        dim: int | None = None,
        *,
        token: str | None = None,
        index_type: str = "HNSW",
        index_params: Mapping[str, Any] | None = None,
        ef_search: int = 128,
        nprobe: int = 32,
        timeout: float | None = None,
        create: bool = True,
        exact_below: int = DEFAULT_EXACT_BELOW,
    ) -> None:
        self.location = location if isinstance(location, MilvusLocation) else parse_location(location)
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) <= 0):
            raise VideoIndexError(f"dim must be a positive integer, got {dim!r}")
        self.index_type = index_type.upper()
        self.index_params = dict(index_params or ({"M": 32, "efConstruction": 80} if self.index_type == "HNSW" else {}))
        self.ef_search = int(ef_search)
        self.nprobe = int(nprobe)
        self.exact_below = int(exact_below)  # a filter selecting at most this many rows is searched exactly
        # Milvus Lite does its work (sealing, index builds) in the caller's process, in Python: give it longer
        self.timeout = float(timeout) if timeout is not None else (600.0 if self.location.lite else 60.0)
        self._lock = ReadWriteLock()
        self._closed = False
        self._client = self._connect(token if token is not None else os.environ.get("MILVUS_TOKEN"))
        try:
            self.dim = self._open_collection(None if dim is None else int(dim), create)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- connection
    def _connect(self, token: str | None) -> Any:
        pymilvus = _pymilvus()
        loc = self.location
        if loc.lite:
            Path(loc.uri).parent.mkdir(parents=True, exist_ok=True)
            if _lite_held_elsewhere(loc.uri):
                raise IndexConnectionError(
                    f"{loc}: the Milvus Lite folder is open in another process (Milvus Lite is single-process; "
                    "serve several processes from a Milvus server: milvus://host:19530#collection)"
                )
            _LITE.acquire(loc.uri)
        kwargs: dict[str, Any] = {"uri": loc.uri, "timeout": self.timeout}
        if token:
            kwargs["token"] = token
        if loc.db_name:
            kwargs["db_name"] = loc.db_name
        try:
            return pymilvus.MilvusClient(**kwargs)
        except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException, grpc and OS errors
            if loc.lite:
                _LITE.release(loc.uri)
            raise IndexConnectionError(
                f"cannot reach Milvus at {loc}: {_reason(exc)}"
                + ("" if loc.lite else "; is the server running and the address right?")
            ) from None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One pymilvus call, its failure turned into a one-line mtvr error naming the collection."""
        if self._closed:
            raise VideoIndexError(f"{self.location}: the index is closed")
        try:
            return fn(*args, timeout=self.timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001
            reason = _reason(exc)
            unavailable = getattr(exc, "code", None) == 2 or "unavailable" in reason.lower()
            cls = IndexConnectionError if unavailable else VideoIndexError
            raise cls(f"Milvus {what} on {self.location} failed: {reason}") from None

    def _open_collection(self, dim: int | None, create: bool) -> int:
        name = self.location.collection
        if self._call("has_collection", self._client.has_collection, name):
            return self._open_existing(dim)
        if not create:
            raise IndexLoadError(f"{self.location}: no collection {name!r}")
        if dim is None:
            raise VideoIndexError(f"{self.location}: collection {name!r} does not exist; pass dim= to create it")
        try:
            self._create(dim)
        except VideoIndexError:
            # Another process may have created the same collection between our check and our create (Milvus
            # answers "already exists" or, on Milvus Lite, "[Errno 17] File exists"): then open theirs, which is
            # what this call would have made. Anything else is our own failure and is raised as it was.
            if not self._wait_for_collection(name):
                raise
            return self._open_existing(dim)
        return dim

    def _wait_for_collection(self, name: str, seconds: float = 10.0) -> bool:
        """Whether ``name`` exists (a concurrent creator's collection), waiting up to ``seconds`` for its index."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self._client.has_collection(name, timeout=self.timeout) and self._client.describe_index(
                    name, VECTOR_FIELD, timeout=self.timeout
                ):
                    return True
            except Exception:  # noqa: BLE001 - the creator may still be building it; retried until the deadline
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def _open_existing(self, dim: int | None) -> int:
        """Open the existing collection, checking it is an mtvr index of ``dim``-d vectors; returns its dim."""
        name = self.location.collection
        c = self._client
        info = self._call("describe_collection", c.describe_collection, name)
        fields = {f["name"]: f for f in info.get("fields", [])}
        missing = [f for f in (ID_FIELD, VECTOR_FIELD, JSON_FIELD, *STR_COLUMNS, *NUM_COLUMNS) if f not in fields]
        if missing:
            raise IndexLoadError(
                f"{self.location}: collection {name!r} is not an mtvr index (no field {missing[0]!r}); "
                "name another collection"
            )
        have = int(fields[VECTOR_FIELD].get("params", {}).get("dim", 0))
        if dim is not None and have != dim:
            raise VideoIndexError(f"{self.location}: the collection holds {have}-d vectors, not {dim}-d")
        described = self._call("describe_index", c.describe_index, name, VECTOR_FIELD) or {}
        self.index_type = str(described.get("index_type") or self.index_type).upper()
        self._call("load_collection", c.load_collection, name)
        return have

    def _create(self, dim: int) -> None:
        pymilvus = _pymilvus()
        DataType = pymilvus.DataType
        schema = pymilvus.MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description="mtvr video index"
        )
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        for key, length in STR_COLUMNS.items():
            schema.add_field(key, DataType.VARCHAR, max_length=length, nullable=True)
        for key in NUM_COLUMNS:
            schema.add_field(key, DataType.DOUBLE, nullable=True)
        schema.add_field(JSON_FIELD, DataType.JSON)
        params = self._client.prepare_index_params()
        params.add_index(VECTOR_FIELD, index_type=self.index_type, metric_type="IP", params=self.index_params)
        self._call(
            "create_collection",
            self._client.create_collection,
            self.location.collection,
            schema=schema,
            index_params=params,
            consistency_level="Strong",
        )

    # ----------------------------------------------------------------- contents
    def __len__(self) -> int:
        with self._lock.read():
            return self._count("")

    def _count(self, expr: str) -> int:
        rows = self._call(
            "count", self._client.query, self.location.collection, filter=expr, output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"]) if rows else 0

    @property
    def count(self) -> int:
        return len(self)

    def __contains__(self, video_id: object) -> bool:
        if not isinstance(video_id, str) or not video_id:
            return False
        with self._lock.read():
            return bool(self._existing([video_id]))

    @property
    def ids(self) -> list[str]:
        """Every video id in the collection (read in pages)."""
        with self._lock.read():
            return [row[ID_FIELD] for row in self._scan("", [ID_FIELD])]

    def _scan(self, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr``: one query on Milvus Lite, pages of a query iterator on a server.

        (Milvus Lite's query iterator does not stop after the last page, and its queries are not ordered by
        key; a local collection is read in one call instead.)
        """
        if self.location.lite:
            yield from self._call(
                "query",
                self._client.query,
                self.location.collection,
                filter=expr or f'{ID_FIELD} != ""',
                output_fields=fields,
            )
            return
        it = self._call(
            "query_iterator",
            self._client.query_iterator,
            self.location.collection,
            batch_size=10000,
            filter=expr,
            output_fields=fields,
        )
        try:
            while True:
                page = self._call("query_iterator", lambda timeout: it.next())
                if not page:
                    return
                yield from page
        finally:
            it.close()

    def metadata(self, video_id: str) -> dict[str, Any]:
        """A copy of one video's metadata (``{}`` when it has none); unknown ids raise :class:`VideoIndexError`."""
        check_video_ids([video_id])
        with self._lock.read():
            rows = self._rows([video_id], _OUTPUT)
        if not rows:
            raise VideoIndexError(f"video id {video_id!r} is not in {self.location}")
        return _metadata_of(rows[0])

    def metadata_items(self) -> list[tuple[str, dict[str, Any]]]:
        """``(video id, metadata)`` for every video that has metadata, read in one scan."""
        with self._lock.read():
            rows = list(self._scan("", [ID_FIELD, *_OUTPUT]))
        return [(row[ID_FIELD], meta) for row in rows if (meta := _metadata_of(row))]

    def _rows(self, video_ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(video_ids), LOOKUP_CHUNK):
            chunk = video_ids[start : start + LOOKUP_CHUNK]
            out += self._call(
                "query",
                self._client.query,
                self.location.collection,
                filter=ids_expression(chunk),
                output_fields=fields,
            )
        return out

    def _existing(self, video_ids: Sequence[str]) -> list[str]:
        return [row[ID_FIELD] for row in self._rows(video_ids, [ID_FIELD])]

    def reconstruct(self, video_id: str) -> np.ndarray:
        """The stored vector of one video."""
        with self._lock.read():
            rows = self._rows([video_id], [VECTOR_FIELD])
        if not rows:
            raise VideoIndexError(f"video id {video_id!r} is not in {self.location}")
        return np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32)

    # ----------------------------------------------------------------- mutation
    def add(
        self,
        video_ids: Sequence[str],
        embeddings: np.ndarray,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        replace: bool = False,
    ) -> None:
        """Add ``embeddings [n, dim]`` under ``video_ids``, all or nothing (see the module docstring).

        Ids already in the collection raise :class:`VideoIndexError` unless ``replace=True``.
        """
        video_ids = check_video_ids(video_ids)
        metadata = check_metadata(metadata, video_ids)
        x = check_embeddings(video_ids, embeddings, self.dim)
        long = next((v for v in video_ids if len(v.encode("utf-8")) > ID_MAX_BYTES), None)
        if long is not None:
            raise VideoIndexError(f"video id {long[:60]!r}... is longer than {ID_MAX_BYTES} bytes (Milvus key limit)")
        if not video_ids:
            return
        rows = [_row(v, vec, meta) for v, vec, meta in zip(video_ids, x, metadata or [None] * len(video_ids))]
        per_batch = max(1, BATCH_BYTES // (4 * self.dim + 256))
        with self._lock.write():
            existing = self._existing(video_ids)
            if existing and not replace:
                raise VideoIndexError(
                    f"video id {existing[0]!r} is already in the index "
                    f"({len(existing)} duplicates); pass replace=True to overwrite"
                )
            previous = self._rows(existing, [ID_FIELD, VECTOR_FIELD, *_OUTPUT]) if existing else []
            write = self._client.upsert if existing else self._client.insert
            done = 0
            try:
                for start in range(0, len(rows), per_batch):
                    self._call("insert", write, self.location.collection, rows[start : start + per_batch])
                    done = start + per_batch
            except Exception as exc:
                self._undo_add(video_ids[: done + per_batch], set(existing), previous, exc)
                raise

    def _undo_add(
        self, attempted: list[str], existed: set[str], previous: list[dict[str, Any]], exc: Exception
    ) -> None:
        """Take back a failed add: delete the new rows it wrote, put back the rows it replaced."""
        try:
            new = [v for v in attempted if v not in existed]
            for start in range(0, len(new), LOOKUP_CHUNK):
                self._call(
                    "delete",
                    self._client.delete,
                    self.location.collection,
                    filter=ids_expression(new[start : start + LOOKUP_CHUNK]),
                )
            for start in range(0, len(previous), 1000):
                self._call("upsert", self._client.upsert, self.location.collection, previous[start : start + 1000])
        except Exception as undo:  # noqa: BLE001
            raise VideoIndexError(
                f"{exc}; undoing the partial add also failed ({undo}): {len(attempted)} ids of this call may be "
                f"in {self.location} — remove or re-add them"
            ) from None

    def remove(self, video_ids: Sequence[str]) -> int:
        """Remove videos by id; unknown ids raise :class:`VideoIndexError`. Returns how many were removed."""
        video_ids = check_video_ids(video_ids)
        if len(set(video_ids)) != len(video_ids):
            dup = next(v for v in video_ids if video_ids.count(v) > 1)
            raise VideoIndexError(f"video id {dup!r} appears twice in this remove() call; nothing was removed")
        if not video_ids:
            return 0
        with self._lock.write():
            found = set(self._existing(video_ids))
            unknown = [v for v in video_ids if v not in found]
            if unknown:
                raise VideoIndexError(f"video id {unknown[0]!r} is not in the index ({len(unknown)} unknown ids)")
            self._delete(video_ids)
        return len(video_ids)

    def _delete(self, video_ids: Sequence[str]) -> None:
        for start in range(0, len(video_ids), LOOKUP_CHUNK):
            chunk = video_ids[start : start + LOOKUP_CHUNK]
            self._call("delete", self._client.delete, self.location.collection, filter=ids_expression(chunk))

    def remove_where(self, filter: Any) -> int:
        """Remove every video whose metadata matches ``filter`` (e.g. ``{"file": "a.mp4"}``); how many went.

        The rows are selected by the translated expression and re-checked against the filter's own
        semantics before their ids are deleted, so a looser Milvus comparison can never delete too much.
        """
        wanted = _parse_filter(filter)
        if not wanted:
            raise VideoIndexError("remove_where needs a non-empty filter (to remove everything, drop the collection)")
        try:
            expr = filter_expression(wanted)
        except MatchNothing:
            return 0
        with self._lock.write():
            gone = [
                row[ID_FIELD] for row in self._scan(expr, [ID_FIELD, *_OUTPUT]) if wanted.matches(_metadata_of(row))
            ]
            if gone:
                self._delete(gone)
        return len(gone)

    def remove_file(self, file: str) -> int:
        """Remove every moment of one video file (metadata ``file``); how many were removed."""
        return self.remove_where({"file": file})

    # ----------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int = 10, filter: Any = None) -> list[list[SearchHit]]:
        """The ``k`` best videos for each query row, best first, among those whose metadata matches ``filter``.

        ``k`` larger than the number of (matching) videos returns all of them. Searching an empty
        collection raises :class:`VideoIndexError`, like the faiss index.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise VideoIndexError(f"k must be a positive integer, got {k!r}")
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise VideoIndexError(f"queries have shape {q.shape}; this index expects [n, {self.dim}]")
        wanted = _parse_filter(filter)
        try:
            expr = filter_expression(wanted)
        except MatchNothing:
            return [[] for _ in q]
        k = int(k)
        with self._lock.read():
            if expr and not self.index_type.startswith("FLAT"):
                few = self._few_selected(expr)
                if few is not None:
                    return self._exact_rows(q, k, few, wanted)
            results = [self._search_rows(q, k, expr, wanted, list(range(len(q))))]
            if not any(results[0]) and not expr and self._count("") == 0:
                raise EmptyIndexError("the index is empty: add videos (Retriever.add / add_videos) before searching")
        return results[0]

    def _few_selected(self, expr: str) -> list[dict[str, Any]] | None:
        """The rows (vector and metadata) a filter selects when they are at most ``exact_below``, else ``None``.

        A graph search that skips unselected nodes misses selected ones when they are few (measured on Milvus
        Lite at 100k vectors, ``benchmarks/search_backends.py``: recall@10 0.45 for 100 selected rows, 0.65 for
        1,000), as faiss's does: below the threshold the search is exact over the selected rows, as in the faiss
        backend (:mod:`mtvr.filtered_search`). One query of ids (at most ``exact_below + 1``) decides it.
        """
        probe = self._call(
            "query",
            self._client.query,
            self.location.collection,
            filter=expr,
            output_fields=[ID_FIELD],
            limit=self.exact_below + 1,
        )
        if len(probe) > self.exact_below:
            return None
        return list(self._scan(expr, [ID_FIELD, VECTOR_FIELD, *_OUTPUT])) if probe else []

    def _exact_rows(self, q: np.ndarray, k: int, rows: list[dict[str, Any]], wanted: Any) -> list[list[SearchHit]]:
        """Exact top-``k`` of each query among ``rows`` (whose metadata is re-checked against the filter)."""
        from ..filtered_search import exact_over

        metas = [_metadata_of(row) for row in rows]
        keep = [i for i, meta in enumerate(metas) if wanted.matches(meta)]
        if not keep:
            return [[] for _ in q]
        xb = np.asarray([rows[i][VECTOR_FIELD] for i in keep], dtype=np.float32)
        scores, pos = exact_over(xb, np.asarray(keep, dtype=np.int64), q, k)
        return [
            [SearchHit(str(rows[i][ID_FIELD]), float(s), r + 1, metas[i]) for r, (s, i) in enumerate(zip(srow, prow))]
            for srow, prow in zip(scores.tolist(), pos.tolist())
        ]

    def _search_rows(self, q: np.ndarray, k: int, expr: str, wanted: Any, rows: list[int]) -> list[list[SearchHit]]:
        """Search, re-check the filter on the returned metadata, and fetch deeper for queries left short."""
        out: list[list[SearchHit]] = [[] for _ in rows]
        limit = min(k, MAX_TOPK)
        todo = list(range(len(rows)))
        while todo:
            raw = self._call(
                "search",
                self._client.search,
                self.location.collection,
                data=q[[rows[i] for i in todo]],
                limit=limit,
                filter=expr,
                output_fields=_OUTPUT,
                search_params={"metric_type": "IP", "params": self._search_params(limit)},
            )
            again = []
            for i, found in zip(todo, raw):
                hits = []
                for hit in found:
                    meta = _metadata_of(hit.get("entity", {}))
                    if wanted and not wanted.matches(meta):
                        continue
                    hits.append(SearchHit(str(hit["id"]), float(hit["distance"]), len(hits) + 1, meta))
                    if len(hits) == k:
                        break
                out[i] = hits
                if len(hits) < k and len(found) == limit and limit < MAX_TOPK:
                    again.append(i)  # the re-check dropped rows and more may exist: fetch deeper
            todo, limit = again, min(MAX_TOPK, limit * 4)
        return out

    def _search_params(self, limit: int) -> dict[str, Any]:
        if self.index_type.startswith("HNSW"):
            return {"ef": max(self.ef_search, limit)}
        if self.index_type.startswith("IVF"):
            return {"nprobe": self.nprobe}
        return {}

    # ----------------------------------------------------------------- lifetime
    def flush(self) -> None:
        """Seal what was written and build its index now (Milvus does it in the background otherwise;
        Milvus Lite searches unsealed rows by brute force in Python until then, seconds per query)."""
        with self._lock.read():
            self._call("flush", self._client.flush, self.location.collection)

    def save(self, location: Any = None) -> str:
        """Make every write durable and indexed (a :meth:`flush`): Milvus persists each write by itself.

        ``location`` may only name this index (the same string): a Milvus index is not copied by saving.
        """
        if location is not None and str(parse_location(location)) != str(self.location):
            raise VideoIndexError(
                f"a Milvus index lives in {self.location}; it cannot be saved to {location!s} "
                "(copy a collection with `milvus-lite dump` or a Milvus backup instead)"
            )
        self.flush()
        return str(self.location)

    def close(self) -> None:
        """Close the connection (and stop this process's Milvus Lite server when no other handle uses it)."""
        if self._closed:
            return
        self._closed = True
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not raise
                pass
        if self.location.lite:
            _LITE.release(self.location.uri)

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusIndex({str(self.location)!r}, dim={self.dim}, index_type={self.index_type!r})"


_KINDS = {"flat": "FLAT", "exact": "FLAT", "hnsw": "HNSW", "ivfpq": "IVF_PQ", "sq8": "IVF_SQ8", "hnsw_sq8": "HNSW_SQ"}


def milvus_index_type(kind: str) -> str:
    """A Milvus index type for an mtvr index kind (``hnsw`` -> ``HNSW``, ``ivfpq`` -> ``IVF_PQ``...), or ``kind``
    upper-cased (``diskann`` -> ``DISKANN``)."""
    return _KINDS.get(kind.lower(), kind.upper())


def open_milvus(location: str | os.PathLike, **options: Any) -> MilvusIndex:
    """The opener registered for ``milvus-lite://``, ``milvus://`` and ``milvus+https://`` locations."""
    return MilvusIndex(os.fspath(location), **options)


# --------------------------------------------------------------------------------------------------- rows
def _row(video_id: str, vector: np.ndarray, meta: dict[str, Any] | None) -> dict[str, Any]:
    """One Milvus row: typed metadata in its columns, the rest (and ints of numeric columns) in ``meta``."""
    row: dict[str, Any] = {ID_FIELD: video_id, VECTOR_FIELD: vector}
    rest: dict[str, Any] = {}
    for key in (*STR_COLUMNS, *NUM_COLUMNS):
        row[key] = None
    for key, value in (meta or {}).items():
        if in_column(key, value):
            row[key] = float(value) if key in NUM_COLUMNS else value
            if not (key in NUM_COLUMNS and isinstance(value, int)):
                continue  # an int is kept in meta too, so that it comes back as an int (the column holds a double)
        rest[key] = value
    row[JSON_FIELD] = rest
    return row


def _metadata_of(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a returned row, rebuilt as it was added."""
    meta = dict(entity.get(JSON_FIELD) or {})
    for key in (*STR_COLUMNS, *NUM_COLUMNS):
        value = entity.get(key)
        if value is not None and key not in meta:
            meta[key] = value
    return meta


def _parse_filter(filter: Any) -> Any:
    from ..filters import parse_filter

    return parse_filter(filter)


def _reason(exc: BaseException) -> str:
    """The first line of a pymilvus/gRPC error's message, without the exception's class wrapping."""
    details = getattr(exc, "details", None)
    if callable(details):  # a gRPC error: its status code and details say what happened
        code = getattr(exc, "code", None)
        name = getattr(code(), "name", "") if callable(code) else ""
        text = f"{name}: {details()}" if name else str(details())
    else:
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return (str(text).strip().splitlines() or [type(exc).__name__])[0][:300]


__all__ = ["SCHEMES", "MilvusIndex", "MilvusLocation", "open_milvus", "parse_location"]
