"""The app's model work: one thread that runs it, ``limit`` work slots, a short waiting line in front
of them, and 503 with an honest ``Retry-After`` beyond it.

A slot stands for model work only: an upload takes one after its body has been read
(:mod:`.uploads`), so a slow client never holds one. The slots bound how many requests are embedding
or queued for the model. A request that finds every slot taken waits, first come first served, for
at most ``wait`` seconds in a line of at most ``waiters`` requests. Beyond that it gets 503 at once --
a burst cannot pile up temporary files or minutes of waiting -- with ``Retry-After``: the seconds the
requests now in the server take to clear (see :meth:`WorkQueue.retry_after`).

**One model thread.** The model runs one request at a time anyway (``SearchService.model_lock``), so
all of it -- decoding the upload and the forward pass -- runs in one dedicated thread. Spread over the
changing threads of a thread pool, the same work fragments glibc's per-thread malloc arenas: the
server's RSS grew by ~25 KB an upload without end (8 clients, 3,600 uploads); in one thread it stays
flat (BENCHMARKS.md, "The app under load").

The counters are used from the event loop only (one thread), so they need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from .service import AppError

DEFAULT_QUEUE = 4
#: Requests that may wait for a slot. With the default 4 slots, 8 users who upload at the same moment
#: are all served (4 embedding, 4 waiting), and there is room to spare for a few more.
DEFAULT_QUEUE_WAITERS = 8
#: Longest wait for a slot, in seconds: a few uploads' worth of model work on a CPU, while the page
#: shows "embedding..." with a clock; beyond it a clear 503 and when to try again beat a hanging page.
DEFAULT_QUEUE_WAIT = 30.0
#: Completed requests whose slot times make up the estimate of :meth:`WorkQueue.retry_after`.
HOLDS_REMEMBERED = 20
#: The longest ``Retry-After`` sent, in seconds.
MAX_RETRY_AFTER = 3600

T = TypeVar("T")


class WorkQueue:
    """``limit`` work slots with a waiting line of ``waiters`` requests that wait ``wait`` seconds at
    most (see the module docstring). ``clock``: seconds, monotonic (a test passes its own)."""

    def __init__(self, limit: int = DEFAULT_QUEUE, *, waiters: int = DEFAULT_QUEUE_WAITERS,
                 wait: float = DEFAULT_QUEUE_WAIT, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"the queue must hold at least 1 request, got {limit}")
        if waiters < 0:
            raise ValueError(f"the waiting line holds 0 or more requests, got {waiters}")
        if not (math.isfinite(wait) and wait >= 0):
            raise ValueError(f"the longest wait must be a finite number of seconds >= 0, got {wait}")
        self.limit, self.waiters, self.wait, self.clock = limit, waiters, wait, clock
        self.busy = 0
        self.waiting = 0
        self._free = asyncio.Semaphore(limit)  # first come, first served among the waiters
        self._holders = itertools.count()
        self._started: dict[int, float] = {}  # holder -> when it took its slot
        self._holds: deque[float] = deque(maxlen=HOLDS_REMEMBERED)  # seconds the last requests held a slot
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tclr-zoo-model")

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in the model thread, holding a slot (see :meth:`slot`) until it has finished --
        also when the request is cancelled meanwhile, since a running thread cannot be stopped."""
        async with self.slot():
            future = asyncio.get_running_loop().run_in_executor(self._model_thread, work, *args)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                with contextlib.suppress(BaseException):
                    await future
                raise

    def close(self) -> None:
        """Stop the model thread once the work it has finishes (queued work is dropped)."""
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a work slot for the body of the ``with``: at once when one is free, else after waiting
        in the line; raises :class:`AppError` 503 (with ``Retry-After``) when the line is full or the
        wait runs out."""
        await self._acquire()
        holder = next(self._holders)
        self.busy += 1
        self._started[holder] = self.clock()
        try:
            yield
        finally:
            self._holds.append(self.clock() - self._started.pop(holder))
            self.busy -= 1
            self._free.release()

    async def _acquire(self) -> None:
        if not self._free.locked():  # a slot is free and nobody waits for one
            await self._free.acquire()
            return
        if self.waiting >= self.waiters or self.wait <= 0:
            raise self.refusal(f"{self.busy} uploads are being embedded and {self.waiting} are waiting, as many as "
                               "this app lets wait (tclr-zoo app --queue-waiters)")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._free.acquire(), self.wait)
            return
        except asyncio.TimeoutError:
            pass
        finally:
            self.waiting -= 1
        raise self.refusal(f"no upload finished within the longest wait of {self.wait:g} s (tclr-zoo app "
                           f"--queue-wait); {self.busy} are being embedded and {self.waiting} more are waiting")

    def retry_after(self) -> int:
        """Seconds until the requests now in the server (``busy`` + ``waiting``) have cleared: by Little's
        law the slots finish ``limit / hold`` requests a second, where ``hold`` is the mean time the last
        :data:`HOLDS_REMEMBERED` requests held a slot (before any finished: the longest time a request
        now in a slot has held it, at least 1 s). At least 1, at most :data:`MAX_RETRY_AFTER`."""
        now = self.clock()
        if self._holds:
            hold = sum(self._holds) / len(self._holds)
        else:
            hold = max([now - t for t in self._started.values()] + [1.0])
        seconds = math.ceil((self.busy + self.waiting) * hold / self.limit)
        return min(max(seconds, 1), MAX_RETRY_AFTER)

    def refusal(self, why: str) -> AppError:
        """503 with ``Retry-After``, its seconds also in the message."""
        seconds = self.retry_after()
        return AppError(f"busy: {why}; try again in {seconds} s", 503, headers={"Retry-After": str(seconds)})

    def state(self) -> dict[str, Any]:
        """What ``/api/health`` reports."""
        return {"busy": self.busy, "queue": self.limit, "waiting": self.waiting, "waiters": self.waiters,
                "wait_s": self.wait}


__all__ = ["DEFAULT_QUEUE", "DEFAULT_QUEUE_WAIT", "DEFAULT_QUEUE_WAITERS", "HOLDS_REMEMBERED", "MAX_RETRY_AFTER",
           "WorkQueue"]
