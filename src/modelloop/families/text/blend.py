"""The text search's candidates combined: a weighted average of the class probabilities of the best
TF-IDF model and the best frozen-encoder head(s), kept only when its cross-validated score beats the
best single candidate's.

Why: TF-IDF n-grams and a multilingual encoder's embeddings make different mistakes (the n-grams
read the exact words and characters, the encoder reads meaning across paraphrases), so their average
is often better than either; the search alone only ever keeps one of them.

How the blend is chosen without judging it on the rows that chose it:

1. the members are the best finished trial of each candidate that is not a PyTorch network (TF-IDF and
   each frozen encoder), at most ``MAX_MEMBERS``, best first;
2. each member's *out-of-fold* probabilities of every training row (the fit and validation rows) come
   from its trial's cross-validation (:mod:`.crossval`: the same folds for every candidate), so the blend
   fits nothing; a member whose folds this process did not run (a resumed search's earlier trial) is
   cross-validated again when that fits the seconds left;
3. the weights: the point of a grid on the simplex (steps of ``1 / GRID``) with the best out-of-fold score
   over all those rows, ties to the one leaning most on the best member. Weights chosen on the fit rows'
   out-of-fold predictions alone (the previous rule: 5 folds of the fit rows, each fold's model fitted on
   64 % of the training rows) leaned toward the frozen encoder, which gains less from more rows than
   TF-IDF does: over fit + validation rows each fold's model sees 80 % of them (benchmarks/RESULTS.md);
4. the blend's score is *cross-fitted*: each fold is scored with weights chosen on the other folds, and
   the mean over the folds is compared with the best single candidate's cross-validated score (the best
   of all its trials, so the comparison favours the single model): the blend is kept only when it is
   strictly better and gives weight to at least two members (a member weighted 0 is left out of the
   registered model). ``pooled`` reports the blend (with the final weights) and its best member on all
   the out-of-fold predictions together.

**Budget.** The blend costs a grid search over stored predictions (seconds), so the search gets all of
``train.budget`` (less the embedding time); the members it must cross-validate again take what the
search left, estimated from their trials' durations, and one that does not fit is left out (``why`` says so).

The registered :class:`BlendTextModel` holds the members refitted on fit + validation rows (as each
candidate's ``build`` does) and the weights. It serves each member by its own path (TF-IDF through its
skl2onnx graph in ONNX Runtime, a frozen encoder through its engine, no PyTorch), and averages.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...evaluation.metrics import direction, score
from .classical import TfidfTextModel, export_tfidf_onnx
from .pipeline import TextPipelineModel

__all__ = ["BLEND", "GRID", "MAX_MEMBERS", "BlendTextModel", "build_blend", "choose_blend", "weight_grid"]

BLEND = "blend"
GRID = 20        # weights in steps of 1/GRID (2 members: 21 points; 3 members: 231)
MAX_MEMBERS = 3


def weight_grid(members: int, steps: int = GRID) -> np.ndarray:
    """Every weight vector of ``members`` non-negative multiples of ``1/steps`` summing to 1, those
    leaning most on the first member first."""
    rows = [c for c in itertools.product(range(steps, -1, -1), repeat=members) if sum(c) == steps]
    return np.asarray(rows, dtype=np.float64) / steps


def _best_trials(records: list[Any], cands: dict[str, Any], metric: str
                 ) -> list[tuple[str, dict[str, Any], float, float]]:
    """``(candidate, params, score, seconds)`` of the best finished trial of each blendable candidate
    (one that cross-validates and is served without PyTorch: not a PyTorch encoder's head), best first;
    ``seconds``: that trial's duration."""
    from .search import _split_params

    sign = 1.0 if direction(metric) == "maximize" else -1.0
    best: dict[str, tuple[dict[str, Any], float, float]] = {}
    for rec in records:
        if rec.value is None or not np.isfinite(rec.value):
            continue
        name, params = _split_params(cands, rec.params)
        if name not in cands or not hasattr(cands[name], "cross_validate") or not getattr(cands[name], "blendable", True):
            continue
        if name not in best or sign * rec.value > sign * best[name][1]:
            best[name] = ({**cands[name].defaults(), **params}, float(rec.value), float(rec.duration_s))
    return sorted(((n, p, v, d) for n, (p, v, d) in best.items()), key=lambda t: -sign * t[2])


def _label(cands: dict[str, Any], name: str) -> str:
    return getattr(cands[name], "backbone", "") or name


def _affordable(top: list[tuple[str, dict[str, Any], float, float]], cands: dict[str, Any],
                seconds: float | None) -> tuple[list[tuple[str, dict[str, Any], float, float]], float]:
    """The members (best first) whose out-of-fold predictions are at hand or whose cross-validation
    again (as long as its trial took) fits in ``seconds`` together (all when None), and that cost."""
    kept, cost = [], 0.0
    for t in top:
        need = 0.0 if cands[t[0]].cached_cv(t[1]) is not None else t[3]
        if seconds is None or cost + need <= seconds:
            kept.append(t)
            cost += need
    return kept, cost


def _out_of_fold(cands: dict[str, Any], top: list[tuple[str, dict[str, Any], float, float]],
                 deadline: float) -> list[np.ndarray] | None:
    """Each member's out-of-fold probabilities ``[rows, K]`` (stored, or cross-validated again);
    None when that ran past ``deadline``."""
    import optuna

    out = []
    for name, params, _, _ in top:
        cand = cands[name]
        try:
            cv = cand.cached_cv(params) or cand.cross_validate(params, deadline=deadline)
        except optuna.TrialPruned:
            return None
        if cv is None or cv["oof"] is None:
            return None
        out.append(cv["oof"])
    return out


def _weights(metric: str, y: np.ndarray, oof: list[np.ndarray], rows: np.ndarray, grid: np.ndarray) -> int:
    """The grid point whose blend scores best on ``rows`` (the first of equals)."""
    sign = 1.0 if direction(metric) == "maximize" else -1.0
    scores = [score(metric, y[rows], sum(w * p[rows] for w, p in zip(ws, oof, strict=True))) for ws in grid]
    return int(np.argmax(sign * np.asarray(scores)))


def _within_limit(ranked: list[tuple[str, dict[str, Any], float, float]], latency: Any
                  ) -> tuple[list[tuple[str, dict[str, Any], float, float]], list[str]]:
    """The members (best first) whose served costs together fit ``latency.limit_ms``, and the names of
    those left out."""
    kept, left_out, total = [], [], 0.0
    for t in ranked:
        cost = latency.cost(t[0])
        if total + cost <= latency.limit_ms:
            kept.append(t)
            total += cost
        else:
            left_out.append(t[0])
    return kept, left_out


def choose_blend(cands: dict[str, Any], records: list[Any], *, metric: str, seed: int,
                 best_single: float, seconds: float | None = None,
                 fine_tune: float | None = None, latency: Any = None) -> dict[str, Any] | None:
    """The blend of the search's best trials, or None when fewer than two candidates can be blended.
    Returns ``{"kept", "members": [{candidate, name, params, validation, weight}], "validation", "cv":
    {folds, spread, scores}, "best_single", "oof", "pooled": {rows, blend, best_member, member}, "folds",
    "seconds", "why"}``: ``validation`` is the blend's cross-fitted score (each fold weighed by the other
    folds), a member's ``validation`` its trial's cross-validated score; ``best_single``: the search's best
    score (of any candidate); ``seconds``: what is left of train.budget for it (None: no limit);
    ``fine_tune``: the search's winner is a fine-tune, scored on the validation rows with this score
    (:func:`.search.fair_best`): the blend is then compared with it on those rows (its cross-fitted
    predictions there, ``validation_rows``), not by its CV mean. ``latency`` (a
    :class:`~.latency.LatencyBound`): only members whose served costs add up within its limit, best
    first (``latency_left_out`` names the others)."""
    started = time.monotonic()
    deadline = started + seconds if seconds is not None else math.inf
    ranked = _best_trials(records, cands, metric)[:MAX_MEMBERS]
    if len(ranked) < 2:
        return None
    left_out: list[str] = []
    if latency is not None:
        within, left_out = _within_limit(ranked, latency)
        if len(within) < 2:
            costs = " + ".join(f"{_label(cands, n)} ~{latency.cost(n):.1f} ms" for n, *_ in ranked)
            return {"kept": False, "best_single": round(best_single, 4), "latency_left_out": left_out,
                    "members": [{"candidate": n, "name": _label(cands, n), "params": p, "validation": round(v, 4)}
                                for n, p, v, _ in ranked],
                    "why": f"no blend: its members' served costs ({costs} a text) add up to more than the "
                           f"{latency.limit_ms:.3g} ms of {latency.source}"}
        ranked = within
    sign = 1.0 if direction(metric) == "maximize" else -1.0
    first = cands[ranked[0][0]]
    folds = first.cv_folds()
    top, cost = _affordable(ranked, cands, seconds)
    members = [{"candidate": n, "name": _label(cands, n), "params": p, "validation": round(v, 4)}
               for n, p, v, _ in (top if len(top) >= 2 else ranked)]
    out: dict[str, Any] = {"kept": False, "members": members, "best_single": round(best_single, 4)}
    if left_out:
        out["latency_left_out"] = left_out
    if folds is None:
        out["why"] = "a class has fewer than 2 training rows: no out-of-fold predictions to choose the weights on"
        return out
    oof = _out_of_fold(cands, top, deadline) if len(top) >= 2 else None
    if oof is None:
        need = sum(t[3] for t in ranked[:2])
        out.update(seconds=round(time.monotonic() - started, 1),
                   why=f"no blend: cross-validating its members again (~{max(need, cost):.0f} s, from their trial "
                       f"times) does not fit the {seconds or 0:.0f} s of train.budget left after the search")
        return out
    y, held = first.y_all, [rows for _, rows in folds]
    every = np.concatenate(held)
    grid = weight_grid(len(top))
    weights = grid[_weights(metric, y, oof, every, grid)]
    mixed = lambda ws, rows: sum(w * p[rows] for w, p in zip(ws, oof, strict=True))  # noqa: E731
    # the blend's score: each fold weighed by the other folds' rows, so no weight is judged on the rows that chose it
    crossfit = np.zeros_like(oof[0])
    for rows in held:
        crossfit[rows] = mixed(grid[_weights(metric, y, oof, np.setdiff1d(every, rows), grid)], rows)
    fitted = [float(score(metric, y[rows], crossfit[rows])) for rows in held]
    blend_cv = float(np.mean(fitted))
    val = first.val_rows()
    versus, blend_score, rule = best_single, blend_cv, "cross-validated"
    if fine_tune is not None and len(val):
        versus, rule = fine_tune, "on the validation rows"
        blend_score = float(score(metric, y[val], crossfit[val]))
        out["validation_rows"] = {"blend": round(blend_score, 4), "fine_tune": round(fine_tune, 4)}
    pooled = float(score(metric, y[every], mixed(weights, every)))
    singles = [float(score(metric, y[every], p[every])) for p in oof]
    best_i = int(np.argmax(sign * np.asarray(singles)))
    for m, w in zip(members, weights, strict=True):
        m["weight"] = round(float(w), 4)
    out.update(validation=round(blend_cv, 4), cv={"folds": len(held), "spread": round(float(np.std(fitted)), 4),
                                                  "scores": [round(v, 4) for v in fitted]},
               oof=round(pooled, 4), folds=len(held),
               pooled={"rows": len(every), "blend": round(pooled, 4), "best_member": round(singles[best_i], 4),
                       "member": members[best_i]["name"]},
               seconds=round(time.monotonic() - started, 1))
    mix = " + ".join(f"{w:g} x {m['name']}" for m, w in zip(members, weights, strict=True) if w > 0)
    if (weights > 0).sum() < 2:
        out["why"] = (f"the out-of-fold weights put everything on {mix.split(' x ', 1)[1]}: the best single "
                      f"candidate ({best_single:.4f}) is kept")
    elif sign * blend_score > sign * versus:
        out.update(kept=True, why=f"blend {mix}: {rule} {metric} {blend_score:.4f}, better than the best single candidate's "
                                  f"{versus:.4f} (weights from the {len(held)} folds' out-of-fold predictions, "
                                  f"each fold scored with weights chosen on the others)")
    else:
        out["why"] = (f"blend {mix}: {rule} {metric} {blend_score:.4f}, no better than the best single "
                      f"candidate's {versus:.4f}; the single one is kept")
    return out


class BlendTextModel(TextPipelineModel):
    """A weighted average of the class probabilities of text models that are not PyTorch networks.
    Learned state: ``members_`` (TF-IDF and frozen-encoder models, over the same classes) and
    ``weights_`` (summing to 1)."""

    kind = BLEND

    @classmethod
    def from_members(cls, members: list[TextPipelineModel], weights: list[float], *, classes: list[Any],
                     text_column: str, target: str | None, config: dict[str, Any], seed: int,
                     class_weight: str, metric: str, description: dict[str, Any]) -> BlendTextModel:
        model = cls(config=config, text_column=text_column, seed=seed, class_weight=class_weight, metric=metric)
        model.members_ = list(members)
        model.weights_ = np.asarray(weights, dtype=np.float64)
        families = [m.kind for m in members]
        model._fitted(classes, target, {"families": families, **description})
        return model

    def n_parameters(self) -> int:
        return int(sum(m.n_parameters() for m in self.members_))

    def tfidf_member(self) -> int | None:
        return next((i for i, m in enumerate(self.members_) if isinstance(m, TfidfTextModel)), None)

    def member_session(self, i: int, session: Any) -> Any:
        """Member ``i``'s session: ``session[i]`` of a dict (what the server builds), or an ONNX
        Runtime session of the TF-IDF graph (what ``modelloop optimize`` opens) for the TF-IDF member."""
        if isinstance(session, dict):
            return session.get(i)
        return session if session is not None and i == self.tfidf_member() else None

    def score_texts(self, texts: list[str], session: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        proba = np.zeros((len(texts), len(self.classes_)), dtype=np.float64)
        windows, cut = np.ones(len(texts), dtype=np.int64), np.zeros(len(texts), dtype=bool)
        for i, (member, w) in enumerate(zip(self.members_, self.weights_, strict=True)):
            p, n, c = member.score_texts(texts, self.member_session(i, session))
            proba += w * p
            windows, cut = np.maximum(windows, n), cut | c
        return proba, windows, cut

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["members"] = [{"method": m.kind, "backbone": getattr(m, "backbone_", None), "weight": float(w)}
                           for m, w in zip(self.members_, self.weights_, strict=True)]
        return info

    # ---- ONNX: the TF-IDF member's graph (a frozen member runs in its own engine) ----------------
    def export_onnx(self, path: Path) -> dict[str, Any]:
        i = self.tfidf_member()
        if i is None:
            raise ConfigError("this blend has no TF-IDF member: its members run in their encoders' engines")
        report = export_tfidf_onnx(self.members_[i], path)
        return {**report, "member": i, "graph_of": "the TF-IDF member; the other members run in their own engines"}

    def _open_session(self, path: str, threads: int | None) -> Any:
        i = self.tfidf_member()
        if i is None:
            raise ConfigError("this blend has no TF-IDF member, so no graph to open")
        return self.members_[i]._open_session(path, threads)


def build_blend(cands: dict[str, Any], blend: dict[str, Any], *, text_column: str, target: str | None,
                description: dict[str, Any]) -> BlendTextModel:
    """The registered blend: each member of non-zero weight built as its candidate builds it (refitted
    on the fit and validation rows) with the chosen weights."""
    used = [m for m in blend["members"] if m["weight"] > 0]
    members = [cands[m["candidate"]].build(m["params"], {"value": m["validation"]}, text_column=text_column,
                                           target=target, description={}) for m in used]
    first = cands[used[0]["candidate"]]
    info = {"validation_score": blend["validation"], "fit_rows": len(first.y_fit), **description}
    return BlendTextModel.from_members(members, [m["weight"] for m in used], classes=first.classes,
                                       target=target, description=info, **first._common(text_column))
