"""What several ``tclr-zoo`` commands share: options and their parse-time checks, the "may I write
this output?" check made before any work, and the helpers of the inference commands.

* :func:`checked_device` / :func:`output_file`: click callbacks that reject a missing device or a
  wrongly named output file while the command line is parsed (exit 2).
* :func:`refuse_existing` / :func:`overwrite_option`: no output replaces a user's file unless
  ``--overwrite``; :func:`exclusive_outputs`: no two commands write one output at once;
  :func:`write_json` writes a JSON output atomically.
* One spelling per option across commands: :func:`top_k_option` (``-k/--top-k``) and
  :func:`json_option` (``--json FILE`` writes a file, ``--json -`` or a bare ``--json`` prints the
  JSON instead of the text), :func:`emit_json` does either.
* :func:`model_options`, :func:`load_for_inference`, :func:`report_skipped`: the options of the
  commands that run a model over videos (embed, classify, index build), and what consumes them;
  :func:`random_init_option` / :func:`pretrained_weights`: ``--random-init`` (seeded random weights for
  an architecture name) on every command that takes a MODEL;
  :func:`corpus_job_options` (``--resume``, ``--shard-videos``) and :data:`CLI_SPELLING` for the
  resumable ones (embed, index build).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import click

from ..constants import RANDOM_INIT_FLAG
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


def output_file(*suffixes: str, stdout: bool = False):
    """A click callback: an output file name must end in one of ``suffixes`` (checked before any work);
    with ``stdout``, ``-`` (print it) is fine too."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and not (stdout and value == "-") and not value.lower().endswith(suffixes):
            dash = " (or be -, to print it)" if stdout else ""
            raise click.BadParameter(f"{value}: the name must end in {' or '.join(suffixes)}{dash}")
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


def json_file(json_out: str | None) -> str | None:
    """The file ``--json`` writes (to lock and check before any work); None when it prints or is not given."""
    return None if json_out == "-" else json_out


def emit_json(target: str | None, payload: object) -> None:
    """``--json``'s output: printed with ``-``, else written to the file ``target`` (atomically)."""
    import json

    if target == "-":
        click.echo(json.dumps(payload, indent=2))
    elif target is not None:
        write_json(target, payload)


def json_option(what: str):
    """``--json [FILE|-]``, the same in every command: ``FILE`` gets ``what`` as JSON (the text is
    still printed); ``-`` -- or ``--json`` with no value, as the last option -- prints the JSON
    instead of the text."""
    return click.option("--json", "json_out", metavar="FILE|-", is_flag=False, flag_value="-", default=None,
                        callback=output_file(".json", stdout=True),
                        help=f"{what} as JSON: written to FILE (.json), or printed instead of the text with - "
                             "(or --json alone, as the last option).")


def overwrite_option(help: str):
    """``--overwrite``, its help saying which of the command's own outputs it replaces."""
    return click.option("--overwrite", is_flag=True, help=help)


#: ``--overwrite`` of eval and finetune (their --out file and --save folder).
OVERWRITE_OUTPUTS = click.option("--overwrite", is_flag=True, help="Replace output files (or a non-empty --save "
                                                                  "folder) that already exist.")


def top_k_option(*, default: int, help: str, max_k: int | None = None):
    """``-k/--top-k N``: how many labels or neighbours, the same option name in every command."""
    return click.option("-k", "--top-k", "top_k", type=click.IntRange(1, max_k), default=default, show_default=True,
                        help=help)


def with_options(*options):
    """A decorator: ``options`` (click decorators, in --help order) and exit 2 on user errors."""

    def decorate(func):
        func = user_errors_exit_2(func)
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


#: The seed of ``--random-init``'s weights: every run, and every torchrun process, builds the same
#: network, so an index or embeddings made with them can be searched and compared later.
RANDOM_INIT_SEED = 0


def random_init_option(func):
    """``--random-init``: the architecture MODEL names (``r3d_18``, or ``arch.tag``) with random weights,
    the baseline a trained model must beat (the SDK's ``pretrained=False``)."""
    return click.option(RANDOM_INIT_FLAG, "random_init", is_flag=True,
                        help=f"MODEL is an architecture name (tclr-zoo list): use it with random weights, seeded "
                             f"({RANDOM_INIT_SEED}) so that every run builds the same network.")(func)


def pretrained_weights(random_init: bool) -> bool:
    """``--random-init`` as the library's ``pretrained``, with the random weights seeded
    (:data:`RANDOM_INIT_SEED`): every run and every torchrun process builds the same network."""
    if random_init:
        import torch

        torch.manual_seed(RANDOM_INIT_SEED)
    return not random_init


_MODEL_OPTIONS = with_options(
    random_init_option,
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
    """The options every inference command shares: --random-init, --backend, --device, --batch-size,
    --workers, --precision, --no-progress, --skip-bad; exit 2 on user errors."""
    return _MODEL_OPTIONS(func)


def load_for_inference(model: str, backend: str, device: str | None, precision: str = "fp32",
                       random_init: bool = False):
    """Load MODEL as ``--random-init``, ``--backend``, ``--device`` and ``--precision`` ask (torch is
    imported here, not at --help)."""
    from ..inference.model import load_model

    return load_model(model, pretrained=pretrained_weights(random_init), backend=backend, device=device,
                      precision=precision)


def need_faiss() -> None:
    """``--approximate`` without FAISS: a usage error before any work (in the command line's terms),
    not an ImportError after it."""
    from ..retrieval.search import import_faiss

    try:
        import_faiss()
    except ImportError:
        raise click.UsageError("--approximate needs FAISS: pip install faiss-cpu (or leave --approximate out "
                               "for exact search)") from None


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun`` in the closing lines of the commands: "1 video", "3 videos"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def report_skipped(skipped: list) -> None:
    """One stderr line per video that --skip-bad skipped: ``Skipped(path, reason)`` records (or their
    JSON form, ``{"path", "reason"}``, as an export report holds them)."""
    for item in skipped:
        path, reason = (item["path"], item["reason"]) if isinstance(item, dict) else item
        click.echo(f"tclr-zoo: skipped {path}: {reason}", err=True)


#: How the library's corpus jobs spell ``resume`` and ``overwrite`` in their messages, for the CLI.
CLI_SPELLING = {"resume": "--resume", "overwrite": "--overwrite"}


def corpus_job_options(func):
    """The options of the resumable corpus commands (embed, index build): ``--resume``,
    ``--shard-videos``, and the engine (``--engine``, ``--ray-*``), handed to the command as
    ``engine`` and ``ray`` (a :class:`~tclr_zoo.inference.ray_engine.RayOptions`)."""
    from ..constants import CORPUS_ENGINES, RAY_VIDEOS_PER_TASK, SHARD_VIDEOS

    @functools.wraps(func)
    def with_engine(*args, engine: str, ray_address: str | None, ray_actors: int | None, ray_actor_cpus: float,
                    ray_decode_cpus: float, ray_videos_per_task: int, **kwargs):
        ray_flags = (("--ray-address", ray_address, None), ("--ray-actors", ray_actors, None),
                     ("--ray-actor-cpus", ray_actor_cpus, 1.0), ("--ray-decode-cpus", ray_decode_cpus, 1.0),
                     ("--ray-videos-per-task", ray_videos_per_task, RAY_VIDEOS_PER_TASK))
        given = [flag for flag, value, default in ray_flags if value != default]
        if given and engine != "ray":
            raise click.UsageError(f"{', '.join(given)}: options of the Ray engine; add --engine ray")
        from ..inference.ray_engine import RayOptions  # here: --help stays free of torch

        ray = RayOptions(address=ray_address, actors=ray_actors, actor_cpus=ray_actor_cpus, decode_cpus=ray_decode_cpus,
                         videos_per_task=ray_videos_per_task)
        return func(*args, engine=engine, ray=ray, **kwargs)

    positive = click.FloatRange(min=0, min_open=True)
    options = [
        click.option("--resume", is_flag=True,
                     help="Continue an interrupted run from the units it finished (kept in the hidden folder "
                          ".OUT.shards beside --out), in one process, under torchrun or on Ray; refused when there "
                          "is nothing to continue."),
        click.option("--shard-videos", type=click.IntRange(min=1), default=SHARD_VIDEOS, show_default=True,
                     help="Videos per unit: the block a process embeds and saves in one file (what an interruption "
                          "can cost, per process). Keep it when resuming."),
        click.option("--engine", type=click.Choice(CORPUS_ENGINES), default="local", show_default=True,
                     help="local: this process (or each torchrun process) decodes and embeds. ray: decode on every "
                          "CPU of a Ray cluster and embed in model actors (GPU actors where the cluster has GPUs); "
                          "needs pip install 'tclr-zoo[ray]'."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="The Ray cluster to join [default: RAY_ADDRESS when set, else a local Ray for this run]."),
        click.option("--ray-actors", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Model actors [default: one per GPU of the cluster, else 1]."),
        click.option("--ray-actor-cpus", type=positive, default=1.0, show_default=True,
                     help="CPUs each model actor holds."),
        click.option("--ray-decode-cpus", type=positive, default=1.0, show_default=True,
                     help="CPUs each decode task holds (1 decodes at full speed: FFmpeg decodes on one thread)."),
        click.option("--ray-videos-per-task", type=click.IntRange(min=1), default=RAY_VIDEOS_PER_TASK,
                     show_default=True,
                     help="Videos each decode task decodes, one after the other (fewer, larger tasks cost Ray less; "
                          "1 for very long videos: a task holds the windows of its videos)."),
    ]
    for option in reversed(options):
        with_engine = option(with_engine)
    return with_engine


__all__ = ["CLI_SPELLING", "OVERWRITE_OUTPUTS", "RANDOM_INIT_SEED", "checked_device", "corpus_job_options", "counted",
           "emit_json", "exclusive_outputs", "json_file", "json_option", "load_for_inference", "model_options",
           "need_faiss", "output_file", "overwrite_option", "pretrained_weights", "random_init_option",
           "refuse_existing", "report_skipped", "top_k_option", "with_options", "write_json"]
