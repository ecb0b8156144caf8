"""Terminal rendering of ``modelloop jobs``: one table of the queue (redrawn with ``--watch``), one job's details."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

__all__ = ["command_text", "progress_text", "render_job", "render_jobs", "seconds_text", "watch_jobs"]

_COLOR = {"queued": "cyan", "running": "yellow", "preempted": "magenta", "succeeded": "green", "failed": "red",
          "cancelled": "dim"}


def seconds_text(v: float | None) -> str:
    """A duration as the jobs table shows it (45s, 12m, 3.5h); ``-`` when unknown."""
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.0f}s" if v < 120 else (f"{v / 60:.0f}m" if v < 7200 else f"{v / 3600:.1f}h")


def progress_text(job: dict[str, Any], width: int = 10) -> str:
    """A running job's progress: a bar of elapsed / predicted time with its share and the time left, or
    how far past the prediction it is; only the time run when no finished job like it predicts one yet."""
    pred, ran = job["predicted"]["seconds"], job.get("running_seconds")
    if job["state"] != "running" or ran is None:
        return ""
    if not pred:
        return f"{seconds_text(ran)} run"
    share = min(1.0, ran / pred)
    bar = "█" * round(share * width) + "░" * (width - round(share * width))
    if ran > pred:
        return f"{bar} {seconds_text(ran - pred)} over"
    return f"{bar} {share:.0%} ~{seconds_text(pred - ran)} left"


def command_text(args: list[str]) -> str:
    """The command as the user typed it: without the ``-c PATH`` and ``--json`` the submit added."""
    shown, skip = [], False
    for a in args:
        if skip or a == "--json":
            skip = False
            continue
        skip = a in ("-c", "--config")
        if not skip:
            shown.append(a)
    return " ".join(shown)


def render_jobs(jobs: list[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console()
    console.print(_jobs_table(jobs))
    for j in jobs:
        if j.get("cannot_fit"):
            console.print(f"* job {j['id']} cannot start: {j['cannot_fit']}", markup=False)


def watch_jobs(fetch: Callable[[], list[dict[str, Any]]], console: Console | None = None, every: float = 2.0,
               until: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
    """Redraw the queue every ``every`` seconds while a job is queued, running or preempted (or until
    ``until()``); the last list read."""
    jobs = fetch()
    with Live(_jobs_table(jobs), console=console or Console(), auto_refresh=False) as live:
        while any(j["state"] in ("queued", "running", "preempted") for j in jobs) and not (until and until()):
            time.sleep(every)
            jobs = fetch()
            live.update(_jobs_table(jobs), refresh=True)
    return jobs


def _jobs_table(jobs: list[dict[str, Any]]) -> Table | str:
    if not jobs:
        return "No jobs. Submit one: modelloop jobs submit --priority normal -- train"
    t = Table(box=None, header_style="bold")
    for col in ("id", "state", "prio", "command", "res", "wait", "predicted", "attempts", "progress"):
        t.add_column(col)
    for j in jobs:
        r = j["resources"]
        res = f"{r['cpus']:g}c" + (f" {r['gpus']}g" if r["gpus"] else "")
        state = j["state"] + ("*" if j.get("cannot_fit") else "")
        t.add_row(str(j["id"]), f"[{_COLOR.get(j['state'], 'white')}]{state}[/]", str(j["priority"]),
                  command_text(j["command"])[:48], res, seconds_text(j["wait_seconds"]),
                  seconds_text(j["predicted"]["seconds"]), str(j["attempts"]), progress_text(j))
    return t


def render_job(job: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]job {job['id']}[/] {job['state']}  priority {job['priority']}  attempts "
                  f"{job['attempts']}  by {job['submitter']}")
    console.print(f"  command: modelloop {' '.join(job['command'])}")
    console.print(f"  resources: {job['resources']}  gpus: {job['gpus']}")
    for note in job.get("notes") or []:
        console.print(f"  note: {note}", markup=False)
    if job.get("cannot_fit"):
        console.print(f"  cannot start: {job['cannot_fit']}", markup=False)
    console.print(f"  predicted: {seconds_text(job['predicted']['seconds'])} from {job['predicted']['based_on']} jobs"
                  f"; waited {seconds_text(job['wait_seconds'])}; logs: {job['logs']}")
    if job["state"] == "running":
        console.print(f"  progress: {progress_text(job, width=30)}")
    for e in job["history"]:
        console.print(f"  {e['at']}  {e['state']:<10} {e['reason'] or ''}")
    if job["result"]:
        console.print(f"  made: {job['result']}")
