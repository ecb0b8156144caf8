"""The bundled fraud data: deterministic, messy in the documented ways, learnable but not trivial."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from modelloop.errors import ConfigError
from modelloop.examples.fraud import COLUMNS, DOMESTIC_COUNTRY, generate_transactions

N = 20_000


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return generate_transactions(N, seed=0)


@pytest.fixture(scope="module")
def shifted() -> pd.DataFrame:
    return generate_transactions(N, seed=0, shift=True)


def test_same_seed_same_table_other_seed_other_table():
    a = generate_transactions(2_000, seed=7)
    pd.testing.assert_frame_equal(a, generate_transactions(2_000, seed=7))
    assert not a.equals(generate_transactions(2_000, seed=8))


def test_columns_types_and_size(base):
    assert tuple(base.columns) == COLUMNS
    assert len(base) == N
    assert pd.api.types.is_datetime64_any_dtype(base["timestamp"])
    assert base["timestamp"].is_monotonic_increasing
    assert (base["timestamp"].max() - base["timestamp"].min()).days in range(85, 91)
    assert base["card_present"].dtype == bool
    assert base["hour"].between(0, 23).all()
    assert (base["hour"] == base["timestamp"].dt.hour).all()
    assert set(base["channel"]) == {"online", "pos", "atm"}
    assert 50 <= base["merchant"].nunique() <= 70
    assert 8 <= base["merchant_category"].nunique() <= 12
    assert 12 <= base["country"].nunique() <= 15
    assert (base["country"] == DOMESTIC_COUNTRY).mean() > 0.85
    assert (base["amount"] > 0).all() and (base["amount"].round(2) == base["amount"]).all()
    assert base["amount"].mean() > 1.5 * base["amount"].median()  # heavy right tail
    assert base["transaction_id"].str.fullmatch(r"tx_\d{6}").all()
    assert base["customer_id"].nunique() < len(base) / 5


def test_fraud_share(base, shifted):
    assert 0.015 <= base["is_fraud"].mean() <= 0.025
    assert 0.015 <= shifted["is_fraud"].mean() <= 0.025
    assert set(base["is_fraud"].unique()) == {0, 1}


def test_exact_duplicates_share_their_id(base):
    dup = base.duplicated(keep=False)
    assert 0.003 <= base.duplicated().mean() <= 0.007
    assert base.loc[dup, "transaction_id"].duplicated().sum() == base.duplicated().sum()
    deduped = base.drop_duplicates()
    assert deduped["transaction_id"].is_unique


def test_missing_values(base):
    for col in ("customer_age", "distance_from_home_km"):
        assert 0.01 <= base[col].isna().mean() <= 0.06, col
    required = [c for c in COLUMNS if c not in ("customer_age", "distance_from_home_km")]
    assert not base[required].isna().any().any()


def test_shift_changes_the_world(base, shifted):
    assert tuple(shifted.columns) == COLUMNS
    new_merchants = ~shifted["merchant"].isin(set(base["merchant"]))
    assert 0.2 <= new_merchants.mean() <= 0.4
    assert shifted["timestamp"].min() > base["timestamp"].max()
    assert set(base["customer_id"]) & set(shifted["customer_id"])  # same customers
    assert 1.25 <= shifted["amount"].median() / base["amount"].median() <= 1.6
    new_categories = set(shifted["merchant_category"]) - set(base["merchant_category"])
    assert new_categories
    fraud = shifted[shifted["is_fraud"] == 1]
    assert fraud["merchant_category"].isin(new_categories).mean() > 0.3
    assert fraud["card_present"].mean() > base.loc[base["is_fraud"] == 1, "card_present"].mean() + 0.1


def _features(df: pd.DataFrame) -> pd.DataFrame:
    X = df.drop(columns=["transaction_id", "timestamp", "customer_id", "is_fraud"])
    X = X.astype({"card_present": int, "customer_age": float})
    for col in ("merchant", "merchant_category", "country", "channel"):
        X[col] = X[col].astype("category")
    return X


def test_fraud_is_learnable_but_not_trivial(base):
    X_train, X_test, y_train, y_test = train_test_split(
        _features(base), base["is_fraud"], test_size=0.25, stratify=base["is_fraud"], random_state=0)
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=150, random_state=0)
    auc = roc_auc_score(y_test, model.fit(X_train, y_train).predict_proba(X_test)[:, 1])
    assert 0.8 <= auc <= 0.99


@pytest.mark.parametrize("n_rows", [0, 199, 1.5e4, "many"])
def test_bad_n_rows_is_a_config_error(n_rows):
    with pytest.raises(ConfigError, match="n_rows"):
        generate_transactions(n_rows)  # type: ignore[arg-type]


def test_example_config_matches_the_data(base):
    text = resources.files("modelloop.examples").joinpath("fraud.yaml").read_text()
    cfg = yaml.safe_load(text)
    # every section of the config but other families' ones (model: for text and generation, anomaly:),
    # listed with its defaults
    from modelloop.config import Config, parse_config

    assert set(cfg) == set(Config.model_fields) - {"model", "root", "anomaly"}
    parsed = parse_config(cfg, root=".")
    for section in ("optimize", "serve", "monitor", "retrain", "compute", "ui"):
        assert getattr(parsed, section) == type(getattr(parsed, section))(), section
    data = cfg["data"]
    assert {data["target"], data["id"], data["time"]} <= set(base.columns)
    assert cfg["task"] == "classification"
    # Every key is documented: each non-blank, non-comment line carries a comment.
    keyed = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    undocumented = [line for line in keyed if "#" not in line and not line.rstrip().endswith(":")]
    assert not undocumented
    assert np.isclose(cfg["split"]["test_size"], 0.2)
