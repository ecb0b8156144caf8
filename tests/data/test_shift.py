"""compare_distributions: a shifted column drifts, an unshifted one does not, for each method."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelloop.data.shift import compare_distributions, numeric_edges, psi
from modelloop.errors import ConfigError, DataError

KINDS = {"moved": "numeric", "same": "numeric", "cat_moved": "categorical", "cat_same": "categorical",
         "flag": "boolean", "when": "datetime", "note": "text"}


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(0)
    n = 4000

    def table(shift: float, probs: list[float]) -> pl.DataFrame:
        start = dt.datetime(2024, 1, 1)
        return pl.DataFrame({
            "moved": rng.normal(shift, 1, n), "same": rng.lognormal(0, 1, n),
            "cat_moved": rng.choice(["a", "b", "c"], n, p=probs), "cat_same": rng.choice(["x", "y"], n),
            "flag": rng.random(n) < 0.3,
            "when": [start + dt.timedelta(hours=int(h)) for h in rng.integers(0, 5000, n)],
            "note": ["free text"] * n,
        })

    return table(0.0, [0.5, 0.3, 0.2]), table(0.8, [0.2, 0.3, 0.5])


def test_shifted_columns_drift_and_unshifted_do_not(frames) -> None:
    ref, cur = frames
    res = compare_distributions(ref, cur, KINDS)
    # text is compared through its per-text statistics (a constant "free text" here: no drift)
    assert set(res) == set(KINDS) - {"note"} | {"note:chars", "note:words", "note:cjk_share"}
    assert not any(res[f"note:{s}"]["drifted"] for s in ("chars", "words", "cjk_share"))
    assert {c for c, r in res.items() if r["drifted"]} == {"moved", "cat_moved"}
    assert res["moved"]["method"] == "psi+ks" and res["moved"]["ks"] > 0.2 and res["moved"]["p_value"] < 1e-6
    assert res["moved"]["psi"] > 0.2 and res["same"]["psi"] < 0.05
    assert res["cat_moved"]["method"] == "psi+chi2" and res["cat_moved"]["ks"] is None
    assert res["cat_moved"]["p_value"] < 1e-6 and res["cat_same"]["p_value"] > 0.001
    assert res["when"]["method"] == "psi+ks" and not res["when"]["drifted"]
    assert sum(b["reference"] for b in res["moved"]["bins"]) == pytest.approx(1.0)
    assert len(res["moved"]["bins"]) == 10  # deciles of the reference


def test_thresholds_are_parameters(frames) -> None:
    ref, cur = frames
    lax = compare_distributions(ref, cur, {"moved": "numeric"}, psi_threshold=10, effect_threshold=0.9)
    assert not lax["moved"]["drifted"]
    strict = compare_distributions(ref, ref.sample(fraction=0.5, seed=1), {"same": "numeric"}, psi_threshold=1e-9)
    assert strict["same"]["drifted"]


def test_missing_values_get_their_own_bin_and_pandas_works() -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0] * 50, "c": ["u", "v", None, "u"] * 50})
    cur = pd.DataFrame({"a": [1.0, np.nan, np.nan, np.nan] * 50, "c": ["u", None, None, None] * 50})
    res = compare_distributions(ref, cur, {"a": "numeric", "c": "categorical"}, bins=4)
    assert res["a"]["bins"][-1] == {"bin": "(missing)", "reference": 0.0, "current": 0.75}
    assert res["a"]["drifted"] and res["c"]["drifted"]


def test_psi_helpers() -> None:
    assert psi(np.array([10, 20, 30]), np.array([10, 20, 30])) == pytest.approx(0.0)
    assert psi(np.array([50, 50]), np.array([90, 10])) > 0.5
    assert numeric_edges(np.array([1.0, 1.0, 1.0, 2.0]), 4).tolist() == [1.0, 1.25]


def test_errors_name_the_column_and_table(frames) -> None:
    ref, cur = frames
    with pytest.raises(DataError, match=r"column 'moved' is missing from the current table"):
        compare_distributions(ref, cur.drop("moved"), {"moved": "numeric"})
    with pytest.raises(ConfigError, match="bins"):
        compare_distributions(ref, cur, {"moved": "numeric"}, bins=1)


def _messages(n: int, seed: int, *, chinese: float = 0.0, words: tuple[int, int] = (3, 8)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    en, zh = ["card", "refund", "late", "package", "please", "my", "charged", "twice"], list("我的卡快递退款到哪里了")
    out = []
    for _ in range(n):
        k = int(rng.integers(*words))
        if rng.random() < chinese:
            out.append("".join(rng.choice(zh, k * 2)))
        else:
            out.append(" ".join(rng.choice(en, k)))
    return pd.DataFrame({"msg": out})


def test_text_stats_counts_characters_words_and_cjk():
    from modelloop.data.shift import text_stats

    s = text_stats(pl.Series(["ab 我的", "", None, "hello  world"]))
    assert s["chars"].to_list() == [5.0, 0.0, 0.0, 12.0]
    assert s["words"].to_list() == [2.0, 0.0, 0.0, 2.0]
    assert s["cjk_share"].to_list() == [pytest.approx(0.4), 0.0, 0.0, 0.0]


def test_text_columns_drift_by_length_and_language_mix():
    ref = _messages(2000, 0)
    same = compare_distributions(ref, _messages(2000, 1), {"msg": "text"})
    assert set(same) == {"msg:chars", "msg:words", "msg:cjk_share"}
    assert not any(v["drifted"] for v in same.values())
    shifted = compare_distributions(ref, _messages(2000, 2, chinese=0.5), {"msg": "text"})
    assert shifted["msg:cjk_share"]["drifted"] and shifted["msg:words"]["drifted"]
    longer = compare_distributions(ref, _messages(2000, 3, words=(10, 20)), {"msg": "text"})
    assert longer["msg:chars"]["drifted"] and not longer["msg:cjk_share"]["drifted"]


def test_time_parts_are_the_parts_training_derives() -> None:
    """``time_parts`` (Polars, for the profile and monitoring) gives the values ``prepare_features`` (pandas,
    for training) gives, for a naive datetime, an aware one, a date and text in the column's format."""
    from modelloop.data.schema import Schema
    from modelloop.data.shift import time_parts
    from modelloop.families.tabular.model import DATETIME_PARTS, prepare_features

    rng = np.random.default_rng(3)
    stamps = dt.datetime(2023, 1, 1) + pd.to_timedelta(rng.integers(0, 400 * 86400, 300), unit="s")
    stamps = pd.Series(stamps).where(rng.random(300) > 0.05)  # some missing
    frame = pd.DataFrame({"naive": stamps, "aware": stamps.dt.tz_localize("Europe/Paris"),
                          "day": stamps.dt.normalize(),
                          "text": stamps.dt.strftime("%d/%m/%Y %H:%M").where(stamps.notna(), None)})
    schema = Schema(columns=dict.fromkeys(frame.columns, "datetime"), datetime_formats={"text": "%d/%m/%Y %H:%M"})
    polars_frame = pl.from_pandas(frame).with_columns(pl.col("day").cast(pl.Date))
    expected = prepare_features(frame, schema)
    for given in (frame, polars_frame):
        ref, cur, described = time_parts(given, given.head(7), schema)
        assert isinstance(ref, pl.DataFrame) and ref.columns == cur.columns
        assert [c.split(":")[1] for c in ref.columns if c.startswith("naive:")] == [
            p for p in DATETIME_PARTS if p not in ("year", "epoch")]  # training's parts, in its order
        for column in ref.columns:
            name, part = column.split(":")
            np.testing.assert_array_equal(ref.get_column(column).to_numpy(), expected[f"{name}__{part}"].to_numpy())
        assert described["naive"]["training_from"] == stamps.min().isoformat()
        in_utc = frame["aware"].dt.tz_convert("UTC").dt.tz_localize(None)  # as training reads it
        assert described["aware"]["training_to"] == in_utc.max().isoformat() != stamps.max().isoformat()


def test_a_time_split_does_not_shift_a_timestamp_by_its_raw_value() -> None:
    """Train rows before test rows: by raw time every row of the test side is later (shifted); by the parts
    a model reads (hour, weekday, day of month), taken once the train side spans their cycle, it is not."""
    from modelloop.data.schema import Schema
    from modelloop.data.shift import time_parts

    rng = np.random.default_rng(4)
    seconds = np.sort(rng.integers(0, 300 * 86400, 5000)).astype("timedelta64[s]")
    when = pl.Series("t", (np.datetime64("2024-01-01T00:00:00", "s") + seconds).astype("datetime64[ms]"))
    train, test = when[:4000].to_frame(), when[4000:].to_frame()
    assert compare_distributions(train, test, {"t": "datetime"})["t"]["drifted"]
    ref, cur, described = time_parts(train, test, Schema(columns={"t": "datetime"}))
    parts = compare_distributions(ref, cur, dict.fromkeys(ref.columns, "numeric"))
    assert sorted(parts) == ["t:day", "t:dayofweek", "t:hour"]  # ~240 train days: no month
    assert not any(v["drifted"] for v in parts.values()), parts
    assert described["t"]["compared"] == ref.columns


def test_the_tests_are_scipys() -> None:
    """The KS and chi-squared tests the shift runs give SciPy's statistic and p-value to the last bit, over
    the Kolmogorov distribution's branches (Pelz-Good, Smirnov, the tails) and Yates' correction."""
    from scipy import stats

    from modelloop.data._stat_tests import chi2_contingency_pvalue, ks_2samp

    rng = np.random.default_rng(0)
    cases = [(rng.normal(size=40_000), rng.normal(shift, size=n)) for shift in (0.0, 0.02, 0.05, 0.3, 0.5, 3.0)
             for n in (300, 12_000, 60_000)]
    cases += [(rng.integers(0, 24, 30_000).astype(float), rng.integers(0, high, 20_000).astype(float))
              for high in (24, 22, 12)]
    cases.append((rng.lognormal(size=5_000), rng.lognormal(size=3_000)))  # small: SciPy's exact p-value
    for a, b in cases:
        test = stats.ks_2samp(a, b)
        assert ks_2samp(a, b) == (float(test.statistic), float(test.pvalue))
    for k in (2, 3, 31):
        for scale in (3, 100, 10_000):
            table = rng.integers(1, scale, size=(2, k))
            assert chi2_contingency_pvalue(table) == float(stats.chi2_contingency(table).pvalue)


def test_a_profile_with_a_split_shift_does_not_load_scipy_stats(tmp_path) -> None:
    """``scipy.stats`` costs ~0.6 s and ~45 MiB to import, more than the split shift's tests on a million rows."""
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    n = 30_000  # more than 10,000 rows a side: asymptotic p-values, as on large tables
    pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(list("abc"), n),
                  "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 4e7, n), unit="s"),
                  "y": rng.integers(0, 2, n)}).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "modelloop.yaml").write_text("name: s\ndata:\n  source: d.parquet\n  target: y\n")
    code = ("import sys; from modelloop import Project; p = Project.load('modelloop.yaml'); p.ingest(); "
            "r = p.profile(); print(sorted(r['shift'])); print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    shifted, loaded = out.stdout.strip().splitlines()
    assert shifted == str(["c", "t:day", "t:dayofweek", "t:hour", "t:month", "x"]) and loaded == "False"


def test_tied_categories_make_the_top_by_value_whether_text_or_categorical() -> None:
    """Past ``MAX_CATEGORIES`` the rest is "(other)": among equally frequent values the first by value are
    kept (the hash order of a count decided it before), and categories count as the same text does."""
    from modelloop.data.shift import MAX_CATEGORIES

    values = [f"c{i:02d}" for i in range(40) for _ in range(10)] + ["z"] * 11
    ref = pl.DataFrame({"c": values[::-1]})  # seen last first: neither order of appearance nor hash decides
    cur = pl.DataFrame({"c": ["c39", "z", None]})
    out = compare_distributions(ref, cur, {"c": "categorical"})["c"]
    kept = sorted(["z", *(f"c{i:02d}" for i in range(MAX_CATEGORIES - 1))])
    assert [b["bin"] for b in out["bins"]] == [*kept, "(other)", "(missing)"]
    as_categories = [f.with_columns(pl.col("c").cast(pl.Categorical)) for f in (ref, cur)]
    assert compare_distributions(*as_categories, {"c": "categorical"})["c"] == out
