"""The text family: a pretrained encoder with a classification head, searched beside TF-IDF + logistic
regression (the best on validation wins). The encoder is MiniLM (trained as a head on frozen
embeddings, by LoRA or by full fine-tuning, served through its int8 or fp32 ONNX graph with
tokenization in the server; variants are ONNX exports, int8 and distilled students) or a frozen
multilingual encoder (USE, e5) with the head; ``backbone: auto`` picks by the data's language mix.

Its modules, each above the ones it imports: ``config`` (the ``model:`` section), ``backbone`` (encoders,
tokenization, the network, ONNX sessions), ``fit`` (the fine-tuning loop), ``search`` (its space, on the
shared driver), ``estimator`` (``TextModel.fit``), ``model`` (:class:`TextModel`), ``export`` (ONNX, int8),
``compress`` (pruned and distilled students), ``variants`` (what optimize builds), ``stage`` (the train
stage: data, caches, search, registration) and ``serve`` (the served object); beside them ``encoders``
(frozen multilingual encoders, windows, ``auto``), ``pipeline`` (the base of the non-PyTorch models),
``classical`` (TF-IDF), ``frozen`` (frozen encoder + head), ``candidates`` (what a search chooses from),
``blend`` (the TF-IDF and frozen-encoder candidates averaged, kept when it beats them on validation) and
``latency`` (each candidate's served cost, against ``train.max_latency_ms`` or ``backbone: auto``'s bound).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base import Resources

__all__ = ["FAMILY", "TextFamily"]


class TextFamily:
    name = "text"
    tasks = ("text_classification",)
    heads = ("classification",)
    resources = Resources(cpus=0, gpus=1, memory_gb=4.0)
    latency_limit_advice: str | None = None  # train.max_latency_ms picks among its candidates (latency.py)
    variants = ("onnx", "onnx_int8_dynamic", "onnx_int8_static", "pruned", "distilled")

    def settings_schema(self) -> type:
        from .config import TextModelConfig

        return TextModelConfig

    def search_space(self, settings: Any) -> dict[str, Any]:
        from .classical import suggest_tfidf
        from .config import TextModelConfig
        from .search import CANDIDATE, suggest_params
        from ..space import describe_space

        model = settings if isinstance(settings, TextModelConfig) else TextModelConfig()

        def every_candidate(trial: Any) -> None:
            if model.classical:
                trial.suggest_categorical(CANDIDATE, ["encoder", "tfidf"])
                suggest_tfidf(trial)
            suggest_params(trial, model)

        return describe_space(every_candidate)

    def train(self, ws: Any, **options: Any) -> dict[str, Any]:
        from .stage import train_text

        return train_text(ws, **options)

    def load(self, ws: Any, row: dict[str, Any]) -> Any:
        from ...registry import load_model

        return load_model(ws, row)

    def runtime(self, ws: Any, row: dict[str, Any], *, plan: dict[str, Any] | None, threads: int,
                atol: float, use_cache: bool) -> Any:
        from .serve import text_runtime

        return text_runtime(ws, row, plan, threads)

    def serve_threads(self, config: Any) -> int | None:
        from ...serving.runtime import text_threads

        return text_threads(config)

    def variant_maker(self, teacher: Any, train: Any, *, target: str, seed: int, scratch: Path,
                      max_drop: float, threads: int | None) -> Callable[[str], Any]:
        from .variants import text_variant_maker

        return text_variant_maker(teacher, train, target=target, seed=seed, scratch=scratch, threads=threads or 1)

    def drift_columns(self, schema: Any) -> dict[str, str]:
        return {str(schema.text): "text"} if schema.text else {}


FAMILY = TextFamily()
