"""Trials of different kinds are compared on equal terms (issue 26): a PyTorch encoder's head is
cross-validated like a frozen encoder's head, and a fine-tune (scored on the validation rows) meets a
cross-validated TF-IDF or head trial on those same rows, in the search's choice and in the blend's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from modelloop.training.search import TrialRecord


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 16))
    x[:, 0] += 1.2 * (2 * y - 1)  # one informative direction, noisy
    return x.astype(np.float32), y.astype(np.int64)


def _common(y_fit: np.ndarray, y_val: np.ndarray) -> dict:
    from modelloop.families.text.config import TextModelConfig

    return dict(settings=TextModelConfig(), y_fit=y_fit, y_val=y_val, classes=["neg", "pos"], metric="f1_macro",
                class_weight="balanced", seed=0)


def _head_and_frozen():
    from modelloop.families.text.candidates import EncoderHeadCandidate, FrozenCandidate

    fit_x, y_fit = _features(120, 0)
    val_x, y_val = _features(40, 1)
    common = _common(y_fit, y_val)
    # a FitJob's parts that the head reads: its settings and its frozen embeddings (set, so none is computed)
    job = SimpleNamespace(settings=common["settings"], method="head", features={"fit": fit_x, "val": val_x})
    head = EncoderHeadCandidate(**common, job=job, name="encoder", backbone="bundled")  # type: ignore[arg-type]
    frozen = FrozenCandidate(**common, backbone="multilingual-use", engine="numpy",  # type: ignore[arg-type]
                             features={"fit": fit_x, "val": val_x})
    return head, frozen


def test_a_pytorch_encoders_head_is_cross_validated_like_a_frozen_head():
    """Before, its trial was scored on the 40 validation rows alone; now over 5 folds of all 160 rows,
    the same folds and the same number as a frozen encoder's head on the same embeddings."""
    head, frozen = _head_and_frozen()
    params = {"head_c": 1.0}
    ran, same = head.run(params), frozen.run(params)
    assert ran["cv"]["folds"] == 5 and ran["cv"]["folds_run"] == 5 and ran["cv"]["rows"] == 160
    assert ran["value"] == pytest.approx(np.mean(ran["cv"]["scores"]), abs=1e-4)
    assert ran["value"] == pytest.approx(same["value"]) and ran["cv"]["val_score"] == pytest.approx(same["cv"]["val_score"])
    assert head.cached_cv(params) is not None and head.family == "head"


def test_the_encoders_head_is_no_blend_member():
    """The blend serves its members without PyTorch: the encoder's head is left out, the frozen head stays."""
    from modelloop.families.text.blend import _best_trials

    head, frozen = _head_and_frozen()
    cands = {"encoder": head, "multilingual-use": frozen}
    records = [TrialRecord(i, c.family, {"candidate": n, "head_c": 1.0}, c.run({"head_c": 1.0})["value"], "complete", 0.0)
               for i, (n, c) in enumerate(cands.items())]
    assert [t[0] for t in _best_trials(records, cands, "f1_macro")] == ["multilingual-use"]


def _trial(number: int, value: float, cv: dict | None) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(value=value, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                  user_attrs={"cv": cv} if cv else {})
    t.number = number
    return t


@pytest.mark.parametrize(("held", "winner"), [(0.93, 0), (0.90, 0), (0.88, 1), (None, 1)],
                         ids=["cv-better-on-validation", "tie-goes-to-cv", "fine-tune-better", "folds-cut-short"])
def test_a_fine_tune_meets_a_cross_validated_trial_on_the_validation_rows(held, winner):
    """TF-IDF's CV mean 0.85 against a fine-tune's 0.90 on the validation rows: ranked by value (the
    rule before) the fine-tune always won; now TF-IDF's out-of-fold score on those rows decides."""
    from modelloop.families.text.search import fair_best

    cv = {"folds": 5, "folds_run": 5, "mean": 0.85, "val_score": held}
    ranked = [_trial(1, 0.90, None), _trial(0, 0.85, cv)]  # as ranked() orders them: by value
    best, compared = fair_best(ranked, "f1_macro")
    assert best.number == winner
    if held is None:
        assert compared is None
    else:
        assert compared == {"rows": "validation", "fine_tune": 0.90, "cross_validated": held, "winner": winner}
    only_cv = [_trial(0, 0.85, cv), _trial(2, 0.80, cv)]
    assert fair_best(only_cv, "f1_macro") == (only_cv[0], None)  # one kind: ranked by value as before


def test_the_blend_meets_a_fine_tuned_winner_on_the_validation_rows():
    """With a fine-tuned winner the blend's cross-fitted predictions on the validation rows are scored
    against the fine-tune's score there, not its CV mean."""
    from modelloop.families.text.blend import choose_blend
    from modelloop.families.text.candidates import FrozenCandidate

    fit_x, y_fit = _features(120, 0)
    val_x, y_val = _features(40, 1)
    common = _common(y_fit, y_val)
    cands = {name: FrozenCandidate(**common, backbone=name, engine="numpy",  # type: ignore[arg-type]
                                   features={"fit": fit_x + 0.3 * np.random.default_rng(k).normal(size=fit_x.shape),
                                             "val": val_x + 0.3 * np.random.default_rng(k + 9).normal(size=val_x.shape)})
             for k, name in enumerate(["a", "b"])}
    records = [TrialRecord(i, c.family, {"candidate": n, "head_c": 1.0}, c.run({"head_c": 1.0})["value"], "complete", 0.0)
               for i, (n, c) in enumerate(cands.items())]
    kw = dict(metric="f1_macro", seed=0, best_single=0.0)
    low, high = choose_blend(cands, records, **kw, fine_tune=0.0), choose_blend(cands, records, **kw, fine_tune=1.0)
    assert low is not None and high is not None
    on_val = low["validation_rows"]["blend"]
    assert 0.5 < on_val <= 1.0 and high["validation_rows"] == {"blend": on_val, "fine_tune": 1.0}
    assert all(m["weight"] > 0 for m in low["members"])  # two noisy views of the same signal: both weighed
    assert low["kept"] and "on the validation rows" in low["why"]
    assert not high["kept"]  # a perfect fine-tune on the validation rows is not beaten there
    assert "validation_rows" not in choose_blend(cands, records, **kw)  # no fine-tune: the CV rule as before
