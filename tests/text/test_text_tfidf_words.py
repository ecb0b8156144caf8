"""The TF-IDF candidate's Chinese word n-grams (jieba, the ``segs`` input) and NB-SVM scaling
(``nb``): what they read, that their graph equals scikit-learn one text at a time and in a batch,
and that the search draws them. Real jieba, real skl2onnx and ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from modelloop.errors import ModelloopError
from modelloop.families.text import classical
from modelloop.families.text.classical import TfidfTextModel, fit_tfidf, segment, suggest_tfidf, tfidf_defaults

pytest.importorskip("jieba")

REVIEWS = ["房间很干净，服务也很周到。", "早餐一般，价格太贵了", "位置不错 good location", "空调坏了，前台不理人！",
           "床很舒服\u3000下次还来", "隔音太差，一晚没睡好", "性价比高，推荐", "卫生间有异味 dirty bathroom"]
LABELS = np.array([1, 0, 1, 0, 1, 0, 1, 0])


def _model(params: dict) -> TfidfTextModel:
    pipe = fit_tfidf(REVIEWS * 3, np.tile(LABELS, 3), params, class_weight="balanced", seed=0)
    return TfidfTextModel.from_pipeline(pipe, classes=["neg", "pos"], text_column="review", target=None, config={},
                                        seed=0, class_weight="balanced", metric="f1_macro", description={})


def test_segment_cuts_chinese_into_words_without_whitespace():
    words = segment("房间很干净\u3000服务\t也很周到 good room").split(" ")
    assert "房间" in words and "干净" in words and "good" in words
    assert all(w and not any(c.isspace() for c in w) for w in words)  # one \S+ token each, in RE2 as in Python


def test_word_ngrams_are_a_third_input_and_the_graph_equals_scikit_learn(tmp_path):
    model = _model({**tfidf_defaults(), "seg_max": 2})
    vocab = model.pipeline_[0].named_transformers_["segs"].vocabulary_
    assert {"干净", "周到", "前台", "隔音", "房间 很", "很 干净"} <= set(vocab)  # words and word pairs, not single characters
    report = model.export_onnx(tmp_path / "segs.onnx")
    assert report["inputs"] == ["chars", "words", "segs"] and report["max_abs_diff"] <= 1e-4
    session = model.onnx_session(path=tmp_path / "segs.onnx")
    check = ["服务很周到，房间干净" * 80, "", "　全角空格　和\u00a0不换行", "完全没见过的词语组合"]
    want = model.score_texts(check)[0]
    np.testing.assert_allclose(model.score_texts(check, session)[0], want, atol=1e-5)
    for text, row in zip(check, want, strict=True):  # as a client sends them: one at a time
        np.testing.assert_allclose(model.score_texts([text], session)[0][0], row, atol=1e-5)


def test_nb_scaling_is_folded_into_the_weights_and_changes_the_model(tmp_path):
    plain, nb = _model(tfidf_defaults()), _model({**tfidf_defaults(), "nb": True})
    assert plain.pipeline_[-1].coef_.shape == nb.pipeline_[-1].coef_.shape  # same graph: vectorizers -> LR
    assert not np.allclose(plain.score_texts(REVIEWS)[0], nb.score_texts(REVIEWS)[0], atol=1e-3)
    assert (nb.score_texts(REVIEWS)[0].argmax(1) == LABELS).all()
    assert nb.export_onnx(tmp_path / "nb.onnx")["max_abs_diff"] <= 1e-4
    three = fit_tfidf(REVIEWS[:6] * 3, np.tile([0, 1, 2], 6), {**tfidf_defaults(), "nb": True},
                      class_weight="balanced", seed=0)  # more than two classes: no ratio, a plain regression
    again = fit_tfidf(REVIEWS[:6] * 3, np.tile([0, 1, 2], 6), tfidf_defaults(), class_weight="balanced", seed=0)
    np.testing.assert_allclose(three[-1].coef_, again[-1].coef_)


def test_the_search_draws_words_and_nb_and_the_defaults_stay_plain():
    import optuna

    trial = optuna.create_study().ask()
    drawn = suggest_tfidf(trial)
    assert {"seg_max", "nb"} <= set(drawn)
    assert trial.distributions["seg_max"].high == 2
    assert tfidf_defaults()["seg_max"] == 0 and tfidf_defaults()["nb"] is False


def test_a_words_model_without_jieba_names_the_install(monkeypatch):
    model = _model({**tfidf_defaults(), "seg_max": 1})
    monkeypatch.setattr(classical, "_SEGMENTER", [None])  # jieba not installed on this server
    with pytest.raises(ModelloopError, match=r"pip install 'modelloop\[multilingual\]'"):
        model.score_texts(["房间很干净"])
    assert "seg_max" not in suggest_tfidf(__import__("optuna").create_study().ask())


def test_a_tfidf_champion_from_before_the_new_options_still_warm_starts_the_search():
    from modelloop.families.text.candidates import TfidfCandidate
    from modelloop.families.text.config import TextModelConfig
    from modelloop.families.text.search import warm_sets

    cand = TfidfCandidate(settings=TextModelConfig(), y_fit=LABELS, y_val=LABELS, classes=["neg", "pos"],
                          metric="f1_macro", class_weight="balanced", seed=0)
    old = {"family": "tfidf", "tfidf_c": 5.0, "char_max": 3, "word_max": 0, "min_df": 1, "tf": "binary"}
    (params,) = warm_sets([old], {"tfidf": cand})
    assert params == {**tfidf_defaults(), **{k: v for k, v in old.items() if k != "family"}}
    assert warm_sets([{"family": "head", "head_c": 0.1}], {"tfidf": cand}) == []  # another method's set
    assert warm_sets([{"family": "tfidf", "tfidf_c": 5.0}], {"tfidf": cand}) == []  # not a TF-IDF champion's set


@pytest.mark.parametrize("classes", [["neg", "pos"], ["neg", "mixed", "pos"]])
def test_the_graph_answers_tensors_and_its_conversion_does_not_walk_the_vocabulary(tmp_path, monkeypatch, classes):
    """skl2onnx maps a converter option (``zipmap: False``) to its estimator by walking every fitted attribute,
    a dir() call per vocabulary item: 39 s of a 328k-n-gram conversion (3 s without). The export passes no
    option and takes the ZipMap out itself: ``label`` and ``probabilities`` stay tensors."""
    import onnx
    from skl2onnx.common import utils_sklearn

    walked = []
    real = utils_sklearn.enumerate_model_names
    monkeypatch.setattr(utils_sklearn, "enumerate_model_names",
                        lambda *a, **k: walked.append(1) or real(*a, **k))
    y = np.arange(len(REVIEWS)) % len(classes)
    pipe = fit_tfidf(REVIEWS * 3, np.tile(y, 3), tfidf_defaults(), class_weight="balanced", seed=0)
    model = TfidfTextModel.from_pipeline(pipe, classes=classes, text_column="review", target=None, config={},
                                         seed=0, class_weight="balanced", metric="f1_macro", description={})
    report = model.export_onnx(tmp_path / "m.onnx")
    assert report["max_abs_diff"] <= 1e-4 and not walked
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert "ZipMap" not in {n.op_type for n in graph.node}
    outputs = {o.name: o.type.tensor_type for o in graph.output}
    assert list(outputs) == ["label", "probabilities"]
    assert outputs["probabilities"].elem_type == onnx.TensorProto.FLOAT
    assert outputs["probabilities"].shape.dim[1].dim_value == len(classes)
    session = model.onnx_session(path=tmp_path / "m.onnx")
    frame = classical.tfidf_inputs(REVIEWS, classical.pipeline_inputs(pipe))
    label, proba = session.run(["label", "probabilities"],
                               {i.name: frame[[i.name]].to_numpy(dtype=object) for i in session.get_inputs()})
    np.testing.assert_allclose(proba, model.score_texts(REVIEWS)[0], atol=1e-5)
    assert (np.asarray(label) == proba.argmax(1)).all()

