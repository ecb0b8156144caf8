"""modelloop ui in a real browser: headless Chromium from Debian's package, driven by Playwright.

Skipped with a reason when ``/usr/bin/chromium`` or the ``playwright`` package is missing (``.ci/run``
installs Chromium with apt-get; Playwright's own browser downloads are never used). Every page must load
without a console error; each test leaves a screenshot in its pytest tmp_path.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from servers import running
from ui_toy import KEY, REQUEST_WITH_FEEDBACK, XSS, wait_http

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="no /usr/bin/chromium: install Debian's chromium (apt-get install -y "
                                       "chromium) to run the browser tests")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path: Path, request):
    context = browser.new_context(locale="en-US")
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.problems = problems                     # a test that provokes an error page clears what it expected
    yield pg
    pg.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not problems, problems


@pytest.fixture(scope="module")
def url(ui_project, ui_traffic):
    from modelloop.dashboard import create_app

    with running(create_app(ui_project, keys=[KEY]), ready=False) as base:
        wait_http(base + "/static/style.css")
        yield base


def _monitoring_settled(page, url: str) -> None:
    """Monitoring once no day's drift is pending (the first view leaves them to a background thread)."""
    for _ in range(600):
        page.goto(url + "/monitoring")
        if page.locator("#drift-pending").count() + page.locator("#live-pending").count() == 0:
            return
        time.sleep(0.1)
    raise AssertionError("drift still pending after 60 s")


def test_ui_browser_overview_links_and_language(page, url, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 400})
    _monitoring_settled(page, url)                                    # the Overview shows its last alerts
    page.goto(url + "/")
    assert page.locator("h1").inner_text() == "Overview"
    assert "amount" in page.locator("#stage-monitoring").inner_text()
    page.screenshot(path=str(tmp_path / "overview.png"))              # docs/img/ui-overview.png is one
    for stage, heading in (("Data", "Data"), ("Model", "Models"), ("Serving", "Serving"),
                           ("Monitoring", "Monitoring"), ("Feedback", "Retrains")):
        page.locator(".loop").get_by_role("link", name=stage, exact=True).click()
        assert page.locator("h1").inner_text() == heading
        page.goto(url + "/")
    page.get_by_role("link", name="zh-CN").click()
    assert page.locator("h1").inner_text() == "概览"
    page.get_by_role("link", name="模型").first.click()
    assert page.locator("h1").inner_text() == "模型"                 # the choice is remembered


def test_ui_browser_serving_and_monitoring_charts(page, url, tmp_path: Path) -> None:
    """The charts are inline SVG the page's CSP allows: drawn, with their hover titles, in both languages."""
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(url + "/serving")
    chart = page.locator("#chart-requests svg")
    assert chart.is_visible() and chart.bounding_box()["height"] > 100
    assert page.locator("#chart-latency circle").count() >= 2          # a point per percentile
    page.get_by_role("link", name="7d", exact=True).click()
    assert page.locator("#traffic tbody tr").count() >= 3                # three days of traffic
    page.screenshot(path=str(tmp_path / "serving.png"), full_page=True)
    _monitoring_settled(page, url)
    assert page.locator("#chart-drift rect.fired").count() >= 1          # the shifted day
    assert "amount" in page.locator("#alerts").inner_text()
    page.screenshot(path=str(tmp_path / "monitoring.png"), full_page=True)
    page.get_by_role("link", name="zh-CN").click()
    assert page.locator("h1").inner_text() == "监控" and page.locator("#chart-drift svg").is_visible()


def test_ui_browser_lineage_comparison_and_search_history(page, url, tmp_path: Path) -> None:
    """The graph's nodes link their rows; the comparison and a version's search history open from Models."""
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(url + "/lineage")
    assert page.locator("#lineage-graph svg g[id^=lineage-model-]").count() == 2
    page.screenshot(path=str(tmp_path / "lineage.png"), full_page=True)
    page.locator("#lineage-alias-production").click()                   # an SVG link to the model's row
    assert "/models#model-" in page.url and page.locator("h1").inner_text() == "Models"
    page.get_by_role("link", name="compare with production").first.click()
    assert page.locator("#compare-metrics tbody tr").count() >= 5
    page.goto(url + "/models")
    page.get_by_role("link", name="search history").first.click()
    assert page.locator("#chart-search svg").is_visible() and page.locator("#trials tbody tr").count() >= 1
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    page.goto(url + "/data/diff")
    assert page.locator("h1").inner_text().startswith("Data")


def test_ui_browser_trace_a_request(page, url, ui_project) -> None:
    expected = ui_project.trace(REQUEST_WITH_FEEDBACK)
    page.goto(url + "/trace")
    page.fill("input[name=request_id]", REQUEST_WITH_FEEDBACK)
    page.get_by_role("button", name="Look up").click()
    text = page.locator("dl.trace").inner_text()
    assert expected["run"]["id"] in text and expected["dataset"]["id"] in text
    page.get_by_role("link", name=f"toy:{expected['model']['version']}").click()
    assert page.url.endswith(f"/models#model-{expected['model']['version']}")


def test_ui_browser_promote_and_rollback_need_a_key(page, url, ui_project) -> None:
    before = ui_project.status()["production"]["version"]
    other = next(m["version"] for m in ui_project.status()["models"] if m["version"] != before)
    row = f"#model-{other}"
    page.goto(url + "/models")
    page.fill(f"{row} input[name=api_key]", "wrong-key")
    # the refused page's console error arrives on its own event: wait for it, not only for the response
    with page.expect_console_message(lambda m: m.type == "error" and "401" in m.text), \
            page.expect_response(lambda r: r.url.endswith("/models/promote")) as refused:
        page.click(f"{row} button")
    assert refused.value.status == 401
    assert page.problems == ["console error: Failed to load resource: the server responded with a status "
                             "of 401 (Unauthorized)"]
    page.problems.clear()
    page.goto(url + "/models")
    page.fill(f"{row} input[name=api_key]", KEY)
    page.click(f"{row} button")
    assert "Point production at this version?" in page.inner_text("main")
    assert ui_project.status()["production"]["version"] == before
    page.get_by_role("button", name="Confirm").click()
    assert ui_project.status()["production"]["version"] == other
    assert page.locator(f"{row} .alias").inner_text() == "production"
    page.get_by_role("button", name="Roll back production").click()  # signed in now: no key field
    page.get_by_role("button", name="Confirm").click()
    assert ui_project.status()["production"]["version"] == before


def test_ui_browser_script_column_is_text(page, ui_xss_project) -> None:
    from modelloop.dashboard import create_app

    with running(create_app(ui_xss_project, keys=[]), ready=False) as base:
        wait_http(base + "/static/style.css")
        page.goto(base + "/data")
        assert XSS in page.locator("table").inner_text()             # shown as text; no dialog fired
        assert page.locator("table script").count() == 0


def test_ui_browser_monitoring_parts_update_without_a_reload(page, ui_project, ui_traffic, tmp_path: Path) -> None:
    """Drift and live metrics still computing: the page's script (static/refresh.js, from 'self' under the
    CSP) fetches the two parts until they are done and swaps them in; the page itself is never reloaded
    and logs no console error (the fixture checks)."""
    from modelloop.catalog import drift_days
    from modelloop.dashboard import create_app

    with ui_project.workspace.catalog.tx() as c:
        c.execute(drift_days.delete())                      # every day and the live metrics to compute
    with running(create_app(ui_project, keys=[KEY]), ready=False) as base:
        wait_http(base + "/static/style.css")
        parts: list[str] = []
        page.on("response", lambda r: parts.append(r.url) if "/parts/" in r.url else None)
        page.goto(base + "/monitoring")
        assert page.locator("#part-drift[data-refresh]").count() == 1     # pending when the page came
        page.evaluate("window.notReloaded = true")
        page.locator("#drift-pending").wait_for(state="detached", timeout=60_000)
        page.locator("#live-pending").wait_for(state="detached", timeout=60_000)
        assert page.evaluate("window.notReloaded === true")                # the same document all along
        assert page.locator("#chart-drift rect.fired").count() >= 1 and "amount" in page.inner_text("#alerts")
        assert page.locator("#live tbody tr").count() >= 1
        assert page.locator("[data-refresh]").count() == 0                 # nothing more is fetched
        assert any(u.endswith("/parts/monitoring-drift") for u in parts), parts
        page.screenshot(path=str(tmp_path / "monitoring-updated.png"), full_page=True)


def test_ui_browser_comparison_asks_for_its_intervals_part(page, ui_project) -> None:
    """While a version's bootstrap intervals compute, the comparison's script asks for its metrics part at the
    URL in data-refresh (query string and all) and gets it; no console error (the fixture checks)."""
    from modelloop.catalog import drift_days
    from modelloop.dashboard import create_app
    from modelloop.dashboard.intervals import INTERVALS_DAY

    with ui_project.workspace.catalog.tx() as c:
        c.execute(drift_days.delete().where(drift_days.c.day == INTERVALS_DAY))
    with running(create_app(ui_project, keys=[]), ready=False) as base:
        wait_http(base + "/static/style.css")
        with page.expect_response(lambda r: "/parts/compare-metrics" in r.url, timeout=30_000) as asked:
            page.goto(base + "/models/compare?a=2&b=1")
            assert page.locator("#intervals-pending").count() == 1
        assert asked.value.status == 200 and asked.value.url.endswith("/parts/compare-metrics?a=2&b=1")
        assert page.locator("#part-compare-metrics #compare-metrics tbody tr").count() >= 5
