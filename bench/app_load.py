"""APP: the web app under load -- p50/p99 latency of row searches and upload searches at a stated
concurrency, against the real server (``tclr-zoo app`` in a subprocess), driven by locust (headless,
in a subprocess, over ``bench/app_locustfile.py``).

Scenarios, each one locust run against the same server, every user working back to back (no think
time, a closed loop):

* ``mixed``: ``--users`` users, each picking 3 row searches to 1 upload search;
* ``uploads``: ``--users`` users uploading only (by default 8 users uploading at once, twice the server's 4 work slots).

The server runs with its defaults (4 work slots, 8 waiters, 30 s longest wait). ``--preset demo``
(default) is what ``make demo`` and then ``tclr-zoo app`` serve: the demo's synthetic dataset (108
videos of 72 frames at 64x64), indexed by a model of the demo's size (r3d_10_025 reading 16 frames at
32x32; random weights, which cost the same as trained ones). ``--preset paper``: r3d_18 at the
published preprocessing (16 frames at 112x112) over the same videos. ``--quick``: the tests' tiny set
(18 videos of 40 frames at 32x32), r3d_10_025 reading 8 frames at 16x16, 2 users, 3 s of the mixed
scenario -- a check that the bench runs, not a measurement.

Reported per request kind: requests, failures (by error; a 503 is one), p50 and p99 in ms (locust's:
exact below 100 ms, rounded to 10 ms below 1 s and to 100 ms above) and requests per second; and the
server's RSS before and after. ``python -m bench.app_load [--quick] [--preset demo|paper] [--users 8]
[--seconds 30] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

from bench.core import machine

LOCUSTFILE = Path(__file__).with_name("app_locustfile.py")
DEMO_DATA = {"num_classes": 6, "groups": 6, "clips_per_group": 3, "test_groups": 2, "frames": 72, "height": 64,
             "width": 64}
TINY_DATA = {"num_classes": 3, "groups": 3, "clips_per_group": 2, "test_groups": 1, "frames": 40, "height": 32,
             "width": 32}
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"arch": "r3d_10_025", "size": 32, "frames": 16, "data": DEMO_DATA},
    "paper": {"arch": "r3d_18", "size": 112, "frames": 16, "data": DEMO_DATA},
    "tiny": {"arch": "r3d_10_025", "size": 16, "frames": 8, "data": TINY_DATA},
}
SCENARIOS = {"mixed": {"TCLR_BENCH_ROW_WEIGHT": "3", "TCLR_BENCH_UPLOAD_WEIGHT": "1"},
             "uploads": {"TCLR_BENCH_ROW_WEIGHT": "0", "TCLR_BENCH_UPLOAD_WEIGHT": "1"}}
QUERY_VIDEOS = 8


def make_index(preset: dict[str, Any], folder: Path) -> tuple[Path, list[Path]]:
    """The preset's videos, a random-init model of its size and an index of the videos by it; returns
    the index folder and the videos that users upload."""
    import torch

    import tclr_zoo
    from tclr_zoo.data.synthetic import SyntheticConfig, generate
    from tclr_zoo.hub.format import model_config, save_pretrained
    from tclr_zoo.models.preprocessing import Preprocessing
    from tclr_zoo.models.registry import create_model, resolve_model_args

    videos = sorted(generate(folder / "videos", SyntheticConfig(**preset["data"])).rglob("*.mp4"))
    torch.manual_seed(0)
    arch = preset["arch"]
    net = create_model(arch).eval()
    preprocessing = Preprocessing(size=preset["size"], frames=preset["frames"])
    model_dir = save_pretrained(net, folder / "model",
                                model_config(net, arch=arch, model_args=resolve_model_args(arch),
                                             preprocessing=preprocessing))
    model = tclr_zoo.load_model(model_dir)
    tclr_zoo.VideoIndex.build(model, [str(v) for v in videos], progress=False, workers=0).save(folder / "index")
    return folder / "index", videos[:QUERY_VIDEOS]


class AppServer:
    """``tclr-zoo app INDEX --port 0`` with its default limits, output to files."""

    def __init__(self, index: Path, folder: Path) -> None:
        self.stdout, self.stderr = folder / "app.stdout", folder / "app.stderr"
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "tclr_zoo.cli", "app", str(index), "--port", "0"],
                                            stdout=out, stderr=err)
        self.url = self._address()

    def _address(self) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(r"open (http://127\.0\.0\.1:\d+)/", self.stdout.read_text())
            if found and self._answers(found.group(1)):
                return found.group(1)
            if self.process.poll() is not None:
                raise SystemExit(f"bench: tclr-zoo app exited: {self.stderr.read_text()[-2000:]}")
            time.sleep(0.1)
        raise SystemExit("bench: tclr-zoo app did not answer within 120 s")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/api/health", timeout=10) as response:
            return json.loads(response.read())

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_locust(url: str, scenario: str, users: int, seconds: int, uploads: list[Path], rows: int,
               folder: Path) -> dict[str, Any]:
    """One headless locust run; its stats per request name (``locust --csv`` files)."""
    prefix = folder / scenario
    env = {**os.environ, **SCENARIOS[scenario], "TCLR_BENCH_ROWS": str(rows),
           "TCLR_BENCH_UPLOADS": os.pathsep.join(str(p) for p in uploads)}
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--users", str(users),
               "--spawn-rate", str(users), "--run-time", f"{seconds}s", "--host", url, "--csv", str(prefix),
               "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0", "--stop-timeout", "30"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise SystemExit(f"bench: locust failed ({done.returncode}): {done.stderr[-3000:]}")
    return read_stats(prefix)


def read_stats(prefix: Path) -> dict[str, Any]:
    """``{request name: {requests, failures, p50_ms, p99_ms, rps, errors}}`` from locust's CSV files."""
    stats: dict[str, Any] = {}
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                continue
            stats[row["Name"]] = {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                                  "p50_ms": float(row["50%"]), "p99_ms": float(row["99%"]),
                                  "rps": round(float(row["Requests/s"]), 2), "errors": {}}
    with open(f"{prefix}_failures.csv", newline="") as f:
        for row in csv.DictReader(f):
            stats.setdefault(row["Name"], {"errors": {}})["errors"][row["Error"]] = int(row["Occurrences"])
    return stats


def table(report: dict[str, Any]) -> str:
    lines = ["| scenario | request | requests | failures | p50 | p99 | req/s |", "|---|---|---|---|---|---|---|"]
    for scenario, stats in report["scenarios"].items():
        for name, s in stats.items():
            errors = "; ".join(f"{k}: {v}" for k, v in s["errors"].items())
            lines.append(f"| {scenario} ({report['users']} users) | {name} | {s['requests']} | {s['failures']}"
                         f"{' (' + errors + ')' if errors else ''} | {s['p50_ms']:.0f} ms | {s['p99_ms']:.0f} ms "
                         f"| {s['rps']} |")
    info = report["machine"]
    rss = ", ".join(f"{v:.0f} MiB {'before' if k == 'start' else k}" for k, v in report["rss_mib"].items())
    load = ", ".join(f"{v:.1f}" for v in report["load_average"])
    head = (f"Machine: {info['cpu']}, {info['cores']} cores; {report['date']}; preset {report['preset']} "
            f"({report['model']}); {report['seconds']} s per scenario; server RSS {rss}; load average at the "
            f"end {load}.\n\n")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.app_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny index and model, 2 users, 3 s of the mixed scenario")
    p.add_argument("--preset", choices=["demo", "paper"], default="demo", help="videos and model (see above)")
    p.add_argument("--users", type=int, default=8, help="concurrent users [8]")
    p.add_argument("--seconds", type=int, default=30, help="length of each scenario's run [30]")
    p.add_argument("--scenarios", default="mixed,uploads", help="comma-separated: mixed, uploads [both]")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    preset_name = "tiny" if args.quick else args.preset
    users, seconds = (2, 3) if args.quick else (args.users, args.seconds)
    scenarios = ["mixed"] if args.quick else [s.strip() for s in args.scenarios.split(",")]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    preset = PRESETS[preset_name]
    with tempfile.TemporaryDirectory(prefix="tclr-zoo-app-bench-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        index, uploads = make_index(preset, folder)
        server = AppServer(index, folder)
        try:
            rows = _rows(server.url)
            print(f"[app server up at {server.url} after {time.monotonic() - started:.0f} s; {rows} rows]",
                  file=sys.stderr, flush=True)
            report: dict[str, Any] = {
                "date": date.today().isoformat(), "machine": machine(), "preset": preset_name, "users": users,
                "seconds": seconds, "rows": rows, "quick": args.quick,
                "model": f"{preset['arch']}, {preset['frames']} frames at {preset['size']}x{preset['size']}",
                "server": "tclr-zoo app defaults: --queue 4 --queue-waiters 8 --queue-wait 30",
                "rss_mib": {"start": server.rss_mib()}, "scenarios": {}}
            for scenario in scenarios:
                report["scenarios"][scenario] = run_locust(server.url, scenario, users, seconds, uploads, rows, folder)
                report["rss_mib"][f"after {scenario}"] = server.rss_mib()
            report["load_average"] = os.getloadavg()
            report["health_after"] = server.health()
        finally:
            server.stop()
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _rows(url: str) -> int:
    with urllib.request.urlopen(url + "/api/about", timeout=10) as response:
        return int(json.loads(response.read())["index"]["rows"])


if __name__ == "__main__":
    sys.exit(main())
