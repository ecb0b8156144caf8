"""``modelloop serve --engine ray``: the local server's app as Ray Serve replicas (serving/ray_serve.py).

The fast tests cover what runs without Ray: a replica builds the very app of ``serve --workers`` from the
same spec and keys, the deployment's replica options, and each refusal (exit 2). The slow one serves a
real model from two replicas on a real local Ray head, promotes under load, then reloads through one
replica and checks both swapped before the answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from clirun import cli
from jobs_toy import linear_project, make_project, ray_head, table_records, wait_for
from servers import free_port, running, wait_ready
from toy import RAW_CONFIG

from modelloop.config import parse_config
from modelloop.project import Project
from modelloop.registry import promote
from modelloop.serving import ServeConfig, runtime
from modelloop.serving.launch import build_app, worker_env
from modelloop.serving.ray_serve import Replica, deployment_options

KEY = "ray-test-key"


def test_a_replica_builds_the_servers_app_with_its_keys_and_secret(tmp_path, monkeypatch):
    """No model here (registering one costs MLflow's ~10 s start): the key is checked before readiness."""
    ws = Project(parse_config(RAW_CONFIG, root=tmp_path)).workspace
    cfg = ServeConfig(reload_poll_seconds=0)
    env = {**worker_env(ws, cfg, None), "MODELLOOP_API_KEYS": KEY}
    for name in env:                 # the replica sets its environment: restored after the test
        monkeypatch.setenv(name, "")
    real_load = runtime.load_runtime

    def slow_load(*args, **kwargs):          # the model load takes a while, as a real one does
        time.sleep(1.0)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(runtime, "load_runtime", slow_load)
    app = Replica(env, "modelloop.serving.launch:app_from_env").__serve_build_asgi_app__()
    assert {r.path for r in app.routes} == {r.path for r in build_app(ws, cfg, None).routes}
    with running(app, ready=False) as url, httpx.Client(base_url=url, timeout=30) as c:
        wait_for(lambda: _answers(c, "/v1/health"), what="the server to answer")
        # the replica's startup waited for the first load: its first answer already has the load's outcome
        ready = c.get("/v1/ready")
        assert ready.status_code == 503 and "has no model yet" in ready.text, ready.text
        body = {"records": table_records(3)}
        assert c.post("/v1/predict", json=body).status_code == 401
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer other"}).status_code == 401
        r = c.post("/v1/predict", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 503 and "model" in r.text, r.text      # let in; no model registered yet
    assert os.environ["MODELLOOP_SERVE_SECRET"] == env["MODELLOOP_SERVE_SECRET"]  # one secret for every replica


def _answers(c: httpx.Client, path: str) -> bool:
    try:
        return c.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def test_replicas_are_a_fixed_count_or_autoscaled_between_the_bounds():
    fixed = deployment_options(ServeConfig(min_replicas=2, max_replicas=2, replica_cpus=0.5), "/tmp/m")
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.5,
                                          "runtime_env": {"env_vars": {"PROMETHEUS_MULTIPROC_DIR": "/tmp/m"}}}
    scaled = deployment_options(ServeConfig(min_replicas=1, max_replicas=4, max_batch_size=32))
    assert "num_replicas" not in scaled and scaled["max_ongoing_requests"] == 32
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "initial_replicas": 1}


@pytest.mark.parametrize(("args", "serve", "compute", "message"), [
    (["--engine", "ray", "--workers", "2"], {}, {}, "serve.workers: 2 processes with serve.engine: ray"),
    (["--engine", "rya"], {}, {}, "serve --engine: must be local or ray, got 'rya'"),
    ([], {"engine": "ray", "min_replicas": 3, "max_replicas": 2}, {},
     "serve.max_replicas: must be >= serve.min_replicas (3), got 2"),
    (["--engine", "ray"], {}, {"address": "127.0.0.1:{port}"}, "no Ray cluster answers at 127.0.0.1:{port}"),
])
def test_refusals_exit_2_with_one_line(tmp_path, capsys, args, serve, compute, message):
    port = free_port()
    compute = {k: v.format(port=port) for k, v in compute.items()}
    config = make_project(tmp_path, compute)
    raw = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**raw, "serve": serve}))
    code, _, err = cli(["serve", *args], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message.format(port=port) in err


@pytest.mark.slow
def test_two_ray_serve_replicas_answer_with_the_local_contract_and_swap_on_promotion(tmp_path):
    """Slow (Ray's head, Serve's controller, proxy and replicas: ~40-60 s on a quiet machine, 145 s at load
    8-12). The app each replica builds is checked fast by test_a_replica_builds_the_servers_app_with_its_keys_and_secret,
    the hot swap of one server by tests/serving/test_hot_swap.py, a reload of every replica through the
    broadcast by tests/serving/test_reload_broadcast.py."""
    pytest.importorskip("ray.serve")
    port = free_port()
    with ray_head(cpus=2) as (address, env):
        project = linear_project(tmp_path / "p", serve={"port": port, "engine": "ray", "min_replicas": 2,
                                                  "max_replicas": 2, "reload_poll_seconds": 1.0},
                           compute={"address": address})
        ws = project.workspace
        proc = subprocess.Popen([str(Path(sys.executable).with_name("modelloop")), "serve", "-c", str(ws.root / "modelloop.yaml")],
                                env={**env, "MODELLOOP_API_KEYS": KEY}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {KEY}"}
        try:
            wait_ready(url, timeout=150, proc=proc)
            assert httpx.post(f"{url}/v1/predict", json={"records": table_records(1)}, timeout=30).status_code == 401
            seen, errors, _ = asyncio.run(_promote_under_load(url, auth, ws))
            assert not errors, errors[:5]
            versions = [v for _, v in seen]
            assert versions[0] == 1 and versions[-40:] == [2] * 40, versions[-60:]
            # /v1/admin/reload on whichever replica answers it answers once both replicas have swapped
            promote(ws, "toy:1")
            seen, errors, reload = asyncio.run(_promote_under_load(url, auth, ws, reload=True))
            assert not errors, errors[:5]
            assert reload["model"]["version"] == 1 and len(reload["replicas"]) == 2, reload
            assert {r["version"] for r in reload["replicas"]} == {1}, reload
            after = [v for t, v in seen if t >= reload["answered"]]
            assert after and set(after) == {1}, after
            # an id issued by either replica is taken by whichever answers the feedback (one secret)
            with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
                ids = [p["request_id"] for p in c.post("/v1/predict", json={"records": table_records(8)}).json()
                       ["predictions"]]
                codes = [c.post("/v1/feedback", json={"request_id": i, "label": 1}).status_code for i in ids]
            assert codes == [201] * 8, codes
            # /metrics counts every replica's answers, whichever replica serves the scrape
            assert _predictions_answered(url) >= len(seen) + 1
            assert _running_replicas(address, env) == 2
            # the cluster's one proxy already listens on this port: another port is refused, not ignored
            other = subprocess.run([str(Path(sys.executable).with_name("modelloop")), "serve", "-c",
                                    str(ws.root / "modelloop.yaml"), "--port", str(free_port())],
                                   env=env, capture_output=True, text=True, timeout=120)
            assert other.returncode == 2 and f"already listens on http://127.0.0.1:{port}" in other.stderr, \
                other.stderr[-2000:]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            finally:
                os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        assert code == 0, proc.stderr.read()[-3000:] if proc.stderr else ""


async def _promote_under_load(url: str, auth: dict, ws, reload: bool = False) -> tuple[list, list, dict]:
    """8 clients predict while ``toy:2`` is promoted in the catalog, or (``reload``) while
    ``/v1/admin/reload`` is asked; (time sent, version) of every answer, the errors, the reload's answer
    (with ``answered``: when it came)."""
    seen: list[tuple[float, int]] = []
    errors: list = []
    stop = asyncio.Event()
    records = table_records(8)

    async def client(k: int, c: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                sent = time.monotonic()
                r = await c.post("/v1/predict", json={"records": [records[k]]})
                if r.status_code == 200:
                    seen.append((sent, r.json()["model"]["version"]))
                else:
                    errors.append((r.status_code, r.text[:200]))
            except httpx.HTTPError as exc:
                errors.append(repr(exc))

    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as c:
        load = asyncio.gather(*(client(k, c) for k in range(8)))
        await asyncio.sleep(1.0)
        answer: dict = {}
        if reload:
            r = await c.post("/v1/admin/reload", timeout=120)
            answer = {**r.json(), "answered": time.monotonic()} if r.status_code == 200 else {"error": r.text}
            await asyncio.sleep(1.0)
        else:
            await asyncio.to_thread(promote, ws, "toy:2")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and [v for _, v in seen[-40:]] != [2] * 40:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        stop.set()
        await load
    return seen, errors, answer


def _predictions_answered(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "modelloop_requests_total" and s.labels == {"endpoint": "/v1/predict", "status": "200"})


def _running_replicas(address: str, env: dict[str, str]) -> int:
    """RUNNING replicas of the app, as Ray Serve reports them (asked from a driver of its own)."""
    code = (f"import ray; from ray import serve; ray.init(address={address!r}, log_to_driver=False); "
            "s = serve.status().applications['modelloop']; "
            "print(sum(d.replica_states.get('RUNNING', 0) for d in s.deployments.values()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])
