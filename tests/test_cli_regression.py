"""A regression target through the whole loop, on the command line, with only what a new user writes.

No ``task`` and no ``split`` section: the task is inferred from the float target, the split follows
it, and every stage (run, evaluate, optimize, serve, feedback, monitor, retrain) works on numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest
from servers import free_port, wait_ready
from test_cli import cli

CONFIG = """\
name: prices
data:
  source: data.csv
  target: price
train:
  budget: 30
  trials: 3
  cv_folds: 2
  families: [lightgbm, linear]
  ensemble: false
optimize:
  variants: [onnx]
monitor:
  min_rows: 50
"""


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"area": rng.gamma(3.0, 30.0, n).round(1), "rooms": rng.integers(1, 7, n),
                       "city": rng.choice(["lyon", "paris", "nantes"], n), "age": rng.normal(30, 10, n)})
    df["price"] = (2_000 * df.area + 15_000 * df.rooms + 80_000 * (df.city == "paris") - 500 * df.age
                   + rng.normal(0, 10_000, n)).round(2)
    return df


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    _table().to_csv(root / "data.csv", index=False)
    (root / "modelloop.yaml").write_text(CONFIG)
    return root


def _serve(root, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "modelloop.cli", "serve", "--port", str(port)], cwd=root,
                            env={**os.environ, "MODELLOOP_API_KEYS": ""}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_regression_target_goes_round_the_loop(project, capsys):
    code, out, err = cli(["run", "--json"], capsys, project)
    assert code == 0, err
    run = json.loads(out)
    assert run["task"] == "regression" and run["metric"] == "rmse"
    assert run["task_inferred"]["task"] == "regression" and "many distinct values" in run["task_inferred"]["reason"]
    assert set(run["test_metrics"]) == {"rmse", "mae", "r2"} and run["test_metrics"]["r2"] > 0.8

    code, out, err = cli(["evaluate", "--json"], capsys, project)
    assert code == 0, err
    assert json.loads(out)["metrics"]["rmse"] == pytest.approx(run["test_metrics"]["rmse"])

    code, out, err = cli(["optimize", "--json"], capsys, project)
    assert code == 0, err
    assert json.loads(out)["metric"] == "rmse"

    # serve: the training rows, as a client sends them (JSON records without the target)
    rows = _table().head(122)
    records = json.loads(rows.drop(columns=["price"]).to_json(orient="records"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(project, port)
    try:
        wait_ready(url, 120, server)
        ids = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for rec in records:
                r = client.post("/v1/predict", json={"records": [rec]})
                assert r.status_code == 200, r.text
                assert isinstance(r.json()["predictions"][0]["label"], float)
                ids.append(r.json()["request_id"])
            bad = client.post("/v1/feedback", json={"request_id": ids[0], "label": "expensive"})
            assert bad.status_code == 422 and "must be a finite number for a regression model" in bad.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    # feedback: numeric labels (the world moved: prices rose 30 %), and one that is not a number
    labels = [f"{v:.2f}" for v in rows["price"].head(120) * 1.3] + ["expensive"]
    pd.DataFrame({"request_id": ids[:121], "label": labels}).to_csv(project / "labels.csv", index=False)
    code, out, err = cli(["feedback", "labels.csv", "--json"], capsys, project)
    assert code == 0, err
    counts = json.loads(out)
    assert counts["accepted"] == 120 and counts["invalid"] == 1
    pd.DataFrame({"request_id": ids[121:], "label": ["n/a"]}).to_csv(project / "words.csv", index=False)
    code, out, err = cli(["feedback", "words.csv"], capsys, project)
    assert code == 2 and "1 invalid labels" in err and err.rstrip().endswith("returned; label: missing")  # n/a reads as missing

    code, out, err = cli(["monitor", "--json"], capsys, project)
    assert code == 0, err
    mon = json.loads(out)
    assert mon["metric"] == "rmse"
    live = mon["metrics"]["1"]["all"]
    assert set(live) == {"n", "rmse", "mae", "r2"} and live["n"] == 120
    assert live["rmse"] > mon["holdout_metrics"]["rmse"]       # labels 30 % above what the model learnt

    code, out, err = cli(["retrain", "--json"], capsys, project)
    assert code == 0, err
    res = json.loads(out)
    assert res["metric"] == "rmse" and res["gate"]["relative"] is True
    champion, challenger = res["champion"]["metrics"], res["challenger"]["metrics"]
    # lower rmse is better: the gain is the champion's error minus the challenger's, as a share
    gain = (champion["recent"]["rmse"] - challenger["recent"]["rmse"]) / champion["recent"]["rmse"]
    drop = (challenger["holdout"]["rmse"] - champion["holdout"]["rmse"]) / champion["holdout"]["rmse"]
    assert res["gate"]["recent_gain"] == pytest.approx(gain) and res["gate"]["holdout_drop"] == pytest.approx(drop)
    assert gain > 0                                            # the challenger learnt the new prices
    assert res["promoted"] is (drop <= 0.1)

