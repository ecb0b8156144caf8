"""The first encoder's embedding is estimated and bounded too (issue 26, long documents): on 1,500 long
reviews the MiniLM windows' embedding, never estimated because it was the first encoder, took 1,452 s of
a 600 s ``train.budget``. A stand-in slow encoder here: the tiny BERT whose ``embed`` sleeps per row."""

from __future__ import annotations

import time

import pytest

from modelloop.data.ingest import ingest

PER_ROW = 0.15  # seconds the stand-in encoder takes a window: 90 texts of one window ~ 13.5 s
BUDGET = 8.0


@pytest.fixture
def slow_encoder(monkeypatch):
    """The PyTorch encoder's network embeds ``PER_ROW`` seconds a window slower; ``calls`` counts the rows."""
    from modelloop.families.text import stage

    real = stage._network_for
    calls = {"rows": 0, "per_row": PER_ROW}

    def network_for(job, params):
        net = real(job, params)
        fast = net.embed

        def embed(input_ids, mask):
            calls["rows"] += int(input_ids.shape[0])
            time.sleep(calls["per_row"] * int(input_ids.shape[0]))
            return fast(input_ids, mask)

        net.embed = embed
        return net

    monkeypatch.setattr(stage, "_network_for", network_for)
    return calls


def _train(ws, budget: float, monkeypatch) -> tuple[dict, float]:
    """The train summary and the seconds of embedding, the search and the blend: what ``train.budget``
    is for (reading the data and starting the tracker's run come before the search, and are charged
    to it, but the first time in a process they import MLflow and the rest for ~20 s on a busy test
    machine; the winner's refit, the test evaluation and the registration come after)."""
    from modelloop.families.text import stage

    marks: dict[str, float] = {}
    blend, search = stage.choose_blend, stage.run_text_search

    def timed_search(*args, **kwargs):
        marks["search"] = time.monotonic()
        return search(*args, **kwargs)

    def timed_blend(*args, **kwargs):
        out = blend(*args, **kwargs)
        marks["blend"] = time.monotonic()
        return out

    monkeypatch.setattr(stage, "choose_blend", timed_blend)
    monkeypatch.setattr(stage, "run_text_search", timed_search)
    res = stage.train_text(ws, budget=budget)
    return res, res["embedding_seconds"] + marks["blend"] - marks["search"]


def test_a_first_encoder_estimated_over_the_budget_is_skipped_and_tfidf_trains_within_it(project, tiny_backbone,
                                                                                       slow_encoder, monkeypatch):
    budget = BUDGET
    ws = project(tiny_backbone, search=True)  # the tiny encoder's head (the first encoder) and TF-IDF
    ingest(ws)
    res, seconds = _train(ws, budget, monkeypatch)
    backbone = res["backbone"]
    name = str(tiny_backbone)
    estimate = backbone["embedding"][name]
    # timed on a sample (16 windows), scaled to the 90 texts' windows: ~13.5 s against the ~6 s left before the floor
    assert estimate["timed"] == "16 windows" and estimate["estimated_s"] > estimate["left_s"] > 0
    assert estimate["estimated_s"] == pytest.approx(90 * PER_ROW, rel=0.3)
    assert slow_encoder["rows"] < 20  # the warm-up and the probe only: the rows were never embedded
    why = backbone["skipped"][name]
    assert "would take" in why and f"train.budget {BUDGET:g} s" in why and f"{name} skipped" in backbone["why"]
    assert backbone["tried"] == [] and backbone["chosen"] == "tfidf" and res["best_family"] == "tfidf"
    assert list(backbone["validation"]) == ["tfidf"]
    assert res["embedding_seconds"] < 0.85 * budget
    # embedding, search and blend (+ ~3 s of opening the study and the first fit in a process): before,
    # 13.5 s of embedding alone
    assert seconds < 1.1 * budget + 3, seconds


def test_an_embedding_that_outruns_its_estimate_is_stopped_at_its_share_of_the_budget(project, tiny_backbone,
                                                                                     slow_encoder, monkeypatch):
    from modelloop.families.text import fit, stage

    budget = BUDGET
    monkeypatch.setattr(fit, "_EMBED_BATCH", 4)  # the deadline is looked at between batches
    monkeypatch.setattr(stage, "_window_seconds", lambda net, windows, job: (0.5, 32))  # a machine that got busy
    ws = project(tiny_backbone, search=True)
    ingest(ws)
    res, seconds = _train(ws, budget, monkeypatch)
    backbone = res["backbone"]
    name = str(tiny_backbone)
    why = backbone["skipped"][name]
    assert "was stopped after" in why and "of 90 windows" in why
    # stopped at its share, 0.85 * 8 s of 0.15 s windows (at most 45, + one batch of 4), not run to all 90
    assert 20 <= slow_encoder["rows"] < 60
    assert backbone["embedding"][name]["seconds"] < 0.85 * budget + 4 * PER_ROW + 0.8  # the deadline, at most one batch
    assert res["best_family"] == "tfidf" and backbone["tried"] == []
    assert seconds < 1.1 * budget + 3 + 4 * PER_ROW, seconds  # + at most one batch of 4 windows past the deadline


def test_a_lone_encoder_without_tfidf_is_embedded_past_the_budget(project, tiny_backbone, slow_encoder,
                                                                  monkeypatch):
    """With ``model.classical`` off and one encoder, leaving it out would leave no model: it is embedded."""
    slow_encoder["per_row"] = 0.05  # 4.5 s against a 3 s budget
    ws = project(tiny_backbone, search=True, classical=False)
    ingest(ws)
    res, _ = _train(ws, 3.0, monkeypatch)
    assert slow_encoder["rows"] >= 90 and "skipped" not in res["backbone"]
    assert res["best_family"] == "head" and res["backbone"]["tried"] == [str(tiny_backbone)]


def test_the_embedding_guess_leaves_out_what_the_encoder_loads_on_first_use(monkeypatch):
    """A frozen encoder loads its engine and its window tokenizer on first use (USE's SentencePiece
    counter: ~0.5 s); the guess times the probe texts after both are loaded, or 8 probes of 4,000
    texts charge that load 500 times (a fresh process guessed 263 s for 10 s of USE embedding, and the
    Chinese sets' encoders were skipped at 300 s)."""
    from modelloop.families.text import encoders, stage

    class FirstUseLoads:
        """Embeds instantly once loaded; loading (engine or tokenizer) takes 0.4 s, once."""

        loaded = False

        def _load(self):
            if not self.loaded:
                time.sleep(0.4)
                self.loaded = True

        def embed(self, texts):  # the engine alone: what the guess warmed up before
            return None

        def embed_pooled(self, texts, **_):
            self._load()

    monkeypatch.setattr(encoders, "frozen_encoder", lambda name, engine, threads=1: FirstUseLoads())
    seconds, probe = stage._embedding_seconds("multilingual-use", ["一段评论"] * 4000)
    assert probe == 8
    assert seconds < 20, f"the guess charged the first-use load to every text: {seconds:.0f} s"
