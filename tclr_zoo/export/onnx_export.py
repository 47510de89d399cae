"""Write one export head to a single-file ONNX graph with a dynamic batch axis.

Two exporters, chosen by ``opset``:

- default (``opset=None`` or 18..20): the dynamo exporter (``torch.onnx.export(dynamo=True)``), opset 20,
  which TensorRT 10 parses; the batch axis is a ``torch.export.Dim`` bounded by ``max_batch``.
- ``opset <= 17``: the TorchScript exporter (``dynamo=False``) for TensorRT 8.x, which mis-handles
  opset-18 ``ReduceMean``. (Asking the dynamo exporter for 17 silently yields 18.)

Either way the graph has one float32 input ``video [batch,3,T,H,W]`` and one output named after the
head, one file (no external data), IR version <= 10 and no BatchNormalization (the wrapper folds it).
With ``fp16=True`` the weights and the compute are float16 while the input and output stay float32
(a cast at each end), so callers feed the same tensors to either graph.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

DEFAULT_OPSET = 20  # TensorRT 10 parses opset <= 20
TORCHSCRIPT_MAX_OPSET = 17  # TensorRT 8.x: use the TorchScript exporter at 17 and below
MAX_IR_VERSION = 10
INPUT_NAME = "video"


class HalfPrecision(nn.Module):
    """float32 in -> float16 compute in a ``.half()`` copy of ``module`` -> float32 out."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module).half().eval()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.module(video.half()).float()


def export_onnx(module: nn.Module, path: str | os.PathLike, *, input_shape: tuple[int, ...], output_name: str,
                opset: int | None = None, max_batch: int, fp16: bool = False) -> Path:
    """Export ``module`` (``[B, *input_shape[1:]]`` -> one tensor) to ``path``; returns ``path``.

    ``input_shape`` is ``(B, 3, T, H, W)``; only the batch axis is dynamic (1..``max_batch``).
    """
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not 7 <= opset <= DEFAULT_OPSET:
        raise ValueError(f"opset must be between 7 and {DEFAULT_OPSET} (TensorRT 10's limit), got {opset}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = (HalfPrecision(module) if fp16 else module).eval()
    # The example batch must not be 1 (a size-1 dim would be specialised) and lies within 1..max_batch.
    example = torch.rand(2, *input_shape[1:])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if opset <= TORCHSCRIPT_MAX_OPSET:
            _export_torchscript(module, example, path, output_name, opset)
        else:
            _export_dynamo(module, example, path, output_name, opset, max_batch)
    _finalise(path, output_name)
    return path


def _export_dynamo(module, example, path, output_name, opset, max_batch):
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    program = torch.onnx.export(
        module, (example,), dynamo=True, opset_version=opset, external_data=False,
        input_names=[INPUT_NAME], output_names=[output_name], dynamic_shapes=({0: batch},),
        optimize=True, verify=False, verbose=False,
    )
    program.save(str(path), external_data=False)


def _export_torchscript(module, example, path, output_name, opset):
    torch.onnx.export(
        module, (example,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL, input_names=[INPUT_NAME], output_names=[output_name],
        dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
    )


def _finalise(path: Path, output_name: str) -> None:
    """Enforce the names and IR version on the written file (exporters differ in both) and tidy the
    TorchScript exporter's output: ``Constant`` nodes become initializers (axes inputs must be
    constant initializers) and ``Identity`` nodes (left by folded BatchNorm) are removed."""
    model = onnx.load(str(path))
    graph = model.graph
    _constants_to_initializers(graph)
    _drop_identities(graph)
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError(f"{path}: expected one input and one output, got {len(graph.input)} and {len(graph.output)}")
    _rename_value(graph, graph.input[0].name, INPUT_NAME)
    _rename_value(graph, graph.output[0].name, output_name)
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    onnx.save(model, str(path))


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    keep = []
    for node in graph.node:
        attr = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if attr is not None and attr.name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _drop_identities(graph: onnx.GraphProto) -> None:
    outputs = {value.name for value in graph.output}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            source, target = node.input[0], node.output[0]
            for other in graph.node:
                other.input[:] = [source if name == target else name for name in other.input]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


__all__ = ["DEFAULT_OPSET", "HalfPrecision", "INPUT_NAME", "MAX_IR_VERSION", "TORCHSCRIPT_MAX_OPSET", "export_onnx"]
