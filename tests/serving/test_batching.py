"""Adaptive micro-batching: no wait when idle, batches from what is waiting, never mixed models."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from modelloop.serving.batching import MicroBatcher


class FakeRuntime:
    def __init__(self, delay: float = 0.0, fail_on: object = None):
        self.delay, self.fail_on = delay, fail_on
        self.calls: list[list] = []
        self.threads: set[str] = set()

    def predict(self, records: list) -> list:
        self.calls.append(list(records))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in records:
            raise ValueError("bad record")
        return [{"label": r} for r in records]


def test_idle_request_runs_at_once_in_a_worker_thread() -> None:
    async def main() -> float:
        b = MicroBatcher(max_batch_size=8, max_wait_ms=50)
        rt = FakeRuntime()
        start = time.perf_counter()
        assert await b.predict(rt, [1]) == [{"label": 1}]
        took = time.perf_counter() - start
        assert rt.calls == [[1]] and all(t.startswith("modelloop-infer") for t in rt.threads)
        b.close()
        return took

    assert asyncio.run(main()) < 0.04   # far below max_wait_ms: no timer on an idle queue


def test_concurrent_requests_coalesce_up_to_max_batch_size() -> None:
    async def main() -> FakeRuntime:
        b = MicroBatcher(max_batch_size=8, max_wait_ms=2)
        rt = FakeRuntime(delay=0.02)
        outs = await asyncio.gather(*(b.predict(rt, [i]) for i in range(40)))
        assert outs == [[{"label": i}] for i in range(40)]      # each gets its own answer
        b.close()
        return rt

    rt = asyncio.run(main())
    sizes = [len(c) for c in rt.calls]
    assert sizes == [8] * 5       # all 40 were waiting when the first batch formed


def test_multi_record_requests_stay_together_and_in_order() -> None:
    async def main() -> None:
        b = MicroBatcher(max_batch_size=10)
        rt = FakeRuntime(delay=0.01)
        outs = await asyncio.gather(b.predict(rt, [1, 2, 3]), b.predict(rt, [4, 5]), b.predict(rt, [6]))
        assert outs == [[{"label": 1}, {"label": 2}, {"label": 3}], [{"label": 4}, {"label": 5}],
                        [{"label": 6}]]
        b.close()

    asyncio.run(main())


def test_batches_never_mix_runtimes() -> None:
    async def main() -> tuple[FakeRuntime, FakeRuntime]:
        b = MicroBatcher(max_batch_size=64)
        old, new = FakeRuntime(delay=0.01), FakeRuntime(delay=0.01)
        jobs = [b.predict(old if i % 3 else new, [i]) for i in range(30)]
        outs = await asyncio.gather(*jobs)
        assert outs == [[{"label": i}] for i in range(30)]
        b.close()
        return old, new

    old, new = asyncio.run(main())
    assert sorted(r for c in old.calls for r in c) == [i for i in range(30) if i % 3]
    assert sorted(r for c in new.calls for r in c) == [i for i in range(30) if not i % 3]


def test_a_failing_record_fails_only_its_own_request() -> None:
    async def main() -> list:
        b = MicroBatcher(max_batch_size=64)
        rt = FakeRuntime(delay=0.01, fail_on=13)
        res = await asyncio.gather(*(b.predict(rt, [i]) for i in range(20)), return_exceptions=True)
        b.close()
        return res

    res = asyncio.run(main())
    assert isinstance(res[13], ValueError)
    assert [r for i, r in enumerate(res) if i != 13] == [[{"label": i}] for i in range(20) if i != 13]


@pytest.mark.parametrize("slots", [1, 2])
def test_the_event_loop_is_never_blocked_by_inference(slots) -> None:
    async def main() -> float:
        b = MicroBatcher(max_batch_size=4, slots=slots)
        rt = FakeRuntime(delay=0.05)
        task = asyncio.gather(*(b.predict(rt, [i]) for i in range(8)))
        start = time.perf_counter()
        await asyncio.sleep(0.01)                 # must return on time while inference runs
        late = time.perf_counter() - start
        await task
        b.close()
        return late

    assert asyncio.run(main()) < 0.04


def test_the_next_batch_does_not_wait_for_a_busy_event_loop() -> None:
    """The worker takes what is queued as soon as it is free: while the event loop is busy (parsing,
    answering), batches keep running."""
    async def main() -> tuple[int, list]:
        b = MicroBatcher(max_batch_size=4)
        rt = FakeRuntime(delay=0.02)
        task = asyncio.gather(*(b.predict(rt, [i]) for i in range(12)))
        for _ in range(5):              # the requests queue, and the idle worker is woken
            await asyncio.sleep(0)
        time.sleep(0.5)                 # the loop busy for 500 ms, holding no answer back from the worker
        ran = len(rt.calls)
        outs = await task
        b.close()
        return ran, outs

    ran, outs = asyncio.run(main())
    assert ran == 3 and outs == [[{"label": i}] for i in range(12)]


def test_close_answers_what_is_queued_then_refuses() -> None:
    async def main() -> None:
        b = MicroBatcher(max_batch_size=2)
        rt = FakeRuntime(delay=0.01)
        jobs = [asyncio.ensure_future(b.predict(rt, [i])) for i in range(6)]
        await asyncio.sleep(0)
        b.close()                       # the workers answer all six before they stop
        assert sorted(r for c in rt.calls for r in c) == list(range(6))
        assert [await j for j in jobs] == [[{"label": i}] for i in range(6)]
        with pytest.raises(RuntimeError, match="closed"):
            await b.predict(rt, [7])

    asyncio.run(main())


def test_the_worker_survives_what_a_model_or_a_metric_raises() -> None:
    class Stop(BaseException):
        pass

    class Stopping(FakeRuntime):
        def predict(self, records: list) -> list:
            if records == ["stop"]:
                raise Stop()
            return super().predict(records)

    def broken_metric(n: int, seconds: float) -> None:
        raise ValueError("metrics down")

    async def main() -> None:
        b = MicroBatcher(max_batch_size=4, on_batch=broken_metric)
        rt = Stopping()
        with pytest.raises(Stop):
            await asyncio.wait_for(b.predict(rt, ["stop"]), 5)
        assert await asyncio.wait_for(b.predict(rt, [1]), 5) == [{"label": 1}]   # the worker answers on
        b.close()

    asyncio.run(main())
