"""The bookkeeping of ``serve --workers N``'s reload folder (``serving/reload_files.FileBroadcast``), with
the calls ``follow_reloads`` makes: one generation per reload (polls of one promotion join it), a worker
that left or went silent is not waited for, a newer swap answers for an older generation."""

from __future__ import annotations

import asyncio
import os
import time

from modelloop.serving.reload_files import FileBroadcast


def test_generations_acks_and_workers_that_left(tmp_path) -> None:
    async def scenario() -> None:
        b = FileBroadcast(tmp_path, lost_after=30)
        assert await b.register("h:1") == 0 and await b.register("h:2") == 0
        g, expected = await b.start(7)
        assert (g, expected) == (1, ["h:1", "h:2"])
        assert await b.start(7) == (1, ["h:1", "h:2"])           # a second poll of the same promotion joins it
        assert await b.follow("h:2", 0, 0.5) == (1, 7) and await b.follow("h:2", 1, 0.1) is None
        await b.ack("h:1", 1, {"version": 7})
        waited = asyncio.create_task(b.answers(1, expected, 10))
        await asyncio.sleep(0.2)
        assert not waited.done()                                 # h:2 has not swapped yet
        await b.ack("h:2", 1, {"version": 7})
        assert await waited == {"h:1": {"version": 7}, "h:2": {"version": 7}}
        assert (await b.start(7))[0] == 2                        # all swapped: a new reload is a new generation

        g, expected = await b.start(None)
        await b.leave("h:2")                                     # stopped before it swapped
        await b.ack("h:1", g, {"version": 8})
        assert await b.answers(g, expected, 10) == {"h:1": {"version": 8},
                                                   "h:2": {"error": "left or went silent before it swapped"}}
        g4, _ = await b.start(None)
        g5, _ = await b.start(None)
        await b.ack("h:1", g5, {"version": 9})                   # one swap after both answers both
        assert (await b.answers(g4, ["h:1"], 1))["h:1"] == {"version": 9}

        await b.register("h:3")
        old = time.time() - 60
        os.utime(tmp_path / "alive" / "h:3", (old, old))          # silent for a minute: not waited for
        g, expected = await b.start(None)
        assert "h:3" not in expected and "h:1" in expected
        started = time.monotonic()
        assert await b.answers(g, ["h:3"], 10) == {"h:3": {"error": "left or went silent before it swapped"}}
        assert time.monotonic() - started < 1

    asyncio.run(scenario())
