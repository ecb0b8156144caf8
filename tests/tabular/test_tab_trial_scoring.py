"""A stored tabular search is resumed only by a modelloop whose trials mean the same (``TRIAL_SCORING``):
after 54bff22 a small multiclass table's trials are fitted unweighted and decided with the class weights;
a study of weighted trials resumed across it mixed both and scaled the old ones by the weights again."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelloop.config import parse_config
from modelloop.families.tabular import search
from modelloop.project import Project


def _project(root) -> Project:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    y = np.where(x[:, 0] > 0.6, "high", np.where(x[:, 0] < -0.6, "low", "mid"))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}).to_csv(root / "data.csv", index=False)
    raw = {"name": "grades", "data": {"source": "data.csv", "target": "y"},
           "train": {"cv_folds": 3, "families": ["linear"], "ensemble": False}}
    return Project(parse_config(raw, root=root))


def test_a_search_of_another_trial_scoring_is_not_resumed(tmp_path, monkeypatch):
    project = _project(tmp_path)
    project.ingest()
    first = project.train(trials=2)
    assert project.train(trials=3)["resumed_trials"] == 2  # same meaning: the stored trials are kept
    monkeypatch.setattr(search, "TRIAL_SCORING", search.TRIAL_SCORING + 1)
    again = project.train(trials=2)
    assert again["resumed_trials"] == 0 and again["trials"] == 2 and first["trials"] == 2
