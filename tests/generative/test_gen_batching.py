"""Continuous batching in the serving engine: concurrent requests decode in shared forward passes, at most
``max_batch`` at once, and each answers as it would alone (greedy as ``modelloop predict``; sampled with
its seed as the batch-1 decoder); a request that stops early leaves the batch to the others."""

from __future__ import annotations

import threading

import pytest

from modelloop.families.generative.serve import Engine


def _concurrently(engine: Engine, jobs: list[dict]) -> list[str]:
    answers: list[str | None] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        start.wait()
        answers[i] = "".join(s.delta for s in engine.stream(**jobs[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return [a or "" for a in answers]


def _job(model, question: str, **options) -> dict:
    base = {"max_tokens": 12, "temperature": 0.0, "top_p": 1.0, "seed": None, "stop": ()}
    return {"prompt_ids": model.prompt_ids({"prompt": question}), **base, **options}


@pytest.mark.parametrize("max_batch", [16, 2])
def test_concurrent_requests_share_steps_and_answer_as_alone(trained, max_batch):
    from gen_toy import FACTS

    model = trained.model
    questions = [q for q, _ in FACTS] + ["Hi, " + q for q, _ in FACTS[:2]]
    engine = Engine(model, max_batch=max_batch)
    greedy = _concurrently(engine, [_job(model, q) for q in questions])
    assert greedy == model.predict([{"prompt": q} for q in questions])
    assert 1 < engine.decoder.widest <= max_batch  # shared steps, never more than max_batch sequences
    sampled = _concurrently(engine, [_job(model, q, temperature=1.5, top_p=0.9, seed=i) for i, q in
                                     enumerate(questions)])
    alone = [model.answer(model.prompt_ids({"prompt": q}), max_new_tokens=12, temperature=1.5, top_p=0.9, seed=i)
             for i, q in enumerate(questions)]
    assert sampled == alone


def test_a_cancelled_request_leaves_the_batch_and_the_others_finish(trained):
    model = trained.model
    engine = Engine(model)
    polls: list[int] = []
    gone = lambda: polls.append(1) or len(polls) >= 2  # noqa: E731  # the client leaves after its 2nd token
    jobs = [_job(model, "Where is my order?", max_tokens=40, temperature=2.0, seed=3),
            _job(model, "Can I cancel?", max_tokens=40, temperature=2.0, seed=4, should_stop=gone)]
    steps: dict[int, list] = {0: [], 1: []}
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        steps[i].extend(engine.stream(**jobs[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert steps[1][-1].finish_reason == "cancelled" and len(steps[1]) == 2
    alone = list(model.generate(jobs[0]["prompt_ids"], max_new_tokens=40, temperature=2.0, seed=3))
    assert [s.token for s in steps[0]] == [s.token for s in alone]


def test_close_ends_the_idle_decoding_thread_and_a_later_request_starts_it_again(trained):
    """What runs at interpreter exit (and may run when a server stops): the idle thread, waiting inside
    PyTorch's inference mode, is ended and joined rather than killed in the interpreter's teardown."""
    model = trained.model
    engine = Engine(model)
    ask = lambda: "".join(s.delta for s in engine.stream(**_job(model, "Where is my order?")))  # noqa: E731
    first = ask()
    assert engine.decoder.running  # idle, waiting for the next request
    engine.decoder.close()
    assert not engine.decoder.running
    engine.decoder.close()  # closing a closed decoder is a no-op
    assert ask() == first and engine.decoder.running
    engine.decoder.close()
    assert not engine.decoder.running
