"""Serving a recommender through a real server: /v1/recommend (top k, fallback, filters, k bounds),
/v1/predict on (user, item) records (the training rows answered as offline), /v1/interactions (durable
before 201, tied to issued request ids), all in /openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

import pytest
from servers import running

from modelloop.feedback.interactions import interactions_path, read_interactions_log
from modelloop.serving import ServeConfig, create_app


@pytest.fixture(scope="module")
def served(clicks):
    project, summary = clicks
    ws = project.workspace
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0, max_k=20), api_keys=[])) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield ws, client


def _native(ws):
    from modelloop.families import family_of
    from modelloop.registry import resolve_model

    row = resolve_model(ws, None)
    return family_of(row).load(ws, row)


def test_a_known_user_gets_k_unseen_items_best_first(served):
    ws, client = served
    model = _native(ws)
    user = str(model.users_[0])
    r = client.post("/v1/recommend", json={"user": user, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    items = [x["item"] for x in body["recommendations"]]
    scores = [x["score"] for x in body["recommendations"]]
    assert len(items) == 5 and scores == sorted(scores, reverse=True) and "fallback" not in body
    assert body["recommendations"] == model.recommend(user, 5)[0]  # the server's precomputed rows = offline
    assert not set(items) & {str(model.items_[p]) for p in model.seen(0)}
    assert len(body["request_id"]) == 40 and body["model"]["name"] == "shop"
    seen = client.post("/v1/recommend", json={"user": user, "k": 20, "exclude_seen": False}).json()
    assert {str(model.items_[p]) for p in model.seen(0)} & {x["item"] for x in seen["recommendations"]}
    excluded = client.post("/v1/recommend", json={"user": user, "k": 5, "exclude": items[:2]}).json()
    assert not set(items[:2]) & {x["item"] for x in excluded["recommendations"]}


def test_an_unknown_user_gets_the_popular_items_and_is_told(served):
    ws, client = served
    model = _native(ws)
    body = client.post("/v1/recommend", json={"user": "someone-new", "k": 3}).json()
    assert body["fallback"] == "popular"
    top = np.argsort(-model.counts_, kind="stable")[:3]
    assert [x["item"] for x in body["recommendations"]] == [str(model.items_[p]) for p in top]


def test_a_filter_keeps_only_items_with_that_feature(served):
    ws, client = served
    data = pd.read_csv(ws.config.root / "ratings.csv")
    category = data["category"].iloc[0]
    body = client.post("/v1/recommend", json={"user": "u1", "k": 10, "filter": {"category": category}}).json()
    kinds = dict(zip(data["item"], data["category"], strict=False))
    assert body["recommendations"] and {kinds[x["item"]] for x in body["recommendations"]} == {category}
    bad = client.post("/v1/recommend", json={"user": "u1", "filter": {"colour": "red"}})
    assert bad.status_code == 422 and bad.json()["message"].startswith("body.filter.colour: not an item feature")


@pytest.mark.parametrize("k", [0, -3, 21])
def test_k_outside_one_to_max_k_is_a_422_naming_k(served, k):
    _, client = served
    r = client.post("/v1/recommend", json={"user": "u1", "k": k})
    assert r.status_code == 422
    assert r.json()["message"] == f"body.k: must be from 1 to 20 (serve.max_k), got {k}"


def test_malformed_bodies_are_422_naming_the_field(served):
    _, client = served
    r = client.post("/v1/recommend", json={"user": {"id": 1}})  # one clause for the union, not one a member
    assert r.status_code == 422 and r.json()["message"] == \
        'body.user: input should be a string or an integer, got {"id": 1}'
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "user"]]
    r = client.post("/v1/recommend", json={"user": "u1", "kk": 3})
    assert r.status_code == 422 and "body.kk: unknown field (did you mean 'k'?)" in r.json()["message"]
    r = client.post("/v1/interactions", json={"user": "u1", "item": "i1", "event": "rating", "value": "great"})
    assert r.status_code == 422 and r.json()["message"] == 'body.value: input should be a valid number, got "great"'


def test_predict_answers_the_training_rows_as_offline(served):
    ws, client = served
    model = _native(ws)
    rows = pd.read_csv(ws.config.root / "ratings.csv").head(30)
    records = json.loads(rows.to_json(orient="records"))
    r = client.post("/v1/predict", json={"records": records})
    assert r.status_code == 200, r.text
    served_scores = [p["score"] for p in r.json()["predictions"]]
    np.testing.assert_allclose(served_scores, model.predict(rows), atol=1e-9)


def test_both_routes_are_in_the_openapi_spec(served):
    _, client = served
    paths = client.get("/openapi.json").json()["paths"]
    assert "k" in paths["/v1/recommend"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "request_id" in json.dumps(paths["/v1/interactions"]["post"]["requestBody"])


def test_an_interaction_is_on_disk_before_201_and_needs_an_issued_request_id(served):
    ws, client = served
    rid = client.post("/v1/recommend", json={"user": "u2", "k": 3}).json()["request_id"]
    before = len(read_interactions_log(ws)[0])
    r = client.post("/v1/interactions", json={"user": "u2", "item": "i5", "event": "click", "request_id": rid})
    assert r.status_code == 201, r.text
    stored, torn = read_interactions_log(ws)
    assert torn == 0 and len(stored) == before + 1
    assert stored[-1]["request_id"] == rid and stored[-1]["served_by"]["name"] == "shop"
    unknown = client.post("/v1/interactions", json={"user": "u2", "item": "i5", "request_id": "f" * 40})
    assert unknown.status_code == 404 and "request_id" in unknown.json()["detail"]
    assert len(read_interactions_log(ws)[0]) == before + 1 and interactions_path(ws).exists()


def test_monitor_reports_click_through_coverage_and_new_users(served):
    ws, client = served
    from modelloop.feedback.monitor import monitor

    answers = [client.post("/v1/recommend", json={"user": f"u{n % 50}" if n % 2 else f"stranger{n}", "k": 4}).json()
               for n in range(120)]
    for a in answers[1:40:4]:  # ten clicks on the first item shown
        r = client.post("/v1/interactions", json={"user": "u1", "item": a["recommendations"][0]["item"],
                                                   "request_id": a["request_id"]})
        assert r.status_code == 201
    # an impression is no click; naming the last answer, it also flushes the prediction log (written every 200 ms)
    shown = client.post("/v1/interactions", json={"user": "u1", "item": answers[-1]["recommendations"][1]["item"],
                                                  "event": "impression", "request_id": answers[-1]["request_id"]})
    assert shown.status_code == 201
    report = monitor(ws, window=120, notify=False)
    section = report["drift"]["recommendations"]
    assert section["served"] == 120 and section["items_shown"] == 480
    assert section["click_through"] == pytest.approx(10 / 120, abs=1e-4)
    assert section["fallback_share"] == pytest.approx(0.5) and section["new_users"] == pytest.approx(0.5)
    assert 0 < section["coverage"] <= 1
    assert report["serving"]["served"] == 120 and report["serving"]["fallback_share"] == pytest.approx(0.5)
    assert report["drift"]["features"]["user"]["drifted"]  # half the users are new: drift
    assert "item" in report["drift"]["features"]
    page = Path(report["report"]).read_text()  # the HTML report shows the live figures, not only --json
    assert "Served recommendations" in page and "<td>click through</td><td>0.0833</td>" in page
    assert f"<td>coverage</td><td>{section['coverage']:.4f}</td>" in page


def test_both_routes_need_the_api_key_when_one_is_configured(clicks):
    project, _ = clicks
    app = create_app(project.workspace, config=ServeConfig(reload_poll_seconds=0), api_keys=["s3cret"])
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for path, body in (("/v1/recommend", {"user": "u1"}), ("/v1/interactions", {"user": "u1", "item": "i1"})):
            refused = client.post(path, json=body)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
            ok = client.post(path, json=body, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code in (200, 201), ok.text


def test_retrain_learns_what_users_took_not_what_they_were_shown(served):
    ws, _ = served
    model = _native(ws)
    at = "2026-12-05T10:00:00"
    rows = model.interaction_rows([{"user": 7, "item": "i3", "event": "click", "at": at, "request_id": None},
                                   {"user": "u7", "item": "i4", "event": "impression", "at": at, "request_id": None}])
    assert rows[["user", "item"]].values.tolist() == [["7", "i3"]]  # ids as text; the impression is not learned
    assert rows["_request_id"].iloc[0].startswith("ix:") and rows["ts"].iloc[0] == "2026-12-05 10:00"


@pytest.mark.parametrize("fixture", ["clicks", "ratings"])
def test_the_ranked_lists_answer_as_scoring_the_whole_catalog(request, fixture):
    """``precompute``'s lists (what the server reads) give every training user, and an unknown one, the
    same items and scores as scoring the whole catalog, with exclude and filter, also when a short list
    runs out (then the catalog is scored); the popularity model's many ties are ordered alike."""
    ws = request.getfixturevalue(fixture)[0].workspace
    listed, scored = _native(ws), _native(ws)
    assert listed.precompute(keep=6) and getattr(scored, "ranked_", None) is None
    category = next(iter(listed.features_["category"].values())) if "category" in listed.features_ else None
    for user in [*listed.users_.tolist(), "someone-new", 12345]:
        for k in (0, 1, 5, 6, 8, len(listed.items_) + 3):
            for exclude in ([], [listed.items_[0], str(listed.items_[7]), "not-an-item"]):
                for exclude_seen in (True, False):
                    args = {"exclude_seen": exclude_seen, "exclude": exclude}
                    assert listed.recommend(user, k, **args) == scored.recommend(user, k, **args), (user, k, args)
        if category is not None:
            for k in (1, 5, len(listed.items_)):
                for where in ({"category": category}, {"category": "no such category"}):
                    args = {"where": where, "exclude": [listed.items_[2]]}
                    assert listed.recommend(user, k, **args) == scored.recommend(user, k, **args), (user, k, args)
    assert listed.ranked(0, 3) is not None and listed.ranked(0, 40) is None  # read, and run out: scored


def test_the_served_answers_are_the_offline_ones_for_every_training_user(served):
    ws, client = served
    model = _native(ws)
    for user in [*model.users_.tolist(), "someone-new"]:
        for body in ({"user": user, "k": 5}, {"user": user, "k": 20, "exclude": [str(model.items_[1])]}):
            got = client.post("/v1/recommend", json=body).json()
            assert got["recommendations"] == model.recommend(user, body["k"], exclude=body.get("exclude", ()))[0]


def test_a_model_of_ratings_refuses_an_interaction_it_could_never_learn(ratings):
    """A click without a value answered 201 and retrain then left it out without a word: a model of ratings
    now refuses it (422 naming value and what to send) and stores nothing; a rating, and an impression
    (click-through, never learned), are still stored. The clicks model still takes a click without a value
    (``test_an_interaction_is_on_disk_before_201_and_needs_an_issued_request_id``)."""
    project, _ = ratings
    ws = project.workspace
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        before = len(read_interactions_log(ws)[0])
        for body in ({"user": "u1", "item": "i1"}, {"user": "u1", "item": "i1", "event": "rating"},
                     {"user": "u1", "item": "i1", "event": "purchase", "value": None}):
            r = client.post("/v1/interactions", json=body)
            assert r.status_code == 422, (body, r.text)
            problem = r.json()["detail"][0]
            assert problem["loc"] == ["body", "value"] and problem["msg"].startswith(
                "body.value: required: this model learns from ratings (data.rating 'rating'); send the rating")
            assert "or event dismiss, impression, skip for an item shown and not taken" in problem["msg"]
        assert len(read_interactions_log(ws)[0]) == before  # nothing acknowledged, nothing stored
        for body in ({"user": "u1", "item": "i1", "event": "rating", "value": 4},
                     {"user": "u1", "item": "i2", "event": "impression"}):
            assert client.post("/v1/interactions", json=body).status_code == 201, body
        stored = read_interactions_log(ws)[0][before:]
        assert [(x["event"], x["value"]) for x in stored] == [("rating", 4.0), ("impression", None)]
        model = _native(ws)
        assert model.interaction_note(stored) == {}  # all of it is learned or meant for click-through
        old = {"user": "u3", "item": "i3", "event": "click", "value": None}  # logged before the refusal
        note = model.interaction_note([*stored, old])
        assert note["without_rating"] == 1 and note["interactions"] == 3 and "data.rating 'rating'" in note["why"]
