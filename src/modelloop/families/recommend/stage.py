"""The recommendation train stage: dataset version -> frozen split -> recommenders searched on the shared
driver -> the best refitted on the train split -> ranking metrics on the test split -> registration.

The split is the project's frozen one: by time when ``data.time`` is given (``split.strategy: time``, the
latest interactions are the test), else a seeded random holdout of interactions. Nothing of the test
split reaches the fit; a test interaction whose (user, item) pair is also in train is not counted (the
user's training items are excluded from their list).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...data.schema import Schema
from ...errors import ConfigError
from .config import RecommendSettings
from .content import item_matrix
from .data import Interactions, interaction_columns, item_features, read_side_table
from .model import RecommenderModel
from .search import RecommendSearch, run_recommend_search

__all__ = ["model_schema", "recommend_settings", "train_recommend"]


def recommend_settings(cfg: Any) -> RecommendSettings:
    """The ``model:`` section of a config (defaults when it has none)."""
    section = getattr(cfg, "model", None)
    return section if isinstance(section, RecommendSettings) else RecommendSettings.model_validate(section or {})


def model_schema(schema: Schema, user: str, item: str) -> Schema:
    """What a client sends to ``/v1/predict``: the user and item (categorical: ids by their text); the
    table's other columns may be sent and are logged, never read."""
    columns = {c: ("categorical" if c in (user, item) else "identifier") for c in schema.columns
               if not c.startswith("_")}
    return Schema(columns=columns, target=None, id=schema.id, time=schema.time, dtypes=dict(schema.dtypes),
                  datetime_formats=dict(schema.datetime_formats))


def _study_name(ws: Any, dataset_id: str, settings: RecommendSettings) -> str:
    from ...config import config_hash

    cfg = ws.config
    section = settings.model_dump(mode="json")
    if section.get("relevant_rating") is None:  # left out: the name of a study begun before the setting
        section.pop("relevant_rating", None)
    key = json.dumps([section, cfg.split.model_dump(), cfg.seed, cfg.metric,
                      config_hash(cfg, "data")], sort_keys=True, default=str)
    return f"{cfg.name}-recommend-{dataset_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _scored_line(scored: dict[str, Any]) -> str:
    """The train summary's line on whom the ranking figures average over."""
    relevant = f"rating >= {scored['relevant_rating']:g}" if scored["relevant_rating"] is not None else "any"
    return (f"ranking figures over {scored['users']} test users with a relevant held-out item ({relevant}, not "
            f"taken in training); {scored['unscored_users']} without one left out")


def train_recommend(ws: Any, *, budget: float | None = None, trials: int | None = None, dataset: str | None = None,
                    warm_start: list[dict] | None = None, kind: str = "train",
                    progress: Callable[[int, float], None] | None = None,
                    register_as_production: bool | None = None) -> dict[str, Any]:
    """Search the recommenders, refit the best on the train split, evaluate on the test split, register."""
    from ...data.ingest import ensure_split, load_dataset
    from ...registry import tracker_for
    from ...training.train import record_model

    cfg, started = ws.config, time.time()
    settings = recommend_settings(cfg)
    user, item, rating, when = interaction_columns(cfg)
    row, df, schema = load_dataset(ws, dataset)
    side = ensure_split(ws, row, df).to_numpy()
    item_side, side_items = read_side_table(cfg, "item_features", item, row["path"])
    user_side, side_users = read_side_table(cfg, "user_features", user, row["path"])
    inter = Interactions.from_frame(df, user, item, rating, more_items=side_items)
    train_rows = np.flatnonzero(side == "train")
    test_df = df[side == "test"].reset_index(drop=True)
    n_trials = trials if trials is not None else cfg.train.trials
    budget = budget if budget is not None else cfg.train.budget
    if budget is None and n_trials is None:
        raise ConfigError("train: set a time budget or trials (or both); with neither the search never ends")
    explicit = rating is not None
    models = settings.searched(explicit)
    train_inter = Interactions(inter.users, inter.items, inter.u[train_rows], inter.i[train_rows],
                               inter.values[train_rows])
    # the items' own columns (category, title, price) and the item side table: catalog facts, from every row
    features = {**item_features(df, item, {user, rating or "", when or ""}), **item_side}
    job = RecommendSearch(train_inter, explicit, models, cfg.metric, settings.k, settings.epochs, cfg.seed,
                          budget, n_trials, side=item_matrix(features, inter.items),
                          relevant_rating=settings.relevant_rating)
    study = _study_name(ws, row["id"], settings)
    tracker = tracker_for(ws)
    tags = {"modelloop.dataset": row["id"], "modelloop.kind": kind, "modelloop.study": study,
            "modelloop.task": "recommendation"}
    with tracker.run(f"{kind}-{row['id']}", tags=tags) as run_id:
        def on_trial(rec: Any) -> None:
            with tracker.run(f"trial-{rec.number}-{rec.family}", parent=run_id,
                             tags={"modelloop.state": rec.state}) as trial_run:
                tracker.log(trial_run, params={"recommender": rec.family, **rec.params},
                            metrics={"value": rec.value} if rec.value is not None else {})

        result = run_recommend_search(job, storage=ws.optuna_url, study_name=study, on_trial=on_trial,
                                      progress=progress)
        best = result.best_single
        fitted = job.fit(best.family, best.params)
        selection = {"chosen": best.family, "value": best.value, "metric": cfg.metric,
                     "why": f"the best of {len(result.trials)} trials by validation {cfg.metric}@{settings.k}"
                            if cfg.metric not in ("rmse", "mae") else
                            f"the best of {len(result.trials)} trials by validation {cfg.metric}"}
        model = RecommenderModel.build(
            schema=model_schema(schema, user, item), columns=(user, item, rating, when), inter=inter,
            train_rows=train_rows, recommender=fitted, name=best.family, params=best.params, k=settings.k,
            features=features, user_features=user_side, side_users=side_users,
            selection=selection, relevant_rating=settings.relevant_rating)
        result.model = model
        evaluation = model.evaluate_interactions(test_df)
        tracker.log(run_id, params={"task": "ranking", "dataset": row["id"], "recommender": best.family},
                    metrics={f"test_{k}": v for k, v in evaluation["metrics"].items() if v is not None})
        version = int(tracker.log_model(run_id, model, name=cfg.name))
    summary = record_model(ws, row, run_id, version, model, result, evaluation, "ranking", kind, started, test_df,
                           register_as_production, family="recommend")
    scored = {"users": evaluation["users"], "unscored_users": evaluation["unscored_users"],
              "relevant_rating": evaluation["relevant_rating"]}
    return {**summary, "recommender": model.describe(), "selection": selection, "k": settings.k,
            "buckets": evaluation["buckets"], "scored_users": scored, "evaluation_summary": _scored_line(scored),
            "summary_metrics": ["ndcg", "precision", "recall", "map", "hit_rate", "coverage", "novelty", "rmse", "mae"]}
