"""Hot swap under load: `promote` in the catalog and /v1/admin/reload switch models, no request fails."""

from __future__ import annotations

import asyncio
import collections
import time

import httpx
from servers import running

from modelloop.registry import promote
from modelloop.serving import ServeConfig, create_app


async def _load(url: str, toy, stop: asyncio.Event, seen: list, errors: list, clients: int = 8) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        async def client(k: int) -> None:
            i = k
            while not stop.is_set():
                i += clients
                try:
                    r = await c.post("/v1/predict", json={"records": [toy.record(i)]})
                    if r.status_code != 200:
                        errors.append((r.status_code, r.text[:200]))
                    else:
                        seen.append((time.monotonic(), r.json()["model"]["version"]))
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

        await asyncio.gather(*(client(k) for k in range(clients)))


def test_promote_and_reload_under_load_drop_nothing(toy) -> None:
    app = create_app(toy.ws, config=ServeConfig(reload_poll_seconds=0.2), api_keys=[])
    seen: list[tuple[float, int]] = []
    errors: list = []

    async def scenario(url: str) -> dict:
        stop = asyncio.Event()
        load = asyncio.create_task(_load(url, toy, stop, seen, errors))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(promote, toy.ws, "toy:2")          # another process would do this
        deadline = time.monotonic() + 30
        while not any(v == 2 for _, v in seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        swapped_at = time.monotonic()
        await asyncio.to_thread(promote, toy.ws, "toy:1")
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            reload = (await c.post("/v1/admin/reload")).json()      # swap now, without waiting for the poll
        await asyncio.sleep(0.3)
        stop.set()
        await load
        return {"swapped_at": swapped_at, "reload": reload}

    try:
        with running(app) as url:
            out = asyncio.run(scenario(url))
    finally:
        if toy.ws.catalog.get_alias("toy", "production") != 1:
            promote(toy.ws, "toy:1")
    assert errors == []
    versions = collections.Counter(v for _, v in seen)
    assert versions[1] > 0 and versions[2] > 0, versions
    assert out["reload"]["model"]["version"] == 1
    assert sum(1 for t, _ in seen if t > out["swapped_at"]) > 0       # load kept flowing after the swap
    last = [v for _, v in sorted(seen)][-20:]
    assert set(last) == {1}                                           # back on v1 after the reload
