"""`modelloop monitor` on a recommender whose log names its own columns (customer, book, not the example's
user, item): the drift table listed book and customer (the generic comparison of logged ids, which the
/v1/recommend requests do not carry) and beside them item and user (the popularity drift and the new-user
share), two names that are nowhere in the team's table. The family's comparisons now carry the columns'
names and replace the generic ones."""

from __future__ import annotations

import httpx
from servers import running

from modelloop.serving import ServeConfig, create_app


def test_the_popularity_and_new_user_drift_carry_the_tables_own_column_names(tmp_path):
    from modelloop.config import parse_config
    from modelloop.examples.recommend import generate_interactions
    from modelloop.feedback.monitor import monitor
    from modelloop.project import Project

    log = generate_interactions(users=40, items=30, per_user=8, seed=1).rename(columns={"user": "customer",
                                                                                      "item": "book"})
    log.to_csv(tmp_path / "log.csv", index=False)
    raw = {"name": "books", "task": "recommendation", "data": {"source": "log.csv", "user": "customer", "item": "book"},
           "model": {"k": 5, "models": ["popularity"]}, "train": {"trials": 1}}
    project = Project(parse_config(raw, root=tmp_path))
    project.ingest()
    project.train()
    ws = project.workspace
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            answers = [client.post("/v1/recommend", json={"user": f"u{n % 40}" if n % 2 else f"newcomer{n}",
                                                          "k": 3}).json() for n in range(120)]
            for a in answers[:20] + answers[-1:]:  # naming the last answer also flushes the prediction log
                assert client.post("/v1/interactions", json={"user": "u1", "item": a["recommendations"][0]["item"],
                                                             "request_id": a["request_id"]}).status_code == 201
    features = monitor(ws, window=120, notify=False)["drift"]["features"]  # 100 requests at least: drift
    assert {"user", "item"}.isdisjoint(features), sorted(features)
    assert {"customer", "book"} <= set(features)
    assert features["customer"]["drifted"]  # half the requests come from customers the model never saw
