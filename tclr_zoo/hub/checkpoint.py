"""Reading a training checkpoint (``.pt``): the checksummed envelope, and the model it holds.

A model name may be a training checkpoint, so reading one belongs with the other model names
(``resolve.py``), below training: ``embed``, ``export``, ``eval`` or ``info`` read a checkpoint
without importing ``train/`` (which writes them: ``train/checkpoint.py``, with the same envelope).

The file is an envelope ``{"format", "sha256", "payload"}`` whose payload is the ``torch.save``
of the state; the SHA-256 of the payload is checked before the state is read, so a file damaged
after it was written (a bad disk, a copy cut short) is refused instead of used. Both are read with
``weights_only=True``: a checkpoint holds only tensors, numbers, strings, lists and dicts, so no
pickled code can run. Files of the first format (the state itself, no checksum) are still read.

The model a pretraining checkpoint holds is rebuilt from the recipe it records (the ``recipe``
dict: architecture, model arguments, projection size, and the data and evaluation settings that
make its :class:`~tclr_zoo.models.preprocessing.Preprocessing`), exactly as the run's own
``model/`` folder is saved -- so a checkpoint and the folder exported from it are the same model.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..models import TCLRModel
from ..models.preprocessing import EvalProtocol, Preprocessing, PreprocessingError
from ..models.registry import create_model, resolve_model_args
from .format import model_config

FORMAT = "tclr_zoo.checkpoint/2"  # {"format", "sha256", "payload": uint8 tensor of torch.save(state)}
UNCHECKED_FORMAT = "tclr_zoo.checkpoint/1"  # earlier files: the state itself, no checksum (still read)
#: What a file name of a training checkpoint ends with.
CHECKPOINT_SUFFIXES = (".pt", ".pth")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or not one of ours."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The state saved by ``train.checkpoint.save_checkpoint``, after checking its SHA-256.

    Args:
        path: the ``.pt`` file.

    Returns:
        The state dict (for a pretraining checkpoint: ``model``, ``recipe``, ``epoch``, ...).

    Raises:
        CheckpointError: naming the file and the problem (missing, not ours, damaged, or holding
            code to execute).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    envelope = _load_tensors_only(path, path)
    if not isinstance(envelope, dict) or envelope.get("format") not in (FORMAT, UNCHECKED_FORMAT):
        raise CheckpointError(f"{path}: not a tclr_zoo training checkpoint (a checkpoint of the TCLR authors' code "
                              "is read by `tclr-zoo convert`)")
    if envelope["format"] == UNCHECKED_FORMAT:
        return envelope
    payload = envelope.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"{path}: damaged checkpoint (no payload)")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != envelope.get("sha256"):
        raise CheckpointError(f"{path}: damaged checkpoint (SHA-256 of its contents does not match the one "
                              "recorded when it was written)")
    state = _load_tensors_only(io.BytesIO(data), path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a tclr_zoo training checkpoint")
    return state


def _load_tensors_only(source, path: Path) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a usable checkpoint"
        message = str(err)
        refused = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"Unsupported global: ([\w.]+)", message)
        if refused:
            raise CheckpointError(f"{path}: refused: the file holds a pickled object ({refused.group(1)}) that would "
                                  "run code when loaded; training checkpoints hold only tensors "
                                  "and plain data") from None
        # torch wraps the unpickler's own complaint in paragraphs of advice: keep the complaint.
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
        first = next((line for line in lines if not line.startswith(advice)), type(err).__name__)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {first})") from None


def recipe_preprocessing(recipe: Mapping[str, Any]) -> Preprocessing:
    """The preprocessing of a model trained by a pretraining recipe, from the recipe as a dict
    (``Recipe.to_dict()``, as a checkpoint records it): its data settings (channel order, mean/std,
    size, frames, pretraining stride) and its evaluation settings (clips, stride, crop).

    One function for the run that saves its model and for a checkpoint read later, so the two
    describe the same input. A setting the dict leaves out takes the :class:`Preprocessing`
    default, which is the recipe's default too (TCLR's).

    Args:
        recipe: a pretraining recipe's dict, with ``data`` and ``eval`` sections.

    Returns:
        The preprocessing.

    Raises:
        PreprocessingError: a section that is not a mapping, or a bad value (named).
    """
    data, evaluation = recipe.get("data") or {}, recipe.get("eval") or {}
    if not isinstance(data, Mapping) or not isinstance(evaluation, Mapping):
        raise PreprocessingError("the recipe's data and eval sections must be mappings")
    pairs = {"channel_order": data.get("channel_order"), "mean": data.get("mean"), "std": data.get("std"),
             "size": data.get("size"), "frames": data.get("frames"), "pretrain_frame_stride": data.get("stride"),
             "crop_fraction": evaluation.get("crop_fraction"), "eval_frame_stride": evaluation.get("stride")}
    given = {key: value for key, value in pairs.items() if value is not None or key in ("mean", "std")}
    clips = evaluation.get("clips")
    return Preprocessing(**given, eval_protocol=EvalProtocol() if clips is None else EvalProtocol(clips=clips))


def model_from_checkpoint(path: str | os.PathLike) -> tuple[TCLRModel, dict[str, Any]]:
    """The model a pretraining checkpoint holds, in eval mode, and the ``config.json`` content a
    saved folder of it would have (what ``tclr-zoo export CHECKPOINT`` writes).

    Args:
        path: a checkpoint written by pretraining (``checkpoints/last.pt`` or ``best.pt`` of a run).

    Returns:
        ``(model, config)``.

    Raises:
        CheckpointError: the file is not a readable pretraining checkpoint, or its recipe or weights
            do not describe a model (named).
    """
    path = Path(path)
    state = load_checkpoint(path)
    recipe, weights = state.get("recipe"), state.get("model")
    if (not isinstance(recipe, Mapping) or not isinstance(recipe.get("model"), Mapping)
            or not isinstance(weights, Mapping)):
        raise CheckpointError(f"{path}: not a pretraining checkpoint (it records no recipe and model weights)")
    spec = recipe["model"]
    arch = spec.get("arch")
    try:
        args = resolve_model_args(arch, spec.get("model_args") or {})
        preprocessing = recipe_preprocessing(recipe)
    except (KeyError, ValueError) as err:  # an unknown architecture or argument, a bad setting
        raise CheckpointError(f"{path}: its recipe does not describe a model ({err})") from None
    model = create_model(arch, model_args=args, head_dim=int(spec.get("head_dim", 128)))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: its weights do not fit {arch} ({str(err).splitlines()[0]})") from None
    return model.eval(), model_config(model, arch=arch, model_args=args, preprocessing=preprocessing)


__all__ = ["CHECKPOINT_SUFFIXES", "CheckpointError", "FORMAT", "UNCHECKED_FORMAT", "load_checkpoint",
           "model_from_checkpoint", "recipe_preprocessing"]
