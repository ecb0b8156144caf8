"""The command-line contract end to end: a real project folder, real stores, exit codes, JSON."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clirun import cli

CONFIG = """\
name: tiny
data:
  source: data.csv
  target: y
  id: rid
train:
  budget: 60
  trials: {trials}
  cv_folds: 3
  families: [lightgbm, linear]
"""


def _table(n=600, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], n)
    logit = 2 * x1 - x2 + (cat == "a") * 1.5 - 2.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame({"rid": [f"r{i}" for i in range(n)], "x1": x1, "x2": x2, "cat": cat, "y": y})
    df.loc[rng.choice(n, 20, replace=False), "x2"] = np.nan
    return df


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    _table().to_csv(root / "data.csv", index=False)
    (root / "modelloop.yaml").write_text(CONFIG.format(trials=6))
    return root


@pytest.fixture(scope="module")
def trained(project):
    from modelloop import Project

    return Project.load(project / "modelloop.yaml").run()


def test_run_registers_a_production_model_with_a_report(trained, project):
    assert trained["model"] == {"name": "tiny", "version": 1} and trained["production"]
    assert trained["trials"] >= 6 and Path(trained["report"]).exists()
    html = Path(trained["report"]).read_text()
    assert "<svg" in html and "https://" not in html.split("<svg")[0]


def test_status_json(trained, project, capsys):
    code, out, _ = cli(["status", "--json"], capsys, project)
    st = json.loads(out)
    assert code == 0 and st["production"] == {"name": "tiny", "version": 1}
    assert st["datasets"][0]["rows"] == 600 and st["models"][0]["dataset"] == st["datasets"][0]["id"]


def test_registered_model_reproduces_the_reported_test_metrics(trained, project):
    from modelloop import Project
    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.evaluation.metrics import score
    from modelloop.registry import load_model, resolve_model

    p = Project.load(project / "modelloop.yaml")
    row = resolve_model(p.workspace, "tiny@production")
    model = load_model(p.workspace, row)
    drow, df, _ = load_dataset(p.workspace, row["dataset_id"])
    test = df[ensure_split(p.workspace, drow, df) == "test"]
    y = test["y"].map({c: i for i, c in enumerate(model.classes_)}).to_numpy()
    proba = model.predict_proba(test.drop(columns=["y"]))
    assert score("f1_macro", y, proba, threshold=model.threshold_) == pytest.approx(row["metrics"]["f1_macro"])
    assert score("roc_auc", y, proba) == pytest.approx(row["metrics"]["roc_auc"])
    assert (model.predict(test.drop(columns=["y"])) == np.where(proba[:, 1] >= model.threshold_, 1, 0)).all()


def test_the_test_figure_comes_with_its_bootstrap_interval(trained, project, capsys):
    """120 test rows move f1_macro by several points: the summary gives the 95 % interval of train.metric,
    which holds the figure, is as wide as resampling these rows makes it, and narrows on more rows."""
    from modelloop import Project
    from modelloop.evaluation.evaluate import figure_interval
    from modelloop.registry import load_model, resolve_model
    from modelloop.ui import render_train

    interval, f1 = trained["test_interval"], trained["test_metrics"]["f1_macro"]
    assert interval["metric"] == "f1_macro" and interval["rows"] == trained["rows"]["test"] == 120
    assert interval["low"] < f1 < interval["high"] and 0.05 < interval["high"] - interval["low"] < 0.4
    p = Project.load(project / "modelloop.yaml")
    row = resolve_model(p.workspace, "tiny@production")
    assert row["info"]["test_interval"] == interval
    assert f"{interval['low']:.4f} to {interval['high']:.4f}" in Path(trained["report"]).read_text()
    model = load_model(p.workspace, row)
    more = figure_interval(model, _table(n=2400, seed=7), target="y", task="binary", metric="f1_macro")
    assert more is not None and more["high"] - more["low"] < (interval["high"] - interval["low"]) / 2.5
    assert figure_interval(model, _table(n=50, seed=7), target="y", task="binary", metric="log_loss")["low"] > 0
    one_class = _table(n=50, seed=7).assign(y=0)  # roc_auc is undefined on every resample: no interval
    assert figure_interval(model, one_class, target="y", task="binary", metric="roc_auc") is None
    render_train(trained)
    assert "f1_macro 95 % interval" in capsys.readouterr().out
    code, out, _ = cli(["evaluate", "--json"], capsys, project)  # the frozen test rows again: the same interval
    assert code == 0 and json.loads(out)["interval"] == interval


def test_evaluate_on_a_new_labeled_file(trained, project, capsys):
    _table(n=200, seed=5).to_csv(project / "new.csv", index=False)
    code, out, _ = cli(["evaluate", "--data", "new.csv", "--json"], capsys, project)
    res = json.loads(out)
    assert code == 0 and res["rows"] == 200 and res["model"] == {"name": "tiny", "version": 1}
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "pr_auc", "log_loss"):
        assert isinstance(res["metrics"][key], float)
    assert res["metrics"]["roc_auc"] > 0.75


def test_second_model_waits_for_promote(trained, project, capsys):
    code, out, _ = cli(["train", "--trials", "7", "--json"], capsys, project)
    res = json.loads(out)
    assert code == 0 and res["model"]["version"] == 2 and res["production"] is False
    assert res["resumed_trials"] >= 6  # same data and settings: the stored search continues
    code, out, _ = cli(["promote", "2", "--json"], capsys, project)
    assert code == 0 and json.loads(out)["previous_version"] == 1
    code, out, _ = cli(["status", "--json"], capsys, project)
    assert json.loads(out)["production"]["version"] == 2
    code, _, err = cli(["promote", "tiny:9"], capsys, project)
    assert code == 2 and "tiny:9 does not exist" in err


def test_a_feedback_file_with_nothing_usable_exits_2_after_its_counts(trained, project, capsys):
    pd.DataFrame({"request_id": ["nope", "gone"], "label": [1, 0]}).to_csv(project / "fb.csv", index=False)
    code, out, err = cli(["feedback", "fb.csv", "--json"], capsys, project)
    assert code == 2 and json.loads(out)["unknown_request"] == 2          # the counts, then the reason
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "none of the 2 feedback rows was accepted: 2 unknown request ids" in lines[0]


def _bad_project(tmp_path: Path, df: pd.DataFrame | None, config: str = CONFIG.format(trials=2), raw: bytes | None = None):
    if raw is not None:
        (tmp_path / "data.csv").write_bytes(raw)
    elif df is not None:
        df.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "modelloop.yaml").write_text(config)
    return tmp_path


def _text_in_numeric():
    df = _table(100)
    df["x1"] = df["x1"].astype(str)
    df.loc[41, "x1"] = "twelve"
    return df


@pytest.mark.parametrize("case, expected", [
    ("missing file", "data.source: file not found"),
    ("empty file", "file is empty"),
    ("unknown target", "data.target: column 'y' is not in"),
    ("single class", "target column 'y' has a single class"),
    ("text in numeric", "column 'x1' is numeric but 1 row(s) hold text, e.g. row 42 (file line 43): 'twelve'"),
    ("config typo", "trian: unknown key (did you mean 'train'?)"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case, expected):
    if case == "missing file":
        _bad_project(tmp_path, None)
    elif case == "empty file":
        _bad_project(tmp_path, None, raw=b"")
    elif case == "unknown target":
        _bad_project(tmp_path, _table(50).drop(columns=["y"]))
    elif case == "single class":
        _bad_project(tmp_path, _table(50).assign(y=1))
    elif case == "text in numeric":
        _bad_project(tmp_path, _text_in_numeric())
    else:
        _bad_project(tmp_path, _table(50), config=CONFIG.format(trials=2) + "trian: {}\n")
    code, out, err = cli(["run"], capsys, tmp_path)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and out == ""
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / ".modelloop" / "datasets").exists() or not any(
        p.suffix == ".parquet" for p in (tmp_path / ".modelloop" / "datasets").rglob("*"))


@pytest.mark.slow  # covered fast: test_tune's test_resume_after_sigkill_reuses_finished_trials (a real
# SIGKILL mid-search, then the finished trials reused) and test_second_model_waits_for_promote (the CLI
# continues the stored search and says resumed_trials)
def test_killed_search_resumes_when_the_command_runs_again(tmp_path):
    _table(400).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "modelloop.yaml").write_text(CONFIG.format(trials=40).replace("budget: 60", "budget: 600"))
    exe = [sys.executable, "-m", "modelloop.cli"]
    proc = subprocess.Popen([*exe, "train"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ingest = subprocess.run([*exe, "ingest"], cwd=tmp_path, capture_output=True)  # noqa: F841
        import optuna
        deadline = time.time() + 90
        done = 0
        while time.time() < deadline and done < 5:
            time.sleep(1)
            try:
                storage = f"sqlite:///{tmp_path / '.modelloop' / 'optuna.db'}"
                studies = optuna.get_all_study_summaries(storage)
                done = sum(1 for s in studies for t in optuna.load_study(study_name=s.study_name,
                           storage=storage).trials if t.state.is_finished())
            except Exception:
                continue
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert done >= 5, "the search never got going"
    res = subprocess.run([*exe, "train", "--trials", str(done + 2), "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["resumed_trials"] >= done and out["trials"] <= done + 3


def test_optimize_table_names_every_variant_and_why_one_was_not_kept(trained, project, capsys):
    code, out, _ = cli(["optimize", "--variant", "onnx", "--variant", "onnx_int8_dynamic"], capsys, project)
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("native ") for line in lines) and any(line.startswith("onnx ") for line in lines)
    assert "onnx_int8_dynamic: applies to neural networks" in out  # the reason, below the table, never cut
    rows = [line for line in lines if line.split(" ")[0] in ("variant", "native", "onnx", "onnx_int8_dynamic")]
    assert len(rows) == 4 and all(len(line) <= 80 for line in rows)  # fits a plain 80-column terminal


def test_optimize_promote_serves_the_variant_in_place_of_production_only(trained, project, capsys):
    code, out, _ = cli(["status", "--json"], capsys, project)
    prod = json.loads(out)["production"]["version"]
    code, out, _ = cli(["optimize", "--variant", "onnx", "--promote", "--json"], capsys, project)
    assert code == 0
    r = json.loads(out)
    assert r["chosen"] == "onnx" and r["parent"]["version"] == prod  # ONNX at batch 1 beats the native model
    assert r["promoted"] is True and r["promotion"] == f"production v{prod} -> v{r['model']['version']}"
    code, out, _ = cli(["status", "--json"], capsys, project)
    assert json.loads(out)["production"]["version"] == r["model"]["version"]
    # the old version is no longer production: optimizing it registers a variant but deploys nothing
    code, out, _ = cli(["optimize", "--model", str(prod), "--variant", "onnx", "--promote"], capsys, project)
    assert code == 0 and f"not promoted: v{prod} is not the production version" in out
    code, out, _ = cli(["status", "--json"], capsys, project)
    status = json.loads(out)
    assert status["production"]["version"] == r["model"]["version"]
    served = next(m for m in status["models"] if m["version"] == r["model"]["version"])
    assert served["variant"] == "onnx" and served["parent_version"] == prod
    code, out, _ = cli(["status"], capsys, project)  # the table says what made each version, in 80 columns
    line = next(x for x in out.splitlines() if x.startswith(f"{r['model']['version']} "))
    assert f"onnx of {prod}" in line and "production" in line and len(line) <= 80


def test_an_error_listing_many_values_shows_ten_and_counts_the_rest(tmp_path, capsys):
    rng = np.random.default_rng(3)
    labels = np.array([f"c{i:02d}" for i in range(15)])
    df = pd.DataFrame({"x": rng.normal(size=300), "y": labels[np.arange(300) % 15]})
    df.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "modelloop.yaml").write_text("name: many\ndata:\n  source: data.csv\n  target: y\ntrain:\n  trials: 1\n"
                                             "  cv_folds: 2\n  families: [linear]\n  ensemble: false\n")
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 0, err
    df.assign(y=[f"new{i}" for i in range(300)]).to_csv(tmp_path / "new.csv", index=False)
    code, _, err = cli(["evaluate", "--data", "new.csv"], capsys, tmp_path)
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and "known labels: c00, c01, c02, c03, c04, c05, c06, c07, c08, c09 and 5 more" in line


def test_init_writes_a_non_english_column_and_path_as_the_user_typed_them(tmp_path, capsys):
    """A Chinese team's table: the config names 情感 and 评论.csv readably (it held \\u60c5\\u611f), is
    UTF-8 whatever the locale, and ingests; a name YAML cannot hold as it is (a line separator) is
    escaped and still reads back."""
    import yaml

    frame = _table(80).rename(columns={"y": "情感"})
    frame.to_csv(tmp_path / "评论.csv", index=False)
    code, _, err = cli(["init", "proj", "--source", "评论.csv", "--target", "情感"], capsys, tmp_path)
    assert code == 0, err
    text = (tmp_path / "proj" / "modelloop.yaml").read_bytes().decode("utf-8")
    assert 'target: "情感"' in text and '"../评论.csv"' in text and "\\u" not in text
    code, out, _ = cli(["ingest", "--json"], capsys, tmp_path / "proj")
    assert code == 0 and json.loads(out)["rows"] == 80
    assert '"target": "情感"' in out  # --json as written, not "\\u60c5\\u611f"
    code, out, _ = cli(["profile", "--json"], capsys, tmp_path / "proj")
    report = Path(json.loads(out)["report"]["json"]).read_text(encoding="utf-8")
    assert code == 0 and "情感" in report and "\\u" not in report

    odd = "a\u2028b"
    _table(80).rename(columns={"y": odd}).to_csv(tmp_path / "odd.csv", index=False)
    code, _, err = cli(["init", "odd", "--source", "odd.csv", "--target", odd], capsys, tmp_path)
    assert code == 0, err
    text = (tmp_path / "odd" / "modelloop.yaml").read_text(encoding="utf-8")
    assert "\u2028" not in text and yaml.safe_load(text)["data"]["target"] == odd


def test_a_table_with_utc_offset_times_profiles(tmp_path, capsys):
    """Times written with their offset (every API export) made ``modelloop profile`` exit 2 blaming
    ``quality.rules`` the user never wrote; a time that is year 0 once in UTC made it a traceback (with
    ``data.on_type_error: coerce``, which kept it). Now the column profiles as the dates it holds, and that
    value is one the ingest names (exit 2, its file line) or, coerced, a missing date."""
    frame = _table(80)
    frame["signup"] = [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00+0{i % 3}:00" for i in range(80)]
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, _, err = cli(["init", "proj", "--source", "t.csv", "--target", "y"], capsys, tmp_path)
    assert code == 0, err
    code, out, err = cli(["ingest", "--json"], capsys, tmp_path / "proj")
    assert code == 0 and json.loads(out)["schema"]["columns"]["signup"] == "datetime", err
    code, out, err = cli(["profile", "--json"], capsys, tmp_path / "proj")
    assert code == 0, err
    assert not [f for f in json.loads(out)["findings"] if f["kind"] == "type_mismatch"]

    frame.loc[5, "signup"] = "0001-01-01T02:00:01+02:01"
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 2 and "'signup'" in err and "0001-01-01T02:00:01+02:01" in err and "(file line 7)" in err
    config = tmp_path / "proj" / "modelloop.yaml"
    config.write_text(config.read_text().replace("data:\n", "data:\n  on_type_error: coerce\n", 1))
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 0, err
    code, out, err = cli(["profile", "--json"], capsys, tmp_path / "proj")
    assert code == 0, err


def test_a_semicolon_csv_from_excel_in_europe_inits_and_ingests_with_its_numbers(tmp_path, capsys):
    """Windows-1252, semicolons, decimal commas: ``init --source`` found one column 'betrag;größe;kunde' and
    refused --target kunde; the header (as Chinese), the fields and the numbers are read as written now, and
    the read says how. ``data.delimiter`` set wrong, or to a word, is named."""
    frame = _table(80)
    de = pd.DataFrame({"betrag": frame["x1"].round(2), "größe": frame["cat"], "kunde": frame["y"]})
    (tmp_path / "kunden.csv").write_bytes(de.to_csv(index=False, sep=";", decimal=",").encode("cp1252"))
    code, _, err = cli(["init", "proj", "--source", "kunden.csv", "--target", "kunde"], capsys, tmp_path)
    assert code == 0, err
    code, out, err = cli(["ingest", "--json"], capsys, tmp_path / "proj")
    assert code == 0, err
    got = json.loads(out)
    assert got["schema"]["columns"] == {"betrag": "numeric", "größe": "categorical", "kunde": "numeric"}
    assert (got["source"]["delimiter"], got["source"]["decimal"], got["source"]["encoding"]) == (";", ",", "cp1252")
    code, out, _ = cli(["ingest"], capsys, tmp_path / "proj")  # the summary says how the file was read
    assert code == 0 and "read        semicolon-separated, decimal comma; encoding cp1252" in out
    config = tmp_path / "proj" / "modelloop.yaml"
    config.write_text(config.read_text().replace("data:\n", "data:\n  delimiter: semicolon\n", 1))
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 2 and "data.delimiter: must be 'auto', ',', ';'" in err and '"semicolon"' in err


def test_an_excel_workbook_inits_and_ingests_with_its_cell_types_and_the_sheet_chosen(tmp_path, capsys):
    """An Excel workbook as data.source: init reads its first sheet's header, ingest its cells (numbers,
    dates and text as typed); data.sheet picks another sheet, a sheet it lacks is named with those it has,
    and an Excel 97-2003 file is told to be saved as .xlsx."""
    frame = _table(80).assign(signup=pd.date_range("2024-01-01", periods=80, freq="D"))
    with pd.ExcelWriter(tmp_path / "kunden.xlsx") as book:
        frame.to_excel(book, sheet_name="Daten", index=False)
        frame.head(30).to_excel(book, sheet_name="Neu", index=False)
    code, _, err = cli(["init", "proj", "--source", "kunden.xlsx", "--target", "y"], capsys, tmp_path)
    assert code == 0, err
    code, out, err = cli(["ingest", "--json"], capsys, tmp_path / "proj")
    assert code == 0, err
    got = json.loads(out)
    assert got["rows"] == 80 and got["source"]["sheet"] == "Daten"
    assert {k: got["schema"]["columns"][k] for k in ("x1", "cat", "signup")} == {
        "x1": "numeric", "cat": "categorical", "signup": "datetime"}
    config = tmp_path / "proj" / "modelloop.yaml"
    text = config.read_text()
    config.write_text(text.replace("data:\n", "data:\n  sheet: Neu\n", 1))
    code, out, err = cli(["ingest", "--json"], capsys, tmp_path / "proj")
    assert code == 0 and json.loads(out)["rows"] == 30, err
    config.write_text(text.replace("data:\n", "data:\n  sheet: Tabelle1\n", 1))
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 2 and "data.sheet: kunden.xlsx has no sheet 'Tabelle1'; its sheets: 'Daten', 'Neu'" in err
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    config.write_text(text.replace('"../kunden.xlsx"', '"../old.xls"'))
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 2 and "save it as .xlsx or CSV" in err


def test_init_of_an_empty_file_says_it_has_no_header(tmp_path, capsys):
    (tmp_path / "empty.csv").write_bytes(b"")
    code, _, err = cli(["init", "proj", "--source", "empty.csv", "--target", "y"], capsys, tmp_path)
    assert code == 2 and "--source: empty.csv has no header row (an empty file?)" in err
    assert not (tmp_path / "proj").exists()


def test_init_reads_a_sources_header_once(tmp_path, capsys, monkeypatch):
    """init asked a source's columns up to three times (the target, a holdout column, the task's columns): a
    workbook parsed three times. Once per version of the file now."""
    from modelloop.data import sources

    calls: list[str] = []
    real = sources.read_excel
    monkeypatch.setattr(sources, "read_excel", lambda path, *a, **k: calls.append(str(path)) or real(path, *a, **k))
    _table(40).to_excel(tmp_path / "t.xlsx", index=False)
    code, _, err = cli(["init", "proj", "--source", "t.xlsx", "--target", "y"], capsys, tmp_path)
    assert code == 0 and len(calls) == 1, (err, calls)


def test_init_reads_the_header_of_a_gbk_csv_as_ingest_does(tmp_path, capsys):
    """Excel in China saves a CSV as GBK: init read its header as UTF-8 and refused the real column,
    "--target: '情感' is not a column of gbk.csv; its columns: ����, ���"."""
    frame = _table(80).rename(columns={"y": "情感", "cat": "类别"})
    (tmp_path / "gbk.csv").write_bytes(frame.to_csv(index=False).encode("gbk"))
    code, _, err = cli(["init", "proj", "--source", "gbk.csv", "--target", "情感"], capsys, tmp_path)
    assert code == 0, err
    code, _, err = cli(["init", "other", "--source", "gbk.csv", "--target", "情"], capsys, tmp_path)
    assert code == 2 and "its columns: rid, x1, x2, 类别, 情感" in err
    code, out, _ = cli(["ingest", "--json"], capsys, tmp_path / "proj")
    assert code == 0 and json.loads(out)["rows"] == 80


def test_init_in_a_chinese_folder_writes_a_name_the_config_takes(tmp_path, capsys):
    """'modelloop init 情感项目 --source ...' wrote name: 情感项目, and every later command exited 2 on it
    ('name: string should match pattern ...')."""
    import yaml

    _table(80).to_csv(tmp_path / "mine.csv", index=False)
    code, _, err = cli(["init", "情感项目", "--source", "mine.csv", "--target", "y"], capsys, tmp_path)
    assert code == 0, err
    text = (tmp_path / "情感项目" / "modelloop.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["name"] == "model" and '"情感项目", is not a model name' in text
    code, out, err = cli(["ingest", "--json"], capsys, tmp_path / "情感项目")
    assert code == 0 and json.loads(out)["rows"] == 80, err


def test_init_with_a_users_own_table_writes_a_project_that_ingests_it(tmp_path, capsys):
    """`modelloop init proj --source FILE --target COL`: the user's table and target go into the config
    (the path relative to the project folder), checked first: a wrong column or file exits 2 naming what
    is there, and writes nothing."""
    _table(80).to_csv(tmp_path / "mine.csv", index=False)
    code, _, err = cli(["init", "proj", "--source", "mine.csv", "--target", "why"], capsys, tmp_path)
    assert code == 2 and "--target: 'why' is not a column of mine.csv; its columns: rid, x1, x2, cat, y" in err
    code, _, err = cli(["init", "proj", "--source", "mine.csv"], capsys, tmp_path)
    assert code == 2 and "--source needs --target; the columns of mine.csv: rid, x1, x2, cat, y" in err
    code, _, err = cli(["init", "proj", "--source", "other.csv", "--target", "y"], capsys, tmp_path)
    assert code == 2 and "--source: file not found" in err and "other.csv" in err
    assert not (tmp_path / "proj").exists()

    code, out, _ = cli(["init", "proj", "--source", "mine.csv", "--target", "y"], capsys, tmp_path)
    assert code == 0 and "Next: cd proj && modelloop run" in out
    code, out, _ = cli(["ingest", "--json"], capsys, tmp_path / "proj")
    assert code == 0 and json.loads(out)["rows"] == 80

    import sqlite3  # a database URL: its query goes into data.query, and it needs one

    with sqlite3.connect(tmp_path / "shop.db") as db:
        _table(80).to_sql("orders", db, index=False)
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    code, _, err = cli(["init", "db", "--source", url, "--target", "y"], capsys, tmp_path)
    assert code == 2 and "is a database URL: give --query" in err and "shop.db" not in err  # a URL may hold a password
    code, _, _ = cli(["init", "db", "--source", url, "--target", "y", "--query", "SELECT * FROM orders"], capsys,
                     tmp_path)
    code, out, _ = cli(["ingest", "--json"], capsys, tmp_path / "db")
    assert code == 0 and json.loads(out)["rows"] == 80

    code, _, err = cli(["init", "q", "--query", "SELECT 1"], capsys, tmp_path)
    assert code == 2 and "--query needs --source" in err

    # a tab-separated file (read as such by ingest too) whose header has spaces (ingest strips them)
    _table(80).to_csv(tmp_path / "tabs.tsv", sep="\t", index=False, header=[" rid", "x1 ", "x2", "cat", " y"])
    code, _, err = cli(["init", "tsv", "--source", "tabs.tsv", "--target", "y"], capsys, tmp_path)
    assert code == 0, err
    code, out, _ = cli(["ingest", "--json"], capsys, tmp_path / "tsv")
    assert code == 0 and json.loads(out)["rows"] == 80 and "y" in json.loads(out)["schema"]["columns"]
    code, out, _ = cli(["ingest"], capsys, tmp_path / "tsv")  # the summary says how each column was read
    assert code == 0 and "columns     2 numeric, 1 categorical, 1 identifier (rid: never a feature" in out

    (tmp_path / "blank").mkdir()
    code, out, _ = cli(["init"], capsys, tmp_path / "blank")
    assert code == 0 and "set data.source and data.target in modelloop.yaml" in out and "cd " not in out


def test_init_task_writes_it_and_a_task_without_labels_needs_no_target(tmp_path, capsys):
    """`modelloop init proj --source sensors.csv --task anomaly_detection`: rows without a column to predict
    (an anomaly detector, a recommender) had no way in: `--source needs --target`. The task is written as
    task:, checked against the registered ones, and the project ingests every row."""
    import yaml

    from modelloop.families import TASKS, partial_labels

    unlabelled = [t for t in TASKS if partial_labels(t)]
    _table(80).drop(columns=["y"]).to_csv(tmp_path / "rows.csv", index=False)
    code, _, err = cli(["init", "p", "--source", "rows.csv"], capsys, tmp_path)
    assert code == 2 and f"(rows without a column to predict: --task {' or '.join(unlabelled)})" in err
    code, _, err = cli(["init", "p", "--source", "rows.csv", "--task", "churn"], capsys, tmp_path)
    assert code == 2 and "--task: unknown task 'churn'; allowed: " + ", ".join(TASKS) in err
    assert not (tmp_path / "p").exists()
    code, out, err = cli(["init", "p", "--source", "rows.csv", "--task", unlabelled[0]], capsys, tmp_path)
    assert code == 0, err
    written = yaml.safe_load((tmp_path / "p" / "modelloop.yaml").read_text())
    assert written["task"] == unlabelled[0] and "target" not in written["data"]
    code, out, _ = cli(["ingest", "--json"], capsys, tmp_path / "p")
    assert code == 0 and json.loads(out)["rows"] == 80
    # a task that needs labels still needs its target
    code, _, err = cli(["init", "q", "--source", "rows.csv", "--task", "regression"], capsys, tmp_path)
    assert code == 2 and "--source needs --target" in err


def test_init_task_recommendation_asks_for_the_interaction_columns_by_name(tmp_path, capsys):
    """`modelloop init shop --source ratings.csv --task recommendation` wrote the anomaly project's comment
    ('a column of labels for a few rows') and no data.user / data.item, and the first run stopped on
    "split.strategy: 'user' needs data.user", a key the team never set. The config now names the
    interaction columns (the table's own columns shown), and a run without them names data.user and
    data.item."""
    import yaml

    pd.DataFrame({"customer": ["a", "b", "a"], "book": ["x", "y", "y"], "stars": [5, 3, 4]}).to_csv(
        tmp_path / "ratings.csv", index=False)
    code, _, err = cli(["init", "shop", "--source", "ratings.csv", "--task", "recommendation"], capsys, tmp_path)
    assert code == 0, err
    text = (tmp_path / "shop" / "modelloop.yaml").read_text()
    assert "a column of labels" not in text
    assert "  user: null                  # required: the user id column; the columns: customer, book, stars" in text
    assert "  item: null                  # required: the item id column" in text and "# rating: null" in text
    written = yaml.safe_load(text)["data"]
    assert (written["user"], written["item"]) == (None, None) and "rating" not in written
    code, _, err = cli(["ingest"], capsys, tmp_path / "shop")
    assert code == 2 and "split.strategy" not in err, err
    assert "data.user: required for task recommendation (the user id column of each interaction), got nothing" in err
    assert "data.item: required for task recommendation (the item id column of each interaction)" in err


def test_init_task_recommendation_suggests_relevant_rating_and_uncommented_it_trains(tmp_path, capsys):
    """`init --task recommendation` wrote no word of the opt-in model.relevant_rating: a team with 1-5 stars
    that never learnt of it got precision/recall/ndcg counting a held-out 1-star rating as a hit. The config
    now carries it commented (as the metric line); as written it loads with no model section, and with
    data.rating set and the two lines uncommented it loads, trains and the figures use it."""
    import yaml

    from modelloop.config import parse_config
    from modelloop.examples.recommend import generate_interactions
    from modelloop.project import Project

    generate_interactions(users=60, items=40, per_user=10, seed=0).to_csv(tmp_path / "ratings.csv", index=False)
    code, _, err = cli(["init", "shop", "--source", "ratings.csv", "--task", "recommendation"], capsys, tmp_path)
    assert code == 0, err
    text = (tmp_path / "shop" / "modelloop.yaml").read_text()
    lines = text.splitlines()
    assert "# model:" in lines and any(line.startswith("  # relevant_rating: 4 ") for line in lines)
    assert "model" not in yaml.safe_load(text)
    # the team's edit: the columns named, the two lines uncommented (a short budget for the test)
    edited = (text.replace("user: null ", "user: user ").replace("item: null ", "item: item ")
              .replace("# rating: null ", "rating: rating ").replace("# model:", "model:")
              .replace("  # relevant_rating:", "  relevant_rating:").replace("budget: 120 ", "budget: 4 "))
    raw = yaml.safe_load(edited)
    assert raw["model"] == {"relevant_rating": 4}
    project = Project(parse_config(raw, root=tmp_path / "shop"))
    assert project.config.model.relevant_rating == 4
    project.ingest()
    summary = project.train()
    assert summary["scored_users"]["relevant_rating"] == 4 and summary["recommender"]["relevant_rating"] == 4
    # uncommented without data.rating: the comment's 'needs data.rating' is the loader's exit 2
    (tmp_path / "shop" / "modelloop.yaml").write_text(edited.replace("rating: rating ", "# rating: null "))
    code, _, err = cli(["ingest"], capsys, tmp_path / "shop")
    assert code == 2 and "model.relevant_rating: 4 needs data.rating" in err, err


@pytest.mark.parametrize("task, metric", [("anomaly_detection", "pr_auc"), ("recommendation", "ndcg")])
def test_init_task_writes_the_metric_line_of_that_task(tmp_path, capsys, task, metric):
    """The config's commented metric line read '# metric: f1_macro  # default: f1_macro for classification,
    rmse for regression' for every task: a team that uncommented it on an anomaly or recommendation project
    got 'train.metric: must be one of pr_auc, roc_auc'. It now names the task's default and what is allowed,
    and uncommented it loads."""
    import yaml

    from modelloop.config import parse_config
    from modelloop.families import head_of_task

    pd.DataFrame({"customer": ["a", "b"], "book": ["x", "y"]}).to_csv(tmp_path / "rows.csv", index=False)
    code, _, err = cli(["init", "p", "--source", "rows.csv", "--task", task], capsys, tmp_path)
    assert code == 0, err
    text = (tmp_path / "p" / "modelloop.yaml").read_text()
    line = f"  # metric: {metric:<17} # default for task {task}; allowed: {', '.join(head_of_task(task).metrics)}"
    assert line in text.splitlines() and "f1_macro" not in text
    raw = yaml.safe_load(text.replace("  # metric:", "  metric:"))
    raw["data"].update({"user": "customer", "item": "book"} if task == "recommendation" else {})
    assert parse_config(raw, root=tmp_path / "p").metric == metric


def test_output_to_a_pipe_keeps_each_line_whole(tmp_path, capsys):
    """Piped into a log or CI, rich cut lines at 80 columns mid-sentence ("... in \\nr/modelloop.yaml"),
    so a grep for the line missed it. A terminal still wraps to its width."""
    code, out, _ = cli(["init", "a_rather_long_project_folder_name"], capsys, tmp_path)
    line = ("Next: set data.source and data.target in a_rather_long_project_folder_name/modelloop.yaml (or init "
            "with --source FILE --target COLUMN), then cd a_rather_long_project_folder_name && modelloop run")
    assert code == 0 and line in out.splitlines()[0] and len(out.splitlines()[0]) > 80


def test_init_suggests_a_holdout_column_as_the_test_split_and_uncommented_it_splits_so(tmp_path, capsys):
    """A table with a column named as a holdout mark (here 'Split'): `init` writes split.strategy column
    commented, naming it; as written the config has no split section, uncommented the marked rows are the
    frozen test split. A table without such a column gets no such lines."""
    import yaml

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=50), "y": [0, 1] * 25,
                       "Split": ["test" if i % 5 == 0 else "train" for i in range(50)]})
    df.to_csv(tmp_path / "rows.csv", index=False)
    code, _, err = cli(["init", "own", "--source", "rows.csv", "--target", "y"], capsys, tmp_path)
    assert code == 0, err
    text = (tmp_path / "own" / "modelloop.yaml").read_text()
    assert '# split:                      # "Split" looks like your own holdout mark' in text
    assert "split" not in yaml.safe_load(text)
    edited = text.replace("# split: ", "split: ").replace("#   strategy:", "  strategy:").replace("#   column:", "  column:")
    assert yaml.safe_load(edited)["split"] == {"strategy": "column", "column": "Split"}
    (tmp_path / "own" / "modelloop.yaml").write_text(edited)
    code, out, err = cli(["ingest", "--json"], capsys, tmp_path / "own")
    assert code == 0, err
    from modelloop import Project
    from modelloop.data.ingest import split_key

    ws = Project.load(tmp_path / "own" / "modelloop.yaml").workspace
    split = ws.catalog.get_split(ws.catalog.latest_dataset("own")["id"], split_key(ws.config))
    assert split["counts"] == {"train": 40, "test": 10}
    df.drop(columns="Split").to_csv(tmp_path / "plain.csv", index=False)
    assert cli(["init", "plain", "--source", "plain.csv", "--target", "y"], capsys, tmp_path)[0] == 0
    assert "split" not in (tmp_path / "plain" / "modelloop.yaml").read_text()
