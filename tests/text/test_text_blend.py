"""The blend of the text search's candidates (TF-IDF + a frozen encoder's head, :mod:`.blend`): kept
only when it beats the best single candidate on validation, served through a real server as it
predicts offline, and the same after the registry's save and load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from servers import predict_all, running

from modelloop.training.search import TrialRecord

USE = "multilingual-use"
_WORDS = ["好", "差", "快", "慢", "贵", "新", "旧", "大"]


def _rows(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts whose words carry one half of the label and 'embeddings' that carry the other half: the
    label is 1 when a + b > 0, a read by TF-IDF (the word 好 or 差), b by the head (a direction of the
    features); each alone is right about 3 times in 4, together nearly always."""
    rng = np.random.default_rng(seed)
    a, b = rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n), rng.normal(0, 1, n)
    texts = ["".join(rng.choice(_WORDS[2:], 3)) + ("好" if v > 0 else "差") + "".join(rng.choice(_WORDS[2:], 2))
             for v in a]
    # USE's 512 dimensions (the registered head scores USE embeddings), each b along a fixed direction
    # plus a little noise
    features = np.outer(b, np.random.default_rng(9).normal(0, 1, 512)) + rng.normal(0, 0.3, (n, 512))
    return texts, features, (a + b > 0).astype(np.int64)


def _candidates(informative: bool) -> dict:
    from modelloop.families.text.candidates import FrozenCandidate, TfidfCandidate
    from modelloop.families.text.config import TextModelConfig

    fit_t, fit_x, y_fit = _rows(160, 0)
    val_t, val_x, y_val = _rows(100, 1)
    if not informative:  # the features say nothing: the head is a coin toss
        fit_x, val_x = (np.random.default_rng(s).normal(0, 1, x.shape) for s, x in ((2, fit_x), (3, val_x)))
    common = dict(settings=TextModelConfig(), y_fit=y_fit, y_val=y_val, classes=["neg", "pos"], metric="f1_macro",
                  class_weight="balanced", seed=0)
    tfidf = TfidfCandidate(**common, fit_texts=fit_t, val_texts=val_t)  # type: ignore[arg-type]
    frozen = FrozenCandidate(**common, backbone=USE, engine="numpy",  # type: ignore[arg-type]
                             features={"fit": fit_x, "val": val_x})
    return {"tfidf": tfidf, USE: frozen}


def _search(cands: dict) -> list[TrialRecord]:
    """Each candidate's configured trial, as the search records it."""
    return [TrialRecord(i, c.family, {"candidate": n, **c.defaults()}, c.run(c.defaults())["value"], "complete", 0.0)
            for i, (n, c) in enumerate(cands.items())]


_CHOSEN: dict[bool, tuple] = {}


def _chosen(informative: bool) -> tuple[dict, list[TrialRecord], dict | None]:
    """(candidates, their trials, the blend chosen), once per case for the module."""
    from modelloop.families.text.blend import choose_blend

    if informative not in _CHOSEN:
        cands = _candidates(informative)
        records = _search(cands)
        blend = choose_blend(cands, records, metric="f1_macro", seed=0, best_single=max(r.value for r in records))
        _CHOSEN[informative] = (cands, records, blend)
    return _CHOSEN[informative]


@pytest.mark.parametrize("informative", [True, False])
def test_the_blend_is_kept_only_when_it_beats_the_best_single_candidate_on_validation(informative):
    from modelloop.families.text.blend import choose_blend

    cands, records, blend = _chosen(informative)
    best = max(r.value for r in records)
    assert blend is not None and [m["candidate"] for m in blend["members"]] == \
        [r.params["candidate"] for r in sorted(records, key=lambda r: -r.value)]
    weights = [m["weight"] for m in blend["members"]]
    assert sum(weights) == pytest.approx(1.0) and blend["folds"] == 5
    pooled = blend["pooled"]
    assert pooled["rows"] == len(cands["tfidf"].y_fit) + len(cands["tfidf"].y_val)
    if informative:  # each half of the signal alone scores ~0.75; together they score far more
        assert blend["kept"] and blend["validation"] > best + 0.03 and min(weights) > 0
        assert pooled["blend"] > pooled["best_member"] + 0.03
        assert "blend" in blend["why"] and "out-of-fold" in blend["why"]
    else:
        assert not blend["kept"] and "kept" in blend["why"]
        assert blend.get("validation", -1) <= best or sorted(weights)[-2] == 0  # (2 members: one weighted 0)
    # one candidate alone is no blend
    assert choose_blend({"tfidf": cands["tfidf"]}, records[:1], metric="f1_macro", seed=0, best_single=best) is None


def test_a_blend_serves_its_rows_as_offline_and_survives_save_and_load(tmp_path):
    """The blend of the informative case, registered as the train stage registers it, behind a real
    server: each answer equals the offline probabilities (TF-IDF through its ONNX graph, the USE head
    through its engine), says its windows, and the model loaded back from the registry scores the same."""
    from modelloop.config import parse_config
    from modelloop.data.ingest import ingest, load_dataset
    from modelloop.families.text.blend import BlendTextModel, build_blend
    from modelloop.registry import load_model, resolve_model, tracker_for
    from modelloop.serving import ServeConfig, create_app
    from modelloop.serving.runtime import load_runtime
    from modelloop.workspace import Workspace

    cands, _, blend = _chosen(True)
    assert blend is not None and blend["kept"]
    unused = {**blend["members"][0], "weight": 0.0}  # a third member the weights left out is not registered
    blend = {**blend, "members": [*blend["members"], unused]}
    model = build_blend(cands, blend, text_column="review", target="sentiment", description={"blend": blend})
    assert isinstance(model, BlendTextModel) and model.describe()["families"] == ["tfidf", "head"]

    texts = [*cands["tfidf"].fit_texts[:18], "房间很干净，服务也很周到。" * 60, "good"]  # a long one: windows > 1
    frame = pd.DataFrame({"review": texts, "sentiment": ["pos", "neg"] * 10})
    frame.to_json(tmp_path / "data.jsonl", orient="records", lines=True, force_ascii=False)
    raw = {"name": "blend", "task": "text_classification",
           "data": {"source": "data.jsonl", "target": "sentiment", "text": "review"}}
    ws = Workspace(parse_config(raw, root=tmp_path))
    ingest(ws)
    row, _, _ = load_dataset(ws)
    tracker = tracker_for(ws)
    with tracker.run("blend") as run_id:
        version = int(tracker.log_model(run_id, model, name="blend"))
    ws.catalog.add_model(name="blend", version=version, run_id=run_id, dataset_id=row["id"],
                         formats={"native": f"models:/blend/{version}"}, metrics={},
                         input_schema=model.schema.to_dict(), info={"task": "binary", "classes": ["neg", "pos"]})
    ws.catalog.set_alias("blend", version, "production")

    loaded = load_model(ws, resolve_model(ws))
    offline = model.predict_proba(frame[["review"]])
    np.testing.assert_allclose(loaded.predict_proba(frame[["review"]]), offline, atol=1e-12)
    runtime = load_runtime(ws)  # its TF-IDF member through its scorer, USE through its engine
    assert runtime.variant == "native" and "scorer" in runtime.reason and "multilingual-use" in runtime.reason
    batch = json.loads(frame[["review"]].to_json(orient="records", force_ascii=False))
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        served = predict_all(url, batch)
    got = np.array([[p["probabilities"][c] for c in ("neg", "pos")] for p in served])
    np.testing.assert_allclose(got, offline, atol=1e-4)
    assert served[-2]["windows"] > 1 and served[0]["windows"] == 1

    from modelloop.families.text.variants import TextVariantBuilder  # what `modelloop optimize` builds

    variant = TextVariantBuilder(model, frame, target="sentiment", seed=0, folder=tmp_path / "opt").build("onnx")
    np.testing.assert_allclose(variant.proba(frame[["review"]]), offline, atol=1e-4)


def test_the_blend_reuses_the_trials_folds_and_spends_only_what_the_search_left():
    """The blend's weights come from its members' trials' out-of-fold predictions, so with those at hand
    it fits nothing and needs no second of train.budget (the search no longer keeps a share back for
    it). Members this process did not cross-validate (a resumed search's earlier trials) are
    cross-validated again only when that, as long as their trials took, fits the seconds left; with
    fewer than two left there is no blend."""
    from dataclasses import replace

    from modelloop.families.text.blend import choose_blend

    cands, records, unlimited = _chosen(True)
    best = max(r.value for r in records)
    at_hand = choose_blend(cands, records, metric="f1_macro", seed=0, best_single=best, seconds=0.0)
    assert at_hand is not None and at_hand["kept"] and at_hand["validation"] == unlimited["validation"]

    fresh = _candidates(True)  # the same rows and trials, no stored folds
    assert all(c.cached_cv(c.defaults()) is None for c in fresh.values())
    timed = [replace(r, duration_s=s) for r, s in zip(records, (4.0, 3.0), strict=True)]
    short = choose_blend(fresh, timed, metric="f1_macro", seed=0, best_single=best, seconds=5.0)
    assert short is not None and not short["kept"] and "train.budget" in short["why"] and "validation" not in short
    assert [m["candidate"] for m in short["members"]] == [m["candidate"] for m in unlimited["members"]]
    again = choose_blend(fresh, timed, metric="f1_macro", seed=0, best_single=best, seconds=60.0)
    assert again is not None and again["kept"] and again["members"] == unlimited["members"]
