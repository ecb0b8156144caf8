"""Export a :class:`~modelloop.families.tabular.model.TabularModel` to ONNX and check it against scikit-learn.

The graph covers ``model.estimator_`` (preprocessing + model, or the soft-voting ensemble); the
feature preparation before it and the threshold/label mapping after it stay in Python, because
they are cheap and the same code serves both paths.

**Graph contract (what serving feeds)** — :func:`onnx_inputs` builds it from a raw frame:

* one input per *prepared* column, in ``prepared_columns(schema)`` order (numerics, booleans and
  datetime parts ``{col}__year ... {col}__epoch`` first, then categoricals), each of shape ``[N, 1]``.
  skl2onnx renames inputs whose column names ONNX dislikes (``"mean radius"`` -> ``mean_radius``),
  so feed by position: ``onnx_inputs(model, X, [i.name for i in session.get_inputs()])``; the
  metadata entry ``modelloop.input_columns`` also maps each input name to its prepared column;
* numeric inputs are ``float32`` with NaN for missing; categorical inputs are strings with ``""``
  for missing (``prepare_features`` treats ``""`` as missing too, so both paths agree);
* outputs: classifiers give ``label`` (int64 class *index*, argmax — apply ``model.threshold_`` to
  ``probabilities[:, 1]`` yourself for binary models) and ``probabilities`` ``[N, K]`` float32 in
  ``model.classes_`` order (no ZipMap); regressors give ``variable`` ``[N, 1]``.

``float32`` inputs mean a datetime ``__epoch`` (seconds) is rounded to ~2 minutes; trees split on
float32 thresholds anyway, so only rows sitting on a threshold can differ.

LightGBM and XGBoost converters come from ``onnxmltools`` and are registered with skl2onnx on first
use; ``MissingIndicator`` (the linear family's missing flags) gets a small converter here, and CatBoost
one that inlines CatBoost's own ONNX export (its tree-ensemble node). CatBoost exports no categorical
features: a CatBoost model over categoricals raises here, and serving uses the native model, saying so.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ModelloopError
from .columns import INPUT_COLUMNS_KEY
from .fuse import compact_graph
from .model import TabularModel, prepare_features, prepared_columns

__all__ = ["INPUT_COLUMNS_KEY", "check_onnx", "onnx_inputs", "to_onnx"]

_REGISTERED = False


def to_onnx(model: TabularModel, *, target_opset: int | dict[str, int] | None = None, compact: bool = True) -> Any:
    """The ``onnx.ModelProto`` of ``model.estimator_`` with one input tensor per prepared column,
    compacted (:func:`.fuse.compact_graph`: the same outputs; ``compact=False`` only to measure what
    that saves)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _register_converters()
    if not hasattr(model, "estimator_"):
        raise ModelloopError("the model is not fitted; train it before exporting to ONNX")
    _check_exportable(model.estimator_)
    estimator = _onnx_ready(model.estimator_)
    numeric, categorical = prepared_columns(model.prepared_schema())
    inputs = [(c, FloatTensorType([None, 1])) for c in numeric]
    inputs += [(c, StringTensorType([None, 1])) for c in categorical]
    options = None if model.task == "regression" else {id(estimator): {"zipmap": False}}
    onx = convert_sklearn(estimator, initial_types=inputs, options=options,
                          target_opset=target_opset or _default_opset())
    if compact:  # one copy of identical preprocessing, an ensemble's trees in one node per split kind
        compact_graph(onx)
    names = [i.name for i in onx.graph.input]
    if len(names) != len(inputs):
        raise ModelloopError(f"ONNX graph has {len(names)} inputs for {len(inputs)} prepared columns")
    entry = onx.metadata_props.add()
    entry.key, entry.value = INPUT_COLUMNS_KEY, json.dumps(dict(zip(names, numeric + categorical,
                                                                    strict=True)))
    return onx


def onnx_inputs(model: TabularModel, X_raw: pd.DataFrame,
                input_names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The ONNX feed for a raw frame: prepared columns as ``[N, 1]`` float32 / string arrays.

    ``input_names`` are the graph's input names in order (``[i.name for i in session.get_inputs()]``);
    without them the prepared column names are used as they are.
    """
    schema = model.prepared_schema()
    frame = prepare_features(X_raw, schema)
    numeric, categorical = prepared_columns(schema)
    columns = numeric + categorical
    names = list(input_names) if input_names is not None else columns
    if len(names) != len(columns):
        raise ModelloopError(f"{len(names)} input names for {len(columns)} prepared columns")
    feed: dict[str, np.ndarray] = {}
    for name, col in zip(names, columns, strict=True):
        if col in numeric:
            feed[name] = frame[col].to_numpy(dtype=np.float32).reshape(-1, 1)
        else:
            values = frame[col].to_numpy(dtype=object)
            feed[name] = np.where(pd.isna(values), "", values).astype(str).reshape(-1, 1)
    return feed


def check_onnx(model: TabularModel, onnx_model: Any, X_raw: pd.DataFrame, atol: float = 1e-4) -> float:
    """Max |ONNX - scikit-learn| over probabilities (or predictions); raises if above ``atol``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # skl2onnx leaves unused initializers; ORT warns about each
    session = ort.InferenceSession(onnx_model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = session.run(None, onnx_inputs(model, model.clean_inputs(X_raw), names))
    if model.task == "regression":
        got, want = np.asarray(outputs[0]).ravel(), model.predict(X_raw)
    else:
        got, want = np.asarray(outputs[1]), model.predict_proba(X_raw)
    diff = float(np.max(np.abs(got.astype(float) - want))) if len(want) else 0.0
    if not diff <= atol:
        raise ModelloopError(f"ONNX output differs from scikit-learn by {diff:.3g} (> atol {atol:g})")
    return diff


def _check_exportable(estimator: Any) -> None:
    """Refuse, in the user's terms, what no converter can take: CatBoost's categorical features."""
    for step in _walk(estimator):
        if type(step).__module__.startswith("catboost") and step.get_cat_feature_indices():
            raise ModelloopError(f"CatBoost's ONNX export has no categorical features and this CatBoost model "
                                 f"uses {len(step.get_cat_feature_indices())}; it is served natively")


def _default_opset() -> dict[str, int]:
    """The newest main opset skl2onnx has tested, with ``ai.onnx.ml`` 3 (onnxmltools' tree ops)."""
    from skl2onnx import get_latest_tested_opset_version

    return {"": get_latest_tested_opset_version(), "ai.onnx.ml": 3}


def _onnx_ready(estimator: Any) -> Any:
    """A copy whose string imputers treat ``""`` as missing (skl2onnx cannot match NaN in strings)."""
    from sklearn.impute import SimpleImputer

    ready = copy.deepcopy(estimator)
    for step in _walk(ready):
        if isinstance(step, SimpleImputer) and getattr(step, "statistics_", np.zeros(0)).dtype == object:
            step.missing_values = ""
    return ready


def _walk(est: Any):
    """Every estimator nested in pipelines, column transformers and voting ensembles."""
    yield est
    children: list[Any] = []
    if hasattr(est, "steps"):
        children = [s for _, s in est.steps]
    elif hasattr(est, "transformers_"):
        children = [t for _, t, _ in est.transformers_]
    elif hasattr(est, "estimators_"):
        children = list(est.estimators_)
    for child in children:
        if not isinstance(child, str):
            yield from _walk(child)


def _register_converters() -> None:
    """Teach skl2onnx the LightGBM/XGBoost estimators (onnxmltools) and MissingIndicator (here)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import lightgbm as lgb
    import xgboost as xgb
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from sklearn.impute import MissingIndicator

    cls_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for est, conv in ((lgb.LGBMClassifier, convert_lightgbm), (xgb.XGBClassifier, convert_xgboost)):
        update_registered_converter(est, f"Modelloop{est.__name__}",
                                    calculate_linear_classifier_output_shapes, conv, options=cls_options)
    for est, conv in ((lgb.LGBMRegressor, convert_lightgbm), (xgb.XGBRegressor, convert_xgboost)):
        update_registered_converter(est, f"Modelloop{est.__name__}",
                                    calculate_linear_regressor_output_shapes, conv)
    update_registered_converter(MissingIndicator, "ModelloopMissingIndicator",
                                _missing_indicator_shape, _convert_missing_indicator)
    from .ensemble import StackedClassifier, StackedRegressor

    update_registered_converter(StackedClassifier, "ModelloopStackedClassifier", _stack_shape, _convert_stack,
                                options={"zipmap": [False], "nocl": [False]})
    update_registered_converter(StackedRegressor, "ModelloopStackedRegressor", _stack_shape, _convert_stack)
    from .ensemble import ClassScaledClassifier

    update_registered_converter(ClassScaledClassifier, "ModelloopClassScaledClassifier", _stack_shape,
                                _convert_class_scaled, options={"zipmap": [False], "nocl": [False]})
    try:
        import catboost as cb
    except ImportError:  # the optional extra: no CatBoost model can exist without it
        pass
    else:
        update_registered_converter(cb.CatBoostClassifier, "ModelloopCatBoostClassifier",
                                    calculate_linear_classifier_output_shapes, _convert_catboost,
                                    parser=_parse_catboost_classifier, options=cls_options)
        update_registered_converter(cb.CatBoostRegressor, "ModelloopCatBoostRegressor",
                                    calculate_linear_regressor_output_shapes, _convert_catboost)
    _REGISTERED = True


def _stack_shape(operator: Any) -> None:
    """Any number of inputs (the prepared columns, as a blend takes them); a classifier's label and
    ``[N, K]`` probabilities, a regressor's ``[N, 1]`` values."""
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    n = operator.inputs[0].get_first_dimension()
    raw = operator.raw_operator
    if len(operator.outputs) == 2:
        operator.outputs[0].type = Int64TensorType([n])
        operator.outputs[1].type = FloatTensorType([n, len(raw.classes_)])
    else:
        operator.outputs[0].type = FloatTensorType([n, 1])


def _convert_stack(scope: Any, operator: Any, container: Any) -> None:
    """Each member on all the graph's inputs (as skl2onnx's voting converter feeds them), their outputs
    side by side as ``ensemble.stack_features`` builds them (log-probabilities), then the level-2 model."""
    from onnx import TensorProto
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    from .ensemble import STACK_EPS

    raw = operator.raw_operator
    classifier = len(operator.outputs) == 2
    eps = scope.get_unique_variable_name("stack_eps")
    container.add_initializer(eps, TensorProto.FLOAT, [], [STACK_EPS])
    parts = []
    for i, member in enumerate(raw.estimators_):
        sub = scope.declare_local_operator(sklearn_operator_name_map[type(member)], member)
        sub.inputs = operator.inputs
        if classifier:
            sub.outputs.append(scope.declare_local_variable(f"stack_label_{i}", Int64TensorType()))
        out = scope.declare_local_variable(f"stack_out_{i}", FloatTensorType())
        sub.outputs.append(out)
        name = out.onnx_name
        if classifier:  # log(max(p, eps)), as ensemble.stack_features
            floored, name = scope.get_unique_variable_name(f"stack_p_{i}"), scope.get_unique_variable_name(f"stack_logp_{i}")
            container.add_node("Max", [out.onnx_name, eps], [floored], name=scope.get_unique_operator_name("StackMax"))
            container.add_node("Log", [floored], [name], name=scope.get_unique_operator_name("StackLog"))
        parts.append(name)
    width = raw.final_estimator_.n_features_in_
    merged = scope.declare_local_variable("stack_features", FloatTensorType([None, width]))
    container.add_node("Concat", parts, [merged.onnx_name], axis=1, name=scope.get_unique_operator_name("StackConcat"))
    final = scope.declare_local_operator(sklearn_operator_name_map[type(raw.final_estimator_)], raw.final_estimator_)
    final.inputs = [merged]
    if classifier:
        final.outputs.append(scope.declare_local_variable("stack_final_label", Int64TensorType()))
    final.outputs.append(scope.declare_local_variable("stack_final_out", FloatTensorType()))
    for mine, theirs in zip(operator.outputs, final.outputs, strict=True):
        container.add_node("Identity", [theirs.onnx_name], [mine.full_name],
                           name=scope.get_unique_operator_name("StackOut"))


def _convert_class_scaled(scope: Any, operator: Any, container: Any) -> None:
    """The inner estimator on all the graph's inputs, its probabilities times the class scale and
    renormalised (``threshold.apply_class_scale``; the row sum as a MatMul with ones, valid in any
    opset), the label their argmax."""
    from onnx import TensorProto
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    raw = operator.raw_operator
    inner = raw.estimators_[0]
    sub = scope.declare_local_operator(sklearn_operator_name_map[type(inner)], inner)
    sub.inputs = operator.inputs
    sub.outputs.append(scope.declare_local_variable("scaled_inner_label", Int64TensorType()))
    proba = scope.declare_local_variable("scaled_inner_proba", FloatTensorType())
    sub.outputs.append(proba)
    k = len(raw.scale_)
    scale, ones = scope.get_unique_variable_name("class_scale"), scope.get_unique_variable_name("class_ones")
    container.add_initializer(scale, TensorProto.FLOAT, [1, k], [float(v) for v in raw.scale_])
    container.add_initializer(ones, TensorProto.FLOAT, [k, 1], [1.0] * k)
    scaled, total = scope.get_unique_variable_name("scaled_proba"), scope.get_unique_variable_name("scaled_sum")
    container.add_node("Mul", [proba.onnx_name, scale], [scaled], name=scope.get_unique_operator_name("ScaleMul"))
    container.add_node("MatMul", [scaled, ones], [total], name=scope.get_unique_operator_name("ScaleSum"))
    container.add_node("Div", [scaled, total], [operator.outputs[1].full_name],
                       name=scope.get_unique_operator_name("ScaleDiv"))
    container.add_node("ArgMax", [operator.outputs[1].full_name], [operator.outputs[0].full_name], axis=1,
                       keepdims=0, name=scope.get_unique_operator_name("ScaleArgMax"))


def _parse_catboost_classifier(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> Any:
    """A classifier's two outputs (label, probabilities): skl2onnx recognises classifiers by scikit-learn's
    ClassifierMixin, which CatBoost's does not inherit (skl2onnx's own CatBoost example parses it so)."""
    from skl2onnx._parse import _apply_zipmap, _get_sklearn_operator_name
    from skl2onnx.common.data_types import Int64TensorType, guess_tensor_type

    options = scope.get_options(model, {"zipmap": True})
    operator = scope.declare_local_operator(_get_sklearn_operator_name(type(model)), model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("label", Int64TensorType()))
    operator.outputs.append(scope.declare_local_variable("probabilities", guess_tensor_type(inputs[0].type)))
    if isinstance(options["zipmap"], bool) and not options["zipmap"]:
        return operator.outputs
    return _apply_zipmap(options["zipmap"], scope, model, inputs[0].type, operator.outputs)


def _convert_catboost(scope: Any, operator: Any, container: Any) -> None:
    """CatBoost's own ONNX export (one TreeEnsembleClassifier/Regressor node, no initializers) inlined
    on this operator's input; CatBoost refuses a model with categorical features (served natively)."""
    from catboost.utils import convert_to_onnx_object
    from onnx.helper import get_attribute_value

    onx = convert_to_onnx_object(operator.raw_operator)
    node = next(n for n in onx.graph.node if n.op_type.startswith("TreeEnsemble"))
    opsets = {d.domain: d.version for d in onx.opset_import}
    outputs = [o.full_name for o in operator.outputs][: len(node.output)]
    container.add_node(node.op_type, [operator.inputs[0].full_name], outputs, op_domain=node.domain,
                       op_version=opsets.get(node.domain), name=scope.get_unique_operator_name("CatBoost"),
                       **{a.name: get_attribute_value(a) for a in node.attribute})


def _missing_indicator_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, len(operator.raw_operator.features_)])


def _convert_missing_indicator(scope: Any, operator: Any, container: Any) -> None:
    """1.0 where a feature that had missing values at fit time is NaN (``features="missing-only"``)."""
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables

    features = np.asarray(operator.raw_operator.features_, dtype=np.int64)
    data = concatenate_variables(scope, operator.inputs, container)
    index = scope.get_unique_variable_name("indicator_index")
    container.add_initializer(index, TensorProto.INT64, [len(features)], features.tolist())
    picked = scope.get_unique_variable_name("indicator_columns")
    container.add_node("Gather", [data, index], [picked], axis=1,
                       name=scope.get_unique_operator_name("Gather"))
    isnan = scope.get_unique_variable_name("indicator_isnan")
    container.add_node("IsNaN", [picked], [isnan], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Cast", [isnan], [operator.outputs[0].full_name], to=TensorProto.FLOAT,
                       name=scope.get_unique_operator_name("Cast"))
