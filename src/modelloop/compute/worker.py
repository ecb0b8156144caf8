"""``modelloop worker``: the scheduler loop of one machine's pool.

Each round (``Worker.step``): reap the jobs that ended, refresh the heartbeat and act on stop requests
(cancel, preempt), re-queue the jobs of workers that died, then plan (``scheduler.plan``) and start
what the plan admits. Every change goes through the queue's transactions, so a worker killed at any
point loses nothing: its running jobs are re-queued by the next worker (their attempt counted), and
their processes die with it (``_runner``) or are killed by that next worker.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..catalog import utcnow
from .config import ComputeConfig
from .engines import Handle, LocalEngine, kill_group
from .predict import predict_demand
from .queue import FINISHED, JobQueue, worker_id
from .resources import Resources
from .scheduler import Running, Waiting, effective_priority, plan

__all__ = ["CANNOT_FIT", "Worker", "epoch_seconds", "job_result"]

# How a waiting job's note starts when a worker's whole pool can never run it (``jobs list`` shows it).
CANNOT_FIT = "cannot fit: "


def epoch_seconds(at: Any) -> float:
    """A catalog time (naive UTC) on the clock ``time.time()`` reads."""
    import datetime as dt

    return at.replace(tzinfo=dt.timezone.utc).timestamp()


def job_result(out_file: Path) -> dict[str, Any] | None:
    """What a job made, from its ``--json`` answer: the model version, the run, the dataset version."""
    try:
        lines = out_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        answer = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
    if not isinstance(answer, dict):
        return None
    keys = ("model", "run_id", "dataset", "promoted", "id", "version")
    return {k: answer[k] for k in keys if k in answer} or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Worker:
    """One machine's scheduler and job runner over a shared queue."""

    def __init__(self, queue: JobQueue, cfg: ComputeConfig, pool: Resources, engine: Any = None,
                 *, name: str | None = None, log: Callable[[str], None] | None = None):
        self.queue, self.cfg, self.pool = queue, cfg, pool
        self.engine = engine or LocalEngine()
        self.name = name or worker_id()
        self.host = socket.gethostname()
        self.handles: dict[int, Handle] = {}
        self.rows: dict[int, dict[str, Any]] = {}
        self.log = log or (lambda _msg: None)
        # waiting jobs noted as unable to fit (None: not read yet; the first round takes over the notes in
        # the queue, so a worker restarted with a bigger pool says they fit again before they start)
        self._unfit: set[int] | None = None

    # ---- one round -------------------------------------------------------------------------------
    def step(self) -> None:
        self._reap()
        self._act_on_stops()
        self._requeue_lost()
        self._admit()

    def run(self, *, idle_exit: float | None = None, until: Callable[[], bool] | None = None) -> None:
        """Rounds every ``compute.poll_seconds`` until stopped (or idle for ``idle_exit`` seconds);
        on Ctrl-C / SIGTERM the running jobs are stopped and re-queued, never lost."""
        idle_since = time.monotonic()
        try:
            while until is None or not until():
                self.step()
                if self.handles or self.queue.rows(("queued", "preempted")):
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    return
                time.sleep(self.cfg.poll_seconds)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop this worker's jobs (SIGTERM, grace, SIGKILL) and put them back in the queue."""
        for h in self.handles.values():
            self.engine.stop(h, "shutdown", self.cfg.grace_seconds)
        deadline = time.time() + self.cfg.grace_seconds + 5
        while self.handles and time.time() < deadline:
            self._reap()
            time.sleep(0.05)

    # ---- the parts ---------------------------------------------------------------------------------
    def _reap(self) -> None:
        for job_id, h in list(self.handles.items()):
            if not self.engine.poll(h):
                continue
            del self.handles[job_id]
            row = self.rows.pop(job_id)
            usage = {"seconds": round(time.time() - h.started, 3), "peak_memory": h.peak_memory}
            if h.stop == "cancel":
                state, reason = "cancelled", f"cancelled while running (exit {h.exit_code})"
            elif h.stop == "preempt":
                state, reason = "preempted", f"stopped for a higher-priority job (exit {h.exit_code})"
            elif h.stop == "shutdown":
                state, reason = "queued", f"its worker {self.name} was stopped (exit {h.exit_code})"
            elif h.exit_code == 0:
                state, reason = "succeeded", "exit 0"
            else:
                state, reason = "failed", f"exit {h.exit_code}"
            result = job_result(Path(row["logs"]).with_suffix(".out")) if state == "succeeded" else None
            self.queue.finish(job_id, self.name, state, reason=reason, exit_code=h.exit_code,
                              usage=usage if state in FINISHED else None, result=result)
            self.log(f"job {job_id} {state} ({reason})")

    def _act_on_stops(self) -> None:
        for job_id, why in self.queue.heartbeat(self.name).items():
            h = self.handles.get(job_id)
            if h is not None and why and h.stop is None:
                self.engine.stop(h, why, self.cfg.grace_seconds)
                self.log(f"job {job_id}: stopping ({why})")

    def _is_dead(self, row: dict[str, Any]) -> str | None:
        worker = row.get("worker") or ""
        if worker == self.name:
            return None
        host, _, pid = worker.rpartition(":")
        if host == self.host and pid.isdigit() and not _pid_alive(int(pid)):
            return f"worker {worker} died"
        beat = row.get("heartbeat_at")
        if beat is not None and (utcnow() - beat).total_seconds() > self.cfg.lost_after_seconds:
            return f"worker {worker} sent no heartbeat for {self.cfg.lost_after_seconds:g} s"
        return None

    def _requeue_lost(self) -> None:
        for row, why in self.queue.lost(self._is_dead):
            host = (row.get("worker") or "").rpartition(":")[0]
            if host == self.host and row.get("pid"):       # local engine (a Ray task dies with its driver)
                kill_group(int(row["pid"]))   # an orphan of the dead worker must not finish the job too
            state = self.queue.requeue_lost(row, why, self.cfg.max_attempts)
            self.log(f"job {row['id']}: {why}; {state}")

    def _fit_note(self, row: dict[str, Any], asked: Resources) -> dict[int, str]:
        """A waiting job this worker's whole pool can never run (the pool shrank under it, or it was
        queued unchecked): ``{id: "cannot fit ..."}``, the reason ``jobs list`` shows. One that this
        worker said could not fit and now fits: ``{id: "fits ... again"}``. Nothing otherwise."""
        short = asked.shortfall(self.pool, f"worker {self.name}'s pool")
        if short:
            return {row["id"]: f"{CANNOT_FIT}{'; '.join(short)}"}
        if self._unfit is not None and row["id"] in self._unfit:
            self._unfit.discard(row["id"])
            return {row["id"]: f"fits worker {self.name}'s pool again"}
        return {}

    def _noted_unfit(self, ids: list[int]) -> set[int]:
        """Those of ``ids`` whose latest event is a worker's ``cannot fit`` note."""
        return {i for i, events in self.queue.history(ids).items()
                if events and (events[-1]["reason"] or "").startswith(CANNOT_FIT)}

    def _admit(self) -> None:
        now = time.time()
        running = [Running(id=i, priority=self.rows[i]["priority"], started=h.started,
                           resources=Resources.of(self.rows[i]["resources"]),
                           predicted=self.rows[i].get("predicted"), stopping=h.stop is not None,
                           admitted=self.rows[i].get("admitted"))
                   for i, h in self.handles.items()]
        preempt: list[int] = []
        notes: dict[int, str] = {}

        def decide(waiting: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
            finished = self.queue.history_rows()
            if self._unfit is None:
                self._unfit = self._noted_unfit([row["id"] for row in waiting])
            views = {}
            for row in waiting:
                row["predicted"] = predict_demand(row["features"], row["project"], finished)["seconds"]
                views[row["id"]] = Waiting(id=row["id"], priority=row["priority"],
                                           submitted=epoch_seconds(row["submitted_at"]),
                                           resources=Resources.of(row["resources"]), predicted=row["predicted"],
                                           preempted=row["state"] == "preempted")
            decision = plan(list(views.values()), running, self.pool, now,
                            aging_per_minute=self.cfg.aging_per_minute, preemption=self.cfg.preemption)
            for row in waiting:
                row["admitted"] = effective_priority(views[row["id"]], now, self.cfg.aging_per_minute)
            preempt.extend(decision.preempt)
            for row in waiting:
                notes.update(self._fit_note(row, views[row["id"]].resources))
            self._unfit |= {i for i, n in notes.items() if n.startswith(CANNOT_FIT)}
            used = {g for i in self.handles for g in (self.rows[i].get("assigned") or {}).get("gpus", [])}
            free_gpus = [g for g in range(self.pool.gpus) if g not in used]
            chosen = {}
            for job_id in decision.start:
                n = views[job_id].resources.gpus
                chosen[job_id], free_gpus = {"gpus": free_gpus[:n]}, free_gpus[n:]
            return chosen

        for row in self.queue.schedule(self.name, decide):
            h = self.engine.start(row, row["assigned"]["gpus"])
            self.handles[row["id"]], self.rows[row["id"]] = h, row
            self.queue.set_pid(row["id"], h.pid)
            self.log(f"job {row['id']} started (attempt {row['attempts']}" + (f", pid {h.pid})" if h.pid else ")"))
        for job_id in self.queue.note_waiting(notes):
            self.log(f"job {job_id}: {notes[job_id]}")
        for job_id in preempt:
            self.queue.ask_stop(job_id, "preempt")
            victim = self.handles.get(job_id)
            if victim is not None:
                self.engine.stop(victim, "preempt", self.cfg.grace_seconds)
                self.log(f"job {job_id}: preempted")
