"""A deadline shortens the fine-tune's learning-rate schedule to the optimizer steps that fit before it, so
warm-up and decay end at the deadline (the learning rate of the last step near 0) instead of a schedule
planned for every configured epoch being cut off at a high learning rate; without a deadline the schedule
is ``make_scheduler``'s, step for step."""

from __future__ import annotations

import time

import pytest
import torch

from modelloop.families.generative.config import GenerativeModelConfig
from modelloop.families.generative.data import Shape, encode_examples, examples_of
from modelloop.families.generative.fit import GenJob, params_of, run_params
from modelloop.families.text.fit import make_scheduler


def _job(tiny_llama, pairs, **settings):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    s = GenerativeModelConfig(backbone=str(tiny_llama), method="full", batch_size=1, grad_accum=2, max_length=64,
                              learning_rate=1e-2, packing=False, warmup_ratio=0.1, **settings)
    ex = examples_of(pairs.head(24), Shape("pairs", "prompt", "completion"), tok)
    ids, labels, _ = encode_examples(tok, ex, 64)
    return GenJob(s, str(tiny_llama), "fp", int(tok.pad_token_id), ids[:18], labels[:18], ids[18:], labels[18:],
                  0, "cpu"), s


def _make_scheduler_lr(schedule: str, lr: float, warmup: int, total: int, step: int) -> float:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt, schedule, warmup, total)
    for _ in range(step):
        opt.step()
        sched.step()
    return float(opt.param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_a_deadline_shortens_the_schedule_so_it_ends_there(tiny_llama, pairs, schedule):
    # 100 epochs of 9 steps: 900 steps configured, far more than fit in 3 s
    job, s = _job(tiny_llama, pairs, epochs=100, early_stopping_patience=100, schedule=schedule)
    out = run_params(job, params_of(s), deadline=time.monotonic() + 3)
    assert out["stopped_by_budget"] is True and out["steps_configured"] == 900
    assert 10 <= out["steps_planned"] < 900 and out["steps_run"] <= out["steps_planned"], out
    # the schedule ran (nearly) to its shortened end: the last step's learning rate is a small part of 1e-2
    # (without the plan it would be ~1e-2, the run stopping a few percent into a 900-step decay)
    assert out["last_step_lr"] < 0.15 * 1e-2, out


def test_without_a_deadline_the_schedule_is_make_schedulers(tiny_llama, pairs):
    job, s = _job(tiny_llama, pairs, epochs=2, schedule="cosine")
    out = run_params(job, params_of(s))
    assert out["stopped_by_budget"] is False
    assert out["steps_configured"] == out["steps_planned"] == out["steps_run"] == 18
    assert out["last_step_lr"] == _make_scheduler_lr("cosine", 1e-2, 1, 18, 17) > 0
