"""Tabular quality: `modelloop train` vs LightGBM defaults vs FLAML AutoML at the same budget.

    python benchmarks/tabular_quality.py [--budget 60] [--datasets breast_cancer,wine]

On scikit-learn's bundled breast-cancer and wine data, one fixed seeded stratified split (75/25).
All three see the same training rows and are scored on the same test rows; FLAML gets the same
time budget as modelloop's whole search. FLAML is a peer, installed only in the bench environment
(`make bench` does it); without it its column says "not installed".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

LOADERS = {"breast_cancer": load_breast_cancer, "wine": load_wine}


def _scores(y, pred, proba) -> dict[str, float]:
    out = {"f1_macro": f1_score(y, pred, average="macro"), "accuracy": accuracy_score(y, pred)}
    if proba is not None:
        out["roc_auc"] = (roc_auc_score(y, proba[:, 1]) if proba.shape[1] == 2
                          else roc_auc_score(y, proba, multi_class="ovr"))
    return {k: round(float(v), 4) for k, v in out.items()}


def _modelloop(train: pd.DataFrame, test: pd.DataFrame, budget: float) -> dict:
    from modelloop import Project, parse_config

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        # modelloop sees only the training rows; it keeps 5% of them as its own frozen test split
        # (so it fits on slightly fewer rows than the peers), and is scored on the shared test rows.
        train.to_csv(root / "train.csv", index=False)
        cfg = parse_config({"name": "bench", "data": {"source": "train.csv", "target": "target"},
                            "split": {"test_size": 0.05}, "train": {"budget": budget}}, root=root)
        p = Project(cfg)
        t = time.time()
        p.run()
        seconds = time.time() - t
        from modelloop.registry import load_model, resolve_model

        model = load_model(p.workspace, resolve_model(p.workspace))
        X = test.drop(columns=["target"])
        res = _scores(test["target"], model.predict(X), model.predict_proba(X))
    return {**res, "seconds": round(seconds, 1)}


def _lightgbm(train, test) -> dict:
    import lightgbm as lgb

    t = time.time()
    m = lgb.LGBMClassifier(verbose=-1).fit(train.drop(columns=["target"]), train["target"])
    X = test.drop(columns=["target"])
    return {**_scores(test["target"], m.predict(X), m.predict_proba(X)), "seconds": round(time.time() - t, 1)}


def _flaml(train, test, budget: float) -> dict | None:
    try:
        from flaml import AutoML
    except ImportError:
        return None
    automl = AutoML()
    t = time.time()
    automl.fit(train.drop(columns=["target"]), train["target"], task="classification", time_budget=budget,
               metric="macro_f1", verbose=0, seed=0)
    X = test.drop(columns=["target"])
    return {**_scores(test["target"], automl.predict(X), automl.predict_proba(X)),
            "seconds": round(time.time() - t, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=60)
    ap.add_argument("--datasets", default="breast_cancer,wine")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {}
    for name in args.datasets.split(","):
        bunch = LOADERS[name](as_frame=True)
        df = bunch.frame.rename(columns=lambda c: str(c).replace(" ", "_"))
        train, test = train_test_split(df, test_size=0.25, random_state=0, stratify=df["target"])
        row = {"lightgbm_defaults": _lightgbm(train, test), "modelloop": _modelloop(train, test, args.budget),
               "flaml": _flaml(train, test, args.budget)}
        results[name] = row
        base, ours, fl = row["lightgbm_defaults"], row["modelloop"], row["flaml"]
        print(f"\n{name}: {len(train)} train / {len(test)} test rows, budget {args.budget:.0f} s")
        print(f"{'':22}{'f1_macro':>10}{'accuracy':>10}{'roc_auc':>10}{'seconds':>9}")
        for label, r in row.items():
            if r is None:
                print(f"{label:22}{'not installed (pip install flaml[automl])':>40}")
                continue
            print(f"{label:22}{r['f1_macro']:>10.4f}{r['accuracy']:>10.4f}{r.get('roc_auc', np.nan):>10.4f}"
                  f"{r['seconds']:>9.1f}")
        print(f"ratio modelloop / lightgbm defaults, f1_macro: {ours['f1_macro'] / base['f1_macro']:.4f}")
        if fl:
            print(f"ratio modelloop / flaml, f1_macro: {ours['f1_macro'] / fl['f1_macro']:.4f}, "
                  f"roc_auc: {ours['roc_auc'] / fl['roc_auc']:.4f}")
    if args.json:
        json.dump(results, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
