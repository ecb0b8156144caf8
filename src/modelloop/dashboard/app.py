"""The dashboard's FastAPI app: server-rendered pages over the Project API, and two guarded actions.

Reads go through :class:`modelloop.Project` (``status``, ``trace``), the functions behind the CLI's
``--json``, so a page and the CLI never disagree. Security, in the order a request meets it:

* **Keys** are the prediction server's (``MODELLOOP_API_KEYS`` or ``serve.api_keys_file``, compared in
  constant time by :class:`~modelloop.serving.security.ApiKeys`). A browser presents one as
  ``Authorization: Bearer``, or once on the sign-in form / an action form, after which it holds a signed
  session cookie (a random nonce and its HMAC under a per-process secret; the key itself is not stored).
  Pages are read-only without a key; with ``ui.require_key_to_read`` every page answers 401 without one.
  Actions (promote, rollback) always need a key: with no key configured they are refused.
* **CSRF**: every action is a POST whose form carries a token, the HMAC of the ``ml_csrf`` cookie's nonce;
  a POST without the pair, or with a wrong one, is refused with 403 before anything else is looked at.
* **Escaping**: Jinja2 autoescape is on for every template, so values from data (column names, model
  names, request inputs) render as text. Pages send a ``Content-Security-Policy`` without inline script.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from ..catalog import utcnow
from ..compute.jobs import cancel_job, list_jobs
from ..compute.queue import FINISHED, WAITING
from ..compute.show import command_text, seconds_text
from ..errors import ConfigError, ModelloopError, NotFoundError, StateError, shown_json
from ..project import Project
from ..serving.security import ApiKeys, load_api_keys
from .background import Background
from .compare import dataset_source, diff_datasets, diff_models
from .i18n import LANGS, pick_lang, strings
from .intervals import version_intervals
from .lineage import deployment_history, lineage_svg
from .search_history import search_history
from .queries import RANGES, TrafficRollup
from .views import (DriftCache, labels_by_version, last_alerts, monitoring_view, production_live, server_figures,
                    serving_view, warm_up)

__all__ = ["create_app"]

HERE = Path(__file__).parent
SESSION_COOKIE, CSRF_COOKIE, LANG_COOKIE = "ml_session", "ml_csrf", "ml_lang"
MAX_FORM_BYTES = 16_384
# The Jobs page's three tables: what runs now, what waits (a preempted job waits to run again), what ended.
JOB_GROUPS = {"running": ("running",), "waiting": WAITING, "finished": FINISHED}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class _Guard:
    """Sessions and CSRF tokens signed under one per-process secret (restart = everyone signs in again)."""

    def __init__(self, keys: ApiKeys):
        self.keys = keys
        self._secret = secrets.token_bytes(32)

    def _sign(self, purpose: str, nonce: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._sign('session', nonce)}"

    def _valid(self, purpose: str, signed: str | None) -> bool:
        nonce, _, mac = (signed or "").partition(".")
        return bool(nonce) and hmac.compare_digest(mac, self._sign(purpose, nonce))

    def has_key(self, request: Request, form_key: str | None = None) -> bool:
        """A configured key presented now (header or form), or a session signed after one was."""
        if not self.keys.enabled:
            return False
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self.keys.verify(auth[7:].strip()):
            return True
        if form_key and self.keys.verify(form_key):
            return True
        return self._valid("session", request.cookies.get(SESSION_COOKIE))

    def csrf_token(self, nonce: str) -> str:
        return self._sign("csrf", nonce)

    def csrf_ok(self, request: Request, token: str | None) -> bool:
        nonce = request.cookies.get(CSRF_COOKIE)
        return bool(nonce and token) and hmac.compare_digest(str(token), self._sign("csrf", str(nonce)))


def _quality_score(quality: dict[str, Any] | None) -> float | None:
    """The dataset's overall quality score (the mean of its scores when no overall one is stored)."""
    scores = (quality or {}).get("scores") or {}
    if "overall" in scores:
        return scores["overall"]
    values = [v for v in scores.values() if isinstance(v, int | float)]
    return round(sum(values) / len(values), 3) if values else None


def _trigger_text(trigger: Any) -> str:
    """A decision's trigger as one line: the triggers that fired (retrain's record), else its JSON."""
    if isinstance(trigger, dict) and "fired" in trigger:
        return "; ".join(map(str, trigger["fired"])) or "none fired"
    return json.dumps(trigger, default=str)


def _base(request: Request) -> str:
    """Where the dashboard is mounted: ``""`` under ``modelloop ui``, ``/ui`` under ``serve --ui``."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _route(request: Request) -> str:
    """The request's path inside the dashboard (``/models`` whether it is mounted or not)."""
    return request.url.path.removeprefix(_base(request)) or "/"


def create_app(project: Project, *, keys: list[str] | ApiKeys | None = None,
               require_key_to_read: bool | None = None,
               server_metrics: Callable[[], bytes] | None = None, warm: bool = False) -> FastAPI:
    """The dashboard over one project; ``keys`` default to the prediction server's configured keys
    (``serve --ui`` hands over the server's own :class:`ApiKeys`, so both check the same ones, and its
    metrics' ``render``, from which the Serving page reads errors by kind and batch sizes). ``warm``: fill
    the log pages' caches in a background thread now (the servers do; tests and benchmarks time cold)."""
    cfg = project.config
    if keys is None:
        keys = load_api_keys(cfg.serve.api_keys_file, cfg.root)
    guard = _Guard(keys if isinstance(keys, ApiKeys) else ApiKeys(keys))
    must_sign_in = guard.keys.enabled and (cfg.ui.require_key_to_read if require_key_to_read is None
                                           else require_key_to_read)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["score"] = lambda quality: "—" if (s := _quality_score(quality)) is None else s
    env.filters["trigger"] = _trigger_text
    env.filters["seconds"] = seconds_text
    env.filters["command"] = command_text
    env.filters["bytes"] = lambda n: f"{n / 2**30:.3g} GiB"
    env.filters["size"] = lambda n: f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 2**10:.3g} KiB"
    env.filters["num"] = lambda v: f"{v:.4g}" if isinstance(v, float) else v  # 0.8214, not 0.821428571...
    env.filters["ms"] = lambda v: "—" if v is None else f"{v:.3g} ms"
    # a value as JSON a person reads: Jinja's tojson escapes every non-ASCII character and ', <, >, &
    # (a Chinese model's output read {"label": "\u7269\u6d41..."}); autoescape makes this one safe
    env.filters["json"] = shown_json
    for name in env.list_templates(filter_func=lambda n: n.endswith(".html")):
        env.get_template(name)          # compiled now, and the catalog opened now, not by the first visitor
    project.workspace.catalog  # noqa: B018
    background = Background(project.workspace.catalog)      # what the pages compute without waiting
    drift_cache, rollup = DriftCache(background), TrafficRollup()  # what the log's pages keep between requests
    if warm:
        background.start([lambda: warm_up(project, drift_cache, rollup)], "modelloop-ui-warm-up")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """On shutdown the background jobs not begun yet are dropped (the server waits for the one running)."""
        yield
        background.stop()

    app = FastAPI(title="modelloop ui", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def lang_of(request: Request) -> str:
        return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                         request.headers.get("accept-language"))

    def render(request: Request, template: str, code: int = 200, **ctx: Any) -> Response:
        lang = lang_of(request)
        nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_hex(16)
        html = env.get_template(template).render(
            t=strings(lang), lang=lang, langs=LANGS, path=_route(request), base=_base(request), project=cfg.name,
            csrf=guard.csrf_token(nonce), keys_configured=guard.keys.enabled,
            signed_in=guard.has_key(request), **ctx)
        response = HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict")
        if request.query_params.get("lang") in LANGS:
            response.set_cookie(LANG_COOKIE, lang, samesite="lax", max_age=365 * 86400)
        return response

    def fail(request: Request, status: int, message: str) -> Response:
        return render(request, "error.html", code=status, message=message)

    @app.middleware("http")
    async def sign_in_first(request: Request, call_next: Any) -> Response:
        """With ``ui.require_key_to_read``: 401 for every page but sign-in and the stylesheet."""
        route = _route(request)
        open_paths = route == "/login" or route.startswith("/static/")
        if must_sign_in and not open_paths and not guard.has_key(request):
            return render(request, "login.html", code=401, next=request.url.path)
        return await call_next(request)

    async def read_form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

    def overview_context(request: Request) -> dict[str, Any]:
        status = project.status()
        latest = status["datasets"][-1] if status["datasets"] else None
        prod = status["production"]
        prod_model = next((m for m in status["models"] if prod and m["version"] == prod["version"]), None)
        now = utcnow()
        since = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
        day = rollup.traffic(project.workspace.catalog, cfg.name, since, "day", now)["buckets"]
        labels = sum(labels_by_version(project, drift_cache).values())
        return {"status": status, "latest": latest, "prod": prod_model, "labels": labels,
                "requests_24h": sum(b["requests"] for b in day.values()), "alerts": last_alerts(project, drift_cache),
                "live": prod_model and production_live(project, drift_cache, prod_model["version"])}

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        return render(request, "overview.html", **overview_context(request))

    @app.get("/models", response_class=HTMLResponse)
    def models(request: Request, done: str | None = None) -> Response:
        status = project.status()
        infos = {m["version"]: m["info"] for m in project.workspace.catalog.list_models(cfg.name)}
        children: dict[int, list[dict[str, Any]]] = {}
        for m in status["models"]:
            if m.get("parent_version") is not None:
                children.setdefault(m["parent_version"], []).append(m)
        return render(request, "models.html", status=status, done=done, infos=infos, children=children)

    @app.get("/data", response_class=HTMLResponse)
    def data(request: Request) -> Response:
        status = project.status()
        reports = {d["id"] for d in status["datasets"] if _report_path(d["id"]).is_file()}
        return render(request, "data.html", status=status, reports=reports)

    def _report_path(dataset_id: str) -> Path:
        return project.workspace.reports_dir / f"quality-{dataset_id}.html"

    @app.get("/data/diff", response_class=HTMLResponse)
    def data_diff(request: Request, a: str | None = None, b: str | None = None) -> Response:
        status = project.status()
        ids = [d["id"] for d in status["datasets"]]
        options = [(d["id"], f"v{d['version']} {d['step']} ({d['id']})") for d in status["datasets"]]
        return compared(request, "data_diff.html", ids, options, a, b,
                        lambda x, y: diff_datasets(project, status, x, y))

    @app.get("/models/compare", response_class=HTMLResponse)
    def model_compare(request: Request, a: str | None = None, b: str | None = None) -> Response:
        return compare_models(request, a, b, "model_compare.html")

    def compare_models(request: Request, a: str | None, b: str | None, template: str) -> Response:
        status = project.status()
        versions = [str(m["version"]) for m in status["models"]]
        options = [(m["version"], f"{m['name']}:{m['version']} {m.get('family') or ''}") for m in status["models"]]
        return compared(request, template, versions, options, a, b,
                        lambda x, y: diff_models(project, status, x, y,
                                                 lambda row: version_intervals(project, background, row)))

    @app.get("/models/{version}/report")
    def model_report(request: Request, version: str) -> Response:
        """The version's evaluation report (per-class figures, curves), only from the project's reports folder."""
        reports = project.workspace.reports_dir.resolve()
        found = None
        if version.isdigit():
            try:
                info = project.workspace.catalog.get_model(cfg.name, int(version))["info"] or {}
            except NotFoundError:
                info = {}
            path = Path(str(info.get("report") or "")).resolve()
            found = path if path.is_file() and path.is_relative_to(reports) else None
        if found is None:
            return fail(request, 404, f"no evaluation report for model version '{version}'; run "
                                      f"`modelloop evaluate --model {cfg.name}:{version}`")
        return FileResponse(found, media_type="text/html")

    @app.get("/models/{version}/search", response_class=HTMLResponse)
    def search(request: Request, version: str) -> Response:
        if not version.isdigit():
            return fail(request, 400, f"model version '{version}' is not a number")
        try:
            model = project.workspace.catalog.get_model(cfg.name, int(version))
        except NotFoundError as e:
            return fail(request, 404, str(e))
        metric = ((model.get("info") or {}).get("search") or {}).get("metric") or cfg.metric
        t = strings(lang_of(request))
        return render(request, "search.html", model=model, metric=metric,
                      history=search_history(project, model, metric, t["search_chart"]))

    def compared(request: Request, template: str, refs: list[str], options: list[tuple[Any, str]],
                 a: str | None, b: str | None, diff: Callable[[str, str], dict[str, Any]]) -> Response:
        """A diff of ``a`` and ``b`` (by default the two latest); 404/400 naming the versions there are."""
        if not refs:
            return fail(request, 404, "nothing to compare yet; see `modelloop status`")
        try:
            found = diff(a or refs[-2 if len(refs) > 1 else -1], b or refs[-1])
        except NotFoundError as e:
            return fail(request, 404, str(e))
        except ModelloopError as e:
            return fail(request, 400, str(e))
        return render(request, template, diff=found, options=options)

    @app.get("/lineage", response_class=HTMLResponse)
    def lineage(request: Request) -> Response:
        status = project.status()
        t = strings(lang_of(request))
        aliases = sorted({a for m in status["models"] for a in m["aliases"]})
        return render(request, "lineage.html", graph=lineage_svg(status, _base(request),
                                                                 (t["data"], t["models"], t["aliases"])),
                      history=deployment_history(project, aliases))

    @app.get("/data/{dataset_id}/report")
    def report(request: Request, dataset_id: str) -> Response:
        known = {d["id"] for d in project.status()["datasets"]}
        if dataset_id not in known or not _report_path(dataset_id).is_file():
            return fail(request, 404, f"no profile report for dataset '{dataset_id}'; run `modelloop profile`")
        return FileResponse(_report_path(dataset_id), media_type="text/html")

    @app.get("/trace", response_class=HTMLResponse)
    def trace(request: Request, request_id: str | None = None) -> Response:
        if not request_id:
            return render(request, "trace.html", result=None, request_id="")
        try:
            result = project.trace(request_id.strip())
        except NotFoundError as e:
            return render(request, "trace.html", code=404, result=None, request_id=request_id, error=str(e))
        return render(request, "trace.html", result=result, request_id=request_id,
                      source=dataset_source(project, result["dataset"]["id"]))

    @app.get("/serving", response_class=HTMLResponse)
    def serving(request: Request, range_: str = Query("24h", alias="range")) -> Response:
        if range_ not in RANGES:
            return fail(request, 400, f"range '{range_}' is not one of: {', '.join(RANGES)}")
        t = strings(lang_of(request))
        metrics = server_figures(server_metrics(), t) if server_metrics is not None else None
        return render(request, "serving.html", view=serving_view(project, rollup, range_, t), server=metrics)

    def monitoring_context(request: Request) -> dict[str, Any]:
        return {"view": monitoring_view(project, drift_cache, rollup, strings(lang_of(request))),
                "min_rows": cfg.monitor.min_rows}

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring(request: Request) -> Response:
        return render(request, "monitoring.html", **monitoring_context(request))

    # The parts a page refreshes alone (static/refresh.js), each rendered from its template with the context
    # its page builds; the same guards as the pages (the middleware) and the same escaping.
    parts: dict[str, Callable[[Request], Response]] = {
        "overview-loop": lambda r: render(r, "parts/overview-loop.html", **overview_context(r)),
        "monitoring-drift": lambda r: render(r, "parts/monitoring-drift.html", **monitoring_context(r)),
        "monitoring-live": lambda r: render(r, "parts/monitoring-live.html", **monitoring_context(r)),
        "compare-metrics": lambda r: compare_models(r, r.query_params.get("a"), r.query_params.get("b"),
                                                    "parts/compare-metrics.html")}

    @app.get("/parts/{name}", response_class=HTMLResponse)
    def part(request: Request, name: str) -> Response:
        """One part of a page as HTML, for the page's script to swap in without a reload."""
        if name not in parts:
            return fail(request, 404, f"no page part '{name}'; allowed: {', '.join(parts)}")
        response = parts[name](request)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/retrains", response_class=HTMLResponse)
    def retrains(request: Request) -> Response:
        try:
            metric = project.config.metric  # each decision leads with it
        except StateError:  # no dataset version to infer the task from: every figure, none first
            metric = None
        return render(request, "retrains.html", decisions=project.retrain_decisions(), metric=metric)

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str | None = None) -> Response:
        return render(request, "login.html", next=next or _base(request) + "/")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        if not guard.csrf_ok(request, form.get("csrf")):
            return fail(request, 403, "the form's CSRF token is missing or wrong; reload the page and retry")
        home = _base(request) + "/"
        if not guard.has_key(request, form.get("api_key")):
            return render(request, "login.html", code=401, next=form.get("next", home), wrong=True)
        target = form.get("next", home)
        local = target.startswith("/") and not target.startswith(("//", "/\\"))  # never off this site
        response = RedirectResponse(target if local else home, status_code=303)
        response.set_cookie(SESSION_COOKIE, guard.new_session(), httponly=True, samesite="strict")
        return response

    async def action(request: Request, kind: str, path: str, back: str,
                     run: Callable[[dict[str, str]], str | Response]) -> Response:
        """The one way an action runs: CSRF, then a key, then a confirm page, then ``run(form)``, whose
        answer is where to go next (303) or a refusal; the Project API's refusals become 409/404/400."""
        form = await read_form(request)
        if not guard.csrf_ok(request, form.get("csrf")):
            return fail(request, 403, "the form's CSRF token is missing or wrong; reload the page and retry")
        if not guard.keys.enabled:
            return fail(request, 403, "actions need an API key and none is configured; set MODELLOOP_API_KEYS "
                                      "(or serve.api_keys_file) and restart modelloop ui")
        if not guard.has_key(request, form.get("api_key")):
            return fail(request, 401, "a valid API key is needed to " + kind)
        if form.get("confirm") != "yes":
            response = render(request, "confirm.html", kind=kind, target=path, back=back,
                              version=form.get("version", ""), job=form.get("job", ""))
            response.set_cookie(SESSION_COOKIE, guard.new_session(), httponly=True, samesite="strict")
            return response
        try:
            done = run(form)
        except StateError as e:
            return fail(request, 409, str(e))
        except NotFoundError as e:
            return fail(request, 404, str(e))
        except ModelloopError as e:
            return fail(request, 400, str(e))
        return done if isinstance(done, Response) else RedirectResponse(_base(request) + done, status_code=303)

    def do_promote(form: dict[str, str]) -> str | Response:
        version = form.get("version", "")
        if not version.isdigit():
            raise ConfigError(f"version '{version}' is not a model version number")
        res = project.promote(f"{cfg.name}:{version}")
        return f"/models?done=promote:{res['model']['version']}"

    def do_rollback(form: dict[str, str]) -> str | Response:
        return f"/models?done=rollback:{project.rollback()['model']['version']}"

    def do_cancel(form: dict[str, str]) -> str | Response:
        job = form.get("job", "")
        if not job.isdigit():
            raise ConfigError(f"job '{job}' is not a job id")
        res = cancel_job(project.workspace, int(job))
        return f"/jobs?done=cancel:{res['id']}"

    @app.post("/models/promote")
    async def promote(request: Request) -> Response:
        return await action(request, "promote", "/models/promote", "/models", do_promote)

    @app.post("/models/rollback")
    async def rollback(request: Request) -> Response:
        return await action(request, "rollback", "/models/rollback", "/models", do_rollback)

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs(request: Request, done: str | None = None) -> Response:
        listed = list_jobs(project.workspace)[::-1]                    # newest first in each group
        groups = {name: [j for j in listed if j["state"] in states] for name, states in JOB_GROUPS.items()}
        return render(request, "jobs.html", groups=groups, done=done)

    @app.post("/jobs/cancel")
    async def cancel(request: Request) -> Response:
        return await action(request, "cancel", "/jobs/cancel", "/jobs", do_cancel)

    return app
