"""Adaptive micro-batching: concurrent requests share one inference call, an idle server waits for none.

How a batch forms (no timer anywhere on the request path):

* a request appends its records to the queue; when no inference is running, a dispatcher starts and
  takes *everything already waiting* (up to ``max_batch_size`` records) on its first event-loop turn;
  with an idle queue that is the request alone, so it runs at once;
* inference runs in a worker thread (ORT releases the GIL), so the event loop keeps parsing
  requests meanwhile; those wait in the queue and leave together as the next batch when the
  thread frees. The busier the server, the larger the batches: batching costs nothing when idle;
* when a batch already holds two or more requests (a sign of concurrency), the dispatcher gives the
  event loop a few zero-length turns, at most ``max_wait_ms`` in all, to admit requests whose bytes
  have already arrived, and stops at the first turn that adds none.

Requests hold a reference to the runtime they were validated against; a batch only mixes requests
of the same runtime, so a hot swap never feeds a record to a model with another schema.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["MicroBatcher"]


class _Item:
    __slots__ = ("future", "records", "runtime")

    def __init__(self, runtime: Any, records: list[dict[str, Any]], future: asyncio.Future):
        self.runtime, self.records, self.future = runtime, records, future


class MicroBatcher:
    """``await batcher.predict(runtime, records)`` -> ``runtime.predict(records)``, batched.

    ``on_batch(n_records, seconds)`` is called after each inference call (for metrics).
    """

    def __init__(self, *, max_batch_size: int = 64, max_wait_ms: float = 2.0, slots: int = 1,
                 on_batch: Callable[[int, float], None] | None = None):
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.slots = slots
        self.on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._busy = 0
        self._tasks: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="modelloop-infer")

    @property
    def pending(self) -> int:
        """Requests waiting for an inference slot."""
        return len(self._queue)

    async def predict(self, runtime: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(_Item(runtime, records, future))
        if self._busy < self.slots:
            self._busy += 1
            task = loop.create_task(self._dispatch())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _dispatch(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                if len(batch) > 1 and self.max_wait > 0:
                    batch = await self._linger(batch)
                await self._run(batch)
        finally:
            self._busy -= 1

    def _take(self, batch: list[_Item] | None = None) -> list[_Item]:
        """Waiting items of the first item's runtime, up to ``max_batch_size`` records."""
        batch = batch or [self._queue.popleft()]
        runtime, size = batch[0].runtime, sum(len(i.records) for i in batch)
        skipped: list[_Item] = []
        while self._queue and size < self.max_batch_size:
            item = self._queue[0]
            if size + len(item.records) > self.max_batch_size:
                break
            self._queue.popleft()
            if item.runtime is runtime:
                batch.append(item)
                size += len(item.records)
            else:
                skipped.append(item)
        self._queue.extendleft(reversed(skipped))
        return batch

    async def _linger(self, batch: list[_Item]) -> list[_Item]:
        deadline = time.perf_counter() + self.max_wait
        while time.perf_counter() < deadline:
            before = len(batch)
            await asyncio.sleep(0)
            batch = self._take(batch)
            if len(batch) == before:
                break
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        records = [r for item in batch for r in item.records]
        runtime = batch[0].runtime
        start = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, runtime.predict, records)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exc=exc)
                return
            for item in batch:  # one bad request must not fail its neighbours
                await self._run([item])
            return
        if self.on_batch is not None:
            self.on_batch(len(records), time.perf_counter() - start)
        at = 0
        for item in batch:
            n = len(item.records)
            _settle(item.future, result=outputs[at:at + n])
            at += n

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


def _settle(future: asyncio.Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
