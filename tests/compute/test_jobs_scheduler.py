"""The scheduling decision (``compute.scheduler.plan``) on a hand-made clock: order, aging, gang
allocation, preemption and backfill."""

from __future__ import annotations

from modelloop.compute import Resources, Running, Waiting, plan

POOL = Resources(cpus=4, gpus=2, memory=16 * 2**30)


def job(i: int, priority: int = 50, submitted: float = 0.0, cpus: float = 1, gpus: int = 0,
        predicted: float | None = None) -> Waiting:
    return Waiting(id=i, priority=priority, submitted=submitted, resources=Resources(cpus=cpus, gpus=gpus),
                   predicted=predicted)


def run(i: int, priority: int = 50, started: float = 0.0, cpus: float = 1, gpus: int = 0,
        predicted: float | None = None, stopping: bool = False) -> Running:
    return Running(id=i, priority=priority, started=started, resources=Resources(cpus=cpus, gpus=gpus),
                   predicted=predicted, stopping=stopping)


def test_priority_first_then_age():
    waiting = [job(1, 20, 0), job(2, 80, 5), job(3, 50, 1), job(4, 80, 2)]
    assert plan(waiting, [], Resources(cpus=2), now=10, aging_per_minute=0).start == [4, 2]
    assert plan(waiting, [], Resources(cpus=3), now=10, aging_per_minute=0).start == [4, 2, 3]


def test_aging_lets_a_long_waiting_low_job_go_first():
    waiting = [job(1, priority=20, submitted=0), job(2, priority=80, submitted=3600)]
    pool = Resources(cpus=1)
    assert plan(waiting, [], pool, now=3600, aging_per_minute=0).start == [2]
    # 60 minutes at 1 point a minute: 20 -> 80 ties with the fresh high job, and it is older
    assert plan(waiting, [], pool, now=3600, aging_per_minute=1.0).start == [1]
    assert plan(waiting, [], pool, now=3000, aging_per_minute=1.0).start == [2]


def test_gang_allocation_waits_for_all_of_it():
    """A 2-GPU job never starts on the one GPU that is free; without a prediction for it, the one-GPU
    job behind it may not take the GPU either unless it ends before the big one could start."""
    running = [run(9, gpus=1, predicted=100)]
    waiting = [job(1, 80, 0, gpus=2), job(2, 50, 1, gpus=1)]
    decision = plan(waiting, running, POOL, now=10, preemption=False)
    assert decision.start == [] and decision.reserved == 1


def test_backfill_runs_a_short_job_that_ends_before_the_head_can_start():
    running = [run(9, gpus=1, started=0, predicted=100)]              # ends at 100
    head = job(1, 80, 0, gpus=2)
    short = job(2, 50, 1, gpus=1, predicted=50)                       # 10 + 50 <= 100: no delay
    long = job(3, 50, 2, gpus=1, predicted=500)                       # would delay the head
    assert plan([head, long, short], running, POOL, now=10, preemption=False).start == [2]
    assert plan([head, long], running, POOL, now=10, preemption=False).start == []
    # a small job that fits beside the head once it runs needs no prediction
    cpu_only = job(4, 50, 3, cpus=1)
    assert plan([head, cpu_only], running, POOL, now=10, preemption=False).start == [4]
    # FIFO (no backfill) keeps everyone behind the head
    assert plan([head, short], running, POOL, now=10, preemption=False, backfill=False).start == []


def test_preemption_stops_the_lowest_priority_newest_jobs_that_free_enough():
    running = [run(7, priority=20, started=0, gpus=1), run(8, priority=20, started=5, gpus=1),
               run(9, priority=50, started=1, cpus=2)]
    decision = plan([job(1, priority=80, gpus=1)], running, POOL, now=10)
    assert decision.preempt == [8] and decision.start == [] and decision.reserved == 1
    # no lower-priority job to stop: nobody is stopped
    assert plan([job(1, priority=20, gpus=1)], running, POOL, now=10).preempt == []
    # a job already being stopped frees enough: no second victim
    stopping = [run(7, priority=20, gpus=1), run(8, priority=20, started=5, gpus=1, stopping=True), running[2]]
    assert plan([job(1, priority=80, gpus=1)], stopping, POOL, now=10).preempt == []
    # preemption off: the high job waits
    assert plan([job(1, priority=80, gpus=1)], running, POOL, now=10, preemption=False).preempt == []


def test_preemption_never_stops_jobs_that_would_not_free_enough():
    running = [run(7, priority=20, gpus=1), run(8, priority=90, gpus=1)]
    assert plan([job(1, priority=80, gpus=2)], running, POOL, now=10).preempt == []


def test_custom_resources_and_memory_are_part_of_the_gang():
    pool = Resources(cpus=8, memory=8 * 2**30, custom={"licence": 1})
    big = Waiting(id=1, priority=50, submitted=0, resources=Resources(cpus=1, memory=9 * 2**30))
    lic = Waiting(id=2, priority=50, submitted=1, resources=Resources(cpus=1, custom={"licence": 1}))
    lic2 = Waiting(id=3, priority=50, submitted=2, resources=Resources(cpus=1, custom={"licence": 1}))
    assert plan([big, lic, lic2], [], pool, now=5).start == [2]    # big can never fit: skipped, not blocking


def test_no_two_jobs_take_turns_stopping_each_other():
    """A job that aged past a high one and started keeps running; a job that was preempted stops no one
    when it comes back."""
    aged = run(7, priority=20, started=0, gpus=2, cpus=1)
    aged_admitted_high = Running(id=7, priority=20, started=0, resources=aged.resources, admitted=90)
    high = job(1, priority=80, submitted=100, gpus=1)
    assert plan([high], [aged], POOL, now=100).preempt == [7]
    assert plan([high], [aged_admitted_high], POOL, now=100).preempt == []
    came_back = Waiting(id=2, priority=80, submitted=0, resources=Resources(cpus=1, gpus=1), preempted=True)
    assert plan([came_back], [aged], POOL, now=100).preempt == []
    # a low job that aged past the high one is first in order and starts; the high one waits for it
    low_first = Waiting(id=3, priority=20, submitted=0, resources=Resources(cpus=1, gpus=2))
    fresh_high = job(4, priority=80, submitted=4000, gpus=2)
    d = plan([low_first, fresh_high], [], POOL, now=4000, aging_per_minute=1.0)     # low ranks 86.7 > 80
    assert d.start == [3] and d.preempt == [] and d.reserved == 4
