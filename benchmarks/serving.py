"""Serving speed: `modelloop serve` against MLflow's scoring server, a no-op ceiling and in-process ORT.

    .venv/bin/python benchmarks/serving.py [--rows 5000] [--budget 20] [--seconds 5] [--concurrency 1 16 64]
                                           [--rounds 3] [--dir D | --project DIR] [--optimized]

Trains a model on the bundled fraud example (``modelloop.examples.fraud``; a synthetic table when it
is missing), then drives each server with a closed loop of single-record requests (c keep-alive
connections, each sends its next request when the previous answer arrives) and
prints requests/s, p50 and p99 per setting (``--client httpx`` drives them with httpx instead of
the default bare-asyncio HTTP/1.1 client, which costs ~10x less CPU per request):

* **modelloop**   ``serve(ws)``: validation, micro-batching, ONNX Runtime, prediction log (1 worker)
* **noop**        the same FastAPI app and middleware, a route that reads the body and returns a
                  constant: the ceiling of this HTTP stack on this machine
* **mlflow**      ``mlflow models serve -m models:/NAME/V --env-manager local`` on the same model
* **ort-inproc**  the runtime's ``predict`` called in-process (no HTTP): 1 record, and 1024 at once
                  (a different batch of the sampled records each call)

``--optimized`` runs ``modelloop optimize --promote`` on the trained model first, as ``make demo``
does: the version it registers (ONNX / pruned / distilled, whichever kept quality and was fastest)
is served; without it the trained model (often an ensemble) is served.

``--project demo`` serves the production model of an existing project as it is: after ``make demo``,
that is the demo model (what the demo's optimize stage promoted, then its retrain, if that won).

Goal at concurrency 16 on 2 cores: >= 20x MLflow's throughput with a lower p99, and >= 70% of noop.
The client runs on the same machine and takes CPU from the servers; on a shared machine figures
are noisy: compare ratios within one run, not across runs, and prefer ``--rounds 3`` or more (the
servers alternate, each round's ratio is printed, and the table gives medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request  # module level: FastAPI resolves the noop route's annotations here

HERE = Path(__file__).resolve()


# ---- the project ---------------------------------------------------------------------------------
def build_project(root: Path, rows: int, budget: float) -> tuple[Any, list[dict[str, Any]]]:
    """A trained project in ``root`` and a few hundred JSON records of its table (no target)."""
    import yaml

    from modelloop.config import load_config
    from modelloop.project import Project

    try:
        from modelloop.examples.fraud import generate_transactions

        df = generate_transactions(rows, seed=0)
        raw = {"name": "fraud", "data": {"source": "data.csv", "target": "is_fraud", "id": "transaction_id",
                                         "columns": {"customer_id": "identifier"}}}
    except ImportError:
        rng = np.random.default_rng(0)
        import pandas as pd

        df = pd.DataFrame({"amount": rng.gamma(2, 50, rows), "age": rng.integers(18, 80, rows),
                           "country": rng.choice(["FR", "DE", "US"], rows)})
        df["is_fraud"] = ((df.amount > 150) ^ (rng.random(rows) < 0.05)).astype(int)
        raw = {"name": "fraud", "data": {"source": "data.csv", "target": "is_fraud"}}
    trained = (root / "modelloop.yaml").exists() and (root / "data.csv").exists()
    if trained:  # a project an earlier run trained in --dir: served as it is, so runs compare one model
        project = Project(load_config(root / "modelloop.yaml"))
        cat = project.workspace.catalog
        version = cat.get_alias("fraud", "production")
        trained = version is not None
    if not trained:
        root.mkdir(parents=True, exist_ok=True)
        df.to_csv(root / "data.csv", index=False)
        (root / "modelloop.yaml").write_text(yaml.safe_dump(raw))
        project = Project(load_config(root / "modelloop.yaml"))
        project.ingest()
        result = project.train(budget=budget)
        version = result["model"]["version"]
        print(f"trained {result['model']} ({result['best_family']}, ensemble {bool(result['ensemble'])}) "
              f"in {result['seconds']} s", file=sys.stderr)
    else:
        print(f"reusing fraud:{version} in {root}", file=sys.stderr)
    from modelloop.serving.runtime import to_records

    sample = df.drop(columns=[raw["data"]["target"]]).sample(500, random_state=0)
    schema = project.workspace.catalog.get_model("fraud", version)["input_schema"]
    from modelloop.data.schema import Schema

    records = to_records(sample, Schema.from_dict(schema))
    allowed = set(schema["columns"]) - {schema["target"]}
    return project, [{k: v for k, v in r.items() if k in allowed} for r in records]


# ---- servers -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_server(kind: str, root: Path, port: int) -> None:
    """Entry of the server subprocesses (``--_serve KIND``)."""
    from modelloop.config import load_config
    from modelloop.serving import ServeConfig, serve
    from modelloop.workspace import Workspace

    ws = Workspace(load_config(root / "modelloop.yaml"))
    if kind == "modelloop":
        serve(ws, port=port)
        return
    import uvicorn
    from fastapi import Response

    from modelloop.serving import create_app

    app = create_app(ws, config=ServeConfig(reload_poll_seconds=0))

    @app.post("/v1/noop")
    async def noop(request: Request) -> Response:
        await request.body()
        return Response(b'{"predictions":[{"label":0}]}', media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def start(kind: str, root: Path, tracking_url: str, model_uri: str) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    if kind == "mlflow":
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
        # mlflow execs `uvicorn` from PATH: the interpreter's own bin folder must be on it
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_url,
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
        path, ready = "/invocations", "/ping"
    else:
        cmd = [sys.executable, str(HERE), "--_serve", kind, "--dir", str(root), "--port", str(port)]
        env = {**os.environ, "MODELLOOP_API_KEYS": ""}
        path, ready = ("/v1/predict" if kind == "modelloop" else "/v1/noop"), "/v1/ready"
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url + ready, proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{kind}: {exc}; its log ({log.name}) ends with:\n"
                           f"{Path(log.name).read_text(errors='replace')[-2000:]}") from None
    return proc, url, path


def wait_until_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(url)


def warm_up(url: str, body: bytes) -> None:
    """One answered request before the clock starts: a server may load its model on the first
    request (MLflow's pyfunc of a text model rebuilds the network then, ~5 s), and that first
    request would otherwise eat the measured window."""
    import httpx

    r = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=300)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: the warm-up request got HTTP {r.status_code}: {r.text[:500]}")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


# ---- load ----------------------------------------------------------------------------------------
def _summary(latencies: list[float], seconds: float, errors: int) -> dict[str, float]:
    lat = np.asarray(latencies) * 1000
    return {"rps": len(lat) / seconds, "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"), "errors": errors}


async def raw_closed_loop(url: str, bodies: list[bytes], concurrency: int, seconds: float,
                          warmup: float = 1.0) -> dict[str, float]:
    """The same closed loop over bare asyncio streams: keep-alive HTTP/1.1, one connection per client.

    A load generator must cost far less than the server it drives: on 2 cores httpx's async client
    saturates near 250 req/s, below any of the servers measured here; this one reaches ~3,000.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    requests = [(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    latencies: list[float] = []
    errors = 0
    t0 = time.perf_counter()
    measure_from, end = t0 + warmup, t0 + warmup + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        i = k
        try:
            while (now := time.perf_counter()) < end:
                i += concurrency
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                done = time.perf_counter()
                if now >= measure_from:
                    if head.startswith(b"HTTP/1.1 200"):
                        latencies.append(done - now)
                    else:
                        errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return _summary(latencies, seconds, errors)


async def closed_loop(url: str, bodies: list[bytes], concurrency: int, seconds: float,
                      warmup: float = 1.0) -> dict[str, float]:
    """``concurrency`` httpx clients, each sending its next request when the previous answer arrives."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        measure_from, end = t0 + warmup, t0 + warmup + seconds

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while (now := time.perf_counter()) < end:
                i += concurrency
                try:
                    r = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                done = time.perf_counter()
                if now >= measure_from:
                    if ok:
                        latencies.append(done - now)
                    else:
                        errors += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return _summary(latencies, seconds, errors)


def batch_stats(url: str) -> tuple[float, float]:
    import httpx

    text = httpx.get(url + "/metrics").text
    val = {k: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(k + " "))
           for k in ("modelloop_batch_size_sum", "modelloop_batch_size_count")}
    return val["modelloop_batch_size_sum"], val["modelloop_batch_size_count"]


def inproc(ws: Any, records: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """The runtime's ``predict`` in process on batches of 1 and 1,024 records, a different batch each
    call as a server gets them: one batch repeated lets the CPU's branch predictor learn a tree model's
    paths (the fraud example's bagged model: ~2x faster at batch 1 than on changing records)."""
    from modelloop.serving.runtime import load_runtime

    rt = load_runtime(ws)
    out = []
    rng = np.random.default_rng(0)
    for size in (1, 1024):
        batches = [[records[i] for i in rng.choice(len(records), size, replace=size > len(records))]
                   for _ in range(max(8, 2048 // size))]
        n, start = 0, time.perf_counter()
        lat = []
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            rt.predict(batches[(n // size) % len(batches)])
            lat.append(time.perf_counter() - t)
            n += size
        took = time.perf_counter() - start
        out.append({"setting": f"ort-inproc (batch {size}, {rt.variant})", "c": 1, "rps": n / took,
                    "p50": float(np.percentile(lat, 50)) * 1000, "p99": float(np.percentile(lat, 99)) * 1000,
                    "errors": 0, "unit": "records/s"})
    return out


# ---- main ----------------------------------------------------------------------------------------
def existing_project(root: Path) -> tuple[Any, list[dict[str, Any]]]:
    """A project another command trained (``make demo`` leaves one in ``demo/``) and 500 records of
    its production model's dataset, as that model's input schema has them."""
    from modelloop.config import load_config
    from modelloop.data.ingest import load_dataset
    from modelloop.data.schema import Schema
    from modelloop.project import Project
    from modelloop.registry import resolve_model
    from modelloop.serving.runtime import to_records

    project = Project(load_config(root / "modelloop.yaml"))
    row = resolve_model(project.workspace)
    _, df, _ = load_dataset(project.workspace, row["dataset_id"])
    schema = row["input_schema"]
    allowed = set(schema["columns"]) - {schema["target"]}
    sample = df[[c for c in df.columns if c in allowed]].sample(min(500, len(df)), random_state=0)
    print(f"serving {row['name']}:{row['version']} of {root}", file=sys.stderr)
    return project, [{k: v for k, v in r.items() if k in allowed}
                     for r in to_records(sample, Schema.from_dict(schema))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--budget", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--targets", nargs="+", default=["modelloop", "noop", "mlflow"])
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw",
                    help="load generator: bare asyncio HTTP/1.1 (default) or httpx.AsyncClient")
    ap.add_argument("--optimized", action="store_true",
                    help="serve the version `modelloop optimize` registers (promoted), not the trained one")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every server this many times, alternating; report medians and each round's ratio")
    ap.add_argument("--dir", type=Path, default=None,
                    help="project folder, kept afterwards; a folder an earlier run trained is served again "
                         "without training (default: a temp dir)")
    ap.add_argument("--project", type=Path, default=None,
                    help="serve this existing project's production model as it is (for example `demo/`, "
                         "which `make demo` leaves); nothing is trained or deleted")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--_serve", dest="serve", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        run_server(args.serve, args.dir, args.port)
        return
    root = args.project or args.dir or Path(tempfile.mkdtemp(prefix="modelloop-bench-"))
    keep = args.project is not None or args.dir is not None
    try:
        project, records = existing_project(root) if args.project else build_project(root, args.rows, args.budget)
        ws = project.workspace
        name = project.config.name
        served = ws.catalog.get_model(name, ws.catalog.get_alias(name, "production"))
        if args.optimized and (served.get("info") or {}).get("variant"):  # a reused --dir, optimized before
            print(f"serving {name}:{served['version']} (optimize variant {served['info']['variant']})",
                  file=sys.stderr)
        elif args.optimized:
            opt = project.optimize(promote=True)  # what `make demo` does
            print(f"optimize chose {opt['chosen']}: serving version {opt['model']['version']}", file=sys.stderr)
        row = ws.catalog.get_model(name, ws.catalog.get_alias(name, "production"))
        bodies = [json.dumps({"records": [r]}).encode() for r in records]
        mlflow_bodies = [json.dumps({"dataframe_records": [r]}).encode() for r in records]
        results = inproc(ws, records, min(args.seconds, 3))
        for rnd in range(args.rounds):  # rounds alternate the servers, so a busy spell hits them alike
            for kind in args.targets:
                proc, url, path = start(kind, root, ws.tracking_url, row["formats"]["native"])
                try:
                    warm_up(url + path, (mlflow_bodies if kind == "mlflow" else bodies)[0])
                    for c in args.concurrency:
                        before = batch_stats(url) if kind == "modelloop" else None
                        loop = raw_closed_loop if args.client == "raw" else closed_loop
                        res = asyncio.run(loop(url + path, mlflow_bodies if kind == "mlflow" else bodies,
                                               c, args.seconds))
                        if before is not None:
                            after = batch_stats(url)
                            res["batch"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
                        results.append({"setting": kind, "c": c, **res, "unit": "req/s", "round": rnd})
                        print(f"  {kind:10s} c={c:<3d} {res['rps']:8.0f} req/s  p50 {res['p50']:7.2f} ms  "
                              f"p99 {res['p99']:7.2f} ms  errors {res['errors']}", file=sys.stderr)
                finally:
                    stop(proc)
        report(results, row, args.client)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def report(results: list[dict[str, Any]], row: dict[str, Any], client: str) -> None:
    variant = row["info"].get("variant")
    families = (row["info"].get("description") or {}).get("families")
    what = ", ".join(x for x in (str(families) if families else "", f"optimize variant {variant}" if variant else "") if x)
    print(f"\nmodel {row['name']}:{row['version']} ({what}), "
          f"{os.cpu_count()} CPUs, single-record requests, closed loop ({client} client on the same machine)\n")
    rounds = len({r["round"] for r in results if "round" in r})
    if rounds > 1:
        print(f"medians of {rounds} alternating rounds; range = lowest-highest throughput\n")
    print(f"{'setting':34s} {'conc':>4s} {'throughput':>12s} {'p50 ms':>8s} {'p99 ms':>8s} {'batch':>6s} {'err':>4s}"
          + ("  range" if rounds > 1 else ""))
    for r in _medians(results):
        batch = f"{r['batch']:6.1f}" if "batch" in r else "      "
        spread = f"  {r['low']:.0f}-{r['high']:.0f}" if "low" in r else ""
        print(f"{r['setting']:34s} {r['c']:4d} {r['rps']:9.0f} {r['unit'][:-2]:>2s} "
              f"{r['p50']:8.2f} {r['p99']:8.2f} {batch} {r['errors']:4d}{spread}")
    print()
    for c in sorted({r["c"] for r in results if r["setting"] == "modelloop"}):
        # each ratio from one round's pair of servers, then the median over rounds
        pairs = [(_one(results, "modelloop", c, k), _one(results, "noop", c, k), _one(results, "mlflow", c, k))
                 for k in range(max(rounds, 1))]
        parts = []
        vs_peer = [ml["rps"] / peer["rps"] for ml, _, peer in pairs if ml and peer and peer["rps"]]
        if vs_peer:
            ml, _, peer = pairs[0]
            parts.append(f"vs mlflow {float(np.median(vs_peer)):5.1f}x throughput, "
                         f"p99 {ml['p99']:.1f} vs {peer['p99']:.1f} ms")
        of_noop = [100 * ml["rps"] / noop["rps"] for ml, noop, _ in pairs if ml and noop and noop["rps"]]
        if of_noop:
            each = f" (rounds: {', '.join(f'{x:.0f}%' for x in of_noop)})" if len(of_noop) > 1 else ""
            parts.append(f"{float(np.median(of_noop)):3.0f}% of noop{each}")
        print(f"c={c:<3d} modelloop: " + "; ".join(parts))


def _one(results: list[dict[str, Any]], setting: str, c: int, rnd: int) -> dict[str, Any] | None:
    return next((r for r in results if r["setting"] == setting and r["c"] == c and r.get("round", 0) == rnd), None)


def _medians(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setting, c): the median of its rounds' figures, with the throughput range."""
    out: list[dict[str, Any]] = []
    for key in dict.fromkeys((r["setting"], r["c"]) for r in results):
        runs = [r for r in results if (r["setting"], r["c"]) == key]
        if len(runs) == 1:
            out.append(runs[0])
            continue
        row = {**runs[0], **{k: float(np.median([r[k] for r in runs])) for k in ("rps", "p50", "p99")},
               "errors": sum(r["errors"] for r in runs),
               "low": min(r["rps"] for r in runs), "high": max(r["rps"] for r in runs)}
        if all("batch" in r for r in runs):
            row["batch"] = float(np.median([r["batch"] for r in runs]))
        out.append(row)
    return out


if __name__ == "__main__":
    main()
