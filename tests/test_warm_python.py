"""The warm-started test subprocesses (tests/helpers/warm_python.py) behave as fresh interpreters: the
same exit codes, output, environment, working directory, tracebacks, signals and timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import warm_python

PROBE = ("import os, sys, torch; print(os.getcwd()); print(os.environ.get('TCLR_PROBE')); print(sys.argv[1:]); "
         "print(torch.get_num_threads()); print(sys.path[0] == '' or sys.path[0]); sys.stderr.write('to stderr\\n'); "
         "sys.exit(int(sys.argv[1]))")


def _fresh(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, **kwargs)


def _same(a: subprocess.CompletedProcess, b: subprocess.CompletedProcess) -> None:
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


@pytest.mark.skipif(warm_python.FRESH, reason="TCLR_ZOO_TESTS_FRESH_PYTHON=1: every command runs fresh")
def test_a_warm_process_is_the_fresh_one_from_the_outside(tmp_path):
    env = {**os.environ, "TCLR_PROBE": "here"}
    warm = warm_python.run_python(["-c", PROBE, 3, "a b"], cwd=tmp_path, env=env)
    _same(warm, _fresh(["-c", PROBE, 3, "a b"], cwd=tmp_path, env=env))
    assert warm.returncode == 3 and warm.stderr == "to stderr\n"
    assert warm.stdout.splitlines()[:3] == [str(tmp_path), "here", "['3', 'a b']"]
    # an uncaught exception, a Ctrl-C that nobody catches, a module run with -m, the CLI itself
    for argv in (["-c", "raise ValueError('boom')"], ["-c", "raise KeyboardInterrupt"],
                 ["-m", "json.tool", "--help"], [*warm_python.CLI[1:], "list", "r3d_*"]):
        _same(warm_python.run_python(argv, cwd=tmp_path), _fresh(argv, cwd=tmp_path))


@pytest.mark.skipif(warm_python.FRESH, reason="TCLR_ZOO_TESTS_FRESH_PYTHON=1: every command runs fresh")
def test_variables_read_when_torch_loads_send_the_command_to_a_fresh_interpreter():
    threads = "import torch; print(torch.get_num_threads())"
    one = warm_python.run_python(["-c", threads], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.stdout == "1\n", one.stderr  # a warm process would keep the threads torch set up with


@pytest.mark.skipif(warm_python.FRESH, reason="TCLR_ZOO_TESTS_FRESH_PYTHON=1: every command runs fresh")
def test_a_command_past_its_timeout_is_killed():
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        warm_python.run_python(["-c", "import time; print('started', flush=True); time.sleep(60)"], timeout=2)
    assert time.monotonic() - start < 10


@pytest.mark.skipif(warm_python.FRESH, reason="TCLR_ZOO_TESTS_FRESH_PYTHON=1: every command runs fresh")
def test_a_started_process_takes_ctrl_c_as_one_started_from_a_terminal():
    sleeper = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]
    outcomes = []
    for process in (warm_python.start(sleeper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, terminal_sigint=True),
                    subprocess.Popen(sleeper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=warm_python._sigint_as_from_a_terminal)):
        assert int(process.stdout.readline()) == process.pid and process.poll() is None
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        outcomes.append((process.returncode, stderr.splitlines()[-1]))
    assert outcomes[0] == outcomes[1] == (-signal.SIGINT, "KeyboardInterrupt")
