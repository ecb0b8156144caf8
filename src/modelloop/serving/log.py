"""The prediction log: every answered prediction reaches the catalog, written in batches off the request path.

A request appends its rows to an in-memory queue (microseconds) and answers; a background writer
thread commits what is queued in one transaction (``Catalog.add_predictions``) every
``log_flush_ms`` (200 ms by default) or as soon as ``log_batch`` rows (500) are waiting, whichever
comes first, at most ``log_batch`` rows a transaction. SQLite runs in WAL mode with a busy timeout,
so several server processes append to one file safely.

Durability:

* **clean shutdown** (lifespan end, SIGTERM, Ctrl-C): ``close()`` writes everything queued before
  the process exits; nothing is lost.
* **kill -9 / crash**: a committed transaction survives (WAL, ``synchronous=NORMAL``); what is
  lost is what was queued or being written: the predictions answered during the last
  ``log_flush_ms`` plus the duration of the write in progress, and never more than
  ``5 × log_batch`` rows (2,500 with the defaults), because a request waits (without blocking the
  event loop) while ``4 × log_batch`` rows are queued. ``tests/serving/test_durability.py`` kills a
  loaded server and checks both figures.
* feedback never depends on this queue being flushed: see ``POST /v1/feedback`` in ``app.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["PredictionLog"]

log = logging.getLogger("modelloop.serving")


class PredictionLog:
    """Queue + writer thread. ``add`` never touches the disk; ``flush`` and ``close`` do."""

    def __init__(self, catalog: Any, *, flush_ms: float = 200.0, batch: int = 500,
                 on_write: Any = None):
        self.catalog = catalog
        self.interval = flush_ms / 1000.0
        self.batch = batch
        self.high_water = 4 * batch
        self.on_write = on_write           # on_write(rows, seconds) for metrics
        self.written = 0
        self.failures = 0
        self._rows: list[dict[str, Any]] = []
        self._first_at = 0.0
        # a plain lock (``add`` enters it directly: no Python-level Condition.__enter__ per request)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # one writer at a time: thread, flush() or close()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="modelloop-prediction-log", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, rows: list[dict[str, Any]]) -> bool:
        """Queue rows; False when the queue is above its high-water mark (the caller should wait)."""
        with self._lock:
            queued = self._rows
            if not queued:
                self._first_at = time.monotonic()
                queued.extend(rows)
                self._cond.notify()  # the writer sleeps without a timeout while the queue is empty
            else:
                queued.extend(rows)
                if len(queued) >= self.batch:
                    self._cond.notify()
            return len(queued) < self.high_water

    def is_pending(self, request_id: str) -> bool:
        """Whether a prediction id is queued (or being written) but not yet committed.

        Ids start with their time in ms (``ServerState.new_request_id``) and rows queue in the order
        they were answered, so an id older than the oldest queued row (feedback usually comes
        seconds or days later) is answered without a scan; only a very recent one is looked for.
        """
        with self._lock:
            rows = self._rows
            if not rows or request_id[:12] < rows[0]["request_id"][:12]:
                return False
            return any(r["request_id"] == request_id for r in rows)

    def flush(self) -> int:
        """Write everything queued now (blocking); returns the rows written."""
        total = 0
        while True:
            n = self._write_some()
            total += n
            if n == 0:
                return total

    def close(self, attempts: int = 5) -> None:
        """Stop the writer and write what is left (retrying a failing store a few times). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        for attempt in range(attempts):
            try:
                self.flush()
                return
            except Exception:
                log.exception("prediction log flush at shutdown failed (attempt %d)", attempt + 1)
                time.sleep(min(self.interval, 0.5))
        log.error("prediction log: %d rows could not be written at shutdown", len(self._rows))

    # ---- writer ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    timeout = self.interval - (time.monotonic() - self._first_at) if self._rows else None
                    self._cond.wait(timeout=timeout)
                if self._closed:
                    return
            try:
                self._write_some()
            except Exception:  # keep serving; the rows stay queued and are retried
                log.exception("prediction log write failed; retrying in %.1fs", self.interval)
                with self._cond:
                    if not self._closed:
                        self._cond.wait(timeout=self.interval)

    def _due(self) -> bool:
        return bool(self._rows) and (len(self._rows) >= self.batch
                                     or time.monotonic() - self._first_at >= self.interval)

    def _write_some(self) -> int:
        with self._write_lock:
            with self._cond:
                rows = self._rows[:self.batch]
            if not rows:
                return 0
            start = time.perf_counter()
            try:
                self._insert(rows)
            except Exception:
                self.failures += 1
                raise
            with self._cond:
                del self._rows[:len(rows)]
                self._cond.notify_all()  # rows left over keep their (older) due time
            self.written += len(rows)
            if self.on_write is not None:
                self.on_write(len(rows), time.perf_counter() - start)
            return len(rows)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One transaction; on a duplicate id (a retried write that had committed) row by row."""
        from sqlalchemy.exc import IntegrityError

        try:
            self.catalog.add_predictions(rows)
        except IntegrityError:
            for row in rows:
                try:
                    self.catalog.add_predictions([row])
                except IntegrityError:
                    log.warning("prediction %s is already in the log; skipped", row["request_id"])

    def wait_below_high_water(self, timeout: float = 5.0) -> None:
        """Block (call it from a thread) until the queue is below the high-water mark."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._rows) >= self.high_water and time.monotonic() < deadline:
                self._cond.notify()
                self._cond.wait(timeout=0.05)
