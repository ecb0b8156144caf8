"""The loop closes: logged predictions + labels -> drift -> retrain -> gate -> promote or refuse."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelloop import Project, parse_config
from modelloop.feedback.store import nothing_usable
from modelloop.registry import load_model, resolve_model
from workspace_copy import copy_project


def world(n: int, seed: int, shifted: bool = False) -> pd.DataFrame:
    """Base world: risk from x1 and merchant a. Shifted: a new merchant 'z' carries the risk,
    amounts inflate."""
    rng = np.random.default_rng(seed)
    merchants = ["a", "b", "c", "z"] if shifted else ["a", "b", "c"]
    p = [0.2, 0.2, 0.2, 0.4] if shifted else None
    m = rng.choice(merchants, n, p=p)
    x1 = rng.normal(size=n)
    amount = rng.lognormal(3, 1, n) * (1.6 if shifted else 1.0)
    logit = 2.0 * x1 + 1.5 * (m == "a") - 2.0
    if shifted:
        logit = 1.0 * x1 + 4.0 * (m == "z") - 2.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"x1": x1, "amount": amount, "merchant": m, "y": y})


def loop_config(**sections) -> dict:
    return {"name": "loop", "data": {"source": "d.csv", "target": "y"},
            "train": {"trials": 5, "cv_folds": 3, "families": ["lightgbm", "linear"], "ensemble": False},
            "retrain": {"min_new_labels": 100}, "monitor": {"min_rows": 100}, **sections}


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory) -> Path:
    """One trained project (v1 in production) per module; each test changes a copy of it."""
    root = tmp_path_factory.mktemp("loop-trained")
    world(1500, 0).to_csv(root / "d.csv", index=False)
    Project(parse_config(loop_config(), root=root)).run()
    return root


def trained_project(trained_root: Path, tmp_path: Path, **sections) -> Project:
    """A copy of the trained project, opened with these config sections (the ``optimize`` section
    the optimize tests add plays no part in training)."""
    root = copy_project(trained_root, tmp_path / "project")
    return Project(parse_config(loop_config(**sections), root=root))


@pytest.fixture
def project(trained_root, tmp_path):
    return trained_project(trained_root, tmp_path)


def serve_stream(p: Project, df: pd.DataFrame) -> list[str]:
    """What the server does for each request: predict with production and log it."""
    ws = p.workspace
    row = resolve_model(ws)
    model = load_model(ws, row)
    X = df.drop(columns=["y"])
    proba = model.predict_proba(X)
    labels = model.predict(X)
    ids, rows = [], []
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    for i, rec in enumerate(json.loads(X.to_json(orient="records"))):
        rid = uuid.uuid4().hex
        ids.append(rid)
        rows.append({"request_id": rid, "name": row["name"], "version": row["version"],
                     "at": now + dt.timedelta(milliseconds=i), "inputs": rec,
                     "output": {"label": int(labels[i]),
                                "probabilities": {str(c): float(proba[i, k]) for k, c in enumerate(model.classes_)}},
                     "latency_ms": 1.0})
    ws.catalog.add_predictions(rows)
    return ids


def post_labels(p: Project, tmp_path, ids: list[str], labels) -> dict:
    f = tmp_path / f"labels-{uuid.uuid4().hex[:6]}.csv"
    pd.DataFrame({"request_id": ids, "label": labels}).to_csv(f, index=False)
    return p.feedback(str(f))


def test_concept_drift_is_detected_and_the_retrained_model_is_promoted(project, tmp_path):
    shifted = world(1200, 1, shifted=True)
    ids = serve_stream(project, shifted)
    counts = post_labels(project, tmp_path, ids, shifted["y"])
    assert counts["accepted"] == 1200

    mon = project.monitor()
    assert "merchant" in mon["drifted_features"] and "amount" in mon["drifted_features"]
    assert "x1" not in mon["drifted_features"]
    assert mon["metrics"]["1"]["all"]["n"] == 1200
    assert any(a["kind"] == "feature_drift" for a in mon["alerts"])

    res = project.retrain(if_needed=True)
    assert res["promoted"] is True, res["reason"]
    assert res["challenger"]["metrics"]["recent"]["f1_macro"] > res["champion"]["metrics"]["recent"]["f1_macro"]
    lo, hi = res["gate"]["recent_gain_interval"]  # a clear gain: the whole interval above 0
    assert 0 < lo <= res["gate"]["recent_gain"] <= hi and not res["gate"]["recent_gain_within_noise"], res["gate"]
    assert f"(95% interval {lo:+.4f} to {hi:+.4f} on 360 recent rows)" in res["reason"]
    assert project.status()["production"]["version"] == 2
    decision = project.workspace.catalog.list_decisions("loop")[-1]
    assert decision["promoted"] and decision["dataset_id"] == res["dataset"]
    # the new dataset version is the parent plus the feedback, with provenance, and keeps the frozen test set
    ds = project.status()["datasets"]
    assert ds[-1]["step"] == "feedback-merge" and ds[-1]["rows"] == ds[0]["rows"] + 1200
    assert ds[-1]["parents"] == [ds[0]["id"]]
    assert res["rows"]["recent"] == 360 and res["rows"]["holdout"] == 300

    back = project.rollback()
    assert back["model"]["version"] == 1 and back["rolled_back_from"] == 2


def test_an_earlier_recent_slice_is_learnt_by_the_next_challenger(project, tmp_path):
    """The first retrain's recent slice judged its challenger; the next retrain's challenger trains on it
    (neither model learnt it, and the gate judges on the new slice alone). It stayed on the recent side of
    every later version: feedback no model ever learnt, judging every later retrain."""
    from modelloop.data.ingest import ensure_split, load_dataset

    ws = project.workspace
    first_batch = world(400, 3, shifted=True)
    post_labels(project, tmp_path, serve_stream(project, first_batch), first_batch["y"])
    res = project.retrain()
    if not res["promoted"]:  # the next retrain starts from the production model's dataset
        project.promote(f"loop:{res['challenger']['model']['version']}")
    row, df, _ = load_dataset(ws, res["dataset"])
    first = set(df["_row_id"][(ensure_split(ws, row, df) == "recent").to_numpy()])
    assert len(first) == res["rows"]["recent"] == 120
    assert res["gate"]["recent_slice"]["earlier_slices"] == {"rows": 0, "kept": 0, "returned_to_training": 0,
                                                             "to_test": 0}

    second_batch = world(400, 4, shifted=True)
    post_labels(project, tmp_path, serve_stream(project, second_batch), second_batch["y"])
    res2 = project.retrain()
    row2, df2, _ = load_dataset(ws, res2["dataset"])
    side2 = pd.Series(ensure_split(ws, row2, df2).to_numpy(), index=df2["_row_id"].to_numpy())
    assert set(side2[list(first)]) == {"train"}  # the second challenger trained on the first slice
    assert res2["rows"]["recent"] == 120 and res2["rows"]["holdout"] == 300  # the new slice; the frozen test set
    assert res2["gate"]["recent_slice"]["earlier_slices"] == {"rows": 120, "kept": 0, "returned_to_training": 120,
                                                              "to_test": 0}


@pytest.mark.parametrize("how", ["config", "flag"])
def test_production_stays_optimized_through_retrain(trained_root, tmp_path, how):
    """optimize.promote (or one `optimize --promote`): the variant replaces the trained model, and a
    promoted challenger is optimized in turn, so production never falls back to an unoptimized model."""
    p = trained_project(trained_root, tmp_path, optimize={"promote": how == "config", "variants": ["onnx"]})
    opt = p.optimize(promote=True) if how == "flag" else p.optimize()
    assert opt["promoted"] and opt["model"]["version"] == 2 and p.status()["production"]["version"] == 2
    if how == "config":  # either way production is now a variant, which is what makes retrain optimize again
        return           # (retrain.py: optimize.promote or the champion's variant): one retrain covers both
    shifted = world(1200, 1, shifted=True)
    post_labels(p, tmp_path, serve_stream(p, shifted), shifted["y"])
    res = p.retrain()
    assert res["promoted"] is True and res["champion"]["model"]["version"] == 2, res["reason"]
    challenger = res["challenger"]["model"]["version"]
    assert res["optimize"]["promoted"] is True and res["optimize"]["chosen"] == "onnx"
    served = res["optimize"]["model"]["version"]
    assert served > challenger and p.status()["production"]["version"] == served
    row = resolve_model(p.workspace, f"loop:{served}")
    assert row["parent_version"] == challenger and row["info"]["variant"] == "onnx"
    back = p.rollback()  # undoes the whole retrain, not just its optimize step
    assert back["rolled_back_from"] == served and back["model"]["version"] == 2


def test_poisoned_feedback_is_refused_and_the_reason_recorded(project, tmp_path):
    same = world(2500, 2)
    ids = serve_stream(project, same)
    post_labels(project, tmp_path, ids, 1 - same["y"])  # every label wrong
    res = project.retrain()
    assert res["promoted"] is False
    ch, cl = res["champion"]["metrics"], res["challenger"]["metrics"]
    assert cl["holdout"]["f1_macro"] < ch["holdout"]["f1_macro"] - 0.1
    # it learned the flipped labels: on the (poisoned) recent slice it gains beyond the noise, and only
    # the frozen holdout catches it
    assert res["gate"]["recent_gain_interval"][0] > 0 and "frozen holdout" in res["reason"], res["gate"]
    assert "frozen holdout" in res["reason"] or "does not beat" in res["reason"]
    assert project.status()["production"]["version"] == 1
    decision = project.workspace.catalog.list_decisions("loop")[-1]
    assert decision["promoted"] is False and decision["reason"] == res["reason"]


def test_feedback_counts_unknown_duplicate_invalid(project, tmp_path):
    data = world(5, 3)
    ids = serve_stream(project, data)
    res = post_labels(project, tmp_path, [ids[0], ids[0], "nope", ids[1], ids[2]], [1, 0, 1, "maybe", 0])
    assert {k: res[k] for k in ("accepted", "duplicate", "unknown_request", "invalid")} == {
        "accepted": 2, "duplicate": 1, "unknown_request": 1, "invalid": 1}
    again = post_labels(project, tmp_path, [ids[2]], [1])
    assert again["duplicate"] == 1 and again["accepted"] == 0
    # something usable, or a re-import: fine; nothing usable at all: `modelloop feedback` exits 2
    assert nothing_usable(res) is None and nothing_usable(again) is None
    useless = post_labels(project, tmp_path, ["nope", ids[3]], [1, "maybe"])
    assert nothing_usable(useless) == (
        "none of the 2 feedback rows was accepted: 1 unknown request ids (e.g. 'nope'); 1 invalid labels "
        f"(e.g. '{ids[3]}'). A request id is the request_id of a prediction /v1/predict returned; label: must "
        "be one of 0, 1, got 'maybe'")  # the model's own rule, as its head says it
    assert useless["invalid_why"] == "label: must be one of 0, 1, got 'maybe'" and "invalid_why" not in again


def test_if_needed_does_nothing_without_a_trigger(project):
    res = project.retrain(if_needed=True)
    assert res["skipped"] and res["promoted"] is False and res["triggers"]["fired"] == []
    assert len(project.status()["models"]) == 1


def test_a_gain_on_a_few_recent_rows_is_called_noise(project, tmp_path):
    """40 labels of the unchanged world: 12 recent rows cannot tell champion and challenger apart, and the
    reason says so beside the interval, whatever the gate decides."""
    same = world(40, 5)
    post_labels(project, tmp_path, serve_stream(project, same), same["y"])
    res = project.retrain()
    lo, hi = res["gate"]["recent_gain_interval"]
    assert res["rows"]["recent"] == 12 and lo <= 0 < hi and res["gate"]["recent_gain_within_noise"], res["gate"]
    assert "on 12 recent rows: within the noise, too few rows to tell the two apart)" in res["reason"]


def test_feedback_sorted_by_label_still_gives_a_recent_slice_of_every_class(project, tmp_path):
    """A labelling team's file sorted by label: the latest 30% of the feedback is all class 0, where f1_macro
    scores any model answering 0 to everything as a perfect one. The recent slice is then the latest 30% of
    each class's feedback, held out of the challenger's training, and the reason says so."""
    same = world(600, 6)
    same = same.sort_values("y", ascending=False, kind="stable").reset_index(drop=True)  # the 0s come last
    counts = same["y"].value_counts().to_dict()
    assert counts[1] < len(same) * 0.7  # the latest 180 rows (30%) hold class 0 alone
    post_labels(project, tmp_path, serve_stream(project, same), same["y"])
    res = project.retrain()
    expected = {str(c): round(n * 0.3) for c, n in counts.items()}
    # the slice is the split's recent side, so the challenger never trained on it
    from modelloop.data.ingest import ensure_split, load_dataset

    ws = project.workspace
    row, df, _ = load_dataset(ws, res["dataset"])
    side = ensure_split(ws, row, df)
    assert df.loc[side == "recent", "y"].value_counts().to_dict() == {int(c): n for c, n in expected.items()}
    assert set(side[df["_origin"] == "feedback"]) == {"train", "recent"}
    assert res["reason"].endswith(
        "; the latest 180 feedback rows held only class '0', where f1_macro cannot compare models: the recent "
        f"slice is the latest 30% of each class's feedback instead ({expected['0']:,} '0', {expected['1']:,} '1')")
    gate = res["gate"]
    assert gate["judged_on"] == "recent" and gate["recent_slice"]["how"] == "latest_of_each_class", gate
    assert gate["recent_slice"]["classes"] == expected and gate["recent_slice"]["latest_classes"] == {"0": 180}
    assert res["rows"]["recent"] == sum(expected.values()) and gate["recent_gain_interval"] is not None


def test_feedback_of_one_class_lets_the_frozen_holdout_decide(project, tmp_path):
    """Feedback that holds one class alone cannot give a recent slice that compares models: the frozen
    holdout decides (the challenger must beat the champion there), and the reason says why."""
    same = world(700, 7)
    zeros = same[same["y"] == 0].head(300).reset_index(drop=True)
    post_labels(project, tmp_path, serve_stream(project, zeros), zeros["y"])
    res = project.retrain()
    ch, cl = (res[m]["metrics"]["holdout"]["f1_macro"] for m in ("champion", "challenger"))
    gain = cl - ch
    assert res["promoted"] is (gain > 0), (gain, res["reason"])
    verdict = (f"challenger beats the champion there by {gain:+.4f} f1_macro" if gain > 0 else
               f"challenger does not beat the champion there: gain {gain:+.4f} f1_macro (needs > 0 and >= 0.0)")
    assert res["reason"] == ("the recent slice (90 rows) holds only class '0' (so does all the new feedback): "
                             f"f1_macro cannot compare models there, so the frozen holdout decides: {verdict}")
    gate = res["gate"]
    assert gate["judged_on"] == "holdout" and gate["recent_slice"]["classes"] == {"0": 90}, gate
    assert gate["recent_slice"]["compares"] is False and gate["recent_gain_interval"] is None
