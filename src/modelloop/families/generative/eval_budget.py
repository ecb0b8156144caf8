"""The train stage's generated answers within ``train.budget``. Generating answers for the comparison of the
fine-tuned and the base model costs one forward pass per token per model: on a loaded 2-core machine a
20 s budget was followed by 480 s of evaluation. So the answers count against the budget:

- the search (every fine-tuning trial) gets ``train.budget`` less :data:`EVAL_SHARE` of it when the
  evaluation will generate answers (:func:`search_budget`); time the training leaves unused (early
  stopping) goes to the evaluation too, whose deadline is the stage's start plus ``train.budget``;
- the answers are decoded a batch of rows at a time (``serve.MAX_BATCH``, as the served decoder batches),
  the fine-tuned then the base model on the same rows, so the comparison stays paired; a batch starts
  only when the previous batch's time (both models) fits in what is left before the deadline. The first
  batch always runs, so a budget spent by training still leaves a comparison: the stated overrun is
  at most one batch of answers per model (:func:`answer_in_time`);
- the scores are those of the rows answered, always the first ones of the frozen test split, and the
  summary says how many (:func:`budget_note`).

Without ``train.budget`` every asked row is answered, as ``modelloop evaluate`` (no budget) answers all.
"""

from __future__ import annotations

import math
from time import monotonic
from typing import Any

__all__ = ["EVAL_SHARE", "PairedAnswers", "answer_in_time", "budget_note", "search_budget"]

# the assistant example's evaluation took 57 s after a 300 s budget (benchmarks/RESULTS.md): ~20 %
EVAL_SHARE = 0.2


def search_budget(budget: float | None, answers: bool) -> float | None:
    """The seconds the search gets of ``train.budget``: all of it when the evaluation generates no
    answers (plain text, ``model.eval_samples: 0``, no test rows) or there is no budget, else
    ``1 - EVAL_SHARE`` of it."""
    if budget is None or not answers:
        return budget
    return budget * (1.0 - EVAL_SHARE)


class PairedAnswers:
    """Both models' answers to the first ``len(tuned)`` of ``wanted`` rows (``stopped_by_budget``: the
    deadline ended the answering before every wanted row)."""

    def __init__(self, tuned: list[str], base: list[str], wanted: int):
        self.tuned, self.base, self.wanted = tuned, base, wanted

    @property
    def rows(self) -> int:
        return len(self.tuned)

    @property
    def stopped_by_budget(self) -> bool:
        return self.rows < self.wanted


def answer_in_time(model: Any, records: list[dict[str, Any]], deadline: float = math.inf,
                   batch: int | None = None) -> PairedAnswers:
    """The fine-tuned and the base model's greedy answers (``model.predict_together``) to ``records``, a
    batch at a time, until the deadline (``time.monotonic()``) leaves less than the last batch took; the
    first batch always runs. ``batch``: the served decoder's ``MAX_BATCH`` when None."""
    from .serve import MAX_BATCH

    size = batch or MAX_BATCH
    tuned: list[str] = []
    base: list[str] = []
    took = 0.0
    for start in range(0, len(records), size):
        now = monotonic()
        if start and deadline - now < took:
            break
        rows = records[start:start + size]
        tuned += model.predict_together(rows, max_batch=size)
        base += model.predict_together(rows, base=True, max_batch=size)
        took = monotonic() - now
    return PairedAnswers(tuned, base, len(records))


def budget_note(answers: PairedAnswers) -> str | None:
    """The summary's line when the budget cut the answering short (None: every wanted row answered)."""
    if not answers.stopped_by_budget:
        return None
    return (f"answers scored on {answers.rows} of {answers.wanted} test rows (train.budget); "
            "perplexity on every test row")
