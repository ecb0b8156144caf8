"""The runtime: ONNX conversion, the check against the native model, the cache, the native fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelloop.families.tabular import export as export
from modelloop.registry import load_model, resolve_model
from modelloop.families.tabular.serve import PACKED_INPUT, _FeedPlan, _pack, input_map, packed_inputs
from modelloop.serving.runtime import ONNX_ATOL, load_runtime, onnx_path, to_records


@pytest.fixture(scope="module")
def native(toy):
    return load_model(toy.ws, resolve_model(toy.ws, "toy:1"))


def test_onnx_is_converted_cached_and_recorded(toy) -> None:
    rt = load_runtime(toy.ws, "toy:1")
    assert rt.variant == "onnx" and rt.reason is None
    row = toy.ws.catalog.get_model("toy", 1)
    path = onnx_path(toy.ws, "toy", 1)
    assert row["formats"]["onnx"] == str(path) and path.is_file()
    assert row["info"]["onnx_check"]["max_abs_diff"] <= ONNX_ATOL
    assert row["info"]["onnx_check"]["rows"] > 200
    assert not list(path.parent.glob(".*.tmp"))           # the write was atomic
    again = load_runtime(toy.ws, "toy:1")                  # now from the cached file
    assert again.variant == "onnx" and again.check["path"] == str(path)


EDGE = [{"amount": None, "country": None, "online": None, "signup": None},
        {"country": "never-seen", "age": 10**6, "online": False, "signup": "2024-03-31T23:30:00"},
        {"country": "", "amount": 1e-3, "signup": "2024-02-29T23:59:59+02:00"},
        {"signup": "2023-12-31T22:15:00Z"}, {"signup": "1999-01-01 00:00:01.250"},
        {"signup": "03/05/2024 08:55"}, {"signup": "March 5, 2024 8:55 PM"}, {"signup": "not a date"}]


def test_fast_feed_equals_onnx_inputs_record_by_record(toy, native) -> None:
    """The pandas-free feed is the ``onnx_inputs`` contract (missing values, unseen categories, time
    zones and ISO variants included) and a record's feed does not depend on its batch neighbours.

    Compared as a whole batch and record by record (a batch mixing ``2024-01-01`` and
    ``2024-01-01T10:00:00`` once lost one of them to pandas' one-format parse).
    """
    records = [toy.record(i) for i in range(12)] + [{**toy.record(i), **e} for i, e in enumerate(EDGE)]
    plan = _FeedPlan(native.schema)
    batch = plan.feed(records)
    whole = export.onnx_inputs(native, pd.DataFrame.from_records(records))  # the batch parses as one
    for name, want in whole.items():
        got = batch[name]
        if want.dtype.kind == "f":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert got.astype(str).tolist() == want.astype(str).tolist(), name
    for k, rec in enumerate(records):
        fast = plan.feed([rec])
        slow = export.onnx_inputs(native, pd.DataFrame.from_records([rec]))
        assert sorted(fast) == sorted(slow) == sorted(batch)
        for name, want in slow.items():
            assert fast[name].shape == want.shape == (1, 1), name
            got, in_batch = fast[name][0, 0], batch[name][k, 0]
            if want.dtype.kind == "f":
                np.testing.assert_array_equal([got, in_batch], [want[0, 0]] * 2, err_msg=f"{k} {name}")
            else:
                assert str(got) == str(in_batch) == str(want[0, 0]), (k, name)


def test_served_session_takes_the_float_columns_as_one_tensor(toy, native) -> None:
    """The stored graph keeps one input per prepared column (the export contract); the session the
    server opens takes every float column in one ``[N, k]`` tensor and answers exactly as the stored
    graph does when fed column by column."""
    import onnxruntime as ort

    records = [toy.record(i) for i in range(12)] + [{**toy.record(i), **e} for i, e in enumerate(EDGE)]
    rt = load_runtime(toy.ws, "toy:1")
    packed = packed_inputs(rt.session)
    served = {i.name for i in rt.session.get_inputs()}
    assert packed is not None and len(packed) >= 7 and PACKED_INPUT in served and not served & set(packed)
    stored = ort.InferenceSession(str(onnx_path(toy.ws, "toy", 1)), providers=["CPUExecutionProvider"])
    assert set(packed) <= {i.name for i in stored.get_inputs()}          # the file is left as exported
    plain = _FeedPlan(native.schema).feed(records)
    fed = _FeedPlan(rt.schema, input_map(rt.session, rt.schema), packed=packed).feed(records)  # as rt's scorer
    np.testing.assert_array_equal(fed[PACKED_INPUT], np.hstack([plain[n] for n in packed]))
    assert sorted(set(fed) - {PACKED_INPUT}) == sorted(set(plain) - set(packed))   # the string inputs
    np.testing.assert_array_equal(rt.session.run(["probabilities"], fed)[0],
                                  stored.run(["probabilities"], plain)[0])


@pytest.mark.parametrize("order", ["reversed", "one float"])
def test_packed_feed_follows_the_graphs_column_order(toy, native, order) -> None:
    """A graph may interleave the float columns with a datetime's parts: the packed tensor's column
    ``j`` is the per-column input named ``packed[j]``, whatever the order."""
    from modelloop.data.schema import Schema

    schema = native.schema
    if order == "one float":
        keep = {c: k for c, k in schema.columns.items() if k not in ("numeric", "boolean") or c == "amount"}
        schema = Schema(columns=keep, target=schema.target)
    records = [toy.record(i) for i in range(5)] + [{**toy.record(0), **e} for e in EDGE]
    plain = _FeedPlan(schema).feed(records)
    floats = [n for n, a in plain.items() if a.dtype.kind == "f"]
    packed = floats[::-1]
    fed = _FeedPlan(schema, packed=packed).feed(records)
    assert len(floats) == (7 if order == "one float" else 9)
    np.testing.assert_array_equal(fed[PACKED_INPUT], np.hstack([plain[n] for n in packed]))


def test_a_graph_with_one_float_input_is_left_alone() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    _pack(model)
    assert model.SerializeToString() == before


def _three_columns(extra_reader: bool):
    from onnx import TensorProto, helper

    cols = ["a", "b", "c"]
    nodes = [helper.make_node("Concat", cols, ["merged"], axis=1), helper.make_node("Identity", ["merged"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])]
    if extra_reader:  # a column read on its own as well
        nodes.append(helper.make_node("Neg", ["b"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(c, TensorProto.FLOAT, [None, 1])
                                           for c in cols], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("extra_reader", [False, True])
def test_packing_skips_a_concat_of_exactly_the_packed_columns(extra_reader) -> None:
    """skl2onnx's graph concatenates the numeric columns first: packed, that Concat (and the Split, when
    nothing else reads a column) would rebuild the tensor the server already fed."""
    import onnxruntime as ort

    model = _three_columns(extra_reader)
    _pack(model)
    ops = [n.op_type for n in model.graph.node]
    assert "Concat" not in ops and ("Split" in ops) == extra_reader
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {PACKED_INPUT: x})
    np.testing.assert_array_equal(out[0], x)
    if extra_reader:
        np.testing.assert_array_equal(out[1], -x[:, 1:2])


def test_served_onnx_agrees_with_native(toy, native) -> None:
    from modelloop.data.ingest import load_dataset

    _, df, _ = load_dataset(toy.ws)
    frame = df[native.schema.features()].head(300)
    rt = load_runtime(toy.ws, "toy:1")
    got = rt.scores(to_records(frame, rt.schema))
    want = native.predict_proba(frame)
    assert np.max(np.abs(got - want)) <= ONNX_ATOL
    labels = [p["label"] for p in rt.predict(to_records(frame, rt.schema))]
    near = np.abs(want[:, 1] - native.threshold_) < 1e-4   # float32 may flip a row on the threshold
    assert all(a == b for a, b, n in zip(labels, native.predict(frame), near, strict=True) if not n)


def test_unconvertible_model_is_served_natively_with_the_reason(toy, monkeypatch) -> None:
    def boom(model, **kw):
        raise RuntimeError("no converter for this estimator")

    monkeypatch.setattr(export, "to_onnx", boom)
    rt = load_runtime(toy.ws, "toy:2", use_cache=False)
    assert rt.variant == "native" and rt.session is None
    assert "no converter for this estimator" in rt.reason
    out = rt.predict([toy.record(0), toy.record(1)])
    assert {p["label"] for p in out} <= {0, 1} and abs(sum(out[0]["probabilities"].values()) - 1) < 1e-6


def test_model_failing_the_check_is_served_natively(toy) -> None:
    rt = load_runtime(toy.ws, "toy:1", atol=0.0, use_cache=False)   # float32 never matches exactly
    assert rt.variant == "native" and "differs" in rt.reason
    assert rt.describe()["reason"] == rt.reason


def test_numbers_beyond_float32_saturate_instead_of_overflowing(toy) -> None:
    import warnings

    rt = load_runtime(toy.ws, "toy:1")
    big = [{**toy.record(0), "amount": 1e300}, {**toy.record(0), "amount": -1e300}]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # the float32 cast warned "overflow" before
        scores = rt.scores(big)
    assert np.isfinite(scores).all()
    assert np.allclose(scores[0], rt.scores([{**toy.record(0), "amount": 3.4e38}])[0])


def test_columns_the_converter_renames_are_still_served_through_onnx(tmp_path) -> None:
    """skl2onnx turns ``"card amount"`` into ``card_amount``: the feed follows the names recorded in
    the graph, so such a model is served by ONNX Runtime, not natively, from a fresh and a cached file."""
    from modelloop.config import parse_config
    from modelloop.project import Project

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"card amount": rng.gamma(2, 50, n), "home country": rng.choice(["FR", "DE", "US"], n),
                       "signed-up at": pd.date_range("2024-01-01", periods=n, freq="h").astype(str)})
    df["y"] = ((df["card amount"] > 100) ^ (rng.random(n) < 0.1)).astype(int)
    df.to_csv(tmp_path / "d.csv", index=False)
    project = Project(parse_config({"name": "sp", "data": {"source": "d.csv", "target": "y"},
                                    "train": {"trials": 2, "cv_folds": 2, "families": ["lightgbm"]}}, root=tmp_path))
    project.ingest()
    project.train()
    native = load_model(project.workspace, resolve_model(project.workspace, "sp:1"))
    frame = df.drop(columns=["y"]).head(50)
    for attempt in ("converted", "cached"):
        rt = load_runtime(project.workspace, "sp:1")
        assert rt.variant == "onnx" and rt.reason is None, (attempt, rt.reason)
        assert "card_amount" in packed_inputs(rt.session)        # renamed, then packed with the other floats
        got = rt.scores(to_records(frame, rt.schema))
        assert np.max(np.abs(got - native.predict_proba(frame))) <= ONNX_ATOL, attempt


def test_a_text_session_takes_each_workers_share_of_the_cpus(monkeypatch) -> None:
    from modelloop.serving import ServeConfig
    from modelloop.serving import runtime

    monkeypatch.setattr(runtime, "available_cpus", lambda: 8)
    assert runtime.text_threads(ServeConfig()) == 8
    assert runtime.text_threads(ServeConfig(workers=3)) == 2          # 3 processes, no oversubscription
    assert runtime.text_threads(ServeConfig(workers=16)) == 1
    assert runtime.text_threads(ServeConfig(workers=3, text_threads=5)) == 5
