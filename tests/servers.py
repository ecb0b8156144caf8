"""Real uvicorn servers on 127.0.0.1 for the end-to-end tests (serving and text tests alike)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app: Any, *, ready: bool = True, timeout: float = 60.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if ready:
            wait_ready(url, timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


SERVE_SCRIPT = """
import json, sys
from modelloop.config import parse_config
from modelloop.workspace import Workspace
from modelloop.serving import ServeConfig, serve
spec = json.loads(sys.argv[1])
ws = Workspace(parse_config(spec["raw"], root=spec["root"]))
serve(ws, port=spec["port"], workers=spec["workers"], config=ServeConfig(**spec["serve"]))
"""


def start_server(toy: Any, *, workers: int = 1, **serve: Any) -> tuple[subprocess.Popen, str]:
    """``serve(...)`` of ``toy``'s project (a ``tests/toy.py`` Toy: ``raw`` config and ``root``) in a
    subprocess with its own process group; returns the process and base URL."""
    port = free_port()
    spec = {"raw": toy.raw, "root": str(toy.root), "port": port, "workers": workers,
            "serve": {"reload_poll_seconds": 0, **serve}}
    env = {**os.environ, "MODELLOOP_API_KEYS": ""}
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, json.dumps(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def predict_all(url: str, records: list[dict[str, Any]], chunk: int = 200) -> list[dict[str, Any]]:
    """POST ``records`` to ``url``/v1/predict in requests of ``chunk``; the predictions, in order.
    Fails on the first answer that is not 200, with its body (which names the field at fault)."""
    import httpx

    out: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(0, len(records), chunk):
            body = json.dumps({"records": records[i:i + chunk]}, ensure_ascii=False).encode()
            r = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 200, f"records {i}..{i + chunk - 1}: {r.status_code} {r.text[:600]}"
            out.extend(r.json()["predictions"])
    return out


def served_equals_offline(ws: Any, frame: Any, target: str) -> tuple[list[dict[str, Any]], Any]:
    """Serve the production model of ``ws`` on 127.0.0.1, send ``frame``'s rows (without ``target``) as a
    client would, and check the answers' probabilities equal the loaded model's offline ones. Returns the
    served answers and the model."""
    import numpy as np

    from modelloop.registry import load_model, resolve_model
    from modelloop.serving import ServeConfig, create_app

    inputs = frame.drop(columns=[target])
    records = json.loads(inputs.to_json(orient="records", force_ascii=False))
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        served = predict_all(url, records)
    model = load_model(ws, resolve_model(ws))
    offline = model.predict_proba(inputs)
    got = np.array([[p["probabilities"][str(c)] for c in model.classes_] for p in served])
    np.testing.assert_allclose(got, offline, atol=1e-4)
    return served, model
