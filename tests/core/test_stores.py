"""MLflow tracking/registry and Optuna storage take the same URLs: SQLite always, PostgreSQL when present."""

from __future__ import annotations

import optuna
from sklearn.linear_model import LogisticRegression

from modelloop.tracking import Tracker


def test_tracker_runs_and_registry(store_url, tmp_path):
    tracker = Tracker(store_url, "proj", tmp_path / "artifacts")
    with tracker.run("search") as parent:
        with tracker.run("trial-0", parent=parent) as child:
            tracker.log(child, params={"family": "linear", "nested": {"C": 1.0}}, metrics={"valid_f1": 0.5,
                                                                                         "nan": float("nan")})
        model = LogisticRegression().fit([[0.0], [1.0], [0.2], [0.9]], [0, 1, 0, 1])
        version = tracker.log_model(parent, model, name="proj")
    tracker.set_alias("proj", "production", int(version))
    c = tracker.client
    assert c.get_run(child).data.params == {"family": "linear", "nested.C": "1.0"}
    assert c.get_run(child).data.tags["mlflow.parentRunId"] == parent
    assert c.get_run(parent).info.status == "FINISHED"
    assert int(c.get_model_version_by_alias("proj", "production").version) == version
    # a second tracker on the same store finds the experiment instead of failing
    assert Tracker(store_url, "proj", tmp_path / "artifacts").experiment_id == tracker.experiment_id


def test_optuna_study_resumes_from_the_store(store_url):
    def objective(trial):
        return (trial.suggest_float("x", -1, 1) - 0.3) ** 2

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s1 = optuna.create_study(storage=store_url, study_name="s", load_if_exists=True)
    s1.optimize(objective, n_trials=3)
    s2 = optuna.create_study(storage=store_url, study_name="s", load_if_exists=True)
    assert len(s2.trials) == 3
    s2.optimize(objective, n_trials=2)
    assert len(optuna.load_study(storage=store_url, study_name="s").trials) == 5
