"""The image family: a pretrained CNN (EfficientNet-Lite0 with ImageNet weights by default, or a
transformers image model) with a classification layer, trained as a head on frozen features or by
fine-tuning the last blocks or every layer with albumentations augmentation, and served through its int8
or fp32 ONNX graph with decoding and resizing in the server.

Its modules, each above the ones it imports: ``config`` (the ``model:`` section), ``backbone`` (weights,
the network), ``fit`` (head, fine-tuning loop), ``search`` (its space, on the shared driver), ``model``
(:class:`ImageModel`), ``export`` (ONNX, int8), ``variants`` (what optimize builds), ``stage`` (the train
stage), ``serve`` (the served object, request decoding) and ``quality`` (the profile's image checks).
Reading image sources (folders, tables of paths, zips) is ``modelloop.data.images``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base import Resources

__all__ = ["FAMILY", "ImageFamily"]


class ImageFamily:
    name = "image"
    tasks = ("image_classification",)
    heads = ("classification",)
    resources = Resources(cpus=0, gpus=1, memory_gb=4.0)
    latency_limit_advice: str | None = ("for an image model choose a smaller model.image_size or let "
                                        "`modelloop optimize` quantize it")
    variants = ("onnx", "onnx_int8_static", "distilled")

    def settings_schema(self) -> type:
        from .config import ImageModelConfig

        return ImageModelConfig

    def search_space(self, settings: Any) -> dict[str, Any]:
        from ..space import describe_space
        from .config import ImageModelConfig
        from .search import suggest_params
        from .stage import image_settings

        model = settings if isinstance(settings, ImageModelConfig) else image_settings(settings)
        return describe_space(lambda t: suggest_params(t, model))

    def read_source(self, cfg: Any) -> tuple[Any, dict[str, Any], dict[str, str]]:
        """``data.source`` as an image table (``modelloop.data.images``), its read report and column kinds."""
        from ...data.images import image_kinds, read_image_source

        d = cfg.data
        report: dict[str, Any] = {}
        df = read_image_source(str(d.source), root=Path(cfg.root), target=d.target, on_bad_files=d.on_bad_files,
                               encoding=d.encoding, report=report)
        return df, report, image_kinds()

    def profile_findings(self, ws: Any, row: dict[str, Any], frame: Any, side: Any) -> list[dict[str, Any]]:
        """The profile's image checks (``quality.py``): unreadable files, duplicates, near duplicates across
        the split, small and extreme-aspect images, each listed with paths."""
        from .quality import image_findings

        return image_findings(ws, row, frame, side)

    def train(self, ws: Any, **options: Any) -> dict[str, Any]:
        from .stage import train_image

        return train_image(ws, **options)

    def load(self, ws: Any, row: dict[str, Any]) -> Any:
        from ...registry import load_model

        return load_model(ws, row)

    def runtime(self, ws: Any, row: dict[str, Any], *, plan: dict[str, Any] | None, threads: int,
                atol: float, use_cache: bool) -> Any:
        from .serve import image_runtime

        return image_runtime(ws, row, plan, threads)

    def serve_threads(self, config: Any) -> int | None:
        from ...serving.runtime import text_threads

        return text_threads(config)

    def variant_maker(self, teacher: Any, train: Any, *, target: str, seed: int, scratch: Path,
                      max_drop: float, threads: int | None) -> Callable[[str], Any]:
        from .variants import image_variant_maker

        return image_variant_maker(teacher, train, target=target, seed=seed, scratch=scratch, threads=threads or 1)

    def feedback_inputs(self, ws: Any, frame: Any) -> tuple[Any, dict[str, Any]]:
        """Labelled log rows with their images back: the log keeps a digest, the server kept the bytes
        (``served.py``); rows whose image is gone are left out and counted."""
        from .served import feedback_inputs

        return feedback_inputs(ws, frame)

    def predict_frames(self, runtime: Any, src: Path, chunk_rows: int) -> Any:
        """``modelloop predict`` on a folder of images or a table of image paths (``batch.py``): one row
        per file, a file that does not decode reported in the row's ``error``."""
        from .batch import predict_frames

        return predict_frames(runtime, src, chunk_rows)

    def drift_extra(self, ws: Any, model_row: dict[str, Any], reference: Any, recent: list[dict[str, Any]],
                    **thresholds: float) -> tuple[dict[str, Any], dict[str, Any]]:
        """Drift of the penultimate-layer embeddings of the served images (``drift.py``)."""
        from .drift import embedding_drift

        return embedding_drift(ws, model_row, reference, recent, **thresholds)

    def drift_columns(self, schema: Any) -> dict[str, str]:
        from ...data.images import STAT_COLUMNS

        return dict.fromkeys(STAT_COLUMNS, "numeric") if schema.text else {}


FAMILY = ImageFamily()
