"""The anomaly-detection family: unsupervised detectors (Isolation Forest, ECOD, COPOD, kNN, LOF, and an
autoencoder for wide data) over a typed table, searched on the shared driver, calibrated to [0, 1] by
rank against the training rows and ensembled (without labels, weighted by agreement with the consensus
and stability under subsampling); each flagged record carries the feature columns that deviate most.

Its modules: ``config`` (the ``anomaly:`` section), ``budget`` (the alert line), ``detectors`` (the detectors and
the calibration), ``autoencoder`` (the wide-data detector),
``features`` (encoding and per-column deviations), ``labels`` (the partial label column and verdicts),
``model`` (:class:`AnomalyModel`), ``search`` (trials and the choice), ``stage`` (the train stage),
``report`` (its evaluation page), ``serve`` (the served object) and ``feedback`` (verdicts -> the
semi-supervised booster). Output head: :class:`modelloop.families.heads.AnomalyHead`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base import Resources

__all__ = ["FAMILY", "AnomalyFamily"]


class AnomalyFamily:
    name = "anomaly"
    tasks = ("anomaly_detection",)
    heads = ("anomaly",)
    resources = Resources(cpus=1, gpus=0, memory_gb=1.0)
    latency_limit_advice: str | None = ("an anomaly model is served natively; its cost grows with the kNN and LOF "
                                        "members (drop them with anomaly.detectors)")
    variants: tuple[str, ...] = ()

    def settings_schema(self) -> None:
        return None  # its settings are the ``anomaly:`` section

    def search_space(self, settings: Any) -> dict[str, Any]:
        """``settings``: the project's Config or its ``anomaly:`` section."""
        from ..space import describe_space
        from .config import AnomalyConfig
        from .search import suggest_params

        section = getattr(settings, "anomaly", settings)
        detectors: list[str] = list(section.detectors if isinstance(section, AnomalyConfig) else AnomalyConfig().detectors)
        return describe_space(lambda t: suggest_params(t, detectors), {"detector": detectors})

    def read_source(self, cfg: Any) -> tuple[Any, dict[str, Any], dict[str, str] | None]:
        """``data.source``: with ``anomaly.backbone`` a folder of images (``images.py``), else the table
        that ingest's own readers read (column kinds inferred)."""
        from .stage import anomaly_settings

        if anomaly_settings(cfg).backbone is not None:
            from .images import read_anomaly_images

            return read_anomaly_images(cfg)
        from ...data.sources import read_table

        d = cfg.data
        df, report = read_table(str(d.source), root=Path(cfg.root), fmt=d.format, query=d.query, encoding=d.encoding,
                                on_bad_lines=d.on_bad_lines, delimiter=d.delimiter, decimal=d.decimal, sheet=d.sheet)
        return df, report, None

    def feedback_inputs(self, ws: Any, frame: Any) -> tuple[Any, dict[str, Any]]:
        """Verdicts on served images get their images back as the image family's do (its ``served.py``);
        a table's rows are their own inputs."""
        from .stage import anomaly_settings

        if anomaly_settings(ws.config).backbone is None:
            return frame, {}
        from ..image.served import feedback_inputs

        return feedback_inputs(ws, frame)

    def train(self, ws: Any, **options: Any) -> dict[str, Any]:
        from .stage import train_anomaly

        return train_anomaly(ws, **options)

    def load(self, ws: Any, row: dict[str, Any]) -> Any:
        from ...registry import load_model

        return load_model(ws, row)

    def runtime(self, ws: Any, row: dict[str, Any], *, plan: dict[str, Any] | None, threads: int,
                atol: float, use_cache: bool) -> Any:
        from .serve import anomaly_runtime

        return anomaly_runtime(ws, row, plan)

    def serve_threads(self, config: Any) -> int | None:
        return None

    def variant_maker(self, teacher: Any, train: Any, *, target: str, seed: int, scratch: Path,
                      max_drop: float, threads: int | None) -> Callable[[str], Any]:
        from ...optimization.optimize import VariantSkipped

        def skip(name: str) -> Any:
            raise VariantSkipped(f"{name}: the anomaly family has no optimized variants (its detectors are served "
                                 "natively)")

        return skip

    def drift_columns(self, schema: Any) -> dict[str, str]:
        return {c: schema.columns[c] for c in schema.features()}


FAMILY = AnomalyFamily()
