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

from ..atomic import staged_directory
from ..constants import (
    CARD_NAME,
    CONFIG_NAME,
    EMBED_HEADS,
    HF_PREFIX,
    LOCAL_PREFIX,
    NORMALISED_HEADS,
    ONNX_DIR,
    WEIGHTS_NAME,
)
from ..data.windows import Window, WindowPlan, iter_tensor_windows, iter_video_windows
from ..hub.card import render_model_card
from ..hub.format import read_config, read_weights, refuse_foreign_folder, write_model_files
from ..hub.identity import model_identity
from ..hub.resolve import ModelSource, load_source, resolve
from ..models.preprocessing import ClipTransform, Preprocessing
from .backends import TORCH_PRECISIONS, BackendError, OnnxBackend, TorchBackend
from .inputs import VideoInputError, check_clips, check_frames, clip_batch, video_list
from .loader import (
    CropResize,
    ForwardThreads,
    ReorderBuffer,
    Skipped,
    VideoOutput,
    WindowChunk,
    chunks_in_process,
    chunks_in_workers,
    default_workers,
)

POOLINGS = ("mean", "max")


@dataclass
class WindowEmbeddings:
    """Per-window embeddings of one video, with where each window lies (seconds).

    Attributes:
        embeddings: ``[W, D]``, one row per sliding window, in time order.
        starts: each window's start, in seconds (for frames given in memory: its first frame index).
        ends: each window's end (its last frame's time plus one frame), in the same unit.
        source: the video's path, or ``"<frames>"`` for frames given in memory.
    """

    embeddings: torch.Tensor  # [W, D]
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    source: str = ""


def load_model(name_or_uri: str | os.PathLike, *, pretrained: bool = True, backend: str = "torch",
               device: str | None = None, providers: Sequence[str] | None = None,
               precision: str = "fp32") -> "VideoModel":
    """Load a TCLR encoder for inference.

    Every kind of model name goes through the one resolver that every command shares
    (``hub.resolve``), so a name that works here works in ``tclr-zoo embed``, ``eval``, ``export``,
    ``info``, ``index`` and ``app`` -- or fails there with the same message.

    Args:
        name_or_uri: a folder written by ``save_pretrained`` / ``tclr-zoo export``, ``local-dir:PATH``,
            a training checkpoint (``.pt``), ``hf-hub:ORG/REPO[@REVISION]`` or a published
            ``arch.tag`` (``r3d_18.tclr_ucf101``; weights not published yet are refused without
            touching the network). A bare architecture name (``r3d_18``) names no weights: it is
            refused with ``pretrained=True``, naming its ``arch.tag`` weights.
        pretrained: False: the architecture of a registry name with random weights (the CLI's
            ``--random-init``).
        backend: ``"torch"``, or ``"onnx"`` to run the folder's exported graph in onnxruntime, on
            TensorRT, CUDA or CPU in that order (``model.providers`` says which runs).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (default: a GPU when present; for onnx,
            ``"cpu"`` forces the CPU).
        providers: onnxruntime execution providers to ask for, instead of the choice above.
        precision: torch: ``"fp32"`` or ``"bf16"`` (bfloat16 autocast, for GPUs with bf16 units;
            cosine to fp32 in the README); onnx: ``"fp32"``, ``"fp16"`` (the exported float16 graph)
            or ``"int8"`` (the calibrated int8 graph).

    Returns:
        The :class:`VideoModel`: its ``model_id`` names where it came from, its ``identity`` what it is.

    Raises:
        ModelNotFoundError: a name that names no model to be had (the message says why and how to fix it).
        HubError: a Hub download that fails.
        ModelLoadError: a folder whose config or weights cannot be loaded.
        BackendError: a backend or precision that cannot run this model (no ONNX graph, ...).
    """
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    if backend == "torch" and precision not in TORCH_PRECISIONS:  # before any download
        raise BackendError(f"precision must be {' or '.join(TORCH_PRECISIONS)} for the torch backend, got "
                           f"{precision!r}", hint=" (fp16 and int8 are graphs of the onnx backend: backend='onnx')",
                           cli_hint=("--backend", " (fp16 and int8 are graphs of the onnx backend: --backend onnx)"))
    source = resolve(os.fspath(name_or_uri), pretrained=pretrained, with_onnx=backend == "onnx")
    if backend == "torch":
        model, config = load_source(source)
        return VideoModel(TorchBackend(model, device, precision=precision), config, source)
    if source.directory is None:
        raise BackendError(f"{source.model_id} has no ONNX graph; export it first "
                           f"(tclr-zoo export {_export_name(source)} --out DIR --onnx, then load DIR)")
    config = read_config(source.directory)
    return VideoModel(OnnxBackend(source.directory, config, device=device, providers=providers,
                                  precision=precision), config, source)


def _export_name(source: ModelSource) -> str:
    """The MODEL argument of ``tclr-zoo export`` for a source without a folder."""
    return str(source.checkpoint) if source.checkpoint is not None else f"{source.arch} --random-init"


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
        self._identity: tuple[tuple[int, ...], str] | None = None  # (weights' versions, identity)

    def __repr__(self) -> str:
        return (f"VideoModel({self.model_id!r}, architecture={self.config['architecture']!r}, "
                f"backend={self.backend.name!r}, device={str(self.device)!r})")

    # ---- identity -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The name this model was loaded from (and can be loaded again with): ``hf-hub:ORG/REPO``,
        ``local-dir:/abs/path``, a checkpoint's path, or ``ARCH (random init)``."""
        return self.source.model_id

    @property
    def revision(self) -> str | None:
        """The Hub commit, or for a folder the first 16 hex digits of its weights' sha256."""
        return self.source.revision

    @property
    def identity(self) -> str:
        """What the model is, whatever it was loaded from: ``sha256:...`` over its weights (the
        canonical state dict) and its preprocessing (``hub.identity``). A moved or copied folder, its
        Hub copy and the checkpoint it was exported from share it; other weights never do. Indexes
        and corpus jobs record it to refuse rows of another model. Computed on first use, and again
        after the torch model's weights changed in place (a fine-tuning step on ``torch_model``)."""
        torch_backend = isinstance(self.backend, TorchBackend)
        version = tuple(t._version for t in self.backend.model.state_dict().values()) if torch_backend else ()
        if self._identity is None or self._identity[0] != version:
            weights = self.backend.model.state_dict() if torch_backend else read_weights(self.source.directory)
            self._identity = (version, model_identity(weights, self.preprocessing))
        return self._identity[1]

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
            raise BackendError("torch_model needs the torch backend", hint=" (load_model(..., backend='torch'))")
        return self.backend.model

    # ---- preprocessing --------------------------------------------------------------------
    @property
    def transform(self) -> ClipTransform:
        """The exact clip transform for your own data loaders, as torchvision's ``weights.transforms()``:
        one clip's uint8 **RGB** frames ``[T, H, W, 3]`` -> the float clip ``[3, T, size, size]`` that
        ``embed`` feeds the network for them (BGR models: the flip included). Picklable, so DataLoader
        workers can run it; ``model.preprocessing.transform("bgr")`` takes OpenCV's frames.

        Returns:
            A :class:`~tclr_zoo.models.preprocessing.ClipTransform` for RGB input; pass it the clip's
            frames already sampled (``model.frames`` of them, one every ``eval_frame_stride`` decoded
            frames) and stack its outputs into the ``[B, 3, T, size, size]`` batch ``embed`` takes.
        """
        return self.preprocessing.transform()

    def preprocess(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 frames ``[T, H, W, 3]`` (tensor or numpy array; float in [0, 1] too) in the model's
        channel order -> float clip ``[3, T, size, size]``; stack clips into the batch ``embed`` takes.

        Unlike :attr:`transform`, no channel flip: the frames must already be in
        ``model.preprocessing.channel_order`` (BGR for the published TCLR weights).

        Args:
            frames: one clip's frames ``[T, H, W, 3]``, uint8 or float in [0, 1], torch or numpy.

        Returns:
            The float32 clip ``[3, T, size, size]``: centre crop, resize, pixels / 255, and the
            model's mean/std when it has one.

        Raises:
            VideoInputError: ``frames`` is not ``[T, H, W, 3]``, is neither uint8 nor float, holds
                NaN/Inf, or is float outside [0, 1] (e.g. 0..255 values).
        """
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

    def run_windows(self, frames: list[torch.Tensor], head: str) -> torch.Tensor:
        """Windows as the decode workers make them (uint8 ``[T, size, size, 3]``, cropped and resized
        by the model's transform) -> the head's outputs ``[len(frames), D]``: the forward of
        :meth:`video_outputs`, for engines that decode elsewhere (``ray_engine``)."""
        return self.backend.run(self._batch(frames), head)

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

        Args:
            videos: a video path, a list of paths, one video as uint8 RGB frames ``[T, H, W, 3]`` (a
                list may mix such videos with paths), or preprocessed float clips ``[B, 3, T, H, W]``
                (as :meth:`preprocess` or :attr:`transform` make them); torch tensors or numpy arrays.
            head: ``retrieval`` (TCLR's temporal feature, the kNN protocol's), ``backbone`` (pooled
                features) or ``projection`` (the contrastive head). ``retrieval``/``projection`` rows are
                L2-normalised, also after pooling.
            pooling: how a video's window embeddings become its row: ``mean`` or ``max``.
            batch_size: windows per forward pass (windows of several videos share a batch).
            hop: frames between window starts (default: back to back).
            progress: show a progress bar over the videos.
            workers: processes that decode video files while the model runs (0: decode in this
                thread; default: none for one video, 2 on the CPU, up to 8 with a GPU; see the README).

        Returns:
            A float32 CPU tensor ``[N, D]``: one row per video in input order, or one per clip of a
            preprocessed batch.

        Raises:
            ValueError: an unknown ``head`` or ``pooling``, ``batch_size < 1`` or a bad ``workers``.
            VideoInputError: input the model cannot take (type, shape, dtype, or float clips outside
                the range its preprocessing gives).
            VideoDecodeError: a video file that cannot be decoded (the first bad one in input order).
            BackendError: an ONNX model asked for a head its graph does not output.
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

        Args:
            video: one video: a path, or uint8 RGB frames ``[T, H, W, 3]`` (torch or numpy).
            head: the embedding head, as for :meth:`embed`.
            batch_size: windows per forward pass.
            hop: frames between window starts (default: back to back).
            workers: as for :meth:`embed`; one video is decoded by one process, so 1 overlaps its
                decoding with the forward and more cannot help (default: 0).

        Returns:
            A :class:`WindowEmbeddings`: ``embeddings`` ``[W, D]`` (one row per window, not pooled),
            each window's ``starts``/``ends`` in seconds (frame indices for frames given in memory),
            and ``source`` (the path, or ``"<frames>"``).

        Raises:
            ValueError: an unknown ``head``, ``batch_size < 1`` or a bad ``workers``.
            VideoInputError: not exactly one video (use :meth:`embed` for several), or frames the
                model cannot take.
            VideoDecodeError: the video file cannot be decoded.
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

        Args:
            videos: what :meth:`embed` takes.
            top_k: how many labels per video (at most the model's number of labels).
            batch_size: windows per forward pass.
            hop: frames between window starts (default: back to back).
            progress: show a progress bar over the videos.
            workers: decoding processes, as for :meth:`embed`.

        Returns:
            One list per video (or per clip of a preprocessed batch), in input order, of
            ``(label, probability)`` pairs, most probable first.

        Raises:
            BackendError: the model has no classifier (no labels in its config), or is an ONNX
                graph exported without the ``logits`` head.
            VideoInputError, VideoDecodeError, ValueError: as for :meth:`embed`.
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

        Args:
            directory: the folder to write (created when missing).
            model_id: the name the card's usage snippet shows (default: the Hub repo or registry name
                this model was loaded from; for a model from a folder or a random init, ``directory``
                itself).

        Returns:
            ``directory``, as a ``Path``.

        Raises:
            OutputExistsError: ``directory`` is a file, or a folder holding files but no saved model.
            WriteError: the folder cannot be written (full disk, read-only); what was there is kept.
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
        """Upload config, weights, card and ``onnx/`` (when present) to a Hub model repository.

        The model is saved to a temporary folder first (:meth:`save_pretrained`, the card naming
        ``hf-hub:REPO_ID``); the repository, and the branch ``revision``, are created when missing.

        Args:
            repo_id: the Hub model repository, ``ORG/NAME``.
            revision: the branch to commit to (default: ``main``).
            commit_message: the commit message (default: ``Upload NAME with tclr-zoo VERSION``).
            private: create the repository as private (when it does not exist yet).
            token: a Hub token (default: the logged-in user's, or ``HF_TOKEN``).

        Returns:
            The URL of the commit; its last part is the commit sha.

        Raises:
            HubError: a bad ``repo_id``, offline mode, or a refusal or failure of the Hub.
        """
        from .. import __version__
        from ..hub.client import push_folder

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


__all__ = ["POOLINGS", "VideoModel", "WindowEmbeddings", "load_model", "pool_windows"]
