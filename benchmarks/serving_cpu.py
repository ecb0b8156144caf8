"""Serving CPU per request, without the network: the ASGI app driven in-process, CPU by thread.

    .venv/bin/python benchmarks/serving_cpu.py (--dir D | --project P) [--concurrency 16] [--requests 16000] [--rounds 3]

``D`` is a project folder that ``benchmarks/serving.py --dir D`` trained (its production model is
served); ``--project P`` serves an existing project's production model as it is (``make demo``'s
``demo/``; nothing is trained or written there), with 500 records of that model's dataset. ``c`` coroutines each send their next single-record request when the last one is answered,
straight into the app (no sockets, no HTTP parser). Alternating in the same process:

* **modelloop**  ``POST /v1/predict``: validation, micro-batching, ONNX Runtime, prediction log
* **noop**       a route on the same app and middleware that reads the body and returns a constant
                 (the peer: what the app stack itself costs)

Printed per round and route: requests/s and CPU µs per request, in all and per thread (the event loop,
the inference worker, the prediction-log writer). CPU time is less noisy on a shared machine than
throughput over a socket, and it says where a request's cost goes; ``benchmarks/serving.py`` gives
the over-the-wire figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request  # module level: FastAPI resolves the noop route's annotations here

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _thread_cpu() -> dict[str, float]:
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        out[tid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def _scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}


async def _call(app: Any, method: str, path: str, body: bytes) -> int:
    sent, status = False, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(method, path, body), receive, send)
    return status[0]


async def _drive(app: Any, path: str, bodies: list[bytes], concurrency: int, n: int) -> dict[str, Any]:
    async def client(k: int) -> None:
        for i in range(n // concurrency):
            status = await _call(app, "POST", path, bodies[(k * 31 + i) % len(bodies)])
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")

    await client(0)  # warm-up
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    before, t0 = _thread_cpu(), time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    wall, after = time.perf_counter() - t0, _thread_cpu()
    done = concurrency * (n // concurrency)
    names.update({str(t.native_id): t.name for t in threading.enumerate()})
    per = {names.get(tid, tid): (cpu - before.get(tid, 0.0)) / done * 1e6 for tid, cpu in after.items()}
    return {"rps": done / wall, "cpu_us": sum(per.values()), "threads": {k: v for k, v in per.items() if v >= 1}}


async def _main(args: argparse.Namespace) -> None:
    from fastapi import Response

    import serving as bench  # benchmarks/serving.py: the project and its records
    from modelloop.serving import ServeConfig, create_app

    project, records = (bench.existing_project(args.project) if args.project
                        else bench.build_project(args.dir, 5000, 20))
    app = create_app(project.workspace, config=ServeConfig(reload_poll_seconds=0), api_keys=[])

    @app.post("/v1/noop")
    async def noop(request: Request) -> Response:
        await request.body()
        return Response(b'{"predictions":[{"label":0}]}', media_type="application/json")

    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    ratios = []
    async with app.router.lifespan_context(app):
        for _ in range(600):  # the model loads in the background
            if await _call(app, "GET", "/v1/ready", b"") == 200:
                break
            await asyncio.sleep(0.1)
        for rnd in range(args.rounds):
            got = {}
            for name, path in (("modelloop", "/v1/predict"), ("noop", "/v1/noop")):
                r = got[name] = await _drive(app, path, bodies, args.concurrency, args.requests)
                threads = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["threads"].items(), key=lambda kv: -kv[1]))
                print(f"round {rnd + 1}  {name:9s} {r['rps']:7.0f} req/s  CPU {r['cpu_us']:5.0f} us/req  ({threads})")
            ratios.append(got["modelloop"]["cpu_us"] / got["noop"]["cpu_us"])
    print(f"\nc={args.concurrency}: modelloop CPU per request / noop's: median {float(np.median(ratios)):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", type=Path, help="a project benchmarks/serving.py --dir trained")
    where.add_argument("--project", type=Path, help="an existing project (make demo's demo/), served as it is")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=16000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.dir is not None and not (args.dir / "modelloop.yaml").exists():
        ap.error(f"{args.dir} has no modelloop.yaml; train one first: benchmarks/serving.py --dir {args.dir}")
    if args.project is not None and not (args.project / "modelloop.yaml").exists():
        ap.error(f"{args.project} has no modelloop.yaml")
    try:
        import uvloop  # the event loop `modelloop serve` runs on (the `serve` extra)
    except ImportError:
        uvloop = None
    (uvloop.run if uvloop is not None else asyncio.run)(_main(args))


if __name__ == "__main__":
    main()
