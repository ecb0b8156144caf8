"""The loop on a generative model: ratings and corrections on served answers -> ``modelloop retrain``
learns the corrected and accepted pairs (not the refused ones) -> challenger -> the gate compares chrF on
the recent slice and perplexity on the frozen holdout."""

from __future__ import annotations

import httpx
import pytest
from servers import running

openai = pytest.importorskip("openai")


def test_retrain_learns_from_corrections_and_the_gate_decides(trained, capsys):
    from clirun import cli

    from modelloop.serving import create_app

    questions = ["运费多少？", "Can I cancel?", "Where is my order?", "怎么退货？", "What are your hours?", "Hi, can I cancel?"]
    corrections = {"运费多少？": "满199元包邮。", "怎么退货？": "7天内可以退货。"}
    # the session's project may already hold rated answers (the serving tests rate some): they count too
    learnable = lambda: sum(1 for r in trained.ws.catalog.recent_predictions("helpdesk", 10_000)  # noqa: E731
                            if r["label"] is not None and r["label"] != {"rating": -1})
    before = learnable()
    with running(create_app(trained.ws)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        for round_ in range(2):
            for q in questions:
                reply = client.chat.completions.create(model="helpdesk", temperature=0, max_tokens=10,
                                                       messages=[{"role": "user", "content": q}])
                body = {"request_id": reply.id, "rating": -1, "correction": corrections[q]} if q in corrections \
                    else {"request_id": reply.id, "rating": 1 if round_ == 0 else -1}
                assert httpx.post(f"{url}/v1/feedback", json=body, timeout=30).status_code == 201
    code, out, err = cli(["retrain", "--json"], capsys, trained.root)
    assert code == 0, err[-2000:]
    import json

    decision = json.loads(out)
    # 12 rated answers: 4 corrections, 4 accepted, 4 refused without a correction (not learned from)
    assert learnable() - before == 8
    assert decision["added_rows"] == before + 8
    assert decision["metric"] == "chrf (recent), perplexity (holdout)"
    gate = decision["gate"]
    champion, challenger = decision["champion"]["metrics"], decision["challenger"]["metrics"]
    assert "perplexity" in champion["holdout"] and "chrf" in challenger["recent"]
    before, after = champion["holdout"]["perplexity"], challenger["holdout"]["perplexity"]
    assert gate["holdout_drop"] == pytest.approx((after - before) / before)  # a share of the champion's
    expected = gate["recent_gain"] > 0 and gate["holdout_drop"] <= gate["max_holdout_drop"]
    assert decision["promoted"] is expected, decision["reason"]
    from modelloop.data.ingest import load_dataset

    _, merged, _ = load_dataset(trained.ws, decision["dataset"])
    learned = merged[merged["_origin"] == "feedback"]
    assert set(learned["completion"]) >= set(corrections.values())
    assert set(learned["prompt"]) <= set(questions)
