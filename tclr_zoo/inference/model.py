"""The SDK: ``load_model`` -> ``VideoModel`` with ``embed``, ``embed_windows`` and ``classify``.

A ``VideoModel`` pairs a backend (PyTorch or an exported ONNX graph, ``backends.py``) with the
model's ``config.json``, whose ``preprocessing`` section says how frames must be prepared (channel
order, crop, size, frames, stride) -- so users never re-implement it and never get it subtly wrong
(the published TCLR weights expect BGR frames, unlike most video models).

Inputs: a video path, a list of paths, one video as uint8 RGB frames ``[T, H, W, 3]``, or an
already preprocessed float batch ``[B, 3, T, H, W]`` -- torch tensors or numpy arrays, checked
for both backends in ``inputs.py`` (shapes, dtypes, and the value range the preprocessing gives,
so that 0..255 float clips are refused rather than embedded). Videos are cut into sliding windows
(``data/windows.py``) decoded in one streaming pass, so memory is bounded by the window and the
batch, never by the video's length; windows of several videos share batches.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .backends import TORCH_PRECISIONS, BackendError, OnnxBackend, TorchBackend
from .inputs import VideoInputError, check_clips, check_frames, clip_batch, video_list
from ..data.windows import Window, WindowPlan, iter_tensor_windows, iter_video_windows
from .loader import (CropResize, ForwardThreads, ReorderBuffer, Skipped, VideoOutput, WindowChunk, chunks_in_process,
                     chunks_in_workers, default_workers)
from ..constants import (CARD_NAME, CONFIG_NAME, EMBED_HEADS, HF_PREFIX, LOCAL_PREFIX, NORMALISED_HEADS, ONNX_DIR,
                         WEIGHTS_NAME)
from ..hub.resolve import ModelSource, resolve
from ..hub.card import render_model_card
from ..atomic import staged_directory
from ..hub.format import load_pretrained_dir, model_config, read_config, refuse_foreign_folder, write_model_files
from ..models.preprocessing import ClipTransform, Preprocessing
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
    (``precision="fp16"`` its float16 one, ``precision="int8"`` its calibrated int8 one) in onnxruntime, on TensorRT, CUDA or CPU in that order
    (``device="cpu"`` forces the CPU; ``providers`` overrides the choice); ``model.providers`` says
    which execution provider actually runs. With the torch backend, ``precision="bf16"`` runs the
    model in bfloat16 autocast (on a GPU with bf16 units: faster; cosine to fp32 in the README).
    """
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    if backend == "torch" and precision not in TORCH_PRECISIONS:  # before any download
        raise BackendError(f"precision must be {' or '.join(TORCH_PRECISIONS)} for the torch backend, got "
                           f"{precision!r} (fp16 and int8 are graphs of the onnx backend: backend='onnx')")
    source = resolve(os.fspath(name_or_uri), pretrained=pretrained, with_onnx=backend == "onnx")
    if source.directory is None:
        if backend == "onnx":
            raise BackendError(f"{source.model_id} has no ONNX graph; export a saved model first (tclr-zoo export)")
        model, config = random_init_model(source.arch)
        return VideoModel(TorchBackend(model, device, precision=precision), config, source)
    if backend == "torch":
        model, config = load_pretrained_dir(source.directory)
        return VideoModel(TorchBackend(model, device, precision=precision), config, source)
    config = read_config(source.directory)
    return VideoModel(OnnxBackend(source.directory, config, device=device, providers=providers,
                                  precision=precision), config, source)


def random_init_model(arch: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A randomly initialised ``arch`` network and its ``config.json`` (TCLR's preprocessing, the defaults).

    Args:
        arch: a registry architecture name.

    Returns:
        The model and the config a ``save_pretrained`` of it would write.
    """
    args = resolve_model_args(arch)
    model = create_model(arch, model_args=args)
    return model, model_config(model, arch=arch, model_args=args, preprocessing=Preprocessing())


class VideoModel:
    """A loaded encoder: preprocessing from its config + a backend (see the module docstring).

    ``preprocessing`` is read from ``config`` once (a :class:`Preprocessing`) and used by every path;
    ``config`` keeps the same section, as ``save_pretrained`` writes it.
    """

    def __init__(self, backend: TorchBackend | OnnxBackend, config: dict[str, Any], source: ModelSource) -> None:
        self.backend = backend
        self.preprocessing = Preprocessing.from_config(config)
        self.config = self.preprocessing.store(config)
        self.source = source
        self.frames, self.size = self.preprocessing.frames, self.preprocessing.size
        self.plan = WindowPlan(self.frames, self.preprocessing.eval_frame_stride)
        self._transform = CropResize(self.size, self.preprocessing.crop_fraction)

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
    @property
    def transform(self) -> ClipTransform:
        """The exact clip transform for your own data loaders, as torchvision's ``weights.transforms()``:
        one clip's uint8 **RGB** frames ``[T, H, W, 3]`` -> the float clip ``[3, T, size, size]`` that
        ``embed`` feeds the network for them (BGR models: the flip included). Picklable, so DataLoader
        workers can run it; ``model.preprocessing.transform("bgr")`` takes OpenCV's frames."""
        return self.preprocessing.transform()

    def preprocess(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 frames ``[T, H, W, 3]`` (tensor or numpy array; float in [0, 1] too) in the model's
        channel order -> float clip ``[3, T, size, size]``; stack clips into the batch ``embed`` takes."""
        return self.preprocessing.to_clip(check_frames(frames))

    # The windows of embed/classify take a faster road to the same numbers as ``preprocess``
    # (tests/data/test_fast_paths_data.py): each decoded frame is cropped and resized once, in uint8, as it
    # arrives (``_crop_resize``), so windows hold small frames; a batch of windows then becomes the
    # float input in one conversion, straight into the channels_last_3d layout the backend runs
    # (``_batch``) -- no per-clip float copies, permutes or stacks of full-size frames.
    def _crop_resize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[k, H, W, 3]`` -> uint8 ``[k, size, size, 3]``: ``eval_clip``'s centre crop and resize, per frame."""
        return self._transform(frames)

    def _batch(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """Windows of ``_crop_resize``d frames ``[T, size, size, 3]`` -> float ``[B, 3, T, size, size]``.

        Laid out channels_last_3d, the torch backend's layout, so it is not copied again. Scaled in
        numpy (single-threaded; the same IEEE float32 operation as ``eval_clip``, so the same bits):
        torch would hand this memory-bound copy to its intra-op threads, which on a busy machine costs
        more than the copy itself. A model with a mean/std is then normalised by the one normalisation
        (``Preprocessing.normalize``), as on a GPU and in ``preprocess``.
        """
        if isinstance(self.backend, TorchBackend) and self.device.type == "cuda":
            return self._batch_on_gpu(clips)
        x = np.stack([c.cpu().numpy() for c in clips]).astype(np.float32)  # (frames given on a GPU: small now)
        x /= np.float32(255.0)
        return self.preprocessing.normalize(torch.from_numpy(x), channel_dim=-1).permute(0, 4, 1, 2, 3)

    def _batch_on_gpu(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """``_batch`` for a CUDA model: the uint8 windows (4x fewer bytes than float) are copied from
        pinned memory without blocking, and scaled and normalised on the GPU (the same float32 ops)."""
        x = torch.from_numpy(np.stack([c.cpu().numpy() for c in clips])).pin_memory()
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        return self.preprocessing.normalize(x, channel_dim=-1).permute(0, 4, 1, 2, 3)

    def _windows(self, video: Any, hop: int | None) -> Iterator[Window]:
        """Windows of ``_crop_resize``d frames (turn them into model input with ``_batch``)."""
        plan = WindowPlan(self.plan.frames, self.plan.stride, hop)
        if isinstance(video, torch.Tensor):  # RGB frames; the model may want BGR
            return iter_tensor_windows(self.preprocessing.to_model_order(video), plan, transform=self._crop_resize)
        return iter_video_windows(video, plan, channel_order=self.preprocessing.channel_order,
                                  transform=self._crop_resize)

    # ---- inference ------------------------------------------------------------------------
    def run(self, clips: torch.Tensor, head: str) -> torch.Tensor:
        """Preprocessed clips ``[B, 3, T, H, W]`` -> the head's output ``[B, D]`` (validated input)."""
        checked = check_clips(clips, self.preprocessing)
        return self.backend.run(checked, head)

    def video_outputs(self, videos: list[Any], *, head: str, batch_size: int = 8, hop: int | None = None,
                      progress: bool = False, workers: int | None = None,
                      skip_bad: bool = False) -> Iterator[VideoOutput | Skipped]:
        """One item per video, in input order: ``(position, windows, head outputs [W, D])``, batching
        windows across videos -- what ``embed``, ``classify``, corpus jobs and ``VideoIndex`` build on.

        Args:
            videos: paths, uint8 RGB frames ``[T, H, W, 3]``, or both.
            head: the output to compute (an embedding head or ``logits``).
            batch_size: windows per forward pass (windows of several videos share a batch).
            hop: frames between window starts (default: back to back).
            progress: a progress bar over the videos.
            workers: processes that decode (``loader.py``; ``None``: :func:`default_workers`),
                overlapped with the forward; windows are batched in the order they arrive.
            skip_bad: a video that fails to decode comes out at its place as a :class:`Skipped`
                record (path and reason) instead of raising.

        Returns:
            An iterator of ``(position, windows, outputs)`` -- or ``Skipped`` with ``skip_bad``.
            Without ``skip_bad`` a video that fails to decode raises its ``VideoDecodeError`` at its
            place: the first bad one in input order, as a decode here would.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        workers = self._decode_workers(workers, videos)
        if workers:
            plan = WindowPlan(self.plan.frames, self.plan.stride, hop)
            chunks = chunks_in_workers(videos, plan, channel_order=self.preprocessing.channel_order,
                                       transform=self._transform, workers=workers, chunk=batch_size)
        else:
            chunks = chunks_in_process(videos, lambda video: self._windows(video, hop))
        threads = ForwardThreads(workers, enabled=workers > 0 and self.device.type == "cpu")

        def forward(frames: list[torch.Tensor]) -> torch.Tensor:
            # Built here from uint8 frames: finite and of the model's shape, so no check_clips pass.
            clips = self._batch(frames)
            return threads.run(lambda: self.backend.run(clips, head), len(frames))

        order = ReorderBuffer(len(videos), batch_size=batch_size, forward=forward, skip_bad=skip_bad)
        return self._in_order(chunks, order, threads, progress)

    @staticmethod
    def _in_order(chunks: Iterator[WindowChunk], order: ReorderBuffer, threads: ForwardThreads,
                  progress: bool) -> Iterator[VideoOutput | Skipped]:
        """The loop of :meth:`video_outputs`. The decode workers end when it does, however it ends
        (an error, a caller that stops reading), and the torch threads are restored."""
        bar = _progress(order.videos, progress)
        try:
            for chunk in chunks:
                threads.decoded(chunk)
                order.add(chunk)
                bar.update(int(chunk.finished))
                yield from order.ready()
            order.finish()
            yield from order.ready()
        finally:
            bar.close()
            chunks.close()
            threads.close()

    def _decode_workers(self, workers: int | None, videos: list[Any]) -> int:
        """Worker processes for ``videos``: only files go to workers (frames in memory are cut here)."""
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise ValueError(f"workers must be an int >= 0 (0: decode in this process), got {workers!r}")
        files = sum(1 for v in videos if isinstance(v, str))
        if files < len(videos) or files == 0:
            return 0
        return min(default_workers(self.device, files) if workers is None else workers, files)

    def embed(self, videos: Any, *, head: str = "retrieval", pooling: str = "mean", batch_size: int = 8,
              hop: int | None = None, progress: bool = False, workers: int | None = None) -> torch.Tensor:
        """Embeddings ``[N, D]``: one row per video (windows pooled), or per clip for a preprocessed batch.

        ``head``: ``retrieval`` (TCLR's temporal feature, the kNN protocol's), ``backbone`` (pooled
        features) or ``projection`` (the contrastive head). ``retrieval``/``projection`` rows are
        L2-normalised, also after pooling. ``hop``: frames between window starts (default: back to back).
        ``workers``: processes that decode video files while the model runs (0: decode in this
        thread; default: none for one video, 2 on the CPU, up to 8 with a GPU; see the README).
        """
        if head not in EMBED_HEADS:
            raise ValueError(f"head must be one of {', '.join(EMBED_HEADS)}, got {head!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        batch = clip_batch(videos)
        if batch is not None:
            return self.run(batch, head)
        rows = [pool_windows(out, pooling, head) for _, _, out in
                self.video_outputs(video_list(videos), head=head, batch_size=batch_size, hop=hop,
                                  progress=progress, workers=workers)]
        return torch.stack(rows)

    def embed_windows(self, video: Any, *, head: str = "retrieval", batch_size: int = 8,
                      hop: int | None = None, workers: int | None = None) -> WindowEmbeddings:
        """One embedding per sliding window of one video, with start/end times in seconds.

        ``workers``: as for :meth:`embed`; one video is decoded by one process, so 1 overlaps its
        decoding with the forward and more cannot help (default: 0).
        """
        if head not in EMBED_HEADS:
            raise ValueError(f"head must be one of {', '.join(EMBED_HEADS)}, got {head!r}")
        videos = video_list(video)
        if len(videos) != 1:
            raise VideoInputError(f"embed_windows takes one video, got {len(videos)} (use embed for several)")
        (video,) = videos
        ((_, windows, out),) = list(self.video_outputs([video], head=head, batch_size=batch_size, hop=hop,
                                                        workers=workers))
        return WindowEmbeddings(out, [w.start for w in windows], [w.end for w in windows],
                                source=video if isinstance(video, str) else "<frames>")

    def classify(self, videos: Any, *, top_k: int = 5, batch_size: int = 8, hop: int | None = None,
                 progress: bool = False, workers: int | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(label, probability)`` per video (softmax averaged over its windows) or per clip.

        ``workers``: decoding processes, as for :meth:`embed`.
        """
        labels = self.labels
        if not labels:
            raise BackendError(f"{self.model_id} has no classifier; fine-tune or linear-probe it first "
                               "(tclr-zoo eval --protocol linear|finetune --save DIR)")
        batch = clip_batch(videos)
        if batch is not None:
            probs = self.run(batch, "logits").softmax(dim=1)
        else:
            probs = torch.stack([out.softmax(dim=1).mean(dim=0) for _, _, out in
                                 self.video_outputs(video_list(videos), head="logits", batch_size=batch_size, hop=hop,
                                                    progress=progress, workers=workers)])
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


def pool_windows(out: torch.Tensor, pooling: str, head: str) -> torch.Tensor:
    """A video's window outputs ``[W, D]`` -> one vector: mean or max over windows, re-normalised for
    the L2-normalised heads (the SDK's ``embed``, the CLI's batch commands and the index agree)."""
    pooled = out.mean(dim=0) if pooling == "mean" else out.max(dim=0).values
    return F.normalize(pooled, dim=0) if head in NORMALISED_HEADS else pooled


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", disable=None if enabled and total > 1 else True, leave=False)
