"""``export_model``: a model (or a saved-model folder / training checkpoint) -> a checked export folder.

Layout written to ``out_dir`` (the saved-model / Hub repo layout)::

    config.json            the model config + "export": head, input/output names and shapes, onnx files
    model.safetensors      the weights (loadable by ``hub.load_pretrained_dir``)
    README.md              the model card (copied from the source folder, else generated)
    onnx/model.onnx        with onnx=True: fp32 graph, input ``video`` [batch,3,T,H,W], output = the head name
    onnx/model.fp16.onnx   with fp16=True: float16 compute, float32 input/output
    onnx/model.int8.onnx   with int8=Int8Options(...): static INT8 QDQ for onnxruntime (U8S8)
    onnx/model.int8.trt.onnx  the same calibration as TensorRT's explicit-quantization graph (S8S8)
    onnx/export_report.json  graph reports, parity reports (batch 1, 3, max_batch), the int8 calibration
                           and accuracy gate, versions, timings

Everything is built in a temporary sibling folder and renamed to ``out_dir`` only after every graph and
parity check passed, so a failed export leaves nothing behind that looks like a valid one (and an
existing folder replaced with ``overwrite=True`` stays untouched until then). The same holds for the
INT8 graphs: one that breaks a graph rule or misses the accuracy gate fails the whole export.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import __version__
from ..atomic import exclusive_output, refuse_to_replace, staged_directory
from ..constants import CARD_NAME, FP16_NAME, FP32_NAME, HEADS, INT8_NAME, INT8_TRT_NAME, ONNX_DIR, REPORT_NAME
from ..hub.card import render_model_card
from ..hub.format import write_model_files
from ..hub.resolve import resolve_model
from ..models import TCLRModel
from ..models.outputs import build_head, check_head, head_output_dim
from ..models.preprocessing import Preprocessing
from .graph_checks import TRT8_MAX_OPSET, TRT10_MAX_OPSET, check_graph
from .int8_options import Int8Options
from .onnx_export import DEFAULT_OPSET, INPUT_NAME, TORCHSCRIPT_MAX_OPSET, export_onnx
from .parity import check_parity

ODD_BATCH = 3
PARITY_SEED = 0


class ExportError(ValueError):
    """A request that cannot be exported as asked (bad head, bad options). A non-empty ``out_dir``
    without ``overwrite`` raises ``atomic.OutputExistsError``, as for every other writer."""


def _one_writer(export):
    """Hold ``out_dir``'s writer lock (``atomic.exclusive_output``) for the whole export, taken before
    the model is even loaded: a second export into the same folder is refused at once, naming this
    one, instead of both writing it. Nested inside the CLI's own lock on the same folder."""

    @functools.wraps(export)
    def locked(model_ref_or_model, out_dir, **options):
        with exclusive_output(out_dir):
            return export(model_ref_or_model, out_dir, **options)

    return locked


@_one_writer
def export_model(model_ref_or_model: str | os.PathLike | TCLRModel | tuple[TCLRModel, dict], out_dir: str | os.PathLike,
                 *, onnx: bool = False, fp16: bool = False, opset: int | None = None, head: str = "retrieval",
                 max_batch: int = 8, sample_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
                 config: dict[str, Any] | None = None, overwrite: bool = False,
                 int8: Int8Options | None = None, pretrained: bool = True) -> dict[str, Any]:
    """Export a model; returns the report (also written to ``onnx/export_report.json`` with ``onnx``).

    The folder's writer lock is held for the whole export, and everything is written to a staging
    folder that replaces ``out_dir`` only when every check passed (see the module docstring).

    Args:
        model_ref_or_model: any model name ``load_model`` accepts (a saved-model folder,
            ``local-dir:``, a training checkpoint, ``hf-hub:``, a published ``arch.tag``), a
            ``(model, config)`` pair, or a ``TCLRModel`` together with ``config=``.
        out_dir: the export folder to write (the saved-model layout, plus ``onnx/``).
        onnx: also export the fp32 ONNX graph, checked against its graph rules and PyTorch.
        fp16: also the float16 graph (implies ``onnx``).
        opset: the ONNX opset, 7 to ``DEFAULT_OPSET`` (default: ``DEFAULT_OPSET``).
        head: the output the graph computes: ``retrieval``, ``backbone``, ``projection`` or ``logits``.
        max_batch: the largest batch the graph is checked at; recorded in ``config.json`` (the ONNX
            backend runs batches of up to this many clips).
        sample_inputs: real preprocessed clips ``[N,3,T,H,W]`` for the parity checks (else seeded
            random clips in [0, 1]).
        config: the model's ``config.json`` content; needed with a ``TCLRModel``, and used instead of
            the loaded one when given.
        overwrite: replace a non-empty ``out_dir``.
        int8: also the two INT8 graphs (implies ``onnx``), calibrated and gated as ``int8`` says
            (``export/int8_options.py``); the clips are read before anything is exported, so a bad
            source fails at once.
        pretrained: False: export the architecture a registry name names with random weights.

    Returns:
        The export report: head, input and output (names, dtypes, shapes), ``max_batch``, library
        versions, ``files`` (each graph's path, size and sha256), and with ``onnx`` the graph and
        parity reports (and the int8 calibration and accuracy gate), plus ``out_dir``.

    Raises:
        OutputInUseError: another process is writing ``out_dir``.
        OutputExistsError: ``out_dir`` is not empty and ``overwrite`` is not set.
        ExportError: a bad request: an unknown head (or ``logits`` on a model without a classifier),
            ``max_batch < 1``, an opset out of range, a ``TCLRModel`` without ``config``, or a
            calibration source that cannot serve.
        GraphCheckError, ParityError, AccuracyGateError: a check failed; nothing is written to
            ``out_dir``.
    """
    out_dir = Path(out_dir)
    refuse_to_replace(out_dir, overwrite=overwrite, kind="folder")  # before the model is even loaded
    model, config, card = _resolve(model_ref_or_model, config, pretrained)
    onnx = onnx or fp16 or int8 is not None
    try:
        check_head(model, head)
    except ValueError as err:
        raise ExportError(str(err)) from None
    if max_batch < 1:
        raise ExportError(f"--max-batch must be >= 1, got {max_batch}")
    if opset is not None and not 7 <= opset <= DEFAULT_OPSET:
        raise ExportError(f"--opset must be between 7 and {DEFAULT_OPSET} (TensorRT 10 parses <= {TRT10_MAX_OPSET}; "
                          f"use {TRT8_MAX_OPSET} for TensorRT 8.x), got {opset}")
    clip_sets = _int8_clips(model, config, int8) if int8 is not None else None
    if clip_sets is not None and sample_inputs is None:  # real clips for the parity checks too
        sample_inputs = torch.from_numpy(clip_sets[1].clips[:max_batch])

    pre = Preprocessing.from_config(config)
    frames, size = pre.frames, pre.size
    input_shape = (1, 3, frames, size, size)
    out_dim = head_output_dim(model, head, frames)
    model = copy.deepcopy(model).float().eval()
    config = copy.deepcopy(config)
    opset_used = None if not onnx else (DEFAULT_OPSET if opset is None else opset)
    config["export"] = {
        "head": head,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 3, frames, size, size]},
        "output": {"name": head, "dtype": "float32", "shape": ["batch", out_dim]},
        "max_batch": max_batch,
        "opset": opset_used,
        "exporter": None if not onnx else ("torchscript" if opset_used <= TORCHSCRIPT_MAX_OPSET else "dynamo"),
        "onnx": ({"fp32": f"{ONNX_DIR}/{FP32_NAME}", **({"fp16": f"{ONNX_DIR}/{FP16_NAME}"} if fp16 else {}),
                  **({"int8": f"{ONNX_DIR}/{INT8_NAME}", "int8_trt": f"{ONNX_DIR}/{INT8_TRT_NAME}"} if int8 else {}),
                  "report": f"{ONNX_DIR}/{REPORT_NAME}"} if onnx else None),
    }
    if int8 is not None:
        config["export"]["int8"] = {"calibration_method": int8.method, "int8": "onnxruntime, U8S8",
                                    "int8_trt": "TensorRT explicit quantization, S8S8"}

    with staged_directory(out_dir) as staging:
        write_model_files(model, staging, config, card=card if card is not None else render_model_card(config))
        report: dict[str, Any] = {"head": head, "input": config["export"]["input"],
                                  "output": config["export"]["output"], "max_batch": max_batch,
                                  "versions": _versions(), "files": {}}
        if onnx:
            report.update(_export_and_check(model, staging / ONNX_DIR, head=head, input_shape=input_shape,
                                            opset=opset, max_batch=max_batch, fp16=fp16,
                                            sample_inputs=sample_inputs))
            if clip_sets is not None:
                _export_int8(report, staging / ONNX_DIR, clip_sets, int8, config, head=head,
                             input_shape=input_shape)
            (staging / ONNX_DIR / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
            # The card now carries the export (graphs, parity numbers) and keeps the source card's results.
            (staging / CARD_NAME).write_text(render_model_card(config, folder=staging))
    report["out_dir"] = str(out_dir)
    return report


def _resolve(ref, config, pretrained: bool = True):
    """-> (model, config, model card text or None)."""
    if isinstance(ref, TCLRModel):
        if config is None:
            raise ExportError("exporting a TCLRModel object needs its config (config=, see hub.model_config)")
        return ref, config, None
    if isinstance(ref, tuple):
        return ref[0], ref[1], None
    model, loaded, source = resolve_model(ref, pretrained=pretrained)  # any model name, as load_model reads it
    card = source.directory / CARD_NAME if source.directory is not None else None
    return model, config or loaded, card.read_text() if card is not None and card.is_file() else None


def parity_inputs(input_shape: tuple[int, ...], batch_sizes: Sequence[int],
                  sample_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], str]:
    """One input batch per batch size: real clips (cycled) if given, else seeded random clips in [0, 1]."""
    if sample_inputs is not None:
        clips = sample_inputs if isinstance(sample_inputs, torch.Tensor) else torch.stack(
            [c if c.dim() == 4 else c.squeeze(0) for c in sample_inputs])
        if clips.dim() == 4:
            clips = clips.unsqueeze(0)
        if tuple(clips.shape[1:]) != tuple(input_shape[1:]) or len(clips) == 0:
            raise ExportError(f"sample_inputs must be clips [N, {', '.join(map(str, input_shape[1:]))}], "
                              f"got {tuple(clips.shape)}")
        clips = clips.float()
        return [clips[torch.arange(b) % len(clips)] for b in batch_sizes], f"sample_inputs ({len(clips)} clips)"
    gen = torch.Generator().manual_seed(PARITY_SEED)
    return [torch.rand(b, *input_shape[1:], generator=gen) for b in batch_sizes], f"random [0,1], seed {PARITY_SEED}"


def _export_and_check(model: TCLRModel, onnx_dir: Path, *, head: str, input_shape, opset, max_batch, fp16,
                      sample_inputs) -> dict[str, Any]:
    export_head = build_head(model, head)  # BatchNorm folded: what goes into the graph
    reference = build_head(model, head, fold_bn=False)  # exactly the PyTorch model's computation
    max_opset = TRT8_MAX_OPSET if opset is not None and opset <= TORCHSCRIPT_MAX_OPSET else TRT10_MAX_OPSET
    batch_sizes = sorted({1, *([ODD_BATCH] if ODD_BATCH <= max_batch else []), max_batch})
    inputs, source = parity_inputs(input_shape, batch_sizes, sample_inputs)
    graphs, parity = {}, {}
    for name, half in [(FP32_NAME, False)] + ([(FP16_NAME, True)] if fp16 else []):
        path = export_onnx(export_head, onnx_dir / name, input_shape=input_shape, output_name=head, opset=opset,
                           max_batch=max_batch, fp16=half)
        graph = check_graph(path, input_shape=input_shape, output_names=[head], max_opset=max_opset)
        graph["path"] = f"{ONNX_DIR}/{name}"
        graphs[name] = graph
        result = check_parity(reference, path, inputs, output_name=head, fp16=half, compare_top1=head == "logits")
        result["graph"] = f"{ONNX_DIR}/{name}"
        parity[name] = result
    return {"files": {name: {"path": g["path"], "bytes": g.get("file_size_bytes"), "sha256": g.get("sha256")}
                      for name, g in graphs.items()},
            "opset": graphs[FP32_NAME]["opset"], "ir_version": graphs[FP32_NAME]["ir_version"],
            "exporter": "torchscript" if max_opset == TRT8_MAX_OPSET else "dynamo",
            "parity_inputs": source, "parity_batch_sizes": batch_sizes,
            "graphs": graphs, "parity": parity, "speed": _speed(parity)}


def _int8_clips(model: TCLRModel, config: dict[str, Any], options: Int8Options):
    """(calibration, held-out) clips, preprocessed by the SDK's ``VideoModel`` for this model's config."""
    from ..hub.resolve import ModelSource
    from ..inference.backends import TorchBackend
    from ..inference.model import VideoModel
    from .calibration import CalibrationSourceError, calibration_sets

    try:
        options.check()
    except ValueError as err:
        raise ExportError(str(err)) from None
    sdk = VideoModel(TorchBackend(copy.deepcopy(model), "cpu"), config, ModelSource("export", None))
    try:  # unreadable videos and datasets raise their own errors (exit status 2 in the CLI)
        return calibration_sets(sdk, options.source, calib_clips=options.calib_clips,
                                holdout_clips=options.holdout_clips, dataset=options.dataset,
                                skip_bad=options.skip_bad)
    except CalibrationSourceError as err:
        raise ExportError(f"calibration source: {err}") from None


def _export_int8(report: dict[str, Any], onnx_dir: Path, clip_sets, options: Int8Options, config: dict[str, Any],
                 *, head: str, input_shape) -> None:
    """Quantize the checked fp32 graph, check both int8 graphs' rules and gate their accuracy; fills
    ``report`` (``files``, ``graphs`` and ``int8``). Raises on the first failure."""
    from .accuracy import check_int8_accuracy
    from .quantize import input_range, quantize_int8

    calibration, held_out = clip_sets
    fp32 = onnx_dir / FP32_NAME
    made = quantize_int8(fp32, calibration.clips, onnx_dir, method=options.method,
                         input_range=input_range(Preprocessing.from_config(config)))
    max_opset = TRT8_MAX_OPSET if report["opset"] <= TORCHSCRIPT_MAX_OPSET else TRT10_MAX_OPSET
    paths = {}
    for flavour, graph in made["graphs"].items():
        checked = check_graph(graph["path"], input_shape=input_shape, output_names=[head], max_opset=max_opset,
                              quantized=flavour)
        checked["path"] = f"{ONNX_DIR}/{graph['name']}"
        report["graphs"][graph["name"]] = checked
        report["files"][graph["name"]] = {"path": checked["path"], "bytes": checked.get("file_size_bytes"),
                                          "sha256": checked.get("sha256")}
        paths[graph["name"]] = graph["path"]
        graph["path"] = checked["path"]
    gate = check_int8_accuracy(fp32, paths, held_out, head=head, min_cosine=options.min_cosine,
                               min_agreement=options.min_agreement)
    report["int8"] = {**made, "calibration": calibration.describe(), "gate": gate}


def _speed(parity: dict[str, Any]) -> dict[str, Any]:
    """ORT vs PyTorch CPU seconds per batch (median of the parity runs) and clips/s, per graph."""
    speed = {}
    for name, result in parity.items():
        rows = []
        for b in result["batches"]:
            ort_s, torch_s = b["ort_seconds"], b["torch_seconds"]
            rows.append({"batch_size": b["batch_size"], "ort_seconds": ort_s, "torch_seconds": torch_s,
                         "ort_clips_per_s": b["batch_size"] / ort_s if ort_s else None,
                         "torch_clips_per_s": b["batch_size"] / torch_s if torch_s else None,
                         "ort_speedup": torch_s / ort_s if ort_s else None})
        speed[name] = {"device": "cpu", "torch_threads": torch.get_num_threads(), "batches": rows}
    return speed


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {"tclr_zoo": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    try:
        import onnxscript

        versions["onnxscript"] = onnxscript.__version__
    except ImportError:  # only the dynamo exporter needs it
        pass
    return versions


__all__ = ["ExportError", "FP16_NAME", "FP32_NAME", "HEADS", "INT8_NAME", "INT8_TRT_NAME", "Int8Options", "ONNX_DIR",
           "REPORT_NAME", "export_model", "parity_inputs"]
