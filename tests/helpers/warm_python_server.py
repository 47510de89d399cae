"""The server half of ``warm_python``: an interpreter that has imported torch and torchvision once and
forks a fresh process for each command it is sent.

Why: a tclr-zoo command spends ~4.5 s of its start importing torch and torchvision (torchvision pulls
in ``torch._dynamo``) before it does anything, and the suite starts a few hundred of them. Forking
a process that has already imported them gives each command its own process -- its own argv,
environment, working directory, stdin/stdout/stderr, exit status and signals -- without paying the
imports again. Only modules that read no environment at import are imported here (torch reads
``OMP_NUM_THREADS`` and friends when it loads, so the client sends commands whose environment
differs in those to a real fresh interpreter instead; see ``warm_python.START_TIME_VARIABLES``).

Protocol, over a Unix socket, one connection per command:
    client -> server: one JSON request (argv after the interpreter, cwd, env, terminal_sigint) with three file
                      descriptors attached (stdin, stdout, stderr of the command);
    server -> client: ``{"pid": N}`` once the command's process runs, then ``{"status": S}`` when it
                      ends, S being what ``os.waitpid`` reported.
For each connection the server forks a monitor, which forks the command's process, waits for it and
reports; the server itself never waits, so commands may run side by side.

Run as ``python warm_python_server.py SOCKET_PATH``; it prints ``ready`` on stdout when it listens and
exits when its parent process is gone.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import runpy
import signal
import socket
import sys
import threading
import traceback
import types

import torch  # noqa: F401 (the point: imported once, before any fork)
import torchvision  # noqa: F401

__all__: list[str] = []

MAX_REQUEST = 1 << 20


def main(path: str) -> None:
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    print("ready", flush=True)
    while os.getppid() == parent:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        if os.fork() == 0:
            listener.close()
            _monitor(connection)
        connection.close()


def _monitor(connection: socket.socket) -> None:
    """Start the command's process, tell the client its pid and then its wait status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        connection.setblocking(True)
        payload, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST, 3)
        request = json.loads(payload)
        pid = os.fork()
        if pid == 0:
            connection.close()
            _run_command(request, fds)
        for fd in fds:
            os.close(fd)
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        connection.sendall(json.dumps({"status": status}).encode() + b"\n")
    finally:
        os._exit(0)


def _run_command(request: dict, fds: list[int]) -> None:
    """Become ``python ARGV...`` as a fresh interpreter would run it, then exit with its status."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _fresh_streams()
    if request.get("terminal_sigint"):  # as a shell started from a terminal leaves it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    code = 0
    try:
        _run_argv(request["argv"])
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt as interrupt:
        # a fresh interpreter prints an uncaught Ctrl-C's traceback and dies of SIGINT; so does this one
        _print_traceback(interrupt)
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException as error:  # noqa: BLE001 (what the interpreter does with any uncaught exception)
        _print_traceback(error)
        code = 1
    _finish()
    os._exit(code)


def _print_traceback(error: BaseException) -> None:
    """The traceback a fresh interpreter prints: from the command's first frame, not this file's."""
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    traceback.print_exception(type(error), error, frames)


def _run_argv(argv: list[str]) -> None:
    """``-m MODULE ARGS``, ``-c CODE ARGS`` or ``SCRIPT ARGS``, with sys.argv and sys.path[0] as the
    interpreter sets them."""
    if argv[0] == "-c":
        sys.path[0] = ""
        sys.argv = ["-c", *argv[2:]]
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(argv[1], "<string>", "exec"), main.__dict__)
    elif argv[0] == "-m":
        sys.path[0] = os.getcwd()
        sys.argv = ["-m", *argv[2:]]
        runpy._run_module_as_main(argv[1], alter_argv=True)  # what `python -m` itself calls
    else:
        script = os.path.abspath(argv[0])
        sys.path[0] = os.path.dirname(script)
        sys.argv = [argv[0], *argv[1:]]
        runpy.run_path(script, run_name="__main__")


def _fresh_streams() -> None:
    """Text streams over the new fds 0-2, buffered as a fresh interpreter buffers pipes."""
    encoding = os.environ.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                                   encoding=encoding, line_buffering=os.isatty(1))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                                   encoding=encoding, errors="backslashreplace",
                                                   line_buffering=True)


def _exit_code(code: object) -> int:
    """What the interpreter makes of ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish() -> None:
    """The interpreter's own shutdown: wait for non-daemon threads, run atexit, flush."""
    threading._shutdown()  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    main(sys.argv[1])
