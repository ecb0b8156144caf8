"""The durable job queue: rows of the catalog's ``jobs`` and ``job_events`` tables (schema 3).

Every state change is one catalog transaction that also appends its event, so the history is the
queue's own record. Taking a job is a conditional update (``... WHERE state IN (queued, preempted)``)
that only one worker can win; on PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED`` as well,
so two schedulers on one queue never plan with the same row.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..catalog import Catalog, job_events, jobs, utcnow
from ..errors import NotFoundError, StateError

__all__ = ["ACTIVE", "FINISHED", "WAITING", "JobQueue", "worker_id"]

WAITING = ("queued", "preempted")             # may be started
ACTIVE = ("running",)
FINISHED = ("succeeded", "failed", "cancelled")
HISTORY = 1000                                # finished jobs demand prediction reads


def worker_id() -> str:
    """``host:pid`` of this process: where a running job's process lives."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _event(c: Connection, job_id: int, state: str, reason: str | None = None, at: dt.datetime | None = None) -> None:
    c.execute(job_events.insert().values(job_id=job_id, state=state, at=at or utcnow(), reason=reason))


class JobQueue:
    """The queue over one catalog (the project's SQLite file, or a team's PostgreSQL)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._locks = catalog.engine.dialect.name == "postgresql"

    # ---- submitting and reading ------------------------------------------------------------------
    def submit(self, *, project: str, root: str, command: list[str], resources: dict[str, Any], priority: int,
               submitter: str, features: dict[str, Any], logs_dir: str) -> int:
        """Insert a queued job and its first event in one transaction; its id."""
        now = utcnow()
        with self.catalog.tx() as c:
            key = c.execute(jobs.insert().values(
                project=project, root=root, command=command, resources=resources, priority=priority,
                submitter=submitter, state="queued", attempts=0, submitted_at=now, features=features,
                logs="")).inserted_primary_key
            assert key is not None
            job_id = int(key[0])
            c.execute(jobs.update().where(jobs.c.id == job_id).values(logs=f"{logs_dir}/{job_id}.log"))
            _event(c, job_id, "queued", "submitted", now)
        return job_id

    def get(self, job_id: int) -> dict[str, Any]:
        with self.catalog.tx() as c:
            row = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist; see `modelloop jobs list`")
        return dict(row._mapping)

    def rows(self, states: Iterable[str] | None = None, where: Any = None) -> list[dict[str, Any]]:
        q = sa.select(jobs).order_by(jobs.c.id)
        if states is not None:
            q = q.where(jobs.c.state.in_(list(states)))
        if where is not None:
            q = q.where(where)
        with self.catalog.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def history_rows(self, limit: int = HISTORY) -> list[dict[str, Any]]:
        """The latest ``limit`` succeeded jobs: what demand prediction learns from (read every round)."""
        q = (sa.select(jobs.c.id, jobs.c.state, jobs.c.project, jobs.c.features, jobs.c.usage)
             .where(jobs.c.state == "succeeded").order_by(jobs.c.id.desc()).limit(limit))
        with self.catalog.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def history(self, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in job_ids}
        if not job_ids:
            return out
        q = sa.select(job_events).where(job_events.c.job_id.in_(job_ids)).order_by(job_events.c.id)
        with self.catalog.tx() as c:
            for r in c.execute(q):
                out[r.job_id].append({"state": r.state, "at": r.at, "reason": r.reason})
        return out

    # ---- user actions ------------------------------------------------------------------------------
    def cancel(self, job_id: int) -> str:
        """Cancel a waiting job at once, or ask its worker to stop a running one; the state it is in now."""
        with self.catalog.tx() as c:
            q = sa.select(jobs.c.state).where(jobs.c.id == job_id)
            state = c.execute(q.with_for_update() if self._locks else q).scalar()
            if state is None:
                raise NotFoundError(f"job {job_id} does not exist; see `modelloop jobs list`")
            if state in FINISHED:
                raise StateError(f"job {job_id} has already finished ({state}); only a queued, preempted or "
                                 "running job can be cancelled")
            if state in WAITING:
                c.execute(jobs.update().where(jobs.c.id == job_id)
                          .values(state="cancelled", ended_at=utcnow()))
                _event(c, job_id, "cancelled", "cancelled before it ran")
                return "cancelled"
            c.execute(jobs.update().where(jobs.c.id == job_id).values(stop="cancel"))
            return state

    # ---- the scheduler's side ---------------------------------------------------------------------
    def schedule(self, worker: str, decide: Callable[[list[dict[str, Any]]], dict[int, dict[str, Any]]]
                 ) -> list[dict[str, Any]]:
        """Read the waiting jobs (locked on PostgreSQL), let ``decide`` pick ``{id: assigned}`` to start
        here, and mark those running on ``worker`` in the same transaction; the rows taken."""
        q = sa.select(jobs).where(jobs.c.state.in_(WAITING)).order_by(jobs.c.id)
        if self._locks:
            q = q.with_for_update(skip_locked=True)
        taken = []
        with self.catalog.tx() as c:
            waiting = [dict(r._mapping) for r in c.execute(q)]
            chosen = decide(waiting) if waiting else {}
            now = utcnow()
            for row in waiting:
                if row["id"] not in chosen:
                    continue
                won = c.execute(jobs.update().where(jobs.c.id == row["id"], jobs.c.state.in_(WAITING)).values(
                    state="running", worker=worker, heartbeat_at=now, started_at=now, ended_at=None,
                    attempts=jobs.c.attempts + 1, assigned=chosen[row["id"]], stop=None, pid=None,
                    exit_code=None)).rowcount
                if won == 1:
                    _event(c, row["id"], "running", f"started on {worker}", now)
                    taken.append({**row, "state": "running", "attempts": row["attempts"] + 1,
                                  "assigned": chosen[row["id"]], "started_at": now, "worker": worker})
        return taken

    def set_pid(self, job_id: int, pid: int) -> None:
        with self.catalog.tx() as c:
            c.execute(jobs.update().where(jobs.c.id == job_id).values(pid=pid))

    def ask_stop(self, job_id: int, why: str) -> None:
        """Ask the worker running ``job_id`` to stop it (``preempt``) unless a cancel was asked first."""
        with self.catalog.tx() as c:
            c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "running", jobs.c.stop.is_(None))
                      .values(stop=why))

    def heartbeat(self, worker: str) -> dict[int, str | None]:
        """Refresh this worker's running jobs; ``{id: stop asked}`` of each."""
        with self.catalog.tx() as c:
            c.execute(jobs.update().where(jobs.c.worker == worker, jobs.c.state == "running")
                      .values(heartbeat_at=utcnow()))
            rows = c.execute(sa.select(jobs.c.id, jobs.c.stop)
                             .where(jobs.c.worker == worker, jobs.c.state == "running")).all()
        return {r.id: r.stop for r in rows}

    def finish(self, job_id: int, worker: str, state: str, *, reason: str, exit_code: int | None = None,
               usage: dict[str, Any] | None = None, result: dict[str, Any] | None = None) -> bool:
        """End the running attempt of ``job_id`` on ``worker`` as ``state`` (a finished state, or
        ``preempted`` / ``queued`` to run again); False when the job is no longer this worker's."""
        ends = state in FINISHED
        with self.catalog.tx() as c:
            n = c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker,
                                              jobs.c.state == "running").values(
                state=state, exit_code=exit_code, usage=usage, result=result, pid=None, stop=None,
                ended_at=utcnow() if ends else None, worker=worker if ends else None,
                **({} if ends else {"assigned": None}))).rowcount
            if n == 1:
                _event(c, job_id, state, reason)
        return n == 1

    def note_waiting(self, notes: dict[int, str]) -> list[int]:
        """Append an event (in the job's own waiting state) with ``notes[id]`` as its reason to each
        waiting job whose latest event does not say it already (``cannot fit ...``, ``fits ... again``);
        the ids noted."""
        if not notes:
            return []
        done = []
        with self.catalog.tx() as c:
            latest = {r.job_id: r.reason for r in c.execute(
                sa.select(job_events.c.job_id, job_events.c.reason)
                .where(job_events.c.id.in_(sa.select(sa.func.max(job_events.c.id))
                                           .where(job_events.c.job_id.in_(list(notes)))
                                           .group_by(job_events.c.job_id))))}
            states = dict(c.execute(sa.select(jobs.c.id, jobs.c.state)
                                    .where(jobs.c.id.in_(list(notes)), jobs.c.state.in_(WAITING))).all())
            for job_id, reason in notes.items():
                if job_id in states and latest.get(job_id) != reason:
                    _event(c, job_id, states[job_id], reason)
                    done.append(job_id)
        return done

    def lost(self, is_dead: Callable[[dict[str, Any]], str | None]) -> list[tuple[dict[str, Any], str]]:
        """Running jobs whose worker ``is_dead`` says is gone, with the reason it gives."""
        out = []
        for row in self.rows(ACTIVE):
            why = is_dead(row)
            if why:
                out.append((row, why))
        return out

    def requeue_lost(self, row: dict[str, Any], why: str, max_attempts: int) -> str:
        """A job whose worker died: queued again (its attempt already counted), or failed after
        ``max_attempts`` starts. Conditional on the row still naming the dead worker."""
        state = "queued" if row["attempts"] < max_attempts else "failed"
        reason = why if state == "queued" else f"{why}; {row['attempts']} attempts, compute.max_attempts reached"
        if row.get("stop") == "cancel":       # cancelled while its worker was dying: it stays cancelled
            state, reason = "cancelled", f"{why}; it had been cancelled"
        with self.catalog.tx() as c:
            n = c.execute(jobs.update().where(jobs.c.id == row["id"], jobs.c.state == "running",
                                              jobs.c.worker == row["worker"]).values(
                state=state, worker=None, pid=None, stop=None, assigned=None,
                ended_at=utcnow() if state in FINISHED else None)).rowcount
            if n == 1:
                _event(c, row["id"], state, reason)
        return state
