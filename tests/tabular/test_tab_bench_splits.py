"""benchmarks/tabular_quality.py --splits: several seeded splits per set, the same for every tool,
figures and goals on the means (issue 27: one 296-row test part cannot tell a 0.02 gap from the split)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tabular_quality.py"


@pytest.fixture()
def bench(monkeypatch):
    """The script as a module, with every tool replaced by a stand-in that records the test rows it
    was given and scores them by a figure of those rows (so a split's identity shows in its scores)."""
    spec = importlib.util.spec_from_file_location("tabular_quality_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seen: dict[str, list[tuple[int, ...]]] = {}

    def tool(label: str, offset: float):
        def run(train, test, *args, **kwargs):
            assert not set(train.index) & set(test.index)
            seen.setdefault(label, []).append(tuple(sorted(test.index)))
            f1 = float(np.mean(np.asarray(test.index) % 7) / 10) + offset
            return {"f1_macro": round(f1, 4), "accuracy": 0.5, "roc_auc": 0.9, "seconds": 1.0}
        return run

    monkeypatch.setattr(mod, "_lightgbm", tool("lightgbm_defaults", 0.0))
    monkeypatch.setattr(mod, "_modelloop", tool("modelloop", -0.01))
    monkeypatch.setattr(mod, "_flaml", tool("flaml", 0.02))
    monkeypatch.setattr(mod, "_autogluon", lambda *a, **k: None)  # "not installed"
    return mod, seen


def _main(mod, capsys, monkeypatch, *argv: str) -> tuple[dict, str]:
    monkeypatch.setattr(sys, "argv", ["tabular_quality.py", "--datasets", "wine", "--json", *argv])
    mod.main()
    out = capsys.readouterr().out
    return json.loads(out[out.index("\n{") + 1:]), out


def test_one_split_keeps_the_single_split_contract(bench, capsys, monkeypatch):
    mod, seen = bench
    results, out = _main(mod, capsys, monkeypatch)
    row = results["wine"]
    assert "splits" not in row["modelloop"] and "f1_macro_std" not in row["modelloop"]
    assert row["autogluon medium_quality"] is None
    assert "split 1 of" not in out and "per split" not in out
    # split 0 is the historic one: train_test_split(random_state=0, stratified)
    df = mod.load_wine(as_frame=True).frame
    _, test = mod.train_test_split(df, test_size=0.25, random_state=0, stratify=df["target"])
    assert seen["modelloop"] == [tuple(sorted(test.index))]


def test_several_splits_are_shared_stratified_and_averaged(bench, capsys, monkeypatch):
    mod, seen = bench
    results, out = _main(mod, capsys, monkeypatch, "--splits", "3")
    # every tool saw the same three test parts, and they differ from each other
    assert seen["modelloop"] == seen["lightgbm_defaults"] == seen["flaml"]
    assert len(set(seen["modelloop"])) == 3
    df = mod.load_wine(as_frame=True).frame
    for idx in seen["modelloop"]:  # stratified: each class's share within one row of the set's
        shares = df.loc[list(idx), "target"].value_counts()
        expected = df["target"].value_counts() * len(idx) / len(df)
        assert (shares - expected).abs().max() <= 1
    ours = results["wine"]["modelloop"]
    per_split = [s["f1_macro"] for s in ours["splits"]]
    assert len(per_split) == 3
    assert ours["f1_macro"] == pytest.approx(np.mean(per_split), abs=1e-4)
    assert ours["f1_macro_std"] == pytest.approx(np.std(per_split, ddof=1), abs=1e-4)
    assert results["wine"]["autogluon medium_quality"] is None
    # the goal line reads the means; the paired gap is against flaml (best mean), -0.03 on every split
    assert "largest shortfall on one set -0.0300 on wine" in out
    assert "modelloop - flaml (best mean peer) per split -0.0300" in out
    assert "lower on 3 of 3" in out


def test_splits_below_one_is_a_usage_error(bench, monkeypatch):
    mod, _ = bench
    monkeypatch.setattr(sys, "argv", ["tabular_quality.py", "--datasets", "wine", "--splits", "0"])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 2


def test_aggregate_marks_a_tool_missing_on_any_split():
    spec = importlib.util.spec_from_file_location("tabular_quality_agg", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [{"a": {"f1_macro": 0.5, "best": "x"}, "b": None}, {"a": {"f1_macro": 0.7, "best": "y"}, "b": {"f1_macro": 1.0}}]
    agg = mod._aggregate(rows)
    assert agg["b"] is None
    assert agg["a"]["f1_macro"] == pytest.approx(0.6) and "best" not in agg["a"]
    assert [s["best"] for s in agg["a"]["splits"]] == ["x", "y"]


@pytest.mark.parametrize("splits", ["1", "3"])
def test_a_figure_a_tool_lacks_prints_n_a_not_nan(bench, capsys, monkeypatch, splits):
    """pr_auc exists only on binary sets: a multiclass set's table says n/a there (it printed nan +-nan)."""
    mod, _ = bench
    _, out = _main(mod, capsys, monkeypatch, "--splits", splits)
    table = out[: out.index("\n{")]
    assert "nan" not in table
    rows = [line for line in table.splitlines() if line.startswith(("modelloop", "flaml", "lightgbm_defaults"))]
    assert rows and all(line.split()[4] == "n/a" for line in rows if "+-" not in line)
    assert all("n/a" in line for line in rows)


def test_autogluon_python_may_be_given_relative_to_the_working_directory(tmp_path, monkeypatch):
    """AutoGluon runs in a temporary folder (its CatBoost writes there): a relative --autogluon-python, as the
    documented command gives it (.venv-ag/bin/python), must still name the file from where the script started."""
    import pandas as pd

    spec = importlib.util.spec_from_file_location("tabular_quality_ag", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fake = tmp_path / "env" / "python"
    fake.parent.mkdir()
    # a stand-in interpreter: called as `python -c SCRIPT train test budget out presets`, it writes the answer
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump({{'pred': [0, 1], 'classes': ['0', '1'], "
                    "'proba': [[0.9, 0.1], [0.2, 0.8]], 'seconds': 1.0, 'best': 'stub'}, open(sys.argv[6], 'w'))\n")
    fake.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    rows = pd.DataFrame({"x": [0.0, 1.0], "target": [0, 1]})
    out = mod._autogluon(rows, rows, 1.0, Path("env/python"))
    assert out is not None and out["f1_macro"] == 1.0 and out["best"] == "stub"


def test_pool_reads_the_goals_over_an_earlier_runs_splits_and_this_ones(bench, capsys, monkeypatch, tmp_path):
    """--pool: a second run of new seeds adds to the first's per-split figures; the means, spreads, paired
    gaps and goals read all of them, as one run of every seed would."""
    mod, seen = bench
    first, out = _main(mod, capsys, monkeypatch, "--splits", "2")
    assert first["wine"]["modelloop"]["seeds"] == [0, 1]
    (tmp_path / "first.log").write_text(out)          # the whole output, tables then JSON
    seen.clear()
    pooled, out = _main(mod, capsys, monkeypatch, "--splits", "2", "--first-split", "2",
                        "--pool", str(tmp_path / "first.log"))
    assert len(seen["modelloop"]) == 2                  # only the new seeds were run
    whole, _ = _main(mod, capsys, monkeypatch, "--splits", "4")
    for tool in ("modelloop", "lightgbm_defaults", "flaml"):
        assert pooled["wine"][tool]["seeds"] == [0, 1, 2, 3]
        assert pooled["wine"][tool]["splits"] == whole["wine"][tool]["splits"]
        assert pooled["wine"][tool]["f1_macro"] == whole["wine"][tool]["f1_macro"]
        assert pooled["wine"][tool]["f1_macro_std"] == whole["wine"][tool]["f1_macro_std"]
    assert "mean +- std over 4 splits (seeds 0, 1, 2, 3, with --pool)" in out
    assert "per split -0.0300 +- 0.0000 (standard error over 4), lower on 4 of 4" in out


def test_pool_refuses_a_seed_counted_twice_and_a_run_without_seeds(bench, capsys, monkeypatch, tmp_path):
    mod, _ = bench
    first, _ = _main(mod, capsys, monkeypatch, "--splits", "2")
    (tmp_path / "first.json").write_text(json.dumps(first))
    with pytest.raises(SystemExit, match=r"split seed\(s\) \[1\] already in this run"):
        _main(mod, capsys, monkeypatch, "--splits", "2", "--first-split", "1", "--pool", str(tmp_path / "first.json"))
    for split in first["wine"]["modelloop"]["splits"]:
        split["holdout"] = "test"  # a run with --modelloop-holdout test: another protocol
    (tmp_path / "other.json").write_text(json.dumps(first))
    with pytest.raises(SystemExit, match="ran modelloop with --modelloop-holdout test, this run with share"):
        _main(mod, capsys, monkeypatch, "--splits", "2", "--first-split", "2", "--pool", str(tmp_path / "other.json"))
    for row in first["wine"].values():
        if row:
            del row["seeds"]
    (tmp_path / "old.json").write_text(json.dumps(first))
    with pytest.raises(SystemExit, match="set wine records no split seeds"):
        _main(mod, capsys, monkeypatch, "--splits", "2", "--first-split", "2", "--pool", str(tmp_path / "old.json"))
    (tmp_path / "text.log").write_text("no json here\n")
    with pytest.raises(SystemExit, match="no JSON in it"):
        _main(mod, capsys, monkeypatch, "--splits", "2", "--pool", str(tmp_path / "text.log"))


def test_modelloop_holdout_test_fits_on_exactly_the_peers_rows(tmp_path):
    """--modelloop-holdout test: modelloop's frozen test split is the shared test rows (split.strategy
    column), so it fits on every training row the peers fit on, where the default keeps 5% of them."""
    spec = importlib.util.spec_from_file_location("tabular_quality_real", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    df = mod.load_wine(as_frame=True).frame
    train, test = mod._split(df, 0)
    own = mod._modelloop(train, test, 3, ["linear"], holdout="test")
    assert own["fit_rows"] == len(train) and own["holdout"] == "test"
    share = mod._modelloop(train, test, 3, ["linear"])
    assert share["fit_rows"] == len(train) - int(np.ceil(0.05 * len(train))) and share["holdout"] == "share"
    assert 0.8 < own["f1_macro"] <= 1.0  # scored on the shared test rows, as before
