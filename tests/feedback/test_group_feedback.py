"""data.group through the loop: the frozen test split holds whole groups, and a feedback row of a group on
the test side joins the test side at retrain instead of teaching the challenger the group it is scored on."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pandas as pd

from modelloop import Project, parse_config
from modelloop.data.ingest import split_key
from modelloop.data.snapshot import ROW_ID
from modelloop.registry import load_model, resolve_model


def _cards(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    card = rng.integers(0, 60, n)
    x1 = rng.normal(size=n) + (card % 3 == 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x1 - 1)))).astype(int)
    return pd.DataFrame({"x1": x1, "card": [f"card{c:02d}" for c in card], "y": y})


def _serve_and_label(p: Project, df: pd.DataFrame, tmp_path) -> None:
    """What the server logs for each request (production's answer), then the labels of them all."""
    ws = p.workspace
    row = resolve_model(ws)
    model = load_model(ws, row)
    X = df.drop(columns=["y"])
    labels = model.predict(X)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ids = [uuid.uuid4().hex for _ in range(len(df))]
    ws.catalog.add_predictions([{"request_id": rid, "name": row["name"], "version": row["version"],
                                 "at": now + dt.timedelta(milliseconds=i), "inputs": rec,
                                 "output": {"label": int(labels[i])}, "latency_ms": 1.0}
                                for i, (rid, rec) in enumerate(zip(ids, json.loads(X.to_json(orient="records")),
                                                                   strict=True))])
    f = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "label": df["y"]}).to_csv(f, index=False)
    p.feedback(str(f))


def _sides(p: Project, dataset: dict) -> pd.DataFrame:
    from modelloop.data.ingest import load_dataset

    ws = p.workspace
    _, df, _ = load_dataset(ws, dataset["id"])
    split = pd.read_parquet(ws.catalog.get_split(dataset["id"], split_key(ws.config))["path"])
    return df.merge(split, on=ROW_ID)


def _project(tmp_path) -> Project:
    """900 transactions of 60 cards (``data.group: card``), ingested and trained."""
    _cards(900, 0).to_csv(tmp_path / "d.csv", index=False)
    raw = {"name": "cards", "task": "classification",
           "data": {"source": "d.csv", "target": "y", "group": "card", "columns": {"card": "categorical"}},
           "train": {"trials": 2, "cv_folds": 2, "families": ["linear"], "ensemble": False, "stack": False},
           "retrain": {"min_new_labels": 10}}
    p = Project(parse_config(raw, root=tmp_path))
    p.run()
    return p


def test_feedback_of_a_test_group_is_tested_not_trained_on(tmp_path):
    p = _project(tmp_path)
    first = p.status()["datasets"][0]
    frozen = _sides(p, first)
    test_cards = set(frozen["card"][frozen["split"] == "test"])
    assert test_cards and not test_cards & set(frozen["card"][frozen["split"] == "train"])
    settings = p.workspace.catalog.get_split(first["id"], split_key(p.workspace.config))["settings"]
    assert settings["groups"] == {"column": "card", "train": 60 - len(test_cards), "test": len(test_cards), "both": 0}

    _serve_and_label(p, _cards(300, 1), tmp_path)
    res = p.retrain()
    merged = _sides(p, p.status()["datasets"][-1])
    new = merged[merged["_origin"] == "feedback"]
    of_test_cards = new[new["card"].isin(test_cards)]
    assert len(of_test_cards) and set(of_test_cards["split"]) <= {"test", "recent"}
    assert "test" in set(of_test_cards["split"])
    trained = merged[merged["split"] == "train"]
    assert not set(trained["card"]) & test_cards  # the challenger learnt no test card
    assert res["rows"]["holdout"] == int((frozen["split"] == "test").sum()) + int((of_test_cards["split"] == "test").sum())
    stored = p.workspace.catalog.get_split(p.status()["datasets"][-1]["id"], split_key(p.workspace.config))
    assert stored["settings"]["feedback_to_test"] == int((of_test_cards["split"] == "test").sum())


def _gate_groups(merged: pd.DataFrame) -> tuple[set, set]:
    """The cards of the rows the challenger trained on that the champion did not (new feedback on the
    train side), and the cards of the rows the gate judges it on (every recent row)."""
    fresh = merged[(merged["_origin"] == "feedback") & (merged["split"] == "train")]
    return set(fresh["card"]), set(merged["card"][merged["split"] == "recent"])


def test_the_recent_slice_takes_whole_groups(tmp_path):
    """A card's older feedback rows trained the challenger while its newer ones were in the recent slice,
    which then judged the challenger on cards it had learnt and the champion had not. The slice takes whole
    cards now (latest first). The next retrain returns the first slice's rows to training (feedback no later
    model learnt), but those of a card the new slice takes: a card's rows stay on one side."""
    p = _project(tmp_path)
    _serve_and_label(p, _cards(300, 1), tmp_path)
    res = p.retrain()
    if not res["promoted"]:  # the next retrain starts from this one's version
        p.promote(f"cards:{res['challenger']['model']['version']}")
    merged = _sides(p, p.status()["datasets"][-1])
    trained, judged = _gate_groups(merged)
    assert trained and judged and not trained & judged
    new = merged[merged["_origin"] == "feedback"]
    assert set(new["split"]) <= {"train", "recent", "test"} and "recent" in set(new["split"])
    groups = res["gate"]["recent_slice"]["groups"]
    assert groups == {"column": "card", "groups": len(judged), "feedback_groups": new["card"].nunique(),
                      "held_by_earlier_slice": 0}, groups
    assert res["rows"]["recent"] >= round(0.3 * len(new))  # whole cards: at least the share asked for
    assert f"the recent slice holds whole 'card' groups, latest feedback first ({len(judged)} of the new " \
           f"feedback's {groups['feedback_groups']})" in res["reason"], res["reason"]

    # the next feedback: the first slice's rows return to training, but those of a card the new slice takes
    first = set(merged[ROW_ID][merged["split"] == "recent"])
    _serve_and_label(p, _cards(300, 2), tmp_path)
    res2 = p.retrain()
    merged2 = _sides(p, p.status()["datasets"][-1])
    fresh = ~merged2[ROW_ID].isin(set(merged[ROW_ID]))
    new_slice = set(merged2["card"][fresh & (merged2["split"] == "recent")])
    was_first = merged2[merged2[ROW_ID].isin(first)]
    kept = was_first[was_first["card"].isin(new_slice)]
    back = was_first[~was_first["card"].isin(new_slice)]
    assert len(kept) and len(back) and set(kept["split"]) == {"recent"}
    assert (back["split"] == "train").any() and set(back["split"]) <= {"train", "test"}
    test_cards = set(merged2["card"][~merged2["_origin"].eq("feedback") & (merged2["split"] == "test")])
    assert set(back["card"][back["split"] == "test"]) <= test_cards  # a test card's rows join the holdout
    trained2 = set(merged2["card"][(merged2["split"] == "train") & (fresh | merged2[ROW_ID].isin(first))])
    assert trained2 and not trained2 & set(merged2["card"][merged2["split"] == "recent"]) and not trained2 & test_cards
    assert set(merged2["split"][~merged2["_origin"].eq("feedback")]) <= {"train", "test"}  # frozen test kept:
    base = merged[~merged["_origin"].eq("feedback")].set_index(ROW_ID)["split"]
    assert merged2[~merged2["_origin"].eq("feedback")].set_index(ROW_ID)["split"].sort_index().equals(base.sort_index())
    slice2 = res2["gate"]["recent_slice"]
    assert slice2["earlier_slices"] == {"rows": len(first), "kept": len(kept),
                                        "returned_to_training": int((back["split"] == "train").sum()),
                                        "to_test": int((back["split"] == "test").sum())}, slice2
    assert slice2["groups"]["held_by_earlier_slice"] == kept["card"].nunique()
    assert res2["rows"]["recent"] == int((fresh & (merged2["split"] == "recent")).sum()) + len(kept)
