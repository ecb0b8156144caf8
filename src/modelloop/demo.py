"""``modelloop demo``: the whole loop on the bundled fraud example, in one command.

generate data -> ingest -> profile -> search + train -> evaluate -> register -> optimize ->
serve (a real server on 127.0.0.1) -> replay a shifted stream (new merchants, amount inflation, a
changed fraud pattern) -> post the labels -> monitor (drift) -> retrain -> gate -> promote ->
the server follows the new production version -> replay again -> before/after figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import StateError

__all__ = ["run_demo"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``modelloop serve`` in a child process, on a free loopback port."""

    def __init__(self, root: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(root / ".modelloop" / "demo-server.log", "w")  # closed in stop()
        self._log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "modelloop.cli", "serve", "--port", str(self.port)],
                                     cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "MODELLOOP_API_KEYS": ""})

    def wait_ready(self, timeout: float = 120) -> dict:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise StateError(f"the demo server exited ({self.proc.returncode}); see .modelloop/demo-server.log")
            try:
                r = httpx.get(f"{self.url}/v1/ready", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StateError("the demo server did not become ready; see .modelloop/demo-server.log")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


async def _replay(url: str, records: list[dict], labels: list[Any], concurrency: int = 16) -> dict[str, Any]:
    """Each record as its own request (as live traffic comes), then each label as feedback."""
    import httpx

    sem = asyncio.Semaphore(concurrency)
    ids: list[str | None] = [None] * len(records)
    versions: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def predict(i: int) -> None:
            async with sem:
                r = await client.post("/v1/predict", json={"records": [records[i]]})
                r.raise_for_status()
                body = r.json()
                ids[i] = body["request_id"]
                v = body["model"]["version"]
                versions[v] = versions.get(v, 0) + 1

        await asyncio.gather(*(predict(i) for i in range(len(records))))

        async def label(i: int) -> None:
            async with sem:
                r = await client.post("/v1/feedback", json={"request_id": ids[i], "label": labels[i]})
                r.raise_for_status()

        await asyncio.gather(*(label(i) for i in range(len(records))))
    return {"requests": len(records), "versions": versions}


def _records(df: pd.DataFrame, target: str) -> tuple[list[dict], list[Any]]:
    X = df.drop(columns=[target])
    return json.loads(X.to_json(orient="records", date_format="iso")), [int(v) for v in df[target]]


def run_demo(directory: Path | str, *, budget: float = 45, stream_rows: int = 3000,
             loop: bool = True) -> dict[str, Any]:
    """The whole loop; returns every stage's result (the CLI prints a one-screen summary)."""
    from .examples.fraud import generate_transactions
    from .project import Project
    from .scaffold import init_project
    from .ui import search_progress, stage_printer

    root = Path(directory)
    if not (root / "modelloop.yaml").exists():
        stage_printer("generate the fraud example")
        init_project(root, example="fraud")
    project = Project.load(root / "modelloop.yaml")
    with search_progress(budget) as progress:
        trained = project.run(budget=budget, on_stage=stage_printer, progress=progress)
    result: dict[str, Any] = {"directory": str(root), "train": trained}
    if not loop:
        return result
    stage_printer("optimize")
    result["optimize"] = project.optimize(promote=True)  # serve what optimize found, as a user would
    server = _Server(root)
    try:
        stage_printer("serve")
        ready = server.wait_ready()
        target = project.config.data.target
        stage_printer(f"replay {stream_rows} shifted transactions through {server.url}")
        shifted = generate_transactions(n_rows=stream_rows, seed=11, shift=True)
        recs, labels = _records(shifted, target)
        before = asyncio.run(_replay(server.url, recs, labels))
        stage_printer("monitor")
        result["monitor"] = project.monitor()
        stage_printer("retrain")
        with search_progress(budget) as progress:
            result["retrain"] = project.retrain(budget=budget, progress=progress)
        if result["retrain"]["promoted"]:
            import httpx

            httpx.post(f"{server.url}/v1/admin/reload", timeout=60).raise_for_status()
        stage_printer("replay fresh shifted traffic to the server")
        fresh = generate_transactions(n_rows=stream_rows // 2, seed=12, shift=True)
        recs2, labels2 = _records(fresh, target)
        after = asyncio.run(_replay(server.url, recs2, labels2))
        result["serve"] = {"url": server.url, "first_model": ready.get("model"), "before": before, "after": after}
        result["monitor_after"] = project.monitor()
        result["fresh"] = _compare_on(project, fresh, result["retrain"])
    finally:
        server.stop()
    return result


def _compare_on(project: Any, df: pd.DataFrame, retrain: dict[str, Any]) -> dict[str, Any]:
    """Champion and challenger on the same fresh labeled traffic (neither trained on it), and
    ``change``: for ``f1_macro`` and ``roc_auc``, the challenger's change against the champion on these
    rows with its 95 % paired-bootstrap interval, as the retrain gate words its recent gain (1,500 rows
    of ~2 % fraud hold ~30 frauds: a change of a few hundredths is noise there)."""
    from .evaluation.evaluate import evaluate_model, scores_of
    from .registry import load_model, resolve_model

    ws, out, answers = project.workspace, {}, {}
    target = project.config.data.target
    for role in ("champion", "challenger"):
        ref = retrain[role]["model"]
        row = resolve_model(ws, f"{ref['name']}:{ref['version']}")
        model, task = load_model(ws, row), row["info"]["task"]
        m = evaluate_model(model, df, target=target, task=task)
        out[role] = {"version": ref["version"], "metrics": m["metrics"], "rows": m["rows"]}
        if not hasattr(model, "evaluate_interactions"):  # the rows just scored: evaluate's cache answers
            y, scores = scores_of(model, df, target, task)
            answers[role] = (y, scores, getattr(model, "threshold_", None))
    out["change"] = _fresh_change(out, answers)
    return out


def _fresh_change(figures: dict[str, Any], answers: dict[str, Any],
                  metrics: tuple[str, ...] = ("f1_macro", "roc_auc")) -> dict[str, Any]:
    """{metric: {delta, interval, within_noise}}: the challenger's change against the champion (positive
    when it is better), its 95 % paired-bootstrap interval on the same rows (the gate's
    ``evaluation.metrics.paired_change_interval``) and whether that interval holds 0 (the gate's rule:
    not a single point). A metric either model lacks is left out; interval and within_noise are null
    when the rows cannot give an interval."""
    from .evaluation.metrics import change_within_noise, direction, paired_change_interval

    champ, chall = answers.get("champion"), answers.get("challenger")
    change: dict[str, Any] = {}
    for metric in metrics:
        before = figures["champion"]["metrics"].get(metric)
        after = figures["challenger"]["metrics"].get(metric)
        if before is None or after is None:
            continue
        sign = 1.0 if direction(metric) == "maximize" else -1.0
        interval = None
        if champ is not None and chall is not None and len(champ[0]) >= 2:
            lo, hi = paired_change_interval(metric, champ[0], chall[1:], champ[1:])
            interval = [lo, hi] if np.isfinite(lo) and np.isfinite(hi) else None
        change[metric] = {"delta": round(sign * (float(after) - float(before)), 6), "interval": interval,
                          "within_noise": change_within_noise(interval)}
    return change
