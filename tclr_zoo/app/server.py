"""The HTTP layer of the app (FastAPI, served by uvicorn): routes, the upload limit, the bounded work
queue and JSON errors. What the routes answer is decided in :mod:`.service`.

Safe by default:

* **Uploads** are multipart/form-data (field ``video``), refused with 413 beyond ``max_upload_bytes``:
  at once when the declared length says so, else as soon as the stream passes it. Each is written to
  its own temporary folder, decoded with the hardened decoder and removed afterwards.
* **A bounded work queue**: at most ``queue`` uploads are being received, embedded or waiting for the
  model at once; the next one gets 503 at once (before its body is read), so a burst cannot fill the
  disk or pile up threads. The model itself runs one request at a time, in a worker thread, so the
  server keeps answering (pages, media, strips) meanwhile.
* **Files** are served by row number only (the serving rule of :mod:`.service`), with HTTP Range
  support so the browser can seek in a video.
* **Errors** are JSON ``{"error": "one line"}``: a video that cannot be decoded gives the decoder's
  reason with the client's file name; an unexpected error gives a generic line (the traceback goes to
  the server's log, never to the page).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .service import MAX_ITEMS, MAX_K, AppError, SearchService, display_name, upload_suffix

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 200.0
DEFAULT_QUEUE = 4
UPLOAD_FIELD = "video"
#: Bytes a multipart body may hold beyond the file (boundaries, part headers).
MULTIPART_SLACK = 64 * 1024
#: Connections uvicorn serves at once (pages, media, strips, uploads); more get 503 from uvicorn.
MAX_CONNECTIONS = 64
INTERNAL_ERROR = "internal error: the server could not answer this request (details are in the server's log)"


class WorkQueue:
    """At most ``limit`` requests doing model work or waiting for it; :meth:`slot` refuses the next one.

    Used from the event loop only (one thread), so the counter needs no lock.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the queue must hold at least 1 request, got {limit}")
        self.limit = limit
        self.busy = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.busy >= self.limit:
            raise AppError(f"busy: {self.busy} videos are being embedded or waiting; try again in a moment", 503)
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1


def _too_large(limit: int) -> AppError:
    return AppError(f"the upload is larger than this app's limit of {limit / 2**20:g} MB "
                    "(tclr-zoo app --max-upload-mb)", 413)


def _limited(receive: Callable[[], Awaitable[dict]], limit: int) -> Callable[[], Awaitable[dict]]:
    """``receive`` that raises 413 once the request body passes ``limit`` bytes (a body sent without
    a length, or longer than it said)."""
    seen = 0

    async def counted() -> dict:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _too_large(limit - MULTIPART_SLACK)
        return message

    return counted


async def save_upload(request: Request, limit: int, folder: Path) -> tuple[Path, str]:
    """Write the request's ``video`` file into ``folder``; returns its path and the client's name for it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise _too_large(limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise AppError(f"send the video as multipart/form-data in the field {UPLOAD_FIELD!r} "
                       f"(curl -F {UPLOAD_FIELD}=@clip.mp4 URL)", 415)
    try:
        form = await Request(request.scope, _limited(request.receive, limit + MULTIPART_SLACK)).form(
            max_files=1, max_fields=4)
    except ClientDisconnect:  # the client went away mid-upload: nobody to answer, nothing to log
        raise AppError("the upload was interrupted", 400) from None
    try:
        upload = form.get(UPLOAD_FIELD)
        if upload is None or isinstance(upload, str):
            raise AppError(f"no video in the request: send the file in the multipart field {UPLOAD_FIELD!r}")
        name = display_name(upload.filename)
        target = folder / f"upload{upload_suffix(name)}"
        with target.open("wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out, 1 << 20)
        if target.stat().st_size > limit:
            raise _too_large(limit)
        return target, name
    finally:
        await form.close()


@asynccontextmanager
async def upload_folder() -> AsyncIterator[Path]:
    """A private temporary folder for one upload, removed with whatever is in it."""
    folder = Path(tempfile.mkdtemp(prefix="tclr-zoo-app-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped, so that a file name that is not valid UTF-8 (which
    Python holds with surrogate escapes) is still sent, instead of failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str) -> JSONResponse:
    """Every error the app sends: JSON with one line."""
    return AsciiJSONResponse({"error": " ".join(str(message).split())}, status_code=status)


class CatchUnexpected:
    """ASGI middleware: an exception no handler took becomes :data:`INTERNAL_ERROR` (500) and one log
    record with the traceback -- never a traceback in the response, never a dead server."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:  # else the response is cut short; the client sees a broken transfer
                await error_response(500, INTERNAL_ERROR)(scope, receive, send)


def _validation_message(err: RequestValidationError) -> str:
    first = err.errors()[0] if err.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    return f"{where}: {first.get('msg', 'invalid value')}"


def _add_error_handlers(app: FastAPI) -> None:
    async def app_error(request: Request, err: AppError) -> JSONResponse:
        if err.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, err.message)
        return error_response(err.status, err.message)

    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, f"{err.detail}: {request.method} {request.url.path}")

    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(err))

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def page_html() -> str:
    """The one page (``page.html``, shipped inside the package)."""
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def create_app(service: SearchService, *, max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20),
               queue: int = DEFAULT_QUEUE) -> FastAPI:
    """The FastAPI app over ``service`` (see the module docstring for the limits)."""
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be >= 1, got {max_upload_bytes}")
    app = FastAPI(title="tclr-zoo", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=AsciiJSONResponse)
    app.state.service, app.state.work = service, WorkQueue(queue)
    app.state.max_upload_bytes = max_upload_bytes
    _add_error_handlers(app)
    app.add_middleware(CatchUnexpected)
    _add_page_routes(app)
    _add_search_routes(app)
    _add_file_routes(app)
    return app


def _add_page_routes(app: FastAPI) -> None:
    service: SearchService = app.state.service
    html = page_html()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/api/about")
    async def about() -> dict[str, Any]:
        facts = await run_in_threadpool(service.about)
        facts["limits"] = {"max_upload_bytes": app.state.max_upload_bytes, "queue": app.state.work.limit,
                           "k": service.k, "max_k": MAX_K}
        return facts

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "busy": app.state.work.busy, "queue": app.state.work.limit}

    @app.get("/api/items")
    async def items(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=MAX_ITEMS),
                    q: str = Query("", max_length=200)) -> dict[str, Any]:
        return await run_in_threadpool(lambda: service.items(offset=offset, limit=limit, contains=q))


def _add_search_routes(app: FastAPI) -> None:
    service: SearchService = app.state.service

    async def with_upload(request: Request, work: Callable[[Path, str], dict[str, Any]]) -> dict[str, Any]:
        async with app.state.work.slot(), upload_folder() as folder:
            path, name = await save_upload(request, app.state.max_upload_bytes, folder)
            return await run_in_threadpool(work, path, name)

    @app.post("/api/search")
    async def search_upload(request: Request, k: int | None = Query(None, ge=1, le=MAX_K)) -> dict[str, Any]:
        return await with_upload(request, lambda path, name: service.search_video(path, name=name, k=k))

    @app.post("/api/classify")
    async def classify_upload(request: Request) -> dict[str, Any]:
        return await with_upload(request, lambda path, name: service.classify_video(path, name=name))

    @app.get("/api/rows/{row}/neighbours")
    async def search_row(row: int, k: int | None = Query(None, ge=1, le=MAX_K)) -> dict[str, Any]:
        return await run_in_threadpool(lambda: service.search_row(row, k=k))


def _add_file_routes(app: FastAPI) -> None:
    service: SearchService = app.state.service

    @app.get("/media/{row}")
    async def media(row: int) -> FileResponse:
        file = service.media(row)  # the serving rule: the indexed file of this row, nothing else
        return FileResponse(file.path, media_type=file.media_type, headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/strip/{row}.png")
    async def strip(row: int) -> Response:
        png = await run_in_threadpool(service.strip_png, row)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), bound here so that a taken port
    is an ``OSError`` the command can report in one line."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_server(app: FastAPI, *, log_level: str = "info"):
    """A uvicorn server for ``app`` (run it with ``.run(sockets=[listen_socket(...)])``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, limit_concurrency=MAX_CONNECTIONS,
                            timeout_keep_alive=5, server_header=False)
    return uvicorn.Server(config)


__all__ = ["AsciiJSONResponse", "CatchUnexpected", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_QUEUE", "INTERNAL_ERROR", "UPLOAD_FIELD", "WorkQueue",
           "create_app", "error_response", "listen_socket", "page_html", "save_upload", "upload_folder",
           "uvicorn_server"]
