"""Shared parts of the app tests: small real models saved as folders, indexes over real videos, a live
uvicorn server on a free loopback port, and a plain HTTP client (http.client; no extra package).

Built once per test process (``cached``), because every test file of tests/app needs the same ones.
(Not a conftest.py: a second conftest module would shadow the root one that tests import by name.)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Callable

import torch

from tclr_zoo.hub.format import model_config, save_pretrained
from tclr_zoo.models.preprocessing import Preprocessing
from tclr_zoo.models.registry import create_model, resolve_model_args

ARCH = "r3d_10_025"
LABELS = ["jump", "roll", "spin"]
_CACHE: dict[str, Any] = {}


def cached(key: str, make: Callable[[], Any]) -> Any:
    """``make()`` once per test process."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def app_models(tmp_path_factory) -> dict[str, Path]:
    """``{"classifier": folder, "plain": folder}``: the two saved models of the app tests (made once)."""

    def make() -> dict[str, Path]:
        root = tmp_path_factory.mktemp("app-models")
        return {"classifier": save_classifier_model(root / "classifier"), "plain": save_plain_model(root / "plain")}

    return cached("models", make)


def video_index(tmp_path_factory, videos: list[str]) -> Path:
    """An index of ``videos`` (one row per video) by the classifier model (made once)."""
    return cached("video_index", lambda: build_index(app_models(tmp_path_factory)["classifier"], videos,
                                                     tmp_path_factory.mktemp("app-index") / "videos"))


def fast_index(tmp_path_factory, videos: list[str]) -> Path:
    """An index of ``videos`` by :func:`save_fast_model` (made once): for tests that upload hundreds of
    times, where the model's answer matters less than the server around it."""
    def make() -> Path:
        root = tmp_path_factory.mktemp("app-fast")
        return build_index(save_fast_model(root / "model"), videos, root / "index")

    return cached("fast_index", make)


def save_fast_model(folder: Path) -> Path:
    """A random-init r3d_10_025 that reads 8 frames at 16x16: ~10 ms per tiny upload on 2 cores
    (the 112-pixel published preprocessing takes ~0.6 s)."""
    torch.manual_seed(2)
    model = create_model(ARCH).eval()
    preprocessing = Preprocessing(size=16, frames=8)
    config = model_config(model, arch=ARCH, model_args=resolve_model_args(ARCH), preprocessing=preprocessing)
    return save_pretrained(model, folder, config)


def save_classifier_model(folder: Path) -> Path:
    """A random-init r3d_10_025 with a 3-label classifier and the published (BGR) preprocessing."""
    torch.manual_seed(0)
    model = create_model(ARCH, num_classes=len(LABELS)).eval()
    config = model_config(model, arch=ARCH, model_args=resolve_model_args(ARCH),
                          preprocessing=Preprocessing(), labels=LABELS)
    return save_pretrained(model, folder, config)


def save_plain_model(folder: Path) -> Path:
    """A random-init r3d_10_025 without a classifier, saved as the SDK saves one."""
    import tclr_zoo

    torch.manual_seed(1)
    return tclr_zoo.load_model(ARCH, pretrained=False).save_pretrained(folder)


def build_index(model_dir: Path, videos: list[str], out: Path, *, windows: bool = False) -> Path:
    """An index of ``videos`` embedded by the model in ``model_dir`` (which the index then records)."""
    import tclr_zoo

    model = tclr_zoo.load_model(model_dir)
    tclr_zoo.VideoIndex.build(model, videos, progress=False, windows=windows, workers=0).save(out)
    return out


class LiveServer:
    """The app served by a real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app) -> None:
        from tclr_zoo.app.server import listen_socket, uvicorn_server

        self.sock = listen_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn_server(app, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request: ``(status, headers (lower-case names), body)``."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def multipart(filename: str, data: bytes, field: str = "video") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body holding one file, and its headers."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")
    # surrogateescape: a file name that is not valid UTF-8 goes out as its bytes, as a browser sends them
    body = head.encode("utf-8", "surrogateescape") + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(url: str, filename: str, data: bytes, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    """POST a file as the page does; ``(status, JSON body)``."""
    body, headers = multipart(filename, data)
    status, _, payload = request(url, "POST", body, headers, timeout=timeout)
    return status, json.loads(payload)
