"""The prediction log: batched background writes, flush on close, bounded queue, retries."""

from __future__ import annotations

import threading
import time

from modelloop.catalog import Catalog, utcnow
from modelloop.serving.log import PredictionLog


class FakeCatalog:
    def __init__(self, fail_times: int = 0, delay: float = 0.0):
        self.calls: list[list[dict]] = []
        self.fail_times, self.delay = fail_times, delay
        self.lock = threading.Lock()

    def add_predictions(self, rows: list[dict]) -> None:
        time.sleep(self.delay)
        with self.lock:
            if self.fail_times:
                self.fail_times -= 1
                raise OSError("disk busy")
            self.calls.append(list(rows))

    @property
    def rows(self) -> int:
        return sum(len(c) for c in self.calls)


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"request_id": f"r{i}", "name": "toy", "version": 1, "at": utcnow(), "inputs": {"a": i},
             "output": {"label": 0}, "latency_ms": 1.0} for i in range(start, start + n)]


def test_rows_are_written_in_batches_not_per_request() -> None:
    cat = FakeCatalog()
    plog = PredictionLog(cat, flush_ms=100, batch=50)
    for i in range(120):
        plog.add(rows(1, i))
    assert cat.calls == [] or len(cat.calls) <= 3   # nothing written per request
    deadline = time.monotonic() + 3
    while cat.rows < 120 and time.monotonic() < deadline:
        time.sleep(0.02)
    plog.close()
    assert cat.rows == 120 and len(cat.calls) <= 4 and max(len(c) for c in cat.calls) <= 50


def test_a_lone_row_waits_at_most_the_flush_interval() -> None:
    cat = FakeCatalog()
    plog = PredictionLog(cat, flush_ms=150, batch=500)
    start = time.monotonic()
    plog.add(rows(1))
    assert plog.is_pending("r0")
    while not cat.calls and time.monotonic() - start < 3:
        time.sleep(0.01)
    took = time.monotonic() - start
    plog.close()
    assert cat.rows == 1 and 0.1 < took < 1.0 and not plog.is_pending("r0")


def test_close_flushes_everything_queued() -> None:
    cat = FakeCatalog()
    plog = PredictionLog(cat, flush_ms=60_000, batch=100_000)   # the writer would never wake
    plog.add(rows(1234))
    plog.close()
    assert cat.rows == 1234 and plog.pending == 0


def test_flush_writes_now() -> None:
    cat = FakeCatalog()
    plog = PredictionLog(cat, flush_ms=60_000, batch=100)
    plog.add(rows(250))
    plog.flush()                     # returns once everything queued is committed
    assert plog.pending == 0 and cat.rows == 250 and max(len(c) for c in cat.calls) <= 100
    plog.close()


def test_close_retries_a_failing_store() -> None:
    cat = FakeCatalog(fail_times=2)
    plog = PredictionLog(cat, flush_ms=60_000, batch=100)
    plog.add(rows(7))
    plog.close()
    assert cat.rows == 7


def test_failed_writes_keep_the_rows_and_retry() -> None:
    cat = FakeCatalog(fail_times=2)
    plog = PredictionLog(cat, flush_ms=20, batch=10)
    plog.add(rows(5))
    deadline = time.monotonic() + 3
    while cat.rows < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    plog.close()
    assert cat.rows == 5 and plog.failures == 2


def test_queue_above_high_water_asks_the_caller_to_wait() -> None:
    cat = FakeCatalog(delay=0.2)
    plog = PredictionLog(cat, flush_ms=10_000, batch=10)
    assert plog.add(rows(39)) is True
    assert plog.add(rows(1, 39)) is False            # 4 × batch queued
    plog.wait_below_high_water(timeout=5)
    assert plog.pending < plog.high_water
    plog.close()
    assert cat.rows == 40


def test_real_catalog_round_trip_and_duplicate_ids_are_skipped(tmp_path) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    cat.add_predictions(rows(1, 3))                    # r3 already stored (a retried write)
    plog = PredictionLog(cat, flush_ms=50, batch=100)
    plog.add(rows(10))
    plog.close()
    assert cat.get_prediction("r7")["inputs"] == {"a": 7}
    with cat.tx() as c:
        assert c.exec_driver_sql("select count(*) from predictions").scalar() == 10
