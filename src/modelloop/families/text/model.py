"""The text model object: a trained network tied to its tokenizer, text column and class labels.

Its building blocks live in :mod:`.backbone`; this module holds :class:`TextModel` alone, on top of them.

* :class:`TextModel` ties a trained network to its tokenizer, text column and class labels. It has
  the interface of :class:`~modelloop.families.tabular.model.TabularModel` (``predict``, ``predict_proba``,
  ``classes_``, ``schema`` ...), so evaluation, registration and monitoring treat both alike. It
  pickles compactly: tokenizer files and the weights as safetensors bytes, never live objects,
  and it is rebuilt on first use without any network access.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ...data.schema import Schema
from ...errors import ConfigError, StateError
from .pipeline import TextOutputs, softmax
from .backbone import (
    _INFER_BATCH,
    _quiet_transformers,
    length_batches,
    mean_by_text,
    network,
    ort_session,
    pad_batch,
    require_torch,
    texts_of,
    tokenize,
    tokenize_windows,
)

__all__ = ["TextModel"]


class TextModel(TextOutputs, BaseEstimator):
    """A fine-tuned (or frozen + head) transformer over raw texts: tokenize -> network -> labels.

    ``config`` holds :class:`~modelloop.families.text.config.TextModelConfig` keys; ``fit`` trains one
    configuration (``modelloop.families.text.stage`` runs the search and the train stage). Learned state:
    ``classes_``, ``task``, ``schema``, ``tokenizer_``, ``network_`` (LoRA already merged),
    ``max_length_``, ``threshold_`` (always None: text models take the argmax).

    Empty or missing texts are scored like any other (the network sees only the special tokens),
    so scoring a file never fails half-way; the train stage leaves them out and counts them, and an
    API should refuse them. Texts longer than ``max_length_`` tokens are cut (see :meth:`encode`).
    """

    # ---- training ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> TextModel:
        """Train ``config`` on texts ``X`` (frame with ``text_column``, or a list) and labels ``y``,
        holding out ``validation_size`` of the rows for early stopping."""
        from .estimator import fit_text_model

        return fit_text_model(self, X, y)

    def settings(self) -> Any:
        """``config`` as a validated TextModelConfig (a ConfigError naming each bad ``model.`` key)."""
        from .config import parse_text_config

        return parse_text_config(self.config or {})

    @classmethod
    def from_network(cls, *, network: Any, tokenizer: Any, classes: list[Any], text_column: str,
                     target: str | None, config: dict[str, Any], max_length: int, seed: int = 0,
                     class_weight: str = "balanced", metric: str = "f1_macro",
                     description: dict[str, Any] | None = None) -> TextModel:
        """Wrap a trained network (LoRA merged) and its tokenizer."""
        model = cls(config=config, text_column=text_column, seed=seed, class_weight=class_weight,
                    metric=metric)
        model.network_ = network.eval()
        model.tokenizer_ = tokenizer
        model.max_length_ = int(max_length)
        model.classes_ = list(classes)
        model.task = "binary" if len(classes) == 2 else "multiclass"
        model.threshold_ = None
        model.target_ = target
        columns = {text_column: "text", **({target: "categorical"} if target else {})}
        model.schema = Schema(columns=columns, target=target, text=text_column)
        model.description_ = dict(description or {})
        return model

    # ---- the interface shared with TabularModel ------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise StateError("this TextModel is not fitted yet; call fit() or train a model first")
        self._rebuild()

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids of ``texts`` (truncated to ``max_length``) and which ones were truncated."""
        self._check_fitted()
        return tokenize(self.tokenizer_, texts, self.max_length_)

    def feed(self, ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """The ONNX/PyTorch input of a batch: ``input_ids`` and ``attention_mask``, int64 ``[n, T]``."""
        input_ids, mask = pad_batch(ids, self.tokenizer_.pad_token_id or 0)
        return {"input_ids": input_ids, "attention_mask": mask}

    def scores(self, X: Any, *, session: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) probabilities and which texts were cut (the server reports both): through the ONNX
        Runtime ``session`` when given, else PyTorch."""
        proba, _, cut = self.scores_windows(X, session=session)
        return proba, cut

    def scores_windows(self, X: Any, *, session: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities, windows read of each text and which texts were cut, as the served answer
        reports them. A model of the train stage (``windows_``) reads a long text whole: overlapping
        windows of ``max_length`` tokens, whose logits are averaged (for a head on frozen embeddings,
        the head of the windows' mean embedding, as it was trained); others read the first window."""
        self._check_fitted()
        texts = texts_of(self.clean_inputs(X), self.text_column)
        logits = self._torch_logits if session is None else lambda feed: session.run(["logits"], feed)[0]
        if not getattr(self, "windows_", False):
            ids, cut = self.encode(texts)
            return self._run(ids, logits), np.ones(len(ids), dtype=np.int64), cut
        windows, cut = tokenize_windows(self.tokenizer_, texts, self.max_length_)
        counts = np.array([len(w) for w in windows], dtype=np.int64)
        raw = self._logits([w for ws in windows for w in ws], logits)
        return softmax(mean_by_text(raw, counts)), counts, cut

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: task, classes, method, backbone, settings and what training noticed."""
        self._check_fitted()
        settings = self.settings()
        info = {"task": self.task, "classes": self.classes_, "threshold": None,
                "features": self.input_columns, "family": settings.method, "method": settings.method,
                "backbone": settings.backbone, "max_length": self.max_length_,
                "pooling": settings.pooling, "parameters": self.n_parameters()}
        from ..tabular.model import jsonable

        return jsonable({**info, **self.description_})

    def n_parameters(self) -> int:
        self._check_fitted()
        return int(sum(p.numel() for p in self.network_.parameters()))

    # ---- inference paths -----------------------------------------------------------------------
    def _run(self, ids: list[list[int]], logits_fn: Any, batch_size: int = _INFER_BATCH) -> np.ndarray:
        return softmax(self._logits(ids, logits_fn, batch_size)) if ids else \
            np.zeros((0, len(self.classes_)), dtype=np.float64)

    def _logits(self, ids: list[list[int]], logits_fn: Any, batch_size: int = _INFER_BATCH) -> np.ndarray:
        out = np.zeros((len(ids), len(self.classes_)), dtype=np.float64)
        for rows in length_batches(ids, batch_size):
            out[rows] = logits_fn(self.feed([ids[i] for i in rows]))
        return out

    def _torch_logits(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        torch = require_torch()
        device = next(self.network_.parameters()).device
        with torch.inference_mode():
            logits = self.network_(torch.from_numpy(feed["input_ids"]).to(device),
                                   torch.from_numpy(feed["attention_mask"]).to(device))
        return logits.float().cpu().numpy()

    def onnx_session(self, variant: str = "int8", *, path: str | Path | None = None,
                     threads: int | None = None) -> Any:
        """An ONNX Runtime session of this model (``int8`` or ``fp32``): from ``path`` when given,
        else exported once (and kept for the life of the object). Inputs ``input_ids`` and
        ``attention_mask`` (see :meth:`feed`), outputs ``logits`` and ``probabilities``."""
        if variant not in ("int8", "fp32"):
            raise ConfigError(f"variant: '{variant}' is not allowed; allowed: int8, fp32")
        self._check_fitted()
        sessions = self.__dict__.setdefault("_sessions", {})
        key = (variant, str(path), threads)
        if key not in sessions:
            if path is None:
                path = self._exported(variant)
            sessions[key] = ort_session(str(path), threads)
        return sessions[key]

    def _exported(self, variant: str) -> str:
        from .export import export_text_onnx

        exported = self.__dict__.setdefault("_exports", {})
        if variant not in exported:
            folder = tempfile.mkdtemp(prefix="modelloop-text-onnx-")
            weakref.finalize(self, shutil.rmtree, folder, True)
            report = export_text_onnx(self, Path(folder) / "model.onnx", quantize=variant == "int8")
            exported["fp32"] = report["fp32"]["path"]
            if report.get("int8"):
                exported["int8"] = report["int8"]["path"]
        return exported[variant]

    def predict_proba_onnx(self, X: Any, variant: str = "int8", *, session: Any = None) -> np.ndarray:
        """(n, K) probabilities through ONNX Runtime: tokenization here, the network in the session."""
        self._check_fitted()
        return self.scores(X, session=session or self.onnx_session(variant))[0]

    # ---- compact pickling ----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("network_", "tokenizer_", "_sessions", "_exports")}
        if "network_" in self.__dict__:
            state["_packed"] = _pack(self.network_, self.tokenizer_)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _rebuild(self) -> None:
        """Turn the packed bytes of an unpickled model back into tokenizer and network (once)."""
        packed = self.__dict__.get("_packed")
        if packed is None or "network_" in self.__dict__:
            return
        settings = self.settings()
        self.tokenizer_, self.network_ = _unpack(packed, len(self.classes_), settings.pooling,
                                                 settings.dropout)
        del self.__dict__["_packed"]


def _pack(net: Any, tokenizer: Any) -> dict[str, Any]:
    """Tokenizer files, encoder config and all weights (safetensors bytes) of a network."""
    from safetensors.torch import save

    with tempfile.TemporaryDirectory(prefix="modelloop-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        files = {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}
    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return {"tokenizer": files, "config": net.encoder.config.to_dict(), "weights": save(weights),
            "format": 1}


def _unpack(packed: dict[str, Any], n_classes: int, pooling: str, dropout: float) -> tuple[Any, Any]:
    require_torch()
    _quiet_transformers()
    from safetensors.torch import load
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="modelloop-tok-") as tmp:
        for name, data in packed["tokenizer"].items():
            (Path(tmp) / name).write_bytes(data)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    settings = dict(packed["config"])
    encoder = AutoModel.from_config(AutoConfig.for_model(settings.pop("model_type"), **settings))
    net = network(encoder, n_classes, pooling=pooling, dropout=dropout)
    net.load_state_dict(load(packed["weights"]), strict=True)
    return tokenizer, net.eval()
