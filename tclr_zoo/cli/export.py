"""The commands that produce a model folder from something else: ``export`` (a model for
deployment: saved-model layout, ONNX graphs checked for TensorRT rules and parity, a Triton
repository) and ``convert`` (a checkpoint of the authors' TCLR code).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from ..constants import DATASET_LAYOUTS, FP16_NAME, FP32_NAME, HEADS, INT8_NAME, REFERENCE_ARCHS
from ..export.int8_options import (
    CALIB_CLIPS,
    CALIBRATION_METHODS,
    DEFAULT_METHOD,
    HELD_OUT_RULE,
    HOLDOUT_CLIPS,
    MIN_AGREEMENT,
    MIN_COSINE,
    MIN_FOLDER_VIDEOS,
    MIN_HELDOUT_VIDEOS,
    TIE_COSINE,
    TIE_PROBABILITY,
)
from .errors import exit_with_error, user_errors_exit_2
from .options import counted, pretrained_weights, random_init_option, report_skipped

TRITON_GRAPHS = {"fp32": FP32_NAME, "fp16": FP16_NAME, "int8": INT8_NAME}


@click.command("export")
@click.argument("model")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Export folder (saved-model layout; with --onnx also onnx/). Must not exist or be empty.")
@click.option("--onnx", "to_onnx", is_flag=True, help="Also write onnx/model.onnx, checked for graph rules and parity.")
@click.option("--fp16", is_flag=True,
              help="Also write onnx/model.fp16.onnx (float16 compute, float32 in/out); implies --onnx.")
@click.option("--opset", type=int, default=None,
              help="ONNX opset [default: 20, dynamo exporter, TensorRT 10]; 17 uses the TorchScript exporter "
                   "(TensorRT 8.x).")
@click.option("--head", type=click.Choice(HEADS), default="retrieval",
              show_default=True, help="What the graph outputs (one output, named after the head).")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Largest batch the graph accepts (the batch axis is dynamic, 1..N); parity runs at 1, 3 and N.")
@click.option("--triton", is_flag=True,
              help="Also write a Triton model repository in OUT/triton (onnxruntime platform, dynamic batching, "
                   "PREPROCESSING.md); implies --onnx. For TensorRT plans see export/triton_repository.py.")
@click.option("--int8", is_flag=True,
              help="Also write onnx/model.int8.onnx (onnxruntime: uint8 activations, int8 weights) and "
                   "onnx/model.int8.trt.onnx (TensorRT explicit quantization: symmetric int8), both from one "
                   "static calibration on --calibrate and gated on held-out clips; implies --onnx. A graph "
                   "that misses the gate fails the export (exit 1, nothing written).")
@click.option("--calibrate", "calibrate", metavar="SOURCE", type=click.Path(exists=True),
              help="With --int8: what to calibrate on, decoded and preprocessed as the SDK does for this model. "
                   f"A folder of at least {MIN_FOLDER_VIDEOS} videos (dealt alternately to calibration and the "
                   "held-out gate), a dataset root with --dataset (calibration from its train list, the gate on "
                   "its test list) or a .npy of preprocessed clips [N,3,T,H,W] (the first --calib-clips "
                   f"calibrate, the rest are held out). {HELD_OUT_RULE[0].upper()}{HELD_OUT_RULE[1:]}.")
@click.option("--dataset", type=click.Choice(DATASET_LAYOUTS), default=None,
              help="Read --calibrate as a dataset root of this layout (split 1).")
@click.option("--calib-clips", type=click.IntRange(min=1), default=CALIB_CLIPS, show_default=True,
              help="Clips to calibrate on (spread evenly over the calibration videos).")
@click.option("--holdout-clips", type=click.IntRange(min=MIN_HELDOUT_VIDEOS), default=HOLDOUT_CLIPS, show_default=True,
              help="Held-out clips the accuracy gate measures on (never calibration clips), spread over the "
                   "held-out videos.")
@click.option("--skip-bad", is_flag=True,
              help="With --int8: leave out --calibrate videos that cannot be decoded (named on stderr and in "
                   "onnx/export_report.json) instead of stopping at the first.")
@click.option("--calib-method", type=click.Choice(CALIBRATION_METHODS), default=DEFAULT_METHOD, show_default=True,
              help="How activation ranges are set: minmax (the range seen), entropy (TensorRT's KL threshold) "
                   "or percentile (99.999th); see export/README.md for what each measured.")
@click.option("--min-cosine", type=click.FloatRange(0, 1), default=MIN_COSINE, show_default=True,
              help="Gate: least mean cosine of int8 outputs to the fp32 graph's, on the held-out clips.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=MIN_AGREEMENT, show_default=True,
              help="Gate: least share of judged held-out clips whose int8 answer -- the nearest other held-out "
                   "video (embedding heads) or the top-1 class (logits) -- is fp32's or ties with it (fp32 "
                   f"scores it within {TIE_COSINE:g} cosine / {TIE_PROBABILITY:g} probability of its own pick). "
                   "A clip is judged when fp32 scores some answer below that: a wrong answer is possible.")
@click.option("--triton-graph", type=click.Choice(list(TRITON_GRAPHS)), default="fp32", show_default=True,
              help="The graph the Triton repository serves (fp16 needs --fp16, int8 needs --int8: the "
                   "onnxruntime int8 graph; for TensorRT build a plan with export/build_trt_engine.py --int8).")
@click.option("--triton-kind", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True,
              help="Where Triton runs it: auto = a GPU when the server has one, else the CPU.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder (only once every check passed).")
@random_init_option
@user_errors_exit_2
def export_cmd(model: str, out_dir: str, to_onnx: bool, fp16: bool, opset: int | None, head: str, max_batch: int,
               int8: bool, calibrate: str | None, dataset: str | None, calib_clips: int, holdout_clips: int,
               skip_bad: bool, calib_method: str, min_cosine: float, min_agreement: float, triton: bool,
               triton_graph: str, triton_kind: str, overwrite: bool, random_init: bool) -> None:
    """Export MODEL for deployment: a saved model folder, local-dir:PATH, a training checkpoint (.pt),
    hf-hub:ORG/REPO[@REV], a published arch.tag, or an architecture name with --random-init.

    Writes config.json + model.safetensors (+ model card); with --onnx also a single-file ONNX graph
    (input `video` [batch,3,T,H,W] float32, output named after --head), checked against the TensorRT
    graph rules and for parity with PyTorch in onnxruntime, and onnx/export_report.json. With --int8
    also two INT8 graphs.

    A failed check (graph rule, parity, int8 accuracy gate) exits with status 1, names the numbers and
    leaves no --out folder behind.

    \b
    Example:
      tclr-zoo export runs/demo/model --out exports/demo --onnx --fp16
      tclr-zoo export runs/demo/checkpoints/last.pt --out exports/demo-int8 --int8 --calibrate my_videos/
    """
    from ..atomic import exclusive_output
    from ..export.accuracy import AccuracyGateError
    from ..export.exporter import ExportError, export_model
    from ..export.graph_checks import GraphCheckError
    from ..export.int8_options import Int8Options
    from ..export.parity import ParityError
    from ..export.triton import TritonError

    _check_int8_usage(int8, calibrate, dataset, triton_graph, fp16=fp16, triton=triton, skip_bad=skip_bad)
    options = Int8Options(calibrate, dataset=dataset, calib_clips=calib_clips, holdout_clips=holdout_clips,
                          method=calib_method, min_cosine=min_cosine, min_agreement=min_agreement,
                          skip_bad=skip_bad) if int8 else None
    with exclusive_output(out_dir):  # one writer per export folder, for the export and its Triton repository
        try:
            report = export_model(model, out_dir, onnx=to_onnx or triton, fp16=fp16, opset=opset, head=head,
                                  max_batch=max_batch, overwrite=overwrite, int8=options,
                                  pretrained=pretrained_weights(random_init))
            if triton:
                _write_triton(report, out_dir, triton_graph, triton_kind)
        except (ExportError, TritonError) as err:
            exit_with_error(err)
        except GraphCheckError as err:
            _export_failed("graph check: " + "; ".join(f"[{rule}] {msg}" for rule, msg in err.violations), out_dir)
        except (ParityError, AccuracyGateError) as err:
            _export_failed(str(err), out_dir)
        _print_export_summary(report, out_dir)


def _check_int8_usage(int8: bool, calibrate: str | None, dataset: str | None, triton_graph: str, *, fp16: bool,
                      triton: bool, skip_bad: bool = False) -> None:
    """Flags that only make sense together, refused before any work (exit 2, one line)."""
    if int8 and not calibrate:
        raise click.UsageError("--int8 needs --calibrate SOURCE (a folder of videos, a dataset root with --dataset, "
                               "or a .npy of preprocessed clips)")
    if calibrate and not int8:
        raise click.UsageError("--calibrate is for --int8 (add --int8 to export the int8 graphs)")
    if dataset and not calibrate:
        raise click.UsageError("--dataset names the layout of --calibrate SOURCE; it needs --int8 --calibrate")
    if skip_bad and not calibrate:
        raise click.UsageError("--skip-bad skips unreadable --calibrate videos; it needs --int8 --calibrate")
    if triton_graph == "fp16" and not (fp16 and triton):
        raise click.UsageError("--triton-graph fp16 needs --triton and --fp16 (the fp16 graph must be exported)")
    if triton_graph == "int8" and not (int8 and triton):
        raise click.UsageError("--triton-graph int8 needs --triton and --int8 (the int8 graph must be exported)")


def _write_triton(report: dict, out_dir: str, graph: str, kind: str) -> None:
    """--triton: the Triton model repository in OUT/triton, serving the --triton-graph graph."""
    from pathlib import Path

    from ..export.triton import write_model_repository

    repo = write_model_repository(out_dir, Path(out_dir) / "triton", fp16=graph == "fp16", int8=graph == "int8",
                                  kind=f"KIND_{kind.upper()}", generator="tclr-zoo export --triton")
    served = report["files"][TRITON_GRAPHS[graph]]["path"]
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
    if "int8" in report:
        report_skipped(report["int8"]["calibration"].get("skipped", []) +
                       report["int8"]["gate"]["held_out"].get("skipped", []))
        click.echo(_int8_line(report["int8"]))


def _int8_line(int8: dict) -> str:
    """The calibration and the gate's figures per int8 graph, on one line."""
    from ..export.accuracy import describe_agreement

    gate = int8["gate"]
    held = gate["held_out"]
    skipped = len(int8["calibration"].get("skipped", [])) + len(held.get("skipped", []))
    skipped_note = f" ({counted(skipped, 'unreadable video')} skipped)" if skipped else ""
    graphs = "; ".join(f"{name} cosine mean {g['cosine_mean']:.5f} (min {g['cosine_min']:.5f}), "
                       f"{describe_agreement(g)}, {g['speedup_vs_fp32']:.2f}x the fp32 "
                       "graph's speed (onnxruntime CPU)" for name, g in gate["graphs"].items())
    return (f"int8: {int8['method']} calibration on {int8['calibration_clips']} clips"
            f"{skipped_note}; gate passed on "
            f"{held['clips']} held-out clips of {held['videos']} videos: {graphs}")


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

    \b
    Example:
      tclr-zoo convert r3d18_ucf101_pretrained.pth converted/ --arch r3d_18
    """
    from ..hub.convert import convert_reference_checkpoint

    report = convert_reference_checkpoint(reference, out_dir, arch=arch, overwrite=overwrite, check=not no_check)
    check = (f"matches the reference network, max abs error {report['max_abs_error']:.2e}"
             if report.get("max_abs_error") is not None else "not checked (--no-check)")
    click.echo(f"converted {reference} ({arch}) -> {out_dir}: {check}")


__all__ = ["convert", "export_cmd"]
