"""A text project through the whole loop on the command line (run, evaluate, optimize, serve its own
rows, feedback, monitor, retrain), as a user writes it: ``backbone`` left to ``auto`` on bilingual reviews."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from servers import free_port, wait_ready
from test_cli import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "modelloop" / "examples"
CONFIG = """\
name: reviews
task: text_classification
data: {source: data.jsonl, text: review, target: sentiment}
train: {budget: 20}
monitor: {min_rows: 20}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-loop")
    df = pd.read_json(EXAMPLES / "sentiment.jsonl", lines=True)
    df = df.groupby(["sentiment", "lang"]).head(30)[["review", "sentiment"]].reset_index(drop=True)
    df.to_json(root / "data.jsonl", orient="records", lines=True, force_ascii=False)
    (root / "modelloop.yaml").write_text(CONFIG)
    return root, df


def test_a_text_project_goes_round_the_loop(project, capsys):
    root, df = project
    code, out, err = cli(["run", "--json"], capsys, root)
    assert code == 0, err
    run = json.loads(out)
    assert run["family"] == "text" and run["backbone"]["configured"] == "auto"
    assert run["latency"]["met"] and run["latency"]["source"].startswith("backbone: auto")
    for stage in ("evaluate", "optimize"):
        code, out, err = cli([stage, "--json"], capsys, root)
        assert code == 0, f"{stage}: {err}"

    records = json.loads(df[["review"]].to_json(orient="records", force_ascii=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "modelloop.cli", "serve", "--port", str(port)], cwd=root,
                              env={**os.environ, "MODELLOOP_API_KEYS": ""}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_ready(url, 120, server)
        with httpx.Client(base_url=url, timeout=30) as client:
            answers = [client.post("/v1/predict", json={"records": [r]}) for r in records]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert all(a.status_code == 200 for a in answers), answers[0].text
    served = [a.json()["predictions"][0]["label"] for a in answers]
    assert set(served) <= {"positive", "negative"} and all(a.json()["predictions"][0]["windows"] >= 1 for a in answers)

    # feedback: the true labels of the rows served, then monitor and retrain on them
    ids = [a.json()["request_id"] for a in answers]
    pd.DataFrame({"request_id": ids, "label": df["sentiment"]}).to_csv(root / "labels.csv", index=False)
    code, out, err = cli(["feedback", "labels.csv", "--json"], capsys, root)
    assert code == 0, err
    assert json.loads(out)["accepted"] == len(ids)
    code, out, err = cli(["monitor", "--json"], capsys, root)
    assert code == 0, err
    assert json.loads(out)["metrics"]["1"]["all"]["n"] == len(ids)
    code, out, err = cli(["retrain", "--json"], capsys, root)
    assert code == 0, err
    res = json.loads(out)
    assert "gate" in res and isinstance(res["promoted"], bool)
