"""Labels that differ only in surrounding spaces ('yes' and 'yes ', as a spreadsheet leaves them): the model
learns them apart, evaluation and served labels must keep them apart, and the user is told how to merge them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clirun import cli
from modelloop.families.heads import ClassificationHead, class_indices

CLASSES = ["no", "no ", "yes", "yes "]


def test_a_label_is_its_own_class_before_any_that_shares_its_text() -> None:
    """Matching by text alone sent every 'no' to 'no ' (the last class with that text)."""
    assert class_indices(CLASSES, pd.Series(["no", "yes ", "yes", "no "]), "y").tolist() == [0, 3, 2, 1]
    assert class_indices(CLASSES, pd.Series([" yes"]), "y").tolist() == [2]  # no exact class: the first by text
    assert class_indices([0, 1], pd.Series(["1", 1.0, np.int64(0)]), "y").tolist() == [1, 1, 0]
    head = ClassificationHead("multiclass", CLASSES)
    assert [head.check_label(v) for v in ("no", "no ", "yes", " yes")] == ["no", "no ", "yes", "yes"]


def test_training_on_padded_labels_scores_its_test_split_and_says_how_to_merge_them(tmp_path, capsys) -> None:
    """A table whose labels are right on nearly every row, a seventh of them with a trailing space: its test
    split scored 8 % accuracy (the truth read through the padded classes); the run now scores as its answers
    are right, and warns with the clean rule that merges the classes."""
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    y = np.where(x > 0, "yes", "no").astype(object)
    y[::7] = [v + " " for v in y[::7]]
    pd.DataFrame({"x": x, "z": rng.normal(size=n), "y": y}).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "modelloop.yaml").write_text("name: padded\ndata:\n  source: data.csv\n  target: y\n"
                                            "train:\n  trials: 4\n  families: [linear]\n  cv_folds: 3\n")
    assert cli(["ingest"], capsys, tmp_path)[0] == 0
    code, out, err = cli(["train", "--json"], capsys, tmp_path)
    assert code == 0, err
    result = json.loads(out)
    assert result["test_metrics"]["accuracy"] > 0.7
    [warning] = [w for w in result["warnings"] if "surrounding spaces" in w]
    assert "'yes' (" in warning and "'yes ' (" in warning and "strip: true" in warning
    code, out, err = cli(["evaluate", "--json"], capsys, tmp_path)
    assert code == 0 and json.loads(out)["metrics"]["accuracy"] == pytest.approx(result["test_metrics"]["accuracy"])
