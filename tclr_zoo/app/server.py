"""The HTTP layer of the app (FastAPI, served by uvicorn): routes, the upload limit, the bounded work
queue and JSON errors. What the routes answer is decided in :mod:`.service`.

Safe by default:

* **Uploads** are multipart/form-data (field ``video``), read whole before they ask for model work
  (:mod:`.uploads`): refused with 413 beyond ``max_upload_mb`` (at once when the declared length says
  so, else as soon as the stream passes it), and with 408, the connection closed, when nothing
  arrives for ``read_timeout`` seconds. Each is written to its own temporary folder, decoded with the
  hardened decoder and removed afterwards.
* **A bounded work queue** (:mod:`.work_queue`): at most ``queue`` uploads are embedding or waiting
  for the model, at most ``queue_waiters`` more wait up to ``queue_wait`` seconds for one of them to
  finish, and the next one gets 503 with ``Retry-After``, so a burst cannot pile up. The model runs
  one request at a time, in its own thread, so the server keeps answering (pages, media, strips, row
  searches) meanwhile.
* **Files** are served by row number only (the serving rule of :mod:`.service`), with HTTP Range
  support so the browser can seek in a video.
* **Errors** are JSON ``{"error": "one line"}``: a video that cannot be decoded gives the decoder's
  reason with the client's file name; an unexpected error gives a generic line (the traceback goes to
  the server's log, never to the page).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .service import MAX_ITEMS, MAX_K, AppError, SearchService
from .uploads import (
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_READ_TIMEOUT,
    UPLOAD_FIELD,
    UploadLimits,
    mb_text,
    save_upload,
    upload_folder,
)
from .work_queue import DEFAULT_QUEUE, DEFAULT_QUEUE_WAIT, DEFAULT_QUEUE_WAITERS, WorkQueue

log = logging.getLogger(__name__)

#: Connections uvicorn serves at once (pages, media, strips, uploads); more get 503 from uvicorn.
MAX_CONNECTIONS = 64
INTERNAL_ERROR = "internal error: the server could not answer this request (details are in the server's log)"


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped, so that a file name that is not valid UTF-8 (which
    Python holds with surrogate escapes) is still sent, instead of failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error the app sends: JSON with one line."""
    return AsciiJSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


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
        return error_response(err.status, err.message, err.headers)

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


def create_app(service: SearchService, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               read_timeout: float = DEFAULT_READ_TIMEOUT, queue: int = DEFAULT_QUEUE,
               queue_waiters: int = DEFAULT_QUEUE_WAITERS, queue_wait: float = DEFAULT_QUEUE_WAIT) -> FastAPI:
    """The FastAPI app over ``service`` (see the module docstring for the limits)."""
    work = WorkQueue(queue, waiters=queue_waiters, wait=queue_wait)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        work.close()

    app = FastAPI(title="tclr-zoo", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=AsciiJSONResponse, lifespan=lifespan)
    app.state.service, app.state.work = service, work
    app.state.uploads = UploadLimits(max_upload_mb, read_timeout)
    _add_error_handlers(app)
    app.add_middleware(CatchUnexpected)
    _add_page_routes(app)
    _add_search_routes(app)
    _add_file_routes(app)
    return app


def limits_facts(app: FastAPI) -> dict[str, Any]:
    """The app's limits as the about panel shows them (the upload limit as the user gave it)."""
    uploads: UploadLimits = app.state.uploads
    work: WorkQueue = app.state.work
    return {"max_upload_mb": uploads.max_mb, "max_upload_text": f"{mb_text(uploads.max_mb)} MB",
            "max_upload_bytes": uploads.max_bytes, "read_timeout_s": uploads.read_timeout, "queue": work.limit,
            "queue_waiters": work.waiters, "queue_wait_s": work.wait}


def _add_page_routes(app: FastAPI) -> None:
    service: SearchService = app.state.service
    html = page_html()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/api/about")
    async def about() -> dict[str, Any]:
        facts = await run_in_threadpool(service.about)
        facts["limits"] = limits_facts(app) | {"k": service.k, "max_k": MAX_K}
        return facts

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **app.state.work.state()}

    @app.get("/api/items")
    async def items(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=MAX_ITEMS),
                    q: str = Query("", max_length=200)) -> dict[str, Any]:
        return await run_in_threadpool(lambda: service.items(offset=offset, limit=limit, contains=q))


def _add_search_routes(app: FastAPI) -> None:
    service: SearchService = app.state.service

    async def with_upload(request: Request, work: Callable[[Path, str], dict[str, Any]]) -> dict[str, Any]:
        """Read the whole upload first, then take a work slot (so a slow client holds none)."""
        async with upload_folder() as folder:
            path, name = await save_upload(request, app.state.uploads, folder)
            return await app.state.work.run(work, path, name)

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


__all__ = ["DEFAULT_MAX_UPLOAD_MB", "DEFAULT_QUEUE", "DEFAULT_QUEUE_WAIT", "DEFAULT_QUEUE_WAITERS",
           "DEFAULT_READ_TIMEOUT", "INTERNAL_ERROR", "UPLOAD_FIELD", "AsciiJSONResponse", "CatchUnexpected",
           "WorkQueue", "create_app", "error_response", "limits_facts", "listen_socket", "page_html", "save_upload",
           "upload_folder", "uvicorn_server"]
