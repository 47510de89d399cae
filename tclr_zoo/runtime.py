"""Where a process runs: its device, its place among torchrun's processes, and its share of the CPUs.

Training (``pretrain``) and corpus jobs (``embed``, ``index build``) run either as one process or as
one of N copies that ``torchrun --nproc_per_node N -m tclr_zoo.cli ...`` starts, each told its place
through the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``). This module
is the one reader of those variables, the one place that joins and leaves the process group, and
the one rule for how many CPUs a process may keep busy decoding. Without torchrun (or with a world
size of 1) there is no process group at all and every helper here is a plain local call.

torch is imported inside the functions that need it, so importing this module (``--help`` does,
through the CLI's option checks) does not load it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

#: torchrun's variables: what each process is told about its place in the run.
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
# How long ranks wait for rank 0 when it works alone (an evaluation, saving a model, reading a
# checkpoint, merging units). Long on purpose: under torchrun a rank 0 that dies takes the others down anyway.
WAIT_TIMEOUT = timedelta(hours=24)


class RuntimeEnvError(ValueError):
    """A device or a torchrun environment this machine cannot give (a user mistake: the CLI exits 2)."""


# --- the device ---------------------------------------------------------------------------------

def resolve_device(name: str = "auto", *, setting: str = "device") -> torch.device:
    """``name`` as a ``torch.device``; ``"auto"`` is CUDA when this machine has it, else the CPU.

    A CUDA device on a machine without one is refused here, before any work, rather than at the
    first tensor moved there. ``setting``: how the caller's user wrote the choice (``train.device``,
    ``--device``), for the message.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeEnvError(f"{setting}={name!r} but no CUDA device is available")
    return torch.device(name)


# --- the environment torchrun sets --------------------------------------------------------------

def torchrun_env() -> dict[str, int] | None:
    """``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` as set by torchrun; None when
    this process was not started by torchrun (any of the first three is missing)."""
    if not all(name in os.environ for name in TORCHRUN_VARIABLES):
        return None
    env = {name: _integer(name) for name in TORCHRUN_VARIABLES}
    env["LOCAL_WORLD_SIZE"] = _integer("LOCAL_WORLD_SIZE", default=env["WORLD_SIZE"])
    return env


def processes_on_this_node() -> int:
    """How many processes share this machine's CPUs: torchrun's ``LOCAL_WORLD_SIZE``, else 1."""
    return max(1, _integer("LOCAL_WORLD_SIZE", default=1))


def _integer(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None and default is not None:
        return default
    try:
        return int(text)
    except (TypeError, ValueError):
        raise RuntimeEnvError(f"{name}={text!r} must be an integer (torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and "
                              "LOCAL_WORLD_SIZE; start the run with torchrun, or unset them)") from None


def cpu_share(processes: int = 1) -> int:
    """CPUs this process may keep busy with decode workers: its affinity set, split between the
    ``processes`` processes of a node (:func:`processes_on_this_node` under torchrun). More decoding
    processes than cores only thrash."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, processes))


# --- the process group --------------------------------------------------------------------------

def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run (world size 1: a plain single-process run)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: torch.device = field(default_factory=_cpu)
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_context: DistContext | None = None  # inside session(): the process group's; None: one plain process
_cpu_group = None  # gloo group for small host-side exchanges (no GPU sync when the backend is NCCL)
_wait_group = None  # gloo group with WAIT_TIMEOUT, for waiting on rank 0


def current() -> DistContext:
    """This process's place: the running :func:`session`'s, else a single process on the CPU."""
    return _context if _context is not None else DistContext()


def world_size() -> int:
    return _context.world_size if _context is not None else 1


def rank() -> int:
    return _context.rank if _context is not None else 0


def is_main() -> bool:
    """True on rank 0, the one process that logs, evaluates and writes files."""
    return rank() == 0


def distributed() -> bool:
    """Whether this process is one of several in a process group (inside a :func:`session`)."""
    return world_size() > 1


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[DistContext]:
    """Join torchrun's process group for one job and leave it afterwards (also on errors).

    ``device`` is the job's resolved device; under torchrun a CUDA device becomes
    ``cuda:LOCAL_RANK``. Backend: NCCL for CUDA, gloo for CPU. Without torchrun (or with a world
    size of 1) this does nothing and yields a single-process context.
    """
    global _context, _cpu_group, _wait_group
    env = torchrun_env()
    if env is None or env["WORLD_SIZE"] == 1:
        yield DistContext(device=device)
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        raise RuntimeError("a torch.distributed process group is already initialised; session() manages its own")
    local_rank = env["LOCAL_RANK"]
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeEnvError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are "
                                  "visible; start at most that many processes per node (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # pinned memory, cuDNN handles etc. on this process's GPU
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        _cpu_group = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo")
        _wait_group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
        _context = DistContext(dist.get_rank(), local_rank, dist.get_world_size(), env["LOCAL_WORLD_SIZE"],
                               device, backend)
        yield _context
    finally:
        _context, _cpu_group, _wait_group = None, None, None
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here; on a host-side group with a long timeout, because the
    others may wait for rank 0's evaluation and saving far longer than a GPU collective's timeout."""
    if distributed():
        import torch.distributed as dist

        dist.barrier(group=_wait_group)


# --- host-side exchanges ------------------------------------------------------------------------

def gather_ints(value: int) -> list[int]:
    """``value`` from every rank (e.g. the videos each has this step, which bad files can lower)."""
    if not distributed():
        return [value]
    import torch
    import torch.distributed as dist

    parts = [torch.zeros(1, dtype=torch.int64) for _ in range(world_size())]
    dist.all_gather(parts, torch.tensor([value], dtype=torch.int64), group=_cpu_group)
    return [int(p) for p in parts]


def reduce_floats(values: list[float], op: str = "sum") -> list[float]:
    """Sum (or max) of ``values`` over ranks."""
    if not distributed():
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=_cpu_group)
    return tensor.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """A picklable ``obj`` from every rank, in rank order."""
    if not distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_cpu_group)
    return out


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result, or its exception, to every rank.

    For what must happen once (clearing a run folder, reading a checkpoint that may exist only on
    rank 0's disk, a closing evaluation, merging units): the others wait, and a failure stops all
    ranks with the same error instead of leaving them waiting.
    """
    if not distributed():
        return fn()
    import torch.distributed as dist

    payload: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            payload[0] = ("ok", fn())
        except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
            error = err
            payload[0] = ("error", _portable(err))
    dist.broadcast_object_list(payload, src=0, group=_wait_group)
    status, value = payload[0]
    if error is not None:
        raise error
    if status == "error":
        raise value
    return value


def _portable(err: Exception) -> Exception:
    """``err`` if it survives pickling, else a RuntimeError with its message."""
    try:
        return pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001 - custom exceptions with extra __init__ arguments
        return RuntimeError(f"rank 0 failed: {type(err).__name__}: {err}")


__all__ = ["DistContext", "RuntimeEnvError", "TORCHRUN_VARIABLES", "WAIT_TIMEOUT", "barrier", "cpu_share", "current",
           "distributed", "gather_ints", "gather_objects", "is_main", "on_main", "processes_on_this_node", "rank",
           "reduce_floats", "resolve_device", "session", "torchrun_env", "world_size"]
