"""The OpenAI-compatible routes on a real server on 127.0.0.1, driven by the official ``openai`` client:
answers as offline (greedy), streaming deltas ending the stream, the prediction log, bad input as 400s
naming the field, and a client that leaves mid-stream stops its generation."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from servers import running

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(trained):
    from modelloop.serving import create_app

    with running(create_app(trained.ws)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def test_chat_answers_as_the_model_does_offline(client, trained):
    from gen_toy import FACTS

    for question, _ in FACTS[:3]:
        reply = client.chat.completions.create(model="helpdesk", temperature=0, max_tokens=12,
                                               messages=[{"role": "user", "content": question}])
        assert reply.choices[0].message.content == trained.model.predict([{"prompt": question}])[0]
        assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 5
        assert reply.choices[0].finish_reason in ("stop", "length")


def test_streaming_sends_deltas_that_add_up_to_the_answer(client):
    messages = [{"role": "user", "content": "Where is my order?"}]
    whole = client.chat.completions.create(model="helpdesk", messages=messages, temperature=0, max_tokens=12)
    chunks = list(client.chat.completions.create(model="helpdesk", messages=messages, temperature=0,
                                                 max_tokens=12, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole.choices[0].message.content and len(chunks) > 3
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_ends_with_done(server):
    with httpx.stream("POST", f"{server}/v1/completions", json={"prompt": "Can I", "max_tokens": 5,
                                                                "stream": True}, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[0][6:])["object"] == "text_completion"


def test_completions_seed_stop_and_models(client):
    a = client.completions.create(model="helpdesk", prompt="Returns are", max_tokens=8, temperature=1.5, seed=3)
    b = client.completions.create(model="helpdesk", prompt="Returns are", max_tokens=8, temperature=1.5, seed=3)
    assert a.choices[0].text == b.choices[0].text
    assert [m.id for m in client.models.list().data] == ["helpdesk"]


def test_each_completion_is_logged_with_tokens_and_time_to_first_token(client, trained):
    reply = client.chat.completions.create(model="helpdesk", messages=[{"role": "user", "content": "Can I cancel?"}],
                                           temperature=0, max_tokens=8)
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        row = trained.ws.catalog.get_prediction(reply.id)
        time.sleep(0.2)
    assert row is not None
    assert row["output"]["text"] == reply.choices[0].message.content
    assert row["output"]["completion_tokens"] == reply.usage.completion_tokens
    assert row["output"]["ttft_ms"] > 0 and row["inputs"]["messages"][0]["content"] == "Can I cancel?"


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "退货 " * 400}], "max_tokens": 10}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_bad_requests_are_400_naming_the_field(server, body, field):
    r = httpx.post(f"{server}/v1/chat/completions", json={"model": "helpdesk", **body}, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == field and error["message"].startswith(f"{field}: ")
    if field == "max_tokens":
        assert "serve.max_tokens" in error["message"]
    if field == "messages" and body["messages"]:
        assert "context of" in error["message"]


def test_a_body_that_is_not_utf8_is_400_naming_the_body(server, client):
    r = httpx.post(f"{server}/v1/chat/completions", content=b'{"messages": "\xff\xfe"}',
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="helpdesk", messages=[])


def test_a_client_leaving_mid_stream_stops_its_generation(server, trained):
    body = {"prompt": "Returns", "max_tokens": 200, "temperature": 2.0, "seed": 1, "stream": True}
    whole = httpx.post(f"{server}/v1/completions", json={**body, "stream": False}, timeout=60).json()
    full = whole["usage"]["completion_tokens"]
    if full < 100:
        pytest.skip(f"this seed ended after {full} tokens; the test needs a long generation")
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=60) as r:
        first = next(line for line in r.iter_lines() if line)
        rid = json.loads(first[6:])["id"]
    deadline, row = time.monotonic() + 15, None
    while time.monotonic() < deadline:
        row = trained.ws.catalog.get_prediction(rid)
        if row is not None:
            break
        time.sleep(0.2)
    assert row is not None and row["output"]["completion_tokens"] < full


def test_feedback_on_a_completion_stores_the_rating_or_correction(client, server, trained):
    def ask(question: str) -> str:
        return client.chat.completions.create(model="helpdesk", messages=[{"role": "user", "content": question}],
                                              temperature=0, max_tokens=8).id

    accepted, corrected, refused = ask("Can I cancel?"), ask("运费多少？"), ask("What are your hours?")
    post = lambda body: httpx.post(f"{server}/v1/feedback", json=body, timeout=30)  # noqa: E731
    assert post({"request_id": accepted, "rating": 1}).status_code == 201
    assert post({"request_id": corrected, "rating": -1, "correction": "满99元包邮，否则运费10元。"}).status_code == 201
    assert post({"request_id": refused, "rating": -1}).status_code == 201
    stored = {r["request_id"]: r["label"] for r in trained.ws.catalog.recent_predictions("helpdesk", 50)}
    served = trained.ws.catalog.get_prediction(accepted)["output"]["text"]
    assert stored[accepted] == served
    assert stored[corrected] == "满99元包邮，否则运费10元。"
    assert stored[refused] == {"rating": -1}
    again = post({"request_id": accepted, "rating": 1})
    assert again.status_code == 409
    zero = post({"request_id": ask("Hi"), "rating": 0})
    assert zero.status_code == 422 and "body.rating" in zero.text
    flag = post({"request_id": ask("Hi"), "rating": True})  # a boolean is not a rating
    assert flag.status_code == 422 and "body.rating" in flag.text
    # JSON's 1.0 is the integer 1 (the published schema admits it): accepted as the rating 1
    assert post({"request_id": ask("Can I cancel?"), "rating": 1.0}).status_code == 201


def _scrape(server: str) -> dict[str, float]:
    """The modelloop_generation_* samples of /metrics (name{labels} -> value)."""
    text = httpx.get(f"{server}/metrics", timeout=30).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("modelloop_generation_")}


def test_metrics_and_monitor_report_tokens_per_s_ttft_and_empty_and_truncated_answers(client, server, trained):
    """/metrics counts each completion as it ends; ``modelloop monitor``'s ``serving`` section reads the
    same figures back from the prediction log."""
    from modelloop.feedback.monitor import monitor

    question = [{"role": "user", "content": "Where is my order?"}]
    answer = client.chat.completions.create(model="helpdesk", messages=question, temperature=0, max_tokens=12)
    text = answer.choices[0].message.content
    before = _scrape(server)
    cut = client.chat.completions.create(model="helpdesk", messages=question, temperature=0, max_tokens=1)
    assert cut.choices[0].finish_reason == "length"
    # a stop string at the answer's first character: nothing is sent (an empty answer), finish "stop"
    empty = client.chat.completions.create(model="helpdesk", messages=question, temperature=0, max_tokens=12,
                                           stop=[text[:1] or "x"])
    assert empty.choices[0].message.content == ""
    after = _scrape(server)
    delta = lambda key: after.get(key, 0.0) - before.get(key, 0.0)  # noqa: E731
    assert delta('modelloop_generation_completions_total{finish="length"}') == 1
    assert delta('modelloop_generation_completions_total{finish="stop"}') == 1
    assert delta("modelloop_generation_empty_total") == 1
    assert delta("modelloop_generation_tokens_total") == cut.usage.completion_tokens + empty.usage.completion_tokens
    assert delta("modelloop_generation_ttft_seconds_count") == 2
    assert delta("modelloop_generation_tokens_per_second_count") == 2

    ids = {answer.id, cut.id, empty.id}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ids <= {r["request_id"] for r in
                                                      trained.ws.catalog.recent_predictions("helpdesk", 500)}:
        time.sleep(0.2)
    report = monitor(trained.ws, notify=False)
    rows = [r for r in trained.ws.catalog.recent_predictions("helpdesk", trained.ws.config.monitor.window)
            if "completion_tokens" in (r["output"] or {})]
    figures = report["serving"]
    assert figures["completions"] == len(rows) >= 3
    outputs = [r["output"] for r in rows]
    assert figures["truncated_share"] == pytest.approx(sum(o["finish_reason"] == "length" for o in outputs) / len(rows))
    assert figures["empty_share"] == pytest.approx(sum(not o["text"].strip() for o in outputs) / len(rows))
    assert 0 < figures["truncated_share"] < 1 and 0 < figures["empty_share"] < 1
    tokens = sum(o["completion_tokens"] for o in outputs)
    assert figures["tokens_per_s"] == pytest.approx(tokens / sum(r["latency_ms"] / 1000 for r in rows), rel=1e-2)
    assert 0 < figures["ttft_ms_p50"] <= figures["ttft_ms_p95"]
    assert figures["completion_tokens"]["max"] == max(o["completion_tokens"] for o in outputs)
    assert "Served answers" in open(report["report"], encoding="utf-8").read()
