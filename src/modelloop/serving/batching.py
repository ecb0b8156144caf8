"""Adaptive micro-batching: concurrent requests share one inference call, an idle server waits for none.

How a batch forms (no timer anywhere on the request path):

* a request appends its records to the queue. Inference runs in ``slots`` worker threads of the
  batcher's own (ORT releases the GIL, so the event loop keeps parsing requests meanwhile);
* a worker that finishes a batch takes *everything already waiting* (up to ``max_batch_size``
  records) as its next batch at once, in its own thread: the busier the server, the larger the
  batches, and the event loop has no part in starting the next inference call (no task, no
  executor hand-off, no thread to wake while work keeps coming);
* when a worker is idle, the request that finds it so schedules a wake-up for the end of the event
  loop's turn, so every request parsed in that turn joins the batch; an idle queue's request runs at
  once. When the forming batch holds two or more requests (a sign of concurrency), the wake-up waits
  a few more zero-length turns, at most ``max_wait_ms`` in all, to admit requests whose bytes have
  already arrived, and stops at the first turn that adds none;
* each batch's answers go back to the event loop in one ``call_soon_threadsafe``.

Requests hold a reference to the runtime they were validated against; a batch only mixes requests
of the same runtime, so a hot swap never feeds a record to a model with another schema.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["MicroBatcher"]

log = logging.getLogger("modelloop.serving")


class _Item:
    __slots__ = ("future", "records", "runtime")

    def __init__(self, runtime: Any, records: list[dict[str, Any]], future: asyncio.Future):
        self.runtime, self.records, self.future = runtime, records, future


class MicroBatcher:
    """``await batcher.predict(runtime, records)`` -> ``runtime.predict(records)``, batched.

    ``on_batch(n_records, seconds)`` is called after each inference call (for metrics), in the
    worker thread.
    """

    def __init__(self, *, max_batch_size: int = 64, max_wait_ms: float = 2.0, slots: int = 1,
                 on_batch: Callable[[int, float], None] | None = None):
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.slots = slots
        self.on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._idle = 0           # workers waiting for a batch
        self._waking = False     # a wake-up is scheduled on the event loop (requests gather for it)
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"modelloop-infer_{i}", daemon=True)
                         for i in range(slots)]
        for thread in self._threads:
            thread.start()
        with self._lock:  # every worker waits for work before the first request comes
            while self._idle < slots:
                self._ready.wait()

    @property
    def pending(self) -> int:
        """Requests waiting for an inference slot."""
        return len(self._queue)

    async def predict(self, runtime: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            self._queue.append(_Item(runtime, records, future))
            wake = self._idle > 0 and not self._waking
            self._waking = self._waking or wake
        if wake:  # once this turn's requests are queued too
            loop.call_soon(self._wake, loop, 0, time.perf_counter() + self.max_wait)
        return await future

    def _wake(self, loop: asyncio.AbstractEventLoop, seen: int, deadline: float) -> None:
        """Wake an idle worker, after more turns of the loop while each adds requests (``max_wait``)."""
        with self._lock:
            waiting = len(self._queue)
            if (waiting > 1 and waiting != seen and self.max_wait > 0 and time.perf_counter() < deadline
                    and sum(len(i.records) for i in self._queue) < self.max_batch_size):
                loop.call_soon(self._wake, loop, waiting, deadline)
                return
            self._waking = False
            self._ready.notify()

    def _work(self) -> None:
        started = False
        while True:
            with self._lock:
                while not self._closed and (not self._queue or self._waking):
                    self._idle += 1
                    if not started:  # __init__ waits for every worker's first wait
                        started = True
                        self._ready.notify_all()
                    self._ready.wait()
                    self._idle -= 1
                if not self._queue:  # closed, and nothing left to answer
                    return
                batch = self._take()
                if self._queue and self._idle and not self._waking:
                    self._ready.notify()  # another slot takes the rest
            self._run(batch)

    def _take(self) -> list[_Item]:
        """Waiting items of the first item's runtime, up to ``max_batch_size`` records (under the lock)."""
        first = self._queue.popleft()
        batch, runtime, size = [first], first.runtime, len(first.records)
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

    def _run(self, batch: list[_Item]) -> None:
        """One inference call (in a worker thread); its answers settle the futures on their loop."""
        records = [r for item in batch for r in item.records]
        start = time.perf_counter()
        try:
            outputs = batch[0].runtime.predict(records)
        except BaseException as exc:  # the worker lives on; the request gets the error, as from an executor
            if len(batch) == 1:
                _deliver([(batch[0].future, None, exc)])
                return
            for item in batch:  # one bad request must not fail its neighbours
                self._run([item])
            return
        if self.on_batch is not None:
            try:
                self.on_batch(len(records), time.perf_counter() - start)
            except Exception:  # a metric must not keep the answers back
                log.exception("micro-batcher: on_batch failed")
        done: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        at = 0
        for item in batch:
            n = len(item.records)
            done.append((item.future, outputs[at:at + n], None))
            at += n
        _deliver(done)

    def close(self) -> None:
        """Answer what is queued, then stop the workers."""
        with self._lock:
            self._closed = True
            self._waking = False
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()


def _deliver(results: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """Settle the futures on their event loop: one call a batch (one loop serves a server)."""
    loops: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for result in results:
        loops.setdefault(result[0].get_loop(), []).append(result)
    for loop, some in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, some)
        except RuntimeError:  # the loop has closed: nobody waits for these answers
            pass


def _settle(results: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, exc in results:
        if future.done():  # the client went away and the request was cancelled
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
