"""The job scheduler on a seeded trace: high-priority waits, utilisation and makespan against FIFO and
Ray-style placement.

    .venv/bin/python benchmarks/scheduler.py [--jobs 200] [--seed 0] [--cpus 16] [--gpus 4] [--json]

A trace of ``--jobs`` jobs (Poisson arrivals; 15 % high, 45 % normal, 40 % low priority; CPU jobs of
1-8 CPUs and GPU jobs of 1-2 GPUs; durations log-normal per kind, so heavy-tailed) is replayed through
modelloop's real scheduling decision (``modelloop.compute.scheduler.plan``) and real demand prediction
(``modelloop.compute.predict.predict_demand``, fed the trace's finished jobs as they end) on a
simulated clock: the plan is made again at every arrival and end, as ``modelloop worker`` does each round.
A preempted job frees its resources after the grace period (30 s) and keeps its work up to its last
checkpoint (every 60 s: a search's finished trials, a fine-tuning run's epochs).

Three policies, same trace, same pool:

* **modelloop**: priority with aging (1 point a minute), gang allocation, EASY backfill by predicted
  duration, preemption;
* **FIFO**: submission order, the first job that does not fit blocks the rest (``plan(by_priority=False,
  backfill=False, preemption=False)``);
* **Ray placement** (the peer: what Ray alone does without job priority): every waiting job, in
  submission order, starts as soon as its resources are free; nothing is reserved, nothing preempted.

Printed: high-priority wait p50/p95 (submission to first start), pool utilisation (busy CPU- and
GPU-seconds over capacity × makespan, averaged over the two), makespan, and modelloop's ratios to FIFO
(goal: high-priority p95 wait ≤ 1/5 of FIFO's at ≥ 90 % of FIFO's utilisation).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelloop.compute import ComputeConfig, Resources, Running, Waiting, plan
from modelloop.compute.predict import predict_demand
from modelloop.compute.scheduler import effective_priority

GRACE, CHECKPOINT = 30.0, 60.0
AGING = ComputeConfig().aging_per_minute      # the default of compute.aging_per_minute (--aging)
# kind: (median seconds, sigma of log, GPU job, share of the trace)
KINDS = {"predict": (120, 0.8, False, 0.30), "train": (900, 1.0, False, 0.35), "retrain": (600, 0.9, False, 0.15),
         "finetune": (2400, 0.9, True, 0.20)}


@dataclass
class Job:
    id: int
    kind: str
    priority: int
    submitted: float
    work: float                     # seconds of work it needs
    resources: Resources
    remaining: float = 0.0
    first_start: float | None = None
    started: float = 0.0
    attempt: int = 0
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def make_trace(n: int, seed: int, pool: Resources) -> list[Job]:
    rng = np.random.default_rng(seed)
    kinds = list(KINDS)
    shares = np.array([KINDS[k][3] for k in kinds])
    mean_work = sum(KINDS[k][0] * math.exp(KINDS[k][1] ** 2 / 2) * KINDS[k][3] for k in kinds)
    # arrivals at about 1.3x what the pool can serve: a queue forms, as on a Monday morning
    gap = mean_work * 3.0 / pool.cpus / 1.3
    t, jobs = 0.0, []
    for i in range(n):
        t += float(rng.exponential(gap))
        kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
        median, sigma, gpu, _ = KINDS[kind]
        pr = float(rng.random())
        priority = 80 if pr < 0.15 else (50 if pr < 0.60 else 20)
        if gpu:
            res = Resources(cpus=float(rng.integers(2, 5)), gpus=int(rng.choice([1, 1, 2])))
        else:
            res = Resources(cpus=float(rng.choice([1, 2, 4, 8], p=[0.35, 0.35, 0.2, 0.1])))
        work = float(median * math.exp(sigma * rng.standard_normal()))
        jobs.append(Job(i + 1, kind, priority, t, work, res, remaining=work))
    return jobs


def simulate(trace: list[Job], pool: Resources, policy: str) -> dict[str, Any]:
    jobs = {j.id: Job(j.id, j.kind, j.priority, j.submitted, j.work, j.resources, remaining=j.work) for j in trace}
    events: list[tuple[float, int, str, int, int]] = [(j.submitted, 0, "arrive", j.id, 0) for j in jobs.values()]
    heapq.heapify(events)
    waiting: set[int] = set()
    running: dict[int, Job] = {}
    stopping: dict[int, Job] = {}
    finished: list[dict[str, Any]] = []
    predicted: dict[str, float | None] = {}
    busy = np.zeros(2)               # CPU-seconds, GPU-seconds
    seq = 1
    now = 0.0

    def prediction(kind: str) -> float | None:
        if kind not in predicted:
            predicted[kind] = predict_demand({"verb": kind}, "bench", finished)["seconds"]
        return predicted[kind]

    while events:
        now = events[0][0]
        while events and events[0][0] == now:
            _, _, what, job_id, attempt = heapq.heappop(events)
            job = jobs[job_id]
            if what == "arrive":
                waiting.add(job_id)
            elif what == "end" and job_id in running and job.attempt == attempt:
                del running[job_id]
                job.end = now
                busy += (now - job.started) * np.array([job.resources.cpus, job.resources.gpus])
                finished.append({"id": job_id, "state": "succeeded", "project": "bench",
                                 "features": {"verb": job.kind}, "usage": {"seconds": job.work}})
                predicted.pop(job.kind, None)
            elif what == "freed":
                del stopping[job_id]
                busy += (now - job.started) * np.array([job.resources.cpus, job.resources.gpus])
                waiting.add(job_id)
        start, preempt = _decide(policy, jobs, waiting, running, stopping, pool, now, prediction)
        for job_id in start:
            job = jobs[job_id]
            waiting.discard(job_id)
            running[job_id] = job
            job.attempt += 1
            job.started = now
            job.first_start = now if job.first_start is None else job.first_start
            job.extra["admitted"] = effective_priority(Waiting(job.id, job.priority, job.submitted, job.resources),
                                                       now, AGING) if policy == "modelloop" else job.priority
            heapq.heappush(events, (now + job.remaining, seq, "end", job_id, job.attempt))
            seq += 1
        for job_id in preempt:
            job = running.pop(job_id)
            job.remaining -= math.floor((now - job.started) / CHECKPOINT) * CHECKPOINT
            job.attempt += 1                  # its "end" event no longer counts
            stopping[job_id] = job
            heapq.heappush(events, (now + GRACE, seq, "freed", job_id, 0))
            seq += 1
    return _figures(list(jobs.values()), busy, pool)


def _decide(policy, jobs, waiting, running, stopping, pool, now, prediction):
    views = [Waiting(id=i, priority=jobs[i].priority, submitted=jobs[i].submitted, resources=jobs[i].resources,
                     predicted=prediction(jobs[i].kind), preempted=jobs[i].attempt > 0) for i in sorted(waiting)]
    busy = [Running(id=j.id, priority=j.priority, started=j.started, resources=j.resources,
                    predicted=prediction(j.kind), admitted=j.extra["admitted"]) for j in running.values()]
    busy += [Running(id=j.id, priority=j.priority, started=j.started, resources=j.resources, stopping=True)
             for j in stopping.values()]
    if policy == "modelloop":
        d = plan(views, busy, pool, now, aging_per_minute=AGING, preemption=True, backfill=True)
        return d.start, d.preempt
    if policy == "fifo":
        d = plan(views, busy, pool, now, by_priority=False, backfill=False, preemption=False)
        return d.start, []
    free = pool
    for r in busy:
        free = free - r.resources
    out = []
    for w in sorted(views, key=lambda w: (w.submitted, w.id)):   # Ray: whatever fits, in arrival order
        if w.resources.fits(free):
            out.append(w.id)
            free = free - w.resources
    return out, []


def _figures(jobs: list[Job], busy: np.ndarray, pool: Resources) -> dict[str, Any]:
    high = np.array([j.first_start - j.submitted for j in jobs if j.priority == 80])
    everyone = np.array([j.first_start - j.submitted for j in jobs])
    makespan = max(j.end for j in jobs) - min(j.submitted for j in jobs)
    capacity = np.array([pool.cpus, pool.gpus]) * makespan
    return {"high_wait_p50_s": float(np.percentile(high, 50)), "high_wait_p95_s": float(np.percentile(high, 95)),
            "all_wait_p50_s": float(np.percentile(everyone, 50)), "utilisation": float(np.mean(busy / capacity)),
            "makespan_s": float(makespan), "high_jobs": int(len(high))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpus", type=float, default=16)
    ap.add_argument("--gpus", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pool = Resources(cpus=args.cpus, gpus=args.gpus)
    trace = make_trace(args.jobs, args.seed, pool)
    res = {p: simulate(trace, pool, p) for p in ("modelloop", "fifo", "ray_placement")}
    ours, fifo = res["modelloop"], res["fifo"]
    ratios = {"high_wait_p95_vs_fifo": ours["high_wait_p95_s"] / max(fifo["high_wait_p95_s"], 1e-9),
              "utilisation_vs_fifo": ours["utilisation"] / fifo["utilisation"],
              "high_wait_p95_vs_ray": ours["high_wait_p95_s"] / max(res["ray_placement"]["high_wait_p95_s"], 1e-9)}
    if args.json:
        print(json.dumps({"jobs": args.jobs, "seed": args.seed, "pool": pool.to_dict(), **res, "ratios": ratios}))
        return 0
    print(f"{args.jobs} jobs, seed {args.seed}, pool {pool.cpus:g} CPUs + {pool.gpus} GPUs; "
          f"{res['modelloop']['high_jobs']} high-priority jobs")
    print(f"{'policy':<15}{'high p50 wait':>14}{'high p95 wait':>14}{'all p50 wait':>14}{'utilisation':>13}"
          f"{'makespan':>11}")
    for name, r in res.items():
        print(f"{name:<15}{r['high_wait_p50_s'] / 60:>12.1f} m{r['high_wait_p95_s'] / 60:>12.1f} m"
              f"{r['all_wait_p50_s'] / 60:>12.1f} m{r['utilisation']:>13.1%}{r['makespan_s'] / 3600:>9.2f} h")
    goal_wait, goal_util = ratios["high_wait_p95_vs_fifo"] <= 0.2, ratios["utilisation_vs_fifo"] >= 0.9
    print(f"modelloop / FIFO: high-priority p95 wait {ratios['high_wait_p95_vs_fifo']:.3f}x (goal <= 0.2: "
          f"{'met' if goal_wait else 'NOT met'}), utilisation {ratios['utilisation_vs_fifo']:.3f}x (goal >= 0.9: "
          f"{'met' if goal_util else 'NOT met'})")
    print(f"modelloop / Ray placement: high-priority p95 wait {ratios['high_wait_p95_vs_ray']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
