"""The operations kit parses and refers only to metrics the server exports; the package stays light."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources

import yaml

import modelloop.serving as serving
from modelloop.compute.metrics import QueueCollector
from modelloop.serving.metrics import ServingMetrics

OPS = resources.files("modelloop") / "ops"


def _exported() -> set[str]:
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    queue = QueueCollector(lambda: None, lambda: None)  # type: ignore[arg-type, return-value]  # names only
    for metric in (*ServingMetrics().registry.collect(), *queue.describe()):
        names.update(metric.name + s for s in suffixes[metric.type])
    return names | {"up"}


def _used(expr: str) -> set[str]:
    return set(re.findall(r"\b(modelloop_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$|\s*[=<>!])", expr))


def test_alert_rules_are_valid_and_use_exported_metrics() -> None:
    rules = yaml.safe_load((OPS / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"ModelloopServerDown", "ModelloopHighLatencyP99", "ModelloopHighErrorRate",
            "ModelloopModelVersionChanged", "ModelloopHighPriorityJobWaiting"} <= names
    exported = _exported()
    for rule in rules:
        used = _used(rule["expr"])
        assert used and used <= exported, (rule["alert"], used - exported)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]


def test_grafana_dashboard_is_valid_and_uses_exported_metrics() -> None:
    dash = json.loads((OPS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for words in ("latency", "error", "batch size", "cache hit", "model version", "job queue", "pool utilisation"):
        assert words in titles
    exported = _exported()
    for expr in exprs:
        used = _used(expr)
        assert used and used <= exported, (expr, used - exported)


def test_public_names_exist_and_import_is_light() -> None:
    assert serving.__all__ == ["ServeConfig", "create_app", "serve"]
    assert all(callable(getattr(serving, n)) for n in serving.__all__)
    code = ("import sys, modelloop.serving as s; s.ServeConfig(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_config_defaults_and_errors() -> None:
    import pytest
    from pydantic import ValidationError

    cfg = serving.ServeConfig()
    assert (cfg.host, cfg.port, cfg.workers, cfg.max_batch_size, cfg.cors_origins, cfg.cache_size) == \
        ("127.0.0.1", 8000, 1, 64, [], 0)
    with pytest.raises(ValidationError):
        serving.ServeConfig(max_batchsize=3)
