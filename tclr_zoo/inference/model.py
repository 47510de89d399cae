"""The SDK: ``load_model`` -> ``VideoModel`` with ``embed``, ``embed_windows`` and ``classify``.

A ``VideoModel`` pairs a backend (PyTorch or an exported ONNX graph, ``backends.py``) with the
model's ``config.json``, whose ``preprocessing`` section says how frames must be prepared (channel
order, crop, size, frames, stride) -- so users never re-implement it and never get it subtly wrong
(the published TCLR weights expect BGR frames, unlike most video models).

Inputs: a video path, a list of paths, one video as uint8 RGB frames ``[T, H, W, 3]``, or an
already preprocessed float batch ``[B, 3, T, H, W]``. Videos are cut into sliding windows
(``data/windows.py``) decoded in one streaming pass, so memory is bounded by the window and the
batch, never by the video's length; windows of several videos share batches.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .backends import BackendError, OnnxBackend, TorchBackend, check_clips
from ..data.transforms import eval_clip, eval_crop_box, normalize_clip
from ..data.windows import Window, WindowPlan, iter_tensor_windows, iter_video_windows
from ..constants import (CARD_NAME, CONFIG_NAME, EMBED_HEADS, HF_PREFIX, LOCAL_PREFIX, NORMALISED_HEADS, ONNX_DIR,
                         WEIGHTS_NAME)
from ..hub.resolve import ModelSource, resolve
from ..hub.card import render_model_card
from ..atomic import staged_directory
from ..hub.format import load_pretrained_dir, model_config, read_config, refuse_foreign_folder, write_model_files
from ..models.pretrained import FAITHFUL_PREPROCESSING
from ..models.registry import create_model, resolve_model_args

POOLINGS = ("mean", "max")


@dataclass
class WindowEmbeddings:
    """Per-window embeddings of one video, with where each window lies (seconds)."""

    embeddings: torch.Tensor  # [W, D]
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    source: str = ""


def load_model(name_or_uri: str | os.PathLike, *, pretrained: bool = True, backend: str = "torch",
               device: str | None = None, providers: Sequence[str] | None = None,
               precision: str = "fp32") -> "VideoModel":
    """Load a TCLR encoder for inference.

    ``name_or_uri``: a registry name (``r3d_18.tclr_ucf101``, or ``r3d_18`` with ``pretrained=False``
    for random weights), ``hf-hub:ORG/REPO[@REVISION]``, ``local-dir:PATH`` or a folder written by
    ``save_pretrained`` / ``tclr-zoo export``. ``backend="onnx"`` runs the folder's exported graph
    (``precision="fp16"`` its float16 one) in onnxruntime, on TensorRT, CUDA or CPU in that order
    (``device="cpu"`` forces the CPU; ``providers`` overrides the choice); ``model.providers`` says
    which execution provider actually runs.
    """
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    source = resolve(os.fspath(name_or_uri), pretrained=pretrained, with_onnx=backend == "onnx")
    if source.directory is None:
        if backend == "onnx":
            raise BackendError(f"{source.model_id} has no ONNX graph; export a saved model first (tclr-zoo export)")
        model, config = random_init_model(source.arch)
        return VideoModel(TorchBackend(model, device), config, source)
    if backend == "torch":
        model, config = load_pretrained_dir(source.directory)
        return VideoModel(TorchBackend(model, device), config, source)
    config = read_config(source.directory)
    return VideoModel(OnnxBackend(source.directory, config, device=device, providers=providers,
                                  precision=precision), config, source)


def random_init_model(arch: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A randomly initialised ``arch`` network and its ``config.json`` (faithful preprocessing).

    Args:
        arch: a registry architecture name.

    Returns:
        The model and the config a ``save_pretrained`` of it would write.
    """
    args = resolve_model_args(arch)
    model = create_model(arch, model_args=args)
    return model, model_config(model, arch=arch, model_args=args, preprocessing=dict(FAITHFUL_PREPROCESSING))


class VideoModel:
    """A loaded encoder: preprocessing from its config + a backend (see the module docstring)."""

    def __init__(self, backend: TorchBackend | OnnxBackend, config: dict[str, Any], source: ModelSource) -> None:
        self.backend = backend
        self.config = config
        self.source = source
        pre = config["preprocessing"]
        self.frames, self.size = int(pre["frames"]), int(pre["size"])
        self.plan = WindowPlan(self.frames, int(pre.get("eval_frame_stride", 1)))

    def __repr__(self) -> str:
        return (f"VideoModel({self.model_id!r}, architecture={self.config['architecture']!r}, "
                f"backend={self.backend.name!r}, device={str(self.device)!r})")

    # ---- identity -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.source.model_id

    @property
    def revision(self) -> str | None:
        return self.source.revision

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def providers(self) -> list[str]:
        """onnxruntime execution providers actually running (empty for the torch backend)."""
        return list(self.backend.providers)

    @property
    def labels(self) -> list[str] | None:
        return self.config.get("labels")

    @property
    def torch_model(self):
        """The underlying ``TCLRModel`` (torch backend only)."""
        if not isinstance(self.backend, TorchBackend):
            raise BackendError("torch_model needs backend='torch'")
        return self.backend.model

    # ---- preprocessing --------------------------------------------------------------------
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[T, H, W, 3]`` in the model's channel order -> float clip ``[3, T, size, size]``."""
        pre = self.config["preprocessing"]
        clip = eval_clip(frames, size=self.size, crop_fraction=float(pre.get("crop_fraction", 1.0)))
        return normalize_clip(clip, pre.get("mean"), pre.get("std"))

    # The windows of embed/classify take a faster road to the same numbers as ``preprocess``
    # (tests/data/test_fast_paths_data.py): each decoded frame is cropped and resized once, in uint8, as it
    # arrives (``_crop_resize``), so windows hold small frames; a batch of windows then becomes the
    # float input in one conversion, straight into the channels_last_3d layout the backend runs
    # (``_batch``) -- no per-clip float copies, permutes or stacks of full-size frames.
    def _crop_resize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[k, H, W, 3]`` -> uint8 ``[k, size, size, 3]``: ``eval_clip``'s centre crop and resize, per frame."""
        crop_fraction = float(self.config["preprocessing"].get("crop_fraction", 1.0))
        top, left, side = eval_crop_box(frames.shape[1], frames.shape[2], crop_fraction)
        x = frames.permute(0, 3, 1, 2)[:, :, top:top + side, left:left + side]
        if side != self.size:
            x = TF.resize(x, [self.size, self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return x.permute(0, 2, 3, 1)

    def _batch(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """Windows of ``_crop_resize``d frames ``[T, size, size, 3]`` -> float ``[B, 3, T, size, size]``.

        Laid out channels_last_3d, the torch backend's layout, so it is not copied again. Computed
        in numpy (single-threaded; the same IEEE float32 operations as ``eval_clip`` and
        ``normalize_clip``, so the same bits): torch would hand these memory-bound copies to its
        intra-op threads, which on a busy machine costs more than the copies themselves.
        """
        pre = self.config["preprocessing"]
        x = np.stack([c.cpu().numpy() for c in clips]).astype(np.float32)  # (frames given on a GPU: small now)
        x /= np.float32(255.0)
        mean, std = pre.get("mean"), pre.get("std")
        if mean is not None or std is not None:
            if mean is None or std is None:
                raise ValueError("mean and std must both be given or both be None")
            x -= np.asarray(mean, dtype=np.float32)
            x /= np.asarray(std, dtype=np.float32)
        return torch.from_numpy(x).permute(0, 4, 1, 2, 3)

    def _windows(self, video: Any, hop: int | None) -> Iterator[Window]:
        """Windows of ``_crop_resize``d frames (turn them into model input with ``_batch``)."""
        plan = WindowPlan(self.plan.frames, self.plan.stride, hop)
        order = self.config["preprocessing"]["channel_order"]
        if isinstance(video, torch.Tensor):  # RGB frames; the model may want BGR
            frames = video.flip(-1) if order == "bgr" else video
            return iter_tensor_windows(frames, plan, transform=self._crop_resize)
        return iter_video_windows(video, plan, channel_order=order, transform=self._crop_resize)

    # ---- inference ------------------------------------------------------------------------
    def run(self, clips: torch.Tensor, head: str) -> torch.Tensor:
        """Preprocessed clips ``[B, 3, T, H, W]`` -> the head's output ``[B, D]`` (validated input)."""
        return self.backend.run(check_clips(clips, (self.frames, self.size, self.size)), head)

    def _window_outputs(self, videos: list[Any], head: str, batch_size: int, hop: int | None,
                        progress: bool) -> Iterator[tuple[int, list[Window], torch.Tensor]]:
        """Per video: its windows and their head outputs, batching windows across videos."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        pending: list[tuple[int, Window]] = []
        done: dict[int, tuple[list[Window], list[torch.Tensor]]] = {}
        bar = _progress(len(videos), progress)

        def flush():
            # Built here from uint8 frames: finite and of the model's shape, so no check_clips pass.
            out = self.backend.run(self._batch([w.frames for _, w in pending]), head)
            for (i, w), row in zip(pending, out):
                wins, rows = done.setdefault(i, ([], []))
                wins.append(_drop_frames(w))
                rows.append(row)
            pending.clear()

        next_out = 0
        for i, video in enumerate(videos):
            for window in self._windows(video, hop):
                pending.append((i, window))
                if len(pending) == batch_size:
                    flush()
            done.setdefault(i, ([], []))
            # An earlier video is complete once none of its windows waits in the batch.
            while next_out < i and (not pending or pending[0][0] > next_out):
                wins, rows = done.pop(next_out)
                yield next_out, wins, torch.stack(rows)
                next_out += 1
            bar.update(1)
        if pending:
            flush()
        for i in range(next_out, len(videos)):
            wins, rows = done.pop(i)
            yield i, wins, torch.stack(rows)
        bar.close()

    def embed(self, videos: Any, *, head: str = "retrieval", pooling: str = "mean", batch_size: int = 8,
              hop: int | None = None, progress: bool = False) -> torch.Tensor:
        """Embeddings ``[N, D]``: one row per video (windows pooled), or per clip for a preprocessed batch.

        ``head``: ``retrieval`` (TCLR's temporal feature, the kNN protocol's), ``backbone`` (pooled
        features) or ``projection`` (the contrastive head). ``retrieval``/``projection`` rows are
        L2-normalised, also after pooling. ``hop``: frames between window starts (default: back to back).
        """
        if head not in EMBED_HEADS:
            raise ValueError(f"head must be one of {', '.join(EMBED_HEADS)}, got {head!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        batch = _as_batch(videos)
        if batch is not None:
            return self.run(batch, head)
        rows = [_pool(out, pooling, head) for _, _, out in
                self._window_outputs(_as_videos(videos), head, batch_size, hop, progress)]
        return torch.stack(rows)

    def embed_windows(self, video: Any, *, head: str = "retrieval", batch_size: int = 8,
                      hop: int | None = None) -> WindowEmbeddings:
        """One embedding per sliding window of one video, with start/end times in seconds."""
        if head not in EMBED_HEADS:
            raise ValueError(f"head must be one of {', '.join(EMBED_HEADS)}, got {head!r}")
        (video,) = _as_videos(video)
        ((_, windows, out),) = list(self._window_outputs([video], head, batch_size, hop, False))
        return WindowEmbeddings(out, [w.start for w in windows], [w.end for w in windows],
                                source=video if isinstance(video, str) else "<frames>")

    def classify(self, videos: Any, *, top_k: int = 5, batch_size: int = 8, hop: int | None = None,
                 progress: bool = False) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(label, probability)`` per video (softmax averaged over its windows) or per clip."""
        labels = self.labels
        if not labels:
            raise BackendError(f"{self.model_id} has no classifier; fine-tune or linear-probe it first "
                               "(tclr-zoo eval --protocol linear|finetune --save DIR)")
        batch = _as_batch(videos)
        if batch is not None:
            probs = self.run(batch, "logits").softmax(dim=1)
        else:
            probs = torch.stack([out.softmax(dim=1).mean(dim=0) for _, _, out in
                                 self._window_outputs(_as_videos(videos), "logits", batch_size, hop, progress)])
        values, indices = probs.topk(min(top_k, len(labels)), dim=1)
        return [[(labels[int(i)], float(v)) for v, i in zip(vs, ids)] for vs, ids in zip(values, indices)]

    # ---- saving and sharing -----------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, *, model_id: str | None = None) -> Path:
        """Write the saved-model folder (config, weights, card; an exported ``onnx/`` folder is kept),
        staged: a crash leaves the old folder or the new one. ``directory`` may hold an earlier saved
        model, which is replaced, but no other files.

        ``model_id``: the name the card's usage snippet shows (default: the Hub repo or registry name
        this model was loaded from; for a model from a folder or a random init, ``directory`` itself).
        """
        directory = Path(directory)
        if model_id is None:
            local = self.model_id.startswith(LOCAL_PREFIX) or self.source.directory is None
            model_id = f"{LOCAL_PREFIX}{directory.absolute()}" if local else self.model_id
        refuse_foreign_folder(directory)
        with staged_directory(directory) as staging:
            if isinstance(self.backend, TorchBackend):
                card = render_model_card(self.config, model_id=model_id, folder=self.source.directory)
                write_model_files(self.backend.model, staging, self.config, card=card)
            else:
                for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
                    if (self.source.directory / name).is_file():
                        shutil.copy2(self.source.directory / name, staging / name)
            onnx_dir = self.source.directory / ONNX_DIR if self.source.directory is not None else None
            if onnx_dir is not None and onnx_dir.is_dir() and (self.config.get("export") or {}).get("onnx"):
                shutil.copytree(onnx_dir, staging / ONNX_DIR)
        return directory

    def push_to_hub(self, repo_id: str, *, revision: str | None = None, commit_message: str | None = None,
                    private: bool = False, token: str | None = None) -> str:
        """Upload config, weights, card and ``onnx/`` (when present) to a Hub model repository."""
        from ..hub.client import push_folder

        from .. import __version__

        # named after the model, not after the temporary folder it is re-saved in
        name = self.source.directory.name if self.source.directory is not None else self.model_id
        message = commit_message or f"Upload {name} with tclr-zoo {__version__}"
        with tempfile.TemporaryDirectory(prefix="tclr-zoo-push-") as tmp:
            self.save_pretrained(tmp, model_id=f"{HF_PREFIX}{repo_id}")
            return push_folder(tmp, repo_id, revision=revision, commit_message=message, private=private, token=token)


def _as_batch(videos: Any) -> torch.Tensor | None:
    """A preprocessed float batch ``[B, 3, T, H, W]`` is passed through as is."""
    if isinstance(videos, torch.Tensor) and videos.is_floating_point():
        return videos
    return None


def _as_videos(videos: Any) -> list[Any]:
    """Normalise the accepted video inputs to a list of paths (str) or uint8 frame tensors."""
    if isinstance(videos, (str, os.PathLike)):
        return [os.fspath(videos)]
    if isinstance(videos, torch.Tensor):
        if videos.dtype == torch.uint8 and videos.ndim == 4 and videos.shape[-1] == 3:
            return [videos]
        raise ValueError(f"a video tensor must be uint8 RGB frames [T, H, W, 3] or a float batch "
                         f"[B, 3, T, H, W], got {videos.dtype} {tuple(videos.shape)}")
    if isinstance(videos, Iterable) and not isinstance(videos, (bytes, dict)):
        items = list(videos)
        if not items:
            raise ValueError("no videos given")
        return [v for item in items for v in _as_videos(item)]
    raise ValueError(f"expected a video path, a list of paths or a tensor, got {type(videos).__name__}")


def _pool(out: torch.Tensor, pooling: str, head: str) -> torch.Tensor:
    pooled = out.mean(dim=0) if pooling == "mean" else out.max(dim=0).values
    return F.normalize(pooled, dim=0) if head in NORMALISED_HEADS else pooled


def _drop_frames(window: Window) -> Window:
    """Keep a finished window's timestamps, not its pixels."""
    return Window(torch.empty(0), window.start, window.end)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", disable=None if enabled and total > 1 else True, leave=False)
