"""Terminal rendering of ``modelloop jobs``: one table of the queue, one job's details."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["command_text", "render_job", "render_jobs", "seconds_text"]

_COLOR = {"queued": "cyan", "running": "yellow", "preempted": "magenta", "succeeded": "green", "failed": "red",
          "cancelled": "dim"}


def seconds_text(v: float | None) -> str:
    """A duration as the jobs table shows it (45s, 12m, 3.5h); ``-`` when unknown."""
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.0f}s" if v < 120 else (f"{v / 60:.0f}m" if v < 7200 else f"{v / 3600:.1f}h")


def _progress(job: dict[str, Any], width: int = 10) -> str:
    """A bar of elapsed / predicted time for a running job (full and open-ended when it overruns)."""
    pred, ran = job["predicted"]["seconds"], job.get("running_seconds")
    if job["state"] != "running" or not pred or ran is None:
        return ""
    share = min(1.0, ran / pred)
    return "█" * round(share * width) + "░" * (width - round(share * width)) + (" ?" if ran > pred else "")


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
    if not jobs:
        console.print("No jobs. Submit one: modelloop jobs submit --priority normal -- train")
        return
    t = Table(box=None, header_style="bold")
    for col in ("id", "state", "prio", "command", "res", "wait", "predicted", "attempts", "progress"):
        t.add_column(col)
    for j in jobs:
        r = j["resources"]
        res = f"{r['cpus']:g}c" + (f" {r['gpus']}g" if r["gpus"] else "")
        t.add_row(str(j["id"]), f"[{_COLOR.get(j['state'], 'white')}]{j['state']}[/]", str(j["priority"]),
                  command_text(j["command"])[:48], res, seconds_text(j["wait_seconds"]),
                  seconds_text(j["predicted"]["seconds"]), str(j["attempts"]), _progress(j))
    console.print(t)


def render_job(job: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]job {job['id']}[/] {job['state']}  priority {job['priority']}  attempts "
                  f"{job['attempts']}  by {job['submitter']}")
    console.print(f"  command: modelloop {' '.join(job['command'])}")
    console.print(f"  resources: {job['resources']}  gpus: {job['gpus']}")
    console.print(f"  predicted: {seconds_text(job['predicted']['seconds'])} from {job['predicted']['based_on']} jobs"
                  f"; waited {seconds_text(job['wait_seconds'])}; logs: {job['logs']}")
    for e in job["history"]:
        console.print(f"  {e['at']}  {e['state']:<10} {e['reason'] or ''}")
    if job["result"]:
        console.print(f"  made: {job['result']}")
