"""Locust users of ``bench/app_load.py`` (which starts the app and runs locust on this file headless;
not meant to be run by hand, though ``locust -f bench/app_locustfile.py --host URL`` works with the
variables below set).

Each user works back to back, with no think time (a closed loop: the worst case for the queue):
``row search`` asks for the neighbours of a random indexed row, ``upload search`` uploads one of the
query videos as the page does (multipart, field ``video``) and asks for its neighbours.

Variables: ``TCLR_BENCH_UPLOADS`` (query video paths, ``os.pathsep``-separated), ``TCLR_BENCH_ROWS``
(rows in the index), ``TCLR_BENCH_ROW_WEIGHT`` and ``TCLR_BENCH_UPLOAD_WEIGHT`` (how often each task
is picked; 0 leaves it out).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, constant

UPLOADS = [Path(p) for p in os.environ["TCLR_BENCH_UPLOADS"].split(os.pathsep)]
ROWS = int(os.environ["TCLR_BENCH_ROWS"])
K = 10


def row_search(user: HttpUser) -> None:
    user.client.get(f"/api/rows/{random.randrange(ROWS)}/neighbours?k={K}", name="row search")


def upload_search(user: HttpUser) -> None:
    name, data = random.choice(user.videos)
    user.client.post(f"/api/search?k={K}", files={"video": (name, data, "video/mp4")}, name="upload search")


WEIGHTS = {row_search: int(os.environ.get("TCLR_BENCH_ROW_WEIGHT", "3")),
           upload_search: int(os.environ.get("TCLR_BENCH_UPLOAD_WEIGHT", "1"))}


class AppUser(HttpUser):
    wait_time = constant(0)
    tasks = {task: weight for task, weight in WEIGHTS.items() if weight > 0}

    def on_start(self) -> None:
        self.videos = [(path.name, path.read_bytes()) for path in UPLOADS]
