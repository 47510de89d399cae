"""tclr_zoo.hub.client against a real Hub endpoint on loopback (olah serving local git repos, see hub_server).

Uploads (``push_folder``) are tested in test_push.py, against hub_upload_stub: olah does not accept them.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest
import torch
from hub_server import free_port
from safetensors.torch import save_file

from tclr_zoo.hub.client import HubError, download, fetch_snapshot, hub_settings


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch):
    """A private cache per test; online unless a test says otherwise; no token sent anywhere."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub read HF_HUB_OFFLINE at import: make sure an offline shell does not leak in
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hf-home" / "hub"


@pytest.fixture
def hub(local_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    return local_hub


def new_repo() -> str:
    return f"tclr-test/m-{uuid.uuid4().hex[:10]}"


def model_dir(root: Path, seed: int, *, onnx: bool = False) -> Path:
    folder = root / f"model-{seed}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"library": "tclr_zoo", "seed": seed}))
    generator = torch.Generator().manual_seed(seed)
    save_file({"w": torch.randn(16, 16, generator=generator)}, str(folder / "model.safetensors"))
    (folder / "README.md").write_text(f"---\nlibrary_name: tclr_zoo\n---\n# model {seed}\n")
    if onnx:
        (folder / "onnx").mkdir()
        (folder / "onnx" / "model.onnx").write_bytes(b"not really onnx " * 20)
    return folder


def same_files(folder: Path, src: Path, names=("config.json", "model.safetensors", "README.md")) -> bool:
    return all((folder / n).read_bytes() == (src / n).read_bytes() for n in names)


def test_settings_are_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1/")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_settings()["endpoint"] == "http://127.0.0.1:1"
    assert hub_settings()["offline"] is True
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_settings()["cache_dir"] == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub_settings()["offline"] is False
    assert hub_settings()["endpoint"] == "https://huggingface.co"


def test_fetch_returns_published_files(hub, tmp_path, hub_env):
    src = model_dir(tmp_path, 1, onnx=True)
    repo = new_repo()
    sha = hub.publish(src, repo)
    folder, commit = fetch_snapshot(repo)
    assert commit == sha
    assert folder.is_relative_to(hub_env) and folder.name == sha
    assert same_files(folder, src)
    assert not (folder / "onnx").exists()  # loading a model does not need the ONNX graphs
    # the hf-hub: prefix is accepted, and `download` pre-seeds the ONNX graphs too
    folder2, commit2 = download(f"hf-hub:{repo}", progress=False)
    assert (folder2, commit2) == (folder, sha)
    assert (folder / "onnx" / "model.onnx").read_bytes() == (src / "onnx" / "model.onnx").read_bytes()


def test_pinned_commit_keeps_its_files(hub, tmp_path):
    repo = new_repo()
    src_a, src_b = model_dir(tmp_path, 1), model_dir(tmp_path, 2)
    sha_a = hub.publish(src_a, repo, message="A")
    sha_b = hub.publish(src_b, repo, message="B")
    assert sha_a != sha_b
    folder_a, commit_a = fetch_snapshot(repo, revision=sha_a)
    folder_b, commit_b = fetch_snapshot(repo)
    assert (commit_a, commit_b) == (sha_a, sha_b)
    assert same_files(folder_a, src_a) and same_files(folder_b, src_b)
    assert (folder_a / "model.safetensors").read_bytes() != (folder_b / "model.safetensors").read_bytes()
    assert fetch_snapshot(repo, revision="main")[1] == sha_b
    # a branch other than main
    src_c = model_dir(tmp_path, 3)
    sha_c = hub.publish(src_c, repo, branch="exp", message="C")
    folder_c, commit_c = fetch_snapshot(repo, revision="exp")
    assert commit_c == sha_c and same_files(folder_c, src_c)
    assert fetch_snapshot(repo)[1] == sha_b


def test_offline_reuses_the_cache(hub, tmp_path, monkeypatch):
    repo = new_repo()
    src = model_dir(tmp_path, 1)
    sha = hub.publish(src, repo)
    folder, _ = fetch_snapshot(repo)
    pinned, _ = fetch_snapshot(repo, revision=sha)

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    # network down, offline mode not set: the cached snapshot of the same revision is used
    assert fetch_snapshot(repo) == (folder, sha)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_snapshot(repo) == (folder, sha)
    assert fetch_snapshot(repo, revision=sha) == (pinned, sha)
    assert same_files(folder, src)

    missing = new_repo()
    with pytest.raises(HubError) as err:
        fetch_snapshot(missing)
    message = str(err.value)
    assert missing in message and f"tclr-zoo download hf-hub:{missing}" in message
    assert "HF_HUB_OFFLINE" in message and "HF_HOME" in message
    with pytest.raises(HubError, match="tclr-zoo download"):
        fetch_snapshot(repo, revision="never-fetched")


def test_missing_repo(hub):
    repo = new_repo()
    with pytest.raises(HubError) as err:
        fetch_snapshot(repo)
    assert f"repository {repo} not found on {hub.endpoint}" in str(err.value)
    with pytest.raises(HubError, match=f"repository {repo} not found"):
        fetch_snapshot(repo, revision="0123456789abcdef0123456789abcdef01234567")


def test_wrong_revision(hub, tmp_path):
    repo = new_repo()
    hub.publish(model_dir(tmp_path, 1), repo)
    with pytest.raises(HubError) as err:
        fetch_snapshot(repo, revision="no-such-branch")
    assert f"{repo}: revision 'no-such-branch' not found" in str(err.value)
    assert "main" in str(err.value)  # lists the branches there are
    bad_sha = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(HubError, match=f"revision '{bad_sha}' not found"):
        fetch_snapshot(repo, revision=bad_sha)


def test_pickle_only_repo_is_refused_and_not_downloaded(hub, tmp_path, hub_env):
    src = tmp_path / "pickled"
    src.mkdir()
    (src / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(16, 16)}, src / "pytorch_model.bin")
    repo = new_repo()
    hub.publish(src, repo)
    with pytest.raises(HubError) as err:
        fetch_snapshot(repo)
    assert "model.safetensors" in str(err.value) and "pytorch_model.bin" in str(err.value)
    # even when asked for everything, pickles are never fetched
    with pytest.raises(HubError):
        fetch_snapshot(repo, allow_patterns=["*"])
    fetched = [p.name for p in hub_env.rglob("*") if p.is_file()]
    assert "config.json" in fetched
    assert not any(name.endswith(".bin") for name in fetched)
    blobs = list(hub_env.rglob("blobs/*"))
    assert len(blobs) == 1 and blobs[0].read_bytes() == b"{}"


def test_server_gone_fails_fast(monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    repo = new_repo()
    start = time.monotonic()
    with pytest.raises(HubError) as err:
        fetch_snapshot(repo)
    assert time.monotonic() - start < 5
    assert dead in str(err.value) and repo in str(err.value)


class _CuttingProxy:
    """Relays to olah, but sends only half of the weights file and then disappears (server gone)."""

    def __init__(self, upstream_port: int):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                cut = self.command == "GET" and "/resolve/" in self.path and "model.safetensors" in self.path
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else len(data)
                self.send_header("Content-Length", str(length or 0))
                self.send_header("Connection", "close")
                self.end_headers()
                if cut:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    proxy.cut = True
                    threading.Thread(target=proxy.close, daemon=True).start()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = _relay

        self.cut = self.closed = False
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.server.shutdown()
        self.server.server_close()  # nothing listens any more: reconnections are refused


def test_server_gone_mid_download_leaves_nothing_that_looks_complete(local_hub, tmp_path, monkeypatch,
                                                                     hub_env):
    repo = new_repo()
    local_hub.publish(model_dir(tmp_path, 1), repo)
    proxy = _CuttingProxy(local_hub.port)
    endpoint = f"http://127.0.0.1:{proxy.port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    start = time.monotonic()
    try:
        with pytest.raises(HubError) as err:
            fetch_snapshot(repo)  # huggingface_hub retries the cut download 5 times, 1 s apart
    finally:
        proxy.close()
    assert proxy.cut
    assert time.monotonic() - start < 20
    assert endpoint in str(err.value)
    assert list(hub_env.rglob("snapshots/*/model.safetensors")) == []
    # what is left of the weights is at most a blobs/*.incomplete file, never a blob that looks complete
    sources = {p.read_bytes() for p in (tmp_path / "model-1").iterdir()}
    for blob in hub_env.rglob("blobs/*"):
        assert blob.suffix == ".incomplete" or blob.read_bytes() in sources, blob
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="incomplete|not in the local cache"):
        fetch_snapshot(repo)
    # once the server is back, the download completes
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    folder, _ = fetch_snapshot(repo)
    assert same_files(folder, tmp_path / "model-1")

