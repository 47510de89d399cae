"""The benchmark suite runs: `python -m bench --quick` end to end (the speeds are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import warm_python

ROOT = Path(__file__).resolve().parents[1]


# The cases' rows, in two groups of about a minute each: one subprocess per group, so that the two
# test processes share the suite's ~2 minutes, with one Python start per group, not per case.
GROUP_ROWS = {"P1,P3,P5,P7": {"P1", "P3", "P5", "P7", "P7-fwd"}, "P2,P4,P6": {"P2", "P4", "P6"}}
CASE_ROWS = {case: rows for group, rows in GROUP_ROWS.items() for case in group.split(",")}


def test_every_case_is_run_by_one_of_the_tests():
    from bench.__main__ import CASES

    assert set(CASE_ROWS) == set(CASES)


@pytest.mark.parametrize("case", sorted(GROUP_ROWS))
def test_quick_suite_produces_every_case(case, tmp_path):
    out = tmp_path / "bench.json"
    proc = warm_python.run_python(["-m", "bench", "--quick", "--only", case, "--json", out], cwd=ROOT, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    ids = {row["id"] for row in report["rows"]}
    assert GROUP_ROWS[case] <= ids, ids
    for row in report["rows"]:
        assert row["a_value"] == row["a_value"] and row["a_value"] > 0, row  # measured, not NaN
        assert row["target"], row
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    assert all(f"| {one} |" in proc.stdout for one in case.split(",")) and "Machine:" in proc.stdout


def test_unknown_case_is_a_usage_error():
    proc = warm_python.run_python(["-m", "bench", "--only", "P9"], cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "unknown case" in proc.stderr
