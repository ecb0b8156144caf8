"""``serve --workers 2``: ``POST /v1/admin/reload`` reaches every worker before it answers (the workers
follow a shared folder with Ray Serve's broadcast protocol, ``serving/reload_files.py``). Real uvicorn
workers on 127.0.0.1, the alias poll off, so only the broadcast can move the worker that did not get the
reload; a load runs throughout and no request may fail."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
from servers import start_server, wait_ready
from test_hot_swap import _load

from modelloop.registry import promote


async def _versions_by_worker(url: str, tries: int = 200, starting: bool = False) -> dict[int, set[int]]:
    """The versions each worker serves, over new connections (the kernel spreads them) until both answered;
    ``starting``: a worker still loading its first model (503) is asked again."""
    out: dict[int, set[int]] = {}
    while tries > 0:
        tries -= 1
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:      # a new connection
            r = await c.get("/v1/model")
        if r.status_code == 503 and starting:
            await asyncio.sleep(0.1)
            continue
        assert r.status_code == 200, r.text
        info = r.json()
        out.setdefault(info["serving"]["worker"], set()).add(info["version"])
        if len(out) == 2 and tries > 20:
            tries = 20                                   # a few more answers after both were seen
    return out


def test_a_reload_reaches_both_workers_before_it_answers(toy) -> None:
    proc, url = start_server(toy, workers=2)               # serve.reload_poll_seconds: 0 (no alias poll)
    seen: list = []
    errors: list = []
    try:
        wait_ready(url, proc=proc, timeout=90)

        async def scenario() -> tuple[dict, dict, dict]:
            before = await _versions_by_worker(url, 600, starting=True)
            stop = asyncio.Event()
            load = asyncio.create_task(_load(url, toy, stop, seen, errors))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(promote, toy.ws, "toy:2")
            async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                r = await c.post("/v1/admin/reload")
                assert r.status_code == 200, r.text
            after = await _versions_by_worker(url)
            await asyncio.sleep(0.3)
            stop.set()
            await load
            return before, r.json(), after

        before, answer, after = asyncio.run(scenario())
    finally:
        if toy.ws.catalog.get_alias("toy", "production") != 1:
            promote(toy.ws, "toy:1")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert len(before) == 2 and all(v == {1} for v in before.values()), before
    assert answer["model"]["version"] == 2 and answer["previous"]["version"] == 1
    assert after.keys() == before.keys() and all(v == {2} for v in after.values()), after   # no wait for a poll
    assert sorted(r["replica"].rsplit(":", 1)[1] for r in answer["replicas"]) == sorted(map(str, before))
    assert all(r["version"] == 2 for r in answer["replicas"]), answer["replicas"]
    assert errors == [] and len(seen) > 20                   # the load ran through the swap, nothing failed
