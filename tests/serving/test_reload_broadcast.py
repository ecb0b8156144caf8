"""A reload reaches every replica of ``serve --engine ray`` (serving/ray_serve.py ``ReloadBroadcast`` and
``follow_reloads``), checked here without Ray: the broadcast's bookkeeping alone, then two real servers
following one broadcast hosted on an event loop of its own (as a Ray actor is). The same on a real Ray
head: tests/compute/test_serve_ray.py's slow test."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from servers import running

from modelloop.registry import promote
from modelloop.serving import ServeConfig, create_app, ray_serve
from modelloop.serving.ray_serve import ReloadBroadcast, follow_reloads


def test_a_generation_is_answered_by_every_live_replica_and_only_those():
    async def scenario() -> None:
        b = ReloadBroadcast(lost_after=0.5)
        assert [await b.register(r) for r in ("a", "b", "c")] == [0, 0, 0]
        await b.leave("c")                                  # stopped: not waited for
        waits = [asyncio.create_task(b.follow(r, 0, 5.0)) for r in ("a", "b")]
        gen, replicas = await b.start(2)
        assert (gen, replicas) == (1, ["a", "b"])
        assert [await w for w in waits] == [(1, 2), (1, 2)]
        assert await b.start(2) == (1, ["a", "b"])          # a second poller joins the reload in progress
        await b.ack("a", 1, {"version": 2})
        answering = asyncio.create_task(b.answers(1, ["a", "b"], 5.0))
        await asyncio.sleep(0.05)
        assert not answering.done()                          # b has not swapped yet
        await b.ack("b", 1, {"error": "boom", "version": 1})
        assert await answering == {"a": {"version": 2}, "b": {"error": "boom", "version": 1}}
        assert (await b.start(2))[0] == 2                    # answered: the next poll starts a new one
        assert await b.follow("a", 2, 0.05) is None          # nothing newer: the wait ends empty
        # b goes silent (no follow for lost_after): the answer names it instead of waiting the timeout
        await b.ack("a", 2, {"version": 2})
        t = time.monotonic()
        got = await b.answers(2, ["a", "b"], 30.0)
        assert time.monotonic() - t < 5 and got["b"] == {"error": "left or went silent before it swapped"}
        # a swap for a newer generation answers the older ones still awaited
        await b.register("b")
        gen, _ = await b.start(None)
        await b.ack("b", gen, {"version": 3})
        assert (await b.answers(2, ["b"], 1.0))["b"] == {"version": 3}

    asyncio.run(scenario())


class ThreadActor:
    """A :class:`ReloadBroadcast` on an event loop of its own thread, its methods awaited from the apps'
    loops: what Ray's actor handle gives a replica (``ray_serve.RayCalls``), without Ray."""

    def __init__(self) -> None:
        self.actor = ReloadBroadcast(lost_after=2.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def __getattr__(self, method: str):
        def call(*args):
            return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(getattr(self.actor, method)(*args),
                                                                        self.loop))
        return call

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_a_reload_on_one_replica_swaps_every_replica_before_it_answers(toy, monkeypatch):
    """Two replicas' apps (real servers, their alias poll off) follow one broadcast: ``/v1/admin/reload``
    on one answers once both serve the promoted version, under load, with no failed request; a replica
    that stopped is not waited for."""
    monkeypatch.setattr(ray_serve, "FOLLOW_SECONDS", 0.2)
    calls = ThreadActor()
    apps = [follow_reloads(create_app(toy.ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[]), calls,
                           name=f"r{i}") for i in range(2)]
    try:
        with running(apps[0]) as a, running(apps[1]) as b:
            promote(toy.ws, "toy:2")
            assert _version(b, toy) == 1                         # no poll: nothing moves by itself
            seen, errors, reload, answered = asyncio.run(_reload_under_load([a, b], a, toy))
            assert reload.status_code == 200, reload.text
            body = reload.json()
            assert body["model"]["version"] == 2 and body["previous"]["version"] == 1
            assert sorted((r["replica"], r["version"]) for r in body["replicas"]) == [("r0", 2), ("r1", 2)]
            assert not errors, errors[:5]
            # every request sent once the reload had answered got version 2, from both replicas
            after = [(v, url) for t, v, url in seen if t >= answered]
            assert {v for v, _ in after} == {2} and {url for _, url in after} == {a, b}
            assert 1 in {v for t, v, _ in seen if t < answered}
        promote(toy.ws, "toy:1")
        with running(apps[1]) as b:                              # r0 stopped: it left the broadcast
            r = httpx.post(f"{b}/v1/admin/reload", timeout=60)
            assert r.status_code == 200 and [x["replica"] for x in r.json()["replicas"]] == ["r1"], r.text
            assert _version(b, toy) == 1
    finally:
        calls.close()
        if toy.ws.catalog.get_alias("toy", "production") != 1:
            promote(toy.ws, "toy:1")


def _version(url: str, toy) -> int:
    r = httpx.post(f"{url}/v1/predict", json={"records": [toy.record(0)]}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["model"]["version"]


async def _reload_under_load(urls: list[str], at: str, toy) -> tuple[list, list, httpx.Response, float]:
    """4 clients on each of ``urls`` while ``/v1/admin/reload`` is asked of ``at``: (time sent, version,
    url) of every answer, the errors, the reload's response and when it came."""
    seen: list[tuple[float, int, str]] = []
    errors: list = []
    stop = asyncio.Event()

    async def client(url: str, k: int, c: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                sent = time.monotonic()
                r = await c.post(f"{url}/v1/predict", json={"records": [toy.record(k)]})
                if r.status_code == 200:
                    seen.append((sent, r.json()["model"]["version"], url))
                else:
                    errors.append((r.status_code, r.text[:200]))
            except httpx.HTTPError as exc:
                errors.append(repr(exc))

    async with httpx.AsyncClient(timeout=60) as c:
        load = asyncio.gather(*(client(u, k, c) for u in urls for k in range(4)))
        await asyncio.sleep(0.5)
        reload = await c.post(f"{at}/v1/admin/reload")
        answered = time.monotonic()
        await asyncio.sleep(0.5)
        stop.set()
        await load
    return seen, errors, reload, answered


class Unreachable:
    """A broadcast actor that is gone (its cluster restarting): every call fails."""

    def __getattr__(self, method: str):
        async def call(*args):
            raise ConnectionError(f"{method}: actor gone")
        return call


def test_a_replica_without_its_broadcast_still_starts_and_reloads_alone(toy):
    app = follow_reloads(create_app(toy.ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[]), Unreachable())
    with running(app) as url:
        assert _version(url, toy) == 1
        r = httpx.post(f"{url}/v1/admin/reload", timeout=60)
        assert r.status_code == 200 and r.json()["model"]["version"] == 1 and "replicas" not in r.json(), r.text
