"""The Retrains page: every retrain decision, newest first, with both models' figures on the recent slice
and the frozen holdout, the outcome and its reason; linked from the Overview; zh-CN; data escaped."""

from __future__ import annotations

import re

from ui_toy import XSS


def _decision(cat, *, promoted: bool, reason: str, champion: float, challenger: float) -> None:
    """A decision as feedback/retrain.py records one (its triggers, both models' figures)."""
    def side(version: int, auc: float) -> dict:
        return {"model": {"name": "toy", "version": version},
                "metrics": {"recent": {"roc_auc": auc}, "holdout": {"roc_auc": auc - 0.01}}}

    cat.add_decision(name="toy", trigger={"fired": [f"drift in {XSS}"], "new_labels": 3}, dataset_id="d1",
                     champion=side(1, champion), challenger=side(2, challenger), promoted=promoted, reason=reason)


def test_ui_retrains_lists_every_decision_newest_first_escaped(tmp_path) -> None:
    from fastapi.testclient import TestClient
    from toy import RAW_CONFIG

    from modelloop.config import parse_config
    from modelloop.dashboard import create_app
    from modelloop.project import Project

    project = Project(parse_config(RAW_CONFIG, root=tmp_path))
    with TestClient(create_app(project, keys=[])) as c:
        assert "No retrain decision yet" in c.get("/retrains").text
        _decision(project.workspace.catalog, promoted=False, reason="first: challenger not better",
                  champion=0.8125, challenger=0.7031)
        _decision(project.workspace.catalog, promoted=True, reason=f"second: beats it on {XSS}",
                  champion=0.7422, challenger=0.9375)
        page = c.get("/retrains")
        zh = c.get("/retrains?lang=zh-CN").text
    assert page.status_code == 200
    text = page.text
    assert text.index("second: beats") < text.index("first: challenger")          # newest first
    rows = re.findall(r'<tr class="decision.*?</tr>', text, re.S)
    assert len(rows) == 2 and "challenger promoted" in rows[0] and "champion kept" in rows[1]
    for figure in ("0.9375", "0.9275", "0.7422", "0.7322", "0.8125", "0.7031"):   # recent and holdout, both
        assert figure in text, figure
    assert "recent slice" in text and "frozen holdout" in text and "toy:2" in text
    assert XSS not in text and "drift in &lt;script&gt;" in text and "on &lt;script&gt;" in text
    assert "重训" in zh and "冻结留出集" in zh and XSS not in zh
    assert [d["reason"] for d in project.retrain_decisions()] == [f"second: beats it on {XSS}",
                                                                 "first: challenger not better"]


def test_ui_overview_feedback_stage_links_to_retrains(ui_project) -> None:
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    with TestClient(create_app(ui_project, keys=[])) as c:
        overview = c.get("/").text
        stage = re.search(r'id="stage-retrain".*?</li>', overview, re.S).group(0)
        assert 'href="/retrains"' in stage
        page = c.get("/retrains").text
    last = ui_project.status()["last_retrain"]
    assert last == ui_project.retrain_decisions()[0]
    assert "champion kept" in page and "not better on &lt;script&gt;" in page and XSS not in page


def test_ui_retrains_leads_with_the_projects_metric_and_folds_the_rest(tmp_path) -> None:
    """Each model's train.metric on both slices first; its other figures (ten a slice for a classifier)
    folded under 'all figures'."""
    from fastapi.testclient import TestClient
    from toy import RAW_CONFIG

    from modelloop.config import parse_config
    from modelloop.dashboard import create_app
    from modelloop.project import Project

    project = Project(parse_config({**RAW_CONFIG, "task": "classification", "train": {**RAW_CONFIG["train"], "metric": "roc_auc"}},
                                   root=tmp_path))
    _decision(project.workspace.catalog, promoted=True, reason="beats it", champion=0.7422, challenger=0.9375)
    with TestClient(create_app(project, keys=[])) as c:
        row = re.findall(r'<tr class="decision.*?</tr>', c.get("/retrains").text, re.S)[0]
        zh = c.get("/retrains?lang=zh-CN").text
    folded = re.findall(r"<details>.*?</details>", row, re.S)
    lead = re.sub(r"<details>.*?</details>", "", row, flags=re.S)
    for figure in ("0.7422", "0.7322", "0.9375", "0.9275"):  # champion and challenger, recent and holdout
        assert f'<b class="metric">roc_auc = {figure}</b>' in lead, figure
    assert '<span class="metric">' not in lead and len(folded) == 2 and "all figures" in folded[1]
    assert '<span class="metric">roc_auc = 0.9375</span>' in folded[1]
    assert "全部指标" in zh
