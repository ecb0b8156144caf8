"""The detectors against their definitions: ECOD and COPOD computed here row by row from the papers'
formulas, the rank calibration, kNN's leave-self-out training scores."""

from __future__ import annotations

import numpy as np
import pytest

from modelloop.families.anomaly.detectors import COPOD, ECOD, KNNDetector, build_detector, calibrate, training_scores
from modelloop.families.anomaly.search import default_detectors, stability, unsupervised_weights


def _tails(train: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(train)
    left = np.array([-np.log((np.sum(train[:, j] <= v) + 1) / (n + 1)) for j, v in enumerate(x)])
    right = np.array([-np.log((np.sum(train[:, j] >= v) + 1) / (n + 1)) for j, v in enumerate(x)])
    return left, right


def _skew(col: np.ndarray) -> float:
    c = col - col.mean()
    return float((c ** 3).mean() / (c ** 2).mean() ** 1.5)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    def draw(n: int) -> np.ndarray:
        return np.column_stack([rng.exponential(1.0, n), -rng.exponential(1.0, n), rng.normal(0, 1, n)])

    train = draw(300)
    test = np.vstack([draw(20), [[12.0, -0.5, 0.0], [0.5, -12.0, 0.0], [0.5, -0.5, 7.0]]])
    return train, test


def test_ecod_is_the_sum_of_the_worst_tail_per_column(data):
    train, test = data
    signs = [np.sign(_skew(train[:, j])) for j in range(train.shape[1])]
    assert signs[0] > 0 and signs[1] < 0  # one right-skewed, one left-skewed column
    expected = []
    for x in test:
        left, right = _tails(train, x)
        by_skew = np.array([left[j] if s < 0 else right[j] if s > 0 else left[j] + right[j]
                            for j, s in enumerate(signs)])
        expected.append(np.maximum(np.maximum(left, right), by_skew).sum())
    np.testing.assert_allclose(ECOD().fit(train).score(test), expected, rtol=1e-12)


def test_copod_takes_the_skewed_tail_or_the_mean_of_both(data):
    train, test = data
    signs = [np.sign(_skew(train[:, j])) for j in range(train.shape[1])]
    expected = []
    for x in test:
        left, right = _tails(train, x)
        by_skew = np.array([left[j] if s < 0 else right[j] if s > 0 else left[j] + right[j]
                            for j, s in enumerate(signs)])
        expected.append(np.maximum(by_skew, (left + right) / 2).sum())
    np.testing.assert_allclose(COPOD().fit(train).score(test), expected, rtol=1e-12)


def test_the_planted_outliers_score_highest_for_every_detector(data):
    train, test = data
    for name in ("iforest", "ecod", "copod", "knn", "lof", "autoencoder"):
        det = build_detector(name, {}, seed=0, n_rows=len(train)).fit(train)
        calibrated = calibrate(np.sort(training_scores(det, train)), det.score(test))
        assert (calibrated[20:] > 0.9).all(), (name, calibrated[20:])
        assert np.median(calibrated[:20]) < 0.9, name


def test_calibration_is_the_share_of_training_scores_at_or_below():
    reference = np.sort(np.array([0.1, 0.2, 0.2, 0.5, 0.9]))
    np.testing.assert_allclose(calibrate(reference, np.array([0.0, 0.2, 0.6, 5.0])), [0.0, 0.6, 0.8, 1.0])


def test_knn_training_scores_leave_the_row_itself_out():
    X = np.array([[0.0], [1.0], [3.0], [10.0]])
    det = KNNDetector(k=1).fit(X)
    np.testing.assert_allclose(training_scores(det, X), [1.0, 1.0, 2.0, 7.0])
    np.testing.assert_allclose(det.score(np.array([[10.0]])), [0.0])  # a new row at a training point


def test_the_autoencoder_finds_broken_correlations_early_stops_and_scores_without_torch():
    import pickle

    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 24))  # 24 columns driven by 3 factors: each row lies near a 3-d subspace
    train = rng.normal(size=(600, 3)) @ mix + 0.05 * rng.normal(size=(600, 24))
    ordinary = rng.normal(size=(30, 3)) @ mix + 0.05 * rng.normal(size=(30, 24))
    broken = rng.normal(size=(5, 24)) * train.std(axis=0)  # each value ordinary, the columns unrelated
    det = build_detector("autoencoder", {"ae_bottleneck": 3}, seed=0, n_rows=len(train)).fit(train)
    s = det.score(np.vstack([ordinary, broken]))
    assert s[30:].min() > s[:30].max()
    assert det.best_epoch_ <= det.epochs_ and (det.epochs_ < 40 or det.best_epoch_ == 40)  # stopped or still learning
    blob = pickle.dumps(det)
    assert b"torch" not in blob  # numpy weights: a served model never imports torch
    np.testing.assert_allclose(pickle.loads(blob).score(train[:5]), det.score(train[:5]))


def test_the_autoencoder_joins_the_default_set_only_for_wide_data():
    from modelloop.families.anomaly.config import AnomalyConfig

    assert "autoencoder" not in default_detectors(AnomalyConfig(), 12)
    assert default_detectors(AnomalyConfig(), 24)[-1] == "autoencoder"
    assert default_detectors(AnomalyConfig(detectors=["ecod", "knn"]), 60) == ["ecod", "knn"]  # as given


def test_unsupervised_weights_favour_stable_detectors_that_agree():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 4))
    steady = stability("ecod", {}, X, seed=0)
    shaky = stability("iforest", {"iforest_trees": 1, "iforest_samples": 16}, X, seed=0)  # one tiny tree
    assert steady > 0.95 and shaky < steady - 0.2
    w = unsupervised_weights({"ecod": 0.9, "iforest": 0.9, "lof": -0.2}, {"ecod": steady, "iforest": shaky, "lof": 1.0})
    assert w["ecod"] > 3 * w["iforest"] and w["lof"] == 0.0 and sum(w.values()) == pytest.approx(1.0)
    assert unsupervised_weights({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}) == {"a": 0.5, "b": 0.5}


def test_a_few_labels_weight_the_detectors_they_point_to_and_the_choice_follows_them(tmp_path):
    """Two detectors each rank a different planted group of rows first, a third ranks at random: labels
    marking one group lean the ensemble on the detector that finds it, and the other group the other."""
    from modelloop.families.anomaly.search import AnomalySearch, _choose, label_weights
    from modelloop.training.search import TrialRecord

    rng = np.random.default_rng(4)
    n = 300
    group_a, group_b = np.arange(0, 6), np.arange(6, 12)
    raw = {d: rng.random(n) for d in ("iforest", "ecod", "knn")}
    raw["knn"][group_a] += 2.0     # knn finds group a
    raw["iforest"][group_b] += 2.0  # iforest finds group b
    records = []
    for number, (d, r) in enumerate(raw.items()):
        np.save(tmp_path / f"trial_{number}.npy", calibrate(np.sort(r), r))
        records.append(TrialRecord(number, d, {}, 0.5, "complete", 0.0))
    labelled = np.arange(0, 80)  # 80 labelled rows: both groups and 68 normal ones
    for found, finder in ((group_a, "knn"), (group_b, "iforest")):
        y = np.full(n, -1)
        y[labelled] = 0
        y[found] = 1
        job = AnomalySearch(X=np.zeros((n, 1)), y=y, detectors=list(raw), seed=0, min_labels=3, budget=None,
                            n_trials=None)
        sel = _choose(job, records, tmp_path, "pr_auc")["selection"]
        ap = sel["average_precision"]
        assert max(ap, key=lambda k: ap[k] if k != "ensemble" else -1) == finder
        # the weights the labels gave lean on the detector that finds the labelled anomalies ...
        weights, share = label_weights({d: ap[d] for d in raw}, 6 / 80, 6)
        assert max(weights, key=lambda k: weights[k]) == finder and 0 < share < 1
        # ... and the choice follows them: that detector alone, since the others only add noise
        assert sel["chosen"] == finder and sel["labelled_anomalies"] == 6 and "weighted by average precision" in sel["why"]
    # knn and iforest each find the labelled anomalies through their own noise, ecod at random: the labels
    # give ecod the least weight and the ensemble of the two finders beats either alone
    noisy = {d: rng.random(n) for d in ("iforest", "ecod", "knn")}
    noisy["knn"][:12] += 0.6
    noisy["iforest"][:12] += 0.6
    for number, r in enumerate(noisy.values()):  # the records' order
        np.save(tmp_path / f"trial_{number}.npy", calibrate(np.sort(r), r))
    y = np.full(n, -1)
    y[labelled] = 0
    y[:12] = 1
    job = AnomalySearch(X=np.zeros((n, 1)), y=y, detectors=list(raw), seed=0, min_labels=3, budget=None, n_trials=None)
    chosen = _choose(job, records, tmp_path, "pr_auc")
    weights = dict(zip([m[0] for m in chosen["members"]], chosen["weights"], strict=True))
    assert chosen["selection"]["chosen"] == "ensemble" and weights["ecod"] < min(weights["knn"], weights["iforest"])
    assert chosen["selection"]["weights"] == {d: round(w, 4) for d, w in weights.items()}


def test_label_weights_shrink_toward_equal_shares_with_few_labels():
    from modelloop.families.anomaly.search import label_weights

    ap = {"a": 1.0, "b": 0.4, "c": 0.1}  # base rate 0.1: c ranks the labelled anomalies as random scores do
    few, share_few = label_weights(ap, 0.1, 3)
    many, share_many = label_weights(ap, 0.1, 60)
    assert 0.5 < few["a"] < many["a"] < 1.0 and many["b"] < few["b"] < 0.5 and share_few < share_many
    assert sum(few.values()) == pytest.approx(1.0) and sum(many.values()) == pytest.approx(1.0)
    # the shrinkage is toward equal shares of the members that beat the base rate: c has none however few
    assert few["c"] == many["c"] == 0.0 and few["a"] == pytest.approx((1 - share_few) / 2 + share_few * 0.9 / 1.2)
    assert label_weights({"a": 0.05, "b": 0.02}, 0.1, 50) == ({"a": 0.5, "b": 0.5}, 0.0)  # no better than chance
