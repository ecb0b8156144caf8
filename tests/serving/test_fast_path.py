"""``POST /v1/predict`` skips the app's middleware stack (``app.PredictFastPath``) and keeps its contracts:
the answers, the errors and their counts, the body limit; CORS and other methods still take the stack."""

from __future__ import annotations

import re

import httpx
import pytest
from servers import running
from starlette.routing import Route

from modelloop.serving import ServeConfig, create_app

KEY = "key-a"
CONFIG = {"max_body_bytes": 20_000, "max_records": 10, "reload_poll_seconds": 0}


class RouteSpy:
    """Stands in for the router's ``/v1/predict`` endpoint: counts the requests that reach it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.inner(scope, receive, send)


def _spy(app) -> RouteSpy:
    route = next(r for r in app.router.routes if isinstance(r, Route) and r.path == "/v1/predict")
    spy = RouteSpy(route.app)
    route.app = spy
    return spy


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.fixture(scope="module")
def served(toy):
    app = create_app(toy.ws, config=ServeConfig(**CONFIG), api_keys=[KEY])
    spy = _spy(app)
    with running(app) as base, httpx.Client(base_url=base, timeout=30,
                                            headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client, spy


def test_predict_answers_without_the_router_and_counts_like_the_stack(served, toy) -> None:
    api, spy = served
    before = spy.calls
    r = api.post("/v1/predict", json={"records": [toy.record(0)]})
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{40}", r.json()["request_id"])
    assert r.headers["content-type"] == "application/json"
    assert spy.calls == before                                   # the stack's route was not entered
    assert api.get("/v1/predict").status_code == 405             # other methods: the router, as before
    text = api.get("/metrics").text
    assert _metric(text, 'modelloop_requests_total{endpoint="/v1/predict",status="200"}') >= 1
    assert _metric(text, 'modelloop_requests_total{endpoint="/v1/predict",status="405"}') == 1


@pytest.mark.parametrize(("send", "status", "kind"), [
    (lambda api, toy: api.post("/v1/predict", json={"records": [toy.record(0)]},
                               headers={"Authorization": "Bearer nope"}), 401, "auth"),
    (lambda api, toy: api.post("/v1/predict", content=b"{not json", headers={"Content-Type": "application/json"}),
     422, "validation"),
    (lambda api, toy: api.post("/v1/predict", json={"records": [toy.record(0)] * 11}), 413, "too_large"),
    (lambda api, toy: api.post("/v1/predict", content=b" " * 20_001), 413, "too_large"),
    (lambda api, toy: api.post("/v1/predict", content=iter([b" " * 1000] * 30)), 413, "too_large"),
])
def test_errors_keep_their_answers_and_kinds(served, toy, send, status, kind) -> None:
    api, spy = served
    before_calls = spy.calls
    before = _metric(api.get("/metrics").text, f'modelloop_errors_total{{kind="{kind}"}}')
    r = send(api, toy)
    assert r.status_code == status, r.text
    body = r.json()
    if status == 422:
        assert body["message"].startswith("body: not valid JSON") and body["detail"][0]["type"] == "json_invalid"
    elif status == 401:
        assert r.headers["www-authenticate"] == "Bearer" and "API key" in body["detail"]
    else:
        assert "max_body_bytes" in body["detail"] or "max_records (10)" in body["detail"]
    assert spy.calls == before_calls
    assert _metric(api.get("/metrics").text, f'modelloop_errors_total{{kind="{kind}"}}') == before + 1


def test_a_failed_inference_is_a_500_counted_as_inference(toy) -> None:
    app = create_app(toy.ws, config=ServeConfig(**CONFIG), api_keys=[])
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as api:
        rt = app.state.serving.runtime

        def broken(records):
            raise RuntimeError("the session broke")

        rt.predict = broken
        r = api.post("/v1/predict", json={"records": [toy.record(0)]})
        assert r.status_code == 500 and r.json() == {"detail": "inference failed: RuntimeError"}
        text = api.get("/metrics").text
        assert _metric(text, 'modelloop_errors_total{kind="inference"}') == 1
        assert _metric(text, 'modelloop_requests_total{endpoint="/v1/predict",status="500"}') == 1


def test_cors_requests_take_the_stack(toy) -> None:
    origin = "https://app.example"
    app = create_app(toy.ws, config=ServeConfig(**CONFIG, cors_origins=[origin]), api_keys=[])
    spy = _spy(app)
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as api:
        r = api.post("/v1/predict", json={"records": [toy.record(0)]}, headers={"Origin": origin})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert spy.calls == 1
        assert api.post("/v1/predict", json={"records": [toy.record(0)]}).status_code == 200
        assert spy.calls == 1                                    # no Origin: the fast path
