"""The scheduling decision: which waiting jobs start now and which running ones are stopped for them.

A pure function of the queue, the pool and the clock (``plan``), so that the worker, the tests and
``benchmarks/scheduler.py`` (a simulated clock) run the very same code. The policy:

* **Order**: priority first, then age. A waiting job's priority grows by ``aging_per_minute`` (up to
  100), so a low-priority job that waits long enough ranks with fresh high-priority ones and age wins.
* **Gang allocation**: a job starts with everything it asked for, or not at all.
* **Preemption**: when the first job in order does not fit, running jobs of a strictly lower priority
  that were admitted at a lower rank than its own (after aging) are stopped, lowest priority and newest
  first, until it would fit (none are stopped when even all of them would not free enough). A job that was itself
  preempted stops no one when it comes back (it waits with its rank): without that rule, aging let three
  jobs take turns stopping each other forever on the benchmark's trace.
* **Backfill** (EASY): the blocked head gets a reservation at the time enough running jobs will
  have ended by their predicted durations; a later job may start now only if it fits now and either
  ends before that time by its own prediction or fits beside the head then. A job without a
  prediction is never backfilled by time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .resources import Resources

__all__ = ["Plan", "Running", "Waiting", "effective_priority", "plan"]


@dataclass(frozen=True)
class Waiting:
    id: int
    priority: int
    submitted: float                      # seconds on the scheduler's clock
    resources: Resources
    predicted: float | None = None        # seconds it is expected to run
    preempted: bool = False               # stopped for another job before: it waits, it stops no one


@dataclass(frozen=True)
class Running:
    id: int
    priority: int
    started: float
    resources: Resources
    predicted: float | None = None
    stopping: bool = False                # preempted or cancelled, not yet exited
    admitted: float | None = None         # its priority after aging when it started (None: ``priority``)


@dataclass
class Plan:
    start: list[int] = field(default_factory=list)
    preempt: list[int] = field(default_factory=list)
    reserved: int | None = None           # the blocked head the backfill must not delay


def effective_priority(job: Waiting, now: float, aging_per_minute: float) -> float:
    """The job's priority after aging: ``priority + aging_per_minute * minutes waited``, at most 100."""
    return min(100.0, job.priority + aging_per_minute * max(0.0, now - job.submitted) / 60.0)


def _total(items: Sequence[Running]) -> Resources:
    out = Resources(cpus=0.0)
    for r in items:
        out = out + r.resources
    return out


def _victims(head: Waiting, rank: float, running: Sequence[Running], free: Resources) -> list[Running] | None:
    """The running jobs to stop so that ``head`` (``rank`` after aging) fits, lowest priority and newest
    first, or None. A victim is of a lower priority class and was admitted at a lower rank than the
    head's now: a job that aged to the head's rank keeps running, and since a job only ever stops jobs
    of lower classes, two jobs never take turns stopping each other."""
    releasing = [r for r in running if r.stopping]
    room = free + _total(releasing)
    if head.resources.fits(room):
        return []
    out = []
    for r in sorted((r for r in running if not r.stopping and r.priority < head.priority
                     and (r.priority if r.admitted is None else r.admitted) < rank),
                    key=lambda r: (r.priority, -r.started, -r.id)):
        out.append(r)
        room = room + r.resources
        if head.resources.fits(room):
            return out
    return None


def _shadow(head: Waiting, running: Sequence[Running], free: Resources, now: float) -> tuple[float, Resources]:
    """When ``head`` can start if no one is stopped (by predicted ends), and what is left beside it then."""
    def end(r: Running) -> float:
        return now if r.stopping else (r.started + r.predicted if r.predicted is not None else math.inf)

    ends = sorted(((end(r), r) for r in running), key=lambda pair: (pair[0], pair[1].id))
    shadow, room = now, free
    for at, r in ends:
        if head.resources.fits(room):
            break
        room = room + r.resources
        shadow = max(at, now)
    if not head.resources.fits(room):
        shadow = math.inf
    return shadow, room - head.resources


def plan(waiting: Sequence[Waiting], running: Sequence[Running], pool: Resources, now: float, *,
         aging_per_minute: float = 1.0, preemption: bool = True, backfill: bool = True,
         by_priority: bool = True) -> Plan:
    """Decide this round. ``by_priority=False, backfill=False, preemption=False`` is plain FIFO."""
    rank = {j.id: effective_priority(j, now, aging_per_minute) if by_priority else float(j.priority)
            for j in waiting}
    if by_priority:
        order = sorted(waiting, key=lambda j: (-rank[j.id], j.submitted, j.id))
    else:
        order = sorted(waiting, key=lambda j: (j.submitted, j.id))
    free = pool - _total(running)
    out = Plan()
    shadow, extra = math.inf, Resources(cpus=0.0)
    for job in order:
        if not job.resources.fits(pool):
            continue                                  # the pool shrank under it: it waits, blocking no one
        if out.reserved is None:
            if job.resources.fits(free):
                out.start.append(job.id)
                free = free - job.resources
                continue
            victims = _victims(job, rank[job.id], running, free) if preemption and not job.preempted else None
            out.reserved = job.id
            if victims is not None:
                out.preempt.extend(r.id for r in victims)
                shadow, extra = now, free + _total([r for r in running if r.stopping]) + _total(victims) - job.resources
            else:
                shadow, extra = _shadow(job, running, free, now)
            if not backfill:
                break
            continue
        if not job.resources.fits(free):
            continue
        ends_in_time = job.predicted is not None and now + job.predicted <= shadow
        if ends_in_time or job.resources.fits(extra):
            out.start.append(job.id)
            free = free - job.resources
            if not ends_in_time:
                extra = extra - job.resources
    return out
