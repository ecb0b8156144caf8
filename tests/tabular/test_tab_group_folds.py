"""A small table grouped by a column with fewer groups than train.cv_folds: the search validates on one
fold a group, once, and says so. Before, it repeated that one partition five times (search.cv_repeats),
reported "15 folds, 5 repeats of k-fold" and a spread over copies, and said nothing of the folds it cut."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelloop.config import parse_config
from modelloop.project import Project


def test_fewer_groups_than_folds_train_one_partition_with_a_warning(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 2))
    y = (x[:, 0] + rng.normal(size=240) > 0).astype(int)
    sites = [f"s{s}" for s in rng.integers(0, 4, 240)]  # one site is the frozen test set (whole groups), 3 train
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "site": sites, "y": y}).to_csv(tmp_path / "data.csv", index=False)
    raw = {"name": "sites", "task": "classification", "data": {"source": "data.csv", "target": "y", "group": "site"},
           "train": {"cv_folds": 5, "families": ["linear"], "ensemble": False}}
    project = Project(parse_config(raw, root=tmp_path))
    project.ingest()
    result = project.train(trials=2)
    assert result["cv"]["repeats"] == 1 and result["cv"]["folds"] == 3
    assert any("data.group: column 'site' has 3 groups" in w and "train.cv_folds (5)" in w
               for w in result["warnings"])
