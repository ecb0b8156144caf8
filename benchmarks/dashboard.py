"""The dashboard's pages on a large project: 100 model versions and 1 million logged predictions.

    .venv/bin/python benchmarks/dashboard.py [--predictions 1000000] [--versions 100] [--repeat 5]
                                             [--keep DIR] [--no-peer]

Issue 25's goal: every page renders in under 300 ms for a project with 100 model versions and 1 M
logged predictions. The script builds such a project in a temp dir (or reuses ``--keep DIR``):

* a 2,000-row tabular table, ingested, profiled and trained once for real (one trial), so the Monitoring
  page compares traffic with real training rows and loads a real model;
* 99 more model versions registered in the catalog (with their runs), each a copy of the trained one's
  row with its own metrics, dataset version and run, and 10 dataset versions in a feedback-merge chain
  (only the first is backed by files; the pages read catalog rows, and the diff reads the first's profile);
  production moved 20 times (the deployment history), and left on the trained version;
* ``--predictions`` rows in the prediction log spread evenly over the last 30 days (real inputs from the
  table, class probabilities, log-normal latencies), 6 in 7 answered by production and 1 in 7 by the
  latest version (a canary), 10 % of them labelled, written through ``Catalog.add_predictions`` and
  ``add_feedback_many`` (which keep the catalog's rollups, as the server's log writer does).

Then it times each page through the dashboard's ASGI app (``fastapi.testclient``, in process: the server's
work, not a browser's), built without the warm-up the servers start with, in a fresh Python process each
time: the first request of each page ("cold": what the first visitor after a start waits for) and the
median of ``--repeat`` more ("warm"). Twice: **first start** (nothing computed yet but what the catalog
keeps as the log is written: the first Monitoring view leaves the drift of every day and the live metrics to
a background thread, which the process waits for after the pages, printing how much longer it ran) and **restart** (a new
process over the same catalog, whose today's drift is made an hour old with a request since, as after a real
restart: finished days are read back, today's last figures are shown and computed again in the background). Then the warm-up a server
starts with, on a catalog without stored drift (its first start ever).

The peer of the log's pages is the log itself: the 30-day hourly figures read from the catalog's
``prediction_hours`` rollup against the same figures computed by a ``GROUP BY`` over the log's rows (what
the pages read before schema 5), alternating, with the ratio. The peer of the registry's pages is MLflow's
UI (``mlflow server`` on 127.0.0.1 over a SQLite store holding the same 100 versions and runs): the JSON
calls its registered-model and experiment pages make (``model-versions/search``, ``runs/search`` for 100
runs). They return data that the browser then renders with JavaScript, so they are a lower bound of
MLflow's page; ours are whole HTML pages. MLflow has no view of the prediction log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from serving import free_port, stop  # benchmarks/serving.py (this script's folder is on sys.path)

GOAL_MS = 300.0


def make_table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 50.0, n).round(2)
    age = rng.integers(18, 80, n)
    online = rng.choice([True, False], n)
    y = ((amount > 120) & online | (rng.random(n) < 0.1)).astype(int)
    return pd.DataFrame({"tid": [f"t{i}" for i in range(n)], "amount": amount, "age": age,
                         "country": rng.choice(["FR", "DE", "US", "GB"], n), "online": online, "y": y})


def build(root: Path, n_predictions: int, n_versions: int) -> Any:
    import yaml

    from modelloop.catalog import utcnow
    from modelloop.config import parse_config
    from modelloop.project import Project

    raw = {"name": "bench", "data": {"source": "data.csv", "target": "y", "id": "tid"},
           "train": {"cv_folds": 2, "ensemble_size": 2}}
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    table = make_table(2000)
    table.to_csv(root / "data.csv", index=False)
    project = Project(parse_config(raw, root=root))
    t0 = time.perf_counter()
    project.ingest()
    project.profile()
    project.train(budget=10, trials=1)
    cat = project.workspace.catalog
    real = cat.list_models("bench")[0]
    run = cat.list_runs("bench")[0]
    ds = cat.list_datasets("bench")[0]
    ids = [ds["id"]]
    for i in range(1, 10):
        row = {k: v for k, v in ds.items() if k not in ("seq", "created_at")}
        ids.append(cat.add_dataset(**{**row, "id": f"{ds['id'][:6]}{i:06d}", "step": "feedback-merge",
                                      "parents": [ids[-1]], "rows": ds["rows"] + 100 * i})["id"])
    rng = np.random.default_rng(1)
    for v in range(2, n_versions + 1):
        run_id = f"{run['id'][:20]}{v:012d}"
        metrics = {k: float(np.clip(x + rng.normal(0, 0.01), 0, 1)) for k, x in real["metrics"].items()}
        cat.add_run(**{**run, "id": run_id, "metrics": metrics, "dataset_id": ids[v % len(ids)]})
        cat.add_model(**{**{k: real[k] for k in ("name", "formats", "input_schema", "info", "family")},
                         "version": v, "run_id": run_id, "dataset_id": ids[v % len(ids)], "metrics": metrics})
    for v in range(5, n_versions + 1, 5):
        cat.set_alias("bench", v, "production", reason="benchmark history")
    cat.set_alias("bench", 1, "production", reason="benchmark: back on the trained version")
    print(f"project: 1 trained + {n_versions - 1} registered versions, 10 dataset versions "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)

    t0 = time.perf_counter()
    records = table.drop(columns=["tid", "y"]).to_dict("records")
    ys = [int(v) for v in table["y"]]
    now, span = utcnow(), 30 * 86400.0
    batch = 20_000
    for start in range(0, n_predictions, batch):
        idx = np.arange(start, min(start + batch, n_predictions))
        p = rng.random(len(idx))
        latency = rng.lognormal(1.0, 0.6, len(idx))
        rows = [{"request_id": f"bench-{i:08d}", "name": "bench", "version": 1 if i % 7 else n_versions,
                 "at": now - dt.timedelta(seconds=span * (1 - i / n_predictions)),
                 "inputs": records[i % len(records)], "latency_ms": float(latency[j]),
                 "output": {"label": int(p[j] > 0.5), "probabilities": {"0": 1 - float(p[j]), "1": float(p[j])}}}
                for j, i in enumerate(idx.tolist())]
        cat.add_predictions(rows)
        cat.add_feedback_many([{"request_id": f"bench-{i:08d}", "label": ys[i % len(ys)], "source": "file"}
                               for i in idx[::10].tolist()])
        print(f"\r  prediction log: {start + len(idx):,} / {n_predictions:,}", end="", flush=True)
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    return project


PAGES = ["/", "/data", "/models", "/lineage", "/models/compare?a=1&b={last}", "/data/diff", "/retrains", "/jobs",
         "/trace?request_id=bench-{middle:08d}", "/serving", "/serving?range=7d", "/serving?range=30d", "/monitoring"]
LOG_PAGES = ["/", "/serving", "/serving?range=7d", "/serving?range=30d", "/monitoring"]


def time_pages(client: Any, pages: list[str], repeat: int) -> dict[str, tuple[float, float]]:
    out = {}
    for page in pages:
        t0 = time.perf_counter()
        r = client.get(page)
        cold = (time.perf_counter() - t0) * 1000
        if r.status_code != 200:
            raise SystemExit(f"{page}: HTTP {r.status_code}: {r.text[-500:]}")
        warm = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            client.get(page)
            warm.append((time.perf_counter() - t0) * 1000)
        out[page] = (cold, statistics.median(warm))
        print(f"  {page:<34} cold {cold:8.1f} ms   median {out[page][1]:8.1f} ms", flush=True)
    return out


def rollup_question(project: Any, rounds: int = 3) -> dict[str, list[float]]:
    """Seconds of the 30-day hourly figures (what Serving 30d reads) from the catalog's ``prediction_hours``
    rollup and from a ``GROUP BY`` over the log's rows, alternating; both answers must be equal."""
    from modelloop.catalog import utcnow
    from modelloop.dashboard.queries import hourly, rolled_hours

    cat = project.workspace.catalog
    since = (utcnow() - dt.timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
    found: dict[str, list[float]] = {"rollup": [], "rows": []}
    answers = {}
    for _ in range(rounds):
        for kind, read in (("rows", hourly), ("rollup", rolled_hours)):
            t0 = time.perf_counter()
            answers[kind] = read(cat, "bench", since)
            found[kind].append(time.perf_counter() - t0)
    requests = {k: sum(v[0] for versions in a.values() for v in versions.values()) for k, a in answers.items()}
    if requests["rows"] != requests["rollup"] or set(answers["rows"]) != set(answers["rollup"]):
        raise SystemExit(f"the rollup and the rows disagree: {requests}")
    print(f"30-day hourly figures, s: from the log's rows {found['rows']}, from the rollup {found['rollup']} "
          f"({requests['rollup']:,.0f} requests in both)", flush=True)
    return found


def pages_in_a_fresh_process(folder: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """:func:`time_pages` in a new Python process over the project in ``folder`` (a server's start)."""
    out = subprocess.run([sys.executable, __file__, "--keep", str(folder), "--repeat", str(repeat), "--pages-only"],
                         capture_output=True, text=True, check=False)
    sys.stdout.write(out.stdout.split("PAGES_JSON ")[0])
    if out.returncode != 0:
        raise SystemExit(f"page timing failed: {out.stderr[-2000:]}")
    return {k: tuple(v) for k, v in json.loads(out.stdout.split("PAGES_JSON ")[1]).items()}


def pages_only(folder: Path, repeat: int) -> None:
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app
    from modelloop.project import Project

    project = Project.load(folder / "modelloop.yaml")
    with TestClient(create_app(project, keys=[])) as client:
        last = len(project.workspace.catalog.list_models("bench"))
        middle = project.workspace.catalog.recent_predictions("bench", 1)[0]["request_id"]
        middle = int(middle[6:]) // 2
        ours = time_pages(client, [p.format(last=last, middle=middle) for p in PAGES], repeat)
        t0 = time.perf_counter()
        background_done()        # what Monitoring left to its threads (drift days, live metrics) ends first
        print(f"  background drift/live computation still running after the pages: "
              f"{time.perf_counter() - t0:.1f} s more", flush=True)
    print("PAGES_JSON " + json.dumps(ours), flush=True)


def background_done() -> None:
    """Wait for the Monitoring page's background threads (a process must not exit while they compute)."""
    import threading

    for t in threading.enumerate():
        if t.name in ("modelloop-ui-drift", "modelloop-ui-live"):
            t.join()


def mlflow_peer(folder: Path, project: Any, n_versions: int, repeat: int) -> dict[str, tuple[float, float]]:
    """MLflow's server over a SQLite store with ``n_versions`` runs and registered versions: its UI's calls."""
    import httpx
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    for old in ("peer-mlflow.db", "peer-artifacts"):     # a fresh store on every run (--keep reuses the folder)
        path = folder / old
        path.unlink() if path.is_file() else shutil.rmtree(path, ignore_errors=True)
    uri = f"sqlite:///{folder / 'peer-mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("bench", artifact_location=str(folder / "peer-artifacts"))
    client.create_registered_model("bench")
    models = project.workspace.catalog.list_models("bench")
    t0 = time.perf_counter()
    for m in models[:n_versions]:
        run = client.create_run(exp)
        client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in m["metrics"].items()])
        client.set_terminated(run.info.run_id)
        client.create_model_version("bench", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    print(f"  MLflow store: {len(models[:n_versions])} runs and versions ({time.perf_counter() - t0:.1f} s)")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
                            start_new_session=True)             # its workers too are stopped at the end
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("mlflow server did not start")
            time.sleep(0.5)
        calls = {
            "MLflow model-versions/search (100)": ("GET", "/ajax-api/2.0/mlflow/model-versions/search",
                                                   {"params": {"filter": "name='bench'", "max_results": 200}}),
            "MLflow runs/search (100 runs)": ("POST", "/ajax-api/2.0/mlflow/runs/search",
                                              {"json": {"experiment_ids": [exp], "max_results": 100}}),
        }
        out = {}
        with httpx.Client(base_url=base, timeout=30) as http:
            for name, (method, path, kw) in calls.items():
                times = []
                for _ in range(repeat + 1):
                    t0 = time.perf_counter()
                    r = http.request(method, path, **kw)
                    times.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                out[name] = (times[0], statistics.median(times[1:]))
                print(f"  {name:<34} cold {times[0]:8.1f} ms   median {out[name][1]:8.1f} ms", flush=True)
        return out
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="build here once and reuse it on later runs")
    ap.add_argument("--no-peer", action="store_true", help="skip the MLflow server")
    ap.add_argument("--pages-only", action="store_true", help=argparse.SUPPRESS)    # the child of a start
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.pages_only:
        pages_only(args.keep, args.repeat)
        return
    print(f"load before: {os.getloadavg()}", flush=True)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    folder.mkdir(parents=True, exist_ok=True)
    from modelloop.project import Project

    if (folder / "modelloop.yaml").is_file() and args.keep:
        t0 = time.perf_counter()
        project = Project.load(folder / "modelloop.yaml")
        print(f"reusing {folder} (opened in {time.perf_counter() - t0:.1f} s, a migration included)", flush=True)
    else:
        project = build(folder, args.predictions, args.versions)
    try:
        import sqlalchemy as sa

        from modelloop.catalog import drift_days, utcnow

        with project.workspace.catalog.tx() as c:       # a first start: no drift stored yet
            c.execute(sa.delete(drift_days))
        starts = {}
        for start in ("first start", "restart"):
            if start == "restart":      # as after a real restart: today's drift an hour old, with traffic since
                today = drift_days.c.day == utcnow().date().isoformat()
                with project.workspace.catalog.tx() as c:
                    for row in c.execute(sa.select(drift_days).where(today)).all():
                        c.execute(drift_days.update().where(today, drift_days.c.version == row.version).values(
                            computed_at=row.computed_at - dt.timedelta(hours=1), requests=row.requests - 1))
            print(f"dashboard pages, {start} (a fresh process, in process ASGI):", flush=True)
            starts[start] = pages_in_a_fresh_process(folder, args.repeat)
        from modelloop.dashboard.background import Background
        from modelloop.dashboard.queries import TrafficRollup
        from modelloop.dashboard.views import DriftCache, warm_up

        with project.workspace.catalog.tx() as c:
            c.execute(sa.delete(drift_days))
        t0 = time.perf_counter()
        warm_up(project, DriftCache(Background(project.workspace.catalog)), TrafficRollup())  # starts its threads
        background_done()
        warm_s = time.perf_counter() - t0
        print(f"warm-up that `modelloop ui` / `serve --ui` start with, on a catalog without stored drift "
              f"(7 days of drift): {warm_s:.1f} s", flush=True)

        rollup = rollup_question(project)
        peer = {} if args.no_peer else mlflow_peer(folder, project, args.versions, args.repeat)
        print(json.dumps({
            "load_after": os.getloadavg(), "goal_ms": GOAL_MS, "warm_up_s": warm_s,
            **{f"pages_over_goal_{start.replace(' ', '_')}_{kind}": [p for p, t in found.items() if t[i] > GOAL_MS]
               for start, found in starts.items() for i, kind in enumerate(("cold", "warm"))},
            "pages": starts, "hourly_seconds": rollup, "mlflow": peer}, indent=1))
        if peer:
            models_ms = starts["restart"]["/models"][1]
            for name, (_, warm) in peer.items():
                print(f"ratio /models (HTML, warm) vs {name} (JSON): {models_ms / warm:.2f}x")
        print(f"ratio 30-day hourly figures from the log's rows / from the rollup (medians): "
              f"{statistics.median(rollup['rows']) / statistics.median(rollup['rollup']):.1f}x")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
