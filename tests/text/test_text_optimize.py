"""``modelloop optimize`` on a text model, and serving what it registers: ONNX fp32 / int8 variants
built, checked on the frozen test set, registered with their ONNX file, and served by ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelloop.optimization.optimize import optimize
from modelloop.registry import load_model, resolve_model
from modelloop.serving.runtime import load_runtime

TEXTS = pd.DataFrame({"message": ["please refund my money", "my card was stolen", "where is my package",
                                  "", "refund " * 100]})


@pytest.fixture(scope="module")
def trained(trained_text):
    return trained_text("text-opt", classical=False)  # the encoder's variants are what is tested


def test_text_variants_are_built_checked_and_the_best_registered(trained):
    import torch

    ws = trained
    torch_threads = torch.get_num_threads()
    ws.config.serve.text_threads = 3  # every variant timed on the threads serving gives the network
    try:
        out = optimize(ws, variants=["onnx", "onnx_int8_dynamic", "onnx_int8_static"])  # pruned/distilled:
        # tests/text/test_text_compress.py
    finally:
        ws.config.serve.text_threads = None
    assert out["threads"] == 3 and torch.get_num_threads() == torch_threads  # restored afterwards
    by = {v["name"]: v for v in out["variants"]}
    assert list(by) == ["native", "onnx", "onnx_int8_dynamic", "onnx_int8_static"]
    assert by["onnx"]["kept"] and by["onnx"]["agreement"] == 1.0
    assert by["onnx"]["metric_delta"] == pytest.approx(0.0, abs=1e-9)
    for name in ("onnx_int8_dynamic", "onnx_int8_static"):  # built and measured, kept or not by the budget
        assert by[name]["latency_p50_ms"] > 0 and by[name]["metric"] is not None
        assert by[name]["size_bytes"] < by["onnx"]["size_bytes"]
        assert by[name]["kept"] == (by[name]["metric_delta"] >= -ws.config.optimize.max_metric_drop)
    assert out["chosen"] != "native"  # the fp32 graph alone is faster than PyTorch eager at batch 1

    row = resolve_model(ws, f"intents:{out['model']['version']}")
    assert row["parent_version"] == 1 and row["info"]["variant"] == out["chosen"]
    key = "onnx" if out["chosen"] == "onnx" else "onnx_int8"
    assert Path(row["formats"][key]).is_file()

    # served through ONNX Runtime: same labels as the PyTorch model on the same texts
    runtime = load_runtime(ws, f"intents:{row['version']}", text_threads=3)
    assert runtime.variant == key and f"ONNX Runtime ({key}, 3 threads)" in runtime.reason
    assert runtime.text_session.get_session_options().intra_op_num_threads == 3
    served = runtime.predict(TEXTS.to_dict("records"))
    assert [p["windows"] > 1 for p in served] == [False] * 4 + [True]   # 100 words, 64 positions: read whole
    assert not any("truncated" in p for p in served)
    native = load_model(ws, row).predict_proba(TEXTS)
    got = np.array([[p["probabilities"][str(c)] for c in runtime.classes] for p in served])
    assert got.shape == native.shape
    if key == "onnx":
        assert np.allclose(got, native, atol=1e-4)
    assert [p["label"] for p in served][:3] == list(load_model(ws, row).predict(TEXTS.iloc[:3]))

    # the server says it runs in ONNX Runtime, whichever graph (an int8 one too): no ServedNatively alert
    import httpx
    from servers import running

    from modelloop.serving import ServeConfig, create_app

    app = create_app(ws, config=ServeConfig(reload_poll_seconds=0), model=f"intents:{row['version']}", api_keys=[])
    with running(app) as url:
        assert httpx.get(f"{url}/v1/model").json()["variant"] == key
        assert 'modelloop_model_onnx{name="intents"} 1.0' in httpx.get(f"{url}/metrics").text


def test_text_model_without_onnx_variant_is_served_by_pytorch(trained):
    runtime = load_runtime(trained, "intents:1")
    assert runtime.variant == "native" and "modelloop optimize" in runtime.reason
    assert len(runtime.predict(TEXTS.to_dict("records"))) == len(TEXTS)


def test_monitor_compares_the_text_column_of_a_text_model(trained):
    import datetime as dt
    import uuid

    from modelloop.feedback.monitor import monitor

    ws = trained
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    texts = ["我的卡丢了请帮我退款" * (1 + i % 3) for i in range(150)]  # another language, longer
    ws.catalog.add_predictions([
        {"request_id": uuid.uuid4().hex, "name": "intents", "version": 1, "at": now + dt.timedelta(milliseconds=i),
         "inputs": {"message": t}, "output": {"label": "refund", "probabilities": {}}, "latency_ms": 1.0}
        for i, t in enumerate(texts)])
    res = monitor(ws)
    features = res["drift"]["features"]
    assert {"message:chars", "message:words", "message:cjk_share"} <= set(features)
    assert features["message:cjk_share"]["drifted"] and "message:cjk_share" in res["drifted_features"]


def test_variant_sessions_run_on_the_threads_given(trained, tmp_path):
    from modelloop.data.ingest import load_dataset
    from modelloop.families.text.variants import TextVariantBuilder

    _, df, _ = load_dataset(trained)
    builder = TextVariantBuilder(load_model(trained, resolve_model(trained, "intents:1")), df, target="intent",
                                 seed=0, folder=tmp_path, threads=2)
    for name in ("onnx", "onnx_int8_dynamic"):
        assert builder.build(name).session.get_session_options().intra_op_num_threads == 2
