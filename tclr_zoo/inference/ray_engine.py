"""The Ray Data engine of corpus jobs: decoding on every CPU of a Ray cluster, the model in an actor
pool, the rows written by the one driver process through the unit store (``engine="ray"``).

Decoding, not the network, bounds a corpus job: one CPU core decodes and crops ~100 windows/s of
320x240 video, one GPU runs R3D-18 on thousands. Under torchrun each process decodes on the CPUs of
its own GPU node; here the decode work goes wherever a Ray cluster has CPUs (CPU-only nodes too),
and Ray retries the work of a process or node that dies.

The pipeline, one row per video, in input order (``preserve_order``):

1. ``from_items``: the positions and paths of the videos still to embed (those of unfinished units).
2. ``map(_decode)``: CPU tasks of a few videos each (``RayOptions.videos_per_task``). Each video is
   decoded by the decode workers' own code (``loader.VideoWindows``: the model's window plan,
   channel order, crop and resize) into one row: its windows as one uint8 array
   ``[n, T, size, size, 3]`` -- pixels never travel as float -- or its decode error (an exception
   would end the job and lose the rows decoded after it).
3. ``map_batches(_Embedder)``: an actor pool (``num_gpus=1`` each on a GPU cluster, CPU actors
   otherwise). Each actor loads the model once and checks that it is the driver's model (its
   identity: weights and preprocessing); windows of several videos share a forward batch
   (``loader.ReorderBuffer``), and only the outputs ``[n, D]`` go back. The model reaches the
   actors through Ray's object store (:class:`ActorModel`), so no node needs the driver's files.
4. The driver reads the rows as they come, groups them into units (``shards.ShardPlan``) and saves
   each finished unit; the output is written from the units as in one process. So a Ray job, a
   torchrun job and a one-process job resume each other's units, and a batch that Ray runs twice
   (after an actor died) writes nothing twice: only the driver writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..constants import CONFIG_NAME, CORPUS_ENGINES, HF_PREFIX, RAY_VIDEOS_PER_TASK, WEIGHTS_NAME
from ..data.decode import VideoDecodeError
from .loader import CropResize, ReorderBuffer, Skipped, VideoWindows, WindowChunk
from .model import VideoModel, load_model
from .shards import PartMaker, ShardPlan, Units

#: What ``--engine ray`` needs installed.
RAY_EXTRA = "pip install 'tclr-zoo[ray]'"
#: The engines of a corpus job.
ENGINES = CORPUS_ENGINES


class RayEngineError(RuntimeError):
    """The Ray engine cannot run this job (Ray missing, a model its actors cannot load, ...)."""


@dataclass(frozen=True)
class RayOptions:
    """How a corpus job runs on Ray.

    Attributes:
        address: the cluster to join (``auto``, ``ray://...``, ``HOST:PORT``). None: the cluster in
            ``RAY_ADDRESS`` when it is set, else a local Ray started for the job and shut down after it.
            (A Ray this process already started is used as it is.)
        actors: model actors. None: one per GPU of the cluster, else one.
        actor_cpus: CPUs each model actor holds (a GPU actor still needs one to feed its GPU).
        decode_cpus: CPUs each decode task holds: 1 decodes at full speed (FFmpeg runs one thread);
            a fraction packs more tasks onto a node.
        videos_per_call: videos each actor call takes (their windows share forward batches).
        videos_per_task: videos each decode task decodes, one after the other: Ray's cost per task
            (scheduling it, a block of rows) is shared by several videos. A job still gets at least
            two tasks per CPU of the cluster, so that a short one spreads over every node.
        decode_memory_mb: memory Ray reserves per decode task: a decoder and its videos' windows.
            It also keeps the decode tasks from being fused into the actors.
        num_cpus: CPUs of a local Ray (None: all of this machine's).
    """

    address: str | None = None
    actors: int | None = None
    actor_cpus: float = 1.0
    decode_cpus: float = 1.0
    videos_per_call: int = 4
    videos_per_task: int = RAY_VIDEOS_PER_TASK
    decode_memory_mb: int = 512
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        for name in ("actor_cpus", "decode_cpus"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("actors", "num_cpus"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        if min(self.videos_per_call, self.videos_per_task, self.decode_memory_mb) < 1:
            raise ValueError("videos_per_call, videos_per_task and decode_memory_mb must be >= 1")


def import_ray():
    """``ray`` and ``ray.data``, or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise RayEngineError(f"the Ray engine needs Ray Data ({err}); install it: {RAY_EXTRA}") from None
    return ray


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray, initialised for the job: joined (``address``, or ``RAY_ADDRESS``), or a local instance
    started here and shut down at the end; a Ray this process already runs is used as it is. Ray
    Data's progress bars and log lines are off: the job prints its own."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        address = options.address or ("auto" if os.environ.get("RAY_ADDRESS") else None)
        quiet = {"log_to_driver": False, "configure_logging": False}
        if address is None:  # "local": never a stale cluster another `ray start` left on this machine
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance: no token file to write
            ray.init(address="local", num_cpus=options.num_cpus or os.cpu_count(), include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
        started = True
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.verbose_progress = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class ActorModel:
    """What a model actor loads, and how.

    The torch backend's model travels as its saved files (``config.json`` + ``model.safetensors``,
    put in Ray's object store once): no node needs the driver's files, and a model that no name
    loads again (a random init, a model changed in memory) is the same model on every actor. The
    onnx backend's graphs are loaded by name: a Hub repository pinned to the commit the driver
    loaded, or a folder by its absolute path (on a cluster, a path every node reaches).
    """

    backend: str
    precision: str
    files: list | None = None  # [ObjectRef of {file name: bytes}] (in a list: Ray passes it on unresolved)
    name: str | None = None

    @classmethod
    def of(cls, model: VideoModel, ray) -> "ActorModel":
        backend = model.backend.name
        if backend == "torch":
            return cls(backend, model.backend.precision, files=[ray.put(_saved_files(model))])
        precision = {"model.fp16.onnx": "fp16", "model.int8.onnx": "int8"}.get(
            os.path.basename(getattr(model.backend, "graph_path", "")), "fp32")
        name = model.model_id
        if name.startswith(HF_PREFIX) and model.revision:
            name = f"{name}@{model.revision}"
        return cls(backend, precision, name=name)

    def load(self, device: str) -> VideoModel:
        """The model, on this actor's ``device``."""
        if self.name is not None:
            return load_model(self.name, backend=self.backend, device=device, precision=self.precision)
        import ray

        folder = tempfile.mkdtemp(prefix="tclr-zoo-actor-")
        for file_name, data in ray.get(self.files[0]).items():
            with open(os.path.join(folder, file_name), "wb") as f:
                f.write(data)
        return load_model(folder, backend=self.backend, device=device, precision=self.precision)


def _saved_files(model: VideoModel) -> dict[str, bytes]:
    """The saved-model files of a torch-backend model, as bytes."""
    with tempfile.TemporaryDirectory(prefix="tclr-zoo-ship-") as folder:
        model.save_pretrained(folder)
        return {name: open(os.path.join(folder, name), "rb").read() for name in (CONFIG_NAME, WEIGHTS_NAME)}


def _decode(row: dict[str, Any], *, plan, channel_order: str, transform: CropResize) -> dict[str, Any]:
    """A decode task: one video -> its windows (uint8) and times, or its decode error; and the node
    that decoded it. The decode workers' own code, with the whole video as one chunk."""
    import ray

    windows = VideoWindows([row["path"]], plan, channel_order=channel_order, transform=transform, chunk=sys.maxsize)
    chunks = list(iter(windows))
    error = next((c.error for c in chunks if c.error is not None), None)
    frames = [np.asarray(c.frames) for c in chunks if c.frames is not None and error is None]
    empty = np.zeros((0, plan.frames, transform.size, transform.size, 3), np.uint8)
    return {"pos": row["pos"], "path": row["path"], "error": "" if error is None else error.reason,
            "frames": np.concatenate(frames) if frames else empty,
            "starts": np.asarray([s for c in chunks for s in c.starts] if error is None else [], np.float64),
            "ends": np.asarray([e for c in chunks for e in c.ends] if error is None else [], np.float64),
            "node": ray.get_runtime_context().get_node_id()}


class _Embedder:
    """A model actor: the model loaded once (checked against the driver's identity); each call runs
    the windows of a few videos in forward batches and returns each video's outputs."""

    def __init__(self, model: ActorModel, identity: str, head: str, batch_size: int, device: str,
                 threads: int) -> None:
        torch.set_num_threads(threads)
        self.model = model.load(device)
        if self.model.identity != identity:
            raise RayEngineError(f"{model.name} loads another model on this node than on the driver (identity "
                                 f"{self.model.identity[:19]} here, {identity[:19]} there)")
        self.head, self.batch_size = head, batch_size

    def forward(self, frames: list[torch.Tensor]) -> torch.Tensor:
        return self.model.run_windows(frames, self.head)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        videos = list(batch["frames"])  # ragged: an object array of arrays; all alike: one dense array
        order = ReorderBuffer(len(videos), batch_size=self.batch_size, forward=self.forward, skip_bad=True)
        for k, frames in enumerate(videos):
            error = VideoDecodeError(batch["path"][k], batch["error"][k]) if batch["error"][k] else None
            order.add(WindowChunk(k, np.ascontiguousarray(frames), list(batch["starts"][k]), list(batch["ends"][k]),
                                  finished=True, error=error))
        order.finish()
        outputs = np.empty(len(videos), dtype=object)
        dim = int(self.model.config["embedding_dims"].get(self.head, 0))
        outputs[:] = [np.zeros((0, dim), np.float32)] * len(videos)
        for item in order.ready():
            if not isinstance(item, Skipped):
                position, _, out = item
                outputs[position] = out.float().cpu().numpy()
        return {key: batch[key] for key in ("pos", "path", "error", "starts", "ends", "node")} | {"out": outputs}


def cluster_gpus(ray) -> int:
    """The GPUs of the cluster Ray is joined to."""
    return int(ray.cluster_resources().get("GPU", 0))


def embed_units_on_ray(model: VideoModel, paths: Sequence[str], plan: ShardPlan, store: Units, *, part: PartMaker,
                       head: str, batch_size: int, skip_bad: bool, options: RayOptions, device: str | None = None,
                       progress: bool = False, log: Callable[[str], None] | None = None) -> int:
    """``shards.embed_units`` on Ray: the unfinished units of ``plan``, saved as each one's last
    video arrives (the last one kept in memory: the driver merges next); returns the units embedded.

    Without ``skip_bad`` the first bad video in input order raises its ``VideoDecodeError``, after
    the units before it were saved (as in one process).
    """
    todo = [u for u in range(plan.units) if not store.done(u)]
    positions = [i for u in todo for i in plan.videos(u)]
    if not positions:
        return 0
    dim = int(model.config["embedding_dims"].get(head, 0))
    with contextlib.redirect_stdout(sys.stderr), ray_session(options) as ray:  # Ray prints worker deaths to stdout
        rows = _pipeline(ray, model, paths, positions, head=head, batch_size=batch_size, options=options,
                         gpus=_actor_gpus(ray, device))
        nodes: dict[str, int] = {}
        bar = _bar(len(positions), progress)
        try:
            for unit in todo:
                parts, skipped = [], []
                for position in plan.videos(unit):
                    row = next(rows)
                    if row["pos"] != position:
                        raise RayEngineError(f"rows out of order: video {row['pos']} came where {position} belongs")
                    nodes[row["node"]] = nodes.get(row["node"], 0) + 1
                    bar.update(1)
                    if row["error"]:
                        if not skip_bad:
                            raise VideoDecodeError(row["path"], row["error"])
                        skipped.append(Skipped(row["path"], row["error"]))
                        continue
                    parts.append(part(position, _windows(row), torch.from_numpy(np.array(row["out"], np.float32))))
                (store.keep if unit == todo[-1] else store.save)(unit, parts, skipped, dim)
        finally:
            bar.close()
    if log is not None:
        where = ", ".join(f"{count} on {node[:8]}" for node, count in sorted(nodes.items()))
        log(f"ray: decoded {len(positions)} videos on {len(nodes)} node{'s' if len(nodes) != 1 else ''} ({where})")
    return len(todo)


def _windows(row: dict[str, Any]) -> list:
    """A row's windows: their times (the pixels stayed in the decode task)."""
    from ..data.windows import Window

    return [Window(torch.empty(0), start, end) for start, end in zip(row["starts"].tolist(), row["ends"].tolist())]


def _actor_gpus(ray, device: str | None) -> int:
    """GPUs for the model actors: the cluster's, unless ``device`` is ``cpu``."""
    if device is not None and device.startswith("cpu"):
        return 0
    gpus = cluster_gpus(ray)
    if device is not None and device.startswith("cuda") and not gpus:
        raise RayEngineError(f"device {device!r} asked for, but the Ray cluster has no GPU")
    return gpus


def _pipeline(ray, model: VideoModel, paths: Sequence[str], positions: list[int], *, head: str, batch_size: int,
              options: RayOptions, gpus: int) -> Iterator[dict[str, Any]]:
    """The dataset of rows, one per video of ``positions``, in order (see the module docstring)."""
    actors = options.actors or max(1, gpus)
    device = "cuda" if gpus else "cpu"
    resources = {"num_cpus": options.actor_cpus, **({"num_gpus": 1} if gpus else {})}
    dataset = ray.data.from_items([{"pos": i, "path": paths[i]} for i in positions],
                                  override_num_blocks=decode_tasks(len(positions), options.videos_per_task,
                                                                   int(ray.cluster_resources().get("CPU", 1))))
    dataset = dataset.map(_decode, fn_kwargs={"plan": model.plan, "channel_order": model.preprocessing.channel_order,
                                              "transform": CropResize(model.size, model.preprocessing.crop_fraction)},
                          num_cpus=options.decode_cpus, memory=options.decode_memory_mb * 2**20)
    dataset = dataset.map_batches(
        _Embedder, fn_constructor_kwargs={"model": ActorModel.of(model, ray), "identity": model.identity, "head": head,
                                          "batch_size": batch_size, "device": device,
                                          "threads": max(1, math.floor(options.actor_cpus))},
        batch_size=options.videos_per_call, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
        **resources)
    return iter(dataset.iter_rows())


def decode_tasks(videos: int, videos_per_task: int, cpus: int) -> int:
    """Decode tasks for ``videos``: ``videos_per_task`` each, but at least two per CPU of the cluster
    (while there are videos), so that every node gets some of a short job."""
    return min(videos, max(math.ceil(videos / videos_per_task), 2 * cpus))


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc="embedding (ray)", disable=not enabled, file=sys.stderr)


__all__ = ["ENGINES", "ActorModel", "RAY_EXTRA", "RayEngineError", "RayOptions", "cluster_gpus", "decode_tasks",
           "embed_units_on_ray", "import_ray", "ray_session"]
