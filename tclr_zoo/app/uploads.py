"""Receiving one upload: the whole body is read -- bounded by size and by a per-read timeout -- into a
private temporary folder *before* the request asks for a work slot (:mod:`.work_queue`).

Why read first: a slot stands for model work. A client that trickles its body (1 KB every half
second) or stops sending altogether would otherwise hold a slot while the model sits idle, and four
such clients starve everyone (the default queue is 4). Reading first costs a connection and a
temporary file per upload, both bounded: uvicorn serves at most ``MAX_CONNECTIONS`` connections (in
:mod:`.server`), each upload is at most the size limit, and a client that sends nothing for
``read_timeout`` seconds gets 408 and its connection is closed.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from .service import AppError, display_name, upload_suffix

DEFAULT_MAX_UPLOAD_MB = 200.0
#: Seconds an upload may send nothing before it is refused (408). Long enough for a Wi-Fi or mobile
#: link to recover from a stall, short enough that a dead or hostile client frees its connection soon.
DEFAULT_READ_TIMEOUT = 20.0
UPLOAD_FIELD = "video"
#: Bytes a multipart body may hold beyond the file (boundaries, part headers).
MULTIPART_SLACK = 64 * 1024
#: Bytes copied at a time from the parsed upload into its folder.
COPY_BUFFER = 64 * 1024
#: Closes the connection after the response: a client that stopped sending mid-body cannot be trusted
#: to send the rest, and the half-read body makes the connection useless for the next request.
CLOSE = {"Connection": "close"}


def mb_text(mb: float) -> str:
    """A size in MB as the user wrote it (``0.3`` -> ``"0.3"``, ``200.0`` -> ``"200"``): never the MB
    count of the rounded byte limit, which would echo ``0.299999`` for ``--max-upload-mb 0.3``."""
    return f"{mb:.15g}"


@dataclass(frozen=True)
class UploadLimits:
    """How an upload is received: at most ``max_mb`` MB (as the user gave it; ``max_bytes`` is what is
    enforced), and at most ``read_timeout`` seconds without a byte arriving."""

    max_mb: float = DEFAULT_MAX_UPLOAD_MB
    read_timeout: float = DEFAULT_READ_TIMEOUT

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_mb) and self.max_mb * 2**20 >= 1):
            raise ValueError(f"the upload limit must be a finite size of at least 1 byte, got {self.max_mb} MB")
        if not (math.isfinite(self.read_timeout) and self.read_timeout > 0):
            raise ValueError(f"the read timeout must be a finite number of seconds > 0, got {self.read_timeout}")

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 2**20)

    def too_large(self) -> AppError:
        return AppError(f"the upload is larger than this app's limit of {mb_text(self.max_mb)} MB "
                        "(tclr-zoo app --max-upload-mb)", 413)

    def stalled(self) -> AppError:
        return AppError(f"the upload stalled: nothing arrived for {self.read_timeout:g} s, so the app stopped "
                        "waiting for it (tclr-zoo app --read-timeout); send the file again", 408, headers=CLOSE)


def bounded_receive(receive: Callable[[], Awaitable[dict]], limits: UploadLimits) -> Callable[[], Awaitable[dict]]:
    """``receive`` that raises 408 when a read waits ``limits.read_timeout`` seconds, and 413 once the
    body passes the size limit (a body sent without a length, or longer than it said)."""
    seen = 0
    most = limits.max_bytes + MULTIPART_SLACK

    async def bounded() -> dict:
        nonlocal seen
        try:
            message = await asyncio.wait_for(receive(), limits.read_timeout)
        except asyncio.TimeoutError:
            raise limits.stalled() from None
        seen += len(message.get("body", b""))
        if seen > most:
            raise limits.too_large()
        return message

    return bounded


async def save_upload(request: Request, limits: UploadLimits, folder: Path) -> tuple[Path, str]:
    """Read the request's ``video`` file into ``folder`` (see the module docstring for the bounds);
    returns its path and the client's name for it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes + MULTIPART_SLACK:
        raise limits.too_large()
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise AppError(f"send the video as multipart/form-data in the field {UPLOAD_FIELD!r} "
                       f"(curl -F {UPLOAD_FIELD}=@clip.mp4 URL)", 415)
    try:
        form = await Request(request.scope, bounded_receive(request.receive, limits)).form(max_files=1, max_fields=4)
    except ClientDisconnect:  # the client went away mid-upload: nobody to answer, nothing to log
        raise AppError("the upload was interrupted", 400) from None
    try:
        upload = form.get(UPLOAD_FIELD)
        if upload is None or isinstance(upload, str):
            raise AppError(f"no video in the request: send the file in the multipart field {UPLOAD_FIELD!r}")
        name = display_name(upload.filename)
        target = folder / f"upload{upload_suffix(name)}"
        # In 64 KB pieces: a 1 MB buffer per upload, made in whichever pool thread copies it, fragmented
        # glibc's malloc arenas, and the server's RSS grew with every upload.
        with target.open("wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out, COPY_BUFFER)
        if target.stat().st_size > limits.max_bytes:
            raise limits.too_large()
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


__all__ = ["DEFAULT_MAX_UPLOAD_MB", "DEFAULT_READ_TIMEOUT", "MULTIPART_SLACK", "UPLOAD_FIELD", "UploadLimits",
           "bounded_receive", "mb_text", "save_upload", "upload_folder"]
