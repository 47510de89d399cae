"""``tclr-zoo app`` as users run it: real subprocesses -- help, the missing extra, a model that is not the
index's, a taken port, and a server that answers and stops on Ctrl+C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import warm_python
from app_helpers import app_models, build_index, request

CLI = [*warm_python.CLI, "app"]


def _run(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return warm_python.run(CLI + args, timeout=timeout, env=env or os.environ.copy())


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return app_models(tmp_path_factory)


@pytest.fixture(scope="module")
def index_dir(models, tiny_dataset, tmp_path_factory) -> Path:
    videos = sorted(str(p) for p in tiny_dataset.rglob("*.mp4"))[:4]
    return build_index(models["classifier"], videos, tmp_path_factory.mktemp("cli-index") / "index")


def test_help_is_quick_and_says_the_safe_defaults():
    started = time.monotonic()
    result = _run(["--help"])
    assert result.returncode == 0 and time.monotonic() - started < 10
    text = " ".join(result.stdout.split())
    for words in ("127.0.0.1", "--max-upload-mb", "--queue", "--model", "only the files the index lists",
                  "--read-timeout", "--queue-waiters", "--queue-wait", "Retry-After", "(408)"):
        assert words in text, words


def test_without_the_app_extra_it_says_what_to_install(tmp_path, index_dir):
    (tmp_path / "fastapi.py").write_text("raise ImportError('No module named fastapi')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    line = _one_error_line(_run([str(index_dir)], env))
    assert "pip install 'tclr-zoo[app]'" in line


@pytest.mark.parametrize("option, value", [("--max-upload-mb", "1e-9"), ("--queue-wait", "nan")])
def test_a_limit_that_is_not_a_size_or_a_time_is_a_usage_error(tmp_path, option, value):
    """Refused while the command line is parsed (1e-9 MB is 0 bytes: it used to pass the parser and
    fail with a traceback once the model had loaded)."""
    line = _one_error_line(_run([str(tmp_path / "index"), option, value]))
    assert f"Invalid value for '{option}': {float(value)!r} is not a" in line


def test_a_model_that_is_not_the_indexs_is_refused(index_dir, models):
    line = _one_error_line(_run([str(index_dir), "--model", str(models["plain"]), "--port", "0"]))
    assert "is not the model this index was built with" in line


def test_a_taken_port_is_a_one_line_error_before_anything_loads(index_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        line = _one_error_line(_run([str(index_dir), "--port", str(taken.getsockname()[1])]))
    assert line.startswith("tclr-zoo: error: cannot listen on 127.0.0.1:") and "choose another --port" in line


def test_serves_the_index_on_loopback_and_stops_on_ctrl_c(index_dir):
    process = warm_python.start(CLI + [str(index_dir), "--port", "0", "-k", "3"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        url = None
        for line in process.stdout:
            found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, process.stderr.read() if process.poll() is not None else "no address printed"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, body = request(url + "api/about", timeout=5)
                break
            except ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "the app never answered"
                time.sleep(0.1)
        about = json.loads(body)
        assert status == 200 and about["index"]["rows"] == 4 and about["limits"]["k"] == 3
        assert about["model"]["id"] == about["index"]["model_id"]  # the model the index records
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0 and "tclr-zoo app: stopped" in process.stdout.read()
