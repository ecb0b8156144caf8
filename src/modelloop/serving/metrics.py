"""Prometheus metrics of the server (``GET /metrics``); the ops kit in ``modelloop/ops`` uses these names.

=====================================================  ==============================================
name                                                   what
=====================================================  ==============================================
``modelloop_requests_total{endpoint,status}``          HTTP requests answered
``modelloop_request_duration_seconds{endpoint}``       latency histogram (server side)
``modelloop_batch_size``                               records per inference call (histogram)
``modelloop_inference_duration_seconds``               seconds per inference call (histogram)
``modelloop_errors_total{kind}``                       validation, auth, too_large, not_ready,
                                                       not_found, conflict, inference, log_write
``modelloop_model_version{name}``                      version served (changes on a hot swap)
``modelloop_model_onnx{name}``                         1 when served by ONNX Runtime (any graph: fp32, int8), 0 natively
``modelloop_model_ready``                              1 once a model is loaded
``modelloop_reloads_total{result}``                    hot swaps (ok, failed)
``modelloop_cache_lookups_total{result}``              response cache hit / miss
``modelloop_cache_hit_ratio``                          hits / lookups since start
``modelloop_prediction_log_pending``                   rows queued for the prediction log
``modelloop_prediction_log_rows_total``                rows written to the catalog
``modelloop_feedback_total{result}``                   stored, duplicate, unknown
``modelloop_texts_truncated_total``                    texts cut to a text model's max_length
``modelloop_anomaly_records_total``                    records an anomaly model scored
``modelloop_anomaly_alerts_total``                     records it flagged (``is_anomaly``)
``modelloop_anomaly_expected_share{name}``             the share its threshold flags on the training rows
``modelloop_generation_completions_total{finish}``     OpenAI-route completions by finish reason (stop,
                                                       length = truncated at max_tokens, cancelled)
``modelloop_generation_empty_total``                   completions with no text
``modelloop_generation_tokens_total``                  completion tokens generated
``modelloop_generation_ttft_seconds``                  time to the first token (histogram)
``modelloop_generation_tokens_per_second``             each completion's tokens over its wall time (histogram)
=====================================================  ==============================================

With ``--workers N`` the processes share a ``PROMETHEUS_MULTIPROC_DIR`` (set by ``serve``), and any
worker's ``/metrics`` reports the sum over all of them.

Beside these, the project's job queue (``modelloop_jobs_*``, ``modelloop_pool_*``: ``compute/metrics.py``)
is read from the catalog at each scrape (``add_collector``).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "ServingMetrics"]

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_RATES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ServingMetrics:
    """The server's metrics in their own registry (several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import disable_created_metrics

        disable_created_metrics()  # no *_created series: they double the scrape for nothing here
        r = self.registry = CollectorRegistry()
        self.requests = Counter("modelloop_requests_total", "HTTP requests answered",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("modelloop_request_duration_seconds", "request latency (server side)",
                                 ["endpoint"], buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("modelloop_batch_size", "records per inference call",
                                    buckets=_SIZES, registry=r)
        self.inference = Histogram("modelloop_inference_duration_seconds", "seconds per inference call",
                                   buckets=_LATENCY, registry=r)
        self.errors = Counter("modelloop_errors_total", "errors by kind", ["kind"], registry=r)
        self.version = Gauge("modelloop_model_version", "model version served", ["name"],
                             multiprocess_mode="livemax", registry=r)
        self.onnx = Gauge("modelloop_model_onnx", "1 when the model runs in ONNX Runtime", ["name"],
                          multiprocess_mode="livemin", registry=r)
        self.ready = Gauge("modelloop_model_ready", "1 once a model is loaded",
                           multiprocess_mode="livemin", registry=r)
        self.reloads = Counter("modelloop_reloads_total", "model hot swaps", ["result"], registry=r)
        self.cache = Counter("modelloop_cache_lookups_total", "response cache lookups", ["result"],
                             registry=r)
        self.cache_ratio = Gauge("modelloop_cache_hit_ratio", "cache hits / lookups since start",
                                 multiprocess_mode="liveall", registry=r)
        self.log_pending = Gauge("modelloop_prediction_log_pending", "rows queued for the prediction log",
                                 multiprocess_mode="livesum", registry=r)
        self.log_rows = Counter("modelloop_prediction_log_rows_total", "prediction rows written",
                                registry=r)
        self.feedback = Counter("modelloop_feedback_total", "feedback requests", ["result"], registry=r)
        self.truncated = Counter("modelloop_texts_truncated_total",
                                 "texts cut to the text model's max_length before scoring", registry=r)
        self.anomaly_records = Counter("modelloop_anomaly_records_total", "records an anomaly model scored",
                                       registry=r)
        self.anomaly_alerts = Counter("modelloop_anomaly_alerts_total", "records an anomaly model flagged",
                                      registry=r)
        self.anomaly_expected = Gauge("modelloop_anomaly_expected_share", "share of records the served anomaly "
                                      "model's threshold flags on its training rows", ["name"],
                                      multiprocess_mode="livemax", registry=r)
        self.gen_completions = Counter("modelloop_generation_completions_total", "OpenAI-route completions by "
                                       "finish reason", ["finish"], registry=r)
        self.gen_empty = Counter("modelloop_generation_empty_total", "completions with no text", registry=r)
        self.gen_tokens = Counter("modelloop_generation_tokens_total", "completion tokens generated", registry=r)
        self.gen_ttft = Histogram("modelloop_generation_ttft_seconds", "time to the first token",
                                  buckets=_LATENCY, registry=r)
        self.gen_rate = Histogram("modelloop_generation_tokens_per_second", "a completion's tokens over its "
                                  "wall time", buckets=_RATES, registry=r)
        self._hits = self._lookups = 0
        self._extra: list[Any] = []
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        pair = self._children.get(key)
        if pair is None:
            pair = self._children[key] = (self.requests.labels(endpoint, str(status)),
                                          self.latency.labels(endpoint))
        pair[0].inc()
        pair[1].observe(seconds)

    def observe_batch(self, records: int, seconds: float) -> None:
        self.batch_size.observe(records)
        self.inference.observe(seconds)

    def observe_cache(self, hits: int, misses: int) -> None:
        if hits:
            self.cache.labels("hit").inc(hits)
        if misses:
            self.cache.labels("miss").inc(misses)
        self._hits += hits
        self._lookups += hits + misses
        self.cache_ratio.set(self._hits / self._lookups if self._lookups else 0.0)

    def observe_alerts(self, scored: int, flagged: int) -> None:
        """An anomaly model's answers: how many records were scored and how many flagged."""
        self.anomaly_records.inc(scored)
        if flagged:
            self.anomaly_alerts.inc(flagged)

    def observe_generation(self, finish: str, tokens: int, empty: bool, ttft_s: float | None,
                           seconds: float) -> None:
        """One finished completion of a generative model (the shares of empty and truncated answers are
        these counters over ``modelloop_generation_completions_total``)."""
        self.gen_completions.labels(finish).inc()
        if empty:
            self.gen_empty.inc()
        if tokens:
            self.gen_tokens.inc(tokens)
        if ttft_s is not None:
            self.gen_ttft.observe(ttft_s)
        if seconds > 0:
            self.gen_rate.observe(tokens / seconds)

    def set_model(self, name: str, version: int, onnx: bool) -> None:
        self.version.labels(name).set(version)
        self.onnx.labels(name).set(1 if onnx else 0)
        self.ready.set(1)

    def add_collector(self, collector: Any) -> None:
        """Figures read at scrape time from elsewhere (the job queue), reported once, not per worker."""
        self._extra.append(collector)
        self.registry.register(collector)

    def render(self) -> bytes:
        """The exposition text: this process, or every worker in multiprocess mode."""
        if _multiprocess():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            for collector in self._extra:
                registry.register(collector)
            return generate_latest(registry)
        return generate_latest(self.registry)

    @staticmethod
    def process_exit() -> None:
        """Drop this worker's live gauges from the shared directory."""
        if _multiprocess():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
