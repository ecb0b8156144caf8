"""The ``modelloop jobs`` API: submit, list, show, cancel, follow logs; and ``modelloop worker``.

Functions on a project's ``Workspace`` returning JSON-ready values; the CLI only prints them. A job is
a modelloop command run later in the project's folder, by a worker, with the resources it asked for.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import utcnow
from ..errors import ConfigError, cap_list
from ..workspace import Workspace
from .lifetime import sigterm_interrupts
from .predict import predict_demand
from .queue import FINISHED, WAITING, JobQueue
from .resources import Resources, asked_resources, machine_pool, parse_priority

__all__ = ["CommandInfo", "cancel_job", "follow_logs", "job_view", "list_jobs", "show_job", "start_worker",
           "submit_job"]

# Commands that manage the queue itself are not jobs.
NOT_JOBS = ("jobs", "worker")


@dataclass(frozen=True)
class CommandInfo:
    """What the CLI knows about one of its commands: whether it takes ``-c`` and ``--json``."""

    takes_config: bool
    takes_json: bool


def _queue(ws: Workspace) -> JobQueue:
    return JobQueue(ws.catalog)


def _job_command(ws: Workspace, command: list[str], commands: Mapping[str, CommandInfo], config: str) -> list[str]:
    """The arguments a worker runs: the user's, with this project's ``-c`` and ``--json`` added."""
    allowed = sorted(n for n in commands if n not in NOT_JOBS)
    if not command:
        raise ConfigError(f"jobs submit: give the modelloop command to run after --, one of {cap_list(allowed, 20)}")
    verb = command[0]
    if verb not in allowed:
        raise ConfigError(f"jobs submit: unknown command '{verb}'; a job runs one of {cap_list(allowed, 20)}")
    info, args = commands[verb], list(command)
    if info.takes_config and not {"-c", "--config"} & set(args) and not any(a.startswith("--config=") for a in args):
        args += ["-c", str(Path(config).resolve())]
    if info.takes_json and "--json" not in args:
        args.append("--json")              # the job's answer names the run / model version it made
    return args


def submit_job(ws: Workspace, command: list[str], commands: Mapping[str, CommandInfo], *, config: str,
               priority: str | int = "normal", cpus: float | None = None, gpus: int | None = None,
               memory: str | None = None, custom: list[str] | None = None,
               submitter: str | None = None) -> dict[str, Any]:
    """Queue ``modelloop COMMAND`` (one transaction); ``{"id"}``. Refused at once (ConfigError):
    an unknown command, a priority outside high/normal/low/0-100, more than the pool (or the Ray
    cluster, when it answers) has, naming both. ``notes``: what was decided for the user (a family's
    GPU default fallen back to CPU), kept in the job's ``notes``."""
    args = _job_command(ws, command, commands, config)
    level = parse_priority(priority)
    cfg = ws.config.compute
    pool, where, fix = _submit_pool(ws)
    declared = _family_request(ws, args[0], pool, where)
    notes = list(declared["notes"])
    given_gpus = gpus
    gpus = _rank_gpus(ws, args[0], declared, gpus, pool, where, fix)
    if ws.config.train.ddp_processes > 1 and _ranks_on_ray(ws, declared):
        notes.append(f"train.ddp_processes: {ws.config.train.ddp_processes} ranks run as Ray Train workers, each "
                     "asking the cluster for 1 CPU (and 1 GPU on CUDA); the job holds none of theirs")
    elif given_gpus is None and declared["family"] in DDP_FAMILIES and declared["wanted_gpus"] and not gpus \
            and ws.config.train.ddp_processes > 1:
        notes.append(f"train.ddp_processes: {ws.config.train.ddp_processes} ranks train on CPUs (gloo): "
                     f"{where} has no GPU")
    cpus = _process_cpus(ws, args[0], declared, pool, where, fix) if cpus is None else cpus
    asked = asked_resources(cpus, gpus, memory if memory is not None else declared["memory"], custom)
    if pool is not None:
        if short := asked.shortfall(pool, where):
            raise ConfigError(f"jobs submit: the job asks for more than {where} has ({'; '.join(short)}); "
                              f"{where} has {pool.text()} in all; ask for less or {fix}")
        _check_ray_room(ws, declared, asked, pool, where, fix)
    elif cfg.engine == "ray" and where:
        notes.append(f"not checked against the cluster's resources: {where}")
    latest = ws.catalog.latest_dataset(ws.config.name)
    features = {"verb": args[0], "rows": latest["rows"] if latest else None, "task": ws.config.task,
                "defaults_from": declared["family"], **({"notes": notes} if notes else {})}
    job_id = _queue(ws).submit(project=ws.config.name, root=str(ws.root), command=args,
                               resources=asked.to_dict(), priority=level, submitter=submitter or _user(),
                               features=features, logs_dir=str(ws.state / "jobs"))
    return {"id": job_id, "notes": notes}


def _submit_pool(ws: Workspace) -> tuple[Resources | None, str, str]:
    """What a job is checked against at submit: (the pool, its name in messages, how to get more).
    The local engine's pool; on Ray the cluster's resources when its address answers (a local Ray that
    ``auto`` starts gets the config's pool figures, this machine's where left out); None when unknown."""
    cfg = ws.config.compute
    if cfg.engine == "local":
        return machine_pool(cfg.pool), "the pool", "raise compute.pool in modelloop.yaml"
    from .ray_engine import local_ray_pool, read_cluster

    if cfg.address == "auto":
        return (local_ray_pool(cfg.pool), "the local Ray",
                "raise compute.pool in modelloop.yaml (the local Ray that compute.address: auto starts)")

    pool, why = read_cluster(cfg.address)
    if pool is None:
        return None, why, ""
    return pool, f"the Ray cluster at {cfg.address}", "add nodes with those resources to the cluster"


# Commands that train a model: their default request is what the project's family declares.
TRAINS = ("train", "run", "retrain")


def _family_request(ws: Workspace, verb: str, pool: Resources | None, where: str = "the pool") -> dict[str, Any]:
    """A job's default request: the family's declared needs for a training command (``cpus: 0`` = every
    CPU of the local pool, 1 on Ray; its GPUs and memory at most the pool's, since it also runs
    without: a GPU default on a pool without GPUs falls back to CPU, said in ``notes``), else 1 CPU."""
    if verb not in TRAINS:
        return {"cpus": None, "gpus": None, "memory": None, "family": None, "wanted_gpus": 0, "notes": []}
    from ..families import family_for_task

    if ws.config.task is None and (latest := ws.catalog.latest_dataset(ws.config.name)) is not None:
        ws.settle_task(dataset=latest)  # a left-out task as ingest inferred it (a text or image family's needs)
    family = family_for_task(ws.config.task)
    need = family.resources
    local = ws.config.compute.engine == "local"
    # on Ray "every CPU" stays 1: the search's workers are Ray tasks asking the cluster for their own
    cpus = float(need.cpus) if need.cpus else (pool.cpus if pool is not None and local else 1.0)
    gpus, memory = need.gpus, int(need.memory_gb * 2**30)
    if _device(ws) == "cpu":
        gpus = 0                             # model.device: cpu never uses the GPUs it could have
    wanted, notes = gpus, []
    if pool is not None:
        cpus, gpus, memory = min(cpus, pool.cpus), min(gpus, pool.gpus), min(memory, pool.memory)
        if gpus < wanted:
            notes.append(f"the {family.name} family's default of {wanted} GPU{'s' if wanted > 1 else ''} "
                         + (f"fell back to CPU: {where} has no GPU" if not gpus else f"is {gpus}: {where} has {gpus}"))
    return {"cpus": cpus, "gpus": gpus, "memory": str(memory), "family": family.name, "wanted_gpus": wanted,
            "notes": notes}


# The families whose fine-tuning runs in train.ddp_processes data-parallel processes (their train stages):
# on compute.engine: ray the ranks are Ray Train's TorchTrainer workers, each asking the cluster for its own
# CPU (and GPU), so the job that starts them holds none of theirs (training/distributed.py).
DDP_FAMILIES = ("text", "image", "generative")
# The families whose train.parallel search workers are Ray tasks on compute.engine: ray (training/ray_search.py).
RAY_SEARCH_FAMILIES = ("tabular",)


def _ranks_on_ray(ws: Workspace, declared: dict[str, Any]) -> bool:
    return ws.config.compute.engine == "ray" and declared["family"] in DDP_FAMILIES


def _check_ray_room(ws: Workspace, declared: dict[str, Any], asked: Resources, pool: Resources,
                    where: str, fix: str) -> None:
    """Ray Train's workers and a search's Ray tasks ask for their CPU while the job that starts them holds
    its own: a cluster with fewer CPUs than both would leave them waiting for ever (all the ranks at once;
    at least one search task). Refused at submit, naming both."""
    train = ws.config.train
    if train.ddp_processes > 1 and _ranks_on_ray(ws, declared):
        need, key = train.ddp_processes, "train.ddp_processes"
        what = f"{need} Ray Train workers (1 CPU each)"
    elif train.parallel > 1 and ws.config.compute.engine == "ray" and declared["family"] in RAY_SEARCH_FAMILIES:
        need, key, what = 1, "train.parallel", "the search's Ray tasks (1 CPU each, one at least)"
    else:
        return
    if asked.cpus + need <= pool.cpus + 1e-9:
        return
    lower = f"lower train.ddp_processes or {fix}" if key == "train.ddp_processes" else f"give --cpus less or {fix}"
    raise ConfigError(f"jobs submit: {key}: {what} and the job that starts them ({asked.cpus:g} CPU) "
                      f"need {asked.cpus + need:g} cpus, {where} has {pool.cpus:g}; {lower}")


def _device(ws: Workspace) -> str:
    """``model.device`` of a family that has one (auto | cpu | cuda), else auto."""
    return str(getattr(ws.config.model, "device", "auto"))


def _rank_gpus(ws: Workspace, verb: str, declared: dict[str, Any], gpus: int | None,
               pool: Resources | None, where: str = "the pool", fix: str = "") -> int | None:
    """A data-parallel fine-tune on GPUs (nccl) needs one GPU a rank: ``train.ddp_processes`` GPUs when
    the job runs on CUDA (``model.device: cuda``, or ``auto`` with GPUs given). ``--gpus`` wins, but
    fewer than the ranks (and not 0, which trains on CPUs) is refused, as is more than the pool has."""
    ddp = ws.config.train.ddp_processes if declared["family"] in DDP_FAMILIES else 1
    given = declared["gpus"] if gpus is None else gpus
    if ddp <= 1 or gpus == 0 or (given == 0 and _device(ws) != "cuda"):
        return given
    if _ranks_on_ray(ws, declared):  # Ray Train's workers ask the cluster for a GPU each: the job holds none
        if _device(ws) == "cuda" and pool is not None and ddp > pool.gpus:
            raise ConfigError(f"jobs submit: train.ddp_processes: {ddp} Ray Train workers on GPUs (one GPU each) "
                              f"need {ddp} gpus, {where} has {pool.gpus}; lower train.ddp_processes, {fix}, "
                              "or set model.device: cpu")
        return 0 if gpus is None else gpus
    if gpus is not None and gpus < ddp:
        raise ConfigError(f"jobs submit: train.ddp_processes: {ddp} processes on GPUs (nccl, one GPU a process) "
                          f"need {ddp} gpus, --gpus gave {gpus}; give --gpus {ddp}, or --gpus 0 to train on CPUs")
    if pool is not None and ddp > pool.gpus:
        raise ConfigError(f"jobs submit: train.ddp_processes: {ddp} processes on GPUs (nccl, one GPU a process) "
                          f"need {ddp} gpus, {where} has {pool.gpus}; lower train.ddp_processes, "
                          + ("raise compute.pool.gpus" if where == "the pool" else fix)
                          + ", or give --gpus 0 to train on CPUs")
    return max(ddp, gpus or 0)


def _process_cpus(ws: Workspace, verb: str, declared: dict[str, Any], pool: Resources | None,
                  where: str = "the pool", fix: str = "") -> float | None:
    """A training job's CPUs: at least one a process it starts on the local engine (``train.parallel``
    search workers, the ``train.ddp_processes`` ranks of a text, image or generative fine-tune; on Ray
    both ask the cluster for their own, :func:`_check_ray_room`); more than the pool has is refused,
    naming both numbers."""
    cpus = declared["cpus"]
    if verb not in TRAINS:
        return cpus
    train = ws.config.train
    ddp = train.ddp_processes if declared["family"] in DDP_FAMILIES else 1
    # on the Ray engine the search workers are Ray tasks that ask the cluster for their own CPU
    # (training/ray_search.py): the job holding them too could leave them no CPU to start on
    parallel = train.parallel if ws.config.compute.engine == "local" else 1
    if _ranks_on_ray(ws, declared):  # so are Ray Train's workers (training/distributed.py)
        ddp = 1
    key, n = max((("train.parallel", parallel), ("train.ddp_processes", ddp)), key=lambda kv: kv[1])
    if n <= 1:
        return cpus
    if pool is not None and n > pool.cpus:
        raise ConfigError(f"jobs submit: {key}: {n} processes need {n} cpus, {where} has {pool.cpus:g}; "
                          f"lower {key}, " + ("raise compute.pool.cpus" if where == "the pool" else fix)
                          + ", or give --cpus")
    return max(float(cpus or 1.0), float(n))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _iso(at: Any) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds") + "Z"


def job_view(row: dict[str, Any], history: list[dict[str, Any]], predicted: dict[str, Any]) -> dict[str, Any]:
    """The JSON of a job (``jobs show --json``, each item of ``jobs list --json``)."""
    now = utcnow()
    started = row["started_at"] if row["state"] != "queued" or row["attempts"] else None
    waited_to = (started or now) if row["state"] not in FINISHED or started else (row["ended_at"] or now)
    return {
        "id": row["id"], "state": row["state"], "priority": row["priority"], "attempts": row["attempts"],
        "resources": row["resources"], "command": row["command"],
        "history": [{"state": e["state"], "at": _iso(e["at"]), "reason": e["reason"]} for e in history],
        "project": row["project"], "submitter": row["submitter"], "submitted_at": _iso(row["submitted_at"]),
        "started_at": _iso(row["started_at"]), "ended_at": _iso(row["ended_at"]),
        "wait_seconds": round(max(0.0, (waited_to - row["submitted_at"]).total_seconds()), 1),
        "running_seconds": round((now - row["started_at"]).total_seconds(), 1)
        if row["state"] == "running" and row["started_at"] else None,
        "predicted": predicted, "worker": row["worker"], "gpus": (row["assigned"] or {}).get("gpus"),
        "exit_code": row["exit_code"], "usage": row["usage"], "result": row["result"],
        "stop_requested": row["stop"], "logs": row["logs"], "root": row["root"],
        "notes": list((row["features"] or {}).get("notes") or []),
        "cannot_fit": _cannot_fit(row, history),
    }


def _cannot_fit(row: dict[str, Any], history: list[dict[str, Any]]) -> str | None:
    """Why a waiting job cannot start on a worker's pool at all (its latest event, a worker's note), else None."""
    from .worker import CANNOT_FIT

    last = history[-1]["reason"] if history else None
    if row["state"] in WAITING and last and last.startswith(CANNOT_FIT):
        return last[len(CANNOT_FIT):]
    return None


def list_jobs(ws: Workspace, states: list[str] | None = None) -> list[dict[str, Any]]:
    """Every job of the queue (oldest first), each with its history and predicted demand."""
    q = _queue(ws)
    rows = q.rows(states)
    finished = q.history_rows()
    hist = q.history([r["id"] for r in rows])
    return [job_view(r, hist[r["id"]], predict_demand(r["features"], r["project"], finished)) for r in rows]


def show_job(ws: Workspace, job_id: int) -> dict[str, Any]:
    q = _queue(ws)
    row = q.get(job_id)
    finished = [r for r in q.history_rows() if r["id"] != job_id]
    return job_view(row, q.history([job_id])[job_id], predict_demand(row["features"], row["project"], finished))


def cancel_job(ws: Workspace, job_id: int) -> dict[str, Any]:
    """Cancel a waiting job, or ask its worker to stop a running one (SIGTERM, grace, SIGKILL)."""
    _queue(ws).cancel(job_id)
    return show_job(ws, job_id)


def follow_logs(ws: Workspace, job_id: int, write: Callable[[str], None], *, follow: bool = False,
                poll: float = 0.5) -> dict[str, Any]:
    """Write the job's log (its stderr: progress and messages); with ``follow`` until the job finishes."""
    q = _queue(ws)
    row = q.get(job_id)
    path, pos = Path(row["logs"]), 0
    while True:
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
            if chunk:
                write(chunk)
        if not follow or row["state"] in FINISHED:
            return {"id": job_id, "state": row["state"], "logs": str(path)}
        time.sleep(poll)
        row = q.get(job_id)


def start_worker(ws: Workspace, *, idle_exit: float | None = None, log: Callable[[str], None] | None = None,
                 engine: Any = None) -> dict[str, Any]:
    """Run this machine's pool over the queue until interrupted (or idle ``idle_exit`` seconds)."""
    from .worker import Worker

    cfg = ws.config.compute
    if cfg.engine == "ray":
        from .ray_engine import RayEngine, cluster_pool, connect_ray

        ray = connect_ray(cfg.address, cfg.pool.cpus, cfg.pool.gpus, cfg.pool.memory)
        pool = cluster_pool(ray)
        engine = engine or RayEngine(ray, grace=cfg.grace_seconds)
    else:
        pool = machine_pool(cfg.pool)
    worker = Worker(_queue(ws), cfg, pool, engine, log=log)
    if log is not None:
        log(f"worker {worker.name}: pool {_pool_text(pool)}; queue {ws.catalog_url}")
    with sigterm_interrupts():  # stopped: hands its jobs back
        worker.run(idle_exit=idle_exit)
    return {"worker": worker.name, "pool": pool.to_dict()}


def _pool_text(pool: Resources) -> str:
    return f"{pool.cpus:g} CPUs, {pool.gpus} GPUs, {pool.memory / 2**30:.1f} GiB"
