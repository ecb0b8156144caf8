"""``train.parallel: N``: the tabular search runs N trials at once in worker processes sharing the study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pandas as pd
import pytest
from jobs_toy import wait_for
from optuna.trial import TrialState
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold

from modelloop.config import parse_config
from modelloop.data.schema import Schema
from modelloop.errors import ConfigError
from modelloop.families.tabular.search import SearchSettings, run_search
from modelloop.training.parallel import WORKER_KEY
from modelloop.training.search import finished, open_study


@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer(as_frame=True)
    X = data.data
    y = pd.Series(np.where(data.target == 1, "benign", "malignant"))
    folds = list(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
    return X, y, Schema(columns={c: "numeric" for c in X.columns}), folds


def _search(cancer, tmp_path, *, on_trial=None, **overrides):
    X, y, schema, folds = cancer
    settings = SearchSettings(**{"task": "binary", "metric": "f1", "budget": None, "families": ["linear", "lightgbm"],
                                 "ensemble": False, **overrides})
    return run_search(X, y, schema=schema, folds=folds, settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}",
                      study_name="p", work_dir=tmp_path / "w", on_trial=on_trial)


def _spans(study: optuna.Study) -> list[tuple[int, float, float]]:
    return [(t.user_attrs[WORKER_KEY], t.datetime_start.timestamp(), t.datetime_complete.timestamp())
            for t in study.trials if t.state == TrialState.COMPLETE]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="train.parallel: 2 needs 2 CPUs")
def test_parallel_trials_overlap_in_two_workers_and_a_killed_search_resumes_with_its_trials(cancer, tmp_path):
    told: list = []

    def stop_after_four(record):
        told.append(record)
        if len(told) == 4:
            raise KeyboardInterrupt  # as Ctrl-C (or a job's SIGTERM) in the parent

    with pytest.raises(KeyboardInterrupt):
        _search(cancer, tmp_path, n_trials=40, parallel=2, on_trial=stop_after_four)
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]   # the stopped workers' trials: failed
    kept = {t.number for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert len(kept) >= 4

    result = _search(cancer, tmp_path, n_trials=len(kept) + 4, parallel=2)
    assert result.resumed_trials == len(kept)
    assert kept <= {r.number for r in result.trials}                         # none re-run
    assert len(result.trials) == len(kept) + 4                                # n_trials counts finished trials
    spans = _spans(optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'o.db'}"))
    assert {w for w, _, _ in spans} == {0, 1}
    overlapping = [(a, b) for a in spans for b in spans
                   if a[0] == 0 and b[0] == 1 and a[1] < b[2] and b[1] < a[2]]
    assert overlapping, f"no two trials of different workers ran at the same time: {spans}"
    # the same kind of result as one process: the best trial, never worse than the library defaults
    defaults = [r.value for r in result.trials if r.number < 2 and r.value is not None]
    assert result.best_single.state == "complete" and result.validation_score >= max(defaults)
    assert result.model.predict(cancer[0]).shape == (len(cancer[0]),)


_KILLED = """
import sys
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold
from modelloop.data.schema import Schema
from modelloop.families.tabular.search import SearchSettings, run_search

if __name__ == "__main__":
    tmp = Path(sys.argv[1])
    data = load_breast_cancer(as_frame=True)
    X, y = data.data, pd.Series(np.where(data.target == 1, "benign", "malignant"))
    folds = list(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
    run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds,
               settings=SearchSettings(task="binary", metric="f1", budget=None, n_trials=500, parallel=2,
                                       families=["linear", "lightgbm"], ensemble=False),
               storage=f"sqlite:///{tmp / 'o.db'}", study_name="p", work_dir=tmp / "w")
"""


def _told(tmp_path) -> int:
    """Finished trials as the search counts them (complete, pruned, failed by an error)."""
    try:
        study = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'o.db'}")
    except Exception:  # not created yet
        return 0
    return len(finished(study))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="train.parallel: 2 needs 2 CPUs")
def test_a_parallel_search_killed_with_sigkill_leaves_no_worker_and_resumes_with_its_trials(cancer, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(_KILLED))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    def three_told() -> bool:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        return _told(tmp_path) >= 3

    try:
        wait_for(three_told, timeout=60, every=0.1, what="3 finished trials of the parallel search")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1.0)                        # the workers see the search gone and die at once
    kept = _told(tmp_path)
    time.sleep(1.0)
    assert _told(tmp_path) == kept, "a worker went on telling trials after its search was killed"

    result = _search(cancer, tmp_path, n_trials=kept + 2, parallel=2)
    # Every trial finished before the kill is reused, none re-run, and the trial count is honoured. (A
    # worker killed between its trial's duration_s and its tell once made the resume count one more: that
    # trial, abandoned, counted as failed by an error; test_a_trial_killed_before_its_tell_...)
    assert result.resumed_trials == kept and len(result.trials) == kept + 2


def test_a_trial_killed_before_its_tell_is_not_counted_at_resume(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"

    def resume() -> optuna.Study:
        return open_study(storage, "p", metric="f1", fingerprint="x", seed=0, startup_trials=1, differs="-")

    study = resume()
    failed = study.ask()                                  # a fit that raised: failed by an error, counted
    failed.suggest_float("linear_C", 1e-3, 1e2, log=True)
    failed.set_user_attr("error", "ValueError: no")
    failed.set_user_attr("duration_s", 0.2)
    study.tell(failed, state=TrialState.FAIL)
    killed = study.ask()
    killed.suggest_float("linear_C", 1e-3, 1e2, log=True)
    killed.set_user_attr("duration_s", 0.3)               # its process is killed here, before study.tell
    study = resume()                                      # the next run abandons it: failed, params queued
    states = {t.number: t.state for t in study.trials}
    assert states[killed.number] == TrialState.FAIL and TrialState.WAITING in states.values()
    assert [t.number for t in finished(study)] == [failed.number]


def test_train_parallel_is_one_to_the_cpu_count(cancer, tmp_path):
    cpus = os.cpu_count() or 1
    base = {"name": "p", "task": "classification", "data": {"source": "d.csv", "target": "y"}}
    assert parse_config({**base, "train": {"parallel": cpus}}).train.parallel == cpus
    with pytest.raises(ConfigError, match=r"train\.parallel: must be greater than or equal to 1, got 0"):
        parse_config({**base, "train": {"parallel": 0}})
    with pytest.raises(ConfigError, match=rf"train\.parallel: must be 1\.\.{cpus} \(this machine's CPU count\)"):
        parse_config({**base, "train": {"parallel": cpus + 1}})
    # on the Ray engine the workers are Ray tasks: the cluster's free CPUs bound them when the search starts
    on_ray = parse_config({**base, "train": {"parallel": cpus + 6}, "compute": {"engine": "ray"}})
    assert on_ray.train.parallel == cpus + 6
    X, y, schema, folds = cancer
    with pytest.raises(ConfigError, match=rf"train\.parallel: must be 1\.\.{cpus}"):  # the API checks it too
        run_search(X, y, schema=schema, folds=folds, settings=SearchSettings(task="binary", metric="f1",
                                                                             parallel=cpus + 1),
                   storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="x", work_dir=tmp_path / "w")


def _tell_failed(study, trial, deadline):
    """A trial that fails (its error recorded), as a worker's run_trial tells it; notes its deadline."""
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr("error", "boom")
    trial.set_user_attr("deadline_in_s", deadline - time.monotonic())
    study.tell(trial, state=TrialState.FAIL)
    return trial.number


def _tell_complete(study, trial, deadline):
    trial.set_user_attr("deadline_in_s", deadline - time.monotonic())
    study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
    return trial.number


def test_a_worker_past_a_spent_budget_runs_one_trial_while_the_study_has_no_model(tmp_path):
    """The worker (in this process: same code as a forked or Ray one): with the budget already spent it
    runs one trial, told a deadline that has passed, even when that trial fails; with a completed trial
    in the study it runs none."""
    import queue
    import threading

    from modelloop.training.parallel import _worker
    from modelloop.training.ray_search import _NoBarrier

    storage = f"sqlite:///{tmp_path / 'w.db'}"
    study = open_study(storage, "w", metric="rmse", fingerprint="a", seed=0, startup_trials=2, differs="")

    def work(run_trial) -> list[int]:   # budget 10 s, 50 s spent by earlier runs: the numbers told
        results: queue.Queue = queue.Queue()
        _worker(0, storage, "w", run_trial, 0, False, 10.0, None, 50.0, time.monotonic(), _NoBarrier(),
                threading.Lock(), results)
        return [results.get_nowait()[1] for _ in range(results.qsize())]

    assert work(_tell_failed) == [0]        # one trial, and only one though it failed
    assert work(_tell_complete) == [1]      # still no model: one more
    assert work(_tell_complete) == []       # the study has its model: a spent budget runs no more
    assert all(t.user_attrs["deadline_in_s"] < 0 for t in study.trials)   # each told its deadline had passed
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
