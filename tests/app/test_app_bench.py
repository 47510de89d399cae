"""The app's load benchmark runs: ``python -m bench.app_load --quick`` end to end -- the real server,
locust headless against it -- and reports what BENCHMARKS.md quotes (the latencies are not asserted,
only that they were measured). 13-20 s on 2 cores."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the app extra is not installed (pip install 'tclr-zoo[app]')")
# Looked up, never imported here: importing locust monkey-patches this process with gevent.
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed (the dev extra has it)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def test_quick_app_load_bench_measures_row_searches_and_uploads(tmp_path):
    out = tmp_path / "app_load.json"
    proc = subprocess.run([sys.executable, "-m", "bench.app_load", "--quick", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    stats = report["scenarios"]["mixed"]
    assert set(stats) == {"row search", "upload search"}, stats
    for name, s in stats.items():
        assert s["requests"] > 0 and s["failures"] == 0 and s["errors"] == {}, (name, s)
        assert 0 < s["p50_ms"] <= s["p99_ms"], (name, s)
    assert report["rows"] == 18 and report["users"] == 2 and report["machine"]["cores"] >= 1
    assert report["rss_mib"]["start"] > 0 and report["health_after"]["busy"] == 0
    assert "| mixed (2 users) | upload search |" in proc.stdout and "Machine:" in proc.stdout
