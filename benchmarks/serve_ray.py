"""Ray Serve throughput: `modelloop serve --engine ray` with 2 replicas against 1, on one local Ray.

    .venv/bin/python benchmarks/serve_ray.py [--rows 3000] [--budget 10] [--seconds 10] [--concurrency 16]
                                             [--rounds 2] [--dir D]

Trains the fraud example's model (``serving.build_project``), starts one Ray head on 127.0.0.1 with
this machine's CPUs, then serves the same project as 1 and as 2 Ray Serve replicas (``serve.min_replicas
= serve.max_replicas``, one CPU each), alternating each round, and drives Ray's proxy with the closed
loop of single-record requests ``benchmarks/serving.py`` uses. Prints requests/s, p50, p99 per setting,
the 2-vs-1 ratio of each round and the load average before and after. Goal (issue 24 part 6): more
throughput from 2 replicas than from 1; on a 2-core machine the client, Ray's proxy and both replicas
share the same cores, so the ratio there says little about a cluster.
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

import numpy as np
import yaml
from serving import build_project, free_port, raw_closed_loop, stop, wait_until_ready, warm_up

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
MODELLOOP = str(Path(sys.executable).with_name("modelloop"))


def start_head(temp: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", f"--port={port}",
                             "--num-cpus", str(os.cpu_count() or 2), "--num-gpus", "0", "--include-dashboard",
                             "false", "--disable-usage-stats", f"--temp-dir={temp}"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:       # a serve started before the head answers exits 2
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return head, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("Ray's head did not answer in 120 s")


def serve_replicas(root: Path, address: str, replicas: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``modelloop serve`` of ``root`` as ``replicas`` Ray Serve replicas; the process and its base URL."""
    port = free_port()
    cfg = yaml.safe_load((root / "modelloop.yaml").read_text())
    cfg["serve"] = {"engine": "ray", "min_replicas": replicas, "max_replicas": replicas, "port": port,
                    "replica_cpus": 1}
    cfg["compute"] = {"address": address}
    (root / "modelloop.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([MODELLOOP, "serve", "-c", str(root / "modelloop.yaml")],
                            env={**env, "MODELLOOP_API_KEYS": ""}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(root / f"serve-{replicas}.log", "ab"))
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--budget", type=float, default=10)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="project folder (reused when already trained)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    root = args.dir or Path(tempfile.mkdtemp(prefix="serve-ray-"))
    _project, records = build_project(root, args.rows, args.budget)
    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    temp = tempfile.mkdtemp(prefix="mlray", dir="/tmp")       # Ray's socket paths must stay short
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": temp}
    head, address = start_head(temp, env)
    rows: list[dict] = []
    try:
        for rnd in range(args.rounds):
            for n in ((1, 2) if rnd % 2 == 0 else (2, 1)):
                proc, url = serve_replicas(root, address, n, env)
                try:
                    wait_until_ready(f"{url}/v1/ready", proc, timeout=300)
                    warm_up(f"{url}/v1/predict", bodies[0])
                    out = asyncio.run(raw_closed_loop(f"{url}/v1/predict", bodies, args.concurrency, args.seconds))
                finally:
                    if proc.poll() is None:
                        stop(proc)
                rows.append({"round": rnd, "replicas": n, **out})
                print(f"round {rnd} replicas {n}: {out['rps']:.0f} req/s  p50 {out['p50']:.1f} ms  "
                      f"p99 {out['p99']:.1f} ms  errors {out['errors']}", file=sys.stderr, flush=True)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
    print(f"\nRay Serve, concurrency {args.concurrency}, {args.seconds:g} s a setting, {args.rounds} rounds "
          f"(load before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    print(f"{'replicas':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for n in (1, 2):
        mine = [r for r in rows if r["replicas"] == n]
        print(f"{n:>8} {np.median([r['rps'] for r in mine]):>8.0f} {np.median([r['p50'] for r in mine]):>8.1f} "
              f"{np.median([r['p99'] for r in mine]):>8.1f}")
    ratios = [next(r["rps"] for r in rows if r["round"] == k and r["replicas"] == 2)
              / max(1e-9, next(r["rps"] for r in rows if r["round"] == k and r["replicas"] == 1))
              for k in range(args.rounds)]
    print(f"2 replicas / 1: {np.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
