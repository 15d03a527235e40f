"""Dynamic batching: concurrent requests for one model share a generation batch.

Each model has one worker thread (its modules are never used by two threads) and one
queue of jobs. When the worker is free, the oldest job's rows are taken together with
the rows of every other queued job that has the same sampling options, up to
``max_batch`` rows. If fewer are waiting, the batcher waits for more as long as they
keep coming: the batch closes once ``batch_wait_ms`` pass with no new request (a burst
of clients answered together and sending again is caught whole), and at the latest
``WAIT_CAP`` times ``batch_wait_ms`` after the oldest request arrived. A lone request
waits ``batch_wait_ms``. A job larger than ``max_batch`` spans batches.

Sharing a batch changes no sample: row i of a job carries its own seed,
``sample_seed(seed, i)``, and genkit's generators draw every random number of a row from
that seed alone (images agree to float batch effects, within 2/255; text exactly).

A batch that fails is rerun one job at a time, so a bad request (a prompt longer than
the model's context) fails alone. A job whose client went away is dropped from the
queue; a running batch whose every job is gone is stopped at its next streamed token.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from genkit.errors import SamplingError
from genkit.serve.schema import RequestError, Work

log = logging.getLogger("genkit.serve")

#: the oldest request of a batch waits at most this many times --batch-wait-ms
WAIT_CAP = 5


@dataclasses.dataclass
class Row:
    """One sample of a job: its index in the request, its seed, its conditions."""

    job: Job
    index: int
    seed: int
    condition: dict[str, Any]


class Job:
    """One request's samples on their way through the batcher.

    The worker thread posts events to :attr:`queue`: ``("delta", text)`` for streamed
    text of sample 0, ``("samples", [(row, encoded), ...])`` per finished batch, then
    ``("done", None)`` or ``("error", exception)``.
    """

    def __init__(self, work: Work, stream: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.work, self.stream, self.loop = work, stream, loop
        self.key = repr(work.options)  # jobs share a batch only with equal options
        self.rows = collections.deque(Row(self, i, s, c) for i, (s, c) in
                                      enumerate(zip(work.seeds(), work.conditions)))
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.arrived = loop.time()
        self.delivered = 0  # rows finished (worker thread only)
        self.cancelled = False  # the client is gone, or the job failed: drop what is left
        self.released = False

    def post(self, kind: str, payload: Any) -> None:
        """From the worker thread: hand an event to the request's coroutine."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """The job's events, ending with ``done`` or ``error``."""
        while True:
            kind, payload = await self.queue.get()
            yield kind, payload
            if kind in ("done", "error"):
                return


class _Abandoned(Exception):
    """Raised inside a streaming batch whose clients have all gone, to stop it."""


class Batcher:
    """The queue and worker thread of one model."""

    def __init__(self, generator: Any, encode: Callable[[Any], Any], max_batch: int = 32,
                 batch_wait_ms: float = 10.0, max_queue: int = 1024) -> None:
        self.generator, self.encode = generator, encode
        self.max_batch, self.wait_s, self.max_queue = max_batch, batch_wait_ms / 1000, max_queue
        self.executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"genkit-serve-{generator.name}")
        self.pending: collections.deque[Job] = collections.deque()
        self.queued = 0  # samples admitted and not yet released (the slots in use)
        self.stats = {"batches": 0, "samples": 0, "largest_batch": 0, "failed_batches": 0,
                      "abandoned_batches": 0, "busy_s": 0.0}
        self._last_arrival = 0.0
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------ event-loop side
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)

    def check_room(self, n: int) -> None:
        """429 when ``n`` more samples would overfill the model's queue."""
        if self.queued + n > self.max_queue:
            raise RequestError(f"server busy: {self.queued} samples queued for model "
                               f"{self.generator.name!r} (limit {self.max_queue}); retry later",
                               status=429, code="server_busy")

    def submit(self, work: Work, stream: bool = False) -> Job:
        """Queue ``work`` (429 when the queue is full). Call :meth:`release` when the
        request ends, however it ends."""
        self.check_room(work.n)
        job = Job(work, stream, asyncio.get_running_loop())
        self.queued += work.n
        self.pending.append(job)
        self._last_arrival = job.arrived
        self._wake.set()
        return job

    def release(self, job: Job) -> None:
        """Free the job's slots; rows not yet run are dropped."""
        if not job.released:
            job.released, job.cancelled = True, True
            self.queued -= job.work.n
            self._wake.set()

    async def run_exclusive(self, fn: Callable[[], Any], n: int) -> Any:
        """Run ``fn`` (work for ``n`` samples) on the model's worker thread, between batches."""
        self.check_room(n)
        self.queued += n
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn)
        finally:
            self.queued -= n

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._next_batch(loop)
            except asyncio.CancelledError:
                raise
            except Exception:  # the model must keep serving whatever went wrong here
                log.exception("genkit serve: batcher of %r", self.generator.name)

    async def _next_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._drop_cancelled()
        if not self.pending:
            self._wake.clear()
            await self._wake.wait()
            return
        head = self.pending[0]
        if not await self._gather(head, loop):
            return
        rows = self._take(head.key)
        if rows:
            await loop.run_in_executor(self.executor, self._run, rows)

    async def _gather(self, head: Job, loop: asyncio.AbstractEventLoop) -> bool:
        """Wait for a full batch of ``head``'s kind, while requests keep arriving: the
        batch closes when ``batch_wait_ms`` pass with no new request, or when ``head`` has
        waited ``WAIT_CAP`` times that. False when ``head`` left the queue meanwhile."""
        cap = head.arrived + WAIT_CAP * self.wait_s
        deadline = min(cap, self._last_arrival + self.wait_s)
        while self._ready(head.key) < self.max_batch:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._drop_cancelled()
            if not self.pending or self.pending[0] is not head:
                return False
            deadline = min(cap, self._last_arrival + self.wait_s)
        return True

    def _ready(self, key: str) -> int:
        return sum(len(j.rows) for j in self.pending if j.key == key and not j.cancelled)

    def _drop_cancelled(self) -> None:
        if any(j.cancelled or not j.rows for j in self.pending):
            self.pending = collections.deque(j for j in self.pending if j.rows and not j.cancelled)

    def _take(self, key: str) -> list[Row]:
        """Up to ``max_batch`` rows of jobs with options ``key``, oldest first, except that
        a streaming job's sample 0 goes in row 0 (the row a generator streams)."""
        jobs = [j for j in self.pending if j.key == key and not j.cancelled]
        streamer = next((j for j in jobs if j.stream and j.rows and j.rows[0].index == 0), None)
        if streamer is not None:
            jobs.remove(streamer)
            jobs.insert(0, streamer)
        rows: list[Row] = []
        for job in jobs:
            while job.rows and len(rows) < self.max_batch:
                rows.append(job.rows.popleft())
        self._drop_cancelled()
        return rows

    # ------------------------------------------------------------------ worker side
    def _run(self, rows: list[Row]) -> None:
        """Generate one batch and hand each job its samples (worker thread)."""
        if all(r.job.cancelled for r in rows):
            return
        start = time.perf_counter()
        try:
            encoded = self._generate(rows)
        except _Abandoned:
            self.stats["abandoned_batches"] += 1
            return
        except Exception as exc:  # a request's failure must not stop the server
            jobs = list(dict.fromkeys(r.job for r in rows))
            if len(jobs) > 1:  # find the job at fault: each alone
                for job in jobs:
                    self._run([r for r in rows if r.job is job])
                return
            self.stats["failed_batches"] += 1
            jobs[0].cancelled = True
            jobs[0].post("error", exc)
            return
        self.stats["batches"] += 1
        self.stats["samples"] += len(rows)
        self.stats["busy_s"] = round(self.stats["busy_s"] + time.perf_counter() - start, 3)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(rows))
        for job in dict.fromkeys(r.job for r in rows):
            mine = [(r, e) for r, e in zip(rows, encoded) if r.job is job]
            job.delivered += len(mine)
            job.post("samples", mine)
            if job.delivered == job.work.n:
                job.post("done", None)

    def _generate(self, rows: list[Row]) -> list[Any]:
        head = rows[0]
        stream = None
        if head.job.stream and head.index == 0:
            jobs = {r.job for r in rows}

            def stream(piece: str) -> None:
                if all(j.cancelled for j in jobs):
                    raise _Abandoned
                if not head.job.cancelled:
                    head.job.post("delta", piece)

        g = self.generator
        with g.inference():
            outputs = g.generate([r.seed for r in rows], [dict(r.condition) for r in rows],
                                 head.job.work.options, stream=stream)
        if len(outputs) != len(rows):
            raise SamplingError(f"generator {g.name!r} returned {len(outputs)} samples for "
                                f"a batch of {len(rows)}")
        return [self.encode(o) for o in outputs]

