"""``python -m tclr_zoo.data.synthetic [ROOT] [--num-classes N ...]``: generate the synthetic dataset."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Sequence

from . import LAYOUTS, SyntheticConfig, generate


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - convenience CLI
    import argparse

    p = argparse.ArgumentParser(description="Generate the synthetic TCLR action dataset.")
    p.add_argument("root", nargs="?", default=None, help="output directory (default: cache dir)")
    for f, v in asdict(SyntheticConfig()).items():
        if f == "layout":
            p.add_argument("--layout", choices=LAYOUTS, default=v)
        else:
            p.add_argument(f"--{f.replace('_', '-')}", type=int, default=v)
    a = p.parse_args(argv)
    cfg = SyntheticConfig(**{f: getattr(a, f) for f in asdict(SyntheticConfig())})
    t0 = time.perf_counter()
    out = generate(a.root, cfg, progress=True)
    print(f"{out} ({cfg.num_videos} videos, {time.perf_counter() - t0:.1f} s)")


__all__: list[str] = []


if __name__ == "__main__":  # pragma: no cover
    _main()
