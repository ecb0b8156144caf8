"""What the dashboard computes in the background, and how a page shows it without a reload: the catalog's
claims (SQLite and PostgreSQL) that let one process compute a thing, the page parts that
``static/refresh.js`` swaps in (guarded and escaped like the pages), a live-metric failure shown as an
error, and ``modelloop ui`` stopped while it computes."""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys

import pytest
from servers import free_port
from traffic import monitoring_settled as _settled
from ui_toy import KEY, XSS, wait_http, write_config


def test_catalog_claims_one_owner_at_a_time_and_a_dead_ones_lapses(store_url) -> None:
    import sqlalchemy as sa

    from modelloop.catalog import SCHEMA_VERSION, Catalog, claims, meta

    cat = Catalog(store_url)
    assert cat.claim("drift:toy:1:2026-01-01:x", "a", 600)
    assert not cat.claim("drift:toy:1:2026-01-01:x", "b", 600)          # held by a
    assert cat.claim("drift:toy:1:2026-01-02:x", "b", 600)              # another thing
    cat.release("drift:toy:1:2026-01-01:x", "b")                        # not b's: kept
    assert not cat.claim("drift:toy:1:2026-01-01:x", "b", 600)
    cat.release("drift:toy:1:2026-01-01:x", "a")
    assert cat.claim("drift:toy:1:2026-01-01:x", "b", 600)
    with cat.tx() as c:                                                  # b took it in 2000 and never gave it back
        c.execute(claims.update().values(at=dt.datetime(2000, 1, 1)))
    assert not cat.claim("drift:toy:1:2026-01-01:x", "c", 40 * 365 * 86400)     # not dead for this long
    assert cat.claim("drift:toy:1:2026-01-01:x", "c", 600)               # taken over
    assert cat.claim_holder("drift:toy:1:2026-01-01:x") == "c" and cat.claim_holder("nothing") is None
    assert not cat.take_over("drift:toy:1:2026-01-01:x", "b", "d")           # b no longer holds it
    assert cat.take_over("drift:toy:1:2026-01-01:x", "c", "d")               # c died (its caller knows)
    assert cat.claim_holder("drift:toy:1:2026-01-01:x") == "d"
    with cat.tx() as c:                                                  # a schema 5 catalog gets the table
        c.execute(sa.text("DROP TABLE claims"))
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value="5"))
    cat.close()
    cat = Catalog(store_url)
    with cat.tx() as c:
        assert c.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == \
            str(SCHEMA_VERSION) == "6"
    assert cat.claim("drift:toy:1:2026-01-01:x", "a", 600)
    cat.close()


def test_background_takes_over_the_claim_of_a_process_gone_from_this_host(ui_project) -> None:
    """A claim whose holder was killed (a process id of this host that no longer exists) is taken over at
    once instead of leaving the thing 'computing' until the claim lapses; a live holder's, or another
    host's, is left alone; a job run releases its claim."""
    import os
    import socket

    from modelloop.dashboard.background import Background

    cat = ui_project.workspace.catalog
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()[:32]
    bg = Background(cat)
    ran: list[str] = []
    for key, holder, taken in (("k-gone", f"{host}:{gone.pid}:ab", True),
                               ("k-alive", f"{host}:{os.getppid()}:ab", False),
                               ("k-elsewhere", f"another-host:{gone.pid}:ab", False)):
        assert cat.claim(key, holder, 600)
        job = bg.job(key, lambda key=key: ran.append(key), key)
        assert (job is not None) == taken, key
        assert cat.claim_holder(key) == (bg.owner if taken else holder)
        if job is not None:
            job()
            assert cat.claim_holder(key) is None
    assert ran == ["k-gone"]


def test_ui_two_apps_sharing_a_catalog_start_one_drift_computation(ui_project, ui_traffic) -> None:
    """Two dashboards over one catalog (as ``modelloop ui`` beside ``serve --ui``, or two workers), four views
    at once: the catalog's claim lets one of them compute the missing days; the other views show them
    pending, and every view shows them once computed."""
    import threading

    from fastapi.testclient import TestClient

    from modelloop.catalog import drift_days
    from modelloop.dashboard import create_app

    def drift_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "modelloop-ui-drift"}

    for t in drift_threads():
        t.join()
    with ui_project.workspace.catalog.tx() as c:
        c.execute(drift_days.delete().where(drift_days.c.day != "live"))
    with TestClient(create_app(ui_project, keys=[])) as one, TestClient(create_app(ui_project, keys=[])) as two:
        codes: list[int] = []
        views = [threading.Thread(target=lambda c=c: codes.append(c.get("/monitoring").status_code))
                 for c in (one, two, one, two)]
        for v in views:
            v.start()
        for v in views:
            v.join()
        assert codes == [200] * 4 and len(drift_threads()) == 1
        assert 'id="drift-pending"' not in _settled(one).text and 'id="drift-pending"' not in _settled(two).text


def test_ui_page_parts_are_the_pages_elements_guarded_and_escaped(ui_project, ui_xss_project) -> None:
    """GET /parts/NAME answers the element the page refreshes (same id), nothing around it, never cached,
    behind the same key rules; values from data are escaped in it as on the page."""
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    with TestClient(create_app(ui_project, keys=[])) as c:
        page = c.get("/monitoring?lang=en").text
        for name, element in (("monitoring-drift", "part-drift"), ("monitoring-live", "part-live")):
            r = c.get(f"/parts/{name}")
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert r.text.lstrip().startswith(f'<section id="{element}"') and "<html" not in r.text
            assert f'id="{element}"' in page
        loop = c.get("/parts/overview-loop")
        assert loop.text.lstrip().startswith('<ol class="loop" id="part-loop" data-refresh="/parts/overview-loop"')
        assert 'id="part-loop"' in c.get("/").text
        unknown = c.get("/parts/nothing")
        assert unknown.status_code == 404 and "allowed: overview-loop, monitoring-drift" in unknown.text
    with TestClient(create_app(ui_project, keys=[KEY], require_key_to_read=True)) as c:
        assert c.get("/parts/overview-loop").status_code == 401
        assert c.get("/parts/overview-loop", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    with TestClient(create_app(ui_xss_project, keys=[])) as c:
        loop = c.get("/parts/overview-loop").text
        assert XSS not in loop and "<script" not in loop


def test_ui_live_metrics_that_fail_show_the_error_not_computing(ui_project, ui_traffic) -> None:
    """A failed live-metric computation (here: the production version records an output kind without a
    head) is shown as an error, not as 'computing' for ever; the figures come once the cause is gone."""
    from fastapi.testclient import TestClient

    from modelloop.catalog import drift_days
    from modelloop.dashboard import create_app

    cat = ui_project.workspace.catalog
    prod = cat.get_model("toy", ui_traffic["production"])
    with cat.tx() as c:
        c.execute(drift_days.delete().where(drift_days.c.day == "live"))
    cat.update_model("toy", prod["version"], info={**prod["info"], "task": "no-such-kind"})
    try:
        with TestClient(create_app(ui_project, keys=[])) as fresh:
            page = _settled(fresh).text
            error = re.search(r'<p id="live-error" class="error" role="status">(.*?)</p>', page, re.S)
            assert error and error.group(1).startswith("live metrics could not be computed: DataError: ")
            assert "no-such-kind" in error.group(1) and 'id="live-pending"' not in page
            part = fresh.get("/parts/monitoring-live").text
            assert 'id="live-error"' in part and "data-refresh" not in part    # nothing more to wait for
    finally:
        cat.update_model("toy", prod["version"], info=prod["info"])
    with TestClient(create_app(ui_project, keys=[])) as fresh:
        page = _settled(fresh).text
        assert 'id="live-error"' not in page and 'id="live"' in page


def test_ui_command_stopped_while_computing_exits_cleanly(ui_project, ui_traffic) -> None:
    """``modelloop ui`` interrupted while its background threads compute drift: it waits for the job under
    way (a daemon thread killed inside native code aborted with 'FATAL: exception not rethrown'), skips the
    rest, exits 0 and leaves no claim behind in the catalog."""
    import sqlalchemy as sa

    from modelloop.catalog import claims, drift_days

    cat = ui_project.workspace.catalog
    with cat.tx() as c:
        c.execute(drift_days.delete())                      # every day and the live metrics to compute
    root = write_config(ui_project)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelloop.cli", "ui", "--port", str(port)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/monitoring", proc, timeout=60)   # the warm-up computes meanwhile
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "FATAL" not in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    with cat.tx() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(claims)).scalar() == 0


@pytest.fixture(autouse=True)
def _no_claims_left(ui_project):
    """Each test starts with no claim held (an earlier test's process may have died holding one)."""
    from modelloop.catalog import claims

    with ui_project.workspace.catalog.tx() as c:
        c.execute(claims.delete())
