"""Training's evaluation, its HTML report and a family's per-group figures score the same test rows one
after the other: the model answers them once (a frozen multilingual encoder embedding the test texts three
times took ~90 s past a text search's budget), and only for that model and that frame."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd

from modelloop.evaluation.evaluate import evaluate_model, scores_of


class CountingClassifier:
    """A two-class model that counts how often it is asked (a stand-in for a slow encoder's head)."""

    task = "binary"

    def __init__(self) -> None:
        self.classes_ = ["neg", "pos"]
        self.calls = 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        p = (frame["x"].to_numpy(dtype=float) > 0).astype(float) * 0.8 + 0.1
        return np.column_stack([1 - p, p])


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [-2.0, -1.0, 1.0, 2.0, 3.0, None], "y": ["neg", "neg", "pos", "pos", "neg", None]})


def test_the_same_model_and_rows_are_scored_once_and_each_caller_gets_its_own_arrays() -> None:
    model, test = CountingClassifier(), _frame()
    figures = evaluate_model(model, test, target="y", task="binary")
    y, proba = scores_of(model, test, target="y", task="binary")
    assert model.calls == 1
    assert figures["metrics"]["accuracy"] == 0.8  # 4 of the 5 labelled rows (the unlabelled one left out)
    assert y.tolist() == [0, 0, 1, 1, 0] and proba.shape == (5, 2)
    proba[:] = 0.0  # a caller's change stays in its copy
    again = scores_of(model, test, target="y", task="binary")[1]
    assert model.calls == 1 and again[2, 1] == 0.9


def test_another_frame_or_another_model_is_scored_again() -> None:
    model, test = CountingClassifier(), _frame()
    scores_of(model, test, target="y", task="binary")
    scores_of(model, test.copy(), target="y", task="binary")  # equal rows, another frame
    assert model.calls == 2
    other = CountingClassifier()
    scores_of(other, test, target="y", task="binary")
    assert other.calls == 1
    del model, other
    gc.collect()
    third = CountingClassifier()  # may reuse a dead model's id(): never mistaken for it
    scores_of(third, test, target="y", task="binary")
    assert third.calls == 1
