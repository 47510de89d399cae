"""Side-by-side timing and the result rows every benchmark case returns."""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass
class Result:
    """One row of the table: a fast path (A) against its baseline (B)."""

    id: str  # "P1", "P1-cuda", ...
    what: str
    a: str  # what A is
    b: str  # what B (the baseline) is
    a_value: float  # median seconds (or the unit below)
    b_value: float | None
    unit: str = "s"
    ratio: float | None = None  # speed-up of A over B (b/a for times), or the figure the target is about
    target: str = ""
    met: bool | None = None  # None: nothing to check (report only) or not measurable here
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def append_json_rows(path: str | os.PathLike | None, rows: list[Result]) -> None:
    """Append ``rows`` as JSON lines to ``path`` (the raw rows bench/results/ keeps); nothing if None."""
    if path:
        with open(path, "a") as f:
            f.writelines(json.dumps(r.as_dict()) + "\n" for r in rows)


def time_once(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> float:
    if sync:
        sync()
    start = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - start


def compare(a: Callable[[], Any], b: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
            sync: Callable[[], None] | None = None) -> tuple[float, float, dict[str, list[float]]]:
    """Median seconds of ``a`` and ``b``, run alternately (A B A B ...) after ``warmup`` rounds of each.

    Alternating spreads slow drifts of the machine (turbo, other processes, caches) over both sides.
    """
    for _ in range(warmup):
        a()
        b()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(repeats):
        order = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
        for name, fn in order:
            gc.collect()
            times[name].append(time_once(fn, sync))
    return statistics.median(times["a"]), statistics.median(times["b"]), times


def median_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
                sync: Callable[[], None] | None = None) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(time_once(fn, sync) for _ in range(repeats))


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU and library versions: printed with every table."""
    import torch

    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for name in ("torchvision", "av", "onnxruntime", "numpy", "faiss"):
        try:
            info[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            info[name] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
