"""The text search keeps a floor of ``train.budget`` however long embedding took (issue 26, long
documents): with 1,500 long reviews on a busy CPU the MiniLM windows' embedding alone outlasted the
600 s budget, and the search then ran only the first candidate's configured trial, never TF-IDF."""

from __future__ import annotations

import time
from types import SimpleNamespace

from modelloop.data.ingest import ingest


def test_a_search_whose_embedding_outlasted_the_budget_still_compares_every_candidate(project, tiny_backbone,
                                                                                     monkeypatch):
    from modelloop.families.text import stage

    ws = project(tiny_backbone, search=True)  # train.budget 60 s; TF-IDF beside the encoder's head
    ingest(ws)
    real = stage._candidates
    skew = {"s": 0.0}

    def slow_candidates(*args, **kwargs):  # embedding "took" 1,000 s: the clock jumps while it runs
        out = real(*args, **kwargs)
        skew["s"] = 1000.0
        return out

    monkeypatch.setattr(stage, "_candidates", slow_candidates)
    monkeypatch.setattr(stage, "time", SimpleNamespace(time=time.time, monotonic=lambda: time.monotonic() + skew["s"]))
    res = stage.train_text(ws)
    assert res["embedding_seconds"] >= 1000
    # each candidate's best score: the encoder's head and TF-IDF (before: one trial, the encoder's configured one)
    assert len(res["backbone"]["validation"]) == 2 and "tfidf" in res["backbone"]["validation"]
    assert res["trials"] >= 2
