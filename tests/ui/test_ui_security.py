"""The dashboard's guards: API keys (read-only without one, 401 with ui.require_key_to_read), CSRF
tokens on every action, a confirm step before promote/rollback, and the real server on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
from servers import free_port, running
from ui_toy import KEY, wait_http, write_config


def _client(project, **kw):
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    return TestClient(create_app(project, **kw), follow_redirects=False)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_ui_require_key_to_read_answers_401_until_signed_in(ui_project) -> None:
    with _client(ui_project, keys=[KEY], require_key_to_read=True) as c:
        for path in ("/", "/models", "/data", "/trace", "/serving", "/monitoring", "/lineage"):
            assert c.get(path).status_code == 401, path
        assert c.get("/", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/static/style.css").status_code == 200
        sign_in = c.get("/login?next=/models")
        wrong = c.post("/login", data={"csrf": _csrf(sign_in.text), "api_key": "nope", "next": "/models"})
        assert wrong.status_code == 401
        ok = c.post("/login", data={"csrf": _csrf(sign_in.text), "api_key": KEY, "next": "/models"})
        assert ok.status_code == 303 and ok.headers["location"] == "/models"
        assert c.get("/models").status_code == 200                  # the session cookie now
        for outside in ("//evil.example/", "/\\evil.example", "https://evil.example/"):
            r = c.post("/login", data={"csrf": _csrf(sign_in.text), "api_key": KEY, "next": outside})
            assert r.status_code == 303 and r.headers["location"] == "/", outside
        assert KEY not in str(c.cookies.items())                      # the key itself is not in it


def test_ui_read_only_without_a_key_and_actions_refused(ui_project) -> None:
    before = ui_project.status()["production"]["version"]
    with _client(ui_project, keys=[KEY]) as c:
        page = c.get("/models")
        assert page.status_code == 200 and "Read-only" in page.text
        r = c.post("/models/promote", data={"csrf": _csrf(page.text), "version": "2", "confirm": "yes"})
        assert r.status_code == 401 and "API key" in r.text
        r = c.post("/models/rollback", data={"csrf": _csrf(page.text), "api_key": "wrong", "confirm": "yes"})
        assert r.status_code == 401
    with _client(ui_project, keys=[]) as c:                          # no key configured: no actions at all
        assert 'action="/models/promote"' not in c.get("/models").text
        page = c.get("/login")                                        # a page with a form, for its token
        r = c.post("/models/promote", data={"csrf": _csrf(page.text), "version": "2", "confirm": "yes"})
        assert r.status_code == 403 and "MODELLOOP_API_KEYS" in r.text
    assert ui_project.status()["production"]["version"] == before


def test_ui_action_without_or_with_a_wrong_csrf_token_is_refused(ui_project) -> None:
    before = ui_project.status()["production"]["version"]
    auth = {"Authorization": f"Bearer {KEY}"}
    with _client(ui_project, keys=[KEY]) as c:
        c.get("/models")
        for form in ({"version": "2", "confirm": "yes"}, {"csrf": "0" * 64, "version": "2", "confirm": "yes"}):
            r = c.post("/models/promote", data={**form, "api_key": KEY}, headers=auth)
            assert r.status_code == 403 and "CSRF" in r.text
    assert ui_project.status()["production"]["version"] == before


def test_ui_promote_and_rollback_with_a_key_after_confirming(ui_project) -> None:
    status = ui_project.status()
    before = status["production"]["version"]
    other = next(m["version"] for m in status["models"] if m["version"] != before)
    with _client(ui_project, keys=[KEY]) as c:
        page = c.get("/models").text
        assert f'name="version" value="{other}"' in page
        ask = c.post("/models/promote", data={"csrf": _csrf(page), "version": str(other), "api_key": KEY})
        assert ask.status_code == 200 and "Point production at this version?" in ask.text
        assert KEY not in ask.text                                    # the confirm form does not echo the key
        assert ui_project.status()["production"]["version"] == before  # nothing happens before confirming
        done = c.post("/models/promote", data={"csrf": _csrf(ask.text), "version": str(other), "confirm": "yes"})
        assert done.status_code == 303, done.text
        assert ui_project.status()["production"]["version"] == other
        assert f"promote:{other}" in c.get(done.headers["location"]).text
        page = c.get("/models").text
        ask = c.post("/models/rollback", data={"csrf": _csrf(page)})
        back = c.post("/models/rollback", data={"csrf": _csrf(ask.text), "confirm": "yes"})
        assert back.status_code == 303
    assert ui_project.status()["production"]["version"] == before
    aliases = {m["version"]: m["aliases"] for m in ui_project.status()["models"]}
    assert aliases[before] == ["production"] and aliases[other] == []


def test_ui_command_serves_on_127_0_0_1(ui_project) -> None:
    """``modelloop ui --port N`` from the project folder: a real server bound to loopback."""
    root = write_config(ui_project)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelloop.cli", "ui", "--port", str(port)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = wait_http(f"http://127.0.0.1:{port}/", proc)
        assert page.status_code == 200 and "toy:" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_ui_real_uvicorn_keeps_csrf_and_key_over_http(ui_project) -> None:
    from modelloop.dashboard import create_app

    with running(create_app(ui_project, keys=[KEY], require_key_to_read=True), ready=False) as url:
        assert wait_http(url + "/static/style.css").status_code == 200
        assert httpx.get(url + "/").status_code == 401
        r = httpx.get(url + "/models", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie

