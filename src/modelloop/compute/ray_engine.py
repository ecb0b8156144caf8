"""The ``ray`` engine: modelloop decides admission, order and preemption; Ray places and runs.

Each admitted job is one Ray task asking for the job's ``num_cpus``, ``num_gpus`` and ``memory``; the
task runs the job's command (the same runner as the local engine) in the job's folder, so a cluster
needs the project folder at the same path on its nodes (one machine, or a shared file system). Ray
sets ``CUDA_VISIBLE_DEVICES`` for the task's GPUs. A stop is ``ray.cancel`` (KeyboardInterrupt in the
task), which the task turns into SIGTERM to the job's process group and SIGKILL after the grace. The
worker's pool is the cluster's resources.

``compute.address``: ``auto`` starts a local Ray on 127.0.0.1; any other address is a running
cluster's (``HOST:PORT`` of its GCS, or ``ray://HOST:PORT`` for Ray Client). An address that does not
answer is the user's to fix: a one-line error naming it and the command that starts one.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .engines import JOB_LAUNCHER, Handle
from .config import PoolConfig
from .resources import Resources, machine_pool

__all__ = ["JOB_CPUS", "RayEngine", "check_address", "cluster_pool", "connect_ray", "cpus_beside_job",
           "local_ray_pool", "read_cluster"]

# The CPUs a job of the Ray engine holds on its worker's Ray (set in the job's environment, beside RAY_ADDRESS)
JOB_CPUS = "MODELLOOP_JOB_CPUS"

_HOW = "start one with `ray start --head --node-ip-address 127.0.0.1` or set compute.address: auto"


def check_address(address: str, timeout: float = 3.0) -> tuple[str, int] | None:
    """(host, port) of a cluster address that accepts a TCP connection; ConfigError when it does not.
    None for ``auto`` (a local Ray is started)."""
    if address == "auto":
        return None
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if parts.scheme == "ray" else 6379)
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ConfigError(f"compute.address: must be auto, ray://HOST:PORT or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"compute.address: no Ray cluster answers at {address} ({exc.strerror or exc}); {_HOW}") \
            from None
    return host, port


def connect_ray(address: str, cpus: float | None = None, gpus: int | None = None, memory: int | None = None) -> Any:
    """Check ``address`` answers, then join it (or start a local Ray for ``auto``, with ``compute.pool``'s
    figures where given: ``memory`` becomes Ray's ``memory`` resource); the ``ray`` module. A job the Ray
    engine runs has ``RAY_ADDRESS`` (Ray's own variable) set to its worker's Ray, which ``auto`` then joins:
    the Ray tasks and Ray Train workers the job starts share that worker's pool instead of a second local Ray."""
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    check_address(address)
    try:
        import ray
    except ImportError:
        raise ConfigError("compute.engine: ray needs Ray installed: pip install 'modelloop[ray]'") from None
    if not ray.is_initialized():
        if address == "auto":
            given: dict[str, Any] = {} if memory is None else {"_memory": int(memory)}
            ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                     num_cpus=None if cpus is None else int(cpus), num_gpus=gpus, **given)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def cluster_pool(ray: Any) -> Resources:
    """The cluster's resources as the scheduler's pool (Ray's own names for the custom ones kept)."""
    res = dict(ray.cluster_resources())
    custom = {k: float(v) for k, v in res.items()
              if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")
              and not k.startswith("accelerator_type:")}
    return Resources(cpus=float(res.get("CPU", 0)), gpus=int(res.get("GPU", 0)), memory=int(res.get("memory", 0)),
                     custom=custom)


def cpus_beside_job(ray: Any) -> tuple[float, float]:
    """(the CPUs of the cluster ``ray`` is joined to, those of them the job running this process holds):
    the Ray tasks or Ray Train workers a job starts cannot have the CPUs its own Ray task holds. Only a
    job of the Ray engine holds any (``JOB_CPUS``), and only on its worker's Ray (``RAY_ADDRESS``)."""
    total = float(ray.cluster_resources().get("CPU", 0))
    held, joined = os.environ.get(JOB_CPUS), os.environ.get("RAY_ADDRESS")
    if not held or not joined or not _same_address(ray, joined, ray.get_runtime_context().gcs_address):
        return total, 0.0
    return total, float(held)


def _same_address(ray: Any, one: str, other: str) -> bool:
    """Whether two ``HOST:PORT`` name the same Ray: Ray reports a loopback host it was given as this
    node's IP address (``127.0.0.1:6379`` joined is ``192.0.2.2:6379``)."""
    if one == other:
        return True

    def canonical(address: str) -> tuple[str, str]:
        host, _, port = address.rpartition(":")
        return (ray.util.get_node_ip_address() if host in ("127.0.0.1", "localhost", "::1") else host), port

    return canonical(one) == canonical(other)


def local_ray_pool(cfg: PoolConfig) -> Resources:
    """What the local Ray that ``compute.address: auto`` starts will have: ``compute.pool``'s figures, this
    machine's CPUs and GPUs where it leaves them out, and for memory left out Ray's own figure, not the
    machine's: the memory available now less Ray's object store (15.0 of 23.6 GiB on the 2-core test
    machine), which is all a job there can ask for. The machine's where Ray is not installed."""
    pool = machine_pool(cfg)
    if cfg.memory is None:
        try:
            from ray._private.resource_and_label_spec import ResourceAndLabelSpec
        except ImportError:  # no Ray (connect_ray says how to install it), or its internals moved
            return pool
        spec = ResourceAndLabelSpec().resolve(is_head=True, node_ip_address="127.0.0.1")
        pool = dataclasses.replace(pool, memory=int(spec.memory or 0))
    return pool


def read_cluster(address: str) -> tuple[Resources | None, str]:
    """The resources of the cluster at ``address`` for ``jobs submit``'s check (joined, read, left), or
    (None, why) when it does not answer or Ray is not installed: the job is queued unchecked then."""
    try:
        check_address(address)
    except ConfigError:
        return None, f"no Ray cluster answers at {address} now"
    try:
        import ray
    except ImportError:
        return None, "Ray is not installed here"
    if ray.is_initialized():
        return cluster_pool(ray), ""
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # any failure to join leaves the job unchecked, said so
        return None, f"the Ray cluster at {address} could not be joined ({type(exc).__name__})"
    try:
        return cluster_pool(ray), ""
    finally:
        ray.shutdown()


def _run_job(argv: list[str], root: str, log: str, env: dict[str, str], grace: float) -> tuple[int, int | None]:
    """The Ray task: the job's process, stopped with SIGTERM then SIGKILL when the task is cancelled."""
    full_env = {**os.environ, **env}     # Ray's CUDA_VISIBLE_DEVICES for this task's GPUs included
    with open(log, "ab") as err, open(Path(log).with_suffix(".out"), "wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024
            time.sleep(0.05)
    except KeyboardInterrupt:      # ray.cancel: the graceful stop
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)
        return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024


class RayEngine:
    """Jobs as Ray tasks with the resources the job asked for."""

    def __init__(self, ray: Any, launcher: tuple[str, ...] | list[str] = JOB_LAUNCHER, grace: float = 30.0):
        self.ray, self.launcher, self.grace = ray, list(launcher), grace
        self._task = ray.remote(max_retries=0)(_run_job)

    def start(self, job: dict[str, Any], gpus: list[int]) -> Handle:
        """Submit the job's task; ``gpus`` (the local engine's indices) is Ray's to choose here."""
        res = job["resources"]
        log = Path(job["logs"])
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as err:
            err.write(f"--- attempt {job['attempts']} (ray) ---\n".encode())
        opts: dict[str, Any] = {"num_cpus": res.get("cpus", 1), "num_gpus": res.get("gpus", 0)}
        if res.get("memory"):
            opts["memory"] = int(res["memory"])
        if res.get("custom"):
            opts["resources"] = dict(res["custom"])
        # the job's own Ray work (search trials, Ray Train workers) joins this Ray: connect_ray's auto
        env = {"MODELLOOP_JOB_ID": str(job["id"]), "PYTHONUNBUFFERED": "1",
               "RAY_ADDRESS": self.ray.get_runtime_context().gcs_address, JOB_CPUS: f"{opts['num_cpus']:g}"}
        ref = self._task.options(**opts).remote([*self.launcher, *job["command"]], job["root"], str(log), env,
                                                self.grace)
        return Handle(job_id=job["id"], pid=0, started=time.time(), popen=ref)

    def poll(self, h: Handle) -> bool:
        if h.exit_code is not None:
            return True
        ready, _ = self.ray.wait([h.popen], timeout=0)
        if not ready:
            if h.kill_at is not None and time.time() >= h.kill_at + 10:
                self.ray.cancel(h.popen, force=True)     # the task itself did not end: the last resort
                h.kill_at = None
            return False
        try:
            h.exit_code, h.peak_memory = self.ray.get(h.popen)
        except Exception:  # cancelled before it started, or the task was killed
            h.exit_code = -int(signal.SIGKILL)
        return True

    def stop(self, h: Handle, why: str, grace: float) -> None:
        if h.stop is None:
            h.stop = why
            h.kill_at = time.time() + grace
            self.ray.cancel(h.popen, force=False)
