"""The lineage graph (dataset version -> model version -> alias, and the deployment history), the diff of
two dataset versions (schema, rows, quality scores, profile figures) and the comparison of two model
versions (holdout metrics with the change in each metric's direction, parameters that differ)."""

from __future__ import annotations

import re

import pytest
from ui_toy import XSS


def _client(project):
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    return TestClient(create_app(project, keys=[]))


def test_ui_lineage_draws_datasets_models_and_aliases(ui_project) -> None:
    status = ui_project.status()
    with _client(ui_project) as c:
        page = c.get("/lineage").text
        graph = re.search(r'<figure id="lineage-graph">(.*?)</figure>', page, re.S).group(1)
        for d in status["datasets"]:
            assert f'id="lineage-dataset-{d["id"]}"' in graph
        for m in status["models"]:
            assert f'id="lineage-model-{m["version"]}"' in graph
        prod = status["production"]["version"]
        alias = re.search(r'<a href="(/models#model-\d+)"><g id="lineage-alias-production">', graph).group(1)
        assert alias == f"/models#model-{prod}"
        # one edge from the dataset to each model it trained, one from each alias
        assert graph.count("<path") == len(status["models"]) + len({a for m in status["models"] for a in m["aliases"]})
        moves = re.findall(r"<tr><td>[^<]+</td><td><span class=\"alias\">production</span></td><td><a[^>]*>toy:(\d+)",
                           page)
        history = ui_project.workspace.catalog.alias_history("toy", "production")
        assert [int(v) for v in moves] == [d["version"] for d in reversed(history)]
        assert "数据集版本" in c.get("/lineage?lang=zh-CN").text


def test_ui_models_compare_two_versions(ui_project) -> None:
    from modelloop.evaluation.metrics import improvement

    models = {m["version"]: m for m in ui_project.status()["models"]}
    with _client(ui_project) as c:
        page = c.get("/models/compare?a=2&b=1")
        assert page.status_code == 200
        rows = re.findall(r"<tr class=\"(\w*)\"><td>(\w+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>",
                          page.text)
        assert {r[1] for r in rows} == set(models[1]["metrics"])
        for css, name, a, b, change in rows:
            assert a == f"{models[2]['metrics'][name]:.4g}" and b == f"{models[1]['metrics'][name]:.4g}"
            gain = improvement(name, models[2]["metrics"][name], models[1]["metrics"][name])
            assert change == f"{gain:+.4g}" and css == ("added" if gain > 0 else "removed" if gain < 0 else "")
        params = re.search(r'<table id="compare-params">(.*?)</table>', page.text, re.S).group(1)
        assert models[1]["run_id"] in params and models[2]["run_id"] in params    # the runs differ
        missing = c.get("/models/compare?a=1&b=99")
        assert missing.status_code == 404 and "model version &#39;99&#39; does not exist; allowed: 1, 2" in missing.text
        assert c.get("/models/compare?a=x&b=1").status_code == 400
        assert 'href="/models/2/report"' in page.text                   # per-class figures live there
        report = c.get("/models/2/report")
        assert report.status_code == 200 and "toy v2 evaluation" in report.text
        assert c.get("/models/9/report").status_code == 404
        assert "比较两个版本" in c.get("/models/compare?lang=zh-CN").text
        prod = ui_project.status()["production"]["version"]
        other = next(v for v in models if v != prod)
        link = f'href="/models/compare?a={prod}&amp;b={other}"'
        assert link in c.get("/models?lang=en").text                  # each other version vs production


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """Two ingests of a table: the second has 20 more rows, no ``age`` and a column named ``<script>``."""
    from toy import RAW_CONFIG, make_table

    from modelloop.config import parse_config
    from modelloop.project import Project

    root = tmp_path_factory.mktemp("ui-diff")
    project = Project(parse_config(RAW_CONFIG, root=root))
    make_table(n=60).to_csv(root / "data.csv", index=False)
    first = project.ingest()
    project.profile()
    df = make_table(n=80, seed=3).drop(columns=["age"])
    df[XSS] = range(80)
    df.to_csv(root / "data.csv", index=False)
    second = project.ingest()
    project.profile()
    return project, first, second


def test_ui_data_diff_of_two_versions(two_versions) -> None:
    project, first, second = two_versions
    a, b = (d["dataset"]["id"] if "dataset" in d else d["id"] for d in (first, second))
    with _client(project) as c:
        page = c.get(f"/data/diff?a={a}&b={b}")
        default = c.get("/data/diff").text
        zh = c.get(f"/data/diff?a={a}&b={b}&lang=zh-CN").text
        unknown = c.get(f"/data/diff?a={a}&b=nope")
    assert page.status_code == 200, page.text
    schema = re.search(r'<table id="diff-schema">(.*?)</table>', page.text, re.S).group(1)
    assert re.search(r'<tr class="removed"><td>age</td><td>numeric</td><td>—</td>', schema)
    assert '<tr class="added"><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>' in schema and XSS not in page.text
    assert "<td>80 (+20)</td>" in page.text
    profile = re.search(r'<table id="diff-profile">(.*?)</table>', page.text, re.S).group(1)
    assert "<td>amount</td><td>mean</td>" in profile                 # new rows, a new mean
    assert f'value="{a}" selected' in default                         # the two latest by default
    assert "新增" in zh and "删除" in zh
    assert unknown.status_code == 404 and "dataset version &#39;nope&#39; does not exist" in unknown.text


def test_ui_models_show_variants_size_and_latency(two_versions) -> None:
    """An optimized variant (registered as ``optimize`` does: parent_version, info size and latency) is shown
    with its size and latency, linked both ways with its parent, and in the lineage as a dashed edge."""
    from modelloop.catalog import utcnow

    project, first, second = two_versions
    cat = project.workspace.catalog
    dataset = cat.list_datasets("toy")[-1]["id"]
    for version, parent, info in ((1, None, {"task": "binary"}),
                                  (2, 1, {"task": "binary", "variant": "onnx_int8", "size_bytes": 3 * 2**20,
                                          "latency_p50_ms": 0.42})):
        cat.add_run(id=f"run-{version}", project="toy", dataset_id=dataset, config_hash="x", kind="train",
                    params={"best_params": {"num_leaves": 31 + version}}, metrics={}, artifacts={},
                    started_at=utcnow(), ended_at=utcnow())
        cat.add_model(name="toy", version=version, run_id=f"run-{version}", dataset_id=dataset,
                      parent_version=parent, family="tabular", formats={"native": f"models:/toy/{version}"},
                      metrics={"roc_auc": 0.8 + version / 100}, input_schema={"columns": {}}, info=info)
    with _client(project) as c:
        page = c.get("/models").text
        compare = c.get("/models/compare?a=1&b=2").text
        lineage = c.get("/lineage").text
    v1 = re.search(r'<tr id="model-1">(.*?)</tr>', page, re.S).group(1)
    v2 = re.search(r'<tr id="model-2">(.*?)</tr>', page, re.S).group(1)
    assert "size 3 MiB" in v2 and "p50 0.42 ms" in v2 and 'href="/models#model-1"' in v2
    assert 'href="/models#model-2"' in v1 and "(onnx_int8)" in v1
    assert "<td>info.size_bytes</td>" in compare and "<td>params.num_leaves</td>" in compare
    assert 'stroke-dasharray="4 3"' in lineage                          # the variant's edge to its parent
    # a report path outside the project's reports folder is never served
    cat.update_model("toy", 1, info={"task": "binary", "report": "/etc/hostname"})
    with _client(project) as c:
        assert c.get("/models/1/report").status_code == 404


def test_ui_models_compare_gives_every_metric_an_interval(ui_project) -> None:
    """Accuracy (a share of the test rows) at once with its Wilson 95 % interval from the test split's row
    count, as scipy computes it; the other metrics computing, then with bootstrap intervals over the
    version's answers on its test split (the holdout figure inside; accuracy's bootstrap close to Wilson's),
    stored once per version and the same when computed again (fixed seed)."""
    import time

    import sqlalchemy as sa
    from scipy.stats import binomtest

    from modelloop.catalog import drift_days
    from modelloop.dashboard.intervals import INTERVALS_DAY, bootstrap_intervals

    cat = ui_project.workspace.catalog
    models = {m["version"]: m for m in cat.list_models("toy")}
    with cat.tx() as c:
        c.execute(drift_days.delete().where(drift_days.c.day == INTERVALS_DAY))
    with _client(ui_project) as c:
        first = c.get("/models/compare?a=2&b=1&lang=en").text
        for _ in range(360):                        # the child's imports, then 2 x 200 resamples: ~40 s at load 7
            part = c.get("/parts/compare-metrics?a=2&b=1&lang=en")
            if 'id="intervals-pending"' not in part.text:
                break
            time.sleep(0.5)
    assert 'id="intervals-pending"' in first and 'data-refresh="/parts/compare-metrics?a=2&amp;b=1"' in first
    assert part.status_code == 200 and "data-refresh" not in part.text and 'class="error"' not in part.text
    rows = dict(re.findall(r"<tr[^>]*><td>(\w+)</td>.*?<td class=\"interval\">(.*?)</td></tr>", part.text, re.S))
    for side, version in (("A", 2), ("B", 1)):
        n = cat.list_splits(models[version]["dataset_id"])[0]["counts"]["test"]
        correct = round(models[version]["metrics"]["accuracy"] * n)
        ci = binomtest(correct, n).proportion_ci(method="wilson")
        assert f'<span class="wilson">{side} [{ci.low:.3f}, {ci.high:.3f}] (n {n})</span>' in rows["accuracy"]
        assert f'<span class="wilson">{side}' in first                 # Wilson's needs no computation
        with cat.tx() as c:
            stored = c.execute(sa.select(drift_days.c.figures).where(
                drift_days.c.day == INTERVALS_DAY, drift_days.c.version == version)).scalar_one()
        assert stored["n"] == n and stored["seed"] == 0 and stored["resamples"] == 200
        boot = stored["metrics"]["accuracy"]
        assert abs(boot["low"] - ci.low) < 0.05 and abs(boot["high"] - ci.high) < 0.05
        for metric, value in models[version]["metrics"].items():
            if metric == "accuracy" or metric not in stored["metrics"]:
                continue
            low, high = stored["metrics"][metric]["low"], stored["metrics"][metric]["high"]
            assert low <= value <= high and low < high, (metric, value, low, high)
            assert f'<span class="bootstrap">{side} [{low:.3f}, {high:.3f}] (n {n})</span>' in rows[metric]
    assert {"f1_macro", "roc_auc", "log_loss"} <= set(stored["metrics"])
    assert bootstrap_intervals(ui_project, models[1]) == stored                # version 1's, again: the same
    assert "bootstrap" in part.text and "200 resamples" in part.text
