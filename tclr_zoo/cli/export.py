"""The commands that produce a model folder from something else: ``export`` (a model for
deployment: saved-model layout, ONNX graphs checked for TensorRT rules and parity, a Triton
repository) and ``convert`` (a checkpoint of the authors' TCLR code).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from ..constants import FP16_NAME, FP32_NAME, HEADS, REFERENCE_ARCHS
from .errors import exit_with_error, user_errors_exit_2


@click.command("export")
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
    from ..export.triton import TritonError

    if triton_graph == "fp16" and not (fp16 and triton):
        raise click.UsageError("--triton-graph fp16 needs --triton and --fp16 (the fp16 graph must be exported)")
    try:
        report = export_model(model, out_dir, onnx=to_onnx or triton, fp16=fp16, opset=opset, head=head,
                              max_batch=max_batch, overwrite=overwrite)
        if triton:
            _write_triton(report, out_dir, triton_graph, triton_kind)
    except (ExportError, TritonError) as err:
        exit_with_error(err)
    except GraphCheckError as err:
        _export_failed("graph check: " + "; ".join(f"[{rule}] {msg}" for rule, msg in err.violations), out_dir)
    except ParityError as err:
        _export_failed(str(err), out_dir)
    _print_export_summary(report, out_dir)


def _write_triton(report: dict, out_dir: str, graph: str, kind: str) -> None:
    """--triton: the Triton model repository in OUT/triton, serving the --triton-graph graph."""
    from pathlib import Path

    from ..export.triton import write_model_repository

    repo = write_model_repository(out_dir, Path(out_dir) / "triton", fp16=graph == "fp16",
                                  kind=f"KIND_{kind.upper()}", generator="tclr-zoo export --triton")
    served = report["files"][FP16_NAME if graph == "fp16" else FP32_NAME]["path"]
    click.echo(f"triton: wrote {repo}, serving {served} ({graph}, KIND_{kind.upper()}; "
               f"serve with: tritonserver --model-repository {repo.parent})")


def _export_failed(why: str, out_dir: str) -> NoReturn:
    """A check the export did not pass: one line on stderr, exit status 1 (nothing was written)."""
    click.echo(f"tclr-zoo: export failed, {why} (nothing written to {out_dir})", err=True)
    sys.exit(1)


def _print_export_summary(report: dict, out_dir: str) -> None:
    from pathlib import Path

    files = sorted(str(p.relative_to(out_dir)) for p in Path(out_dir).rglob("*") if p.is_file())
    click.echo(f"exported head {report['head']} to {out_dir}: {', '.join(files)}")
    if "parity" not in report:
        return
    click.echo(f"onnx: opset {report['opset']} ({report['exporter']} exporter), IR {report['ir_version']}, "
               f"batch 1..{report['max_batch']}, output {report['output']['name']} {report['output']['shape']}")
    for name, result in report["parity"].items():
        click.echo(f"{name}: {_parity_line(result['batches'])}")


def _parity_line(rows: list[dict]) -> str:
    """One graph's parity with PyTorch over the batch sizes checked: worst error, worst cosine, speed."""
    worst_err = max(b["max_abs_error"] for b in rows)
    worst_cos = min(b["min_cosine"] for b in rows)
    speed = ", ".join(f"b{b['batch_size']} {b['ort_seconds'] * 1e3:.0f}/{b['torch_seconds'] * 1e3:.0f} ms"
                      for b in rows)
    return (f"parity ok at batch {[b['batch_size'] for b in rows]}: max abs error {worst_err:.2e}, "
            f"min cosine {worst_cos:.7f}; ORT/PyTorch CPU {speed}")


@click.command()
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


__all__ = ["convert", "export_cmd"]
