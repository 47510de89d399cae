"""Corpus jobs: one model over many video files, in one process or over a torchrun world, written
unit by unit so that a long job that stops continues where it stopped.

* :func:`embed_corpus` embeds a list of videos (one row per video, or per window) into memory or
  into an embeddings file (``.safetensors``, or ``.npy`` with a ``.json`` sidecar) that
  :func:`read_embeddings` reads back; :func:`classify_corpus` gives each video's top labels;
  ``tclr_zoo.retrieval.build.build_index`` builds an index with :func:`run_corpus`. The commands
  ``embed``, ``classify`` and ``index build`` call these functions and print what they return.
* In folders of scraped videos one unreadable file is normal: with ``skip_bad`` it is recorded as a
  :class:`~.loader.Skipped` (path and reason) and the others go on, sharing batches.
* With an output, the rows go through the unit store (``shards.py``) beside it (``.OUT.shards``):
  each block of ``unit_videos`` videos is saved as soon as it is embedded; the output is written
  once, atomically, from the units, and then the units are removed. A job that stopped (Ctrl-C, a
  crash, a bad video without ``skip_bad``) continues with ``resume=True`` from the units it
  finished -- the one way to resume, for one process and for many.
* The output's writer lock (``atomic.exclusive_output``) is taken before the model is loaded and
  held until the output is written: a second job into the same output is refused at once.
* Under torchrun, every process makes the same call (``torchrun --nproc_per_node N script.py``):
  each joins the process group (``runtime.session``), loads the model on its own device, embeds
  the units :class:`~.shards.ShardPlan` gives its rank, and rank 0 merges them into the output;
  rank 0 gets the result, the others ``None``. One process is a world of one: the same code, the
  same files, the same resume. The unit folder must be on a file system every process reaches.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from .. import runtime
from ..atomic import atomic_write, exclusive_output, refuse_to_replace
from ..constants import EMBED_HEADS
from .loader import Skipped
from .model import VideoModel, load_model
from .ray_engine import ENGINES, RayOptions, embed_units_on_ray, import_ray
from .shards import (
    COLUMNS,
    PYTHON_SPELLING,
    UNIT_VIDEOS,
    ShardPlan,
    Units,
    UnitStore,
    check_shard_folder,
    embed_units,
    paths_digest,
    shard_folder,
    video_part,
    windows_part,
)

T = TypeVar("T")
#: The files an embeddings output may be.
EMBEDDINGS_SUFFIXES = (".safetensors", ".npy")


@dataclass
class CorpusEmbeddings:
    """The rows of a corpus job in input order -- one per video, or one per window -- with their
    ids, paths and window times, where they come from, and the videos it left out."""

    embeddings: torch.Tensor  # [R, D] float32
    ids: list[str] = field(default_factory=list)  # the video's path (windows: "<path>#<window>")
    paths: list[str] = field(default_factory=list)
    starts: list[float | None] = field(default_factory=list)  # window times in seconds (None per video)
    ends: list[float | None] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    model_id: str | None = None
    revision: str | None = None
    head: str | None = None
    videos: int = 0  # videos in the input list
    resumed: int = 0  # of them: videos whose rows an interrupted run had saved
    identity: str | None = None  # the model's (VideoModel.identity); None in files of earlier versions

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class CorpusLabels:
    """What :func:`classify_corpus` gives: the videos that worked, their top labels, the skipped ones."""

    paths: list[str]
    top: list[list[tuple[str, float]]]  # (label, probability), best first, per path
    skipped: list[Skipped]


@dataclass(frozen=True)
class CorpusJob:
    """What a corpus job makes, and the settings a resume must repeat.

    ``outputs``: every file or folder the job writes (its writer locks are held for the whole job);
    ``out`` is the one its units are kept beside (None: in memory, nothing to resume).
    ``spelling``: how the caller's user writes ``resume`` and ``overwrite`` (the CLI: ``--resume``),
    for the messages.
    """

    command: str  # "embed" or "index build": recorded, so that one cannot resume the other
    head: str
    out: Path | None = None
    outputs: tuple[Path, ...] = ()
    windows: bool = False
    resume: bool = False
    overwrite: bool = False
    unit_videos: int = UNIT_VIDEOS
    spelling: Mapping[str, str] = field(default_factory=lambda: dict(PYTHON_SPELLING))

    def record(self, model: VideoModel, paths: Sequence[str]) -> dict[str, Any]:
        """What the units' rows are (``job.json``): a resume must match every field but the model's
        names (``model_id``, ``revision``): the model is its identity (``model``), so the same model
        loaded from a moved or copied folder continues the job (``shards.job_differences``)."""
        backend = model.backend
        precision = getattr(backend, "precision", None) or Path(getattr(backend, "graph_path", "")).name
        return {"command": self.command, "model": model.identity, "model_id": model.model_id,
                "revision": model.revision, "head": self.head,
                "windows": self.windows, "backend": backend.name, "precision": precision, "videos": len(paths),
                "paths_sha256": paths_digest(paths), "unit_videos": self.unit_videos}


def run_corpus(model: VideoModel | str | os.PathLike, paths: Sequence[str], job: CorpusJob, *,
               check: Callable[[], None], write: Callable[[VideoModel, CorpusEmbeddings], T], skip_bad: bool = False,
               batch_size: int = 8, workers: int | None = None, progress: bool = False,
               load: Mapping[str, Any] | None = None, log: Callable[[str], None] | None = None,
               engine: str = "local", ray: RayOptions | None = None) -> T | None:
    """Run ``job`` over ``paths`` and hand the merged rows to ``write``; returns what ``write``
    returned on rank 0 (``None`` on the other ranks).

    Order: join the world; rank 0 takes the outputs' writer locks, runs ``check`` (may the outputs
    be written?) and checks the unit folder -- a refusal stops every rank with the same error,
    before any model is loaded; each rank loads ``model`` (a name: with ``load``'s ``backend``,
    ``device``, ``precision``); rank 0 opens the unit store (afresh, or checked against the job to
    resume); every rank embeds its units; rank 0 merges them, calls ``write`` under the locks and
    removes the units. ``log`` gets rank 0's "resuming: ..." line.

    ``engine="ray"``: the same job from this one process, the videos decoded and embedded on a Ray
    cluster (``ray_engine``; ``ray``: its options); the same units, files and resume.
    """
    paths = list(paths)
    world = runtime.torchrun_env()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "ray":
        if world is not None and world["WORLD_SIZE"] > 1:
            raise ValueError("engine='ray' runs from one process (Ray spreads the work), not under torchrun")
        return _run_on_ray(model, paths, job, check=check, write=write, skip_bad=skip_bad, batch_size=batch_size,
                           progress=progress, load=load, log=log, options=ray or RayOptions())
    if job.out is None and world is not None and world["WORLD_SIZE"] > 1:
        raise ValueError("under torchrun a corpus job needs an output (out=...): the processes share their rows "
                         "through the unit files beside it")
    load = dict(load or {})
    device = model.device if isinstance(model, VideoModel) else runtime.resolve_device(load.pop("device", None)
                                                                                         or "auto")
    with runtime.session(device) as place, contextlib.ExitStack() as held:
        runtime.on_main(lambda: _claim(held, job, check))
        loaded = model if isinstance(model, VideoModel) else load_model(model, device=str(place.device), **load)
        plan = ShardPlan(len(paths), job.unit_videos if job.out is not None else max(1, len(paths)))
        store = (UnitStore(shard_folder(job.out), job.record(loaded, paths), spelling=job.spelling)
                 if job.out is not None else Units())
        resumed = runtime.on_main(lambda: _open(store, plan, job, log))
        embed_units(loaded, paths, plan, store, plan.units_of(place.rank, place.world_size),
                    part=_part_maker(paths, job), head=job.head, batch_size=batch_size,
                    progress=progress and place.is_main, skip_bad=skip_bad, workers=workers, keep_last=place.is_main)
        runtime.barrier()
        result: list[T] = []  # kept on rank 0: the rows are not sent to the other ranks
        runtime.on_main(lambda: result.append(_finish(loaded, store, plan, job, write, resumed)))
        return result[0] if place.is_main else None


def _run_on_ray(model: VideoModel | str | os.PathLike, paths: list[str], job: CorpusJob, *, check: Callable[[], None],
                write: Callable[[VideoModel, CorpusEmbeddings], T], skip_bad: bool, batch_size: int, progress: bool,
                load: Mapping[str, Any] | None, log: Callable[[str], None] | None, options: RayOptions) -> T:
    """:func:`run_corpus` with ``engine="ray"``: this process takes the locks, loads the model on its
    CPU (its identity and config, for ``job.json`` and the output; the actors load their own copy),
    opens the unit store, and merges; Ray decodes and embeds."""
    import_ray()  # before any lock or file: a missing extra is the first thing said
    load = dict(load or {})
    device = load.pop("device", None)
    with contextlib.ExitStack() as held:
        _claim(held, job, check)
        loaded = model if isinstance(model, VideoModel) else load_model(model, device="cpu", **load)
        plan = ShardPlan(len(paths), job.unit_videos if job.out is not None else max(1, len(paths)))
        store = UnitStore(shard_folder(job.out), job.record(loaded, paths), spelling=job.spelling) \
            if job.out is not None else Units()
        resumed = _open(store, plan, job, log)
        embed_units_on_ray(loaded, paths, plan, store, part=_part_maker(paths, job), head=job.head,
                           batch_size=batch_size, skip_bad=skip_bad, options=options, device=device,
                           progress=progress, log=log)
        return _finish(loaded, store, plan, job, write, resumed)


def _claim(held: contextlib.ExitStack, job: CorpusJob, check: Callable[[], None]) -> None:
    """Rank 0, first thing: hold the outputs' writer locks for the whole job (``held``), then make,
    under them, the job's ``check`` and check that units an earlier run left are neither lost nor
    silently reused."""
    for output in job.outputs:
        held.enter_context(exclusive_output(output))
    check()
    if job.out is not None:
        check_shard_folder(job.out, resume=job.resume, overwrite=job.overwrite, spelling=job.spelling)


def _open(store: Units, plan: ShardPlan, job: CorpusJob, log: Callable[[str], None] | None) -> int:
    """Rank 0, before any rank writes: start the unit folder afresh or check the one to resume;
    returns the videos its finished units hold."""
    if not isinstance(store, UnitStore):
        return 0
    finished = store.open(resume=job.resume)
    resumed = sum(len(plan.videos(unit)) for unit in finished)
    if finished and log is not None:
        log(f"resuming: {len(finished)} finished units ({resumed} of {plan.count} videos) in {store.folder}")
    return resumed


def _part_maker(paths: list[str], job: CorpusJob):
    """One video's rows (ids are the paths): per window with ``job.windows``, else pooled."""
    if job.windows:
        return lambda i, windows, out: windows_part(windows, out, paths[i], paths[i], job.head)
    return lambda i, windows, out: video_part(out, paths[i], paths[i], job.head)


def _finish(model: VideoModel, store: Units, plan: ShardPlan, job: CorpusJob,
            write: Callable[[VideoModel, CorpusEmbeddings], T], resumed: int) -> T:
    """Rank 0: every unit in order -> ``write``; then the units go."""
    units, skipped = store.merged(plan)
    dim = int(model.config["embedding_dims"].get(job.head, 0))
    rows = torch.cat([unit["embeddings"] for unit in units]) if units else torch.empty(0, dim)
    columns = {key: [v for unit in units for v in unit[key]] for key in COLUMNS}
    corpus = CorpusEmbeddings(rows, **columns, skipped=skipped, model_id=model.model_id, revision=model.revision,
                              head=job.head, videos=plan.count, resumed=resumed, identity=model.identity)
    result = write(model, corpus)
    if isinstance(store, UnitStore):
        store.discard()
    return result


def embed_corpus(model: VideoModel | str | os.PathLike, paths: Sequence[str | os.PathLike], *,
                 head: str = "retrieval", windows: bool = False, out: str | os.PathLike | None = None,
                 resume: bool = False, overwrite: bool = False, unit_videos: int = UNIT_VIDEOS,
                 skip_bad: bool = False, batch_size: int = 8, workers: int | None = None, progress: bool = False,
                 backend: str = "torch", device: str | None = None, precision: str = "fp32",
                 log: Callable[[str], None] | None = None,
                 spelling: Mapping[str, str] = PYTHON_SPELLING, pretrained: bool = True, engine: str = "local",
                 ray: RayOptions | None = None) -> CorpusEmbeddings | None:
    """Embed many videos with one model: one row per video (its windows pooled, as
    ``VideoModel.embed``), or one per window; resumable, and split over torchrun's processes.

    Args:
        model: a loaded ``VideoModel``, or a name ``load_model`` takes (then loaded on this
            process's device with ``backend``, ``device`` -- under torchrun, ``cuda`` is
            ``cuda:LOCAL_RANK`` -- and ``precision``).
        paths: video files, and folders (searched recursively for video files).
        head: ``retrieval``, ``backbone`` or ``projection``.
        windows: one row per sliding window (ids ``"<path>#<n>"``, with times) instead of per video.
        out: an embeddings file to write (``FILE.safetensors``, or ``FILE.npy`` with ``FILE.json``),
            atomically at the end; its units are kept in ``.FILE.shards`` until then. None: keep the
            rows in memory only (one process; nothing to resume).
        resume: continue the job an interrupted call left for ``out`` (same model, head, list and
            ``unit_videos``; another number of processes is fine).
        overwrite: replace an existing ``out`` (and discard the units an interrupted job left).
        unit_videos: videos per unit: what an interruption can cost, per process.
        skip_bad: record unreadable videos (``CorpusEmbeddings.skipped``) instead of stopping.
        batch_size, workers, progress: as for ``VideoModel.embed``.
        backend, device, precision, pretrained: how a ``model`` given by name is loaded (as
            ``load_model`` takes them; ignored for a loaded model).
        log: gets the line that says what a resume continues from.
        spelling: how the messages name ``resume`` and ``overwrite`` (the CLI passes its flags).
        engine: ``"local"`` (this process, or each torchrun process), or ``"ray"``: decode and
            embed on a Ray cluster from this process (``pip install 'tclr-zoo[ray]'``); the same
            output and units, so each engine resumes the other's job.
        ray: the Ray engine's options (:class:`~.ray_engine.RayOptions`: cluster address, actors,
            CPUs per task).

    Returns:
        The rows, on rank 0 (and in a single process); ``None`` on the other ranks.

    Raises:
        ValueError: an unknown ``head``, an ``out`` that does not end in ``.npy`` or
            ``.safetensors``, ``resume`` without ``out``, or several torchrun processes without ``out``.
        OutputExistsError: ``out`` (or its ``.json`` sidecar) exists and ``overwrite`` is not set.
        OutputInUseError: another process is writing ``out``.
        FileExistsError: an interrupted job left finished units for ``out`` and neither ``resume``
            nor ``overwrite`` is set.
        FileNotFoundError: ``resume`` with no interrupted job to continue, or a folder in ``paths``
            without videos.
        ShardError: the units to resume were made by another job (model, head, list or unit size).
        VideoDecodeError: a video cannot be decoded (without ``skip_bad``; finished units are kept,
            so ``resume`` continues after it is fixed or skipped).
    """
    from ..data.layouts import expand_video_folders

    if head not in EMBED_HEADS:
        raise ValueError(f"head must be one of {', '.join(EMBED_HEADS)}, got {head!r}")
    target = _embeddings_target(out, resume=resume)
    sidecar = target.with_suffix(".json") if target is not None and target.suffix.lower() == ".npy" else None
    outputs = tuple(p for p in (target, sidecar) if p is not None)
    job = CorpusJob("embed", head, target, outputs, windows=windows, resume=resume, overwrite=overwrite,
                    unit_videos=unit_videos, spelling=spelling)

    def check() -> None:
        for output in outputs:
            refuse_to_replace(output, overwrite=overwrite, flag=spelling["overwrite"])

    def write(loaded: VideoModel, corpus: CorpusEmbeddings) -> CorpusEmbeddings:
        if target is not None:
            save_embeddings(target, corpus, architecture=loaded.config.get("architecture"))
        return corpus

    load = None if isinstance(model, VideoModel) else {"backend": backend, "device": device, "precision": precision,
                                                       "pretrained": pretrained}
    return run_corpus(model, expand_video_folders([os.fspath(p) for p in paths]), job, check=check, write=write,
                      skip_bad=skip_bad, batch_size=batch_size, workers=workers, progress=progress, load=load, log=log,
                      engine=engine, ray=ray)


def _embeddings_target(out: str | os.PathLike | None, *, resume: bool) -> Path | None:
    if out is None:
        if resume:
            raise ValueError("resume=True needs out=...: the units to resume are kept beside the output")
        return None
    target = Path(out)
    if target.suffix.lower() not in EMBEDDINGS_SUFFIXES:
        raise ValueError(f"{target}: the output must end in .npy or .safetensors")
    return target


def save_embeddings(out: str | os.PathLike, corpus: CorpusEmbeddings, *, architecture: str | None = None) -> list[Path]:
    """Write ``corpus`` to ``out``: ``.safetensors`` (rows + metadata inside) or ``.npy`` (+ a
    ``.json`` sidecar), each atomically; returns the files written. The metadata records the model,
    the head, each row's path (and id and times for window rows) and the skipped videos (``failed``).

    An existing ``out`` is replaced (the caller decides beforehand whether it may be, as
    :func:`embed_corpus` does).

    Args:
        out: the file to write, ending in ``.safetensors`` or ``.npy``.
        corpus: the rows and their metadata (what :func:`embed_corpus` returns).
        architecture: the model's architecture name, recorded in the metadata.

    Returns:
        The files written: ``[out]``, or ``[out, sidecar]`` for ``.npy``.

    Raises:
        ValueError: ``out`` does not end in ``.npy`` or ``.safetensors``.
        WriteError: a file cannot be written (full disk, read-only); what was there is kept.
    """
    out = Path(out)
    metadata = {"model_id": corpus.model_id, "revision": corpus.revision, "model_identity": corpus.identity,
                "architecture": architecture,
                "head": corpus.head, "dim": int(corpus.embeddings.shape[1]), "paths": corpus.paths,
                "failed": [item.to_record() for item in corpus.skipped]}
    if corpus.ids != corpus.paths or any(t is not None for t in corpus.starts):
        metadata.update(windows=True, ids=corpus.ids, starts=corpus.starts, ends=corpus.ends)
    matrix = corpus.embeddings.float().contiguous()
    kind = out.suffix.lower()
    if kind == ".safetensors":
        from safetensors.torch import save

        data = save({"embeddings": matrix}, metadata={"tclr_zoo": json.dumps(metadata)})
        atomic_write(out, lambda f: f.write(data))
        return [out]
    if kind == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, matrix.numpy())
        sidecar = out.with_suffix(".json")
        atomic_write(out, lambda f: f.write(buffer.getvalue()))
        atomic_write(sidecar, lambda f: f.write((json.dumps(metadata, indent=2) + "\n").encode()))
        return [out, sidecar]
    raise ValueError(f"{out}: the output must end in .npy or .safetensors")


def read_embeddings(path: str | os.PathLike) -> CorpusEmbeddings:
    """An embeddings file written by :func:`save_embeddings` or ``tclr-zoo embed`` (any version).

    Args:
        path: a ``.safetensors`` file, or a ``.npy`` file with its ``.json`` sidecar beside it.

    Returns:
        The rows with their ids, paths, window times, skipped videos and provenance (model id,
        revision, head); ``videos`` counts the distinct paths plus the skipped ones.

    Raises:
        ValueError: ``path`` does not end in ``.npy`` or ``.safetensors``.
        FileNotFoundError: the file (or the ``.npy`` file's sidecar) is missing.
    """
    path = Path(path)
    kind = path.suffix.lower()
    if kind == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            metadata = json.loads(f.metadata()["tclr_zoo"])
            matrix = f.get_tensor("embeddings")
    elif kind == ".npy":
        matrix = torch.from_numpy(np.load(path, allow_pickle=False))
        metadata = json.loads(path.with_suffix(".json").read_text())
    else:
        raise ValueError(f"{path}: an embeddings file ends in .npy or .safetensors")
    paths = list(metadata["paths"])
    none = [None] * len(paths)
    return CorpusEmbeddings(matrix, list(metadata.get("ids", paths)), paths, list(metadata.get("starts", none)),
                            list(metadata.get("ends", none)), [Skipped.of(item) for item in metadata["failed"]],
                            metadata.get("model_id"), metadata.get("revision"), metadata.get("head"),
                            videos=len(set(paths)) + len(metadata["failed"]), identity=metadata.get("model_identity"))


def classify_corpus(model: VideoModel, paths: Sequence[str | os.PathLike], *, top_k: int = 5, skip_bad: bool = False,
                    batch_size: int = 8, workers: int | None = None, progress: bool = False) -> CorpusLabels:
    """The ``top_k`` ``(label, probability)`` pairs of every video (softmax averaged over its
    windows, as ``VideoModel.classify``), in one pass; with ``skip_bad`` unreadable videos are
    recorded in ``CorpusLabels.skipped`` instead of stopping the run."""
    from ..data.layouts import expand_video_folders

    labels = model.labels
    if not labels:  # the SDK's own message
        model.classify(torch.zeros(1, 3, model.frames, model.size, model.size), top_k=top_k)
    result = CorpusLabels([], [], [])
    videos = expand_video_folders([os.fspath(p) for p in paths])
    for item in model.video_outputs(videos, head="logits", batch_size=batch_size, progress=progress,
                                    workers=workers, skip_bad=skip_bad):
        if isinstance(item, Skipped):
            result.skipped.append(item)
            continue
        position, _, out = item
        values, indices = out.softmax(dim=1).mean(dim=0).topk(min(top_k, len(labels)))
        result.paths.append(videos[position])
        result.top.append([(labels[int(i)], float(v)) for v, i in zip(values, indices)])
    return result


__all__ = ["CorpusEmbeddings", "CorpusJob", "CorpusLabels", "EMBEDDINGS_SUFFIXES", "classify_corpus", "embed_corpus",
           "read_embeddings", "run_corpus", "save_embeddings"]
