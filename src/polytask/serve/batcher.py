"""Micro-batching: requests that arrive within a short window share one encoder pass.

Each request waits at most ``wait_ms`` for company; requests are grouped by (task list, input kind: text, pair or
entities, generation settings) so a group can run as one pipeline call. The model runs in one worker thread, so the event loop stays
responsive and the model never sees two batches at once.

One request never hurts another: when a call that merged several requests fails, each of them runs again alone,
so only a request that fails on its own gets the error. A request whose caller stopped waiting (timeout) is
skipped. ``stop`` refuses new requests and answers every queued one before the worker ends.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from polytask.inference import Pipeline


class Unavailable(RuntimeError):
    """The batcher takes no more requests now (shutting down, or its queue is full): the server answers 503."""


@dataclass
class BatcherStats:
    """Counters since start (``GET /health`` shows them); mean micro-batch = ``inputs / model_calls``."""

    requests: int = 0  # requests answered with predictions
    inputs: int = 0  # inputs run through the model by successful calls
    model_calls: int = 0  # successful pipeline calls
    merged_calls: int = 0  # successful calls that served more than one request
    split_calls: int = 0  # merged calls that failed and were run again one request at a time
    failed_requests: int = 0  # requests answered with an error by the model call
    abandoned: int = 0  # requests whose caller had stopped waiting (timeout) before their turn
    refused: int = 0  # requests refused with Unavailable (queue full, shutting down)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Request:
    inputs: list[Any]
    tasks: tuple[str, ...] | None
    kind: str
    future: asyncio.Future = field(repr=False)
    generation: tuple[tuple[str, int], ...] = ()  # sorted (setting, value) pairs of a request's generation

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.tasks, self.kind, self.generation)


class MicroBatcher:
    """Queue of requests in front of one pipeline; ``max_queue`` (requests waiting) bounds memory under overload."""

    def __init__(self, pipeline: Pipeline, max_batch: int = 64, wait_ms: float = 5.0,
                 max_queue: int | None = None) -> None:
        self.pipeline, self.max_batch, self.wait = pipeline, max_batch, wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatcherStats()
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self._closing = False
        self._pool: ThreadPoolExecutor | None = None

    @property
    def batches_run(self) -> int:
        """How many model calls served the requests so far."""
        return self.stats.model_calls

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start (or start again, after ``stop``: an app's lifespan may run more than once) the worker."""
        self._queue = asyncio.Queue()
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polytask-model")
        self._worker = asyncio.create_task(self._run())

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new requests, answer every queued one (waiting at most ``timeout`` seconds), end the worker."""
        self._closing = True
        if self._queue is not None and self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except asyncio.TimeoutError:
                pass  # what is still queued fails below: its callers get an answer instead of hanging
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.future.done():
                request.future.set_exception(Unavailable("the server shut down before this request's turn"))
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    async def predict(self, inputs: list[Any], tasks: list[str] | None, kind: str = "text",
                      generation: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """``kind``: the input kind of every item; ``generation``: settings of the generating tasks (requests of
        one kind, task list and generation settings share a pipeline call)."""
        if self._closing:
            self.stats.refused += 1
            raise Unavailable("the server is shutting down")
        if self._queue is None:
            await self.start()
        assert self._queue is not None
        if self.max_queue is not None and self._queue.qsize() >= self.max_queue:
            self.stats.refused += 1
            raise Unavailable(f"busy: {self._queue.qsize()} requests are waiting (the limit is {self.max_queue}); "
                              "retry later")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(inputs, tuple(tasks) if tasks else None, kind, future,
                                        tuple(sorted((generation or {}).items()))))
        return await future

    async def _collect(self) -> list[_Request]:
        assert self._queue is not None
        first = await self._queue.get()
        batch, size = [first], len(first.inputs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while size < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            batch.append(item)
            size += len(item.inputs)
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._collect()
            try:
                await self._serve(batch)
            except Exception as exc:  # noqa: BLE001  (a bug here fails this batch, never the worker)
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _serve(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # a cancelled future: the caller timed out
        self.stats.abandoned += len(batch) - len(live)
        groups: dict[tuple[Any, ...], list[_Request]] = {}
        for r in live:
            groups.setdefault(r.key, []).append(r)
        for reqs in groups.values():
            await self._call(reqs)

    async def _call(self, reqs: list[_Request]) -> None:
        """One pipeline call for ``reqs``; if it fails and merged several, each request runs again alone."""
        reqs = [r for r in reqs if not r.future.done()]
        if not reqs:
            return
        tasks, generation = reqs[0].tasks, dict(reqs[0].generation) or None
        inputs = [x for r in reqs for x in r.inputs]
        # settings only when a request has some: the plain call stays (inputs, tasks)
        call = functools.partial(self.pipeline, generation=generation) if generation else self.pipeline
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._pool, call, inputs, list(tasks) if tasks else None)
        except Exception as exc:  # noqa: BLE001  (handed to the request it belongs to; the worker lives on)
            if len(reqs) > 1:
                self.stats.split_calls += 1
                for r in reqs:
                    await self._call([r])
                return
            self.stats.failed_requests += 1
            if not reqs[0].future.done():
                reqs[0].future.set_exception(exc)
            return
        self.stats.model_calls += 1
        self.stats.merged_calls += len(reqs) > 1
        self.stats.inputs += len(inputs)
        start = 0
        for r in reqs:
            if not r.future.done():
                r.future.set_result(outputs[start : start + len(r.inputs)])
                self.stats.requests += 1
            else:
                self.stats.abandoned += 1
            start += len(r.inputs)
