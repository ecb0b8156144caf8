"""Every dashboard page renders from the Project API, in English and Chinese, with data escaped."""

from __future__ import annotations

import re
import time

import pytest
from ui_toy import REQUEST_WITH_FEEDBACK, REQUEST_WITHOUT, XSS

PAGES = ["/", "/models", "/data", "/trace", f"/trace?request_id={REQUEST_WITH_FEEDBACK}", "/serving",
         "/serving?range=30d", "/monitoring"]


@pytest.fixture(scope="module")
def client(ui_project):
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    with TestClient(create_app(ui_project, keys=[])) as c:
        yield c


@pytest.mark.parametrize("path", PAGES)
def test_ui_every_page_renders_and_loads_nothing_from_outside(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    # every stylesheet, script and image comes from the package, not a CDN
    assert not re.search(r'(src|href)="(https?:)?//', r.text)
    css = client.get("/static/style.css")
    assert css.status_code == 200 and ".stage" in css.text


def test_ui_overview_shows_the_loop_and_its_links_resolve(client, ui_project) -> None:
    status = ui_project.status()
    page = client.get("/").text
    prod = status["production"]["version"]
    assert f"toy:{prod}" in page
    assert f"v{status['datasets'][-1]['version']}" in page
    assert "99.79" in page or str(status["datasets"][-1]["quality"]["scores"]["overall"]) in page
    assert "Last retrain decision" in page and "champion kept" in page
    assert XSS not in page and "not better on &lt;script&gt;" in page  # the decision's reason, escaped
    links = set(re.findall(r'href="(/[^"#?]*)', page)) - {"/static/style.css", "/static/favicon.svg"}
    assert {"/data", "/models", "/trace", "/serving", "/monitoring"} <= links
    for link in links:
        assert client.get(link).status_code == 200, link


def test_ui_models_lists_versions_with_family_metrics_aliases(client, ui_project) -> None:
    page = client.get("/models").text
    for m in ui_project.status()["models"]:
        assert f'id="model-{m["version"]}"' in page
    assert "tabular" in page and "production" in page and "roc_auc" in page
    # no key is configured: the page is read-only, no action form is offered
    assert 'action="/models/promote"' not in page


def test_ui_data_lists_versions_and_links_the_profile_report(client, ui_project) -> None:
    page = client.get("/data").text
    ds = ui_project.status()["datasets"][0]
    assert f'id="dataset-{ds["id"]}"' in page and f"<td>{ds['rows']}</td>" in page
    report = client.get(f"/data/{ds['id']}/report")
    assert report.status_code == 200 and "quality" in report.text.lower()
    missing = client.get("/data/nope/report")
    assert missing.status_code == 404 and "modelloop profile" in missing.text


def test_ui_trace_follows_a_request_to_run_dataset_and_feedback(client, ui_project) -> None:
    expected = ui_project.trace(REQUEST_WITH_FEEDBACK)
    page = client.get("/trace", params={"request_id": REQUEST_WITH_FEEDBACK}).text
    assert f"toy:{expected['model']['version']}" in page
    assert expected["run"]["id"] in page and expected["dataset"]["id"] in page
    assert "(file," in page                                           # the feedback that came back
    # the dataset version's source record and its first rows, as stored (the ingest read data.csv)
    source = re.search(r'<dd id="trace-source">(.*?)</dd>', page, re.S).group(1)
    assert "data.csv" in source and source.count("<tr>") == 1 + 5 and "<th>amount</th>" in source
    assert "_row_id" not in source
    other = client.get("/trace", params={"request_id": REQUEST_WITHOUT}).text
    assert "no feedback came back yet" in other
    unknown = client.get("/trace", params={"request_id": "never-logged"})
    assert unknown.status_code == 404 and "not in the prediction log" in unknown.text


def test_ui_language_from_query_cookie_and_accept_language(ui_project) -> None:
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    app = create_app(ui_project, keys=[])
    with TestClient(app) as c:
        assert ">Overview<" in c.get("/").text
        zh = c.get("/models?lang=zh-CN")
        assert "模型" in zh.text and '<html lang="zh-CN">' in zh.text
        assert "模型" in c.get("/models").text                        # remembered in the cookie
        assert "Models" in c.get("/models?lang=en").text
    with TestClient(app) as c:
        assert "概览" in c.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
        assert "Overview" in c.get("/", headers={"Accept-Language": "fr,en;q=0.5,zh;q=0.1"}).text


def test_ui_escapes_a_column_named_script(ui_xss_project) -> None:
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    with TestClient(create_app(ui_xss_project, keys=[])) as c:
        page = c.get("/data")
        trace = c.get("/trace", params={"request_id": XSS})
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and XSS not in page.text
    assert XSS not in trace.text                                     # the echoed request id too


def test_ui_trace_command_answers_what_the_page_shows(ui_project, capsys) -> None:
    """``modelloop trace ID --json`` is the Trace page's call; an id never logged exits 2 with one line."""
    import json

    from clirun import cli
    from ui_toy import write_config

    root = write_config(ui_project)
    code, out, _ = cli(["trace", REQUEST_WITH_FEEDBACK, "--json"], capsys, root)
    assert code == 0 and json.loads(out) == ui_project.trace(REQUEST_WITH_FEEDBACK)
    code, out, err = cli(["trace", "never-logged"], capsys, root)
    assert code == 2 and "not in the prediction log" in err and "Traceback" not in err


def test_ui_search_history_of_a_version(client, ui_project) -> None:
    """Score against trial from the Optuna study the version's MLflow run names, best so far as a line."""
    import optuna

    ws = ui_project.workspace
    names = optuna.get_all_study_names(storage=ws.optuna_url)
    page = client.get("/models/1/search")
    assert page.status_code == 200, page.text
    study = re.search(r"study <code>([^<]+)</code>", page.text).group(1)
    assert study in names
    trials = optuna.load_study(study_name=study, storage=ws.optuna_url).trials
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\w+)</td>", page.text)
    assert [int(n) for n, _ in rows] == [t.number for t in reversed(trials)]
    assert 'id="chart-search"' in page.text and "mlflow ui --backend-store-uri" in page.text
    assert client.get("/models/99/search").status_code == 404
    assert client.get("/models/x/search").status_code == 400
    assert 'href="/models/1/search"' in client.get("/models").text


def test_ui_mlflow_run_link_only_for_an_mlflow_server() -> None:
    """A link to the run in MLflow's UI where the tracking URI is an MLflow server; none for a store or a
    scheme that is not http(s)."""
    from modelloop.dashboard.search_history import mlflow_run_url

    assert mlflow_run_url("http://127.0.0.1:5000/", "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert mlflow_run_url("https://ml.example.com/mlflow", "3", "a/b c") == \
        "https://ml.example.com/mlflow/#/experiments/3/runs/a%2Fb%20c"
    assert mlflow_run_url("sqlite:////tmp/mlflow.db", "3", "abc") is None
    assert mlflow_run_url("javascript:alert(1)", "3", "abc") is None
    assert mlflow_run_url("http://127.0.0.1:5000", None, "abc") is None


@pytest.mark.slow
def test_ui_search_page_links_the_run_on_an_mlflow_server(ui_project) -> None:
    """With ``storage.tracking`` an ``mlflow server`` on 127.0.0.1 (over the project's own store), the search
    page links the run's page on that server, and the page it links answers."""
    import os
    import signal
    import subprocess
    import sys

    import httpx
    from fastapi.testclient import TestClient
    from servers import free_port

    from modelloop.dashboard import create_app
    from modelloop.project import Project

    ws = ui_project.workspace
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", ws.tracking_url,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        cfg = ui_project.config
        on_server = Project(cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"tracking": url})}))
        with TestClient(create_app(on_server, keys=[])) as client:
            page = client.get("/models/1/search").text
        link = re.search(r'<a id="mlflow-run" href="([^"]+)"', page).group(1)
        run_id = ws.catalog.get_model("toy", 1)["run_id"]
        assert link.startswith(url + "/#/experiments/") and link.endswith(f"/runs/{run_id}")
        assert httpx.get(link.split("#")[0], timeout=10).status_code == 200          # MLflow's UI itself
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
