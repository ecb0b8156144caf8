"""The whole loop on the bundled example, as a user runs it: `modelloop init --example recommend`, `run`,
a real server's /v1/recommend and /v1/interactions, then `modelloop retrain`, which adds the rated
interactions to a new dataset version and gates the challenger on them."""

from __future__ import annotations

import json

import httpx
import yaml
from clirun import cli
from servers import running

from modelloop.serving import ServeConfig, create_app


def test_init_run_serve_interact_retrain(tmp_path, capsys):
    code, _, err = cli(["init", "shop", "--example", "recommend"], capsys, tmp_path)
    assert code == 0, err
    root = tmp_path / "shop"
    raw = yaml.safe_load((root / "modelloop.yaml").read_text())
    raw["train"] = {"trials": 3}  # the example searches 10 trials in 60 s; three keep the test short
    raw["model"]["models"] = ["popularity", "itemknn", "mf"]
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    code, out, err = cli(["run", "--json"], capsys, root)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["family"] == "recommend" and summary["test_metrics"]["ndcg"] > 0
    assert (root / ".modelloop" / "reports").exists()
    from modelloop.project import Project

    ws = Project.load(str(root / "modelloop.yaml")).workspace
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            stored = 0
            for user in range(12):
                answer = client.post("/v1/recommend", json={"user": f"u{user}", "k": 5}).json()
                for rec in answer["recommendations"][:3]:  # the user rates what was shown to them
                    r = client.post("/v1/interactions", json={"user": f"u{user}", "item": rec["item"], "event": "rating",
                                                              "value": 5, "request_id": answer["request_id"]})
                    assert r.status_code == 201, r.text
                    stored += 1
            r = client.post("/v1/interactions", json={"user": "u1", "item": "i1", "event": "click"})
            # no rating: a model of ratings could never learn it, so it is refused, not acknowledged and dropped
            assert r.status_code == 422 and "body.value: required: this model learns from ratings" in r.text, r.text
            r = client.post("/v1/interactions", json={"user": "u1", "item": "i1", "event": "impression"})
            assert r.status_code == 201, r.text  # shown, not taken: no rating needed (click-through)
    from modelloop.feedback.interactions import append_interaction, read_interactions_log

    assert len(read_interactions_log(ws)[0]) == stored + 1  # the refused click was not stored
    # one stored before the server refused them: retrain counts it, with the reason, never leaves it out silently
    append_interaction(ws, {"user": "u2", "item": "i2", "event": "click", "value": None,
                            "at": "2026-12-06T10:00:00", "request_id": None, "served_by": None})
    code, out, err = cli(["retrain", "--json"], capsys, root)
    assert code == 0, err
    decision = json.loads(out)
    assert decision["added_rows"] == stored
    left_out = decision["feedback_inputs"]
    assert left_out["without_rating"] == 1 and left_out["interactions"] == stored + 2
    assert "1 of the" in left_out["why"] and "carries no rating (value)" in left_out["why"]
    assert decision["rows"]["recent"] >= 1 and decision["rows"]["holdout"] > 0
    for side in ("champion", "challenger"):
        assert {"ndcg", "rmse"} <= set(decision[side]["metrics"]["recent"]), decision[side]
    assert isinstance(decision["promoted"], bool) and decision["reason"]
    code, _, err = cli(["retrain"], capsys, root)  # nothing new since: refused, not a second merge
    assert code == 2 and "no new labeled feedback" in err and "carries no rating" in err  # and why the click is not
    code, _, err = cli(["optimize"], capsys, root)  # nothing to build: one line, exit 2, no traceback
    assert code == 2 and "a recommender has no optimized variants" in err and "Traceback" not in err
