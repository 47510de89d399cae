"""A model's identity: what its embeddings depend on -- its weights and its preprocessing -- as one
digest, whatever name or folder it was loaded from.

Embeddings are comparable when the same weights ran on the same input, and an index or a corpus
job records which model made its rows to refuse rows of another. A name does not say that: a
folder that is moved or copied is still the same model, and a folder whose weights were replaced
is not. So the identity is computed from the content:

* the weights, as the canonical state dict: every tensor under its current key (files written
  before the projection head was called ``projection`` store it as ``head.*``; those keys are read
  as the ``projection.*`` ones they are), in key order, with its dtype, shape and bytes. Loading a
  folder, its Hub copy, a re-save of it or the training checkpoint it was exported from gives the
  same digest; changing one weight changes it.
* the preprocessing (``config.json``'s section, as :class:`Preprocessing` reads it): the same
  weights fed differently cropped or ordered frames give other embeddings.

The embedding *head* is recorded beside the identity by whoever stores embeddings (an index's
``head``), since one model gives several.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import torch

from ..models.preprocessing import Preprocessing
from ..models.tclr import OLD_PROJECTION_PREFIX

#: The prefix of an identity string: the digest's algorithm.
IDENTITY_PREFIX = "sha256:"
_NEW_PROJECTION_PREFIX = "projection."


def canonical_key(key: str) -> str:
    """A state-dict key under its current name (``head.*`` of older files -> ``projection.*``)."""
    return _NEW_PROJECTION_PREFIX + key[len(OLD_PROJECTION_PREFIX):] if key.startswith(OLD_PROJECTION_PREFIX) else key


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """The sha256 (hex) of a state dict's canonical form: keys renamed by :func:`canonical_key`,
    sorted, each with its tensor's dtype, shape and bytes (on the CPU, contiguous).

    Args:
        state: a model's ``state_dict()``, or the tensors of its ``model.safetensors``.

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    for key, tensor in sorted((canonical_key(k), v) for k, v in state.items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(json.dumps([key, str(data.dtype), list(data.shape)]).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_identity(state: Mapping[str, torch.Tensor], preprocessing: Preprocessing) -> str:
    """The identity of the model with these weights and this preprocessing: ``sha256:<hex>``.

    Args:
        state: its weights (see :func:`weights_digest`).
        preprocessing: how its input is prepared.

    Returns:
        ``"sha256:"`` and 64 hex digits.
    """
    section = json.dumps(preprocessing.to_config(), sort_keys=True)
    return IDENTITY_PREFIX + hashlib.sha256(f"{weights_digest(state)}\n{section}".encode()).hexdigest()


def short_identity(identity: str | None) -> str:
    """An identity as messages show it: its first 12 hex digits."""
    return "unknown" if identity is None else identity.removeprefix(IDENTITY_PREFIX)[:12]


__all__ = ["IDENTITY_PREFIX", "canonical_key", "model_identity", "short_identity", "weights_digest"]
