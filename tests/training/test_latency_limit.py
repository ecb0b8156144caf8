"""train.max_latency_ms end to end: the candidates are timed as the server runs them (ONNX Runtime)."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from modelloop import ConfigError, Project, parse_config
from workspace_copy import copy_project


def _config(**train) -> dict:
    return {"name": "lat", "data": {"source": "d.csv", "target": "y"},
            "train": {"trials": 4, "cv_folds": 3, "families": ["lightgbm", "linear"], **train}}


def _project(root, **train) -> Project:
    data = load_breast_cancer(as_frame=True)
    data.data.iloc[:, :8].assign(y=data.target).to_csv(root / "d.csv", index=False)
    p = Project(parse_config(_config(**train), root=root))
    p.ingest()
    return p


@pytest.fixture(scope="module")
def generous(tmp_path_factory):
    """(root, result): a project trained once under a limit every model meets."""
    root = tmp_path_factory.mktemp("lat")
    return root, _project(root, max_latency_ms=1e6).train()


def _retrained(generous, tmp_path) -> dict:
    """Train a copy of the generous project again, under the same limit: its trials are resumed, none
    refitted, and only the walk of the limit over them (timing each candidate as served) runs again."""
    root, first = generous
    res = Project(parse_config(_config(max_latency_ms=1e6), root=copy_project(root, tmp_path / "lat"))).train()
    assert res["resumed_trials"] == first["trials"] and res["trials"] == first["trials"]
    return res


def test_a_limit_no_model_meets_keeps_the_fastest_timed_and_says_so(tmp_path, capsys):
    res = _project(tmp_path, max_latency_ms=1e-6).train()  # the limit is in the study name: a search of its own
    lat = res["latency"]
    assert lat["met"] is False and lat["limit_ms"] == 1e-6
    assert all(t["latency_ms"] > 0 for t in lat["tried"])          # real timings of the served path
    assert {t["served_as"] for t in lat["tried"]} == {"onnx"}       # each passed the server's own check
    assert lat["latency_ms"] == min(t["latency_ms"] for t in lat["tried"])
    chosen = next(t for t in lat["tried"] if t["latency_ms"] == lat["latency_ms"])
    assert res["families"] == chosen["families"]
    from modelloop.ui import render_train

    render_train(res)
    shown = capsys.readouterr().out
    assert "over train.max_latency_ms" in shown
    # the summary names the model served, not the best trial the limit refused
    served = chosen["families"][0] if len(chosen["families"]) == 1 else f"ensemble of {len(chosen['families'])}"
    assert f"model       {served};" in shown


def test_a_generous_limit_changes_nothing_but_records_the_timing(generous):
    _, res = generous
    lat = res["latency"]
    assert res["resumed_trials"] == 0                                # a search of its own
    assert lat["met"] is True and len(lat["tried"]) == 1             # the OOF choice, timed once
    assert res["families"] == lat["tried"][0]["families"]


def test_a_family_without_the_choice_refuses_the_limit_with_its_advice(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0] * 10}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ConfigError, match="train.max_latency_ms: applies to tabular and text models; an anomaly"):
        parse_config({"task": "anomaly_detection", "data": {"source": "d.csv"},
                      "train": {"max_latency_ms": 1.0}}, root=tmp_path)


def test_a_model_the_server_would_run_natively_is_timed_natively(generous, tmp_path, monkeypatch):
    """The limit is checked against what the server would load: a model whose ONNX graph does not
    match it (here: a conversion that fails) is timed as the native model it would be served as."""
    from modelloop.families.tabular import variants

    def broken(model, name="onnx"):
        raise RuntimeError("no converter")

    monkeypatch.setattr(variants, "onnx_variant", broken)
    res = _retrained(generous, tmp_path)
    assert [t["served_as"] for t in res["latency"]["tried"]] == ["native"]


def test_the_train_summary_says_what_the_limit_cost(capsys):
    """A trimmed choice is reported with the model the search preferred, its latency and OOF score,
    in lines that fit an 80-column terminal."""
    from modelloop.ui import render_train

    tried = [{"kind": "choice", "families": ["xgboost", "lightgbm", "xgboost", "xgboost", "linear"],
              "score": 0.7716, "latency_ms": 0.3458},
             {"kind": "members", "families": ["lightgbm", "xgboost"], "score": 0.7649, "latency_ms": 0.1867}]
    render_train({"model": {"name": "fraud", "version": 1}, "dataset": {"id": "9b68", "version": 1, "rows": 20000},
                  "production": True, "best_family": "xgboost", "families": ["lightgbm", "xgboost"], "trials": 11,
                  "resumed_trials": 0, "seconds": 70.1, "report": "r.html", "metric": "f1_macro",
                  "validation_score": 0.7649, "threshold": 0.61, "test_metrics": {"f1_macro": 0.7746},
                  "rows": {"train": 16000, "test": 4000},
                  "latency": {"limit_ms": 0.2, "latency_ms": 0.1867, "met": True, "tried": tried}})
    lines = capsys.readouterr().out.splitlines()
    assert "  model       ensemble of 2; 11 trials (0 resumed) in 70.1 s" in lines
    assert "  latency     0.187 ms CPU a record, within train.max_latency_ms 0.2" in lines
    assert "              instead of an ensemble of 5: 0.346 ms, OOF 0.7716; 2 timed" in lines
    assert all(len(line) <= 80 for line in lines)
