"""The generative family: a pretrained causal language model (SmolLM2-135M-Instruct bundled as GGUF, or
any local folder, GGUF file or hub name) fine-tuned with LoRA or on every weight, on completion tokens
only, and served through the OpenAI-compatible routes (``serving/openai.py``) and ``/v1/predict``.

Its modules, each above the ones it imports: ``config`` (the ``model:`` section), ``backbone`` (where a
model comes from, the GGUF conversion cache), ``data`` (shapes, chat templates, tokens, packing, the data
profile), ``metrics`` (exact match, chrF, ROUGE-L, perplexity), ``generate`` (decoding with a KV cache),
``fit`` (one fine-tuning run), ``search`` (on the shared driver), ``model`` (:class:`GenerativeModel`),
``report`` (the HTML page), ``eval_budget`` (the stage's evaluation within ``train.budget``), ``few_steps`` (the
stage's warnings when the fine-tune made too few optimizer steps to change the model, or its training loss did
not fall), ``stage`` (the train stage), ``serve`` (the served object), ``monitor``
(the served answers' figures), ``drift`` (the served prompts' embeddings against the training ones') and
``feedback`` (rated answers as training rows of the model's shape, for ``modelloop retrain``).
``sequences`` (batches of packed sequences and their log-likelihoods) sits under ``fit`` and
``preference`` (DPO on preference pairs); ``layer_cache`` (the frozen layers' output kept per training
sequence when only the last ``model.lora_layers`` are adapted) under ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base import Resources

__all__ = ["FAMILY", "GenerativeFamily"]


class GenerativeFamily:
    name = "generative"
    tasks = ("text_generation",)
    heads = ("generation",)
    resources = Resources(cpus=0, gpus=1, memory_gb=4.0)
    latency_limit_advice: str | None = ("a generative model's latency is set by its size and max_tokens; choose a "
                                        "smaller base model or cap serve-time max_tokens")
    variants: tuple[str, ...] = ("merged", "int8_dynamic", "onnx", "onnx_int8_dynamic")

    def settings_schema(self) -> type:
        from .config import GenerativeModelConfig

        return GenerativeModelConfig

    def search_space(self, settings: Any) -> dict[str, Any]:
        from ..space import describe_space
        from .config import GenerativeModelConfig
        from .search import suggest_params

        section = settings if isinstance(settings, GenerativeModelConfig) else getattr(settings, "model", None)
        model = section if isinstance(section, GenerativeModelConfig) else GenerativeModelConfig()
        return describe_space(lambda t: suggest_params(t, model))

    def train(self, ws: Any, **options: Any) -> dict[str, Any]:
        from .stage import train_generative

        return train_generative(ws, **options)

    def load(self, ws: Any, row: dict[str, Any]) -> Any:
        from ...registry import load_model

        return load_model(ws, row)

    def runtime(self, ws: Any, row: dict[str, Any], *, plan: dict[str, Any] | None, threads: int,
                atol: float, use_cache: bool) -> Any:
        from .serve import generative_runtime

        return generative_runtime(ws, row, plan, threads)

    def serve_threads(self, config: Any) -> int | None:
        return None

    def variant_maker(self, teacher: Any, train: Any, *, target: str, seed: int, scratch: Path,
                      max_drop: float, threads: int | None) -> Callable[[str], Any]:
        from .variants import generative_variant_maker

        return generative_variant_maker(teacher, train, target=target, seed=seed, scratch=scratch)

    def serving_figures(self, recent: list[dict[str, Any]]) -> dict[str, Any]:
        """``modelloop monitor``'s ``serving`` section: tokens/s, time to first token, the shares of empty,
        truncated and cancelled answers, prompt and answer lengths of the logged completions."""
        from .monitor import serving_figures

        return serving_figures(recent)

    def feedback_inputs(self, ws: Any, frame: Any) -> tuple[Any, dict[str, Any]]:
        """Rated answers as rows of the model's data shape (``feedback.py``): a correction of a preference
        model's answer becomes a preference pair (chosen: the correction, rejected: the served answer)."""
        from .feedback import feedback_rows

        return feedback_rows(ws, frame)

    def drift_extra(self, ws: Any, model_row: dict[str, Any], reference: Any, recent: list[dict[str, Any]],
                    **thresholds: float) -> tuple[dict[str, Any], dict[str, Any]]:
        """Drift of the served prompts' meaning: their sentence embeddings against the training prompts'
        (``drift.py``)."""
        from .drift import prompt_drift

        return prompt_drift(ws, model_row, reference, recent, **thresholds)

    def drift_columns(self, schema: Any) -> dict[str, str]:
        """The prompt side (what clients send), read as text: length and language mix drift."""
        from .data import detect_shape

        if schema.text:
            return {str(schema.text): "text"}
        try:
            columns = [str(c) for c in schema.columns if not str(c).startswith("_")]
            return dict.fromkeys(detect_shape(schema, columns).input_columns(), "text")  # its target: the answer
        except Exception:  # no column named as a shape names it: nothing to compare
            return {}


FAMILY = GenerativeFamily()
