"""The dashboard's background computations: a day's drift, the live metrics, a version's metric intervals.

A page never waits for them: it shows what is known, starts the rest here and says it is computing.

* **Threads are not daemons.** A daemon thread stopped by the interpreter's exit while it runs native
  code (pyarrow, scikit-learn) aborted the process with ``FATAL: exception not rethrown``; a non-daemon
  one is waited for. :meth:`Background.stop` (the app's shutdown) makes the jobs not begun yet return at
  once, so a stopping server waits for one job at most.
* **One computation of a thing at a time**, across the processes sharing the catalog (``modelloop ui`` and
  every worker of ``serve --ui --workers N``): a job starts only under a claim, taken in memory first and
  then in the catalog's ``claims`` (:meth:`~modelloop.catalog.Catalog.claim`). A claim names its holder's
  host and process id: a claim whose process is gone from this host (killed, out of memory) is taken over
  at once, and any other lapses after :data:`CLAIM_SECONDS`.
* **A failure is kept** as the thing's error for :data:`RETRY_SECONDS`, shown by the page instead of
  "computing" for ever, and tried again by the first view after that.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..catalog import Catalog, utcnow

log = logging.getLogger(__name__)

__all__ = ["CLAIM_SECONDS", "RETRY_SECONDS", "Background"]

CLAIM_SECONDS = 600.0        # a claim older than this is taken over (its holder died mid-computation)
RETRY_SECONDS = 60.0         # a failed computation is shown as failed this long, then tried again


class Background:
    """Starts the dashboard's computations once each (per claim key) in non-daemon threads, and keeps their
    failures; one per app."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(6)}"  # this app, in claims
        self._busy: set[str] = set()
        self._failed: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def failure(self, key: str) -> str | None:
        """The error of ``key``'s last computation when it failed less than :data:`RETRY_SECONDS` ago."""
        with self._lock:
            found = self._failed.get(key)
        if found is None or (utcnow() - found["at"]).total_seconds() >= RETRY_SECONDS:
            return None
        return str(found["error"])

    def job(self, key: str, compute: Callable[[], Any], what: str) -> Callable[[], None] | None:
        """A job computing ``key`` for :meth:`start`, or None when it is being computed already (here or by
        another process) or failed less than :data:`RETRY_SECONDS` ago. Taking it claims ``key``; running
        it (or skipping it, once stopping) releases the claim."""
        if self.failure(key) is not None:
            return None
        with self._lock:
            if key in self._busy:
                return None
            self._busy.add(key)
        try:
            claimed = self.catalog.claim(key, self.owner, CLAIM_SECONDS)
            if not claimed and _dead((holder := self.catalog.claim_holder(key)) or ""):
                log.warning("taking over %s from %s, a process of this host that is gone", key, holder)
                claimed = self.catalog.take_over(key, str(holder), self.owner)
        except Exception:
            self._done(key, claimed=False)
            raise
        if not claimed:
            self._done(key, claimed=False)
            return None

        def run() -> None:
            try:
                self.attempt(key, compute, what)
            finally:
                self._done(key, claimed=True)

        return run

    def attempt(self, key: str, compute: Callable[[], Any], what: str) -> None:
        """``compute()``, its failure kept as ``key``'s error (see :meth:`failure`); nothing once stopping.
        A job computing several things (a view's days of drift) attempts each under its own key."""
        if self._stopping.is_set():
            return
        try:
            compute()
            with self._lock:
                self._failed.pop(key, None)
        except Exception as e:  # shown on the page as the error; a view after RETRY_SECONDS tries again
            if self._stopping.is_set():     # cut short by the process's exit (an import refused then)
                log.warning("%s was not computed: the server stopped (%s)", what, e)
                return
            log.exception("%s could not be computed", what)
            with self._lock:
                self._failed[key] = {"error": f"{type(e).__name__}: {e}", "at": utcnow()}

    def _done(self, key: str, *, claimed: bool) -> None:
        if claimed:
            try:
                self.catalog.release(key, self.owner)
            except Exception:  # the claim lapses after CLAIM_SECONDS
                log.exception("the claim on %s could not be released", key)
        with self._lock:
            self._busy.discard(key)

    def start(self, jobs: list[Callable[[], None]], name: str) -> threading.Thread | None:
        """Run ``jobs`` one after the other in one non-daemon thread named ``name`` (None when none)."""
        if not jobs:
            return None

        def run_all() -> None:
            for job in jobs:
                job()

        thread = threading.Thread(target=run_all, name=name, daemon=False)
        thread.start()
        return thread

    def stop(self) -> None:
        """Jobs not begun yet return at once (the server is stopping; the one running finishes)."""
        self._stopping.set()


def _dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:token``) names a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname()[:32] or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:                 # exists, owned by another user
        return False
    return False
