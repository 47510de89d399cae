"""Convert the TCLR authors' released checkpoints (github.com/DAVEISHAN/TCLR) into tclr_zoo saved models.

A reference checkpoint is a ``torch.save`` of ``{'epoch', 'state_dict', 'optimizer', 'learning_rate',
'amp_scaler', ...}`` where ``amp_scaler`` is a pickled ``torch.cuda.amp.GradScaler`` object, so
torch>=2.6 refuses it with ``weights_only=True``. Loading it with ``weights_only=False`` would run
whatever the pickle says; instead the safe loader is given an allow-list of exactly the globals those
files hold (below) and every other global is refused before anything is called.

The state dict is ``[module.]0.<torchvision VideoResNet keys>`` (backbone) and
``[module.]1.{fc1,bn1,fc2,bn2}.*`` (projection head); they map one to one onto ``backbone.*`` and
``projection.*`` of :class:`~tclr_zoo.models.TCLRModel`. The only keys ever dropped are ``0.fc.*``: the
reference network has no classifier (its backbone ends in spatial pooling), so such keys, which only
files derived for linear evaluation could carry, are not part of the TCLR network; the reference's
own linear-eval loader skips them as well. Everything else must match our model exactly.
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import video

from ..atomic import exclusive_output, file_sha256, refuse_to_replace, staged_directory
from ..constants import CARD_NAME, REFERENCE_ARCHS
from ..models.preprocessing import Preprocessing
from ..models.registry import create_model, resolve_model_args
from .card import render_model_card
from .format import load_pretrained_dir, model_config, write_model_files

STATE_KEYS = ("state_dict", "bb_state_dict")  # the reference's loaders accept either
DROPPED_KEYS = ("0.fc.weight", "0.fc.bias")  # a classifier the reference network never uses
CHECK_SHAPE = (2, 3, 16, 112, 112)
CHECK_TOLERANCE = 1e-4


class ConversionError(ValueError):
    """A source file that is unreadable, unsafe, not a TCLR reference checkpoint, or does not convert."""


def _safe_globals() -> list:
    """The globals a reference checkpoint pickles, and nothing else.

    GradScaler (the ``amp_scaler`` object) with the defaultdict it keeps per optimizer, whose factory
    function lived in ``torch.cuda.amp.grad_scaler`` when the files were written (torch 1.9) and in
    ``torch.amp.grad_scaler`` now; numpy's float64 scalar for ``best_score`` (``np.mean`` of the losses)
    under its numpy 1 and numpy 2 module names. None of them runs code beyond building plain data.
    """
    import numpy as np
    from torch.amp import grad_scaler as amp_scaler
    from torch.cuda.amp import grad_scaler as cuda_scaler

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 1.26
        from numpy.core.multiarray import scalar
    refresh = amp_scaler._refresh_per_optimizer_state
    return [
        cuda_scaler.GradScaler, amp_scaler.GradScaler, collections.defaultdict,
        refresh, (refresh, "torch.cuda.amp.grad_scaler._refresh_per_optimizer_state"),
        np.dtype, np.dtypes.Float64DType,
        (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
    ]


def _read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The unpickled top-level dict, loaded with ``weights_only=True`` and :func:`_safe_globals`."""
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file") from None
    except Exception as err:  # the loader's errors are all "this file is not what we accept"
        message = str(err)
        refused = re.search(r"GLOBAL ([\w.]+)", message)
        if refused:
            raise ConversionError(
                f"{path}: refused: its pickle asks for {refused.group(1)}, which a TCLR reference checkpoint "
                "never contains; nothing in the file was executed"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(\n\n|$)", message, re.S)
        lines = message.strip().splitlines()
        reason = detail.group(1) if detail else lines[0] if lines else type(err).__name__
        raise ConversionError(f"{path}: not a PyTorch checkpoint, or a damaged one ({reason})") from None
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _state_dict_of(obj: dict[str, Any], path: str | os.PathLike) -> tuple[str, dict[str, torch.Tensor]]:
    key = next((k for k in STATE_KEYS if k in obj), None)
    if key is None:
        raise ConversionError(f"{path}: no {' or '.join(STATE_KEYS)} entry (top-level keys: {sorted(map(str, obj))})")
    state = obj[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: {key!r} is not a mapping of parameter names to tensors")
    return key, dict(state)


def load_reference_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The raw state dict (``state_dict`` or ``bb_state_dict``) of a reference checkpoint, loaded safely."""
    return _state_dict_of(_read_checkpoint(path), path)[1]


def _strip_module(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` prefix(es) that ``nn.DataParallel`` adds on multi-GPU runs."""
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def _to_tclr_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``0.*`` -> ``backbone.*``, ``1.*`` -> ``projection.*``; other keys are kept as they are (and rejected later)."""
    mapped, dropped = {}, []
    for key, value in state.items():
        if key in DROPPED_KEYS:
            dropped.append(key)
        elif key.startswith("0."):
            mapped["backbone." + key[2:]] = value
        elif key.startswith("1."):
            mapped["projection." + key[2:]] = value
        else:
            mapped[key] = value
    return mapped, dropped


def _source_name(key: str) -> str:
    """Our key as the (module-stripped) source file names it, for error messages."""
    for ours, theirs in (("backbone.", "0."), ("projection.", "1.")):
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


def _guess_arch(state: dict[str, torch.Tensor]) -> str:
    """R(2+1)D's stem has a second conv (``stem.3``); R3D's has one."""
    return "r2plus1d_18" if "0.stem.3.weight" in state else "r3d_18"


def check_tclr_layer4(model: nn.Module) -> None:
    """Raise unless layer4[0] has TCLR's temporal stride 1 + dilation 2 (4 time-steps left at 16 frames).

    The change adds no parameters, so the state dict cannot record it: the reference re-applies it
    after building torchvision's network. Weights loaded into a network without it still load
    strictly but compute something else (8 -> 2 time-steps, features of the wrong receptive field).
    """
    block = model.backbone.layer4[0]
    conv, down = block.conv1[0], block.downsample[0]
    ok = (isinstance(conv, nn.Conv3d) and conv.kernel_size == (3, 3, 3) and conv.stride == (1, 2, 2)
          and conv.dilation == (2, 1, 1) and conv.padding == (2, 1, 1)
          and isinstance(down, nn.Conv3d) and down.stride == (1, 2, 2))
    if not ok or model.temporal_downsampling != 4:
        raise ConversionError("the target network lacks TCLR's layer4 change (temporal stride 1, dilation 2)")


class _ReferenceHead(nn.Module):
    """The reference code's ``mlp``: Linear -> BN -> ReLU -> Linear(no bias) -> BN -> L2-normalise."""

    def __init__(self, dim: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(dim, dim), nn.BatchNorm1d(dim)
        self.fc2, self.bn2 = nn.Linear(dim, out_dim, bias=False), nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(x))))), dim=1)


def build_reference_network(arch: str) -> nn.Sequential:
    """The authors' network rebuilt from torchvision as their code builds it, with the source file's key names.

    Written independently of tclr_zoo's models so that the conversion check compares against the
    architecture as the reference defines it: torchvision's ``r3d_18``/``r2plus1d_18``, layer4[0]
    replaced, spatial-only average pooling, no classifier, then the ``mlp`` head. (The reference runs
    under fp16 autocast on GPUs; the check runs both networks in fp32.)
    """
    _check_arch(arch)
    net = getattr(video, arch)(weights=None)
    net.layer4[0].conv1[0] = nn.Conv3d(256, 512, 3, stride=(1, 2, 2), padding=(2, 1, 1), dilation=(2, 1, 1),
                                       bias=False)
    net.layer4[0].downsample[0] = nn.Conv3d(256, 512, 1, stride=(1, 2, 2), bias=False)
    net.avgpool = nn.AdaptiveAvgPool3d((None, 1, 1))  # keeps the 4 time-steps
    net.fc = nn.Identity()
    return nn.Sequential(net, _ReferenceHead())


def reference_outputs(net: nn.Sequential, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[B,512,T']`` and head outputs ``[B,1+T',128]`` (time-pooled first, then each step)."""
    backbone, head = net
    feats = backbone(clips).unflatten(1, (512, -1))  # torchvision flattens [B,512,T',1,1]
    return feats, _head_outputs(head, feats)


def _head_outputs(head: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    batch, channels, steps = feats.shape
    inputs = torch.cat([feats.mean(-1, keepdim=True), feats], dim=2).transpose(1, 2)  # [B, 1+T', C]
    return head(inputs.reshape(-1, channels)).view(batch, 1 + steps, -1)  # eval mode: per-sample BN


def _check_arch(arch: str) -> None:
    if arch not in REFERENCE_ARCHS:
        raise ConversionError(f"cannot convert reference checkpoints for arch {arch!r}; "
                              f"choices: {', '.join(REFERENCE_ARCHS)}")


def _load_into_model(state: dict[str, torch.Tensor], arch: str, path: str | os.PathLike):
    """A fresh ``arch`` TCLRModel holding ``state`` (strict), plus the keys dropped on the way."""
    mapped, dropped = _to_tclr_keys(state)
    model = create_model(arch)
    check_tclr_layer4(model)
    expected = model.state_dict()
    missing = [_source_name(k) for k in expected if k not in mapped]
    unexpected = [_source_name(k) for k in mapped if k not in expected]
    wrong = [f"{_source_name(k)} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
             for k, v in mapped.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or wrong:
        hint = _guess_arch(state)
        hint = f"; the file looks like an {hint} checkpoint" if hint != arch else ""
        raise ConversionError(f"{path}: does not match {arch}{hint}: missing keys {_few(missing)}, "
                              f"unexpected keys {_few(unexpected)}, wrong shapes {_few(wrong)}")
    model.load_state_dict(mapped, strict=True)
    return model.eval(), dropped


def _few(items: list[str], limit: int = 10) -> str:
    return str(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def verify_against_reference(model: nn.Module, state: dict[str, torch.Tensor], arch: str,
                             seed: int = 0) -> dict[str, float]:
    """Max abs differences between ``model`` and the reference network holding ``state`` (module-stripped).

    Compared: the spatially pooled layer4 features and the head's outputs (time-pooled and per
    step), both networks in eval mode, on a seeded random clip batch in the [0, 1] input range.
    """
    reference = build_reference_network(arch)
    reference.load_state_dict({k: v for k, v in state.items() if k not in DROPPED_KEYS}, strict=True)
    clips = torch.rand(CHECK_SHAPE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref_feats, ref_head = reference_outputs(reference.eval(), clips)
        feats = model.eval().temporal_features(clips)
        head = _head_outputs(model.projection, feats)
    errors = {"features": (feats - ref_feats).abs().max().item(), "embeddings": (head - ref_head).abs().max().item()}
    return {**errors, "max": max(errors.values())}


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a scalar stored in the checkpoint (int, float, 0-d tensor, numpy scalar)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return value.item()
    except (AttributeError, RuntimeError, ValueError):
        return str(value)


def convert_reference_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike, *, arch: str,
                                 overwrite: bool = False, check: bool = True) -> dict[str, Any]:
    """Convert the reference checkpoint ``src`` into the saved-model folder ``out_dir``; returns a report.

    ``out_dir`` must be absent or empty unless ``overwrite``. The folder is written in a sibling
    temporary directory and renamed at the end, so a failed conversion leaves nothing behind. With
    ``check`` the saved folder is reloaded and compared with the reference network rebuilt from the
    source weights; a max abs difference above ``CHECK_TOLERANCE`` is a :class:`ConversionError`.
    Another process writing ``out_dir`` (its lock is held for the whole conversion) is an
    ``atomic.OutputInUseError``, raised before the checkpoint is read.
    """
    _check_arch(arch)
    with exclusive_output(out_dir):
        return _convert(src, Path(out_dir).absolute(), arch=arch, overwrite=overwrite, check=check)


def _convert(src: str | os.PathLike, out: Path, *, arch: str, overwrite: bool, check: bool) -> dict[str, Any]:
    """:func:`convert_reference_checkpoint`, its output's lock held."""
    refuse_to_replace(out, overwrite=overwrite, kind="folder")
    obj = _read_checkpoint(src)
    key, raw = _state_dict_of(obj, src)
    state = _strip_module(raw)
    model, dropped = _load_into_model(state, arch, src)
    source = {"file": os.path.basename(src), "sha256": file_sha256(src), "format": "tclr-reference",
              "epoch": _plain(obj.get("epoch")), "state_dict_key": key}
    config = model_config(model, arch=arch, model_args=resolve_model_args(arch),  # the reference's input:
                              preprocessing=Preprocessing(), extra={"source": source})  # the defaults

    with staged_directory(out) as staging:
        write_model_files(model, staging, config)
        errors = None
        if check:
            reloaded, _ = load_pretrained_dir(staging)
            errors = verify_against_reference(reloaded, state, arch)
            if not errors["max"] <= CHECK_TOLERANCE:
                raise ConversionError(f"{src}: the converted model differs from the reference network by "
                                      f"{errors['max']:.3g} (tolerance {CHECK_TOLERANCE:g}); nothing was written")
        (staging / CARD_NAME).write_text(_card(config, errors))
        refuse_to_replace(out, overwrite=overwrite, kind="folder")  # again: it may have been filled meanwhile
    return {
        "out_dir": str(out), "arch": arch, "source": source, "tensors": len(state) - len(dropped),
        "dropped_keys": dropped, "checked": check, "tolerance": CHECK_TOLERANCE,
        "max_abs_error": errors["max"] if errors else None,
        "max_abs_error_features": errors["features"] if errors else None,
        "max_abs_error_embeddings": errors["embeddings"] if errors else None,
    }


def _card(config: dict[str, Any], errors: dict[str, float] | None) -> str:
    """The standard card; its source section names the file and sha256, plus the conversion check."""
    check = None if errors is None else {**errors, "tolerance": CHECK_TOLERANCE,
                                         "inputs": f"a seeded random {'x'.join(map(str, CHECK_SHAPE))} clip batch"}
    return render_model_card(config, conversion_check=check)


__all__ = ["CHECK_SHAPE", "CHECK_TOLERANCE", "ConversionError", "DROPPED_KEYS", "STATE_KEYS", "build_reference_network",
           "check_tclr_layer4", "convert_reference_checkpoint", "load_reference_checkpoint", "reference_outputs",
           "verify_against_reference"]
