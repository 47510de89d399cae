"""What several ``tclr-zoo`` commands share: options and their parse-time checks, the "may I write
this output?" check made before any work, and the helpers of the inference commands.

* :func:`checked_device` / :func:`output_file`: click callbacks that reject a missing device or a
  wrongly named output file while the command line is parsed (exit 2).
* :func:`refuse_existing` / :data:`OVERWRITE_OUTPUTS`: no output replaces a user's file unless
  ``--overwrite``; :func:`exclusive_outputs`: no two commands write one output at once;
  :func:`write_json` writes a JSON output atomically.
* :func:`model_options`, :func:`load_for_inference`, :func:`report_skipped`: the options of the
  commands that run a model over videos (embed, classify, index build), and what consumes them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

from .errors import user_errors_exit_2


def checked_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--device``, checked while the command line is parsed: a device this machine does not have is
    a usage error (exit 2), not a failure after the model was loaded."""
    if value is None or value == "auto":
        return value
    import torch

    try:
        device = torch.device(value)
    except RuntimeError:
        raise click.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise click.BadParameter(f"{value!r}: this machine has no CUDA device; use --device cpu")
        if device.index is not None and device.index >= count:
            raise click.BadParameter(f"{value!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    elif device.type != "cpu":
        raise click.BadParameter(f"{value!r}: only cpu and cuda devices are supported")
    return value


def output_file(*suffixes: str):
    """A click callback: an output file name must end in one of ``suffixes`` (checked before any work)."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and not value.lower().endswith(suffixes):
            raise click.BadParameter(f"{value}: the name must end in {' or '.join(suffixes)}")
        return value

    return check


def refuse_existing(*paths, overwrite: bool, kind: str = "file") -> None:
    """Before any work: no output may replace a user's file (or fill a non-empty folder) unless --overwrite."""
    from ..atomic import refuse_to_replace

    for path in paths:
        if path is not None:
            refuse_to_replace(path, overwrite=overwrite, kind=kind)


@contextlib.contextmanager
def exclusive_outputs(*paths: str | os.PathLike | None) -> Iterator[None]:
    """Be the only writer of every output in ``paths`` (``None``: not asked for) for the block, taken
    first thing: a second command writing one of them is refused at once, in one line naming the
    running one (``atomic.exclusive_output``, exit 2), instead of both writing it."""
    from ..atomic import exclusive_output

    with contextlib.ExitStack() as held:
        for path in paths:
            if path is not None:
                held.enter_context(exclusive_output(path))
        yield


def write_json(path: str | os.PathLike, payload: object) -> None:
    """Write ``payload`` as indented JSON (plus a newline) to ``path``, atomically."""
    import json

    from ..atomic import atomic_write

    atomic_write(path, lambda f: f.write((json.dumps(payload, indent=2) + "\n").encode()))


OVERWRITE_OUTPUTS = click.option("--overwrite", is_flag=True, help="Replace output files (or a non-empty --save "
                                                                  "folder) that already exist.")


def with_options(*options):
    """A decorator: ``options`` (click decorators, in --help order) and exit 2 on user errors."""

    def decorate(func):
        func = user_errors_exit_2(func)
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


_MODEL_OPTIONS = with_options(
    click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
                 help="onnx runs the folder's exported graph (tclr-zoo export --onnx) in onnxruntime."),
    click.option("--device", default=None, callback=checked_device,
                 help="cpu, cuda, cuda:N [default: a GPU when present]."),
    click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
                 help="Clips per forward pass (windows of several videos share batches)."),
    click.option("--workers", type=click.IntRange(min=0), default=None,
                 help="Processes that decode videos while the model runs (0: decode in the main process) "
                      "[default: 2 on the CPU, up to 8 with a GPU, 0 for one video].", show_default=False),
    click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16", "int8"]), default="fp32",
                 show_default=True,
                 help="torch backend: fp32 or bf16 (bfloat16 autocast, for GPUs); onnx backend: fp32, fp16 (the "
                      "exported float16 graph) or int8 (the calibrated int8 graph of export --int8)."),
    click.option("--no-progress", is_flag=True, help="No progress bar."),
    click.option("--skip-bad", is_flag=True,
                 help="Record unreadable videos in the output and go on, instead of stopping at the first."),
)


def model_options(func):
    """The options every inference command shares: --backend, --device, --batch-size, --workers,
    --precision, --no-progress, --skip-bad; exit 2 on user errors."""
    return _MODEL_OPTIONS(func)


def load_for_inference(model: str, backend: str, device: str | None, precision: str = "fp32"):
    """Load MODEL as ``--backend``, ``--device`` and ``--precision`` ask (torch is imported here, not at --help)."""
    from ..inference.model import load_model

    return load_model(model, backend=backend, device=device, precision=precision)


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun`` in the closing lines of the commands: "1 video", "3 videos"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def report_skipped(failed: list[dict]) -> None:
    """One stderr line per video that --skip-bad skipped: ``{"path", "reason"}`` items."""
    for item in failed:
        click.echo(f"tclr-zoo: skipped {item['path']}: {item['reason']}", err=True)


__all__ = ["OVERWRITE_OUTPUTS", "checked_device", "counted", "exclusive_outputs", "load_for_inference", "model_options",
           "output_file", "refuse_existing", "report_skipped", "with_options", "write_json"]
