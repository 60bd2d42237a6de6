"""Micro-batching: requests that arrive within a short window share one encoder pass.

Each request waits at most ``wait_ms`` for company; requests are grouped by (task list, input kind: text, pair or
entities) so a group can run as one pipeline call. The model runs in one worker thread, so the event loop stays
responsive and the model never sees two batches at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from polytask.inference import Pipeline


@dataclass
class _Request:
    inputs: list[Any]
    tasks: tuple[str, ...] | None
    kind: str
    future: asyncio.Future = field(repr=False)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.tasks, self.kind)


class MicroBatcher:
    def __init__(self, pipeline: Pipeline, max_batch: int = 64, wait_ms: float = 5.0) -> None:
        self.pipeline, self.max_batch, self.wait = pipeline, max_batch, wait_ms / 1000.0
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polytask-model")
        self.batches_run = 0  # for tests and /health: how many model calls served the requests so far

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=False)

    async def predict(self, inputs: list[Any], tasks: list[str] | None, kind: str = "text") -> list[dict[str, Any]]:
        """``kind``: the input kind of every item (requests of one kind and task list share a pipeline call)."""
        if self._queue is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        request = _Request(inputs, tuple(tasks) if tasks else None, kind, future)
        await self._queue.put(request)  # type: ignore[union-attr]
        return await future

    async def _collect(self) -> list[_Request]:
        first = await self._queue.get()  # type: ignore[union-attr]
        batch, size = [first], len(first.inputs)
        deadline = asyncio.get_running_loop().time() + self.wait
        while size < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)  # type: ignore[union-attr]
            except asyncio.TimeoutError:
                break
            batch.append(item)
            size += len(item.inputs)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            groups: dict[tuple[Any, ...], list[_Request]] = {}
            for req in batch:
                groups.setdefault(req.key, []).append(req)
            for (tasks, _), reqs in groups.items():
                inputs = [x for r in reqs for x in r.inputs]
                try:
                    outputs = await loop.run_in_executor(self._pool, self.pipeline, inputs,
                                                         list(tasks) if tasks else None)
                    self.batches_run += 1
                except Exception as exc:  # noqa: BLE001  (handed to each waiting request; the worker lives on)
                    for r in reqs:
                        if not r.future.done():
                            r.future.set_exception(exc)
                    continue
                start = 0
                for r in reqs:
                    if not r.future.done():
                        r.future.set_result(outputs[start : start + len(r.inputs)])
                    start += len(r.inputs)
