"""The generative train stage: dataset version -> examples -> (search over) fine-tuning -> evaluation
against the base model -> registered model version.

1. the frozen train/test split of the dataset version; ``model.validation_size`` of the train rows (seeded)
   is held out for early stopping and the search;
2. each row becomes prompt and completion text through the tokenizer's chat template (``data.py``), then
   token ids with the loss on completion tokens only, packed into ``model.max_length`` sequences;
3. trials on the shared driver (``search.py``), each a fine-tuning run (``fit.py``) that checkpoints every
   epoch; the best trial's weights become a :class:`~.model.GenerativeModel`;
4. on the test split: perplexity of the base and the fine-tuned model, and for prompts (up to
   ``model.eval_samples``) the greedy answers of both (decoded together, as concurrent served requests
   are: :func:`evaluate_generation`; with the perplexities within ``train.budget``, which leaves them a
   share: ``eval_budget.py``), scored by exact match (label accuracy when the
   answers are labels), chrF and ROUGE-L; the HTML report shows them side by side. When the training
   answers are labels (``model.choices: auto``) the model keeps them and answers within them
   (:func:`label_choices`), here as wherever it is served; the base model's answers stay free;
5. registration through :func:`modelloop.training.train.record_model` (family ``generative``, head
   ``generation``); the summary adds ``generation``: tokens/s, perplexities, the data profile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from ...data.schema import Schema
from ...errors import ConfigError, DataError
from ...training.distributed import ray_device, ray_ranks_address
from .backbone import load_tokenizer, model_fingerprint, resolve_model
from .config import GenerativeModelConfig
from .data import Shape, answer_of, data_profile, detect_shape, encode_examples, examples_of, validation_rows
from .eval_budget import answer_in_time, answers_deadline, budget_note, nll_in_time, search_budget
from .few_steps import few_steps_warning, flat_loss_warning
from .fit import GenJob, device_of, lora_settings
from .metrics import is_label_set, perplexity, text_metrics
from .model import GenerativeModel
from .preference import PreferencePairs, encode_preferences, preference_figures
from .search import SEARCH_METRIC, run_generative_search

log = logging.getLogger("modelloop.train")

__all__ = ["evaluate_generation", "generative_settings", "label_choices", "shape_of", "train_generative"]


def generative_settings(cfg: Any) -> GenerativeModelConfig:
    """The ``model:`` section of a config (defaults when it has none)."""
    section = getattr(cfg, "model", None)
    if isinstance(section, GenerativeModelConfig):
        return section
    if section is None or (hasattr(section, "model_dump") and type(section).__name__ != "GenerativeModelConfig"):
        return GenerativeModelConfig()
    return GenerativeModelConfig.model_validate(section)


def shape_of(cfg: Any, columns: list[str]) -> Shape:
    """The data's shape (``data.prompt``/``completion``/``messages``/``text`` or the column names)."""
    return detect_shape(cfg.data, [c for c in columns if not c.startswith("_")])


def input_schema(shape: Shape, target: str | None) -> Schema:
    """What a client sends to ``/v1/predict``: the prompt side (``text`` kind), the answer as the target."""
    columns = dict.fromkeys(shape.input_columns(), "text")
    return Schema(columns=columns, target=target if target not in columns else None,
                  text=next(iter(columns), None), dtypes=dict.fromkeys(columns, "object"))


def study_name(ws: Any, dataset_id: str, settings: GenerativeModelConfig) -> str:
    """``-gv``: validation rows of whole ``data.group`` groups (since 2026-12-06: they were drawn by rows),
    so a grouped project's study of the old rows is not resumed."""
    from ...config import config_hash

    cfg = ws.config
    key = json.dumps([settings.model_dump(mode="json", exclude={"search"}), cfg.split.model_dump(), cfg.seed,
                      config_hash(cfg, "data")], sort_keys=True, default=str)
    grouped = "-gv" if cfg.data.group is not None else ""
    return f"{cfg.name}-generative-{dataset_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}{grouped}"


def train_generative(ws: Any, *, budget: float | None = None, trials: int | None = None, dataset: str | None = None,
                     kind: str = "train", progress: Callable[[int, float], None] | None = None,
                     register_as_production: bool | None = None,
                     warm_start: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Fine-tune, evaluate against the base model on the frozen test split, register. Returns the train
    stage's JSON summary plus ``generation`` (tokens/s, perplexities, the data profile)."""
    from ...data.ingest import ensure_split, load_dataset
    from ...registry import tracker_for
    from ...training.train import record_model

    cfg, started, clock = ws.config, time.time(), time.monotonic()
    settings = generative_settings(cfg)
    row, df, _ = load_dataset(ws, dataset)
    side = ensure_split(ws, row, df).to_numpy()
    shape = shape_of(cfg, list(df.columns))
    source = resolve_model(settings.backbone, root=ws.root)
    tokenizer = load_tokenizer(source)
    context = _context(source, settings)
    train_df = df[side == "train"].reset_index(drop=True)
    test_df = df[side == "test"].reset_index(drop=True)
    if len(train_df) < 2:
        raise DataError(f"the train split has {len(train_df)} rows; a generative model needs at least 2")
    group = cfg.data.group  # whole groups held out, as the test split keeps them
    held = validation_rows(len(train_df), settings.validation_size, cfg.seed,
                           groups=train_df[group] if group is not None and group in train_df.columns else None)
    (fit_ids, fit_labels, fit_rejected), cut = _encoded(tokenizer, train_df[~held], shape, context)
    (val_ids, val_labels, val_rejected), _ = _encoded(tokenizer, train_df[held], shape, context)
    if not fit_ids or not val_ids:
        columns = f"{shape.completion} and {shape.rejected} columns" if shape.kind == "preference" else \
            f"{shape.answer_column()} column"
        raise DataError("no example with a non-empty answer in the train split's "
                        f"{'fit' if not fit_ids else 'validation'} part; check the {columns}")
    preference = None if fit_rejected is None or val_rejected is None else \
        PreferencePairs(*fit_rejected, *val_rejected)
    fingerprint = model_fingerprint(source)
    ray_address = ray_ranks_address(cfg.compute.engine, cfg.compute.address, cfg.train.ddp_processes)
    device = device_of(settings.device) if ray_address is None else \
        ray_device(ray_address, settings.device, cfg.train.ddp_processes)  # Ray Train's workers' device
    job = GenJob(settings, source, fingerprint, int(tokenizer.pad_token_id or 0), fit_ids, fit_labels,
                 val_ids, val_labels, cfg.seed, device, preference, ddp_processes=cfg.train.ddp_processes,
                 ray_address=ray_address)
    name = study_name(ws, row["id"], settings)
    n_trials = trials if trials is not None else cfg.train.trials
    budget = budget if budget is not None else cfg.train.budget
    if settings.search and budget is None and cfg.train.budget is None and n_trials is None:
        raise ConfigError("train: set a time budget or trials (or both); with neither the search never ends")
    tracker = tracker_for(ws)
    tags = {"modelloop.dataset": row["id"], "modelloop.kind": kind, "modelloop.study": name,
            "modelloop.task": "text_generation"}
    with tracker.run(f"{kind}-{row['id']}", tags=tags) as run_id:
        chosen, summary = run_generative_search(
            job, storage=ws.optuna_url, study_name=name, work_dir=ws.study_dir(name),
            budget=search_budget(budget, len(test_df)), n_trials=n_trials,
            warm_start=warm_start, progress=progress)
        params, result = chosen["params"], chosen["result"]
        lora = None if settings.method == "full" else lora_settings(settings, params, _config(source))
        training = {k: result.get(k) for k in ("tokens_per_s", "train_tokens", "train_seconds", "epochs_run",
                                               "best_epoch", "history", "stopped_by_budget", "steps_configured",
                                               "steps_planned", "steps_run", "last_step_lr",
                                               "load_seconds")}
        training.update(truncated_examples=cut, fit_examples=len(fit_ids), validation_examples=len(val_ids),
                        validation_loss=result["value"], params=params, ddp_processes=job.ddp_processes)
        model = GenerativeModel(settings.model_dump(mode="json")).fitted(
            backbone=settings.backbone, root=str(ws.root), source=source, fingerprint=fingerprint, shape=shape,
            schema=input_schema(shape, cfg.data.target), tokenizer=tokenizer, method=settings.method, lora=lora,
            weights=result["weights"], context=context, description={"training": training},
            choices=label_choices(train_df, shape, settings))
        summary.model = model
        evaluated = time.monotonic()  # the test split's evaluation: its answers end at the budget's deadline
        evaluation = evaluate_generation(model, test_df, settings.eval_samples,
                                         deadline=math.inf if budget is None else clock + budget)
        evaluation_seconds = round(time.monotonic() - evaluated, 3)
        model.description_["evaluation"] = {k: evaluation[k] for k in ("perplexity", "base_perplexity",
                                                                        "base_metrics", "answered", "preference",
                                                                        "evaluated_rows", "evaluation_rows",
                                                                        "perplexity_rows")}
        report = _write_report(ws, evaluation, row, model, training)
        tracker.log(run_id, params={"task": "text_generation", "dataset": row["id"], "method": settings.method,
                                    "backbone": settings.backbone, "best_params": params, "shape": shape.to_dict()},
                    metrics={**{f"test_{k}": v for k, v in evaluation["metrics"].items() if v is not None},
                             **({"test_base_perplexity": evaluation["base_perplexity"]}
                                if evaluation["base_perplexity"] is not None else {}),
                             f"valid_{SEARCH_METRIC}": summary.validation_score,
                             "tokens_per_s": float(result.get("tokens_per_s") or 0.0)})
        version = int(tracker.log_model(run_id, model, name=cfg.name))
    out = record_model(ws, row, run_id, version, model, summary, evaluation, "generation", kind, started,
                       test_df, register_as_production, family="generative", report=report(version))
    profile = data_profile(df[side == "train"], shape, tokenizer, context)
    out["generation"] = {"shape": shape.kind, "objective": "dpo" if preference is not None else "sft",
                         "preference": evaluation["preference"], "method": settings.method,
                         "backbone": settings.backbone, "choices": model.choices_,
                         "tokens_per_s": training["tokens_per_s"], "train_tokens": training["train_tokens"],
                         "epochs_run": training["epochs_run"], "best_epoch": training["best_epoch"],
                         "stopped_by_budget": bool(training["stopped_by_budget"]),
                         "steps_configured": training["steps_configured"],
                         "steps_planned": training["steps_planned"], "steps_run": training["steps_run"],
                         "last_step_lr": training["last_step_lr"], "load_seconds": training["load_seconds"],
                         "perplexity": evaluation["perplexity"], "base_perplexity": evaluation["base_perplexity"],
                         "base_metrics": evaluation["base_metrics"], "profile": profile,
                         "evaluation_seconds": evaluation_seconds, "evaluated_rows": evaluation["evaluated_rows"],
                         "evaluation_rows": evaluation["evaluation_rows"],
                         "perplexity_rows": evaluation["perplexity_rows"],
                         "evaluation_stopped_by_budget": evaluation["budget_note"] is not None}
    # the one-screen summary's lines (ui.render_train reads them without knowing the family)
    speed = f", {training['tokens_per_s']:.0f} tokens/s" if training["tokens_per_s"] else ""
    stopped = ", stopped by train.budget" if training["stopped_by_budget"] else ""
    out["training_summary"] = (f"{settings.method} on {settings.backbone}: {training['epochs_run']} epochs{speed}"
                               f"{stopped}")
    # what the user should change when the fine-tune hardly moved the model (ui.render_train prints them)
    few = few_steps_warning(steps_run=int(training["steps_run"] or 0),
                            stopped_by_budget=bool(training["stopped_by_budget"]),
                            search_seconds=search_budget(budget, len(test_df)), load_seconds=training["load_seconds"],
                            fit_examples=len(fit_ids), epochs=int(params["epochs"]))
    # enough steps, but a training loss that never fell (a learning rate far too low, LoRA on what moves nothing)
    flat = None if few is not None else flat_loss_warning(training["history"] or [], method=settings.method,
                                                          learning_rate=float(params["learning_rate"]))
    out["warnings"] = [w for w in (few, flat) if w is not None]
    for w in out["warnings"]:
        log.warning("%s", w)
    if evaluation["budget_note"] is not None:  # the test figures are of fewer rows than asked
        out["evaluation_summary"] = evaluation["budget_note"]
    if evaluation["base_metrics"] is not None:
        out["base_test_metrics"] = {**evaluation["base_metrics"], "perplexity": evaluation["base_perplexity"]}
    return out


def label_choices(frame: pd.DataFrame, shape: Shape, settings: GenerativeModelConfig) -> list[str] | None:
    """The distinct training answers when they are labels (``metrics.is_label_set``) and ``model.choices``
    is ``auto``, for a prompted or chat model (plain text and preference pairs: None)."""
    if settings.choices != "auto" or shape.kind not in ("pairs", "chat") or not len(frame):
        return None
    answers = [a for a in (answer_of(r, shape) for r in frame.to_dict("records")) if a.strip()]
    return sorted(set(answers)) if answers and is_label_set(answers) else None


def _encoded(tokenizer: Any, frame: pd.DataFrame, shape: Shape, context: int
             ) -> tuple[tuple[list, list, tuple[list, list] | None], int]:
    """Token ids and labels of each example with an answer (the chosen one of a preference pair), the
    rejected answers' ids and labels (preference pairs only, aligned) and how many were cut."""
    if shape.kind == "preference":
        ids, labels, rejected_ids, rejected_labels, cut = encode_preferences(tokenizer, frame, shape, context)
        return (ids, labels, (rejected_ids, rejected_labels)), cut
    ids, labels, cut = encode_examples(tokenizer, examples_of(frame, shape, tokenizer), context)
    return (ids, labels, None), cut


def _config(source: str) -> Any:
    """An object with the model's ``config`` (what :func:`lora_settings` reads)."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    return SimpleNamespace(config=AutoConfig.from_pretrained(source))


def _context(source: str, settings: GenerativeModelConfig) -> int:
    """Tokens per training sequence: ``model.max_length``, at most the model's own context."""
    config = _config(source).config
    return min(settings.max_length, int(getattr(config, "max_position_embeddings", settings.max_length)))


def evaluate_generation(model: GenerativeModel, frame: pd.DataFrame, samples: int, *,
                        deadline: float = math.inf) -> dict[str, Any]:
    """Perplexity (base and fine-tuned) on ``frame``'s completions, and task scores of both on the greedy
    answers to its first ``samples`` prompts (none for plain text, which has no prompts); for preference
    pairs also the chosen answers' log-probability margin over the rejected ones (``preference``).
    Within ``deadline`` (``time.monotonic()``; the train stage's ``train.budget``, ``eval_budget.py``): the
    answers until half way there, then the perplexities; both models are scored on the rows reached, at
    least one batch of each; ``evaluated_rows`` of ``evaluation_rows`` (answers) and ``perplexity_rows``
    of ``rows`` say how many, ``budget_note`` is the summary's line when fewer; the preference margins
    are of the perplexity's rows.

    The answers are decoded together through the serving batch decoder
    (:meth:`.model.GenerativeModel.predict_together`), as concurrent requests to the served model are:
    one forward pass per token for all samples. One at a time (``predict``), they took ~80% of the
    assistant example's evaluation (191 of 238 s on this shared 2-core machine; the two perplexities 43 s). A
    padded batch may move a greedy answer where two tokens tie to ~1e-6, so a sample can differ from
    what ``modelloop predict`` (batch 1) answers for the same prompt; the scores are the served model's.
    Then the perplexities were ~70% of it: the layers the two models share (all but the last
    ``model.lora_layers`` of a LoRA fine-tune) run once for both (:meth:`.model.GenerativeModel.nll_with_base`,
    the same figures to the bit)."""
    model.network(), model.base_network()  # loaded before the first batch is timed
    metrics: dict[str, Any] = {}
    base: dict[str, Any] = {}
    shown: list[dict[str, Any]] = []
    answers = None
    if model.shape_.kind != "text" and samples and len(frame):
        records = frame.head(samples).to_dict("records")
        answers = answer_in_time(model, records, answers_deadline(deadline))
        records = records[:answers.rows]
        refs = [answer_of(r, model.shape_) for r in records]
        tuned, plain = answers.tuned, answers.base
        metrics.update(text_metrics(refs, tuned))
        base.update(text_metrics(refs, plain))
        shown = [{"prompt": _prompt_shown(r, model.shape_), "reference": ref, "base": b, "fine_tuned": t}
                 for r, ref, b, t in zip(records, refs, plain, tuned, strict=True)]
    scored = nll_in_time(model, frame, deadline)
    (nll, n), (base_nll, base_n) = scored.tuned, scored.base
    # ``metrics``: the generation head's scores of the answers and the model's perplexity, as ``modelloop
    # evaluate`` computes them (``GenerativeModel.evaluation_metrics``)
    metrics["perplexity"], base["perplexity"] = perplexity(nll, n), perplexity(base_nll, base_n)
    preference = None
    if model.shape_.kind == "preference" and len(frame):
        preference = preference_figures(model.network(), model.base_network(), frame.head(scored.rows),
                                        model.shape_, model.tokenizer, model.context_,
                                        int(model.tokenizer.pad_token_id or 0))
    return {"preference": preference, "metrics": metrics, "base_metrics": base, "rows": len(frame), "tokens": n,
            "samples": shown, "perplexity": perplexity(nll, n), "base_perplexity": perplexity(base_nll, base_n),
            "answered": len(shown), "evaluated_rows": len(shown),
            "evaluation_rows": answers.wanted if answers is not None else 0, "perplexity_rows": scored.rows,
            "budget_note": budget_note(answers, scored)}


def _prompt_shown(record: dict[str, Any], shape: Shape) -> str:
    if shape.prompted:
        return str(record.get(str(shape.prompt)))
    from .data import as_messages

    return "\n".join(f"{m['role']}: {m['content']}" for m in as_messages(record.get(str(shape.messages)))[:-1])


def _write_report(ws: Any, evaluation: dict[str, Any], row: dict[str, Any], model: GenerativeModel,
                  training: dict[str, Any]) -> Callable[[int], Any]:
    """The report writer for the version MLflow assigns (the page names it)."""
    from .report import render_generation_report, write_html

    def write(version: int) -> Any:
        name = ws.config.name
        context = {"model": f"{name}:{version}", "dataset": row["id"], "rows": evaluation["rows"],
                   "method": model.method_, "backbone": model.backbone_, "tokens/s": training["tokens_per_s"],
                   **({"answers": evaluation["budget_note"]} if evaluation.get("budget_note") else {})}
        return write_html(ws.reports_dir / f"evaluation-{name}-v{version}.html",
                          render_generation_report(evaluation, title=f"{name} v{version} evaluation",
                                                   context=context))
    return write
