"""The text search chooses its TF-IDF (and frozen-head) trials by cross-validation over every training
row (:mod:`modelloop.families.text.crossval`), not on the validation rows alone: a trial's score is the
mean over the folds, its spread is reported, the folds' features equal a pipeline fitted on the fold's
rows, and a trial stops between folds at the deadline."""

from __future__ import annotations

import time

import numpy as np
import optuna
import pytest

_CHARS = [chr(0x4E00 + i) for i in range(120)]


def _rows(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Chinese-looking texts of random characters with three weak label signals each (a character of
    the label's five right 7 times in 10), and a few ASCII words, so every input has n-grams."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = []
    for v in y:
        chars = list(rng.choice(_CHARS[10:], int(rng.integers(6, 14))))
        for _ in range(3):
            side = v if rng.random() < 0.7 else 1 - v
            chars.insert(int(rng.integers(0, len(chars) + 1)), _CHARS[5 * side + int(rng.integers(0, 5))])
        texts.append("".join(chars) + (" good" if rng.random() < 0.3 else " ok fine"))
    return texts, y.astype(np.int64)


def _tfidf(augmented: int = 0, n_fit: int = 150, n_val: int = 40):
    from modelloop.families.text.candidates import TfidfCandidate
    from modelloop.families.text.config import TextModelConfig

    fit_t, y_fit = _rows(n_fit, 0)
    val_t, y_val = _rows(n_val, 1)
    return TfidfCandidate(settings=TextModelConfig(), y_fit=y_fit, y_val=y_val, classes=["neg", "pos"],
                          metric="f1_macro", class_weight="balanced", seed=0, augmented=augmented,
                          fit_texts=fit_t, val_texts=val_t)


_PARAMS = [{"tfidf_c": 10.0, "char_max": 3, "word_max": 2, "min_df": 1, "tf": "binary", "nb": False, "seg_max": 0},
           {"tfidf_c": 100.0, "char_max": 2, "word_max": 0, "min_df": 2, "tf": "raw", "nb": True, "seg_max": 0},
           {"tfidf_c": 0.5, "char_max": 3, "word_max": 1, "min_df": 2, "tf": "raw", "nb": False, "seg_max": 2}]


# on _tfidf()'s rows the first scores best on the 40 validation rows (0.700) and the second by
# cross-validation (0.734, 0.675 on validation): the two rules choose differently
_RANKED = [{"tfidf_c": 30.0, "char_max": 3, "word_max": 0, "min_df": 2, "tf": "binary", "nb": False, "seg_max": 0},
           {"tfidf_c": 3.0, "char_max": 3, "word_max": 0, "min_df": 2, "tf": "raw", "nb": False, "seg_max": 0},
           {"tfidf_c": 30.0, "char_max": 2, "word_max": 2, "min_df": 2, "tf": "binary", "nb": False, "seg_max": 0}]


@pytest.mark.parametrize("params", _PARAMS, ids=["defaults", "nb-min_df2-raw", "jieba-words"])
def test_a_folds_features_equal_a_pipeline_fitted_on_its_rows(params):
    """A fold reuses counts of every row (counted once per search): its probabilities equal what
    fit_tfidf's pipeline fitted on the fold's training rows predicts for its held-out rows."""
    from modelloop.families.text.classical import fit_tfidf, pipeline_inputs, segmenter, tfidf_inputs

    if params["seg_max"] and segmenter() is None:
        pytest.skip("jieba is not installed")
    cand = _tfidf()
    texts = cand.fit_texts + cand.val_texts
    for train, rows in cand.cv_folds()[:2]:
        pipe = fit_tfidf([texts[i] for i in train], cand.y_all[train], params, class_weight="balanced", seed=0)
        want = pipe.predict_proba(tfidf_inputs([texts[i] for i in rows], pipeline_inputs(pipe)))
        np.testing.assert_allclose(cand.fold_proba(params, train, rows), want, atol=2e-3)


def test_a_trials_score_is_its_cross_validated_mean_over_fit_and_validation_rows():
    """Five stratified folds hold out every fit and validation row once (augmented copies never, and
    they are not trained on either); the trial's value is the folds' mean, their std its spread."""
    cand = _tfidf(augmented=20)
    folds = cand.cv_folds()
    held = np.sort(np.concatenate([rows for _, rows in folds]))
    copies = np.arange(130, 150)  # the last 20 of the 150 fit rows
    assert len(folds) == 5 and np.array_equal(held, np.setdiff1d(np.arange(190), copies))
    assert all(not np.isin(copies, train).any() and not np.isin(rows, train).any() for train, rows in folds)

    result = cand.run(_PARAMS[0])
    cv = result["cv"]
    assert cv["folds"] == cv["folds_run"] == 5 and cv["rows"] == 170 and len(cv["scores"]) == 5
    assert result["value"] == pytest.approx(np.mean(cv["scores"]), abs=1e-4)
    assert cv["spread"] == pytest.approx(np.std(cv["scores"]), abs=1e-4) and cv["spread"] > 0
    assert cand.cached_cv(_PARAMS[0]) is not None and cand.cached_cv(_PARAMS[1]) is None  # the blend's folds


def test_the_search_keeps_the_trial_with_the_best_cross_validated_score_and_reports_its_spread(tmp_path):
    """Through the text search: every trial's value is its cross-validated mean (the validation rows
    alone rank these trials otherwise), the winner is the best of those, and the summary's ``cv``
    says its folds and spread as the tabular search's does."""
    from modelloop.evaluation.metrics import score
    from modelloop.families.text.search import _SearchSettings, run_text_search

    cand = _tfidf()
    cands = {"tfidf": cand}
    settings = _SearchSettings(budget=None, n_trials=len(_RANKED) + 1, search=True, warm_start=[dict(p) for p in _RANKED])
    chosen, summary = run_text_search(cands, metric="f1_macro", seed=0, storage=f"sqlite:///{tmp_path}/s.db",
                                      study_name="cv", work_dir=tmp_path / "w", settings=settings)
    n_fit, n_val = len(cand.y_fit), len(cand.y_val)
    by_cv, by_val = {}, {}
    for p in [cand.defaults(), *_RANKED]:  # the candidate's configured trial first, as in every search
        key = tuple(sorted({**cand.defaults(), **p}.items()))
        by_cv[key] = cand.cross_validate(p)["mean"]
        by_val[key] = score("f1_macro", cand.y_val, cand.fold_proba(p, np.arange(n_fit), n_fit + np.arange(n_val)))
    values = {tuple(sorted({**cand.defaults(), **r.params}.items())): r.value for r in summary.trials}
    assert values == pytest.approx(by_cv)
    assert max(by_cv, key=by_cv.get) != max(by_val, key=by_val.get)  # the two rules disagree on these rows
    assert tuple(sorted(chosen["params"].items())) == max(by_cv, key=by_cv.get)
    assert summary.validation_score == pytest.approx(max(by_cv.values()))
    assert summary.cv is not None and summary.cv["folds"] == 5 and summary.cv["repeats"] == 1
    assert summary.cv["rows"] == n_fit + n_val and summary.cv["spread"] > 0
    assert chosen["result"]["cv"]["scores"] == summary.cv["scores"]  # not fitted again after the search


def test_a_trial_past_the_deadline_stops_between_folds():
    """Past train.budget's deadline a trial is pruned after its current fold when another trial has a
    score; the first trial of a search ends with the folds it ran (the search still ends with a model)."""
    cand = _tfidf()
    study = optuna.create_study(direction="maximize")
    first = study.ask()
    spent = time.monotonic() - 1.0
    result = cand.run(_PARAMS[0], deadline=spent, trial=first)
    assert result["cv"]["folds_run"] == 1 and result["cv"]["folds"] == 5
    assert cand.cached_cv(_PARAMS[0]) is None  # cut short: no out-of-fold predictions for the blend
    study.tell(first, result["value"])
    with pytest.raises(optuna.TrialPruned, match="1 of 5 folds"):
        cand.run(_PARAMS[1], deadline=spent, trial=study.ask())
