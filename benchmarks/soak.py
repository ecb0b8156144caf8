"""Soak: `modelloop serve` under a fixed request rate for a bounded time; zero errors, flat memory.

    .venv/bin/python benchmarks/soak.py [--seconds 60] [--rate 200] [--feedback-every 10] [--max-growth-mib 10]

Trains a small model on the bundled fraud example (``serving.py``'s ``build_project``), starts the
server in its own process (``serve(ws)``: 1 worker, prediction log on, as ``modelloop serve`` runs),
then sends single-record ``POST /v1/predict`` requests at ``--rate`` per second, open loop: request
i is due at start + i / rate whatever the earlier answers did, and its latency counts from that due
time, so a stalled server shows in p99 instead of silently lowering the rate. Every
``--feedback-every``-th answered prediction also gets a ``POST /v1/feedback`` (a synchronous
catalog write). The server's RSS is read from /proc every second.

Prints requests sent, errors by kind (non-2xx by status, timeouts, connection errors), p50/p99,
and RSS at start, after the warm-up (the first ``--warmup`` seconds: model, ONNX session, SQLite
and allocator pools reach their working size) and at the end. Growth is the median of the last 5
samples minus the median of the 5 after the warm-up. Exit code 1 on any error or a growth above
``--max-growth-mib``. Linux only (/proc). Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

from serving import build_project, start, stop  # benchmarks/serving.py (this script's folder is on sys.path)

TIMEOUT_S = 5.0


class Connection:
    """One keep-alive HTTP/1.1 connection over bare asyncio streams (see serving.py: httpx costs 10x)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write((f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                          + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return int(head.split(b" ", 2)[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


async def soak(url: str, pid: int, bodies: list[bytes], args: argparse.Namespace) -> dict:
    """Drive the server for ``args.seconds``; returns counts, latencies and RSS samples."""
    host, port = url.removeprefix("http://").split(":")
    total = int(args.seconds * args.rate)
    latencies: list[float] = []
    errors: Counter = Counter()
    sent: Counter = Counter()
    rss: list[tuple[float, float]] = [(0.0, rss_mib(pid))]
    next_i = 0
    t0 = time.perf_counter() + 0.1

    async def call(conn: Connection, path: str, body: bytes) -> bytes | None:
        sent[path] += 1
        try:
            status, answer = await asyncio.wait_for(conn.post(path, body), TIMEOUT_S)
        except asyncio.TimeoutError:
            errors[f"{path} timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, StopIteration) as exc:
            errors[f"{path} {type(exc).__name__}"] += 1
        else:
            if 200 <= status < 300:
                return answer
            errors[f"{path} HTTP {status}"] += 1
        conn.close()                                     # a fresh connection for the next request
        return None

    async def client() -> None:
        nonlocal next_i
        conn = Connection(host, int(port))
        while next_i < total:
            i, next_i = next_i, next_i + 1
            due = t0 + i / args.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            answer = await call(conn, "/v1/predict", bodies[i % len(bodies)])
            if answer is not None:
                latencies.append(time.perf_counter() - due)
            if answer is not None and args.feedback_every and i % args.feedback_every == 0:
                rid = json.loads(answer)["request_id"]
                await call(conn, "/v1/feedback", json.dumps({"request_id": rid, "label": i % 2}).encode())
        conn.close()

    async def sample() -> None:
        while next_i < total:
            await asyncio.sleep(1.0)
            rss.append((time.perf_counter() - t0, rss_mib(pid)))

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(client() for _ in range(args.connections)))
    sampler.cancel()
    rss.append((time.perf_counter() - t0, rss_mib(pid)))
    return {"sent": sent, "errors": errors, "latencies": latencies, "rss": rss,
            "seconds": time.perf_counter() - t0}


def report(res: dict, args: argparse.Namespace) -> bool:
    """Print the figures; True when there was no error and the growth is within the threshold."""
    lat = np.asarray(res["latencies"]) * 1000
    rss = res["rss"]
    after = [m for t, m in rss if t >= args.warmup]
    warm, end = statistics.median(after[:5]), statistics.median(after[-5:])
    growth = end - warm
    n_errors = sum(res["errors"].values())
    ok = n_errors == 0 and growth <= args.max_growth_mib
    print(f"soak: {args.seconds:.0f} s at {args.rate:.0f} predict/s (open loop, {args.connections} keep-alive "
          f"connections, 1 record each), feedback on every {args.feedback_every}th answer; "
          f"{date.today().isoformat()}")
    print(f"requests sent   {sum(res['sent'].values())} ({', '.join(f'{p} {n}' for p, n in res['sent'].items())}) "
          f"in {res['seconds']:.1f} s")
    print(f"errors          {n_errors}" + (f" ({', '.join(f'{k}: {n}' for k, n in res['errors'].items())})"
                                          if n_errors else " (non-2xx 0, timeouts 0, connection 0)"))
    print(f"predict latency p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms, "
          f"max {lat.max():.1f} ms (from each request's due time)")
    print(f"server RSS      start {rss[0][1]:.1f} MiB, after {args.warmup:.0f} s warm-up {warm:.1f} MiB, "
          f"end {end:.1f} MiB, max {max(m for _, m in rss):.1f} MiB ({len(rss)} samples)")
    print(f"growth after warm-up {growth:+.1f} MiB (threshold {args.max_growth_mib:.0f} MiB): "
          f"{'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=200, help="predict requests per second")
    ap.add_argument("--feedback-every", type=int, default=10, help="0: no feedback")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--max-growth-mib", type=float, default=10)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--budget", type=float, default=10)
    args = ap.parse_args()
    if args.seconds < args.warmup + 10:
        ap.error(f"--seconds must be at least --warmup + 10 ({args.warmup + 10:.0f})")
    root = Path(tempfile.mkdtemp(prefix="modelloop-soak-"))
    try:
        project, records = build_project(root, args.rows, args.budget)
        bodies = [json.dumps({"records": [r]}).encode() for r in records]
        proc, url, _ = start("modelloop", root, project.workspace.tracking_url, "")
        try:
            res = asyncio.run(soak(url, proc.pid, bodies, args))
        finally:
            stop(proc)
        return 0 if report(res, args) else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
