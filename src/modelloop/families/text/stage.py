"""The text train stage: dataset version -> tokens -> (search over) fine-tuning -> registered model.

Mirrors :func:`modelloop.training.train.train` (same return keys, same catalog and registry
records) for ``task: text_classification``:

1. the frozen train/test split of the dataset version; texts that are empty are counted and left
   out (``describe()["text_stats"]``); ``model.validation_size`` of the train split is held out
   (stratified, seeded) for early stopping and the search; augmentation (opt-in) touches only the
   rest;
2. the backbone's fast tokenizer, grown by the characters it does not know (``extend_vocab``);
   token ids are cached per dataset version in ``.modelloop/cache/tok-{dataset}-{key}.npz``, and
   for ``method: head`` the frozen encoder's embeddings in ``emb-{dataset}-{key}.npz``;
3. trials (Optuna, like the tabular search: storage URL, study name, ``load_if_exists`` resume,
   the configured values as the first trial): ``head`` fits a logistic regression on standardised
   embeddings; ``lora`` / ``full`` start the classification layer from that same regression
   (linear probing, then fine-tuning) and fine-tune with AdamW, warmup + linear/cosine decay,
   gradient accumulation, class weights, early stopping on the validation score and, on CUDA, autocast.
   Each epoch writes a checkpoint, so a trial interrupted by a kill resumes at its next epoch;
4. the best trial becomes a :class:`~modelloop.families.text.model.TextModel` (head refitted on train +
   validation; LoRA merged), is scored on the test split, logged to MLflow and registered.

**Budget.** With ``model.search: true`` the search runs within ``train.budget`` seconds (over all
runs of a resumed search) less the time this run spent before it (reading, embedding and tokenizing
the rows: ``embedding_seconds`` in the summary), at least ``SEARCH_FLOOR`` of ``train.budget``.
Embedding gets the rest: each encoder not cached, the first included, is timed on a sample and left
out when its estimate does not fit what is left, or stopped at that deadline (``backbone.embedding``,
``backbone.skipped``; :func:`_candidates`), so a long-document set on a busy CPU trains TF-IDF within
the budget instead of embedding past it. Trials are capped by ``train.trials`` (for ``head``, 30 trials when
``train.trials`` is unset); a trial past the deadline, the first included, stops after its current
epoch (one epoch at least); a TF-IDF or frozen-head trial is cross-validated (:mod:`.crossval`) and
stops between folds; TF-IDF's configured trial runs first. The blend reuses the trials' out-of-fold
predictions and gets what the search left unspent. With ``search: false`` one trial
with the configured values runs its epochs in full.

Steps 3 and 4 live in ``text_search.py`` (the trials) and ``text_fit.py`` (one configuration:
networks, head, fine-tuning loop, checkpoints); this module holds the data side and the stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError
from ..tabular.model import encode_labels
from ..tabular.task import padded_classes_warning
from .backbone import (
    EmbeddingDeadline,
    backbone_fingerprint,
    effective_max_length,
    extend_vocabulary,
    load_tokenizer,
    mean_by_text,
    resolve_backbone,
    texts_of,
    tokenize_windows,
)
from .blend import build_blend, choose_blend
from .config import TextModelConfig
from .estimator import fit_text_model, validation_split
from .fit import FitJob, _device, _network_for, embed
from .latency import LatencyBound, latency_bound
from .search import HEAD_TRIALS, _SearchSettings, run_text_search, warm_sets
from ...training.distributed import ray_device, ray_ranks_address
from ...training.search import TrialRecord

__all__ = ["HEAD_TRIALS", "SEARCH_FLOOR", "fit_text_model", "run_text_search", "text_settings", "text_study_name", "train_text",
           "validation_split"]
log = logging.getLogger("modelloop.train")


# --------------------------------------------------------------------------- settings and data
def text_settings(cfg: Any) -> TextModelConfig:
    """The ``model:`` section of a config (defaults when the config has none)."""
    section = getattr(cfg, "model", None)
    if section is None:
        return TextModelConfig()
    return section if isinstance(section, TextModelConfig) else TextModelConfig.model_validate(section)


# --------------------------------------------------------------------------- the stage
SEARCH_FLOOR = 0.15  # the share of train.budget the search gets however long embedding took


def text_study_name(ws: Any, dataset_id: str) -> str:
    """Resumable while the dataset and everything but the budget (and ``model.search``) stay the same.
    ``-gv``: validation rows and cross-validation folds of whole ``data.group`` groups (since 2026-12-06:
    they were drawn by rows), so a grouped project's study of the old rows is not resumed."""
    from ...config import config_hash

    cfg = ws.config
    model = text_settings(cfg).model_dump(mode="json", exclude={"search"})
    key = json.dumps([model, cfg.metric, cfg.train.class_weight, cfg.split.model_dump(), cfg.seed,
                      config_hash(cfg, "data")], sort_keys=True, default=str)
    grouped = "-gv" if cfg.data.group is not None else ""
    return f"{cfg.name}-text-{dataset_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}{grouped}"


def train_text(ws: Any, *, budget: float | None = None, trials: int | None = None, dataset: str | None = None,
               kind: str = "train", progress: Callable[[int, float], None] | None = None,
               register_as_production: bool | None = None,
               warm_start: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Embed or tokenize, search the candidates, evaluate on the frozen test split, register. Returns
    the same JSON-ready summary as the tabular train stage (``best_family`` is the winning method:
    head | lora | full | tfidf), plus ``backbone`` (configured, the encoders ``tried``, each
    candidate's best ``validation`` score, the encoder ``chosen`` by it, and why) and ``by_script`` (the
    test metric on the CJK rows and the others) and ``blend`` (:func:`.blend.choose_blend`: the best
    TF-IDF and frozen-encoder trials averaged, its weights, validation score and why it was kept or
    not; None with fewer than two such candidates; a kept blend is the registered model and the
    run's ``ensemble``). ``warm_start`` (parameter sets, e.g. the champion's,
    as the retrain stage passes them) are tried first when ``model.search`` is on; sets of another
    method are ignored."""
    from ...data.ingest import ensure_split, load_dataset
    from ...data.stages import cleaning_plan
    from ...evaluation.evaluate import evaluate_model
    from ...registry import tracker_for
    from ...training.train import record_model

    cfg, started, clock = ws.config, time.time(), time.monotonic()
    settings = text_settings(cfg)
    row, df, schema = load_dataset(ws, dataset)
    side = ensure_split(ws, row, df).to_numpy()
    text, target = _text_column(cfg, schema), cfg.data.target
    parts, stats = _split_rows(df, side, text, target, settings, cfg)
    choice = _choose(settings, parts, text, ws.root)
    embedding_started = time.monotonic()
    cands, job, enc_stats, bound = _candidates(ws, row, df, parts, stats, text, target, settings, choice,
                                               budget if budget is not None else cfg.train.budget)
    embedding_s = time.monotonic() - embedding_started  # encoders' embeddings and tokenizing: in the budget
    study = text_study_name(ws, row["id"])
    tracker = tracker_for(ws)
    total = budget if budget is not None else cfg.train.budget
    tags = {"modelloop.dataset": row["id"], "modelloop.kind": kind, "modelloop.study": study,
            "modelloop.task": "text_classification"}
    with tracker.run(f"{kind}-{row['id']}", tags=tags) as run_id:
        search_started = time.monotonic()  # the search gets what reading, embedding and the tracker left
        searched = None if total is None else max(SEARCH_FLOOR * total, total - (search_started - clock))
        search = _search_settings(cfg, settings, cands, searched, trials, warm_start)
        chosen, summary = run_text_search(cands, metric=cfg.metric, seed=cfg.seed, storage=ws.optuna_url,
                                          study_name=study, work_dir=ws.study_dir(study), settings=search,
                                          job=job, on_trial=_trial_logger(tracker, run_id, cfg.metric),
                                          progress=progress)
        choice.update(_compared(cands, summary, chosen["candidate"], cfg.metric, choice))
        fine_tune = None
        if chosen.get("compared"):  # a fine-tune against a cross-validated trial: on the validation rows
            choice["compared"] = chosen["compared"]
            c = chosen["compared"]
            choice["why"] = (f"{choice.get('why', '')}; fine-tune vs cross-validated candidate on the validation "
                             f"rows: {c['fine_tune']} vs {c['cross_validated']}").lstrip("; ")
            if not hasattr(cands[chosen["candidate"]], "cross_validate"):
                fine_tune = float(summary.validation_score)
        left = None if search.budget is None or not settings.search else \
            max(0.0, search.budget - (time.monotonic() - search_started))  # for members to cross-validate again
        blend = choose_blend(cands, summary.trials, metric=cfg.metric, seed=cfg.seed,
                             best_single=summary.validation_score, seconds=left, fine_tune=fine_tune, latency=bound)
        kept = bool(blend and blend["kept"])
        if blend:
            choice["why"] = f"{choice.get('why', '')}; {blend['why']}".lstrip("; ")
        stats = enc_stats.get(choice["chosen"], stats) if chosen["candidate"] != "tfidf" or kept else stats
        description = {"text_stats": stats, "augment": parts["augment"], "backbone_choice": choice,
                       "search_stopped": chosen["stopped"], "blend": blend}
        if bound is not None:  # what the served model costs against the bound (its members' costs)
            served = [m["candidate"] for m in blend["members"] if m["weight"] > 0] if kept and blend else \
                [chosen["candidate"]]
            summary.latency = bound.report([getattr(cands[n], "backbone", None) or n for n in served])
        if kept:
            assert blend is not None
            model = build_blend(cands, blend, text_column=text, target=target, description=description)
            summary.validation_score, summary.ensemble = float(blend["validation"]), blend
        else:
            model = cands[chosen["candidate"]].build(chosen["params"], chosen["result"], text_column=text,
                                                     target=target, description=description)
        model.cleaning_plan_ = cleaning_plan(ws, row)
        summary.model = model
        evaluation = evaluate_model(model, parts["test"], target=target, task=model.task)
        tracker.log(run_id, params={**_run_params_log(cfg, row, model, chosen, stats, parts["augment"]),
                                    "backbone_validation": json.dumps(choice["validation"], ensure_ascii=False)},
                    metrics={**{f"test_{k}": v for k, v in evaluation["metrics"].items()},
                             f"valid_{cfg.metric}": summary.validation_score})
        version = int(tracker.log_model(run_id, model, name=cfg.name))
    result = record_model(ws, row, run_id, version, model, summary, evaluation, model.task, kind, started,
                          parts["test"], register_as_production, family="text")
    # fewer data.group groups than the cross-validation folds: fold_groups' warning, as the tabular stage gives it
    plan = next((c.cv_groups() for c in cands.values() if hasattr(c, "cv_groups")), None)
    warnings = [w for w in (plan.warning if plan is not None else None,
                            padded_classes_warning(parts["train"][target], target) if model.task != "regression"
                            else None) if w]
    for w in warnings:
        log.warning("%s", w)
    return {**result, "warnings": warnings, "backbone": choice, "search_stopped": chosen["stopped"], "blend": blend,
            "embedding_seconds": round(embedding_s, 2),
            "by_script": by_script(model, parts["test"], text, target, cfg.metric)}


def _search_settings(cfg: Any, settings: TextModelConfig, cands: dict[str, Any], budget: float | None,
                     trials: int | None, warm_start: list[dict[str, Any]] | None) -> _SearchSettings:
    n_trials = trials if trials is not None else cfg.train.trials
    budget = budget if budget is not None else cfg.train.budget
    until_stale = False
    if n_trials is None and all(c.family == "head" for c in cands.values()) and len(cands) == 1:
        n_trials = HEAD_TRIALS  # a one-dimensional search (C) has converged long before the budget ends
    elif n_trials is None and budget is not None:
        until_stale = True  # several candidates: spend the budget, stop once the best stops moving
    search = _SearchSettings(budget, n_trials, settings.search, warm_sets(warm_start, cands), until_stale)
    if search.search and search.budget is None and search.n_trials is None:
        raise ConfigError("train: set a time budget or trials (or both); with neither the search never ends")
    return search


def by_script(model: Any, test: pd.DataFrame, text: str, target: str, metric: str) -> dict[str, Any]:
    """The test metric (and accuracy) on the rows whose text is mostly CJK (``cjk``: at least 30 % of
    its characters) and on the others, so a bilingual project sees what each language gets."""
    import polars as pl

    from ...data.shift import text_stats
    from ...evaluation.evaluate import scores_of
    from ...evaluation.metrics import score

    if test.empty:
        return {}
    y, proba = scores_of(model, test, target, model.task)  # the evaluation's scores: not embedded again
    texts = texts_of(test[test[target].notna()], text)
    share = text_stats(pl.Series(texts, dtype=pl.String))["cjk_share"].to_numpy()
    out: dict[str, Any] = {}
    for name, rows in (("cjk", share >= 0.3), ("other", share < 0.3)):
        keep = rows & (y >= 0)
        if keep.any():
            out[name] = {"rows": int(keep.sum()), metric: round(float(score(metric, y[keep], proba[keep])), 4),
                         "accuracy": round(float(np.mean(proba[keep].argmax(1) == y[keep])), 4)}
    return out


def _text_column(cfg: Any, schema: Any) -> str:
    if cfg.data.text:
        return str(cfg.data.text)
    found = [c for c, k in schema.columns.items() if k == "text" and c not in (schema.target, schema.id)]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(schema.columns)
    if not found:
        raise ConfigError(f"data.text: no column looks like free text; set data.text to the column holding "
                          f"the texts (columns: {listed})")
    raise ConfigError(f"data.text: several text columns ({', '.join(found)}); set data.text to the one to use")


def _split_rows(df: pd.DataFrame, side: np.ndarray, text: str, target: str, settings: TextModelConfig,
                cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Skip empty texts, hold out validation rows, augment the rest: the parts every candidate reads."""
    texts = pd.Series(texts_of(df, text))
    empty = (texts.str.strip() == "").to_numpy()
    if empty.all():
        raise DataError(f"column '{text}' is empty in every row (after cleaning); point data.text at the "
                        "column that holds the texts")
    stats: dict[str, Any] = {"skipped_empty": {"train": int((empty & (side == "train")).sum()),
                                               "test": int((empty & (side == "test")).sum())}}
    train_df = df[(side == "train") & ~empty].reset_index(drop=True)
    test_df = df[(side == "test") & ~empty].reset_index(drop=True)
    if train_df.empty:
        raise DataError(f"column '{text}' has no non-empty text in the train split")
    _, classes = encode_labels(df.loc[~empty, target], "multiclass")
    index = {str(c): i for i, c in enumerate(classes or [])}
    group = cfg.data.group  # whole groups held out, as the test split keeps them
    fit, val = validation_split(train_df[target], settings.validation_size, cfg.seed,
                                groups=train_df[group] if group is not None and group in train_df.columns else None)
    fit_df, val_df = train_df.iloc[fit].reset_index(drop=True), train_df.iloc[val].reset_index(drop=True)
    aug_df, aug_report = _augment(settings, fit_df, text, cfg)
    stats["rows"] = {"fit": len(fit_df), "validation": len(val_df), "augmented": len(aug_df), "test": len(test_df)}
    y = lambda frame: frame[target].map(lambda v: index[str(v)]).to_numpy(dtype=np.int64)  # noqa: E731
    parts = {"train": train_df, "test": test_df, "fit": fit_df, "val": val_df, "aug": aug_df,
             "augment": aug_report, "classes": list(classes or []),
             "y_fit": np.r_[y(fit_df), y(aug_df)].astype(np.int64), "y_val": y(val_df)}
    return parts, stats


def _choose(settings: TextModelConfig, parts: dict[str, Any], text: str, root: Any) -> dict[str, Any]:
    """``{"configured", "tried", "chosen", "why"}``: the encoders the search compares, the preferred
    first. ``auto`` reads the training texts' language mix and adds a second encoder that applies
    here; a list is taken as given; a named backbone is the only one. Each is checked here: an unknown
    name that is no folder stops with one line."""
    from .encoders import AUTO, FROZEN, auto_backbones, check_frozen

    configured = settings.backbone
    if configured == AUTO:
        names, why = auto_backbones(texts_of(parts["train"], text), method=settings.method)
    elif isinstance(configured, list):
        names, why = list(dict.fromkeys(configured)), "listed in model.backbone"
    else:
        names, why = [configured], "named in model.backbone"
    for name in names:
        if name in FROZEN:
            check_frozen(name, method=settings.method)
        else:
            resolve_backbone(name, root=root)
    return {"configured": configured, "tried": names, "chosen": names[0], "why": why}


class _Skip(Exception):
    """An encoder left out before the search; the message says why (``backbone.skipped``)."""


@dataclass
class _EmbedShare:
    """What one encoder may spend embedding the rows: ``seconds`` from now (``deadline``), the part of
    ``train.budget`` left before the search's floor after ``spent`` seconds of embedding the encoders
    before it. ``estimate`` records the timed guess (``backbone.embedding``) and leaves the encoder out
    when it does not fit; ``stopped`` says why an embedding that passed the deadline was dropped."""

    seconds: float
    budget: float
    spent: float
    record: dict[str, Any]
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds
        self.record.update(left_s=round(max(0.0, self.seconds), 1))

    def estimate(self, guess: float, what: str, timed: str) -> None:
        self.record.update(estimated_s=round(guess, 1), timed=timed)
        if guess > self.seconds:
            raise _Skip(f"embedding its {what} would take ~{guess:.0f} s (timed on {timed}), over the "
                        f"{max(0.0, self.seconds):.0f} s of train.budget {self.budget:g} s left for embedding "
                        f"({self.spent:.0f} s spent on it, {SEARCH_FLOOR:.0%} kept for the search)")

    def stopped(self, exc: EmbeddingDeadline) -> _Skip:
        self.record.update(stopped_after=f"{exc.done} of {exc.total} windows")
        guess = self.record.get("estimated_s")
        return _Skip(f"its embedding passed the {self.seconds:.0f} s of train.budget {self.budget:g} s left for "
                     f"embedding (estimated ~{guess} s) and was stopped after {exc.done} of {exc.total} windows")


def _candidates(ws: Any, row: dict, df: pd.DataFrame, parts: dict[str, Any], stats: dict[str, Any], text: str,
                target: str, settings: TextModelConfig, choice: dict[str, Any], budget: float | None
                ) -> tuple[dict[str, Any], FitJob | None, dict[str, dict[str, Any]], LatencyBound | None]:
    """The search's candidates: TF-IDF and each encoder of ``choice["tried"]`` (frozen, or a PyTorch
    one); the first PyTorch encoder's job; each encoder's text stats; the served-cost bound
    (:func:`.latency.latency_bound`: ``train.max_latency_ms``, or ``backbone: auto``'s).

    An encoder whose served cost (timed on a few training texts) is over that bound is left out
    before it embeds anything, and named in ``choice["skipped"]`` with its cost.

    Embedding may spend what ``SEARCH_FLOOR`` leaves of ``budget``. Before an encoder embeds rows it
    has not cached, the first included, its cost here is timed on a few texts (frozen) or windows
    (PyTorch) and scaled to all of them (``backbone.embedding``: estimated_s, left_s, timed); one
    whose guess is over what is left is not embedded, and one whose embedding passes that deadline
    anyway (a guess too low on a busy machine) is stopped and dropped: each is named in
    ``choice["skipped"]`` with why. An encoder is never left out when no other candidate would
    remain (``model.classical`` off and nothing embedded): it then runs past the budget."""
    from .candidates import FrozenCandidate, TfidfCandidate, encoder_candidate
    from .encoders import FROZEN

    cfg = ws.config
    group = cfg.data.group  # the folds keep its groups whole, as the validation split does
    groups = pd.concat([parts["fit"][group], parts["val"][group]], ignore_index=True) \
        if group is not None and group in parts["fit"].columns else None
    common = dict(y_fit=parts["y_fit"], y_val=parts["y_val"], classes=parts["classes"],
                  metric=cfg.metric, class_weight=cfg.train.class_weight, seed=cfg.seed,
                  augmented=len(parts["aug"]),  # the last fit rows: never held out by the folds
                  groups=groups)
    cands: dict[str, Any] = {}
    jobs: list[FitJob] = []
    enc_stats: dict[str, dict[str, Any]] = {}
    names = list(choice["tried"])
    bound = latency_bound(cfg.train.max_latency_ms, configured=settings.backbone, tried=names,
                          method=settings.method, texts=texts_of(parts["fit"], text),
                          y=parts["y_fit"][:len(parts["fit"])], root=ws.root, max_length=settings.max_length,
                          seed=cfg.seed)
    networks = [n for n in names if n not in FROZEN]
    allowed = None if budget is None else (1.0 - SEARCH_FLOOR) * budget
    started = time.monotonic()
    for i, name in enumerate(names):
        another = settings.classical or bool(enc_stats) or i < len(names) - 1  # never the last candidate left
        if bound is not None and another and (over := bound.over(name)):
            choice.setdefault("skipped", {})[name] = over
            continue
        spent = time.monotonic() - started
        may_skip = allowed is not None and another
        share = None
        if may_skip:
            assert allowed is not None and budget is not None
            record = choice.setdefault("embedding", {}).setdefault(name, {})
            share = _EmbedShare(allowed - spent, budget, spent, record)
        own = settings.model_copy(update={"backbone": name})
        own_stats = dict(stats)
        t0 = time.monotonic()
        try:
            if share is not None and share.seconds <= 0:
                raise _Skip(f"embedding the encoders before it took {spent:.0f} s, all of train.budget "
                            f"{share.budget:g} s but the search's {SEARCH_FLOOR:.0%}")
            if name in FROZEN:
                frozen = FrozenCandidate(**common, settings=own, backbone=name)  # type: ignore[arg-type]
                frozen.engine, frozen.features = _frozen_features(ws, row["id"], df, parts, own_stats, text, name,
                                                                  share)
                cands[frozen.name] = frozen
            else:
                job = _stage_job(ws, row, df, parts, own_stats, text, own, name, share)
                jobs.append(job)
                key = "encoder" if len(networks) == 1 else f"encoder:{name}"
                cands[key] = encoder_candidate(job, common, name=key, backbone=name)
        except _Skip as skip:
            choice.setdefault("skipped", {})[name] = str(skip)
            continue
        finally:
            if share is not None:
                share.record["seconds"] = round(time.monotonic() - t0, 1)
        enc_stats[name] = own_stats
    choice["tried"] = [n for n in names if n in enc_stats]
    if choice["tried"]:
        choice["chosen"] = choice["tried"][0]
        stats.update(enc_stats[choice["tried"][0]])
    else:  # every encoder left out: TF-IDF alone
        choice["chosen"] = "tfidf"
    for name, why in choice.get("skipped", {}).items():  # the summary prints `why`: say it was not compared after all
        choice["why"] = f"{choice['why']}; {name} skipped: {why}"
    if settings.classical:  # last in the study (its identity), first searched (search._search_loop)
        cands["tfidf"] = TfidfCandidate(**common, settings=settings,  # type: ignore[arg-type]
                                        fit_texts=texts_of(parts["fit"], text) + texts_of(parts["aug"], text),
                                        val_texts=texts_of(parts["val"], text))
    return cands, (jobs[0] if jobs else None), enc_stats, bound


def _compared(cands: dict[str, Any], summary: Any, winner: str, metric: str, choice: dict[str, Any]) -> dict[str, Any]:
    """Each candidate's best validation score (by backbone name; ``tfidf`` for TF-IDF), the encoder
    the comparison chose and why: what the summary and the run report."""
    from ...evaluation.metrics import direction
    from .search import CANDIDATE

    sign = 1.0 if direction(metric) == "maximize" else -1.0
    only = next(iter(cands))
    best: dict[str, float] = {}
    for rec in summary.trials:
        name = str(rec.params.get(CANDIDATE, only))
        if rec.value is not None and name in cands and np.isfinite(rec.value):
            key = getattr(cands[name], "backbone", None) or name
            if key not in best or sign * rec.value > sign * best[key]:
                best[key] = float(rec.value)
    validation = {k: round(v, 4) for k, v in sorted(best.items(), key=lambda kv: -sign * kv[1])}
    encoders = [k for k in validation if k in choice["tried"]]
    chosen = getattr(cands[winner], "backbone", None) or (encoders[0] if encoders else choice["chosen"])
    out: dict[str, Any] = {"validation": validation, "chosen": chosen}
    if len(choice["tried"]) > 1:
        figures = ", ".join(f"{k} {v}" for k, v in validation.items())
        out["why"] = f"best validation {metric} of {figures}; {choice['why']}"
    return out


def _frozen_cache(ws: Any, dataset_id: str, backbone: str) -> Path:
    """Where the pooled embeddings of every row of a dataset version by a frozen encoder are kept."""
    from .encoders import default_engine, frozen_encoder

    engine = default_engine(backbone)
    w = frozen_encoder(backbone, engine).window
    return _cache_dir(ws) / f"femb-{dataset_id}-{backbone}-{engine}-{w.unit}{w.size}-{w.overlap}.npz"


def _embedding_seconds(backbone: str, texts: list[str], probe: int = 8) -> tuple[float, int]:
    """(seconds to embed every text, texts timed): ``probe`` texts spread over the set, timed once
    everything ``embed_pooled`` loads on first use is loaded (the engine, and the tokenizer that cuts
    windows: USE's SentencePiece counter, ~0.5 s, made a fresh process's guess ~27x too high), scaled
    to all (e5's C engine can take ~1 s a text on a busy machine)."""
    from .encoders import default_engine, frozen_encoder

    enc = frozen_encoder(backbone, default_engine(backbone))
    sample = texts[:: max(1, len(texts) // probe)][:probe]
    enc.embed_pooled(["warm up"])
    t0 = time.monotonic()
    enc.embed_pooled(sample)
    return (time.monotonic() - t0) / max(1, len(sample)) * len(texts), len(sample)


def _frozen_features(ws: Any, dataset_id: str, df: pd.DataFrame, parts: dict[str, Any], stats: dict[str, Any],
                     text: str, backbone: str, share: _EmbedShare | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """Pooled embeddings of the fit (+ augmented) and validation rows, cached per dataset version.
    ``share``: rows not cached are embedded only when the timed guess fits it, and within its deadline
    (else :class:`_Skip`)."""
    from ...data.snapshot import ROW_ID
    from .encoders import default_engine, frozen_encoder

    engine = default_engine(backbone)
    enc = frozen_encoder(backbone, engine)
    w = enc.window
    path = _frozen_cache(ws, dataset_id, backbone)
    if path.is_file():
        with np.load(path) as z:
            rows, emb, windows, cut = z["row_id"], z["emb"], z["windows"], z["truncated"]
    else:
        texts = texts_of(df, text)
        if share is not None:
            guess, probe = _embedding_seconds(backbone, texts)
            share.estimate(guess * (len(texts) + len(parts["aug"])) / max(1, len(texts)),
                           f"{len(texts) + len(parts['aug'])} texts", f"{probe} texts")
        try:
            emb, windows, cut = enc.embed_pooled(texts, deadline=share.deadline if share else math.inf)
        except EmbeddingDeadline as exc:
            assert share is not None
            raise share.stopped(exc) from None
        rows = df[ROW_ID].to_numpy(dtype=np.int64)
        _write_npz(path, row_id=rows, emb=emb, windows=windows, truncated=cut)
    where = {int(r): i for i, r in enumerate(rows)}
    pick = lambda frame: [where[int(r)] for r in frame[ROW_ID]]  # noqa: E731
    fit = emb[pick(parts["fit"])]
    if len(parts["aug"]):
        fit = np.vstack([fit, enc.embed_pooled(texts_of(parts["aug"], text))[0]])
    stats["truncated"] = {p: int(cut[pick(parts[p])].sum()) for p in ("train", "test")}
    stats["windows"] = {p: {"texts_over_one": int((windows[pick(parts[p])] > 1).sum()),
                            "max": int(windows[pick(parts[p])].max(initial=1))} for p in ("train", "test")}
    stats.update(window={"unit": w.unit, "size": w.size, "overlap": w.overlap}, added_tokens=0)
    return engine, {"fit": fit, "val": emb[pick(parts["val"])]}


def _stage_job(ws: Any, row: dict, df: pd.DataFrame, parts: dict[str, Any], stats: dict[str, Any], text: str,
               settings: TextModelConfig, backbone: str, share: _EmbedShare | None = None) -> FitJob:
    """Tokenize (cached) for the PyTorch encoder -> the job (its frozen embeddings for ``head``, within
    ``share`` when given: :func:`_cached_embeddings`)."""
    from ...data.snapshot import ROW_ID

    cfg = ws.config
    fit_df, val_df, aug_df = parts["fit"], parts["val"], parts["aug"]
    source = resolve_backbone(backbone, root=ws.root)
    tokenizer = load_tokenizer(source)
    max_length = effective_max_length(tokenizer, source, settings.max_length)
    fit_texts = texts_of(fit_df, text) + texts_of(aug_df, text)
    added = extend_vocabulary(tokenizer, fit_texts) if settings.extend_vocab else []
    key = _cache_key(source, added, max_length)
    by_row, cut_by_row = _cached_tokens(ws, row["id"], key, df, text, tokenizer, max_length)
    aug_windows, _ = tokenize_windows(tokenizer, texts_of(aug_df, text), max_length)
    stats["truncated"] = {part: int(sum(cut_by_row[r] for r in parts[part][ROW_ID])) for part in ("train", "test")}
    stats["windows"] = {part: {"texts_over_one": int(sum(len(by_row[r]) > 1 for r in parts[part][ROW_ID])),
                               "max": max([len(by_row[r]) for r in parts[part][ROW_ID]], default=1)}
                        for part in ("train", "test")}
    stats.update(max_length=max_length, added_tokens=len(added))
    # fine-tuning learns from every window of a text (each with the text's label); early stopping reads
    # every window of each validation text and averages their logits, as serving does; the head reads
    # each text's windows' mean embedding
    fit_windows = [by_row[r] for r in fit_df[ROW_ID]] + aug_windows
    fit_ids = [w for ws in fit_windows for w in ws] if settings.method != "head" else [ws[0] for ws in fit_windows]
    y_fit = np.repeat(parts["y_fit"], [len(ws) for ws in fit_windows]) if settings.method != "head" \
        else parts["y_fit"]
    val_windows = [by_row[r] for r in val_df[ROW_ID]]
    ray_address = None if settings.method == "head" else \
        ray_ranks_address(cfg.compute.engine, cfg.compute.address, cfg.train.ddp_processes)
    device = _device(settings.device) if ray_address is None else \
        ray_device(ray_address, settings.device, cfg.train.ddp_processes)  # Ray Train's workers' device
    job = FitJob(settings, source, tokenizer, max_length, added, parts["classes"], fit_ids, y_fit,
                 [w for ws in val_windows for w in ws], parts["y_val"], cfg.metric, cfg.train.class_weight,
                 cfg.seed, device, val_counts=[len(ws) for ws in val_windows],
                 ddp_processes=cfg.train.ddp_processes, ray_address=ray_address)
    if settings.method == "head":
        job.features = _cached_embeddings(ws, row["id"], key, job, df, by_row, fit_df, val_df, aug_windows, share)
    return job


def _augment(settings: TextModelConfig, fit_df: pd.DataFrame, text: str, cfg: Any) -> tuple[pd.DataFrame, dict]:
    a = settings.augment
    if not a.enabled:
        return fit_df.iloc[0:0], {"enabled": False}
    from ...data.augment import augment_frame, load_synonyms

    synonyms = load_synonyms(a.synonyms, root=cfg.root)
    rows, report = augment_frame(fit_df, text, n_per_example=a.n_per_example, p=a.p, synonyms=synonyms,
                                 ops=list(a.ops) if synonyms else [o for o in a.ops if o != "synonym"] or ["swap"],
                                 seed=cfg.seed)
    source = a.synonyms if isinstance(a.synonyms, str) else ("inline" if a.synonyms else None)
    return rows, {"enabled": True, "synonyms": source, **report}


def _cache_key(source: str, added: list[str], max_length: int) -> str:
    blob = json.dumps([backbone_fingerprint(source), added, max_length], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _cache_dir(ws: Any) -> Path:
    path = ws.state / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def _cached_tokens(ws: Any, dataset_id: str, key: str, df: pd.DataFrame, text: str, tokenizer: Any,
                   max_length: int) -> tuple[dict[int, list[list[int]]], dict[int, bool]]:
    """Token windows (:func:`~.backbone.tokenize_windows`) and truncation flags of every row of the
    dataset version, by ``_row_id``."""
    from ...data.snapshot import ROW_ID

    path = _cache_dir(ws) / f"tokw-{dataset_id}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            rows, flat, offsets, owner, cut = z["row_id"], z["flat"], z["offsets"], z["owner"], z["truncated"]
    else:
        windows, cut = tokenize_windows(tokenizer, texts_of(df, text), max_length)
        rows = df[ROW_ID].to_numpy(dtype=np.int64)
        every = [w for ws in windows for w in ws]
        owner = np.repeat(np.arange(len(windows)), [len(ws) for ws in windows]).astype(np.int64)
        offsets = np.r_[0, np.cumsum([len(x) for x in every])].astype(np.int64)
        flat = np.fromiter((t for x in every for t in x), dtype=np.int32, count=int(offsets[-1]))
        _write_npz(path, row_id=rows, flat=flat, offsets=offsets, owner=owner, truncated=cut)
    by_row: dict[int, list[list[int]]] = {int(r): [] for r in rows}
    for j, i in enumerate(owner.tolist()):
        by_row[int(rows[i])].append(flat[offsets[j]:offsets[j + 1]].tolist())
    return by_row, {int(r): bool(c) for r, c in zip(rows, cut, strict=True)}


def _pooled(net: Any, windows: list[list[list[int]]], job: FitJob, deadline: float = math.inf) -> np.ndarray:
    """Each text's mean embedding over its windows ``[n, hidden]``."""
    emb = embed(net, [w for ws in windows for w in ws], job.pad_id, job.device, deadline=deadline)
    if not emb.size:
        return np.zeros((len(windows), net.head.in_features), dtype=np.float32)
    return mean_by_text(emb, [len(w) for w in windows]).astype(np.float32)


def _window_seconds(net: Any, windows: list[list[int]], job: FitJob, probe: int = 16) -> tuple[float, int]:
    """(seconds to embed every window, windows timed): ``probe`` windows spread over them, timed after
    a warm-up batch, scaled to all (1,500 long reviews' ~12,000 MiniLM windows took 1,452 s at load 12-16)."""
    sample = windows[:: max(1, len(windows) // probe)][:probe]
    if not sample:
        return 0.0, 0
    embed(net, sample[:2], job.pad_id, job.device)
    t0 = time.monotonic()
    embed(net, sample, job.pad_id, job.device)
    return (time.monotonic() - t0) / len(sample) * len(windows), len(sample)


def _cached_embeddings(ws: Any, dataset_id: str, key: str, job: FitJob, df: pd.DataFrame,
                       by_row: dict[int, list[list[int]]], fit_df: pd.DataFrame, val_df: pd.DataFrame,
                       aug_windows: list[list[list[int]]], share: _EmbedShare | None = None
                       ) -> dict[str, np.ndarray]:
    """Frozen-encoder embeddings of every row (each the mean over its windows; cached per dataset
    version) and of augmented rows. ``share``: what is not cached is embedded only when its timed
    guess (:func:`_window_seconds`) fits, and within the deadline (else :class:`_Skip`)."""
    from ...data.snapshot import ROW_ID

    s = job.settings
    ekey = f"{key}-{s.pooling}-s{job.seed if job.added else 0}"
    path = _cache_dir(ws) / f"embw-{dataset_id}-{ekey}.npz"
    net: Any = None
    if path.is_file():
        with np.load(path) as z:
            rows, emb = z["row_id"], z["emb"]
    else:
        net = _network_for(job, {}).to(job.device)
        rows = df[ROW_ID].to_numpy(dtype=np.int64)
        windows = [by_row[int(r)] for r in rows]
        if share is not None:
            every = [w for ws in windows for w in ws] + [w for ws in aug_windows for w in ws]
            guess, probe = _window_seconds(net, every, job)
            share.estimate(guess, f"{len(every)} windows of {len(windows) + len(aug_windows)} texts", f"{probe} windows")
        try:
            emb = _pooled(net, windows, job, share.deadline if share else math.inf)
        except EmbeddingDeadline as exc:
            assert share is not None
            raise share.stopped(exc) from None
        _write_npz(path, row_id=rows, emb=emb)
    where = {int(r): i for i, r in enumerate(rows)}
    fit = emb[[where[int(r)] for r in fit_df[ROW_ID]]]
    if aug_windows:
        digest = hashlib.sha256(json.dumps(aug_windows).encode()).hexdigest()[:10]
        apath = _cache_dir(ws) / f"embw-{dataset_id}-{ekey}-aug-{digest}.npz"
        if apath.is_file():
            with np.load(apath) as z:
                aug = z["emb"]
        else:
            net = net if net is not None else _network_for(job, {}).to(job.device)
            aug = _pooled(net, aug_windows, job)
            _write_npz(apath, emb=aug)
        fit = np.vstack([fit, aug])
    return {"fit": fit, "val": emb[[where[int(r)] for r in val_df[ROW_ID]]]}


def _trial_logger(tracker: Any, parent: str, metric: str) -> Callable[[TrialRecord, dict], None]:
    def log(rec: TrialRecord, extra: dict) -> None:
        from mlflow.entities import Metric

        with tracker.run(f"trial-{rec.number}-{rec.family}", parent=parent,
                         tags={"modelloop.state": rec.state}) as trial_run:
            metrics = {f"valid_{metric}": rec.value, "seconds": rec.duration_s}
            tracker.log(trial_run, params={"method": rec.family, **rec.params,
                                           "precision": extra.get("precision")},
                        metrics={k: v for k, v in metrics.items() if v is not None})
            now = int(time.time() * 1000)
            curve = [Metric(f"epoch_{k}", float(v), now, int(h["epoch"]))
                     for h in extra.get("history") or [] for k, v in h.items()
                     if k != "epoch" and v is not None and np.isfinite(v)]
            if curve:
                tracker.client.log_batch(trial_run, metrics=curve)
    return log


def _run_params_log(cfg: Any, row: dict, model: Any, chosen: dict, stats: dict, augment: dict) -> dict:
    d = model.describe()
    return {"metric": cfg.metric, "task": model.task, "dataset": row["id"], "method": d["method"],
            "backbone": d.get("backbone"), "backbone_fingerprint": d.get("backbone_fingerprint"),
            "precision": d.get("precision"), "device": d.get("device"), "best_params": chosen["params"],
            "candidate": chosen["candidate"], "text_stats": stats, "augment": augment,
            "max_length": d.get("max_length")}
