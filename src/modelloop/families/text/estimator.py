"""``TextModel.fit``: one trial with the configured values, no search and no tracking.

It sits below the model object (which calls it) and above the fine-tuning loop, so that neither
imports the other in a circle; the train stage (``training/text.py``) shares its data split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...errors import DataError
from ..heads import ClassificationHead
from ..tabular.model import encode_labels
from .backbone import (
    effective_max_length,
    extend_vocabulary,
    load_tokenizer,
    resolve_backbone,
    texts_of,
    tokenize,
)
from .fit import FitJob, _device, build_model, run_params
from .search import default_params

if TYPE_CHECKING:
    from .model import TextModel

__all__ = ["fit_text_model", "prepare_job", "validation_split"]


def validation_split(y: pd.Series, size: float, seed: int,
                     groups: pd.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) positions: stratified when every class has two rows, else random.

    ``groups`` (the rows' ``data.group`` values, named by the column): whole groups are held out
    (``split.whole_groups``, about ``size`` of the rows and of each class's), as the test split and the
    tabular folds keep them. Drawn by rows, a customer's reviews on both sides let early stopping and the
    search choose on customers the model trains on."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    n_val = max(1, int(round(size * len(y))))
    if len(y) < 4 or n_val >= len(y):
        raise DataError(f"the train split has {len(y)} rows; text models need at least 4 to hold out "
                        f"model.validation_size ({size}) for early stopping")
    labels = y.astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    stratify = bool(counts.min() >= 2 and n_val >= len(counts))
    if groups is not None:
        from ...data.split import whole_groups

        classes = pd.factorize(labels)[0] if stratify else np.zeros(len(y), dtype=np.int64)
        held = whole_groups(pd.factorize(groups.astype(str))[0], classes, size, np.random.default_rng(seed),
                            column=str(groups.name))
        return idx[~held], idx[held]
    fit, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=labels if stratify else None)
    return np.sort(fit), np.sort(val)


# --------------------------------------------------------------------------- TextModel.fit
def torch_backbone(name: str | list[str]) -> str:
    """The backbone ``TextModel.fit`` loads: ``auto`` is MiniLM (``bundled``; the language mix is read
    by the train stage, which also searches the frozen encoders and TF-IDF)."""
    from ...errors import ConfigError
    from .encoders import AUTO, FROZEN

    if isinstance(name, list):
        raise ConfigError("model.backbone: a list of backbones is compared by the train stage (`modelloop "
                          "train`); TextModel.fit trains one: name it")
    if name in FROZEN:
        raise ConfigError(f"model.backbone: {name} is a frozen encoder trained by the train stage "
                          "(`modelloop train`), not by TextModel.fit")
    return "bundled" if name == AUTO else name


def prepare_job(model: TextModel, texts: list[str], y: pd.Series) -> tuple[FitJob, dict[str, Any]]:
    settings = model.settings()
    ClassificationHead.check_metric(model.metric, "multiclass")
    keep = np.array([bool(t.strip()) for t in texts])
    if not keep.any():
        raise DataError(f"every text in column '{model.text_column}' is empty")
    texts = [t for t, k in zip(texts, keep, strict=True) if k]
    y = y[keep].reset_index(drop=True)
    target, classes = encode_labels(y, "multiclass")
    fit, val = validation_split(y, settings.validation_size, model.seed)
    source = resolve_backbone(torch_backbone(settings.backbone), root=model.root or ".")
    tokenizer = load_tokenizer(source)
    max_length = effective_max_length(tokenizer, source, settings.max_length)
    fit_texts = [texts[i] for i in fit]
    added = extend_vocabulary(tokenizer, fit_texts) if settings.extend_vocab else []
    ids, cut = tokenize(tokenizer, texts, max_length)
    job = FitJob(settings, source, tokenizer, max_length, added, list(classes or []), [ids[i] for i in fit],
               target[fit], [ids[i] for i in val], target[val], model.metric, model.class_weight, model.seed,
               _device(settings.device))
    stats = {"rows": len(keep), "skipped_empty": int((~keep).sum()), "truncated": int(cut.sum()),
             "max_length": max_length, "added_tokens": len(added)}
    return job, stats


def fit_text_model(model: TextModel, X: Any, y: Any) -> TextModel:
    """``TextModel.fit``: one trial with the configured values (no search, no tracking), in place."""
    model.settings()  # bad settings fail before any data is read
    texts = texts_of(X, model.text_column)
    labels = pd.Series(np.asarray(y, dtype=object))
    if len(labels) != len(texts):
        raise DataError(f"X has {len(texts)} texts but y has {len(labels)} labels")
    job, stats = prepare_job(model, texts, labels)
    params = default_params(job.settings)
    result = run_params(job, params)
    built = build_model(job, params, result, model_class=type(model), text_column=model.text_column, target=None,
                         description={"text_stats": stats})
    model.__dict__.update({k: v for k, v in built.__dict__.items() if k not in model.get_params()})
    return model
