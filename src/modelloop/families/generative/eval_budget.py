"""The train stage's evaluation within ``train.budget``. Comparing the fine-tuned and the base model on the
test split costs one forward pass per token per model for the generated answers and one per row per model
for the perplexities: on a loaded 2-core machine a 20 s budget was followed by 480 s of evaluation. So the
evaluation counts against the budget:

- the search (every fine-tuning trial) gets ``train.budget`` less :data:`EVAL_SHARE` of it
  (:func:`search_budget`); time the training leaves unused (early stopping) goes to the evaluation too,
  whose deadline is the stage's start plus ``train.budget``;
- the answers come first, until half of what is left (:func:`answers_deadline`), then the perplexities
  until the deadline, so neither takes it all;
- the answers are decoded a batch of rows at a time (``serve.MAX_BATCH``, as the served decoder batches),
  the fine-tuned then the base model on the same rows, so the comparison stays paired; the perplexities
  are summed :data:`NLL_ROWS` rows at a time, both models on each. A batch starts only when the previous
  one's time fits in what is left; the first always runs, so a budget spent by training still leaves a
  comparison: the stated overrun is at most one batch of answers and one of perplexity rows
  (:func:`answer_in_time`, :func:`nll_in_time`);
- the figures are those of the rows reached, always the first ones of the frozen test split, and the
  summary says how many (:func:`budget_note`).

Without ``train.budget`` every row is scored, as ``modelloop evaluate`` (no budget) scores all.
"""

from __future__ import annotations

import math
from time import monotonic
from typing import Any

__all__ = ["EVAL_SHARE", "NLL_ROWS", "PairedAnswers", "PairedNll", "answer_in_time", "answers_deadline",
           "budget_note", "nll_in_time", "search_budget"]

# the assistant example's evaluation took 57 s after a 300 s budget (benchmarks/RESULTS.md): ~20 %
EVAL_SHARE = 0.2
NLL_ROWS = 8  # test rows per step of the perplexities: one batch of sequences.sequence_nll / paired_nll


def search_budget(budget: float | None, test_rows: int) -> float | None:
    """The seconds the search gets of ``train.budget``: ``1 - EVAL_SHARE`` of it (all of it without test
    rows to evaluate, or None without a budget)."""
    if budget is None or not test_rows:
        return budget
    return budget * (1.0 - EVAL_SHARE)


def answers_deadline(deadline: float) -> float:
    """When the answers stop starting batches: half way from now to ``deadline``; the perplexities get
    the rest, and what the answers leave."""
    now = monotonic()
    return deadline if math.isinf(deadline) else now + max(deadline - now, 0.0) / 2


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


class PairedNll:
    """The summed negative log-likelihood and token count of the fine-tuned (``tuned``) and the base
    model (``base``) on the first ``rows`` of ``wanted`` test rows."""

    def __init__(self, tuned: tuple[float, int], base: tuple[float, int], rows: int, wanted: int):
        self.tuned, self.base, self.rows, self.wanted = tuned, base, rows, wanted


def nll_in_time(model: Any, frame: Any, deadline: float = math.inf, rows: int = NLL_ROWS) -> PairedNll:
    """``model.nll_with_base`` on ``frame`` summed ``rows`` rows at a time until the deadline leaves less
    than the last step took; the first step always runs."""
    sums = [0.0, 0, 0.0, 0]
    took, done = 0.0, 0
    for start in range(0, len(frame), rows):
        now = monotonic()
        if start and deadline - now < took:
            break
        (nll, n), (base_nll, base_n) = model.nll_with_base(frame.iloc[start:start + rows])
        sums = [sums[0] + nll, sums[1] + n, sums[2] + base_nll, sums[3] + base_n]
        done, took = min(start + rows, len(frame)), monotonic() - now
    return PairedNll((float(sums[0]), int(sums[1])), (float(sums[2]), int(sums[3])), done, len(frame))


def budget_note(answers: PairedAnswers | None, nll: PairedNll) -> str | None:
    """The summary's line when the budget cut the evaluation short (None: every row scored)."""
    cut = []
    if answers is not None and answers.stopped_by_budget:
        cut.append(f"answers scored on {answers.rows} of {answers.wanted} test rows")
    if nll.rows < nll.wanted:
        cut.append(f"perplexity on {nll.rows} of {nll.wanted}")
    return f"{', '.join(cut)} (train.budget)" if cut else None
