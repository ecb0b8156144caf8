"""The train stage's evaluation counts against ``train.budget``: the search leaves it a share; the
generated answers (the fine-tuned then the base model, on the same rows) and then the perplexities are
computed a batch of rows at a time and stop when the previous batch's time no longer fits before the
deadline; the summary says how many rows were scored. Each batch's cost is made deterministic here by a
clock that a batch moves forward, so the tests count rows, not seconds."""

from __future__ import annotations

import json

import pytest
import yaml
from clirun import cli

from modelloop.families.generative import eval_budget
from modelloop.families.generative.eval_budget import (EVAL_SHARE, NLL_ROWS, PairedNll, answer_in_time,
                                                       budget_note, nll_in_time, search_budget)


class _Clock:
    """``time.monotonic`` plus seconds that the patched decoding adds (``cost`` per model per batch)."""

    def __init__(self, cost: float):
        import time

        self.real, self.extra, self.cost = time.monotonic, 0.0, cost

    def __call__(self) -> float:
        return self.real() + self.extra


class _Model:
    """Answers each prompt with its row number and notes which rows each model was asked."""

    def __init__(self, clock: _Clock):
        self.clock, self.asked = clock, {"tuned": [], "base": []}

    def predict_together(self, records, *, base=False, max_batch=None):
        self.asked["base" if base else "tuned"].append([r["i"] for r in records])
        self.clock.extra += self.clock.cost
        return [f"{'b' if base else 't'}{r['i']}" for r in records]

    def nll_with_base(self, frame):
        self.asked["nll"] = [*self.asked.get("nll", []), list(frame["i"])]
        self.clock.extra += self.clock.cost
        return (float(len(frame)), len(frame)), (2.0 * len(frame), len(frame))


def test_answers_stop_when_the_last_batch_no_longer_fits_and_both_models_answer_the_same_rows(monkeypatch):
    clock = _Clock(cost=3.0)  # 6 s a batch of rows for the two models
    monkeypatch.setattr(eval_budget, "monotonic", clock)
    model, records = _Model(clock), [{"i": i} for i in range(40)]

    out = answer_in_time(model, records, clock() + 10.0, batch=8)  # one batch fits, 4 s left < 6 s
    assert model.asked["tuned"] == model.asked["base"] == [list(range(8))]
    assert out.tuned == [f"t{i}" for i in range(8)] and out.base == [f"b{i}" for i in range(8)]
    assert (out.rows, out.wanted, out.stopped_by_budget) == (8, 40, True)
    whole_nll = PairedNll((1.0, 1), (1.0, 1), 40, 40)
    assert budget_note(out, whole_nll) == "answers scored on 8 of 40 test rows (train.budget)"

    model = _Model(clock)
    out = answer_in_time(model, records, clock() + 20.0, batch=8)  # 6 + 6 + 6 = 18 s: the 4th starts at 2 s left
    assert model.asked["tuned"] == model.asked["base"] == [list(range(8)), list(range(8, 16)), list(range(16, 24))]
    assert out.rows == 24

    # a spent budget still answers one batch (the comparison exists); no budget answers every row
    assert answer_in_time(_Model(clock), records, clock() - 1.0, batch=8).rows == 8
    whole = answer_in_time(_Model(clock), records, batch=8)
    assert (whole.rows, whole.stopped_by_budget, budget_note(whole, whole_nll)) == (40, False, None)


def test_perplexities_stop_when_the_last_rows_no_longer_fit_and_sum_both_models_on_the_same_rows(monkeypatch):
    import pandas as pd

    clock = _Clock(cost=2.0)  # 2 s per step of NLL_ROWS rows, both models
    monkeypatch.setattr(eval_budget, "monotonic", clock)
    frame = pd.DataFrame({"i": range(5 * NLL_ROWS + 3)})
    model = _Model(clock)
    out = nll_in_time(model, frame, clock() + 5.0)  # 2 + 2 s: the third step would start with 1 s left
    assert model.asked["nll"] == [list(range(NLL_ROWS)), list(range(NLL_ROWS, 2 * NLL_ROWS))]
    n = 2 * NLL_ROWS
    assert (out.tuned, out.base, out.rows, out.wanted) == ((float(n), n), (2.0 * n, n), n, len(frame))
    assert budget_note(None, out) == f"perplexity on {n} of {len(frame)} (train.budget)"
    assert nll_in_time(_Model(clock), frame, clock() - 1.0).rows == NLL_ROWS  # one step always runs
    whole = nll_in_time(_Model(clock), frame)
    assert (whole.rows, whole.tuned) == (len(frame), (float(len(frame)), len(frame)))


def test_the_search_leaves_the_evaluation_a_share_of_the_budget():
    assert search_budget(100.0, test_rows=30) == pytest.approx(100.0 * (1 - EVAL_SHARE))
    assert search_budget(100.0, test_rows=0) == 100.0  # no test rows: nothing to evaluate
    assert search_budget(None, test_rows=30) is None


def test_train_scores_both_models_on_the_rows_answered_within_the_budget(tmp_path, capsys, tiny_llama,
                                                                         monkeypatch):
    from gen_toy import gen_config, make_pairs

    from modelloop.families.generative import stage
    from modelloop.families.generative.model import GenerativeModel
    from modelloop.families.generative.serve import MAX_BATCH

    make_pairs(150).to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(tmp_path, tiny_llama, epochs=2, eval_samples=100, max_new_tokens=3)
    raw["train"] = {"budget": 30}
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert cli(["ingest"], capsys, tmp_path)[0] == 0

    # each model's batch of answers "takes" 1000 s: after the first batch no other fits in the budget, and
    # the perplexities, starting past the deadline, score their first step of rows only
    clock = _Clock(cost=1000.0)
    monkeypatch.setattr(eval_budget, "monotonic", clock)
    asked: dict[bool, list[list[str]]] = {False: [], True: []}
    decode = GenerativeModel.predict_together

    def timed(self, X, *, base=False, max_batch=None):
        asked[base].append([r["prompt"] for r in X])
        clock.extra += clock.cost
        return decode(self, X, base=base, max_batch=max_batch)

    monkeypatch.setattr(GenerativeModel, "predict_together", timed)
    budgets: list[float | None] = []
    search = stage.run_generative_search

    def spy(job, **kw):
        budgets.append(kw["budget"])
        return search(job, **kw)

    monkeypatch.setattr(stage, "run_generative_search", spy)
    code, out, err = cli(["train", "--json"], capsys, tmp_path)
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    g, test_rows = summary["generation"], summary["rows"]["test"]
    assert test_rows > MAX_BATCH, test_rows
    assert budgets == [pytest.approx(30 * (1 - EVAL_SHARE))]  # the search left the evaluation its share
    assert asked[False] == asked[True] and len(asked[False]) == 1 and len(asked[False][0]) == MAX_BATCH
    assert (g["evaluated_rows"], g["evaluation_rows"], g["perplexity_rows"], g["evaluation_stopped_by_budget"]) \
        == (MAX_BATCH, test_rows, NLL_ROWS, True)
    assert summary["evaluation_summary"] == (f"answers scored on {MAX_BATCH} of {test_rows} test rows, "
                                             f"perplexity on {NLL_ROWS} of {test_rows} (train.budget)")
    # both models' scores are of those rows (keys kept)
    assert set(summary["test_metrics"]) >= {"chrf", "rouge_l", "exact_match", "perplexity"}
    assert set(g["base_metrics"]) >= {"chrf", "rouge_l", "exact_match"} and g["base_perplexity"] is not None
    page = open(summary["report"], encoding="utf-8").read()
    assert page.count("<tr><td>") == MAX_BATCH and f"{MAX_BATCH} of {test_rows} test rows" in page
    from modelloop.ui import render_train

    render_train(summary)  # the one-screen summary says it under the test table
    assert f"evaluation  answers scored on {MAX_BATCH} of {test_rows} test rows" in capsys.readouterr().out
