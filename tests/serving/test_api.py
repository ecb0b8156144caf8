"""The HTTP API end to end: a real uvicorn server on 127.0.0.1, a real ORT session, a real catalog."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from servers import running

from modelloop.serving import ServeConfig, create_app

KEYS = ["key-a", "key-b"]
LIMITS = {"max_body_bytes": 20_000, "max_records": 10, "cache_size": 100, "reload_poll_seconds": 0}


@pytest.fixture(scope="module")
def url(toy):
    app = create_app(toy.ws, config=ServeConfig(**LIMITS), api_keys=KEYS)
    with running(app) as base:
        yield base


@pytest.fixture
def api(url):
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=30) as c:
        yield c


def predict(api, *records, **kw) -> httpx.Response:
    return api.post("/v1/predict", json={"records": list(records)}, **kw)


# ---- predict --------------------------------------------------------------------------------------
def test_predict_one(api, toy) -> None:
    r = predict(api, toy.record(0))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "toy", "version": 1, "variant": "onnx"}
    assert re.fullmatch(r"[0-9a-f]{40}", body["request_id"])
    [p] = body["predictions"]
    assert p["request_id"] == body["request_id"]                 # one record: the request id
    assert p["label"] in (0, 1) and set(p["probabilities"]) == {"0", "1"}
    assert abs(sum(p["probabilities"].values()) - 1) < 1e-5


def test_predict_many_gives_one_id_per_record(api, toy) -> None:
    body = predict(api, *(toy.record(i) for i in range(5))).json()
    rid = body["request_id"]
    assert [p["request_id"] for p in body["predictions"]] == [f"{rid}-{i}" for i in range(5)]
    single = [predict(api, toy.record(i)).json()["predictions"][0] for i in range(5)]
    for a, b in zip(body["predictions"], single, strict=True):   # batching does not change answers
        assert a["label"] == b["label"] and a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)


def test_null_is_a_missing_value(api, toy) -> None:
    rec = {**toy.record(1), "amount": None, "country": None, "online": None, "signup": None}
    assert predict(api, rec).status_code == 200


# ---- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "field", "words"), [
    ({"amount": "12"}, "amount", "must be a number"),
    ({"amount": "一百"}, "amount", 'got "一百"'),  # as sent; it read got "\\u4e00\\u767e"
    ({"colour": "red"}, "colour", "unknown field"),
    ({"online": "perhaps"}, "online", "true, false"),
])
def test_422_names_the_field_and_what_is_allowed(api, toy, change, field, words) -> None:
    r = predict(api, {**toy.record(0), **change})
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["field"] == field and err["msg"].startswith(f"records[0].{field}:") and words in err["msg"]
    assert words in r.json()["message"]


def test_a_utf8_body_with_a_bom_is_read_and_a_gbk_body_is_told_to_be_utf8(api, toy) -> None:
    # Windows PowerShell and Notepad write a BOM: 422 'not valid JSON (expected value at line 1 column 1)'
    # (/v1/feedback took such a body); a GBK body read 'invalid unicode code point at line 1 column 16'
    import json

    text = json.dumps({"records": [{**toy.record(0), "country": "中国"}]}, ensure_ascii=False)
    headers = {"content-type": "application/json"}
    r = api.post("/v1/predict", content=b"\xef\xbb\xbf" + text.encode(), headers=headers)
    assert r.status_code == 200, r.text
    r = api.post("/v1/predict", content=text.encode("gbk"), headers=headers)
    assert r.status_code == 422
    assert r.json()["message"].startswith("body: must be UTF-8 encoded JSON (byte ")


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN"])
def test_422_for_infinity_or_nan_which_json_does_not_have(api, toy, number) -> None:
    import json

    rec = json.dumps({**toy.record(0), "amount": "__X__"}).replace('"__X__"', number)
    r = api.post("/v1/predict", content=f'{{"records": [{json.dumps(toy.record(1))}, {rec}]}}',
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["field"] == "amount" and err["msg"].startswith("records[1].amount: must be a finite number")


def test_422_for_a_missing_field(api, toy) -> None:
    rec = toy.record(0)
    del rec["age"]
    [err] = predict(api, rec).json()["detail"]
    assert err["field"] == "age" and "required field is missing" in err["msg"]


# ---- security -------------------------------------------------------------------------------------
def test_keys_are_required_except_for_probes(url, toy) -> None:
    with httpx.Client(base_url=url, timeout=30) as anon:
        assert predict(anon, toy.record(0)).status_code == 401
        assert anon.get("/v1/model").status_code == 401
        assert anon.post("/v1/feedback", json={"request_id": "x", "label": 1}).status_code == 401
        wrong = predict(anon, toy.record(0), headers={"Authorization": "Bearer key-c"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert predict(anon, toy.record(0), headers={"Authorization": "Bearer key-b"}).status_code == 200
        assert anon.get("/v1/health").json()["status"] == "ok"
        assert anon.get("/v1/ready").status_code == 200
        assert anon.get("/metrics").status_code == 200


def test_413_from_content_length(api) -> None:
    r = api.post("/v1/predict", content=b" " * 20_001, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]


def test_413_while_streaming_a_body_without_length(api) -> None:
    def chunks():
        for _ in range(30):
            yield b" " * 1000

    r = api.post("/v1/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_413_for_too_many_records(api, toy) -> None:
    r = predict(api, *(toy.record(i) for i in range(11)))
    assert r.status_code == 413 and "max_records (10)" in r.json()["detail"]


def test_cors_is_off_by_default(api) -> None:
    r = api.options("/v1/predict", headers={"Origin": "https://evil.example",
                                            "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


# ---- feedback and the prediction log ---------------------------------------------------------------
def test_feedback_is_durable_404_and_409(api, toy) -> None:
    rid = predict(api, toy.record(2)).json()["request_id"]       # still in the writer's queue
    r = api.post("/v1/feedback", json={"request_id": rid, "label": 1})
    assert r.status_code == 201, r.text
    stored = toy.ws.catalog.get_prediction(rid)
    assert stored is not None and stored["version"] == 1          # flushed before the feedback
    assert api.post("/v1/feedback", json={"request_id": rid, "label": 0}).status_code == 409
    assert api.post("/v1/feedback", json={"request_id": "no-such-id", "label": 1}).status_code == 404
    forged = rid[:32] + "0" * 8
    assert api.post("/v1/feedback", json={"request_id": forged, "label": 1}).status_code == 404
    bad = api.post("/v1/feedback", json={"request_id": rid, "label": 7})
    assert bad.status_code == 422 and "must be one of 0, 1" in bad.json()["message"]
    assert bad.json()["detail"][0]["field"] == "label"                   # shaped like every 422


def test_feedback_addresses_each_record_of_a_multi_record_request(api, toy) -> None:
    preds = predict(api, toy.record(3), toy.record(4)).json()["predictions"]
    for p, label in zip(preds, (0, 1), strict=True):
        assert api.post("/v1/feedback", json={"request_id": p["request_id"], "label": label}).status_code == 201
    with toy.ws.catalog.tx() as c:
        got = c.exec_driver_sql("select label from feedback where request_id = ?",
                                (preds[1]["request_id"],)).scalar()
    assert str(got) == "1"


def test_every_prediction_reaches_the_log(api, toy) -> None:
    ids = [predict(api, toy.record(i)).json()["request_id"] for i in range(10, 20)]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and toy.ws.catalog.get_prediction(ids[-1]) is None:
        time.sleep(0.05)
    row = toy.ws.catalog.get_prediction(ids[0])
    assert row["inputs"]["amount"] == toy.record(10)["amount"] and row["output"]["label"] in (0, 1)
    assert row["latency_ms"] > 0 and all(toy.ws.catalog.get_prediction(i) for i in ids)


# ---- model, metrics, docs ---------------------------------------------------------------------------
def test_model_endpoint(api) -> None:
    m = api.get("/v1/model").json()
    assert (m["name"], m["version"], m["variant"], m["reason"]) == ("toy", 1, "onnx", None)
    assert m["input_schema"]["target"] == "y" and "f1_macro" in m["metrics"]
    assert m["onnx_check"]["max_abs_diff"] <= 1e-4 and m["serving"]["api_keys"] is True


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_cache_hits_are_counted(api, toy) -> None:
    rec = {**toy.record(30), "amount": 123.456}
    before = _metric(api.get("/metrics").text, 'modelloop_cache_lookups_total{result="hit"}')
    first, second = predict(api, rec).json(), predict(api, rec).json()
    assert first["predictions"][0]["probabilities"] == second["predictions"][0]["probabilities"]
    assert first["request_id"] != second["request_id"]            # a cached answer is a new request
    text = api.get("/metrics").text
    assert _metric(text, 'modelloop_cache_lookups_total{result="hit"}') == before + 1
    assert 0 < _metric(text, "modelloop_cache_hit_ratio") < 1


def test_metrics_expose_the_documented_names(api, toy) -> None:
    predict(api, toy.record(0))
    text = api.get("/metrics").text
    for name in ("modelloop_requests_total", "modelloop_request_duration_seconds_bucket",
                 "modelloop_batch_size_bucket", "modelloop_inference_duration_seconds_bucket",
                 "modelloop_errors_total", "modelloop_model_version", "modelloop_model_onnx",
                 "modelloop_model_ready", "modelloop_reloads_total", "modelloop_cache_lookups_total",
                 "modelloop_cache_hit_ratio", "modelloop_prediction_log_pending",
                 "modelloop_prediction_log_rows_total", "modelloop_feedback_total"):
        assert name in text, name
    assert _metric(text, 'modelloop_model_version{name="toy"}') == 1
    assert _metric(text, 'modelloop_requests_total{endpoint="/v1/predict",status="200"}') >= 1
    assert "_created" not in text


def test_errors_are_counted_by_kind(api, url, toy) -> None:
    predict(api, {"nope": 1})
    httpx.post(f"{url}/v1/predict", json={"records": [toy.record(0)]})
    text = api.get("/metrics").text
    assert _metric(text, 'modelloop_errors_total{kind="validation"}') >= 1
    assert _metric(text, 'modelloop_errors_total{kind="auth"}') >= 1


def test_openapi_shows_the_model_input_schema(api) -> None:
    spec = api.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    record = spec["components"]["schemas"]["toy_v1_record"]
    assert set(record["required"]) == {"amount", "age", "country", "online", "signup"}
    assert "y" not in record["properties"] and "tid" in record["properties"]


# ---- lifecycle --------------------------------------------------------------------------------------
def test_clean_shutdown_flushes_the_log(toy) -> None:
    cfg = ServeConfig(log_flush_ms=60_000, log_batch=100_000, reload_poll_seconds=0)
    app = create_app(toy.ws, config=cfg, api_keys=[])
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        ids = [c.post("/v1/predict", json={"records": [toy.record(i)]}).json()["request_id"]
               for i in range(25)]
        assert app.state.serving.plog.pending == 25                  # nothing written yet
    assert all(toy.ws.catalog.get_prediction(i) is not None for i in ids)


def test_unconvertible_model_is_served_natively_and_says_why(toy, monkeypatch) -> None:
    from modelloop.families.tabular import export as export
    from modelloop.families.tabular import serve as runtime  # the tabular family's served graph

    def boom(model, **kw):
        raise RuntimeError("converter exploded")

    original = runtime._onnx_session
    monkeypatch.setattr(export, "to_onnx", boom)
    monkeypatch.setattr(runtime, "_onnx_session", lambda ws, row, atol, use_cache=True, plan=None:
                        original(ws, row, atol, False, plan))
    app = create_app(toy.ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        m = c.get("/v1/model").json()
        assert m["variant"] == "native" and "converter exploded" in m["reason"]
        native = c.post("/v1/predict", json={"records": [toy.record(i) for i in range(5)]}).json()
        assert native["model"]["variant"] == "native"
        assert "modelloop_model_onnx{name=\"toy\"} 0.0" in c.get("/metrics").text
    monkeypatch.undo()
    onnx_app = create_app(toy.ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])
    with running(onnx_app) as base, httpx.Client(base_url=base, timeout=30) as c:
        onnx = c.post("/v1/predict", json={"records": [toy.record(i) for i in range(5)]}).json()
    for a, b in zip(native["predictions"], onnx["predictions"], strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


def test_request_ids_are_unique_verifiable_and_not_shared_with_a_fork(toy) -> None:
    """Ids come from a buffered OS random stream: a forked worker must not replay the parent's bytes."""
    import os

    from modelloop.serving.app import ServerState
    from modelloop.serving.config import ServeConfig

    state = ServerState(toy.ws, ServeConfig(), api_keys=[], secret=b"k" * 16)
    ids = [state.new_request_id() for _ in range(2000)]  # several refills of the buffer
    assert len(set(ids)) == len(ids) and all(state.issued(i) and len(i) == 40 for i in ids)
    stamps = [i[:12] for i in ids]  # time first (ms): the log's primary key grows at its end
    assert stamps == sorted(stamps) and abs(int(stamps[0], 16) / 1000 - __import__("time").time()) < 60
    legacy = "ab" * 12
    legacy += __import__("hmac").new(b"k" * 16, legacy.encode(), "sha256").hexdigest()[:8]
    assert state.issued(legacy) and state.issued(legacy + "-3")  # 32-char ids of earlier releases
    hmac40 = ids[0][:32] + __import__("hmac").new(b"k" * 16, ids[0][:32].encode(), "sha256").hexdigest()[:8]
    assert state.issued(hmac40)  # 40-char ids signed with HMAC-SHA256 before the BLAKE2b MAC
    assert not state.issued(ids[0][:32] + "0" * 8) and not state.issued(ids[1][:32] + ids[0][32:])
    assert not ServerState(toy.ws, ServeConfig(), api_keys=[], secret=b"x" * 16).issued(ids[0])
    assert not state.issued("\u00c1" * 40) and not state.issued(ids[0][:-1] + "\u00e9")  # no TypeError
    assert not state.issued(ids[0] + "-\u0663")  # an Arabic-Indic digit is not an index
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the next id from the inherited state
        os.write(write, state.new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert state.issued(child) and child != state.new_request_id()
