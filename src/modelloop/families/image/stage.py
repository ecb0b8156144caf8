"""The image train stage: dataset version -> pixels -> (search over) head / fine-tuning -> registered model.

Mirrors the other families' train stages (same return keys, same catalog and registry records):

1. the frozen train/test split of the dataset version (stratified by label); ``model.validation_size``
   of the train split is held out (stratified, seeded) for early stopping and the search;
2. every image decoded as serving decodes it and resized to ``model.image_size``; the frozen backbone's
   features of the fit and validation images are cached per dataset version and backbone in
   ``.modelloop/cache/imgfeat-{dataset}-{key}.npz`` (a second search, or a resumed one, skips that pass);
3. trials on the shared search driver (``search.py``, ``fit.py``);
4. the best trial becomes an :class:`~modelloop.families.image.model.ImageModel`, scored on the test
   split, logged to MLflow and registered with ``record_model(..., family="image")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.images import IMAGE_COLUMN
from ...errors import ConfigError, DataError
from ...training.distributed import ray_device, ray_ranks_address
from ...training.search import TrialRecord
from ..tabular.model import encode_labels
from ..text.estimator import validation_split
from .backbone import backbone_fingerprint
from .config import ImageModelConfig
from .fit import ImageJob, device_for, extract_features, fresh_network, network_from
from .model import ImageModel
from .search import HEAD_TRIALS, SearchSettings, default_params, run_image_search

__all__ = ["image_settings", "image_study_name", "train_image"]


def image_settings(cfg: Any) -> ImageModelConfig:
    """The ``model:`` section of a config (defaults when the config has none)."""
    section = getattr(cfg, "model", None)
    if isinstance(section, ImageModelConfig):
        return section
    if section is None:
        return ImageModelConfig()
    raw = section.model_dump(exclude_defaults=True) if hasattr(section, "model_dump") else section
    return ImageModelConfig.model_validate(raw)


def image_study_name(ws: Any, dataset_id: str) -> str:
    """Resumable while the dataset and everything but the budget (and ``model.search``) stay the same."""
    from ...config import config_hash

    cfg = ws.config
    model = image_settings(cfg).model_dump(mode="json", exclude={"search"})
    key = json.dumps([model, cfg.metric, cfg.train.class_weight, cfg.split.model_dump(), cfg.seed,
                      config_hash(cfg, "data")], sort_keys=True, default=str)
    return f"{cfg.name}-image-{dataset_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def train_image(ws: Any, *, budget: float | None = None, trials: int | None = None, dataset: str | None = None,
                kind: str = "train", progress: Callable[[int, float], None] | None = None,
                register_as_production: bool | None = None,
                warm_start: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Decode, search/fine-tune, evaluate on the frozen test split, register."""
    from ...data.ingest import ensure_split, load_dataset
    from ...evaluation.evaluate import evaluate_model
    from ...registry import tracker_for
    from ...training.train import record_model

    cfg, started = ws.config, time.time()
    settings = image_settings(cfg)
    row, df, _ = load_dataset(ws, dataset)
    if IMAGE_COLUMN not in df.columns:
        raise DataError(f"dataset {row['id']} has no '{IMAGE_COLUMN}' column; re-run `modelloop ingest` with "
                        "task: image_classification")
    side = ensure_split(ws, row, df).to_numpy()
    target = cfg.data.target
    job, test_df, rows = _job(ws, row, df, side, target, settings)
    study = image_study_name(ws, row["id"])
    n_trials = trials if trials is not None else cfg.train.trials
    if n_trials is None and settings.method == "head":
        n_trials = HEAD_TRIALS
    search = SearchSettings(budget if budget is not None else cfg.train.budget, n_trials, settings.search,
                            _warm_params(warm_start, settings))
    if search.search and search.budget is None and search.n_trials is None:
        raise ConfigError("train: set a time budget or trials (or both); with neither the search never ends")
    tracker = tracker_for(ws)
    tags = {"modelloop.dataset": row["id"], "modelloop.kind": kind, "modelloop.study": study,
            "modelloop.task": "image_classification"}
    with tracker.run(f"{kind}-{row['id']}", tags=tags) as run_id:
        chosen, summary = run_image_search(job, storage=ws.optuna_url, study_name=study,
                                           work_dir=ws.study_dir(study), settings=search,
                                           on_trial=_trial_logger(tracker, run_id, job), progress=progress)
        net = network_from(job, chosen["result"]["payload"])
        config = settings.model_dump(mode="json")
        model = ImageModel.from_network(net, classes=job.classes, config=config, target=target,
                                        description={"rows": rows, "best_params": chosen["params"],
                                                     "epochs_run": chosen["result"]["epochs_run"]})
        model.cleaning_plan_ = None
        summary.model = model
        evaluation = evaluate_model(model, test_df, target=target, task=model.task)
        tracker.log(run_id, params={"metric": cfg.metric, "dataset": row["id"], "method": settings.method,
                                    "backbone": settings.backbone, "image_size": settings.image_size,
                                    "best_params": chosen["params"], "rows": rows},
                    metrics={**{f"test_{k}": v for k, v in evaluation["metrics"].items()},
                             f"valid_{cfg.metric}": summary.validation_score})
        version = int(tracker.log_model(run_id, model, name=cfg.name))
    return record_model(ws, row, run_id, version, model, summary, evaluation, model.task, kind, started,
                        test_df, register_as_production, family="image")


def _warm_params(warm_start: list[dict[str, Any]] | None, settings: ImageModelConfig) -> list[dict[str, Any]]:
    names = set(default_params(settings))
    return [{k: v for k, v in w.items() if k in names} for w in warm_start or []
            if w.get("family", settings.method) == settings.method and names <= set(w)]


def _job(ws: Any, row: dict, df: pd.DataFrame, side: np.ndarray, target: str,
         settings: ImageModelConfig) -> tuple[ImageJob, pd.DataFrame, dict[str, int]]:
    """Split, hold out validation images, decode and resize them -> the job (and the test rows)."""
    cfg = ws.config
    train_df = df[side == "train"].reset_index(drop=True)
    test_df = df[side == "test"].reset_index(drop=True)
    if train_df.empty:
        raise DataError("the train split holds no image")
    _, classes = encode_labels(df[target], "multiclass")
    index = {str(c): i for i, c in enumerate(classes or [])}
    fit, val = validation_split(train_df[target], settings.validation_size, cfg.seed)
    fit_df, val_df = train_df.iloc[fit].reset_index(drop=True), train_df.iloc[val].reset_index(drop=True)
    decoder = ImageModel({"image_size": settings.image_size})
    decoder.image_size_ = settings.image_size
    y = lambda frame: frame[target].map(lambda v: index[str(v)]).to_numpy(dtype=np.int64)  # noqa: E731
    ray_address = None if settings.method == "head" else \
        ray_ranks_address(cfg.compute.engine, cfg.compute.address, cfg.train.ddp_processes)
    job = ImageJob(settings, list(classes or []), decoder.pixels(fit_df), y(fit_df), decoder.pixels(val_df),
                   y(val_df), cfg.metric, cfg.train.class_weight, cfg.seed,
                   device_for(settings.device) if ray_address is None else "cpu",  # on Ray the job holds no GPU
                   root=Path(cfg.root), ddp_processes=cfg.train.ddp_processes)
    job.features = _cached_features(ws, row["id"], job, fit_df, val_df)
    if ray_address is not None:  # the ranks are Ray Train's workers, on the cluster's device
        job.ray_address = ray_address
        job.device = ray_device(ray_address, settings.device, cfg.train.ddp_processes)
    rows = {"fit": len(fit_df), "validation": len(val_df), "test": len(test_df)}
    return job, test_df, rows


def _cached_features(ws: Any, dataset_id: str, job: ImageJob, fit_df: pd.DataFrame,
                     val_df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The frozen backbone's features of the fit and validation images (cached per version and backbone)."""
    from ...data.snapshot import ROW_ID

    s = job.settings
    key = hashlib.sha256(json.dumps([backbone_fingerprint(s.backbone, job.root), s.image_size, job.seed])
                         .encode()).hexdigest()[:12]
    path = ws.state / "cache" / f"imgfeat-{dataset_id}-{key}.npz"
    wanted = np.r_[fit_df[ROW_ID].to_numpy(np.int64), val_df[ROW_ID].to_numpy(np.int64)]
    if path.is_file():
        with np.load(path) as z:
            rows, feats = z["row_id"], z["features"]
        where = {int(r): i for i, r in enumerate(rows)}
        if all(int(r) in where for r in wanted):
            at = [where[int(r)] for r in wanted]
            return {"fit": feats[at[:len(fit_df)]], "val": feats[at[len(fit_df):]]}
    net = fresh_network(job)
    feats = extract_features(net, np.concatenate([job.x_fit, job.x_val]), job.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, row_id=wanted, features=feats)
    os.replace(tmp, path)
    return {"fit": feats[:len(fit_df)], "val": feats[len(fit_df):]}


def _trial_logger(tracker: Any, parent: str, job: ImageJob) -> Callable[[TrialRecord, dict], None]:
    def log(rec: TrialRecord, extra: dict) -> None:
        with tracker.run(f"trial-{rec.number}-{rec.family}", parent=parent,
                         tags={"modelloop.state": rec.state}) as trial_run:
            metrics = {f"valid_{job.metric}": rec.value, "seconds": rec.duration_s}
            tracker.log(trial_run, params={"method": rec.family, **rec.params},
                        metrics={k: v for k, v in metrics.items() if v is not None})
    return log
