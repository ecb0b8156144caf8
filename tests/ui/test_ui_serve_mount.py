"""``modelloop serve --ui``: the dashboard's pages under /ui of the prediction server, behind the server's
keys, with every serving route as it was."""

from __future__ import annotations

import re
import subprocess
import sys

from servers import free_port
from ui_toy import KEY, wait_http, write_config


def _routes(app) -> set[tuple[str, frozenset]]:
    return {(r.path, frozenset(getattr(r, "methods", None) or ())) for r in app.routes}


def test_ui_mounted_under_ui_with_the_servers_keys(ui_project, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from modelloop.serving import ServeConfig
    from modelloop.dashboard.serve import build_app_with_ui
    from modelloop.serving.launch import build_app

    monkeypatch.setenv("MODELLOOP_API_KEYS", KEY)
    plain = build_app(ui_project.workspace, ServeConfig(), None)
    app = build_app_with_ui(ui_project.workspace, ServeConfig(ui=True), None)
    assert _routes(app) - _routes(plain) == {("/ui", frozenset())}       # only the mount is added
    assert _routes(plain) <= _routes(app)
    with TestClient(plain) as c:
        assert c.get("/ui/").status_code == 404                           # not mounted without --ui
    with TestClient(app, follow_redirects=False) as c:
        assert c.get("/v1/model").status_code == 401                      # the serving routes keep their key
        assert c.get("/v1/model", headers={"Authorization": f"Bearer {KEY}"}).status_code in (200, 503)
        page = c.get("/ui/")
        assert page.status_code == 200 and "toy:" in page.text
        links = set(re.findall(r'(?:href|src|action)="(/[^"#?]*)', page.text))
        assert links and all(link.startswith("/ui/") for link in links), links
        for link in links:
            assert c.get(link).status_code == 200, link
        models = c.get("/ui/models").text
        assert 'class="here"' in models and 'href="/ui/models" class="here"' in models
        assert 'action="/ui/models/promote"' in models and "Read-only" in models
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', models).group(1)
        wrong = c.post("/ui/models/rollback", data={"csrf": csrf, "api_key": "wrong", "confirm": "yes"})
        assert wrong.status_code == 401
        signed = c.post("/ui/login", data={"csrf": csrf, "api_key": KEY, "next": "/ui/jobs"})
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/jobs"
        outside = c.post("/ui/login", data={"csrf": csrf, "api_key": KEY, "next": "//evil.example/"})
        assert outside.headers["location"] == "/ui/"
        assert "Read-only" not in c.get("/ui/models").text                # the session cookie now


def test_ui_serve_command_with_ui_flag(ui_project, monkeypatch) -> None:
    """``modelloop serve --ui --port N`` from the project folder: both the API and /ui on 127.0.0.1."""
    root = write_config(ui_project)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelloop.cli", "serve", "--ui", "--port", str(port)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = wait_http(f"http://127.0.0.1:{port}/ui/retrains", proc)
        assert page.status_code == 200 and "champion kept" in page.text
        assert wait_http(f"http://127.0.0.1:{port}/v1/health").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
