"""Anomaly quality: the anomaly family's default ensemble vs IsolationForest defaults and PyOD's ECOD and
kNN defaults, then what 50 analysts' verdicts do to precision at the alert budget.

    python benchmarks/anomaly_quality.py [--seeds 3] [--budget 20] [--parts quality,loop] [--loop-seeds 0]
    # PyOD: .venv-bench/bin/python

**Data**, the ADBench recipe: a labelled table whose minority class (here a chosen class) is downsampled
to about 5 % of the rows and called the anomaly. scikit-learn's bundled breast cancer (malignant), wine
(class 2 against 0 and 1), digits (the digit 0 against the rest), and the bundled sensors example (its
planted anomalies, generated with their kind; its service runs are ordinary). Per seed: a stratified
70/30 split; every detector is fitted on the 70 % without labels and scores the 30 %.

**Ours** is the product path: a project (`task: anomaly_detection`, no target) over the training rows,
`ingest` + `train` (its own 10 % split is held out of fitting), and the registered model's scores. The
sensors table is read as its example config reads it (``data.time: timestamp``, the time window by
machine); the peers see its timestamp as the hour.
Peers, in the same run: scikit-learn's ``IsolationForest()`` with defaults (``random_state=seed``) and,
when ``pyod`` imports (``.venv-bench``), ``pyod.models.ecod.ECOD()`` and ``pyod.models.knn.KNN()``.

**The loop** (sensors): train the example without any label (its ``incident`` column empty), serve it
(the real app, in process), take the first 50 alerts on the next two weeks' traffic and send each one's verdict (``confirmed`` when it was planted, else
``false_alarm``) through ``POST /v1/feedback``, run ``retrain``, and compare precision at the alert
budget (the share of flagged records that are anomalies) of production before and after on a fresh
set of readings. ``--loop-seeds 0,1,2`` repeats it on other generated tables and traffic (seed s: training
readings of seed s, live traffic 55 + s, fresh readings 101 + s; seed 0 is the figure recorded before).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

ANOMALY_SHARE = 0.05


def _downsampled(X: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Keep every normal row and as many anomalies as make ANOMALY_SHARE of the rows."""
    rng = np.random.default_rng(seed)
    normal, odd = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    keep = rng.choice(odd, max(3, int(round(len(normal) * ANOMALY_SHARE / (1 - ANOMALY_SHARE)))), replace=False)
    rows = np.sort(np.r_[normal, keep])
    return X.iloc[rows].reset_index(drop=True), y[rows]


def datasets(seed: int) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    from modelloop.examples.sensors import generate_sensors

    out = {}
    bc = load_breast_cancer(as_frame=True)
    out["breast_cancer"] = _downsampled(bc.data, (bc.target == 0).to_numpy().astype(int), seed)
    wine = load_wine(as_frame=True)
    out["wine"] = _downsampled(wine.data, (wine.target == 2).to_numpy().astype(int), seed)
    digits = load_digits(as_frame=True)
    X = digits.data.loc[:, digits.data.std() > 0]
    out["digits_0"] = _downsampled(X, (digits.target == 0).to_numpy().astype(int), seed)
    sensors = generate_sensors(3000, seed=seed, with_kind=True)
    out["sensors"] = (sensors.drop(columns=["incident", "kind", "reading_id"]),
                      (sensors["kind"] != "").to_numpy().astype(int))
    return out


def numeric(X: pd.DataFrame) -> pd.DataFrame:
    """What the peers read: numbers (categories one-hot, a timestamp as its hour)."""
    X = X.copy()
    if "timestamp" in X:
        X["hour"] = pd.to_datetime(X.pop("timestamp")).dt.hour
    return pd.get_dummies(X, dtype=float)


def ours(train: pd.DataFrame, test: pd.DataFrame, seed: int, budget: float) -> np.ndarray:
    from modelloop.config import parse_config
    from modelloop.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        train.to_csv(Path(tmp) / "train.csv", index=False)
        cfg: dict[str, Any] = {"name": "bench", "task": "anomaly_detection", "seed": seed,
                               "data": {"source": "train.csv"}, "split": {"test_size": 0.1}, "train": {"budget": budget}}
        if "timestamp" in train.columns:  # the sensors example, as its own config reads it (anomaly.yaml)
            cfg["data"]["time"] = "timestamp"
            cfg["anomaly"] = {"window_by": "machine"}
        project = Project(parse_config(cfg, root=tmp))
        project.ingest()
        project.train()
        from modelloop.registry import load_model, resolve_model

        model = load_model(project.workspace, resolve_model(project.workspace))
        return np.asarray(model.predict(test), dtype=float)


def peers(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict[str, np.ndarray | None]:
    from sklearn.ensemble import IsolationForest

    Xtr, Xte = numeric(train), numeric(test).reindex(columns=numeric(train).columns, fill_value=0.0)
    out: dict[str, np.ndarray | None] = {
        "iforest_defaults": -IsolationForest(random_state=seed).fit(Xtr).score_samples(Xte)}
    try:
        from pyod.models.ecod import ECOD
        from pyod.models.knn import KNN
    except ImportError:
        out["pyod_ecod"] = out["pyod_knn"] = None
        return out
    out["pyod_ecod"] = ECOD().fit(Xtr.to_numpy()).decision_function(Xte.to_numpy())
    out["pyod_knn"] = KNN().fit(Xtr.to_numpy()).decision_function(Xte.to_numpy())
    return out


def quality(seeds: int, budget: float) -> dict[str, Any]:
    rows = []
    for seed in range(seeds):
        for name, (X, y) in datasets(seed).items():
            Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
            started = time.time()
            scores = {"modelloop": ours(Xtr.reset_index(drop=True), Xte.reset_index(drop=True), seed, budget)}
            seconds = time.time() - started
            scores.update(peers(Xtr, Xte, seed))
            for detector, s in scores.items():
                if s is None:
                    continue
                rows.append({"dataset": name, "seed": seed, "detector": detector, "roc_auc": roc_auc_score(yte, s),
                             "pr_auc": average_precision_score(yte, s),
                             "seconds": seconds if detector == "modelloop" else None})
            print(f"  {name} seed {seed}: done ({seconds:.0f} s ours)", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    per = df.groupby(["dataset", "detector"])[["roc_auc", "pr_auc"]].mean().unstack("detector")
    mean = df.groupby("detector")[["roc_auc", "pr_auc"]].mean()
    return {"per_dataset": per, "mean": mean}


def loop(budget: float, verdicts: int = 50, seed: int = 0) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from modelloop.config import parse_config
    from modelloop.examples.sensors import generate_sensors
    from modelloop.project import Project
    from modelloop.registry import load_model, resolve_model
    from modelloop.serving import ServeConfig, create_app

    # traffic at the training rows' rate (6,000 readings in two weeks): the time window counts as in training
    fresh = generate_sensors(6000, seed=101 + seed, with_kind=True, start="2025-03-31")  # after the verdicts' weeks
    truth = (fresh["kind"] != "").to_numpy()

    def precision(ws: Any) -> tuple[float, int]:
        model = load_model(ws, resolve_model(ws))
        flagged = model.predict(fresh.drop(columns=["incident", "kind"])) > model.threshold_
        return float(truth[flagged].mean()) if flagged.any() else 0.0, int(flagged.sum())

    import yaml
    from importlib import resources

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").mkdir()
        unlabelled = generate_sensors(6000, seed=seed).assign(incident=None)  # before any analyst has looked
        unlabelled.to_csv(Path(tmp) / "data" / "sensors.csv", index=False)
        raw = yaml.safe_load(resources.files("modelloop.examples").joinpath("anomaly.yaml").read_text())
        raw["train"] = {"budget": budget, "trials": 12}
        project = Project(parse_config(raw, root=tmp))
        project.run()
        ws = project.workspace
        before = precision(ws)
        live = generate_sensors(6000, seed=55 + seed, with_kind=True, start="2025-03-17")  # the two weeks after training
        records = json.loads(live.drop(columns=["incident", "kind"]).to_json(orient="records"))
        sent = 0
        with TestClient(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as client:
            while client.get("/v1/ready").status_code != 200:  # the model loads in the background
                time.sleep(0.2)
            for i in range(0, len(records), 200):
                answers = client.post("/v1/predict", json={"records": records[i:i + 200]}).json()["predictions"]
                for j, a in enumerate(answers):
                    if a["is_anomaly"] and sent < verdicts:
                        label = "confirmed" if live["kind"].iloc[i + j] else "false_alarm"
                        assert client.post("/v1/feedback", json={"request_id": a["request_id"],
                                                                 "label": label}).status_code == 201
                        sent += 1
        decision = project.retrain()
        after = precision(ws)
    return {"seed": seed, "verdicts": sent, "before": before, "after": after, "promoted": decision["promoted"],
            "reason": decision["reason"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--parts", default="quality,loop", help="quality, loop or both")
    ap.add_argument("--loop-seeds", default="0", help="the loop's generated data, comma-separated seeds")
    args = ap.parse_args()
    if "quality" in args.parts:
        report_quality(quality(args.seeds, args.budget))
    if "loop" in args.parts:
        gains = []
        for seed in (int(s) for s in args.loop_seeds.split(",")):
            lp = loop(args.budget, seed=seed)
            report_loop(lp)
            gains.append(lp["after"][0] - lp["before"][0])
        if len(gains) > 1:
            print(f"loop: mean gain {100 * float(np.mean(gains)):+.1f} points over {len(gains)} seeds "
                  f"(min {100 * min(gains):+.1f})")


def report_quality(q: dict[str, Any]) -> None:
    pd.set_option("display.width", 160)
    print("mean over seeds, per dataset (ROC-AUC, PR-AUC):")
    print(q["per_dataset"].round(3).to_string())
    print("\nmean over datasets and seeds:")
    print(q["mean"].round(3).to_string())
    mean = q["mean"]
    peer_rows = mean.drop(index="modelloop")
    for metric in ("roc_auc", "pr_auc"):
        best = peer_rows[metric].idxmax()
        print(f"{metric}: modelloop {mean.loc['modelloop', metric]:.3f} / best peer {best} "
              f"{peer_rows.loc[best, metric]:.3f} = {mean.loc['modelloop', metric] / peer_rows.loc[best, metric]:.3f}x")
    if "pyod_ecod" not in mean.index:
        print("PyOD: not installed in this environment (its rows are missing); run with .venv-bench/bin/python")


def report_loop(lp: dict[str, Any]) -> None:
    (p0, n0), (p1, n1) = lp["before"], lp["after"]
    print(f"\nloop (sensors, seed {lp['seed']}): precision at the alert budget on 6,000 new readings {p0:.3f} ({n0} alerts) -> "
          f"{p1:.3f} ({n1} alerts) after {lp['verdicts']} verdicts: {100 * (p1 - p0):+.1f} points; "
          f"retrain promoted: {lp['promoted']} ({lp['reason']})")


if __name__ == "__main__":
    main()
