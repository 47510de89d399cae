"""The app over HTTP: a real uvicorn server on a free loopback port, real uploads. Upload limit, the
hostile-video corpus (one clear message per file, the server still answering), the bounded queue,
Range requests, the serving rule and JSON errors that never carry a traceback."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the app extra is not installed (pip install 'tclr-zoo[app]')")

from app_helpers import LiveServer, app_models, build_index, multipart, request, upload, video_index
from hostile_videos import build_corpus

from tclr_zoo.app.server import INTERNAL_ERROR, create_app
from tclr_zoo.app.service import SearchService

LIMIT = 256 * 1024
QUEUE = 2
WAITERS = 0  # no waiting line: a full queue answers 503 at once (the line is tested in test_app_load.py)


@pytest.fixture(scope="module")
def videos(tiny_dataset) -> list[str]:
    return sorted(str(p) for p in tiny_dataset.rglob("*.mp4"))


@pytest.fixture(scope="module")
def service(videos, tmp_path_factory) -> SearchService:
    return SearchService.open(video_index(tmp_path_factory, videos))


@pytest.fixture(scope="module")
def live(service):
    server = LiveServer(create_app(service, max_upload_mb=LIMIT / 2**20, queue=QUEUE, queue_waiters=WAITERS))
    yield server
    server.stop()


def _json(body: bytes) -> dict:
    return json.loads(body)


def _assert_one_line_error(payload: dict) -> str:
    assert set(payload) == {"error"}, payload
    message = payload["error"]
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message
    return message


def test_page_about_and_health(live):
    status, headers, body = request(live.url + "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b'<video id="player"' in body
    status, _, body = request(live.url + "/api/about")
    about = _json(body)
    assert status == 200 and about["limits"] == {
        "max_upload_mb": 0.25, "max_upload_text": "0.25 MB", "max_upload_bytes": LIMIT, "read_timeout_s": 20.0,
        "queue": QUEUE, "queue_waiters": WAITERS, "queue_wait_s": 30.0, "k": 10, "max_k": 100}
    assert about["preprocessing"]["channel_order"] == "BGR"
    assert _json(request(live.url + "/api/health")[2]) == {"status": "ok", "busy": 0, "queue": QUEUE, "waiting": 0,
                                                           "waiters": WAITERS, "wait_s": 30.0}


def test_upload_search_and_classify(live, videos):
    data = Path(videos[5]).read_bytes()
    status, result = upload(live.url + "/api/search?k=4", "mine.mp4", data)
    assert status == 200 and len(result["hits"]) == 4 and result["hits"][0]["name"] == Path(videos[5]).name
    status, result = upload(live.url + "/api/classify", "mine.mp4", data)
    assert status == 200 and len(result["classes"]) == 3
    status, _, body = request(live.url + "/api/rows/5/neighbours?k=2")
    assert status == 200 and [h["row"] for h in _json(body)["hits"]][0] == 5


def test_upload_size_limit(live):
    status, payload = upload(live.url + "/api/search", "big.mp4", bytes(LIMIT + 1))
    assert status == 413 and "larger than this app's limit of 0.25 MB" in _assert_one_line_error(payload)
    # A body without a declared length (an iterator: http.client sends it chunked) is cut off once it passes
    # the limit.
    chunks = iter([b"--x\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\n"]
                  + [bytes(64 * 1024)] * 8 + [b"\r\n--x--\r\n"])
    status, _, body = request(live.url + "/api/search", "POST", chunks,
                              {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 413 and "limit" in _assert_one_line_error(_json(body))
    assert request(live.url + "/api/health")[0] == 200


def test_hostile_corpus_gives_one_clear_message_per_file(live, tmp_path):
    corpus = build_corpus(tmp_path / "hostile")
    uploaded = 0
    for name, item in corpus.items():
        if item.path.is_symlink() or not item.path.is_file():
            continue  # links, folders and missing paths are not bytes a browser can send
        status, payload = upload(live.url + "/api/search", item.path.name, item.path.read_bytes())
        uploaded += 1
        if item.expect == "ok" or (item.expect == "either" and status == 200):
            assert status == 200 and payload["hits"], (name, payload)
            continue
        message = _assert_one_line_error(payload)
        assert status == 422, (name, status, message)
        assert message.startswith(f"{item.path.name}: ") and item.reason in message, (name, message)
        assert "tclr-zoo-app-" not in message  # the server's temporary path stays on the server
    assert uploaded == 14
    assert _json(request(live.url + "/api/health")[2])["status"] == "ok"
    status, result = upload(live.url + "/api/search?k=1", "again.mp4", (tmp_path / "hostile" / "good.mp4").read_bytes())
    assert status == 200 and result["hits"]


def test_work_queue_bound_returns_503_when_full(live, service, videos):
    """Deterministic: the test holds the model, so the first QUEUE uploads wait inside the server; with
    no waiting line the next one is refused at once, with Retry-After."""
    data = Path(videos[0]).read_bytes()
    answers: list[tuple[int, dict]] = []
    service.model_lock.acquire()
    try:
        waiting = [threading.Thread(target=lambda: answers.append(upload(live.url + "/api/search", "q.mp4", data)))
                   for _ in range(QUEUE)]
        for thread in waiting:
            thread.start()
        deadline = time.monotonic() + 30
        while _json(request(live.url + "/api/health")[2])["busy"] < QUEUE:  # the server still answers
            assert time.monotonic() < deadline, "the uploads never reached the queue"
            time.sleep(0.02)
        status, headers, body = request(live.url + "/api/search", "POST", *multipart("one-too-many.mp4", data),
                                        timeout=15)
        assert status == 503 and _assert_one_line_error(_json(body)).startswith("busy:")
        assert int(headers["retry-after"]) >= 1
    finally:
        service.model_lock.release()
    for thread in waiting:
        thread.join(60)
    assert [status for status, _ in answers] == [200] * QUEUE
    assert _json(request(live.url + "/api/health")[2])["busy"] == 0


def test_media_serves_indexed_rows_with_range_requests(live, service):
    expected = Path(service.index.paths[3]).read_bytes()
    status, headers, body = request(live.url + "/media/3", headers={"Range": "bytes=100-199"})
    assert status == 206 and body == expected[100:200]
    assert headers["content-range"] == f"bytes 100-199/{len(expected)}" and headers["content-type"] == "video/mp4"
    status, headers, body = request(live.url + "/media/3")
    assert status == 200 and body == expected and headers["accept-ranges"] == "bytes"
    status, headers, body = request(live.url + "/strip/3.png")
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")


@pytest.mark.parametrize("path, status", [
    ("/media/-1", 404), ("/media/18", 404), ("/media/99999999999999999999", 404), ("/strip/-1.png", 404),
    ("/media/..%2F..%2F..%2Fetc%2Fpasswd", 404), ("/media/%2Fetc%2Fpasswd", 404), ("/media/../../etc/passwd", 404),
    ("/media/0.5", 422), ("/api/rows/abc/neighbours", 422), ("/api/search?k=1000", 405), ("/nowhere", 404),
])
def test_the_serving_rule_over_http(live, path, status):
    got, headers, body = request(live.url + path)
    assert got == status and headers["content-type"] == "application/json", (path, got, body[:200])
    assert b"root:" not in body
    _assert_one_line_error(_json(body))


def test_bad_requests_get_one_line_json(live):
    status, _, body = request(live.url + "/api/search", "POST", b"raw bytes", {"Content-Type": "video/mp4"})
    assert status == 415 and "multipart/form-data" in _assert_one_line_error(_json(body))
    status, payload = upload(live.url + "/api/search?k=1000", "a.mp4", b"x")
    assert status == 422 and _assert_one_line_error(payload).startswith("k: ")
    body_without_video = b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhello\r\n--x--\r\n"
    status, _, body = request(live.url + "/api/search", "POST", body_without_video,
                              {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and "no video in the request" in _assert_one_line_error(_json(body))


def test_an_unexpected_error_is_logged_not_shown(live, service, monkeypatch, caplog):
    def broken(row, k=None):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "search_row", broken)
    status, _, body = request(live.url + "/api/rows/0/neighbours")
    assert status == 500 and _assert_one_line_error(_json(body)) == INTERNAL_ERROR
    assert b"secret" not in body and "secret internal detail" in caplog.text and "Traceback" in caplog.text
    assert request(live.url + "/api/health")[0] == 200


def test_a_copy_of_an_indexed_video_in_another_folder_is_not_served(live, service, tmp_path):
    """Only the indexed path of a row is ever opened: the file's name elsewhere means nothing."""
    shutil.copyfile(service.index.paths[0], tmp_path / "secret.mp4")
    status, _, body = request(live.url + f"/media/{tmp_path / 'secret.mp4'}")
    assert status == 404 and json.loads(body)["error"].startswith("Not Found")


def test_a_file_name_that_is_not_utf8_is_listed_and_served(videos, tmp_path_factory, tmp_path):
    """Old archives hold Latin-1 names (Python keeps the byte as a surrogate escape): JSON still encodes."""
    odd = tmp_path / os.fsdecode(b"caf\xe9.mp4")
    shutil.copyfile(videos[0], odd)
    index = build_index(app_models(tmp_path_factory)["classifier"], [str(odd), videos[1]], tmp_path / "index")
    server = LiveServer(create_app(SearchService.open(index)))
    try:
        status, _, body = request(server.url + "/api/rows/0/neighbours?k=2")
        assert status == 200 and json.loads(body)["hits"][0]["name"] == "caf\udce9.mp4"
        status, _, body = request(server.url + "/api/items")
        assert status == 200 and json.loads(body)["items"][0]["name"] == "caf\udce9.mp4"
        status, _, body = request(server.url + "/media/0")
        assert status == 200 and body == Path(videos[0]).read_bytes()
    finally:
        server.stop()
