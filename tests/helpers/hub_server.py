"""A real Hugging Face Hub endpoint on loopback for tests: olah serving local git repositories.

olah (https://pypi.org/project/olah/) mirrors the Hub's download API (``/api/models/ORG/REPO/revision/REV``,
``/api/models/ORG/REPO/tree/...``, ``/ORG/REPO/resolve/REV/FILE``); with ``offline = true`` and
``mirrors-path`` it serves git repositories found at ``MIRRORS/models/ORG/REPO`` and never goes to
huggingface.co. Files are served from plain git blobs (no LFS needed); revisions are branches or commit shas.
It does not accept uploads and answers 401 for unknown repositories *and* unknown branches.

olah lives in its own virtual environment, ``.venv-olah`` at the repository root (``make test`` creates
it); ``TCLR_ZOO_OLAH_CLI`` may point at another ``olah-cli``. Usage::

    from hub_server import local_hub          # session fixture: a started LocalHub, or a skip

    def test_x(local_hub, monkeypatch):
        sha = local_hub.publish(folder, "org/model")
        monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


class OlahUnavailable(RuntimeError):
    """olah is not installed or could not be started (the message says why)."""


def find_olah_cli() -> str:
    candidates = [os.environ.get("TCLR_ZOO_OLAH_CLI"), str(REPO_ROOT / ".venv-olah" / "bin" / "olah-cli"),
                  shutil.which("olah-cli")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise OlahUnavailable(f"olah-cli not found (looked at $TCLR_ZOO_OLAH_CLI, {REPO_ROOT / '.venv-olah'} and "
                          "PATH); `make test` installs it into .venv-olah")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "tclr-zoo tests", "GIT_AUTHOR_EMAIL": "tests@tclr-zoo.invalid",
           "GIT_COMMITTER_NAME": "tclr-zoo tests", "GIT_COMMITTER_EMAIL": "tests@tclr-zoo.invalid"}
    done = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


class LocalHub:
    """An olah server on 127.0.0.1 serving the git repositories under ``root/mirrors/models``."""

    def __init__(self, root: str | os.PathLike | None = None, *, olah_cli: str | None = None):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="tclr-hub-")) if root is None else Path(root)
        self.mirrors = self.root / "mirrors"
        self.olah_cli = olah_cli
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = self.root / "olah.log"

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalHub is not started")
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 60.0) -> LocalHub:
        """Start olah on a free port and wait until it answers; raises :class:`OlahUnavailable`."""
        if self.process is not None:
            return self
        cli = self.olah_cli or find_olah_cli()
        (self.mirrors / "models").mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(3):  # the free port may be taken between free_port() and olah's bind: retry
            self.port = free_port()
            config = self.root / "olah.toml"
            config.write_text(
                "[basic]\n"
                'host = "127.0.0.1"\n'
                f"port = {self.port}\n"
                f'repos-path = "{self.root / "olah-cache"}"\n'
                f'mirrors-path = ["{self.mirrors}"]\n'
                f'mirror-netloc = "127.0.0.1:{self.port}"\n'
                f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
                # resolve branches anew on each request: tests publish new commits on main
                "metadata-cache-ttl = 0\n"
                "[accessibility]\n"
                "offline = true\n")
            log = open(self.log_path, "ab")
            try:
                self.process = subprocess.Popen(
                    [cli, "-c", str(config), "--log-path", str(self.root / "logs")], cwd=self.root,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)  # its own process group: stop() kills it and its children
            except OSError as err:
                raise OlahUnavailable(f"cannot run {cli}: {err}") from err
            finally:
                log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    last_error = f"olah-cli exited with status {self.process.returncode}: {self._log_tail()}"
                    self.process = None
                    break
                if self._answers():
                    return self
                time.sleep(0.2)
            else:
                self.stop()
                raise OlahUnavailable(f"olah-cli did not answer on {self.endpoint} within {timeout:.0f} s: "
                                      f"{self._log_tail()}")
            if "address already in use" not in last_error.lower():
                break
        raise OlahUnavailable(last_error)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.endpoint}/api/models/tclr-probe/none/refs", timeout=2).close()
        except urllib.error.HTTPError:
            return True  # any HTTP answer (a 404 here) means the server is up
        except OSError:
            return False
        return True

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """Kill olah and everything it started (SIGTERM to its process group, then SIGKILL)."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; its children (if any) got the same signal, make sure of it
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- content

    def repo_path(self, repo_id: str) -> Path:
        org, _, name = repo_id.partition("/")
        if not org or not name or "/" in name:
            raise ValueError(f"{repo_id!r}: expected ORG/REPO")
        return self.mirrors / "models" / org / name

    def publish(self, src_dir: str | os.PathLike, repo_id: str, *, branch: str = "main",
                message: str | None = None) -> str:
        """Commit the files of ``src_dir`` as the new content of ``repo_id`` on ``branch``; return the sha.

        The repository is created on first use; later calls add a commit on top of ``branch`` (created from
        the current head when new), whose tree is exactly ``src_dir`` (files gone from it are deleted).
        """
        src = Path(src_dir)
        if not src.is_dir():
            raise FileNotFoundError(src)
        _check_servable(src)
        repo = self.repo_path(repo_id)
        message = message or f"publish {src.name}"
        if not (repo / ".git").is_dir():
            # build it beside and rename: a request meanwhile never sees a half-made repository
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.mirrors))
            _git(staging, "init", "-q", "-b", branch)
            self._commit(staging, src, message)
            repo.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(repo)
        else:
            branches = _git(repo, "branch", "--format=%(refname:short)").split()
            if branch in branches:
                _git(repo, "checkout", "-q", "-f", branch)
            else:
                _git(repo, "checkout", "-q", "-f", "-b", branch)
            self._commit(repo, src, message)
        return _git(repo, "rev-parse", "HEAD")

    @staticmethod
    def _commit(repo: Path, src: Path, message: str) -> None:
        for entry in repo.iterdir():
            if entry.name == ".git":
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        shutil.copytree(src, repo, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        _git(repo, "add", "-A")
        _git(repo, "-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "--no-verify", "-m", message)


def _check_servable(src: Path) -> None:
    """olah 0.5.4 reads every blob of 121-149 bytes as text (to spot LFS pointers) and answers 500 for the
    whole file listing when it is binary: refuse such files here with a clear message."""
    for path in src.rglob("*"):
        if path.is_file() and 120 < path.stat().st_size < 150:
            try:
                path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}: olah cannot serve binary files of 121-149 bytes (it parses them as "
                                 "LFS pointers and fails); make it smaller or larger") from None


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """A started :class:`LocalHub` shared by the session (use distinct repo names per test)."""
    hub = LocalHub(tmp_path_factory.mktemp("local-hub"))
    try:
        hub.start()
    except OlahUnavailable as err:
        # `make test` installs olah, so there a server that will not start is a failure; a bare
        # `pytest` without .venv-olah skips, saying how to get it.
        print(f"local_hub: olah unavailable: {err}", file=sys.stderr)
        if "not found" in str(err):
            pytest.skip(f"no local Hub server: {err}")
        pytest.fail(f"the local Hub server did not start: {err}")
    try:
        yield hub
    finally:
        hub.stop()
