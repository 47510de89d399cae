"""The benchmark suite runs: `python -m bench --quick` end to end (the speeds are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_suite_produces_every_case(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    ids = {row["id"] for row in report["rows"]}
    assert {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P7-fwd"} <= ids, ids
    for row in report["rows"]:
        assert row["a_value"] == row["a_value"] and row["a_value"] > 0, row  # measured, not NaN
        assert row["target"], row
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    assert "| P1 |" in proc.stdout and "Machine:" in proc.stdout


def test_unknown_case_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "P9"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "unknown case" in proc.stderr
