"""Scalar logs: a CSV file always, TensorBoard event files too when tensorboard is installed."""

from __future__ import annotations

import csv
import os
from pathlib import Path


class ScalarLogger:
    """``log(step, {name: value})`` appends to ``DIR/metrics.csv`` (long format) and TensorBoard.

    Nothing is created before the first ``log``: a run stopped before its first epoch ends (or a
    resume that trains nothing) leaves no log files, and no empty TensorBoard file for a run that
    recorded nothing.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.csv_path = self.directory / "metrics.csv"
        self._csv_file = None
        self._csv = None
        self._tb = None

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        new_file = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")
        self._csv = csv.writer(self._csv_file)
        if new_file:
            self._csv.writerow(["step", "name", "value"])
        self._tb = _tensorboard_writer(self.directory)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if self._csv_file is None:
            self._open()
        for name, value in scalars.items():
            self._csv.writerow([step, name, f"{float(value):.6g}"])
            if self._tb is not None:
                self._tb.add_scalar(name, float(value), step)
        self._csv_file.flush()

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard_writer(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: the CSV file has the same numbers
        return None
    return SummaryWriter(log_dir=str(directory / "tensorboard"))


__all__ = ["ScalarLogger"]
