"""The family contract suite, in the style of scikit-learn's ``parametrize_with_checks``: every check runs
on every case of every registered family. A check that does not apply to a family is listed in
``NOT_APPLICABLE`` with the reason, never deleted. A new family is done when it passes this suite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import CASES, FAMILY_OF_CASE

from modelloop.families import FAMILIES, family_of
from modelloop.families.heads import head_for

NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("anomaly", "export_matches_native"): "no ONNX graph: ECOD/COPOD tails and kNN/LOF distances read the training "
                                          "rows; the anomaly family has no optimized variants (variants = ())",
}
NOT_APPLICABLE.update({
    ("generative", "export_matches_native"): "answers are text, not scores to compare within a tolerance: the "
                                             "onnx / onnx_int8_dynamic variants (KV cache) are checked by their "
                                             "greedy answers in tests/generative/test_onnx_variant.py",
})
NOT_APPLICABLE.update({
    ("recommend", "export_matches_native"): "no ONNX graph: a recommender is served natively from its factors and "
                                            "per-user index (variants = ())",
})
NOT_APPLICABLE.update({  # by case, where one case of a family differs from the others
    ("text-chinese", "export_matches_native"): "a frozen multilingual encoder is served by its own engine (the USE "
                                               "ONNX graph with onnxruntime-extensions) and a numpy head: there is "
                                               "no graph of the model's own to export (optimize says so)",
})
TRIALS = 2


def _assert_same(a: np.ndarray, b: np.ndarray, **tolerance: float) -> None:
    """Scores within tolerance; text answers (a generation head's) equal as text."""
    if np.asarray(a).dtype == object or np.asarray(b).dtype == object:
        assert [str(x) for x in np.ravel(a)] == [str(x) for x in np.ravel(b)]
    else:
        np.testing.assert_allclose(a, b, **tolerance)


class Trained:
    """A case's project, ingested and trained once (``TRIALS`` trials), and its registered version."""

    def __init__(self, case: str, root: Path):
        from modelloop.config import parse_config
        from modelloop.project import Project

        root.mkdir(parents=True, exist_ok=True)
        self.case, self.root = case, root
        self.raw = CASES[case](root)
        self.project = Project(parse_config(self.raw, root=root))
        self.ws = self.project.workspace
        self.project.ingest()
        self.summary = self.project.train(trials=TRIALS, budget=120)
        self.row = self.ws.catalog.get_model(self.summary["model"]["name"], self.summary["model"]["version"])
        self.family = family_of(self.row)
        self.head = head_for(self.row["info"])
        self.native = self.family.load(self.ws, self.row)
        from modelloop.data.ingest import load_dataset

        _, df, self.schema = load_dataset(self.ws)
        internal = [c for c in df.columns if c.startswith("_")]  # the dataset's row ids, never sent
        target = [self.raw["data"]["target"]] if "target" in self.raw["data"] else []  # a recommender has none
        self.frame = df.drop(columns=[*target, *internal]).head(40).reset_index(drop=True)
        self.records = json.loads(self.frame.to_json(orient="records", date_format="iso"))

    def native_scores(self, frame: pd.DataFrame) -> np.ndarray:
        if self.head.name == "generation":  # answers are text, compared as text
            return np.asarray(self.native.predict(frame), dtype=object)
        if self.head.name == "regression":
            return np.asarray(self.native.predict(frame), dtype=np.float64)
        return np.asarray(self.native.predict_proba(frame), dtype=np.float64)


_TRAINED: dict[str, Trained] = {}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    def get(case: str) -> Trained:
        if case not in _TRAINED:
            _TRAINED[case] = Trained(case, tmp_path_factory.mktemp(case))
        return _TRAINED[case]

    yield get
    _TRAINED.clear()


# ---------------------------------------------------------------------------------------------- checks
def check_fit_predict_shapes(t: Trained, tmp_path: Path) -> None:
    """Predictions of the right shape and type, through the head the version recorded."""
    assert t.row["family"] == FAMILY_OF_CASE[t.case]
    assert t.row["info"]["head"] == t.head.name
    scores = t.native_scores(t.frame)
    outputs = t.head.outputs(scores)
    assert len(outputs) == len(t.frame)
    if t.head.name == "classification":
        assert scores.shape == (len(t.frame), len(t.head.classes or []))
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
        assert {o["label"] for o in outputs} <= set(t.head.classes or [])
    elif t.head.name == "anomaly":  # the calibrated score, then each feature's share of the deviation
        assert scores.shape == (len(t.frame), 1 + len(t.head.features)) and np.isfinite(scores).all()
        assert ((scores[:, 0] >= 0) & (scores[:, 0] <= 1)).all()
        assert all(isinstance(o["score"], float) and isinstance(o["is_anomaly"], bool) for o in outputs)
        assert all(bool(o["reasons"]) == o["is_anomaly"] for o in outputs)
    elif t.head.name == "generation":  # one answer (text) per record
        assert scores.shape == (len(t.frame),) and all(isinstance(s, str) for s in scores)
        assert [o["text"] for o in outputs] == list(scores)
    else:
        assert scores.shape == (len(t.frame),) and np.isfinite(scores).all()
        assert all(isinstance(o["value"], float) for o in outputs)


def check_seeded_determinism(t: Trained, tmp_path: Path) -> None:
    """The same data, config and seed give the same model, whichever folder it is trained in."""
    again = Trained(t.case, tmp_path / "again")
    _assert_same(again.native_scores(t.frame), t.native_scores(t.frame), rtol=0, atol=1e-9)


def check_registry_round_trip(t: Trained, tmp_path: Path) -> None:
    """The model loaded back from the registry scores its test split as registration recorded."""
    from modelloop.evaluation.evaluate import evaluate

    again = evaluate(t.ws, model=f"{t.row['name']}:{t.row['version']}")
    for name, value in t.row["metrics"].items():
        if value is not None:
            assert again["metrics"][name] == pytest.approx(value, abs=1e-9), name


def check_served_equals_native(t: Trained, tmp_path: Path) -> None:
    """The served object's answers equal the native model's within the stated tolerance."""
    from modelloop.serving.runtime import ONNX_ATOL, load_runtime

    runtime = load_runtime(t.ws)
    served, _ = runtime.score_records(runtime.validator.validate_json(
        json.dumps({"records": t.records}).encode()))
    _assert_same(served, t.native_scores(t.frame), atol=ONNX_ATOL * 10, rtol=1e-4)
    if t.head.name == "classification":  # the same decisions, threshold included
        assert [o["label"] for o in runtime.head.outputs(served)] == \
            [o["label"] for o in t.head.outputs(t.native_scores(t.frame))]


def check_export_matches_native(t: Trained, tmp_path: Path) -> None:
    """The family's ONNX export, built as ``modelloop optimize`` builds it, agrees with the native model."""
    from modelloop.data.ingest import load_dataset

    _, df, _ = load_dataset(t.ws)
    make = t.family.variant_maker(t.native, df, target=t.raw["data"]["target"], seed=0, scratch=tmp_path,
                                  max_drop=0.01, threads=1)
    exported = make("onnx")
    np.testing.assert_allclose(np.asarray(exported.fn(t.frame), dtype=np.float64).reshape(
        t.native_scores(t.frame).shape), t.native_scores(t.frame), atol=1e-3)


def check_malformed_request_422(t: Trained, tmp_path: Path) -> None:
    """A record with a wrong type is answered 422 by a real server, naming the field."""
    import httpx
    from servers import running

    from modelloop.serving import create_app

    runtime_field = t.schema.features()[0] if t.schema.features() else t.schema.text
    bad = {**t.records[0], runtime_field: {"not": "a value"}}
    with running(create_app(t.ws)) as url:
        ok = httpx.post(f"{url}/v1/predict", json={"records": t.records[:3]}, timeout=30)
        refused = httpx.post(f"{url}/v1/predict", json={"records": [bad]}, timeout=30)
    assert ok.status_code == 200, ok.text
    assert refused.status_code == 422
    assert f"records[0].{runtime_field}" in refused.text


def check_drift_features(t: Trained, tmp_path: Path) -> None:
    """Drift is computed for every column the family declares, against served traffic."""
    from modelloop.feedback.monitor import drift_report

    columns = t.family.drift_columns(t.schema)
    assert columns
    outputs = t.head.outputs(t.native_scores(t.frame))
    recent = [{"inputs": r, "output": o} for r, o in zip(t.records, outputs, strict=True)]
    report = drift_report(t.ws, t.row, recent)
    for column in columns:
        assert any(key == column or key.startswith(f"{column}:") for key in report["features"]), \
            (column, list(report["features"]))


def check_search_resumes(t: Trained, tmp_path: Path) -> None:
    """A search stopped after some trials resumes from them: the next run adds trials, not restarts."""
    more = t.project.train(trials=TRIALS + 1, budget=120)
    assert more["resumed_trials"] == TRIALS
    assert more["trials"] == TRIALS + 1


def check_batch_predict_equals_served(t: Trained, tmp_path: Path) -> None:
    """``modelloop predict`` writes the served answers as columns next to the input's."""
    from modelloop.serving.batch import predict_file
    from modelloop.serving.runtime import load_runtime

    src, dst = tmp_path / "in.csv", tmp_path / "out.parquet"
    t.frame.to_csv(src, index=False)
    result = predict_file(t.ws, src, dst, chunk_rows=7)
    out = pd.read_parquet(dst)
    assert result["rows"] == len(t.frame) == len(out)
    runtime = load_runtime(t.ws)
    served = runtime.head.columns(runtime.score_records(runtime.validator.validate_json(
        json.dumps({"records": t.records}).encode()))[0])
    # the input's columns first; one with an answer's name (a ratings file's rating) kept as given_<name>
    kept = [f"given_{c}" if c in served else c for c in t.frame.columns]
    assert list(out.columns[: len(t.frame.columns)]) == kept
    for c in t.frame.columns:
        if c in served:
            assert [str(v) for v in out[f"given_{c}"]] == [str(v) for v in t.frame[c]]
    for name, values in served.items():
        if values.dtype.kind == "f":
            # 1e-6: a float32 network scores a 7-row chunk and the whole batch with other matrix shapes
            # (padding to each batch's longest text), which moves probabilities by ~5e-8; labels stay equal
            np.testing.assert_allclose(out[name].to_numpy(dtype=float), values, atol=1e-6)
        else:
            assert [str(v) for v in out[name]] == [str(v) for v in values]


CHECKS = [check_fit_predict_shapes, check_seeded_determinism, check_registry_round_trip,
          check_served_equals_native, check_export_matches_native, check_malformed_request_422,
          check_drift_features, check_search_resumes, check_batch_predict_equals_served]


def test_every_family_has_a_case():
    assert set(FAMILY_OF_CASE.values()) == set(FAMILIES)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("case", list(CASES))
def test_family_contract(case: str, check: Any, trained, tmp_path: Path) -> None:
    name = check.__name__.removeprefix("check_")
    reason = NOT_APPLICABLE.get((case, name)) or NOT_APPLICABLE.get((FAMILY_OF_CASE[case], name))
    if reason:
        pytest.skip(reason)
    if FAMILY_OF_CASE[case] == "text":
        pytest.importorskip("torch")
    check(trained(case), tmp_path)
