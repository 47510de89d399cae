"""Inference backends behind ``VideoModel``: PyTorch, or an exported ONNX graph in onnxruntime.

Both take preprocessed clips ``[B, 3, T, H, W]`` float32 (validated before either runs, in
``inputs.py``) and return one head's output ``[B, D]`` as a CPU float32 tensor; everything before
(decoding, windows, preprocessing) and after (pooling over windows, labels) is shared in
``model.py``, so switching backends changes nothing else.

onnxruntime silently falls back to the CPU when a requested execution provider cannot start
(missing CUDA libraries, no GPU): :class:`OnnxBackend` asks for TensorRT, then CUDA, then CPU --
GPU providers only when a GPU is present -- and compares what it asked for with
``session.get_providers()``, warning the user when the first choice is not the one running.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..constants import EMBED_HEADS, EXPORT_FLAGS, HEADS
from ..models import TCLRModel
from ..models.outputs import check_head, fold_batchnorm, head_forward

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


#: ``precision`` of the torch backend: float32, or bfloat16 autocast (weights stay float32; convolutions
#: and matrix products run in bfloat16; outputs are float32). See the README for its measured cosine.
TORCH_PRECISIONS = ("fp32", "bf16")
#: ``precision`` of the onnx backend: which exported graph runs (``tclr-zoo export --onnx``, ``--fp16``,
#: ``--int8 --calibrate ...``: the onnxruntime int8 graph, checked against fp32 when it was exported).
ONNX_PRECISIONS = ("fp32", "fp16", "int8")


class BackendError(ValueError):
    """A backend that cannot run as asked (no ONNX graph, head not exported, device missing); input it
    cannot take is refused, for both backends, by its subclass ``inputs.VideoInputError``.

    ``hint`` (appended to the message) says how to fix it in Python, ``cli_hint`` ``(flag, text)``
    the same with the command line's flag, as for ``ModelNotFoundError``.
    """

    def __init__(self, message: str, *, hint: str = "", cli_hint: tuple[str, str] | None = None) -> None:
        super().__init__(message + hint)
        self.reason, self.cli_hint = message, cli_hint


class TorchBackend:
    """The PyTorch model, eval mode, fp32 (``precision="bf16"``: bfloat16 autocast), ``channels_last_3d``
    (measured faster on CPU and CUDA), run
    through a copy with every BatchNorm folded into the convolution before it.

    Folding is exact algebra (``y = conv(x) * s + b`` becomes one convolution with scaled weights),
    removes a memory-bound pass over every activation, which makes embedding faster on CPU
    (BENCHMARKS.md, P3); outputs move by float32 rounding only (tests/inference/test_sdk.py ties them to the unfolded
    model). ``model`` stays the unfolded ``TCLRModel`` that ``save_pretrained`` writes; the folded
    copy is rebuilt whenever its parameters or buffers changed in place (``load_state_dict``, an
    optimizer step), so edits to ``VideoModel.torch_model`` are never served stale. ``fold_bn=False``
    runs the model itself.
    """

    name = "torch"

    def __init__(self, model: TCLRModel, device: str | torch.device | None = None, *, fold_bn: bool = True,
                 precision: str = "fp32") -> None:
        if precision not in TORCH_PRECISIONS:
            raise BackendError(f"precision must be {' or '.join(TORCH_PRECISIONS)} for the torch backend, got "
                               f"{precision!r} (fp16 and int8 are graphs of the onnx backend: backend='onnx')")
        self.precision = precision
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.memory_format = torch.channels_last_3d
        self.model.to(memory_format=self.memory_format)
        self.providers: list[str] = []
        self.fold_bn = fold_bn
        self._folded: tuple[tuple[int, ...], torch.nn.Module] | None = None

    def heads(self) -> tuple[str, ...]:
        return HEADS if self.model.classifier is not None else EMBED_HEADS

    @torch.inference_mode()
    def run(self, clips: torch.Tensor, head: str) -> torch.Tensor:
        check_head(self.model, head)
        x = clips.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = head_forward(self.inference_model(), head, x)
        return out.float().cpu()

    def inference_model(self) -> torch.nn.Module:
        """The module that ``run`` calls: the BatchNorm-folded copy, rebuilt when ``model`` changed."""
        if not self.fold_bn:
            return self.model.eval()
        state = tuple(t._version for t in (*self.model.parameters(), *self.model.buffers()))
        if self._folded is None or self._folded[0] != state or self.model.training:
            self.model.eval()
            with torch.inference_mode(False), torch.no_grad():
                folded = fold_batchnorm(copy.deepcopy(self.model)).to(memory_format=self.memory_format)
            self._folded = (state, folded)  # copying and folding leave the model's tensors untouched
        return self._folded[1]


def gpu_present() -> bool:
    """Whether a CUDA GPU is usable here (asking onnxruntime for CUDA without one prints errors)."""
    return torch.cuda.is_available()


def choose_providers(available: Sequence[str], *, device: str | None, gpu: bool) -> list[str]:
    """Execution providers to request, best first: TensorRT > CUDA > CPU, GPU ones only with a GPU.

    ``device="cpu"`` asks for the CPU only; ``device="cuda"`` requires a GPU provider and a GPU.
    """
    if device not in (None, "auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise BackendError(f"device must be cpu, cuda, cuda:N or auto for the onnx backend, got {device!r}")
    if device == "cpu":
        return [CPU]
    chosen = [p for p in (TENSORRT, CUDA) if p in available] if gpu else []
    if device not in (None, "auto") and not chosen:
        why = "no CUDA GPU is visible" if not gpu else f"this onnxruntime has no GPU provider ({', '.join(available)})"
        raise BackendError(f"device {device!r} asked for, but {why}",
                           hint="; install onnxruntime-gpu or use device='cpu'",
                           cli_hint=("--device", "; install onnxruntime-gpu or use --device cpu"))
    return chosen + [CPU]


class OnnxBackend:
    """An exported graph (``tclr-zoo export --onnx``) run by onnxruntime; one head, the exported one."""

    name = "onnx"

    def __init__(self, directory: Path, config: dict[str, Any], *, device: str | None = None,
                 providers: Sequence[str] | None = None, precision: str = "fp32") -> None:
        import onnxruntime as ort

        requested = list(providers) if providers else choose_providers(
            ort.get_available_providers(), device=device, gpu=gpu_present())
        self.graph_path = _graph_path(directory, config, graph_key(precision, requested[0]))
        export = config["export"]
        self.head = export["head"]
        self.input_name = export["input"]["name"]
        self.max_batch = int(export.get("max_batch") or 1)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors of a provider that fails to start are reported below
        self.session = ort.InferenceSession(str(self.graph_path), sess_options=options, providers=requested)
        self.providers = self.session.get_providers()
        self.requested = requested
        if self.providers[0] != requested[0]:
            warnings.warn(f"onnxruntime is running {self.graph_path.name} on {self.providers[0]}, not the "
                          f"requested {requested[0]} (it fell back; check the CUDA/TensorRT libraries)",
                          RuntimeWarning, stacklevel=3)
        self.device = torch.device("cuda" if self.providers[0] in (TENSORRT, CUDA) else "cpu")

    def heads(self) -> tuple[str, ...]:
        return (self.head,)

    def run(self, clips: torch.Tensor, head: str) -> torch.Tensor:
        if head != self.head:
            raise BackendError(f"{self.graph_path} outputs the {self.head!r} head only",
                               hint=f"; export the model with head={head!r} (tclr-zoo export --head {head}) or load it "
                                    "with backend='torch'",
                               cli_hint=("--backend", f"; export the model with --head {head}, or use --backend torch"))
        x = clips.detach().to("cpu", torch.float32).numpy()
        outs = [self.session.run(None, {self.input_name: np.ascontiguousarray(x[i:i + self.max_batch])})[0]
                for i in range(0, len(x), self.max_batch)]
        return torch.from_numpy(np.concatenate(outs).astype(np.float32, copy=False))


def graph_key(precision: str, provider: str) -> str:
    """Which graph of ``config["export"]["onnx"]`` runs ``precision`` on ``provider``: int8 has two,
    the onnxruntime graph (uint8 activations) and TensorRT's (int8, zero points 0), because TensorRT's
    explicit quantization cannot take the first."""
    if precision not in ONNX_PRECISIONS:
        raise BackendError(f"precision must be {', '.join(ONNX_PRECISIONS)} for the onnx backend, got {precision!r}")
    return "int8_trt" if precision == "int8" and provider == TENSORRT else precision


def _graph_path(directory: Path, config: dict[str, Any], key: str) -> Path:
    export = config.get("export") or {}
    files = export.get("onnx") or {}
    rel = files.get(key)
    if not rel:
        precision = "int8" if key == "int8_trt" else key
        target = f"{str(directory).rstrip(os.sep)}-onnx"
        raise BackendError(f"{directory}: no {precision} ONNX graph; export one into a new folder with "
                           f"`tclr-zoo export {directory} --out {target} {EXPORT_FLAGS[precision]}` and load {target}")
    # Checked on the name, not the resolved path: Hub cache snapshots are symlinks into a blob store.
    normal = os.path.normpath(rel)
    if os.path.isabs(normal) or normal.split(os.sep)[0] == "..":
        raise BackendError(f"{directory}/config.json points outside the model folder ({rel!r})")
    path = directory / normal
    if not path.is_file():
        raise BackendError(f"{path}: listed in config.json but missing")
    return path


__all__ = ["BackendError", "CPU", "CUDA", "ONNX_PRECISIONS", "OnnxBackend", "TENSORRT", "TORCH_PRECISIONS",
           "TorchBackend", "choose_providers", "gpu_present", "graph_key"]
