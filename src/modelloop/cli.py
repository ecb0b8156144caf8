"""The command line: parse, load the config, call one API function, print. No logic here.

Exit codes: 0 success, 2 bad input (one line on stderr saying what and what to do), 1 a bug.
``--json`` prints one object on stdout; progress and chatter go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from .errors import ModelloopError
from .ui import err, out  # one pair of consoles: ui's

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="modelloop: from raw data to a deployed, monitored model and back again.")

ConfigOpt = typer.Option("modelloop.yaml", "-c", "--config", help="path to modelloop.yaml")
JsonOpt = typer.Option(False, "--json", help="print one JSON object on stdout")


def _project(config: str):
    from .project import Project

    return Project.load(config)


def _finite(v: Any) -> Any:
    """NaN/inf are not JSON: they become null."""
    import numpy as np

    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _emit(result: dict[str, Any] | list[Any], as_json: bool, render) -> None:
    """``--json``: one object on stdout, its text as written (a 评论 column reads 评论, not \\u8bc4\\u8bba),
    escaped only where the output's encoding cannot hold it; else the one-screen summary."""
    if as_json:
        text = json.dumps(_finite(result), default=str, ensure_ascii=False)
        try:
            text.encode(sys.stdout.encoding or "utf-8")
        except (UnicodeEncodeError, LookupError):
            text = json.dumps(_finite(result), default=str)
        sys.stdout.write(text + "\n")
    else:
        render(result)


@app.command()
def init(directory: Path = typer.Argument(Path("."), help="project folder to create"),
         example: str | None = typer.Option(None, "--example", help="fraud | intents | sentiment | anomaly | "
                                                                     "assistant | images | recommend"),
         source: str | None = typer.Option(None, "--source", help="your own table (CSV, Parquet, JSONL path or "
                                                                  "database URL) as data.source"),
         target: str | None = typer.Option(None, "--target", help="the column to predict, as data.target"),
         query: str | None = typer.Option(None, "--query", help="with a database URL --source: the SQL that "
                                                                "reads the table, as data.query"),
         task: str | None = typer.Option(None, "--task", help="as task: (left out: inferred from the data); "
                                                              "anomaly detection and recommendation need no --target"),
         as_json: bool = JsonOpt) -> None:
    """Scaffold a project: a commented modelloop.yaml (and example data with --example)."""
    from .scaffold import init_project

    res = init_project(directory, example=example, source=source, target=target, query=query, task=task)
    here = "" if Path(directory).resolve() == Path.cwd() else f"cd {directory} && "
    ready = res["example"] or res["source"]
    _emit(res, as_json, lambda r: out.print(
        f"Created [bold]{r['config']}[/]. Next: " + (f"{here}modelloop run" if ready else
                                                     f"set data.source and data.target in {r['config']} (or "
                                                     f"init with --source FILE --target COLUMN), then "
                                                     f"{here}modelloop run")))


@app.command()
def ingest(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Read data.source into a dataset version (unchanged data keeps its version)."""
    from .ui import render_dataset

    _emit(_project(config).ingest(), as_json, render_dataset)


@app.command()
def profile(config: str = ConfigOpt, dataset: str | None = typer.Option(None, "--dataset", help="id or vN"),
            as_json: bool = JsonOpt) -> None:
    """Quality report of the current dataset version: HTML + JSON, scores and findings."""
    from .ui import render_profile

    _emit(_project(config).profile(dataset=dataset), as_json, render_profile)


@app.command()
def clean(config: str = ConfigOpt, dataset: str | None = typer.Option(None, "--dataset", help="id or vN"),
          as_json: bool = JsonOpt) -> None:
    """Apply the cleaning rules in modelloop.yaml -> a new dataset version with lineage."""
    from .ui import render_clean

    _emit(_project(config).clean(dataset=dataset), as_json, render_clean)


@app.command()
def train(config: str = ConfigOpt, budget: float | None = typer.Option(
              None, "--budget", min=1, help="seconds for the whole search"),
          trials: int | None = typer.Option(None, "--trials", min=1, help="cap on finished trials"),
          as_json: bool = JsonOpt) -> None:
    """Search, train, evaluate on the frozen test set, register a model version."""
    from .ui import render_train, search_progress

    project = _project(config)
    with search_progress(budget or project.config.train.budget) as progress:
        res = project.train(budget=budget, trials=trials, progress=progress)
    _emit(res, as_json, render_train)


@app.command()
def run(config: str = ConfigOpt, budget: float | None = typer.Option(None, "--budget", min=1),
        trials: int | None = typer.Option(None, "--trials", min=1), as_json: bool = JsonOpt) -> None:
    """Every stage the config enables, in order."""
    from .ui import render_train, search_progress, stage_printer

    project = _project(config)
    with search_progress(budget or project.config.train.budget) as progress:
        res = project.run(budget=budget, trials=trials, on_stage=stage_printer, progress=progress)
    _emit(res, as_json, render_train)


@app.command()
def evaluate(config: str = ConfigOpt,
             model: str | None = typer.Option(None, "--model", help="NAME:VERSION, NAME@ALIAS or VERSION"),
             data: str | None = typer.Option(None, "--data", help="labeled CSV/Parquet/JSONL file"),
             as_json: bool = JsonOpt) -> None:
    """Score a model (production by default) on its frozen test set or on --data."""
    from .ui import render_evaluation

    _emit(_project(config).evaluate(model=model, data=data), as_json, render_evaluation)


@app.command()
def predict(config: str = ConfigOpt,
            data: str = typer.Option(..., "--data", help="CSV, Parquet or JSONL file of rows to score (an image "
                                                         "model: also a folder of images or a table of paths)"),
            out_file: str = typer.Option(..., "--out", help="where to write them with the model's answers "
                                                            "(.csv, .parquet or .jsonl)"),
            model: str | None = typer.Option(None, "--model", help="NAME:VERSION, NAME@ALIAS or VERSION"),
            engine: str = typer.Option("local", "--engine", help="local | ray (chunks scored by Ray workers of "
                                                               "compute.address)"),
            out_encoding: str | None = typer.Option(None, "--out-encoding",
                                                    help="a CSV output's: utf-8 | utf-8-sig (with the BOM Excel "
                                                         "needs) | gbk | cp932; default utf-8, with a BOM where "
                                                         "the input CSV came from Excel (a BOM, or GBK, "
                                                         "Shift-JIS or Windows-1252)"),
            as_json: bool = JsonOpt) -> None:
    """Score a file with a model (production by default), as the API would; the input's columns are kept."""
    from .ui import render_predict, rows_progress

    project = _project(config)
    with rows_progress("predict") as progress:
        res = project.predict(data, out_file, model=model, progress=progress, engine=engine,
                              out_encoding=out_encoding)
    _emit(res, as_json, render_predict)


@app.command()
def optimize(config: str = ConfigOpt,
             model: str | None = typer.Option(None, "--model", help="NAME:VERSION, NAME@ALIAS or VERSION"),
             variant: list[str] | None = typer.Option(None, "--variant", help="repeatable; default: optimize.variants"),
             promote: bool | None = typer.Option(None, "--promote/--no-promote",
                                                 help="serve the registered variant in place of its parent when "
                                                      "the parent is production; default: optimize.promote"),
             as_json: bool = JsonOpt) -> None:
    """Export, quantize, distil; benchmark each variant and register the best that keeps quality."""
    from .ui import render_optimize

    _emit(_project(config).optimize(model=model, variants=variant or None, promote=promote), as_json,
          render_optimize)


@app.command()
def promote(ref: str = typer.Argument(..., help="NAME:VERSION, NAME@ALIAS or VERSION"),
            alias: str = typer.Option("production", "--alias"), config: str = ConfigOpt,
            as_json: bool = JsonOpt) -> None:
    """Point an alias (production by default) at a model version."""
    _emit(_project(config).promote(ref, alias=alias), as_json,
          lambda r: out.print(f"{r['alias']} -> {r['model']['name']}:{r['model']['version']} "
                              f"(was {r['previous_version']})"))


@app.command()
def status(config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Lineage at a glance: dataset versions, models, aliases."""
    from .ui import render_status

    _emit(_project(config).status(), as_json, render_status)


@app.command()
def serve(config: str = ConfigOpt, host: str | None = typer.Option(None, "--host", help="default 127.0.0.1"),
          port: int | None = typer.Option(None, "--port", min=0, max=65535, help="default 8000"),
          workers: int | None = typer.Option(None, "--workers", min=1, help="processes sharing the port"),
          model: str | None = typer.Option(None, "--model", help="pin a version instead of following production"),
          ui: bool = typer.Option(False, "--ui", help="also serve the dashboard under /ui (same API keys)"),
          engine: str | None = typer.Option(None, "--engine", help="local | ray (Ray Serve replicas on "
                                                                    "compute.address); default serve.engine")
          ) -> None:
    """REST API over the production model (ONNX Runtime, micro-batching, prediction log)."""
    project = _project(config)
    from .serving.config import serve_config

    if ui or serve_config(project.config).ui:  # serve.ui in modelloop.yaml does the same as --ui
        from .dashboard.serve import serve_with_ui

        serve_with_ui(project.workspace, host=host, port=port, workers=workers, model=model, engine=engine)
        return
    project.serve(host=host, port=port, workers=workers, model=model, engine=engine)


@app.command()
def ui(config: str = ConfigOpt, host: str | None = typer.Option(None, "--host", help="default 127.0.0.1"),
       port: int | None = typer.Option(None, "--port", min=0, max=65535, help="default 8001")) -> None:
    """The loop in a browser: overview, data, models (promote/rollback with a key), trace a request."""
    from .dashboard import run_ui

    run_ui(_project(config), host=host, port=port)


@app.command()
def trace(request_id: str = typer.Argument(..., help="a request id from the prediction log"),
          config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """One prediction: its model version, run, dataset version and the feedback that came back."""
    _emit(_project(config).trace(request_id), as_json,
          lambda r: out.print(f"{r['request_id']}: model {r['model']['name']}:{r['model']['version']}, "
                              f"run {r['run']['id'] if r['run'] else '-'}, dataset v{r['dataset']['version']}, "
                              f"feedback {r['feedback']['label'] if r['feedback'] else 'none'}"))


@app.command()
def feedback(file: str = typer.Argument(..., help="CSV/Parquet/JSONL with columns request_id,label"),
             config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Import labels for earlier predictions (exit 2 when none of the rows could be used)."""
    from .errors import DataError
    from .feedback.store import nothing_usable

    res = _project(config).feedback(file)
    _emit(res, as_json,
          lambda r: out.print(f"{r['accepted']} accepted, {r['unknown_request']} unknown request ids, "
                              f"{r['duplicate']} duplicates, {r['invalid']} invalid labels (of {r['rows']})"
                              + (f"; the first: {r['invalid_why']}" if r.get("invalid_why") else "")))
    if why := nothing_usable(res):
        raise DataError(f"{file}: {why}")


@app.command()
def monitor(config: str = ConfigOpt, window: int | None = typer.Option(None, "--window", min=10),
            as_json: bool = JsonOpt) -> None:
    """Live metrics per model version, drift per feature, alerts (HTML + --json)."""
    from .ui import render_monitor

    _emit(_project(config).monitor(window=window), as_json, render_monitor)


@app.command()
def retrain(config: str = ConfigOpt, if_needed: bool = typer.Option(False, "--if-needed",
            help="only when a trigger fires (for cron); exits 0 without work otherwise"),
            budget: float | None = typer.Option(None, "--budget", min=1), as_json: bool = JsonOpt) -> None:
    """Feedback -> new dataset version -> challenger -> gate -> promote (or not)."""
    from .ui import render_retrain, search_progress

    project = _project(config)
    with search_progress(budget or project.config.retrain.budget or project.config.train.budget) as progress:
        res = project.retrain(if_needed=if_needed, budget=budget, progress=progress)
    _emit(res, as_json, render_retrain)


@app.command()
def rollback(config: str = ConfigOpt, alias: str = typer.Option("production", "--alias"),
             as_json: bool = JsonOpt) -> None:
    """Point production back at the previous version."""
    _emit(_project(config).rollback(alias=alias), as_json,
          lambda r: out.print(f"{r['alias']} -> {r['model']['name']}:{r['model']['version']} "
                              f"(rolled back from {r['rolled_back_from']})"))


@app.command()
def demo(directory: Path = typer.Option(Path("modelloop-demo"), "--dir", help="where to build the demo"),
         budget: float = typer.Option(45, "--budget", min=1, help="seconds for each search"),
         loop: bool = typer.Option(True, "--loop/--no-loop", help="serve, replay drifted traffic, retrain"),
         as_json: bool = JsonOpt) -> None:
    """The whole loop on the bundled fraud example, embedded defaults."""
    from .demo import run_demo
    from .ui import render_demo

    _emit(run_demo(directory, budget=budget, loop=loop), as_json, render_demo)


# ---- compute: the job queue and the worker (modelloop.compute) ------------------------------------
jobs_app = typer.Typer(no_args_is_help=True, help="The job queue: any modelloop command run later by a worker, "
                                                  "by priority, with the CPUs/GPUs/memory it asks for.")
app.add_typer(jobs_app, name="jobs")


def _command_infos() -> dict[str, Any]:
    """Each command's name and whether it takes -c and --json (what a job's arguments get added)."""
    import inspect

    from .compute.jobs import CommandInfo

    infos = {}
    for c in app.registered_commands:
        params = inspect.signature(c.callback).parameters if c.callback else {}
        name = c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
        infos[name] = CommandInfo(takes_config="config" in params, takes_json="as_json" in params)
    return infos


@jobs_app.command("submit")
def jobs_submit(command: list[str] = typer.Argument(..., help="the modelloop command, after --: -- train --budget 60"),
                priority: str = typer.Option("normal", "--priority", help="high | normal | low | 0-100"),
                cpus: float | None = typer.Option(None, "--cpus", help="CPUs (default 1)"),
                gpus: int | None = typer.Option(None, "--gpus", help="GPUs (default 0)"),
                memory: str | None = typer.Option(None, "--memory", help="e.g. 8GiB (default: none reserved)"),
                resource: list[str] | None = typer.Option(None, "--resource", help="NAME=AMOUNT, repeatable"),
                config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Queue a modelloop command as a job: modelloop jobs submit --priority high --gpus 1 -- retrain"""
    from .compute.jobs import submit_job

    res = submit_job(_project(config).workspace, command, _command_infos(), config=config, priority=priority,
                     cpus=cpus, gpus=gpus, memory=memory, custom=resource)
    _emit(res, as_json, lambda r: out.print(f"job {r['id']} queued; follow it: modelloop jobs logs {r['id']} -f"
                                            + "".join(f"\n  note: {n}" for n in r["notes"]), markup=False))


@jobs_app.command("list")
def jobs_list(state: list[str] | None = typer.Option(None, "--state", help="only these states, repeatable"),
              watch: float | None = typer.Option(None, "--watch", min=0.2, help="redraw every N seconds while a "
                                                 "job is queued or running (running jobs' progress bars)"),
              config: str = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Queued, running, preempted and finished jobs, with waits and predicted durations."""
    from .compute.jobs import list_jobs
    from .compute.show import render_jobs, watch_jobs

    ws = _project(config).workspace
    if watch is not None and not as_json:
        watch_jobs(lambda: list_jobs(ws, state or None), out, every=watch)
        return
    _emit(list_jobs(ws, state or None), as_json, lambda res: render_jobs(res, out))


@jobs_app.command("show")
def jobs_show(job_id: int = typer.Argument(..., help="the job's id"), config: str = ConfigOpt,
              as_json: bool = JsonOpt) -> None:
    """One job: resources, priority, attempts, history, logs path, what it made."""
    from .compute.jobs import show_job
    from .compute.show import render_job

    _emit(show_job(_project(config).workspace, job_id), as_json, lambda r: render_job(r, out))


@jobs_app.command("logs")
def jobs_logs(job_id: int = typer.Argument(..., help="the job's id"),
              follow: bool = typer.Option(False, "-f", "--follow", help="keep printing until the job ends"),
              config: str = ConfigOpt) -> None:
    """Print a job's log (its progress and messages)."""
    from .compute.jobs import follow_logs

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    follow_logs(_project(config).workspace, job_id, write, follow=follow)


@jobs_app.command("cancel")
def jobs_cancel(job_id: int = typer.Argument(..., help="the job's id"), config: str = ConfigOpt,
                as_json: bool = JsonOpt) -> None:
    """Cancel a queued job, or stop a running one (SIGTERM, then SIGKILL after compute.grace_seconds)."""
    from .compute.jobs import cancel_job

    _emit(cancel_job(_project(config).workspace, job_id), as_json,
          lambda r: out.print(f"job {r['id']}: {r['state']}" + (" (stopping)" if r["stop_requested"] else "")))


@app.command()
def worker(config: str = ConfigOpt, idle_exit: float | None = typer.Option(
               None, "--idle-exit", min=0, help="stop after this many seconds with nothing queued or running")
           ) -> None:
    """Run the job queue on this machine's pool (compute: in modelloop.yaml) until Ctrl-C."""
    from .compute.jobs import start_worker

    start_worker(_project(config).workspace, idle_exit=idle_exit, log=lambda m: err.print(m, highlight=False))


def main() -> None:
    """Entry point: user mistakes exit 2 with one line, interrupts 130, bugs 1 with a traceback."""
    _quiet_library_notices()
    try:
        app(standalone_mode=False)
    except ModelloopError as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        for line in lines:
            err.print(f"[red]error:[/] {line}", markup=True, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume")
        raise SystemExit(130) from None
    except Exception as exc:  # usage errors from Typer's (vendored) click
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            raise SystemExit(code) from None
        if type(exc).__name__ == "Abort":
            raise SystemExit(130) from None
        raise


def _quiet_library_notices() -> None:
    """Hide other packages' deprecation notices (FutureWarning, DeprecationWarning) from a command's output:
    they are addressed to the developers of the code that calls those packages, not to its users, who can do
    nothing about them (PEFT asking transformers for ``is_gradient_checkpointing`` printed two such lines
    into every LoRA ``modelloop run``). modelloop's own warnings still show; ``python -W`` or
    ``PYTHONWARNINGS`` set anything and the filters are the user's."""
    import warnings

    if sys.warnoptions:
        return
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(?!modelloop\b)")


if __name__ == "__main__":
    main()
