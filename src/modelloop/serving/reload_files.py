"""A reload that reaches every process of ``serve --workers N``: the Ray broadcast's protocol on files.

The workers of one local server share a folder that ``serve`` creates (``RELOAD_DIR_ENV``, beside the
metrics folder) and follow it exactly as Ray Serve's replicas follow their broadcast actor
(``ray_serve.follow_reloads``, the same code): ``POST /v1/admin/reload`` on whichever worker the kernel
hands the connection, or a worker's poll seeing the production alias move, starts a *generation*; every
worker sees it within ``WATCH_SECONDS``, loads the model next to the one it serves, swaps, and acks with
the version it now serves; the reload answers once every worker alive when it started has acked, with
``replicas: [{replica, version}]`` as on Ray.

The folder holds ``generation.json`` (``{"number", "target", "expected"}``, replaced atomically under
an ``fcntl`` lock), ``alive/<host:pid>`` (touched on every wait: a worker silent for ``lost_after``
seconds, or gone with its ``leave``, is not waited for) and ``acks/<generation>/<host:pid>``. A worker
waiting for the next generation reads one small file every ``WATCH_SECONDS``: no work per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["RELOAD_DIR_ENV", "FileBroadcast", "WATCH_SECONDS"]

RELOAD_DIR_ENV = "MODELLOOP_RELOAD_DIR"
WATCH_SECONDS = 0.05           # how often a waiting worker reads the generation file
KEEP = 20                      # generations whose acks are kept


def _name(replica: str) -> str:
    return replica.replace("/", "_")


class FileBroadcast:
    """:class:`ray_serve.ReloadBroadcast`'s async methods over a shared folder (one per server)."""

    def __init__(self, folder: str | Path, lost_after: float = 30.0) -> None:
        self.dir = Path(folder)
        self.lost_after = lost_after
        for sub in ("alive", "acks"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    # ---- the files ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / "lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "generation.json").read_text())
        except (OSError, ValueError):
            return {"number": 0, "target": None, "expected": []}

    def _write(self, value: dict[str, Any]) -> None:
        tmp = self.dir / f".generation.{os.getpid()}"
        tmp.write_text(json.dumps(value))
        os.replace(tmp, self.dir / "generation.json")

    def _touch(self, replica: str) -> None:
        (self.dir / "alive" / _name(replica)).touch()

    def _alive(self) -> list[str]:
        now, out = time.time(), []
        for f in (self.dir / "alive").iterdir():
            with contextlib.suppress(OSError):
                if now - f.stat().st_mtime <= self.lost_after:
                    out.append(f.name)
        return sorted(out)

    def _acks(self, generation: int) -> dict[str, dict[str, Any]]:
        out = {}
        folder = self.dir / "acks" / str(generation)
        if folder.is_dir():
            for f in folder.iterdir():
                with contextlib.suppress(OSError, ValueError):
                    out[f.name] = json.loads(f.read_text())
        return out

    def _pending(self, generation: int, replicas: list[str]) -> list[str]:
        got, alive = self._acks(generation), set(self._alive())
        return [r for r in replicas if r not in got and r in alive]

    # ---- the broadcast's methods (the same as the Ray actor's) ----------------------------------------
    async def register(self, replica: str) -> int:
        self._touch(replica)
        return int(self._read()["number"])

    async def leave(self, replica: str) -> None:
        with contextlib.suppress(OSError):
            (self.dir / "alive" / _name(replica)).unlink()

    async def start(self, target: int | None) -> tuple[int, list[str]]:
        """A new generation, or the latest while it still moves to the same version (the alias polls of
        several workers see one promotion): (its number, the workers it waits for)."""
        def start() -> tuple[int, list[str]]:
            with self._locked():
                cur = self._read()
                g = int(cur["number"])
                if target is None or cur["target"] != target or not self._pending(g, cur["expected"]):
                    g += 1
                    cur = {"number": g, "target": target, "expected": self._alive()}
                    (self.dir / "acks" / str(g)).mkdir(exist_ok=True)
                    self._write(cur)
                    for old in (self.dir / "acks").iterdir():
                        if old.name.isdigit() and int(old.name) < g - KEEP:
                            shutil.rmtree(old, ignore_errors=True)
                return g, list(cur["expected"])

        return await asyncio.to_thread(start)

    async def follow(self, replica: str, seen: int, timeout: float) -> tuple[int, int | None] | None:
        """The newest generation after ``seen`` (its number and target), or None after ``timeout`` s."""
        end = time.monotonic() + timeout
        self._touch(replica)
        while True:
            cur = self._read()
            if int(cur["number"]) > seen:
                self._touch(replica)
                return int(cur["number"]), cur["target"]
            if time.monotonic() >= end:
                self._touch(replica)
                return None
            await asyncio.sleep(WATCH_SECONDS)

    async def ack(self, replica: str, generation: int, answer: dict[str, Any]) -> None:
        """``replica`` serves ``answer`` after ``generation``: an ack of it and of the older generations
        still waited for (a newer swap covers them)."""
        self._touch(replica)
        for folder in (self.dir / "acks").iterdir():
            if folder.name.isdigit() and int(folder.name) <= generation:
                mine = folder / _name(replica)
                if not mine.exists():
                    tmp = folder / f".{_name(replica)}"
                    tmp.write_text(json.dumps(answer))
                    os.replace(tmp, mine)

    async def answers(self, generation: int, replicas: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Each of ``replicas``' answer to ``generation``, as ``ReloadBroadcast.answers``."""
        end = time.monotonic() + timeout
        while self._pending(generation, replicas) and time.monotonic() < end:
            await asyncio.sleep(WATCH_SECONDS)
        got, alive = self._acks(generation), set(self._alive())
        return {r: got.get(r) or {"error": "left or went silent before it swapped" if r not in alive
                                  else f"did not swap within {timeout:g} s"} for r in replicas}
