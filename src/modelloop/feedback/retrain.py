"""Closing the loop: feedback -> new dataset version -> challenger -> gate -> promote (or not).

The new dataset version is the champion's dataset plus the labeled feedback (deduplicated by
request id, each row keeping its provenance in ``_origin``/``_request_id``; a family whose log keeps a
stand-in for the input, such as an image's digest, gives the input back through its optional
``feedback_inputs(ws, frame) -> (frame, note)``). Its split inherits the
frozen test set; the most recent share of the new feedback becomes the ``recent`` slice, held out
from training (in whole ``data.group`` groups: no group has new rows both there and in training), and
earlier slices' rows return to training (but those of a group the new slice takes). Champion and challenger are scored on both, and the gate decides:

* the challenger must beat the champion on the recent slice by ``retrain.min_improvement``, and
* must not fall on the frozen holdout by more than ``retrain.max_holdout_drop``. The default (0.1)
  lets a model follow a real change of the world, where old data says less, and stops a collapse
  such as poisoned labels. A holdout without a labelled row (an unlabelled anomaly project's) is not
  checked: the reason says so and ``gate.holdout_drop`` is null.

A class figure cannot compare models on a recent slice of one class (``recent.py``): the slice is then
the latest share of each class's feedback, and where even that holds one class the frozen holdout
decides alone (the challenger must gain there by ``min_improvement``; ``gate.judged_on: holdout``).
A recommender's recent interactions that answer the champion's own recommendations favour it
(exposure bias, ``exposure.py``): the models are compared on the other (organic) interactions, and where
too few users remain the frozen holdout decides alone likewise.

Both are in the metric's direction (a lower rmse is better); for errors in the target's units
(rmse, mae) both are shares of the champion's figure (``gate.relative``): 0.1 rmse is nothing on
house prices and everything on a rate.

A promoted challenger goes through ``optimize`` at once when ``optimize.promote`` is set or the
champion it replaces was itself an optimize variant; the variant optimize keeps then replaces it in
production. A project that serves optimized models keeps doing so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..data.ingest import ensure_split, load_dataset, split_key
from ..data.side_tables import inherited_side_tables
from ..data.snapshot import ROW_ID, content_hash, write_snapshot
from ..data.stages import cleaning_plan
from ..errors import StateError
from ..evaluation.evaluate import evaluate_model, judged_as_configured
from ..evaluation.metrics import IN_TARGET_UNITS, change_within_noise, improvement
from ..families import family_of, label_column
from ..registry import PRODUCTION, load_model, promote, resolve_model
from ..workspace import Workspace
from .recent import CLASS_FIGURES, choose_recent, class_counts, one_class_words
from .store import labeled_frame

__all__ = ["check_triggers", "merge_feedback", "retrain", "rollback"]


def _row_ids(request_ids: pd.Series) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.sha256(f"fb:{r}".encode()).digest()[:8], "little", signed=True)
                     for r in request_ids], dtype=np.int64)


def _nothing_new(note: dict[str, Any]) -> None:
    """Nothing new to merge (``merge_feedback``'s None); where some stored feedback could not be learned
    (the family's note says why), the refusal says so rather than "nothing new"."""
    if note.get("why"):
        raise StateError(f"no new labeled feedback to learn from; {note['why']}")


def merge_feedback(ws: Workspace, champion: dict[str, Any]) -> dict[str, Any] | None:
    """The champion's dataset + new labeled feedback as a new version (None when nothing is new)."""
    cfg, cat = ws.config, ws.catalog
    parent, base, schema = load_dataset(ws, champion["dataset_id"])
    model = load_model(ws, champion)
    interaction_rows = getattr(model, "interaction_rows", None)
    note: dict[str, Any] = {}
    if interaction_rows is not None:  # a recommender learns from the interactions (POST /v1/interactions)
        from .interactions import read_interactions_log

        stored = read_interactions_log(ws)[0]
        fb = interaction_rows(stored)
        note = model.interaction_note(stored)  # acknowledged but not learnable: counted, with the reason
    else:
        fb = labeled_frame(ws)
    if not fb.empty and interaction_rows is None:  # feedback kept but not to learn from (a refused answer)
        from ..families.heads import head_for

        learnable = head_for(champion["info"] or {}).learnable
        fb = fb[[learnable(v) for v in fb[label_column(cfg)]]]
    if fb.empty:
        _nothing_new(note)
        return None
    if "_request_id" in base.columns:
        fb = fb[~fb["_request_id"].isin(set(base["_request_id"].dropna()))]
    fb = fb.drop_duplicates("_request_id", keep="first")
    inputs = getattr(family_of(champion), "feedback_inputs", None)
    if inputs is not None and not fb.empty:  # the log keeps what stands for the input (an image's digest)
        fb, note = inputs(ws, fb.reset_index(drop=True))
    if fb.empty:
        _nothing_new(note)
        return None
    plan = cleaning_plan(ws, parent)
    if plan:  # logged inputs are raw records: clean them as the parent's rows were (indicators, fills)
        from ..data.cleaning import CleaningPlan

        fb = CleaningPlan.from_dict(plan).apply_inference(fb.reset_index(drop=True))
    cols = [c for c in base.columns if not c.startswith("_")]
    label = label_column(cfg)
    if label is not None and label not in cols and label in fb.columns:  # the verdicts' own column (no target)
        cols.append(label)
    new = pd.DataFrame({c: fb[c] if c in fb.columns else np.nan for c in cols})
    for c in cols:  # keep the parent's dtypes so the content hash is stable
        if c not in base.columns:
            continue
        try:
            new[c] = new[c].astype(base[c].dtype)
        except (TypeError, ValueError):
            pass
    new.insert(0, ROW_ID, _row_ids(fb["_request_id"]))
    new["_origin"] = "feedback"
    new["_request_id"] = fb["_request_id"].to_numpy()
    new["_feedback_at"] = pd.to_datetime(fb["_feedback_at"]).to_numpy()
    old = base.copy()
    for c, default in (("_origin", "base"), ("_request_id", None), ("_feedback_at", pd.NaT)):
        if c not in old.columns:
            old[c] = default
    old["_feedback_at"] = pd.to_datetime(old["_feedback_at"])
    old["_request_id"] = old["_request_id"].astype(object)
    new["_request_id"] = new["_request_id"].astype(object)
    merged = pd.concat([old, new], ignore_index=True)
    vid = content_hash(merged)
    path = ws.datasets_dir / vid
    manifest = {"id": vid, "step": "feedback-merge", "parents": [parent["id"]], "schema": schema.to_dict(),
                "rows": len(merged), "added_feedback_rows": len(new), **({"plan": plan} if plan else {})}
    side, files = inherited_side_tables(parent["path"])  # the parent's side tables, never the file as it is now
    if side is not None:
        manifest["side_tables"] = side
    write_snapshot(merged, path, manifest, files)
    row = cat.add_dataset(id=vid, project=cfg.name, step="feedback-merge", parents=[parent["id"]],
                          schema=schema.to_dict(), rows=len(merged), path=str(path),
                          source={"feedback_rows": len(new), "parent": parent["id"]})
    recent_metric = _gate_metrics(str((champion["info"] or {}).get("task") or ""), cfg.metric)[0]
    _write_split(ws, row, parent, merged, _as_classes(new, label, champion), recent_metric)
    return {**row, "added": len(new), **({"feedback_inputs": note} if note else {})}


def _write_split(ws: Workspace, row: dict, parent: dict, merged: pd.DataFrame, new: pd.DataFrame,
                 recent_metric: str) -> None:
    """Parent rows keep their side, but those of earlier recent slices; the latest ``recent_fraction`` of
    the new feedback is ``recent`` (of each class's feedback where the latest share cannot compare models
    by a class figure: ``recent.py``), in whole ``data.group`` groups where the project has one (not under
    ``split.strategy: user``, whose model must know each user it ranks for), so the challenger trains on
    no new row of a group it is judged on. The earlier slices' rows return to training, but those of a
    group the new slice takes (``recent.choose_recent``); a returning row of a test-side group joins the
    test side, as the group's new rows do. How it was chosen is kept in the split's settings
    (``recent_slice``) for the gate to say."""
    cat, key = ws.catalog, split_key(ws.config)
    if cat.get_split(row["id"], key) is not None:
        return
    _, base, _ = load_dataset(ws, parent["id"])
    base_side = ensure_split(ws, parent, base)
    sides = dict(zip(base[ROW_ID], base_side, strict=True))
    order = new.sort_values("_feedback_at", kind="stable")
    group = ws.config.data.group
    whole = group is not None and group in order.columns and ws.config.split.strategy != "user"
    earlier = base.loc[(base_side == "recent").to_numpy()]
    recent_ids, how = choose_recent(order, ws.config.retrain.recent_fraction, label_column(ws.config),
                                    recent_metric, group=group if whole else None, earlier=earlier)
    back = set(earlier[ROW_ID]) - recent_ids
    moved = _test_group_rows(ws, merged, sides, (set(new[ROW_ID]) - recent_ids) | back)
    for rid in [*new[ROW_ID], *back]:
        sides[rid] = "recent" if rid in recent_ids else "test" if rid in moved else "train"
    how["earlier_slices"] = {**how["earlier_slices"], "returned_to_training": len(back - moved),
                             "to_test": len(back & moved)}
    frame = pd.DataFrame({ROW_ID: merged[ROW_ID], "split": merged[ROW_ID].map(sides)})
    path = ws.datasets_dir / row["id"] / f"split-{key}.parquet"
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    counts = {k: int(v) for k, v in frame["split"].value_counts().items()}
    cat.add_split(dataset_id=row["id"], key=key, settings={**ws.config.split.model_dump(), "recent": True,
                                                             "recent_slice": how,
                                                             **({"feedback_to_test": len(moved)} if moved else {})},
                  counts=counts, path=str(path))


def _test_group_rows(ws: Workspace, merged: pd.DataFrame, sides: dict, candidates: set) -> set:
    """The new feedback rows (among ``candidates``, those not in the recent slice) of a ``data.group`` group on
    the frozen test side (``sides``: the parent rows' sides): they join the test side, as the group's rows
    did, so the challenger never trains on a group it is scored on (a customer's new transactions taught it
    the customer, and its holdout figure rose for it). A stratified or random split's groups were drawn
    whole since 2026-12-06; a group of an older split on both sides counts as test. The recent slice takes
    whole groups (``_write_split``), so a group's new rows are all recent or none; the candidates also hold
    the earlier slices' rows returning from the recent side, which a test-side group's take to test too."""
    group = ws.config.data.group
    if group is None or group not in merged.columns or ws.config.split.strategy in ("time", "user") or not candidates:
        return set()
    from ..data.split import group_sides

    known = merged[ROW_ID].map(sides)  # the parent's rows (the new rows get their sides after this)
    on_test = group_sides(merged[group], known).to_numpy() == "test"
    return set(merged[ROW_ID][on_test & merged[ROW_ID].isin(candidates).to_numpy()])


def _score(model: Any, df: pd.DataFrame, ws: Workspace, task: str) -> dict[str, Any]:
    target = label_column(ws.config)
    if df.empty or (not hasattr(model, "evaluate_interactions")  # a recommender: the rows are the truth
                    and (target not in df.columns or not df[target].notna().any())):
        return {}  # no labelled row (an anomaly project's holdout before any verdict): no figures
    return evaluate_model(model, df, target=str(target), task=task)["metrics"]


def check_triggers(ws: Workspace, champion: dict[str, Any], *, drift: dict | None = None) -> dict[str, Any]:
    """Which retrain triggers fire: new labels, model age, drift."""
    from .monitor import model_age_days

    rc = ws.config.retrain
    since = champion["created_at"]
    new_labels = len(ws.catalog.labeled_predictions(ws.config.name, since=since))
    age = model_age_days(champion)
    fired = []
    if new_labels >= rc.min_new_labels:
        fired.append(f"{new_labels} new labels (>= {rc.min_new_labels})")
    if rc.max_age_days is not None and age > rc.max_age_days:
        fired.append(f"model is {age:.1f} days old (> {rc.max_age_days})")
    drifted = sorted(c for c, d in ((drift or {}).get("features") or {}).items() if d["drifted"])
    if rc.on_drift and drifted:
        fired.append(f"drift in {', '.join(drifted)}")
    return {"fired": fired, "new_labels": new_labels, "age_days": round(age, 2), "drifted": drifted}


def retrain(ws: Workspace, *, if_needed: bool = False, budget: float | None = None,
            progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """One turn of the loop; returns the decision with both models' figures (JSON contract)."""
    from ..training.train import train
    from .monitor import monitor

    cfg = ws.config
    champion = resolve_model(ws, f"{cfg.name}@{PRODUCTION}") if ws.catalog.get_alias(cfg.name, PRODUCTION) \
        else resolve_model(ws, None)
    drift = monitor(ws, notify=False)["drift"] if cfg.retrain.on_drift else None
    triggers = check_triggers(ws, champion, drift=drift)
    if if_needed and not triggers["fired"]:
        return {"promoted": False, "skipped": True, "reason": "no trigger fired", "triggers": triggers,
                "dataset": champion["dataset_id"], "champion": _brief(champion, {}), "challenger": None}
    merged = merge_feedback(ws, champion)
    if merged is None:
        raise StateError("no new labeled feedback to learn from; import labels with `modelloop feedback FILE` "
                         "or POST /v1/feedback")
    info = champion["info"]["search"]
    warm = [{"family": info["best_family"], **info["best_params"]}] if info.get("best_params") else None
    trained = train(ws, dataset=merged["id"], budget=budget or cfg.retrain.budget, warm_start=warm,
                    kind="retrain", progress=progress, register_as_production=False)
    challenger = resolve_model(ws, f"{cfg.name}:{trained['model']['version']}")
    result = _decide(ws, champion, challenger, merged, triggers)
    if result["promoted"] and (cfg.optimize.promote or champion["info"].get("variant")):
        from ..optimization.optimize import optimize  # production served an optimized model: keep it so

        opt = optimize(ws, model=f"{cfg.name}:{challenger['version']}", promote=True, by="retrain")
        result["optimize"] = {k: opt[k] for k in ("chosen", "model", "promoted", "promotion", "report")}
    return result


def _decide(ws: Workspace, champion: dict, challenger: dict, merged: dict, triggers: dict) -> dict[str, Any]:
    cfg, metric = ws.config, ws.config.metric
    row, df, _ = load_dataset(ws, merged["id"])
    side = ensure_split(ws, row, df)
    holdout, recent = df[side == "test"], df[side == "recent"]
    task = champion["info"]["task"]
    recent_metric, holdout_metric = _gate_metrics(task, metric)
    models = {"champion": judged_as_configured(load_model(ws, champion), cfg),
              "challenger": judged_as_configured(load_model(ws, challenger), cfg)}
    exposure: dict[str, Any] = {}
    judged = recent
    if hasattr(models["champion"], "evaluate_interactions"):  # a recommender: leave out its own answers' echo
        from .exposure import organic_rows

        ranker = models["champion"]
        judged, exposure = organic_rows(ws, champion, recent, ranker.user_col, rating_col=ranker.rating_col,
                                        relevant_rating=getattr(ranker, "relevant_rating_", None))
    scores, answers = {}, {}
    for name, model in models.items():
        scores[name] = {"holdout": _score(model, holdout, ws, task), "recent": _score(model, judged, ws, task)}
        answers[name] = _recent_answers(model, judged, ws, task, recent_metric, scores[name]["recent"])
    champ, chall = scores["champion"], scores["challenger"]
    gain = improvement(recent_metric, _figure(champ["recent"], recent_metric), _figure(chall["recent"], recent_metric))
    drop = -improvement(holdout_metric, _figure(champ["holdout"], holdout_metric),
                        _figure(chall["holdout"], holdout_metric))
    if recent_metric != metric or holdout_metric != metric:  # the head's gate (anomaly: precision at the budget)
        metric = recent_metric if recent_metric == holdout_metric else f"{recent_metric} (recent), " \
                                                                       f"{holdout_metric} (holdout)"
    rc = cfg.retrain
    recent_slice = {**_recent_slice(ws, row, _as_classes(recent, label_column(cfg), champion), recent_metric),
                    **{k: v for k, v in exposure.items() if k != "exposure_bias"}}
    if exposure.get("exposure_bias"):  # too few interactions that did not answer the champion's own list
        recent_slice.update(compares=False, exposure_bias=True)
    if recent_slice.get("compares", True) and _missing(recent_metric, champ["recent"], chall["recent"]):
        recent_slice["compares"] = False  # two classes, yet neither model gives the figure (flags no row there)
    holdout_note = _holdout_note(_as_classes(holdout, label_column(cfg), champion), label_column(cfg),
                                 holdout_metric, champ["holdout"], chall["holdout"])
    judged_on = "recent" if recent_slice.get("compares", True) else \
        "holdout" if holdout_note is None else "none"
    checked = holdout_note is None  # the frozen holdout gives its figure: the drop was measured
    interval = _gain_interval(recent_metric, answers, _figure(champ["recent"], recent_metric)) \
        if judged_on == "recent" else None
    beats = gain > 0 and gain >= rc.min_improvement
    if judged_on == "holdout":  # the recent slice cannot compare models: the challenger must gain on the holdout
        beats = -drop > 0 and -drop >= rc.min_improvement
    if judged_on == "none":  # neither slice can: nothing says the challenger is better
        beats = False
    holds = not checked or drop <= rc.max_holdout_drop
    promoted = beats and holds
    # each slice's change in its own figure's terms: a share of the champion's for errors in target units
    # (rmse, mae, perplexity), else the figure's own units
    relative = holdout_metric in IN_TARGET_UNITS
    gain_txt, unit = _change(recent_metric, gain)
    drop_txt, holdout_unit = _change(holdout_metric, drop)
    allowed = f"{rc.max_holdout_drop:.1%}" if relative else rc.max_holdout_drop
    noise = _noise_words(recent_metric, interval, len(judged))
    if judged_on == "none":
        reason = (f"{_recent_cannot(recent_slice, len(recent), recent_metric)}, and the frozen holdout "
                  f"{holdout_note}, where {holdout_metric} cannot compare models either: the champion stays")
    elif judged_on == "holdout":
        reason = _holdout_reason(recent_slice, len(recent), recent_metric, holdout_metric, -drop,
                                 rc.min_improvement, promoted)
    elif promoted and checked:
        reason = (f"challenger beats champion on the recent slice by {gain_txt}{unit}{noise} and drops "
                  f"{drop_txt}{holdout_unit if holdout_metric != recent_metric else ''} on the frozen holdout "
                  f"(allowed {allowed})")
    elif promoted:
        reason = f"challenger beats champion on the recent slice by {gain_txt}{unit}{noise}"
    elif not beats:
        reason = (f"challenger does not beat the champion on the recent slice: gain {gain_txt}{unit} "
                  f"(needs > 0 and >= {rc.min_improvement}){noise}")
    else:
        reason = (f"challenger falls {drop_txt.lstrip('+')}{holdout_unit} on the frozen holdout (allowed "
                  f"{allowed}): refused")
    if judged_on == "recent" and not checked:  # an unlabelled anomaly project: no holdout figure to fall on
        reason += f"; {_unchecked_words(str(holdout_note), holdout_metric)}"
    if recent_slice.get("how") == "latest_of_each_class":
        reason += "; " + _each_class_words(recent_slice, recent_metric)
    if recent_slice.get("groups"):
        reason += "; " + _group_words(recent_slice["groups"])
    if judged_on == "recent" and recent_slice.get("exposed_rows"):
        from .exposure import exposure_words

        reason += "; " + exposure_words(recent_slice, decides=False)
    ws.catalog.add_decision(name=cfg.name, trigger=triggers, dataset_id=merged["id"],
                            champion=_brief(champion, scores["champion"]),
                            challenger=_brief(challenger, scores["challenger"]), promoted=promoted, reason=reason)
    if promoted:
        promote(ws, f"{cfg.name}:{challenger['version']}", reason=f"retrain: {reason}")
    return {"promoted": promoted, "reason": reason, "dataset": merged["id"], "added_rows": merged["added"],
            **({"feedback_inputs": merged["feedback_inputs"]} if merged.get("feedback_inputs") else {}),
            "rows": {"holdout": len(holdout), "recent": len(recent)}, "metric": metric,
            "gate": {"recent_gain": gain, "recent_gain_interval": interval,
                     "recent_gain_within_noise": change_within_noise(interval), "holdout_drop": drop if checked else None,
                     "min_improvement": rc.min_improvement,
                     "max_holdout_drop": rc.max_holdout_drop, "relative": relative,
                     "recent_metric": recent_metric, "holdout_metric": holdout_metric,
                     "judged_on": judged_on, "recent_slice": recent_slice},
            "triggers": triggers, "champion": _brief(champion, scores["champion"]),
            "challenger": _brief(challenger, scores["challenger"])}


def _as_classes(frame: pd.DataFrame, label: str | None, champion: dict) -> pd.DataFrame:
    """``frame`` with its ``label`` column as the classes the gate counts (the champion's head's
    ``class_texts``: an anomaly verdict as the label value it stands for); unchanged without one."""
    if label is None or label not in frame.columns:
        return frame
    from ..families.heads import head_for

    return frame.assign(**{label: head_for(champion["info"] or {}).class_texts(frame[label])})


def _missing(metric: str, champion: dict[str, Any], challenger: dict[str, Any]) -> bool:
    """Whether neither model gives ``metric`` on a slice (both would count as 0 and tie)."""
    return all(m.get(metric) is None or m.get(metric) != m.get(metric) for m in (champion, challenger))


def _holdout_note(holdout: pd.DataFrame, label: str | None, metric: str, champion: dict[str, Any],
                  challenger: dict[str, Any]) -> str | None:
    """What the frozen holdout holds when it cannot compare models (``holds no labelled row``, ``holds
    only class 'normal'``), or None when it can: a model gives its ``metric`` there."""
    if not _missing(metric, champion, challenger):
        return None
    counts = class_counts(holdout[label]) if label is not None and label in holdout.columns else {}
    return f"holds {one_class_words(counts) if len(counts) < 2 else f'{len(counts)} classes'}"


def _unchecked_words(note: str, metric: str) -> str:
    """Why the frozen holdout was not checked where the recent slice decided: there is no drop to allow
    or refuse (``gate.holdout_drop`` is null), and a figure of 0 would read as one measured."""
    why = "" if note == f"holds {one_class_words({})}" else f", where {metric} cannot compare models"
    return f"the frozen holdout {note}{why}, so it was not checked"


def _recent_slice(ws: Workspace, row: dict, recent: pd.DataFrame, metric: str) -> dict[str, Any]:
    """How the recent slice was chosen (the split's note, ``recent.choose_recent``), its rows (with the
    earlier slices' rows of the groups it took) and, for a class figure (``recent.CLASS_FIGURES``; ``recent``'s labels
    as the head's classes), its classes and whether it ``compares`` models: at least two classes (a slice
    of one scores a model answering that class to everything as a perfect one). A split written before the
    note reads ``latest``."""
    stored = ws.catalog.get_split(row["id"], split_key(ws.config)) or {}
    note = {"how": "latest", **((stored.get("settings") or {}).get("recent_slice") or {}), "rows": len(recent)}
    label = label_column(ws.config)
    if metric in CLASS_FIGURES and label is not None and label in recent.columns:
        note["classes"] = class_counts(recent[label])
        note["compares"] = len(note["classes"]) >= 2
    return note


def _holdout_reason(note: dict[str, Any], rows: int, recent_metric: str, holdout_metric: str, gain: float,
                    min_improvement: float, promoted: bool) -> str:
    """The reason of a decision the frozen holdout made alone, starting with why the recent slice could not."""
    gain_txt, unit = _change(holdout_metric, gain)
    verdict = (f"challenger beats the champion there by {gain_txt}{unit}" if promoted
               else f"challenger does not beat the champion there: gain {gain_txt}{unit} "
                    f"(needs > 0 and >= {min_improvement})")
    return f"{_recent_cannot(note, rows, recent_metric)}, so the frozen holdout decides: {verdict}"


def _recent_cannot(note: dict[str, Any], rows: int, metric: str) -> str:
    """Why the recent slice cannot compare models: it holds one class, or neither model gives its figure
    there (an anomaly model that flags none of its rows has no precision at the budget)."""
    if note.get("exposure_bias"):  # a recommender's slice: the champion's own answers coming back
        from .exposure import exposure_words

        return exposure_words(note, decides=True)
    classes = note.get("classes") or {}
    if len(classes) < 2:
        alone = " (so does all the new feedback)" if note.get("feedback_classes") == 1 else ""
        return (f"the recent slice ({rows:,} rows) holds {one_class_words(classes)}{alone}: "
                f"{metric} cannot compare models there")
    doing = f"flags any of the recent slice's {rows:,} rows" if metric == "precision_at_budget" \
        else f"gives a {metric} on the recent slice ({rows:,} rows)"
    return f"neither model {doing}: {metric} cannot compare models there"


def _each_class_words(note: dict[str, Any], metric: str) -> str:
    """Why the recent slice is the latest share of each class's feedback, and what it holds."""
    latest = note.get("latest_classes") or {}
    held = (f"only class {next(iter(latest))!r}, where {metric} cannot compare models" if len(latest) == 1
            else f"only {len(latest)} of the feedback's {note.get('feedback_classes')} classes, where {metric} "
                 f"scores each missing class 0 for every model")
    classes = ", ".join(f"{n:,} {c!r}" for c, n in (note.get("classes") or {}).items())
    return (f"the latest {note.get('latest_rows', 0):,} feedback rows held {held}: the recent slice is the "
            f"latest {note.get('fraction', 0):.0%} of each class's feedback instead ({classes})")


def _group_words(groups: dict[str, Any]) -> str:
    """How the recent slice took whole ``data.group`` groups (``recent_slice.groups``)."""
    held = groups.get("held_by_earlier_slice") or 0
    earlier = f", {held:,} of them with an earlier slice's rows, which stay in it" if held else ""
    words = (f"the recent slice holds whole {groups['column']!r} groups, latest feedback first "
             f"({groups['groups']:,} of the new feedback's {groups['feedback_groups']:,}{earlier}), so the "
             f"challenger trained on no new row of a group it is judged on")
    if groups["groups"] >= groups["feedback_groups"]:
        words += ": it learnt none of the new feedback"
    return words


def _recent_answers(model: Any, recent: pd.DataFrame, ws: Workspace, task: str, metric: str,
                    figures: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float | None] | None:
    """(truth, output, threshold) of ``model`` on the recent slice, for the gain's interval: only where
    the gate compares a registry figure the slice gave (a head's own gate figure, a recommender's
    interactions: None). The rows were just scored, so this reads evaluate's cache."""
    from ..evaluation.evaluate import scores_of
    from ..evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

    if metric not in CLASSIFICATION_METRICS + REGRESSION_METRICS or metric not in figures \
            or hasattr(model, "evaluate_interactions"):
        return None
    y, out = scores_of(model, recent, str(label_column(ws.config)), task)
    return y, out, getattr(model, "threshold_", None)


def _gain_interval(metric: str, answers: dict[str, Any], champion_figure: float) -> list[float] | None:
    """The 95 % paired-bootstrap interval of the challenger's recent gain, in the gain's terms (a share
    of the champion's figure for an error in the target's units); None when it cannot be computed."""
    from ..evaluation.metrics import paired_change_interval

    champ, chall = answers["champion"], answers["challenger"]
    if champ is None or chall is None or len(champ[0]) < 2:
        return None
    lo, hi = paired_change_interval(metric, champ[0], chall[1:], champ[1:])
    if metric in IN_TARGET_UNITS:
        scale = abs(champion_figure) or 1.0
        lo, hi = lo / scale, hi / scale
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [round(float(lo), 6), round(float(hi), 6)]


def _noise_words(metric: str, interval: list[float] | None, rows: int) -> str:
    """The interval as the reason says it, and whether the recent slice can tell the two models apart."""
    if interval is None:
        return ""
    lo, hi = (_change(metric, v)[0] for v in interval)
    verdict = ": within the noise, too few rows to tell the two apart" if change_within_noise(interval) else ""
    return f" (95% interval {lo} to {hi} on {rows:,} recent rows{verdict})"


def _change(metric: str, value: float) -> tuple[str, str]:
    """A gate figure's change as the reason words it: ``+1.2%`` `` of the champion's rmse`` for an error in
    the target's units, ``+0.0123`` `` f1_macro`` otherwise."""
    if metric in IN_TARGET_UNITS:
        return f"{value:+.1%}", f" of the champion's {metric}"
    return f"{value:+.4f}", f" {metric}"


def _gate_metrics(task: str, metric: str) -> tuple[str, str]:
    """The figures the gate compares on the recent slice and on the holdout: ``train.metric`` for both,
    unless the version's head names its own (``gate_metrics``: the anomaly head compares precision at
    the alert budget on recent verdicts and ROC-AUC on the labelled holdout)."""
    from ..families.heads import KINDS

    recent, holdout = getattr(KINDS.get(task), "gate_metrics", (None, None))
    return recent or metric, holdout or metric


def _figure(metrics: dict[str, Any], name: str) -> float:
    """A gate figure; one a slice cannot give (no flagged record, a single class) counts as 0."""
    value = metrics.get(name)
    return 0.0 if value is None or value != value else float(value)


def _brief(m: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    return {"model": {"name": m["name"], "version": m["version"]}, "metrics": metrics}


def rollback(ws: Workspace, alias: str = PRODUCTION) -> dict[str, Any]:
    """Point ``alias`` back at the version it held before the current one. A retrain that promoted
    its challenger and then the challenger's optimized variant is one step: it is undone at once."""
    cfg = ws.config
    hist = ws.catalog.alias_history(cfg.name, alias)
    if not hist:
        raise StateError(f"model '{cfg.name}' has no '{alias}' version to roll back from")
    from ..optimization.optimize import OPTIMIZED_VARIANT_OF

    stack: list[int] = []  # versions in service order; a rollback pops the one it replaced
    for h in hist:
        reason = h.get("reason") or ""
        if reason.startswith("rollback from"):
            if stack:
                stack.pop()
        elif reason.startswith(f"retrain: {OPTIMIZED_VARIANT_OF}") and stack:
            stack[-1] = h["version"]  # the same retrain's challenger, optimized: one step to undo
        elif not stack or stack[-1] != h["version"]:
            stack.append(h["version"])
    current = hist[-1]["version"]
    if len(stack) < 2:
        raise StateError(f"'{alias}' has only ever been version {current}; nothing to roll back to")
    previous = stack[-2]
    res = promote(ws, f"{cfg.name}:{previous}", alias, reason=f"rollback from {current}")
    return {**res, "rolled_back_from": current, "at": dt.datetime.now().isoformat(timespec="seconds")}
