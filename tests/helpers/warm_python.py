"""Run ``python -m tclr_zoo.cli ...`` (or any ``python ARGV``) as its own process, without paying the
~4.5 s of torch and torchvision imports each time.

``run_python(argv, ...)`` is ``subprocess.run([sys.executable, *argv], capture_output=True,
text=True, ...)`` and ``start(command, ...)`` is ``subprocess.Popen(command, text=True, ...)``: same
arguments, a ``CompletedProcess`` or an object with Popen's ``pid``, ``poll``, ``wait``,
``communicate``, ``send_signal``, ``kill`` and ``stdout``/``stderr``. The process is forked from a
warm interpreter (``warm_python_server.py``, one per test process, started on first use) that has
imported torch and torchvision and nothing that reads the environment. The command still gets a
process of its own: its argv, environment, working directory, pipes, exit status, signals and
``atexit``. ``run_cli(args, ...)`` is ``run_python`` for ``python -m tclr_zoo.cli ARGS``.

A command is sent to a fresh interpreter instead when its environment changes a variable that is
read as the interpreter or torch starts (``START_TIME_VARIABLES``), and every command is when
``TCLR_ZOO_TESTS_FRESH_PYTHON=1`` -- run the suite that way to check that the warm start changes
no outcome. Tests whose point is the start-up itself (a kill during the imports, resource limits,
torchrun) keep using ``subprocess``.
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["CLI", "FRESH", "WarmProcess", "run", "run_cli", "run_python", "start"]

CLI = [sys.executable, "-m", "tclr_zoo.cli"]
SERVER = Path(__file__).with_name("warm_python_server.py")
START_TIME_VARIABLES = ("PYTHON", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "LD_", "TORCH", "PYTORCH", "CUDA", "NCCL",
                        "TQDM_", "TRITON")
FRESH = os.environ.get("TCLR_ZOO_TESTS_FRESH_PYTHON") == "1"


def run_cli(args, *, cwd=None, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m tclr_zoo.cli ARGS`` with captured text output (see the module docstring)."""
    return run([*CLI, *args], cwd=cwd, env=env, timeout=timeout)


def run_python(argv, *, cwd=None, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *argv], capture_output=True, text=True, ...)``, warm-started."""
    return run([sys.executable, *argv], cwd=cwd, env=env, timeout=timeout)


def run(command, *, cwd=None, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``subprocess.run(command, capture_output=True, text=True, ...)`` for a command of this
    interpreter (``sys.executable`` first, e.g. ``CLI + [...]``), warm-started."""
    process = start(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def start(command, *, cwd=None, env=None, stdout=None, stderr=None, terminal_sigint: bool = False):
    """``subprocess.Popen(command, text=True, stdin=DEVNULL, ...)`` for a command of this interpreter,
    warm-started (a ``subprocess.Popen`` where it must start fresh). ``terminal_sigint``: SIGINT
    raises KeyboardInterrupt, as in a command started from a terminal, whatever this process ignores."""
    command = [str(part) for part in command]
    if command[0] != sys.executable:
        raise ValueError(f"not a command of this interpreter: {command[:3]}")
    env = dict(os.environ if env is None else env)
    argv = command[1:]
    interpreter_options = argv[0].startswith("-") and argv[0] not in ("-m", "-c")  # e.g. -X, -u: not served
    if FRESH or interpreter_options or _changes_start_time_variables(env):
        return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                text=True, preexec_fn=_sigint_as_from_a_terminal if terminal_sigint else None)
    return _server().start(command, str(Path(cwd or os.getcwd()).resolve()), env, stdout, stderr, terminal_sigint)


def _sigint_as_from_a_terminal() -> None:
    """Ctrl-C's default action, as a shell started from a terminal gives it. A child inherits an
    ignored or blocked SIGINT, and a pytest worker may have one (a library it ran, e.g. a server):
    then Python installs no KeyboardInterrupt handler and the SIGINT is lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def _changes_start_time_variables(env: dict[str, str]) -> bool:
    keys = {k for k in set(env) | set(os.environ) if k.startswith(START_TIME_VARIABLES)}
    return any(env.get(k) != os.environ.get(k) for k in keys)


class WarmProcess:
    """A warm-started command: the parts of ``subprocess.Popen`` the tests use (text mode)."""

    def __init__(self, args: list[str], connection: socket.socket, stdout, stderr):
        self.args, self.returncode = args, None
        self.stdout, self.stderr = stdout, stderr
        self._connection, self._buffer = connection, b""
        self.pid = self._reply()["pid"]

    def _reply(self, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._connection], [], [], left)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            data = self._connection.recv(4096)
            if not data:
                raise RuntimeError(f"the warm interpreter hung up on {self.args[:4]}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.wait(timeout=0)
            except subprocess.TimeoutExpired:
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(self._reply(timeout)["status"])
            self._connection.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        """Everything left in the pipes until they close, then the exit status (TimeoutExpired after
        ``timeout``; call it again after ``kill``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pipes = [stream for stream in (self.stdout, self.stderr) if stream is not None and not stream.closed]
        text = {id(stream): [] for stream in pipes}
        with selectors.DefaultSelector() as selector:
            for stream in pipes:
                selector.register(stream.fileno(), selectors.EVENT_READ, stream)
            while selector.get_map():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = selector.select(left)
                if not ready and deadline is not None and time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                for key, _ in ready:
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        text[id(key.data)].append(data)
                    else:
                        selector.unregister(key.fd)
        for stream in pipes:
            stream.close()
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        out = [_universal_newlines(b"".join(text[id(s)])) if s in pipes else None for s in (self.stdout, self.stderr)]
        return out[0], out[1]


def _universal_newlines(data: bytes) -> str:
    """What ``text=True`` gives: the locale's encoding, and \\r\\n and \\r read as \\n."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


class _Server:
    """One warm interpreter, started on first use and stopped when this process exits."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="tclr-warm-")
        self.path = os.path.join(self.folder, "s")
        self.process = subprocess.Popen([sys.executable, str(SERVER), self.path], stdout=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the warm interpreter did not start (status {self.process.poll()})")
        atexit.register(self.stop)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for name in (self.path, self.folder):
            if os.path.exists(name):
                (os.remove if name == self.path else os.rmdir)(name)

    def start(self, command: list[str], cwd: str, env: dict[str, str], stdout, stderr,
              terminal_sigint: bool) -> WarmProcess:
        """Send the command with its three fds; our ends of its pipes become text files."""
        stdin = os.open(os.devnull, os.O_RDONLY)
        mine, theirs = [], [stdin]
        for own, target in ((sys.__stdout__, stdout), (sys.__stderr__, stderr)):
            if target == subprocess.PIPE:
                read, write = os.pipe()
                mine.append(open(read, "r", encoding=locale.getpreferredencoding(False)))
                theirs.append(write)
            elif target == subprocess.STDOUT:
                mine.append(None)
                theirs.append(theirs[1])
            else:
                mine.append(None)
                theirs.append(_write_fd(target, own))
        request = json.dumps({"argv": command[1:], "cwd": cwd, "env": env, "terminal_sigint": terminal_sigint})
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.path)
        socket.send_fds(connection, [request.encode()], theirs)
        for fd in set(theirs):
            os.close(fd)
        return WarmProcess(command, connection, *mine)


def _write_fd(target, own) -> int:
    """A new fd for a command's stdout/stderr: this process's ``own`` (None), /dev/null, or a file's."""
    if target is None:
        return os.dup(own.fileno())
    if target == subprocess.DEVNULL:
        return os.open(os.devnull, os.O_WRONLY)
    return os.dup(target if isinstance(target, int) else target.fileno())


_SERVERS: dict[int, _Server] = {}


def _server() -> _Server:
    """This process's warm interpreter (a forked test process must not share its parent's)."""
    if os.getpid() not in _SERVERS:
        _SERVERS[os.getpid()] = _Server()
    return _SERVERS[os.getpid()]
