"""The search service: JSON API, thumbnails, video files with range requests, and the web page.

Endpoints (OpenAPI at ``/docs``):

* ``GET /search?q=...&k=10[&filter=...&group_by=file&merge=true]`` and ``POST /search`` (``{"queries": [...],
  "k": 10, "filter": {...}, "group_by": "file", "merge": false}``; filters: :mod:`mtvr.filters`, run inside
  the index search; hits are moments, no two of a file overlapping) → hits with video id, ``start``/``end``,
  score, rank, metadata (segment start/end, title, file), thumbnail and video URLs;
* ``GET /videos/{id}/thumbnail`` (a JPEG keyframe from the middle of the clip's segment, cached) and
  ``GET /videos/{id}`` (the video file; HTTP range requests, so a browser can seek to the segment);
* ``GET /healthz`` (the process answers), ``GET /readyz`` (a model and a non-empty index are loaded);
* ``GET /``: the web page (one search box, a grid of results, click to play the segment).

Safety: bad requests get a 4xx JSON error (``{"error": ...}``), never a 500; queries, ``k`` and request
bodies are bounded; video ids are looked up in a table built at start-up from ``videos_dir``, never
joined into a path; an optional bearer token guards every endpoint but the health checks (compared in
constant time, never logged); CORS is off unless origins are given.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time

import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import EmptyIndexError, MtvrError, OptionError, VideoSourceError
from ..retriever import Retriever, validate_queries
from .batching import QueryBatcher, ServerBusy

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")


@dataclass
class ServeSettings:
    """Limits and options of the service."""

    max_k: int = 100
    max_query_chars: int = 1000
    max_queries: int = 32
    max_body_bytes: int = 64 * 1024
    thumbnail_cache: int = 512
    thumbnail_size: int = 320
    token: str | None = field(default=None, repr=False)
    cors_origins: list[str] = field(default_factory=list)
    max_batch: int = 16  # queries encoded together by the encoder thread (mtvr.serve.batching)
    batch_wait_ms: float = 0.0  # wait this long for more queries before encoding (0: take what is queued)
    max_queue: int = 256  # queries waiting before new requests get 503 + Retry-After
    encoder_workers: int = 2  # encoder threads taking batches from the one queue (mtvr.serve.batching)

    def __post_init__(self) -> None:
        from ..option_values import positive_int

        names = ("max_k", "max_query_chars", "max_queries", "max_body_bytes", "thumbnail_cache", "thumbnail_size")
        for name in (*names, "max_batch", "max_queue", "encoder_workers"):
            setattr(self, name, positive_int(name, getattr(self, name)))
        if not self.batch_wait_ms >= 0:
            raise OptionError(f"batch_wait_ms: {self.batch_wait_ms!r}; expected a number of milliseconds >= 0")
        if self.token is not None and not self.token.strip():
            raise OptionError("token: empty; give a secret or no token")

    @property
    def default_k(self) -> int:
        """``k`` when a request gives none: 10, or ``max_k`` when that is smaller."""
        return min(10, self.max_k)


TOKEN_COOKIE = "mtvr_token"


def read_token_file(path: str | Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped); one clear error for a missing,
    unreadable, folder or empty file."""
    from ..option_values import existing_file

    file = existing_file("--token-file", path)
    try:
        token = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"--token-file {file}: cannot be read ({type(exc).__name__})") from None
    if not token:
        raise OptionError(f"--token-file {file}: is empty")
    return token


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413 without being read whole.

    ``Content-Length`` is checked first; a chunked body (no length) is counted as it arrives and the
    request is cut off at the first chunk past the limit, so memory stays bounded by the limit.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Any) -> None:
        from fastapi.responses import JSONResponse

        response = JSONResponse({"error": f"request body larger than {self.limit} bytes"}, status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}  # stop reading: the app sees a client that left
            return message

        async def guarded_send(message: Any) -> None:
            if state["over"]:
                return  # the 413 below replaces whatever the app answers
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._refuse(send)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def index_videos(videos_dir: str | Path | None) -> dict[str, Path]:
    """``{file name: path, file stem: path}`` for every video under ``videos_dir`` (first one wins)."""
    table: dict[str, Path] = {}
    if videos_dir is None:
        return table
    root = Path(videos_dir)
    if not root.is_dir():
        raise VideoSourceError(f"--videos {root} is not a folder")
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            table.setdefault(path.name, path.resolve())
            table.setdefault(path.stem, path.resolve())
    return table


def create_app(
    retriever: Retriever, videos_dir: str | Path | None = None, settings: ServeSettings | None = None
) -> Any:
    """The FastAPI application serving ``retriever`` (which must hold an index)."""
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .. import __version__

    cfg = settings or ServeSettings()
    files = index_videos(videos_dir)
    thumbs: OrderedDict[str, bytes] = OrderedDict()
    thumbs_lock = threading.Lock()
    batcher = QueryBatcher(
        retriever.encode_text,
        max_batch=cfg.max_batch,
        max_wait_ms=cfg.batch_wait_ms,
        max_queue=cfg.max_queue,
        workers=cfg.encoder_workers,
    )

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        batcher.close()  # the encoder thread ends with the server

    app = FastAPI(
        lifespan=lifespan,
        title="mtvr search",
        version=__version__,
        description="Multilingual text-to-video search: a query in any language finds the video clip.",
        docs_url=None,  # served below behind the token, like every endpoint but the health checks
        redoc_url=None,
        openapi_url=None,
    )

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.state.batcher = batcher

    @app.exception_handler(ServerBusy)
    async def busy(_: Request, exc: ServerBusy) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": problems or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def authorize(request: Request) -> None:  # async: no thread-pool hop per request
        if cfg.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":  # the page's <img>/<video> cannot send headers: they send the cookie
            given = request.cookies.get(TOKEN_COOKIE, "")
        if not secrets.compare_digest(given.encode(), cfg.token.encode()):
            raise ApiError(401, "missing or wrong bearer token")

    def check_query(q: str) -> str:
        if not q.strip():
            raise ApiError(400, "empty query: give some words to search for")
        if len(q) > cfg.max_query_chars:
            raise ApiError(400, f"query of {len(q)} characters; at most {cfg.max_query_chars}")
        return q

    def hit_json(hit: Any) -> dict:
        meta = dict(hit.metadata)
        return {
            "video_id": hit.video_id,
            "score": round(float(hit.score), 6),
            "rank": hit.rank,
            "start": meta.get("start"),
            "end": meta.get("end"),
            "title": meta.get("title"),
            "metadata": meta,
            "thumbnail_url": f"/videos/{_quote(hit.video_id)}/thumbnail",
            "video_url": f"/videos/{_quote(hit.video_id)}" if _video_file(hit.video_id) else None,
        }

    async def run_search(
        queries: list[str], k: int, filter: Any = None, group_by: str | None = None, merge: bool = False
    ) -> list[list[dict]]:
        """Encode on the encoder thread, batched with concurrent requests; search and build hits there too (the
        index is counted there, once: on a database backend a count is a query, never run on the event loop)."""

        def finish(embeddings: Any) -> list[list[dict]]:
            found = retriever.search_embeddings(embeddings, k, filter, group_by=group_by, merge=merge)
            return [[hit_json(h) for h in hits] for hits in found]

        try:
            return await batcher.run(validate_queries(list(queries)), finish)
        except ServerBusy:
            raise
        except EmptyIndexError:
            raise ApiError(503, "the index is empty") from None
        except (MtvrError, ValueError, TypeError) as exc:
            raise ApiError(400, str(exc)) from None

    def parse_filter_text(text: str | None) -> dict | None:
        """``filter`` of a GET: a JSON object, or ``key=value`` items separated by ``;`` (the page's box)."""
        import json

        from ..filters import filter_from_args, parse_filter

        if text is None or not text.strip():
            return None
        try:
            if text.strip().startswith("{"):
                try:
                    return parse_filter(json.loads(text)).to_dict()
                except json.JSONDecodeError as exc:
                    raise ApiError(400, f"filter is not valid JSON ({exc})") from None
            return filter_from_args([item for item in text.split(";") if item.strip()])
        except MtvrError as exc:
            raise ApiError(400, str(exc)) from None

    def _video_file(video_id: str) -> Path | None:
        if retriever.index is None or video_id not in retriever.index:
            return None
        meta = retriever.index.metadata(video_id)
        name = meta.get("file")
        found = files.get(name) if isinstance(name, str) else None
        found = found or files.get(video_id)
        return found if found is not None and found.is_file() else None  # deleted since start-up: none

    def lookup(video_id: str) -> tuple[Path, dict]:
        if retriever.index is None or video_id not in retriever.index:
            raise ApiError(404, f"unknown video id {video_id!r}")
        path = _video_file(video_id)
        if path is None:
            raise ApiError(404, f"no video file for {video_id!r} (start the server with --videos DIR, holding it)")
        return path, retriever.index.metadata(video_id)

    class SearchRequest(BaseModel):
        queries: list[str] = Field(..., min_length=1, max_length=cfg.max_queries)
        k: int = Field(cfg.default_k, ge=1, le=cfg.max_k)
        filter: dict[str, Any] | None = Field(
            None, description='metadata filter (mtvr.filters): {"file": "a.mp4", "year": {"$gte": 2020}}'
        )
        group_by: Literal["file"] | None = Field(None, description="file: the best moment of each file")
        merge: bool = Field(False, description="merge adjacent windows that score alike into one moment")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        n = 0 if retriever.index is None else len(retriever.index)
        ready = n > 0
        return JSONResponse(
            {"ready": ready, "videos": n, "model": Path(str(retriever.source_folder or "")).name},  # not the path
            status_code=200 if ready else 503,
        )

    @app.get("/search", dependencies=[Depends(authorize)], tags=["search"])
    async def search_get(
        request: Request,
        q: str = Query(..., description="the query, in any language"),
        k: int = Query(cfg.default_k, ge=1, le=cfg.max_k),
        filter: str | None = Query(
            None, description='metadata filter: a JSON object, or key=value items separated by ";" (year>=2020)'
        ),
        group_by: Literal["file"] | None = Query(None, description="file: the best moment of each file"),
        merge: bool = Query(False, description="merge adjacent windows that score alike into one moment"),
    ) -> JSONResponse:
        from urllib.parse import parse_qsl

        try:  # Starlette decodes bad bytes to U+FFFD: tell them from a real U+FFFD in the query
            parse_qsl(request.url.query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise ApiError(400, "the query is not valid UTF-8") from None
        wanted = parse_filter_text(filter)
        hits = (await run_search([check_query(q)], k, wanted, group_by, merge))[0]
        return JSONResponse({"query": q, "filter": wanted, "hits": hits})  # plain JSON: see search_post

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> JSONResponse:
        """Check the bearer token and set it as an HttpOnly, same-site cookie for the page's media."""
        await authorize(request)  # authorize is async: without the await a wrong token got the cookie
        response = JSONResponse({"status": "ok"})
        if cfg.token is not None:
            response.set_cookie(TOKEN_COOKIE, cfg.token, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/openapi.json", dependencies=[Depends(authorize)], include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=[Depends(authorize)], include_in_schema=False)
    def docs() -> HTMLResponse:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="mtvr search")

    @app.post("/search", dependencies=[Depends(authorize)], tags=["search"])
    async def search_post(body: SearchRequest) -> JSONResponse:
        queries = [check_query(q) for q in body.queries]
        hits = await run_search(queries, body.k, body.filter, body.group_by, body.merge)
        # A JSONResponse goes out as it is: FastAPI's jsonable_encoder walk of a returned dict cost 0.26 ms per
        # 10-hit response (10x json.dumps); every value here is JSON already (metadata is checked on add).
        return JSONResponse({"results": [{"query": q, "hits": h} for q, h in zip(queries, hits)]})

    @app.get("/videos/{video_id}/thumbnail", dependencies=[Depends(authorize)], tags=["videos"])
    def thumbnail(video_id: str) -> Response:
        with thumbs_lock:
            if video_id in thumbs:
                thumbs.move_to_end(video_id)
                return Response(thumbs[video_id], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
        path, meta = lookup(video_id)
        bounds = []
        for key in ("start", "end"):
            value = meta.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ApiError(422, f"no thumbnail for {video_id!r}: its metadata {key!r} is {value!r}, not seconds")
            bounds.append(value)
        try:
            data = _keyframe_jpeg(path, bounds[0], bounds[1], cfg.thumbnail_size)
        except (MtvrError, OSError) as exc:
            raise ApiError(422, f"no thumbnail for {video_id!r}: {exc}") from None
        with thumbs_lock:
            thumbs[video_id] = data
            while len(thumbs) > cfg.thumbnail_cache:
                thumbs.popitem(last=False)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/videos/{video_id}", dependencies=[Depends(authorize)], tags=["videos"])
    def video(video_id: str) -> FileResponse:
        path, _ = lookup(video_id)
        media = {".webm": "video/webm", ".mkv": "video/x-matroska", ".mov": "video/quicktime"}.get(
            path.suffix.lower(), "video/mp4"
        )
        return FileResponse(path, media_type=media)  # Starlette answers Range requests with 206

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = (resources.files("mtvr.serve") / "page.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{max_k}}", str(cfg.max_k)).replace("{{page_k}}", str(min(12, cfg.max_k))))

    return app


def _quote(video_id: str) -> str:
    from urllib.parse import quote

    return quote(video_id, safe="")


def _keyframe_jpeg(path: Path, start: float | None, end: float | None, size: int) -> bytes:
    """A JPEG of the frame in the middle of ``[start, end]`` (the whole video when no segment)."""
    import io

    from PIL import Image

    from ..video.decode import sample_frames

    frames = sample_frames(path, 1, start=start, end=end, size=None).frames
    image = Image.fromarray(frames[0])
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()
