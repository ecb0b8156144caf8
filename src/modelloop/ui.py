"""Terminal output: progress bars on stderr and one-screen summaries (Rich)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .errors import cap_list, shown_number



def _console(stderr: bool = False) -> Console:
    """A terminal wraps long lines to its width; a pipe, a log file or CI keeps each line whole (rich
    would cut it at 80 columns mid-sentence, and a grep for the line would miss it)."""
    console = Console(stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console


err = _console(stderr=True)
out = _console()

__all__ = [
    "demo_summary_rows",
    "render_demo",
    "model_kind",
    "render_dataset",
    "render_evaluation",
    "render_predict",
    "rows_progress",
    "render_status",
    "render_train",
    "search_progress",
    "stage_printer",
]


@contextmanager
def search_progress(budget: float | None) -> Iterator[Callable[[int, float], None]]:
    """A bar over the search's time budget; the callback takes (finished trials, elapsed seconds)."""
    total = float(budget or 0) or None
    with Progress(TextColumn("[bold]search[/]"), BarColumn(), TextColumn("{task.fields[trials]} trials"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("search", total=total, trials=0)

        def update(trials: int, elapsed: float) -> None:
            bar.update(task, completed=min(elapsed, total or elapsed), trials=trials)

        yield update


def stage_printer(stage: str) -> None:
    err.print(f"[cyan]▶[/] {stage}  [dim]{time.strftime('%H:%M:%S')}[/]")


def _fmt(v: Any) -> str:
    return shown_number(v) if isinstance(v, float) else ("—" if v is None else str(v))


_KIND_ORDER = ("numeric", "categorical", "boolean", "datetime", "text", "identifier")


def render_dataset(r: dict[str, Any]) -> None:
    state = "new version" if r.get("created") else "unchanged (existing version)"
    out.print(f"dataset [bold]{r['id']}[/] (v{r['seq']}): {r['rows']} rows — {state}")
    schema = r.get("schema") or {}
    kinds: dict[str, list[str]] = {}
    for column, kind in (schema.get("columns") or {}).items():
        if column != schema.get("target"):
            kinds.setdefault(kind, []).append(str(column))
    if kinds:  # how each column was read: an identifier (an id, row numbers) never trains, which a user should see
        def rank(kind: str) -> int:
            return _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)

        parts = [f"{len(names)} {kind}" + (f" ({cap_list(names, 5)}: never a feature, unless data.columns "
                                            f"says otherwise)" if kind == "identifier" else
                                            f" ({cap_list(names, 5)})" if kind in ("datetime", "text") else "")
                 for kind, names in sorted(kinds.items(), key=lambda kv: rank(kv[0]))]
        out.print(f"  columns     {', '.join(parts)}; target {schema.get('target')}", style="dim")
    source = r.get("source") or {}
    reads = {f"{name}: ": read for name, read in (source.get("sources") or {}).items()} or {"": source}
    for prefix, read in reads.items():
        if notes := read_notes(read):  # how the file was read where it is not a plain UTF-8 CSV
            out.print(f"  read        {prefix}{'; '.join(notes)}", style="dim")


def read_notes(read: dict[str, Any]) -> list[str]:
    """What a user should know of how a file was read (the read report of ``data.sources.read_table``): a
    dialect other than commas and decimal points, a legacy encoding, the sheet, columns left out, and names
    the header repeats (pandas reads ``a`` twice as ``a`` and ``a.1``)."""
    from .data.delimiters import Dialect

    notes = []
    delimiter, decimal = read.get("delimiter"), read.get("decimal")
    if delimiter is not None and (delimiter, decimal) != (",", "."):
        notes.append(Dialect(delimiter, decimal or ".").describe())
    if read.get("encoding") not in (None, "utf-8", "utf-8-sig", "ascii"):
        notes.append(f"encoding {read['encoding']}")
    if read.get("sheet"):
        notes.append(f"sheet {read['sheet']!r}")
    if dropped := read.get("empty_columns_dropped"):
        notes.append(f"left out {len(dropped)} empty column{'s' if len(dropped) != 1 else ''} without a name")
    for name, names in (read.get("repeated_columns") or {}).items():
        notes.append(f"the header names {len(names)} columns {name!r}: read as {', '.join(map(repr, names))}")
    return notes


def _interval(interval: dict[str, Any]) -> str:
    """A figure's bootstrap interval (``evaluation.evaluate.figure_interval``) as train and evaluate show it."""
    return (f"{interval['metric']} 95 % interval {_fmt(interval['low'])} to {_fmt(interval['high'])} "
            f"(bootstrap, {interval['rows']} rows)")


def _metrics_table(metrics: dict[str, Any], title: str, base: dict[str, Any] | None = None) -> Table:
    """The test figures; with ``base`` (a fine-tuned generative model's base model) a column of its own."""
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    if base is not None:
        t.add_column("base model", justify="right")
    for k, v in metrics.items():
        t.add_row(k, _fmt(v), *([_fmt(base.get(k))] if base is not None else []))
    return t


def model_kind(train: dict[str, Any]) -> str:
    """What a train result registered: ``xgboost``, or ``ensemble of 3`` (a latency limit may have
    trimmed the ensemble the selection chose, or replaced it by one model that is not the best one)."""
    families = train.get("families") or [train["best_family"]]
    return f"ensemble of {len(families)}" if len(families) > 1 else families[0]


def _members(timed: dict[str, Any]) -> str:
    """``lightgbm`` or ``an ensemble of 5`` for a ``latency.tried`` entry."""
    kind = model_kind(timed)
    return f"an {kind}" if len(timed["families"]) > 1 else kind


def render_train(r: dict[str, Any]) -> None:
    m = r["model"]
    ds = r.get("dataset")
    ds_txt = f"{ds['id']} (v{ds['version']}, {ds['rows']} rows)" if isinstance(ds, dict) else ds
    kind = model_kind(r)
    out.print(f"\n[bold green]model {m['name']}:{m['version']}[/] registered"
              f"{' and now production' if r.get('production') else ' (run `modelloop promote ' + str(m['version']) + '` to serve it)'}")
    out.print(f"  dataset     {ds_txt}")
    if inferred := r.get("task_inferred"):
        out.print(f"  task        {inferred['task']}, inferred: {inferred['reason']} (set `task:` in "
                  f"modelloop.yaml to choose)")
    out.print(f"  model       {kind}; {r['trials']} trials ({r['resumed_trials']} resumed) in {r['seconds']} s")
    lat = r.get("latency")
    if lat:
        verdict = "within" if lat["met"] else "[red]over[/]"
        if "tried" not in lat:  # text: the served members' costs against the limit or auto's bound
            out.print(f"  latency     ~{lat['latency_ms']:.2f} ms CPU a text ({' + '.join(lat['served'])}), {verdict} "
                      f"{lat['limit_ms']:.3g} ms of {lat['source']}")
        else:  # tabular: the model served, and what the search's choice cost when it was too slow
            out.print(f"  latency     {lat['latency_ms']:.3f} ms CPU a record, {verdict} train.max_latency_ms "
                      f"{lat['limit_ms']:g}")
            if lat["latency_ms"] != (first := lat["tried"][0])["latency_ms"]:
                out.print(f"              instead of {_members(first)}: {first['latency_ms']:.3f} ms, OOF "
                          f"{_fmt(first['score'])}; {len(lat['tried'])} timed", style="dim")
    stack = (r.get("ensemble") or {}).get("stack")  # tabular: the level-2 model over the candidates' OOF outputs
    if stack and stack.get("reason"):
        out.print(f"  stacking    {'kept' if stack['kept'] else 'not kept'}: {stack['reason']}", style="dim")
    for warning in r.get("warnings") or []:  # what the user should know of the data (an ordinal-looking target)
        out.print(f"  [yellow]warning[/]     {warning}")
    if backbone := r.get("backbone"):  # text models: what `backbone: auto` (or the config) chose, and why
        out.print(f"  backbone    {backbone['chosen']} ({backbone['why']})")
    if training := r.get("training_summary"):  # a family's one line on its training (a fine-tuned language model)
        out.print(f"  training    {training}")
    out.print(f"  validation  {r.get('validation_metric') or r['metric']} = {_fmt(r['validation_score'])}"
              + (f", threshold {r['threshold']:.3f}" if r.get("threshold") is not None else ""))
    if cv := r.get("cv"):  # tabular: how far to trust the validation score, and the threshold's choice
        out.print(f"              ± {_fmt(cv['spread'])} (std over {cv['folds']} folds, {cv['repeats']} "
                  f"repeat{'s' if cv['repeats'] != 1 else ''} of k-fold)", style="dim")
        if th := cv.get("threshold"):
            out.print(f"              threshold: {th['used']} ({th['reason']})", style="dim")
    keys = r.get("summary_metrics") or [  # a family may name the figures its summary shows (a recommender's @k)
        "accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "pr_auc", "log_loss", "rmse", "mae",
        "r2"]
    shown = {k: r["test_metrics"][k] for k in keys if k in r["test_metrics"]} or dict(r["test_metrics"])
    # a fine-tuned model's base model, scored on the same test rows: a column beside the model's figures
    out.print(_metrics_table(shown, f"test set ({r['rows']['test']} rows)", r.get("base_test_metrics")))
    if note := r.get("evaluation_summary"):  # a family's line when its test figures cover fewer rows than asked
        out.print(f"  evaluation  {note}", style="dim")
    if interval := r.get("test_interval"):  # how far the test figure would move with other rows like these
        out.print(f"  test        {_interval(interval)}", style="dim")
    for script, figures in (r.get("by_script") or {}).items():  # text models: Chinese/Japanese/Korean rows apart
        label = "CJK rows" if script == "cjk" else "other rows"
        out.print(f"  {label:<11} {r['metric']} = {_fmt(figures[r['metric']])}, accuracy {_fmt(figures['accuracy'])} "
                  f"({figures['rows']} test rows)")
    out.print(f"  report      {r['report']}")


@contextmanager
def rows_progress(what: str) -> Iterator[Callable[[int], None]]:
    """A spinner with the rows done so far (the total of a streamed file is not known up front)."""
    with Progress(TextColumn(f"[bold]{what}[/]"), TextColumn("{task.completed:,.0f} rows"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(rows: int) -> None:
            bar.update(task, completed=rows)

        yield update


def render_predict(r: dict[str, Any]) -> None:
    m = r["model"]
    out.print(f"[bold]{m['name']}:{m['version']}[/] ({r['variant']}) scored {r['rows']:,} rows of {r['data']} "
              f"in {r['seconds']} s")
    out.print(f"  wrote {r['out']} with {', '.join(r['columns'])}")
    if r.get("failed"):
        out.print(f"  [yellow]{r['failed']:,} row{'s' if r['failed'] != 1 else ''} could not be scored[/]: "
                  "the error column says why")
    if coerced := r.get("coerced"):
        said = ", ".join(f"{c} {n:,}" for c, n in coerced.items())
        out.print("  [yellow]values read as missing[/] (data.on_type_error: coerce, as at ingest): " + escape(said))


def render_evaluation(r: dict[str, Any]) -> None:
    m = r["model"]
    out.print(f"[bold]{m['name']}:{m['version']}[/] on {r['data']} ({r['rows']} rows)")
    out.print(_metrics_table(r["metrics"], "metrics"))
    if interval := r.get("interval"):
        out.print(_interval(interval), style="dim")
    out.print(f"report: {r['report']}")


def _compact_table(title: str) -> Table:
    """A table without side borders or cell padding: fits a plain 80-column terminal."""
    return Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                 show_edge=False)


def render_status(r: dict[str, Any]) -> None:
    out.print(f"[bold]{r['project']}[/]  ({r['root']})")
    seq = {d["id"]: f"v{d['version']}" for d in r["datasets"]}
    t = _compact_table("dataset versions")
    for c in ("version", "id", "step", "rows", "parents", "created"):
        t.add_column(c, no_wrap=True)
    for d in r["datasets"]:
        t.add_row(seq[d["id"]], d["id"], d["step"], str(d["rows"]),
                  ",".join(seq.get(p, p) for p in d["parents"]) or "—", d["created_at"][5:16].replace("T", " "))
    out.print(t)
    t = _compact_table("models")
    for c in ("version", "made by", "dataset", r["metric"], "formats", "alias", "created"):
        t.add_column(c, no_wrap=True)
    for m in r["models"]:
        origin = f"{m['variant']} of {m['parent_version']}" if m.get("variant") else "training"
        t.add_row(str(m["version"]), origin, seq.get(m["dataset"], m["dataset"]), _fmt(m["metrics"].get(r["metric"])),
                  ",".join(m["formats"]), "production" if m["production"] else "",
                  m["created_at"][5:16].replace("T", " "))
    out.print(t)
    if not r["models"]:
        out.print("no model yet: run `modelloop run`")


def render_monitor(r: dict[str, Any]) -> None:
    m, w = r["model"], r["window"]
    out.print(f"[bold]{m['name']}:{m['version']}[/] — {w['predictions']} recent predictions, "
              f"{w['labeled']} labeled")
    t = Table(title="drift (training data vs recent traffic)", header_style="bold")
    for c in ("feature", "method", "PSI", "p-value", "verdict"):
        t.add_column(c)
    for c, d in sorted(r["drift"]["features"].items(), key=lambda kv: -kv[1]["psi"]):
        t.add_row(c, d["method"], _fmt(d["psi"]), _fmt(d["p_value"]),
                  "[red]drifted[/]" if d["drifted"] else "stable")
    out.print(t)
    if not w["enough_for_drift"]:
        out.print(f"fewer than {w['min_rows']} recent predictions: no drift verdict yet")
    for v, per in r["metrics"].items():
        for win, f in per.items():
            figures = ", ".join(f"{k} {_fmt(x)}" for k, x in f.items() if k != "n")
            out.print(f"  v{v} {win}: n={f['n']} {figures}")
    for a in r["alerts"]:
        out.print(f"[red]alert[/] {a['message']}")
    if not r["alerts"]:
        out.print("[green]no alert[/]")
    out.print(f"report: {r['report']}")


def render_retrain(r: dict[str, Any]) -> None:
    if r.get("skipped"):
        out.print(f"no retrain: {r['reason']}")
        return
    verdict = "[bold green]promoted[/]" if r["promoted"] else "[bold yellow]not promoted[/]"
    ch, cl = r["champion"], r["challenger"]
    out.print(f"challenger {cl['model']['name']}:{cl['model']['version']} {verdict} — {r['reason']}")
    gate = r.get("gate") or {}
    # the figure the gate compares on each slice (a head may name its own: a language model's perplexity on
    # the holdout, chrF on recent answers)
    names = {part: gate.get(f"{part}_metric") or r["metric"] for part in ("holdout", "recent")}
    same = names["holdout"] == names["recent"]
    t = Table(title=f"{names['holdout'] if same else 'the gate'} on the same rows", header_style="bold")
    for c in ("slice", f"champion v{ch['model']['version']}", f"challenger v{cl['model']['version']}"):
        t.add_column(c)
    for part in ("holdout", "recent"):
        label = f"{part} ({r['rows'][part]} rows)" + ("" if same else f", {names[part]}")
        t.add_row(label, _fmt(ch["metrics"][part].get(names[part])), _fmt(cl["metrics"][part].get(names[part])))
    out.print(t)
    earlier = (gate.get("recent_slice") or {}).get("earlier_slices") or {}
    if earlier.get("rows"):  # earlier slices' feedback: learnt now, but where its group is judged on
        out.print(f"  earlier recent slices: {earlier.get('returned_to_training', 0):,} of their {earlier['rows']:,} "
                  f"rows returned to training" + "".join(
                      f", {earlier[k]:,} {words}" for k, words in (
                          ("to_test", "joined the frozen holdout with their group"),
                          ("kept", "stay in the recent slice with their group")) if earlier.get(k)))
    if (r.get("feedback_inputs") or {}).get("why"):  # labelled rows whose input could not be restored
        out.print(f"  [yellow]{r['feedback_inputs']['why']}[/]")
    if r.get("optimize"):
        o = r["optimize"]
        out.print(f"optimize: chosen {o['chosen']}, {o['model']['name']}:{o['model']['version']} — "
                  + (o["promotion"] if o["promoted"] else f"not promoted: {o['promotion']}"), markup=False)


def render_profile(r: dict[str, Any]) -> None:
    d, sc, gate = r["dataset"], r["scores"], r["gate"]
    out.print(f"[bold]dataset v{d['version']}[/] ({d['id']}, {d['rows']} rows) — quality "
              f"{sc['overall']:.1f}/100 (completeness {sc['completeness']:.1f}, validity {sc['validity']:.1f}, "
              f"consistency {sc['consistency']:.1f})")
    out.print("gate: [green]passed[/]" if gate["passed"] else "gate: [red]failed[/]")
    for f in gate.get("failed", []):
        out.print(f"  [red]✗[/] {escape(f['message'])}")
    t = Table(title="findings", header_style="bold")
    for c in ("severity", "kind", "column", "count", "message"):
        t.add_column(c)
    for f in r["findings"][:20]:  # Text: a message's '[deny]' (a rule's columns) is not rich markup
        t.add_row(f["severity"], f["kind"], Text(f.get("column") or ""), str(f.get("count", "")), Text(f["message"]))
    out.print(t)
    if len(r["findings"]) > 20:
        out.print(f"... and {len(r['findings']) - 20} more in the report")
    if r.get("report"):
        out.print(f"report: {r['report']['html']}")


def render_clean(r: dict[str, Any]) -> None:
    state = "new version" if r.get("created") else "no change (existing version)"
    out.print(f"dataset [bold]{r['id']}[/] (v{r['seq']}, parent {r['parent']}): {r['rows']} rows — {state}")
    t = Table(title="rules", header_style="bold")
    for c in ("#", "action", "columns", "rows changed", "cells changed", "rows dropped"):
        t.add_column(c)
    for ch in r["changes"]:
        cols = ch.get("columns") or []
        t.add_row(str(ch.get("index", "")), ch.get("action", ""), ",".join(map(str, cols)),
                  str(ch.get("rows_changed", "")), str(ch.get("cells_changed", "")), str(ch.get("rows_dropped", "")))
    out.print(t)


def render_optimize(r: dict[str, Any]) -> None:
    t = _compact_table(f"variants of {r['parent']['name']}:{r['parent']['version']} (target: {r['target']})")
    for c in ("variant", "size", "p50 ms", "p99 ms", "rows/s", r["metric"], "delta", "×", "kept"):
        t.add_column(c, no_wrap=True, justify="left" if c in ("variant", "kept") else "right")
    base = r["variants"][0]
    notes = []
    for v in r["variants"]:
        if v["latency_p50_ms"] is None:
            t.add_row(v["name"], *["—"] * 7, "[dim]skip[/]")
            notes.append(f"  {v['name']}: {v['reason']}")
            continue
        size = f"{v['size_bytes'] / 2**20:.1f}M" if v["size_bytes"] >= 2**20 else f"{v['size_bytes'] / 1024:.0f}K"
        speed = f"{base['latency_p50_ms'] / v['latency_p50_ms']:.1f}×" if v["latency_p50_ms"] else "—"
        t.add_row(v["name"], size, f"{v['latency_p50_ms']:.2f}", f"{v['latency_p99_ms']:.2f}",
                  f"{v['throughput_rps']:.0f}", _fmt(v["metric"]), f"{v['metric_delta']:+.4f}", speed,
                  "yes" if v["kept"] else "[red]no[/]")
        if not v["kept"]:
            notes.append(f"  {v['name']}: {v['reason']}")
    out.print(t)
    threads = f"; each on {r['threads']} thread(s), as served" if r.get("threads") else ""
    out.print(f"  p50/p99: batch-1 latency; rows/s: at batch 64; ×: speed-up over {base['name']}{threads}",
              style="dim")
    for line in notes:
        out.print(line, markup=False)
    m = r["model"]
    if r["chosen"] == r["baseline"]:
        out.print("the unoptimized model stays best; nothing registered")
    elif r.get("promoted"):
        out.print(f"chosen [bold]{r['chosen']}[/], registered as {m['name']}:{m['version']} and promoted: "
                  f"{r['promotion']}")
    else:
        out.print(f"chosen [bold]{r['chosen']}[/], registered as {m['name']}:{m['version']} — "
                  f"`modelloop promote {m['version']}` to serve it")
        if r.get("promotion"):
            out.print(f"  not promoted: {r['promotion']}", markup=False)


def _live_f1(monitor: dict[str, Any], version: int) -> tuple[float | None, int]:
    per = (monitor.get("metrics") or {}).get(str(version)) or {}
    allw = per.get("all") or {}
    return allw.get("f1_macro"), int(allw.get("n") or 0)


def demo_summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The one-screen summary as (label, text) rows."""
    t = result["train"]
    rows = [("dataset", f"{t['dataset']['id']} (v{t['dataset']['version']}, {t['dataset']['rows']} rows)"),
            ("model", f"{t['model']['name']}:{t['model']['version']} — {model_kind(t)}, test f1_macro "
                      f"{t['test_metrics']['f1_macro']:.4f}, roc_auc {t['test_metrics']['roc_auc']:.4f}"),
            ("report", t["report"])]
    if "optimize" in result:
        o = result["optimize"]
        base = o["variants"][0]["latency_p50_ms"]
        ch = next(v for v in o["variants"] if v["name"] == o["chosen"])
        rows.append(("optimize", f"{o['chosen']}: p50 {ch['latency_p50_ms']:.2f} ms vs {base:.2f} ms native "
                                 f"({base / ch['latency_p50_ms']:.0f}×)"
                                 + (f", serving v{o['model']['version']}" if o.get("promoted") else "")))
    if "monitor" in result:
        m = result["monitor"]
        rows.append(("drift", ", ".join(m["drifted_features"]) or "none"))
        served = result["optimize"]["model"] if result.get("optimize", {}).get("promoted") else t["model"]
        f1, n = _live_f1(m, served["version"])
        rows.append(("live before", f"f1_macro {f1:.4f} on {n} labeled predictions" if f1 is not None else "—"))
    if "retrain" in result:
        r = result["retrain"]
        ch, cl = r["champion"]["metrics"], r["challenger"]["metrics"]
        rows.append(("retrain", f"{'promoted' if r['promoted'] else 'not promoted'} v{r['challenger']['model']['version']}: "
                                f"f1_macro recent {ch['recent'].get('f1_macro', float('nan')):.3f} → "
                                f"{cl['recent'].get('f1_macro', float('nan')):.3f}, holdout "
                                f"{ch['holdout'].get('f1_macro', float('nan')):.3f} → {cl['holdout'].get('f1_macro', float('nan')):.3f}"))
        interval = (r.get("gate") or {}).get("recent_gain_interval")
        if interval:
            rows.append(("", f"recent gain 95% interval {interval[0]:+.3f} to {interval[1]:+.3f} on "
                             f"{r['rows']['recent']:,} rows" + (": within the noise" if r["gate"].get("recent_gain_within_noise")
                                                                else "")))
        if (r.get("optimize") or {}).get("promoted"):
            rows.append(("", f"v{r['challenger']['model']['version']} optimized ({r['optimize']['chosen']}), "
                             f"serving v{r['optimize']['model']['version']}"))
    if "monitor_after" in result:
        versions = result["serve"]["after"]["versions"]
        v = max(versions, key=versions.get)
        f1, n = _live_f1(result["monitor_after"], v)
        rows.append(("live after", f"served by v{v}: f1_macro {f1:.4f} on {n} labeled predictions"
                     if f1 is not None else "—"))
    if "fresh" in result:
        f = result["fresh"]
        ch, cl = f["champion"], f["challenger"]
        rows.append(("fresh data", f"{ch['rows']} rows: f1_macro v{ch['version']} {ch['metrics']['f1_macro']:.3f} → "
                                   f"v{cl['version']} {cl['metrics']['f1_macro']:.3f}, roc_auc "
                                   f"{ch['metrics']['roc_auc']:.3f} → {cl['metrics']['roc_auc']:.3f}"))
        for metric, c in (f.get("change") or {}).items():  # how much of each change is noise, as the gate says
            if c.get("interval"):
                lo, hi = c["interval"]
                rows.append(("", f"{metric} {c['delta']:+.3f}, 95% interval {lo:+.3f} to {hi:+.3f}"
                                 + (": within the noise" if c.get("within_noise") else "")))
    return rows


def render_demo(result: dict[str, Any]) -> None:
    """The demo's one-screen summary."""
    out.print("\n[bold]modelloop demo — one turn of the loop[/]")
    for label, text in demo_summary_rows(result):
        out.print(f"  [cyan]{label:12}[/] {text}")
    out.print(f"\nNext: cd {result.get('directory', '.')} && modelloop status | modelloop monitor | modelloop serve")
