"""What a text candidate costs to serve, for ``train.max_latency_ms`` and ``backbone: auto``'s bound.

Why: the encoders a text search compares differ ten-fold in serving cost (on a 2-core machine, e5's C
engine ~45 ms a short Chinese review at batch 1, USE's ONNX graph ~4 ms, MiniLM's int8 graph ~5 ms,
TF-IDF under 1 ms), and validation scores alone keep the slowest when it is a little better. A user who
states ``train.max_latency_ms`` gets the best candidate within it. A user of ``backbone: auto`` gets a
model no slower to serve than the previous default, MiniLM's int8 graph, timed here on the same texts:
upgrading to ``auto`` must not make every request 9x slower unasked (benchmarks/RESULTS.md, text_zh.py).
Naming the backbones (``backbone: multilingual-e5`` or a list) or setting the limit lifts that bound.

Each figure (:func:`per_text_ms`) is CPU milliseconds of one text at batch 1 through the candidate's
served path: for each probe text the least CPU time of ``PASSES`` calls (``time.process_time``: every
thread of the process, so an engine's own threads count, and other tenants' load does not), then the
median over the texts, a p50:

* a frozen encoder (USE, e5): its engine's ``embed_pooled([text])`` on one thread, windows included
  (the head is one small matrix product);
* a PyTorch encoder (MiniLM, a folder, a hub name): the int8 ONNX graph ``modelloop optimize`` serves,
  tokenizer and windows included (:func:`network_ms`). The graph is exported once per encoder and kept
  in the per-user cache (``latency/``), from a head fitted on the probe texts (its weights do not change
  the cost);
* TF-IDF: the largest n-grams the search tries, fitted on at most ``TFIDF_ROWS`` training texts, through
  its scorer as served (:func:`tfidf_ms`).

A blend costs the sum of its members'.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AUTO_SOURCE", "LIMIT_SOURCE", "PASSES", "PROBE", "TFIDF_ROWS", "LatencyBound", "encoder_ms", "latency_bound",
           "network_ms", "per_text_ms", "probe_texts", "tfidf_ms"]

PROBE = 16        # training texts timed, spread over the set
PASSES = 3        # calls per text; the least CPU time counts
TFIDF_ROWS = 1000
_REFERENCE_VERSION = "1"  # bump when the reference graph's recipe changes


def probe_texts(texts: Sequence[str], n: int = PROBE) -> list[str]:
    """``n`` non-empty texts spread evenly over ``texts`` (their order is the data's)."""
    kept = [t for t in texts if isinstance(t, str) and t.strip()]
    return kept[:: max(1, len(kept) // n)][:n]


def per_text_ms(call: Callable[[str], Any], texts: Sequence[str], passes: int = PASSES,
                stop_above: float | None = None) -> float:
    """The median over ``texts`` of each text's least CPU milliseconds over ``passes`` calls of ``call``
    (not ``optimization.optimize.cpu_ms``, which times one call on its own thread: here texts differ in
    length, and an encoder's engine may compute on threads of its own);
    after a pass whose median is already over ``stop_above``, that median (e5 at ~45 ms a text need not be
    timed three times to be over a 5 ms bound)."""
    if not texts:
        return 0.0
    call(texts[0])  # first-use loading is not serving
    best = np.full(len(texts), np.inf)
    for _ in range(passes):
        for i, text in enumerate(texts):
            t0 = time.process_time()
            call(text)
            best[i] = min(best[i], (time.process_time() - t0) * 1000.0)
        if stop_above is not None and np.median(best) > stop_above:
            break
    return float(np.median(best))


def encoder_ms(backbone: str, texts: Sequence[str], stop_above: float | None = None) -> float:
    """A frozen encoder's served cost of one text (its default engine, one thread)."""
    from .encoders import default_engine, frozen_encoder

    enc = frozen_encoder(backbone, default_engine(backbone), 1)
    return per_text_ms(lambda t: enc.embed_pooled([t]), texts, stop_above=stop_above)


def tfidf_ms(texts: Sequence[str], y: np.ndarray, probe: Sequence[str], *, seed: int) -> float:
    """TF-IDF + logistic regression's cost of one text as served (its :class:`~.classical.TfidfScorer`),
    for the largest n-grams the search tries (jieba words too where jieba is installed, each text cut
    afresh as a new request's is), fitted on at most ``TFIDF_ROWS`` of ``texts``: its cost is the
    analyzers', which the vocabulary's size hardly changes."""
    import warnings

    from .classical import LARGEST_N, TfidfScorer, _cut, fit_tfidf, segmenter, tfidf_defaults

    params = {**tfidf_defaults(), "char_max": LARGEST_N["chars"], "word_max": LARGEST_N["words"]}
    if segmenter() is not None:
        params["seg_max"] = LARGEST_N["segs"]
    pick = np.random.default_rng(seed).permutation(len(texts))[:TFIDF_ROWS]
    if len(np.unique(y[pick])) < 2:
        pick = np.arange(len(texts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = TfidfScorer(fit_tfidf([texts[i] for i in pick], y[pick], params, class_weight="balanced", seed=seed))

    def call(text: str) -> Any:
        _cut.cache_clear()  # a served text is new: its jieba cut is not cached
        return scorer.proba([text])

    return per_text_ms(call, probe)


def network_ms(source: str, max_length: int, probe: Sequence[str], stop_above: float | None = None) -> float:
    """A PyTorch encoder's served cost of one text: its int8 graph on one thread, its tokenizer, the
    text's windows (as the train stage's models read long texts) and one session call."""
    from .backbone import load_tokenizer, ort_session, pad_batch, tokenize_windows

    session = ort_session(str(_reference_graph(source, max_length, probe)), 1)
    tokenizer = load_tokenizer(source)
    pad = tokenizer.pad_token_id or 0

    def call(text: str) -> Any:
        windows, _ = tokenize_windows(tokenizer, [text], max_length)
        ids, mask = pad_batch([w for ws in windows for w in ws], pad)
        return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})

    return per_text_ms(call, probe, stop_above=stop_above)


def _reference_graph(source: str, max_length: int, probe: Sequence[str]) -> Path:
    """The int8 graph of ``source`` with a head, from the per-user cache or exported into it (atomically:
    a reader never sees half a file)."""
    from ...user_cache import cache_root

    config = Path(source) / "config.json"
    stamp = f"{config.stat().st_size}-{config.stat().st_mtime_ns}" if config.is_file() else ""
    key = hashlib.sha256(f"{_REFERENCE_VERSION}|{source}|{stamp}|{max_length}".encode()).hexdigest()[:16]
    path = cache_root() / "latency" / f"encoder-{key}-int8.onnx"
    if path.is_file():
        return path
    import pandas as pd

    from .export import export_text_onnx
    from .model import TextModel

    texts = (list(probe) * 4)[:max(8, len(probe))] or ["a", "b"] * 4
    model = TextModel(config={"backbone": source, "method": "head", "max_length": max_length, "extend_vocab": False},
                      text_column="text")
    model.fit(pd.DataFrame({"text": texts}), [i % 2 for i in range(len(texts))])
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    try:
        report = export_text_onnx(model, scratch / "model.onnx", quantize=True)
        os.replace(report["int8"]["path"], path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


AUTO_SOURCE = "backbone: auto (no slower than MiniLM's int8 graph here, the previous default)"
LIMIT_SOURCE = "train.max_latency_ms"


@dataclass
class LatencyBound:
    """The served cost a text model may have (``limit_ms``, from ``source``) and each candidate's cost,
    timed once on ``probe`` (``timed``: encoder name or ``tfidf`` -> CPU ms a text). ``over`` says why a
    candidate is left out; ``report`` is the train JSON's ``latency``."""

    limit_ms: float
    source: str
    probe: list[str]
    root: Any
    max_length: int
    fit_texts: list[str] = field(default_factory=list)
    y_fit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seed: int = 0
    timed: dict[str, float] = field(default_factory=dict)

    def cost(self, name: str) -> float:
        """CPU ms a text of candidate ``name`` (a frozen encoder, a PyTorch backbone or ``tfidf``), timed once."""
        from .encoders import FROZEN

        stop = 2 * self.limit_ms if self.limit_ms > 0 else None
        if name not in self.timed:
            if name == "tfidf":
                self.timed[name] = tfidf_ms(self.fit_texts, self.y_fit, self.probe, seed=self.seed)
            elif name in FROZEN:
                self.timed[name] = encoder_ms(name, self.probe, stop)
            else:
                from .backbone import effective_max_length, load_tokenizer, resolve_backbone

                source = resolve_backbone(name, root=self.root)
                length = effective_max_length(load_tokenizer(source), source, self.max_length)
                self.timed[name] = network_ms(source, length, self.probe, stop)
        return self.timed[name]

    def over(self, name: str) -> str | None:
        """Why ``name`` is over the limit, or None when it fits."""
        ms = self.cost(name)
        if ms <= self.limit_ms:
            return None
        return (f"serving it takes ~{ms:.1f} ms a text (CPU, batch 1, median of {len(self.probe)} training texts), "
                f"over the {self.limit_ms:.3g} ms of {self.source}")

    def report(self, served: Sequence[str]) -> dict[str, Any]:
        """``{limit_ms, source, latency_ms, met, served, timed, how}`` for the model serving ``served``
        (its members' names)."""
        ms = sum(self.cost(n) for n in served)
        return {"limit_ms": float(self.limit_ms), "source": self.source, "latency_ms": round(ms, 3),
                "met": bool(ms <= self.limit_ms), "served": list(served),
                "timed": {k: round(v, 3) for k, v in self.timed.items()},
                "how": f"CPU ms of one text at batch 1 as served, median of {len(self.probe)} training texts"}


def latency_bound(limit_ms: float | None, *, configured: Any, tried: Sequence[str], method: str, texts: Sequence[str],
                  y: np.ndarray, root: Any, max_length: int, seed: int) -> LatencyBound | None:
    """The bound a text search keeps to: ``train.max_latency_ms`` when set; else, for ``backbone: auto``
    comparing more than MiniLM alone, the cost of MiniLM's int8 graph (timed here); else None."""
    from .encoders import AUTO

    common = dict(probe=probe_texts(texts), root=root, max_length=max_length, fit_texts=list(texts),
                  y_fit=np.asarray(y), seed=seed)
    if limit_ms is not None:
        return LatencyBound(float(limit_ms), LIMIT_SOURCE, **common)  # type: ignore[arg-type]
    if configured != AUTO or method != "head" or list(tried) == ["bundled"]:
        return None
    bound = LatencyBound(0.0, AUTO_SOURCE, **common)  # type: ignore[arg-type]
    bound.limit_ms = bound.cost("bundled")
    return bound
