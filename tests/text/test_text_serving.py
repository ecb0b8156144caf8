"""A text model behind the real HTTP server on 127.0.0.1: raw text in, the server tokenizes; bad
texts get a 422 that says what to send; a text longer than the model's maximum is scored on its
first ``max_length`` tokens, and the answer and ``/metrics`` both say so."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from servers import running

from modelloop.serving import ServeConfig, create_app


@pytest.fixture(scope="module")
def served(trained_text):
    ws = trained_text("text-serve", classical=False)  # the MiniLM-like encoder's serving path
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        yield url, ws


def _truncated(served) -> float:
    url, _ = served
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("modelloop_texts_truncated_total"))


def test_raw_text_is_tokenized_and_scored_by_the_server(served):
    import pandas as pd

    from modelloop.registry import load_model, resolve_model

    url, ws = served
    sent = ["please refund my money", "my card was stolen", "where is my package"]
    r = httpx.post(f"{url}/v1/predict", json={"records": [{"message": t} for t in sent]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    model = load_model(ws, resolve_model(ws, "intents@production"))
    want = model.predict_proba(pd.DataFrame({"message": sent}))
    got = [[p["probabilities"][str(c)] for c in model.classes_] for p in preds]
    assert np.allclose(got, want, atol=1e-5)            # the same tokens, the same network
    assert not any("truncated" in p for p in preds)      # short texts: nothing cut, nothing said


def test_the_model_endpoint_says_how_many_tokens_the_model_reads(served):
    described = httpx.get(f"{served[0]}/v1/model").json()
    assert described["text"]["column"] == "message" and described["text"]["method"] == "head"
    assert described["text"]["max_length"] == 64          # the tiny backbone's 64 positions, not the 128 asked


def test_a_text_longer_than_the_model_takes_is_read_in_windows_and_cut_only_past_the_last(served):
    url, ws = served
    before = _truncated(served)
    long = "please refund my money " * 200                 # ~800 tokens; the tiny model takes 64 a window
    endless = "please refund my money " * 2000             # past 64 windows: cut, said and counted
    records = [{"message": long}, {"message": "my card was stolen"}, {"message": endless}]
    r = httpx.post(f"{url}/v1/predict", json={"records": records})
    assert r.status_code == 200, r.text
    first, second, third = r.json()["predictions"]
    assert first["windows"] > 10 and "truncated" not in first and second["windows"] == 1
    assert third["windows"] == 64 and third["truncated"] is True and "truncated" not in second
    assert _truncated(served) == before + 1
    import pandas as pd

    from modelloop.registry import load_model, resolve_model

    model = load_model(ws, resolve_model(ws, "intents@production"))
    want = model.predict_proba(pd.DataFrame(records))  # offline reads the same windows
    np.testing.assert_allclose([[p["probabilities"][str(c)] for c in model.classes_] for p in (first, second, third)],
                               want, atol=1e-5)


@pytest.mark.parametrize(("record", "says"), [
    ({"message": ""}, "records[0].message: must be a non-empty string (the text to classify), got \"\""),
    ({"message": "   "}, "must be a non-empty string"),
    ({"message": None}, "must be a non-empty string (the text to classify), got null"),
    ({"message": 5}, "got 5"),
    ({}, "records[0].message: required field is missing (the text to classify, a non-empty string)"),
    ({"msg": "hi"}, "unknown field (did you mean 'message'?); allowed: message"),
])
def test_a_bad_text_is_a_422_that_says_what_to_send(served, record, says):
    r = httpx.post(f"{served[0]}/v1/predict", json={"records": [record]})
    assert r.status_code == 422 and says in r.json()["message"], r.text


def test_a_cleaned_text_model_replays_its_text_normalisation_when_served(trained_text):
    """Trained on NFKC-normalised texts: a full-width request is normalised by the server before
    the tokenizer sees it (without the replay, the tiny WordPiece vocabulary reads [UNK]s)."""
    import pandas as pd

    from modelloop.registry import load_model, resolve_model

    # case upper: the training texts change, so cleaning makes a new version with a plan (the
    # tokenizer lowercases again); NFKC is what a full-width request needs
    rule = {"action": "normalize_text", "columns": ["message"], "unicode": "NFKC", "case": "upper"}
    ws = trained_text("text-clean", clean=[rule])
    model = load_model(ws, resolve_model(ws, "intents@production"))
    assert model.cleaning_plan_ is not None
    plain, wide = "refund my money back", "ｒｅｆｕｎｄ ｍｙ ｍｏｎｅｙ ｂａｃｋ"
    raw = model.predict_proba([wide])             # a list skips the plan: what no replay would serve
    want = model.predict_proba(pd.DataFrame({"message": [plain]}))
    assert not np.allclose(raw, want, atol=1e-3)
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        r = httpx.post(f"{url}/v1/predict", json={"records": [{"message": wide}]})
    assert r.status_code == 200, r.text
    got = [r.json()["predictions"][0]["probabilities"][str(c)] for c in model.classes_]
    assert np.allclose(got, want[0], atol=1e-5)
