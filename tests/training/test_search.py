"""The search driver every family shares: resume, interrupted and stale trials, the budget across runs."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from modelloop.errors import ConfigError
from modelloop.training.search import SPENT_KEY, finished, open_study, ranked, search_loop


def _study(tmp_path, fingerprint="a"):
    return open_study(f"sqlite:///{tmp_path / 'o.db'}", "s", metric="rmse", fingerprint=fingerprint, seed=0,
                      startup_trials=2, differs="resume with the same data")


def _run(study, fail_on=None, seen=None):
    def run(trial: optuna.Trial, deadline: float):
        x = trial.suggest_float("x", -3.0, 3.0)
        if seen is not None:
            seen.append((trial.number, x, deadline))
        if trial.number == fail_on:
            raise KeyboardInterrupt
        trial.set_user_attr("duration_s", 0.01)
        return study.tell(trial, (x - 1.0) ** 2)

    return run


def test_an_interrupted_sampled_trial_is_failed_and_its_parameters_run_first_next_time(tmp_path):
    study = _study(tmp_path)
    seen: list = []
    with pytest.raises(KeyboardInterrupt):
        search_loop(study, _run(study, fail_on=2, seen=seen), budget=None, n_trials=5)
    interrupted_x = seen[-1][1]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                                              TrialState.WAITING]
    again = _study(tmp_path)
    seen.clear()
    search_loop(again, _run(again, seen=seen), budget=None, n_trials=5)
    assert seen[0][:2] == (3, interrupted_x)           # the interrupted parameters, retried first
    assert len(finished(again)) == 5 and ranked(again)[0].value == min(t.value for t in finished(again))


def test_a_trial_left_running_by_a_killed_process_is_failed_and_queued_again(tmp_path):
    study = _study(tmp_path)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(-3.0, 3.0)})  # never told: "killed"
    x = trial.params["x"]
    again = _study(tmp_path)
    assert again.trials[0].state == TrialState.FAIL
    assert again.trials[1].state == TrialState.WAITING and again.trials[1].system_attrs["fixed_params"] == {"x": x}


def test_every_trial_gets_the_deadline_and_the_budget_spans_runs(tmp_path):
    study = _study(tmp_path)
    seen: list = []
    search_loop(study, _run(study, seen=seen), budget=1000, n_trials=2)
    assert len(seen) == 2 and all(d < math.inf for _, _, d in seen)   # the first trial included
    assert seen[0][2] == seen[1][2]                                    # one deadline for the whole search
    study.set_user_attr(SPENT_KEY, 999.9999)          # the budget all but spent by earlier runs
    seen.clear()
    search_loop(_study(tmp_path), _run(study, seen=seen), budget=1000, n_trials=None)
    assert len(seen) <= 1


def test_a_study_of_other_data_is_refused_with_what_to_do(tmp_path):
    _study(tmp_path, fingerprint="a")
    with pytest.raises(ConfigError, match=r"started with other data or settings \(resume with the same data\)"):
        _study(tmp_path, fingerprint="b")


def test_one_trial_runs_past_a_budget_spent_before_any_trial_completed(tmp_path):
    fresh = _study(tmp_path)
    fresh.set_user_attr(SPENT_KEY, 5000.0)            # spent before any trial completed (a killed run)
    seen: list = []
    search_loop(fresh, _run(fresh, seen=seen), budget=1000, n_trials=None)
    assert len(seen) == 1 and seen[0][2] < math.inf   # one trial, told its deadline has passed: a model
    seen.clear()
    search_loop(fresh, _run(fresh, seen=seen), budget=1000, n_trials=None)
    assert seen == []                                 # one completed: the spent budget runs no more


def test_a_run_that_ends_at_its_deadline_records_the_whole_budget_spent(tmp_path):
    """A trial that returns just before the deadline, then work after it (the callbacks) that takes the loop
    past it: the run recorded the time at the trial's end, under the budget, and the next run of the same
    budget started a trial its deadline cut at once (tests/training/test_tune.py's resume test flaked so).
    The time recorded is the loop's stop now, so the next run has nothing left and runs no trial."""
    import time

    study = _study(tmp_path)
    budget = 0.4

    def run(trial: optuna.Trial, deadline: float):
        time.sleep(max(0.0, deadline - time.monotonic() - 0.05))  # ends 50 ms before the deadline
        return study.tell(trial, trial.suggest_float("x", -3.0, 3.0) ** 2)

    search_loop(study, run, budget=budget, n_trials=None, on_trial=lambda _: time.sleep(0.1))
    assert study.user_attrs[SPENT_KEY] >= budget
    seen: list = []
    again = _study(tmp_path)
    search_loop(again, _run(again, seen=seen), budget=budget, n_trials=None)
    assert seen == []
