"""The ``tclr-zoo`` command line. Thin: parse, call the library, print.

Exit status: 0 ok, 2 bad usage or bad input (one line on stderr naming the file and the problem),
1 unexpected failure (with a traceback, because that is a bug to report).
"""

from __future__ import annotations

import functools
import sys

import click

from .. import __version__
from ..constants import DATASET_LAYOUTS, EMBED_HEADS, HEADS, REFERENCE_ARCHS


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "bad usage or bad input" (exit 2), imported only when one is raised.

    Importing them up front would load torch and torchvision and make every `--help` take seconds.
    """
    from ..atomic import WriteError
    from ..inference.backends import BackendError
    from ..hub.convert import ConversionError
    from ..data.datasets import DatasetError
    from ..data.decode import VideoDecodeError
    from ..hub.format import ModelLoadError
    from ..hub.client import HubError
    from ..models.registry import ModelNotFoundError
    from ..train.checkpoint import CheckpointError
    from ..train.config import RecipeError

    from ..retrieval.index import IndexFormatError

    return (RecipeError, DatasetError, ModelNotFoundError, VideoDecodeError, CheckpointError, FileNotFoundError,
            FileExistsError, NotADirectoryError, PermissionError, ModelLoadError, BackendError, HubError,
            ConversionError, IndexFormatError, WriteError)


SKIP_BAD_HINT = "; pass --skip-bad to skip unreadable videos and record them in the output"


def user_errors_exit_2(func):
    """Turn a user mistake into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as err:
            if not isinstance(err, user_errors()):
                raise
            from ..data.decode import VideoDecodeError

            hint = SKIP_BAD_HINT if isinstance(err, VideoDecodeError) and kwargs.get("skip_bad") is False else ""
            click.echo(f"tclr-zoo: error: {err}{hint}", err=True)
            sys.exit(2)

    return wrapper


class OneLineUsageError(click.UsageError):
    """Click's usage errors (bad option value, missing argument) as one line, like every other user
    mistake, instead of the usage text, a hint and the message on four lines."""

    def __init__(self, err: click.UsageError) -> None:
        super().__init__(err.format_message(), err.ctx)

    def show(self, file=None) -> None:
        command = "tclr-zoo"
        if self.ctx is not None:  # the subcommand path, under the installed name (not "python -m ...")
            command += self.ctx.command_path[len(self.ctx.find_root().command_path):]
        click.echo(f"{command}: error: {self.format_message()} (see {command} --help)", file=file, err=True)


class Group(click.Group):
    """The command group: usage errors of the group and of every subcommand in one line, exit 2."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            raise err if isinstance(err, OneLineUsageError) else OneLineUsageError(err) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise err if isinstance(err, OneLineUsageError) else OneLineUsageError(err) from None


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


OVERWRITE_OUTPUTS = click.option("--overwrite", is_flag=True, help="Replace output files (or a non-empty --save "
                                                                  "folder) that already exist.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tclr-zoo")
def main() -> None:
    """Train, export and use TCLR video encoders."""


@main.command()
@click.argument("recipe", required=False)
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Run folder for checkpoints, logs, the saved model and results.json [default: runs/<recipe name>].")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/last.pt (schedule, optimiser, RNG).")
@click.option("--overwrite", is_flag=True, help="Start afresh even if OUT already holds a run (its files are replaced).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set train.epochs=3 --set data.root=/data/UCF101 (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs and CI).")
@user_errors_exit_2
def pretrain(recipe: str | None, out_dir: str | None, resume: bool, overwrite: bool, overrides: tuple[str, ...],
             no_progress: bool) -> None:
    """TCLR self-supervised pretraining from a RECIPE (a YAML file or a bundled name).

    Without RECIPE it runs the CPU demo: a small R3D trained on a generated synthetic action
    dataset for a few minutes, then kNN retrieval R@1 of the trained and of the randomly
    initialised network. Bundled recipes: see `tclr-zoo list --recipes`.
    """
    from ..train.config import load_recipe
    from ..train.pretrain import pretrain as run_pretrain

    loaded = load_recipe(recipe, list(overrides))
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    results = run_pretrain(loaded, out_dir or f"runs/{loaded.name}", resume=resume, overwrite=overwrite,
                           progress=not no_progress, log=click.echo)
    if "knn_r1" in results:
        click.echo(f"R@1 trained {results['knn_r1']:.3f} vs random init {results['knn_r1_random_init']:.3f} "
                   f"({_knn_settings(results.get('knn_protocol'))})")


def _knn_settings(protocol: dict | None) -> str:
    if not protocol:
        return "settings not recorded"
    return (f"{protocol['dataset']}, split {protocol['split']}, {protocol['clips']} clips x {protocol['frames']} "
            f"frames at stride {protocol['stride']}, {protocol['pooling']} pooling")


def _parse_settings(items: tuple[str, ...]) -> dict:
    import yaml

    settings = {}
    for item in items:
        if "=" not in item:
            raise click.UsageError(f"--set {item!r} must look like name=value")
        key, value = item.split("=", 1)
        settings[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return settings


def _write_result(result: dict, out: str | None) -> None:
    import json

    from ..atomic import atomic_write
    from ..train.protocols import format_table

    click.echo(format_table(result))
    if out:
        atomic_write(out, lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
        click.echo(f"wrote {out}")


def protocol_run_options(func):
    """The options shared by `eval` and `finetune`: --save, --overwrite, --device, --no-progress;
    exit 2 on user errors."""
    options = (
        click.option("--save", "save_dir", type=click.Path(file_okay=False),
                     help="linear/finetune: save the trained model (with its classifier and class names) here."),
        OVERWRITE_OUTPUTS,
        click.option("--device", default="auto", show_default=True, callback=checked_device,
                     help="cpu, cuda, cuda:N or auto."),
        click.option("--no-progress", is_flag=True, help="No progress bars."),
    )
    func = user_errors_exit_2(func)
    for option in reversed(options):
        func = option(func)
    return func


@main.command("eval")
@click.argument("model")
@click.option("--protocol", type=click.Choice(["retrieval", "linear", "finetune"]), required=True,
              help="retrieval: kNN R@k (TCLR's nearest-neighbour protocol, README 'Evaluating an encoder'); "
                   "linear: frozen backbone + linear layer; finetune: all layers.")
@click.option("--dataset", type=click.Choice(DATASET_LAYOUTS), required=True,
              help="Layout of --root (the official one for ucf101, hmdb51, kinetics400).")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--split", default=1, show_default=True, help="Official split number (UCF101/HMDB51: 1-3).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), callback=output_file(".json"),
              help="Write the result as JSON here.")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Protocol setting, e.g. --set epochs=10 --set test_clips=10 --set pooling=pooled. Clip "
                   "settings left unset (frames, stride, size, crop_fraction; retrieval: clips) are the model's own.")
@protocol_run_options
def eval_cmd(model: str, protocol: str, dataset: str, root: str, split: int, out_file: str | None,
             settings: tuple[str, ...], save_dir: str | None, overwrite: bool, device: str, no_progress: bool) -> None:
    """Evaluate MODEL (a saved model folder or a pretraining checkpoint) on a dataset.

    Prints the protocol's settings and a table of the metrics and, with --out, writes them as JSON
    with the model id, the protocol's parameters, dataset, split and library versions.
    """
    from ..train.runtime import resolve_device
    from ..train.protocols import run_protocol

    refuse_existing(out_file, overwrite=overwrite)
    result = run_protocol(model, protocol, dataset, root, split=split, overrides=_parse_settings(settings),
                          device=resolve_device(device), progress=not no_progress, log=click.echo, save_dir=save_dir,
                          overwrite=overwrite)
    _write_result(result, out_file)


@main.command()
@click.argument("recipe")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), callback=output_file(".json"),
              help="Write the result as JSON here.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value: model=PATH, data.root=DIR, settings.epochs=10 (repeatable).")
@protocol_run_options
def finetune(recipe: str, out_file: str | None, overrides: tuple[str, ...], save_dir: str | None, overwrite: bool,
             device: str, no_progress: bool) -> None:
    """Run a downstream RECIPE (fine-tuning, linear probe or retrieval; a YAML file or a bundled name).

    The recipe names the encoder (model: PATH), the dataset (data: dataset, root, split), the
    protocol settings and the paper's number to compare with; see recipes/finetune_*.yaml.
    """
    from ..train.runtime import resolve_device
    from ..train.protocols import load_protocol_recipe, run_protocol

    refuse_existing(out_file, overwrite=overwrite)
    loaded = load_protocol_recipe(recipe, list(overrides))
    data = loaded["data"]
    result = run_protocol(str(loaded["model"]), loaded["protocol"], data["dataset"], data["root"],
                          split=data.get("split", 1), overrides=loaded.get("settings") or {},
                          device=resolve_device(device), progress=not no_progress, log=click.echo, save_dir=save_dir,
                          overwrite=overwrite)
    result["recipe"], result["reference"] = loaded.get("name"), loaded.get("reference", {})
    _write_result(result, out_file)
    for key, value in result["reference"].items():
        click.echo(f"reference {key}: {value}")


@main.command("export")
@click.argument("model")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Export folder (saved-model layout; with --onnx also onnx/). Must not exist or be empty.")
@click.option("--onnx", "to_onnx", is_flag=True, help="Also write onnx/model.onnx, checked for graph rules and parity.")
@click.option("--fp16", is_flag=True, help="Also write onnx/model.fp16.onnx (float16 compute, float32 in/out); implies --onnx.")
@click.option("--opset", type=int, default=None,
              help="ONNX opset [default: 20, dynamo exporter, TensorRT 10]; 17 uses the TorchScript exporter (TensorRT 8.x).")
@click.option("--head", type=click.Choice(HEADS), default="retrieval",
              show_default=True, help="What the graph outputs (one output, named after the head).")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Largest batch the graph accepts (the batch axis is dynamic, 1..N); parity runs at 1, 3 and N.")
@click.option("--triton", is_flag=True,
              help="Also write a Triton model repository in OUT/triton (onnxruntime platform, dynamic batching, "
                   "PREPROCESSING.md); implies --onnx. For TensorRT plans see export/triton_repository.py.")
@click.option("--triton-graph", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="The graph the Triton repository serves (fp16 needs --fp16).")
@click.option("--triton-kind", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True,
              help="Where Triton runs it: auto = a GPU when the server has one, else the CPU.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder (only once every check passed).")
@user_errors_exit_2
def export_cmd(model: str, out_dir: str, to_onnx: bool, fp16: bool, opset: int | None, head: str, max_batch: int,
               triton: bool, triton_graph: str, triton_kind: str, overwrite: bool) -> None:
    """Export MODEL for deployment: a saved model folder, local-dir:PATH, hf-hub:ORG/REPO[@REV], a
    registry name (e.g. r3d_18.tclr_ucf101) or a training checkpoint (.pt).

    Writes config.json + model.safetensors (+ model card); with --onnx also a single-file ONNX graph
    (input `video` [batch,3,T,H,W] float32, output named after --head), checked against the TensorRT
    graph rules and for parity with PyTorch in onnxruntime, and onnx/export_report.json. A failed
    check exits with status 1 and leaves no --out folder behind.
    """
    from ..export.exporter import ExportError, export_model
    from ..export.graph_checks import GraphCheckError
    from ..export.parity import ParityError
    from ..export.triton import TritonError, write_model_repository

    if triton_graph == "fp16" and not (fp16 and triton):
        raise click.UsageError("--triton-graph fp16 needs --triton and --fp16 (the fp16 graph must be exported)")
    try:
        report = export_model(model, out_dir, onnx=to_onnx or triton, fp16=fp16, opset=opset, head=head,
                              max_batch=max_batch, overwrite=overwrite)
        if triton:
            from pathlib import Path

            repo = write_model_repository(out_dir, Path(out_dir) / "triton", fp16=triton_graph == "fp16",
                                          kind=f"KIND_{triton_kind.upper()}", generator="tclr-zoo export --triton")
            served = report["files"]["model.fp16.onnx" if triton_graph == "fp16" else "model.onnx"]["path"]
            click.echo(f"triton: wrote {repo}, serving {served} ({triton_graph}, KIND_{triton_kind.upper()}; "
                       f"serve with: tritonserver --model-repository {repo.parent})")
    except (ExportError, TritonError) as err:
        click.echo(f"tclr-zoo: error: {err}", err=True)
        sys.exit(2)
    except GraphCheckError as err:
        rules = "; ".join(f"[{rule}] {msg}" for rule, msg in err.violations)
        click.echo(f"tclr-zoo: export failed, graph check: {rules} (nothing written to {out_dir})", err=True)
        sys.exit(1)
    except ParityError as err:
        click.echo(f"tclr-zoo: export failed, {err} (nothing written to {out_dir})", err=True)
        sys.exit(1)
    _print_export_summary(report, out_dir)


def _print_export_summary(report: dict, out_dir: str) -> None:
    from pathlib import Path

    files = sorted(str(p.relative_to(out_dir)) for p in Path(out_dir).rglob("*") if p.is_file())
    click.echo(f"exported head {report['head']} to {out_dir}: {', '.join(files)}")
    if "parity" not in report:
        return
    click.echo(f"onnx: opset {report['opset']} ({report['exporter']} exporter), IR {report['ir_version']}, "
               f"batch 1..{report['max_batch']}, output {report['output']['name']} {report['output']['shape']}")
    for name, result in report["parity"].items():
        rows = result["batches"]
        worst_err = max(b["max_abs_error"] for b in rows)
        worst_cos = min(b["min_cosine"] for b in rows)
        speed = ", ".join(f"b{b['batch_size']} {b['ort_seconds'] * 1e3:.0f}/{b['torch_seconds'] * 1e3:.0f} ms"
                          for b in rows)
        click.echo(f"{name}: parity ok at batch {[b['batch_size'] for b in rows]}: max abs error {worst_err:.2e}, "
                   f"min cosine {worst_cos:.7f}; ORT/PyTorch CPU {speed}")


def model_options(func):
    """The options every inference command shares: --backend, --device, --batch-size, --no-progress."""
    options = (
        click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
                     help="onnx runs the folder's exported graph (tclr-zoo export --onnx) in onnxruntime."),
        click.option("--device", default=None, callback=checked_device,
                     help="cpu, cuda, cuda:N [default: a GPU when present]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Clips per forward pass (windows of several videos share batches)."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("--skip-bad", is_flag=True,
                     help="Record unreadable videos in the output and go on, instead of stopping at the first."),
    )
    func = user_errors_exit_2(func)
    for option in reversed(options):
        func = option(func)
    return func


def _load(model: str, backend: str, device: str | None):
    from ..inference.model import load_model

    return load_model(model, backend=backend, device=device)


def _report_failed(failed: list[dict]) -> None:
    for item in failed:
        click.echo(f"tclr-zoo: skipped {item['path']}: {item['reason']}", err=True)


@main.command()
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              callback=output_file(".safetensors", ".npy"),
              help="FILE.safetensors (embeddings + metadata) or FILE.npy (+ FILE.json with paths and model id).")
@click.option("--head", type=click.Choice(EMBED_HEADS), default="retrieval",
              show_default=True, help="retrieval: TCLR's temporal feature (kNN protocol); backbone: pooled "
                                      "features; projection: the contrastive head.")
@OVERWRITE_OUTPUTS
@model_options
def embed(model: str, videos: tuple[str, ...], out_file: str, head: str, overwrite: bool, backend: str,
          device: str | None, batch_size: int, no_progress: bool, skip_bad: bool) -> None:
    """Embed VIDEOS (files, or folders searched recursively) with MODEL, one row per video.

    Each video is cut into back-to-back clips (the model's frames and stride), embedded, and the
    clip embeddings are averaged (and re-normalised for retrieval/projection). MODEL: a registry
    name, hf-hub:ORG/REPO[@REV], local-dir:PATH or a saved model folder.
    """
    from pathlib import Path

    from .batch import embed_files, output_metadata, save_embeddings
    from ..data.layouts import find_videos

    sidecar = Path(out_file).with_suffix(".json") if out_file.lower().endswith(".npy") else None
    refuse_existing(out_file, sidecar, overwrite=overwrite)
    paths = find_videos(videos)
    loaded = _load(model, backend, device)
    result = embed_files(loaded, paths, head=head, batch_size=batch_size, skip_bad=skip_bad, progress=not no_progress)
    metadata = output_metadata(loaded, head, result)
    metadata["dim"] = loaded.config["embedding_dims"][head]
    written = save_embeddings(out_file, result, metadata)
    _report_failed(result.failed)
    click.echo(f"embedded {len(result.paths)} videos ({len(result.failed)} skipped) -> "
               f"{', '.join(map(str, written))} [{metadata['dim']}-d, head {head}]")


@main.command()
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Labels per video.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), callback=output_file(".json"),
              help="Also write the results as JSON here.")
@OVERWRITE_OUTPUTS
@model_options
def classify(model: str, videos: tuple[str, ...], top_k: int, json_file: str | None, overwrite: bool, backend: str,
             device: str | None, batch_size: int, no_progress: bool, skip_bad: bool) -> None:
    """Classify VIDEOS with MODEL (a model with a classifier: tclr-zoo eval --protocol linear|finetune --save).

    Prints the top-k labels with probabilities per video (softmax averaged over its clips).
    """
    import json

    from ..atomic import atomic_write
    from .batch import classify_files
    from ..data.layouts import find_videos

    refuse_existing(json_file, overwrite=overwrite)
    paths = find_videos(videos)
    loaded = _load(model, backend, device)
    result = classify_files(loaded, paths, top_k=top_k, batch_size=batch_size, skip_bad=skip_bad,
                            progress=not no_progress)
    for path, top in zip(result.paths, result.rows):
        click.echo(f"{path}: " + ", ".join(f"{label} {p:.3f}" for label, p in top))
    _report_failed(result.failed)
    if json_file:
        payload = {"model_id": loaded.model_id, "revision": loaded.revision, "failed": result.failed,
                   "results": [{"path": p, "top": [{"label": lb, "probability": pr} for lb, pr in top]}
                               for p, top in zip(result.paths, result.rows)]}
        atomic_write(json_file, lambda f: f.write((json.dumps(payload, indent=2) + "\n").encode()))


@main.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the whole config.json instead of a summary.")
@user_errors_exit_2
def info(model: str, as_json: bool) -> None:
    """Describe MODEL without running it: architecture, embeddings, preprocessing, export, and the
    measured results with the protocol settings of each.

    MODEL: a saved model folder, local-dir:PATH, hf-hub:ORG/REPO[@REV], an architecture or arch.tag
    name, or a pretraining checkpoint (.pt).
    """
    import json

    from ..inference.info import describe, model_summary

    config, source = describe(model)
    click.echo(json.dumps(config, indent=2) if as_json else model_summary(config, source))


@main.command()
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--arch", type=click.Choice(REFERENCE_ARCHS), required=True,
              help="The network the reference checkpoint holds.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT_DIR (only once the conversion passed).")
@click.option("--no-check", is_flag=True, help="Skip comparing the converted model with the rebuilt reference network.")
@user_errors_exit_2
def convert(reference: str, out_dir: str, arch: str, overwrite: bool, no_check: bool) -> None:
    """Convert a checkpoint of the authors' TCLR code (REFERENCE.pth) into a saved model folder.

    The file is read without running its pickled code (an allow-list of the few classes those
    files hold); keys are mapped, the TCLR layer4 change is checked, the source's sha256 and the
    BGR preprocessing are recorded in config.json, and the result is compared with the reference
    network on random clips.
    """
    from ..hub.convert import convert_reference_checkpoint

    report = convert_reference_checkpoint(reference, out_dir, arch=arch, overwrite=overwrite, check=not no_check)
    check = (f"matches the reference network, max abs error {report['max_abs_error']:.2e}"
             if report.get("max_abs_error") is not None else "not checked (--no-check)")
    click.echo(f"converted {reference} ({arch}) -> {out_dir}: {check}")


@main.command()
@click.argument("model")
@click.option("--revision", default=None, help="Branch, tag or commit sha (or write hf-hub:ORG/REPO@REV).")
@user_errors_exit_2
def download(model: str, revision: str | None) -> None:
    """Download MODEL (hf-hub:ORG/REPO[@REV] or a published arch.tag name) into the Hub cache.

    Fetches config, weights, card and the exported onnx/ folder, so that machines without network
    can load the model with HF_HUB_OFFLINE=1 after the cache (HF_HOME or HF_HUB_CACHE) is copied.
    """
    from ..hub.client import download as hub_download
    from ..models.pretrained import get_pretrained

    repo = model[len("hf-hub:"):] if model.startswith("hf-hub:") else get_pretrained(model).repo_id
    repo, _, pinned = repo.partition("@")
    folder, commit = hub_download(repo, revision or pinned or None, progress=True)
    click.echo(f"hf-hub:{repo}@{commit} cached in {folder}")


@main.command()
@click.argument("model")
@click.argument("repo_id")
@click.option("--revision", default=None, help="Branch to commit to [default: main].")
@click.option("--message", default=None, help="Commit message.")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@user_errors_exit_2
def push(model: str, repo_id: str, revision: str | None, message: str | None, private: bool) -> None:
    """Upload MODEL (a saved model or export folder) to the Hub repository REPO_ID (ORG/NAME).

    Uploads config.json, model.safetensors, the model card and, when present, the onnx/ folder.
    Authenticate with `hf auth login` or HF_TOKEN; HF_ENDPOINT selects another Hub.
    """
    from ..inference.model import load_model

    loaded = load_model(model)
    url = loaded.push_to_hub(repo_id, revision=revision, commit_message=message, private=private)
    click.echo(f"pushed {model} -> {url}")


@main.group()
def index() -> None:
    """Build and search a nearest-neighbour index of video embeddings."""


@index.command("build")
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Index folder to write (embeddings.safetensors + manifest.json).")
@click.option("--head", type=click.Choice(EMBED_HEADS), default="retrieval",
              show_default=True, help="Which embedding to index.")
@click.option("--windows", is_flag=True, help="One row per sliding window (with start/end seconds), not per video.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage precision (float16 halves memory; scores are computed in float32).")
@click.option("--overwrite", is_flag=True, help="Replace an existing index folder (and discard a partial build).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted build from the rows it saved (a hidden .OUT.partial folder).")
@click.option("--save-every", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Seconds between saves of the rows embedded so far (what --resume continues from).")
@model_options
def index_build(model: str, videos: tuple[str, ...], out_dir: str, head: str, windows: bool, dtype: str,
                overwrite: bool, resume: bool, save_every: float, backend: str, device: str | None, batch_size: int,
                no_progress: bool, skip_bad: bool) -> None:
    """Embed VIDEOS (files, or folders searched recursively) with MODEL and save an index to --out.

    The index records the model id and revision and refuses to mix in embeddings of another model.
    The rows embedded so far are saved beside --out every --save-every seconds, so an interrupted
    build continues with --resume; --out itself is written once, atomically, at the end.
    """
    import shutil

    from ..retrieval.build import build_index_resumable, partial_index_dir
    from ..data.layouts import find_videos

    refuse_existing(out_dir, overwrite=overwrite, kind="folder")
    partial = partial_index_dir(out_dir)
    if partial.exists() and not (resume or overwrite):
        raise FileExistsError(f"{out_dir}: an interrupted build left its rows in {partial}; pass --resume to "
                              "continue it or --overwrite to start afresh")
    paths = find_videos(videos)
    loaded = _load(model, backend, device)
    built, resumed = build_index_resumable(loaded, paths, out_dir, resume=resume, save_every=save_every, head=head,
                                           batch_size=batch_size, progress=not no_progress, skip_bad=skip_bad,
                                           windows=windows, dtype=dtype)
    built.save(out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    _report_failed([{"path": p, "reason": r} for p, r in built.skipped])
    again = f", {resumed} of them from the interrupted build" if resumed else ""
    videos_done = len(paths) - len(built.skipped)
    rows = f"{len(built)} windows of {videos_done} videos" if windows else f"{videos_done} videos"
    click.echo(f"indexed {rows} ({len(built.skipped)} skipped{again}) with {loaded.model_id} -> {out_dir}")


@index.command("search")
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours to return.")
@click.option("--model", default=None,
              help="Model to embed QUERY with [default: the one recorded in the index].")
@click.option("--contact-sheet", "sheet", type=click.Path(dir_okay=False), callback=output_file(".png"),
              help="Write a PNG of the query's and the neighbours' middle frames here.")
@OVERWRITE_OUTPUTS
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Backend that embeds QUERY.")
@click.option("--device", default=None, callback=checked_device,
              help="cpu, cuda, cuda:N [default: a GPU when present].")
@user_errors_exit_2
def index_search(index_dir: str, query: str, k: int, model: str | None, sheet: str | None, overwrite: bool,
                 as_json: bool, backend: str, device: str | None) -> None:
    """Print the K nearest neighbours of QUERY in the index at INDEX_DIR.

    QUERY is a video file (embedded with the index's model, or --model) or the id of a row already
    in the index.
    """
    import json
    from pathlib import Path

    from ..retrieval.index import VideoIndex
    from ..retrieval.sheets import contact_sheet

    refuse_existing(sheet, overwrite=overwrite)
    found = VideoIndex.load(index_dir)
    if Path(query).is_file():
        from ..retrieval.build import index_model

        try:
            hits = found.search(query, k, model=index_model(found, model, backend, device))[0]
        except ValueError as err:  # e.g. --model is not the model the index was built with
            click.echo(f"tclr-zoo: error: {err}", err=True)
            sys.exit(2)
        query_path = query
    elif query in found:
        hits = found.search(found.embeddings[found.row(query)].float(), k)[0]
        query_path = found.paths[found.row(query)]
    else:
        raise FileNotFoundError(f"{query}: neither a video file nor an id in {index_dir}")
    if as_json:
        click.echo(json.dumps([hit.__dict__ for hit in hits], indent=2))
    else:
        for rank, hit in enumerate(hits, 1):
            where = f" [{hit.start:.2f}-{hit.end:.2f} s]" if hit.start is not None else ""
            click.echo(f"{rank:3d}  {hit.score:.4f}  {hit.id}{where}")
    if sheet:
        contact_sheet(query_path, hits, sheet)
        click.echo(f"wrote {sheet}")


@main.command("list")
@click.argument("pattern", default="*")
@click.option("--recipes", is_flag=True, help="List the bundled recipes instead of architectures.")
@click.option("--pretrained", is_flag=True, help="List the published weights (arch.tag names and Hub repos).")
@user_errors_exit_2
def list_cmd(pattern: str, recipes: bool, pretrained: bool) -> None:
    """List architectures (matching a shell PATTERN, e.g. 'r3d_*'), published weights or bundled recipes."""
    from ..models.registry import get_arch, list_models
    from ..train.config import bundled_recipes

    if recipes:
        for kind, command in (("pretrain", "tclr-zoo pretrain"), ("downstream", "tclr-zoo finetune")):
            for name in bundled_recipes(kind):
                click.echo(f"{name:26s} {command}")
        return
    if pretrained:
        from ..models.pretrained import get_pretrained, list_pretrained

        names = list_pretrained(pattern if "." in pattern or pattern == "*" else f"{pattern}.*")
        for name in names:
            spec = get_pretrained(name)
            state = "" if spec.published else "  [not published yet]"
            click.echo(f"{name:24s} hf-hub:{spec.repo_id:32s} {spec.description}{state}")
        if any(not get_pretrained(name).published for name in names):
            click.echo("\nNot published yet: these repositories do not exist on the Hub, so loading the names fails. "
                       "To fill one, download the authors' checkpoint (github.com/DAVEISHAN/TCLR), then\n"
                       "  tclr-zoo convert CHECKPOINT.pth converted/ --arch r3d_18\n"
                       "  tclr-zoo push converted/ ORG/tclr-r3d18-ucf101\n"
                       "and set TCLR_ZOO_HUB_ORG=ORG to load the names from your organisation.")
        if not names:
            raise click.UsageError(f"no published weights match {pattern!r}")
        return
    names = list_models(pattern)
    if not names:
        raise click.UsageError(f"no architecture matches {pattern!r}; architectures: {', '.join(list_models())}")
    for name in names:
        click.echo(f"{name:18s} {get_arch(name).description}")

