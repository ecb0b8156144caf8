"""``train.parallel: N`` with ``compute.engine: ray``: the search's N workers are Ray tasks sharing the
Optuna storage (training/ray_search.py). The worker's ask / run / tell loop is the local processes' one,
covered fast by tests/training/test_search_parallel.py; here the refusal (fast) and a train on a real
local Ray head (slow)."""

from __future__ import annotations

import os

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from jobs_toy import ray_head
from optuna.trial import TrialState
from servers import free_port
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold
from toy import RAW_CONFIG, make_table

from modelloop.config import parse_config
from modelloop.data.schema import Schema
from modelloop.errors import ConfigError
from modelloop.families.tabular.search import SearchSettings, run_search
from modelloop.project import Project
from modelloop.training.parallel import PROCESS_KEY, WORKER_KEY


def test_a_ray_address_that_does_not_answer_is_refused_naming_it(tmp_path):
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:120], pd.Series(np.where(data.target == 1, "b", "m"))[:120]
    folds = list(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
    address = f"127.0.0.1:{free_port()}"
    settings = SearchSettings(task="binary", metric="f1", budget=None, n_trials=4, families=["linear"],
                              ensemble=False, parallel=2, ray_address=address)
    with pytest.raises(ConfigError, match=f"compute.address: no Ray cluster answers at {address}"):
        run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds, settings=settings,
                   storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="p", work_dir=tmp_path / "w")


@pytest.mark.slow
def test_a_train_with_two_parallel_trials_runs_them_as_ray_workers(tmp_path):
    """Slow (a Ray head and two workers importing the search: ~1-2 min here)."""
    pytest.importorskip("ray")
    import ray

    with ray_head(cpus=2) as (address, _):
        root = tmp_path / "p"
        root.mkdir()
        make_table(300).to_csv(root / "data.csv", index=False)
        raw = {**RAW_CONFIG, "train": {**RAW_CONFIG["train"], "parallel": 2, "trials": 6, "budget": 120,
                                       "families": ["linear"], "ensemble": False},
               "compute": {"engine": "ray", "address": address}}
        (root / "modelloop.yaml").write_text(yaml.safe_dump(raw))
        project = Project(parse_config(raw, root=root))
        project.ingest()
        try:
            result = project.train()
        finally:
            ray.shutdown()
        assert result["model"]["version"] == 1
        ws = project.workspace
        [summary] = optuna.get_all_study_summaries(ws.optuna_url)
        study = optuna.load_study(study_name=summary.study_name, storage=ws.optuna_url)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert len(done) == 6 and {t.user_attrs[WORKER_KEY] for t in done} == {0, 1}
        # each trial ran inside one of two Ray tasks (its id as Ray's runtime context gave it), not here
        where = {t.user_attrs[PROCESS_KEY] for t in done}
        assert len(where) == 2 and all(" ray task " in w and not w.endswith(" ray task None") for w in where)
        assert all(int(w.split()[0].rpartition(":")[2]) != os.getpid() for w in where), where
