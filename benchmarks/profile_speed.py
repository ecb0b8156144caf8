"""Profiling speed: modelloop's quality profile against ydata-profiling (minimal mode) on one table,
and the path a user takes to the first report (``ingest`` then ``profile``) against a basic pandas pass.

    python benchmarks/profile_speed.py                  # 1,000,000 rows x 30 mixed columns
    python benchmarks/profile_speed.py --rows 200000 --tools modelloop
    python benchmarks/profile_speed.py --peer-python /path/to/other/venv/bin/python
    python benchmarks/profile_speed.py --tools modelloop --modelloop-input read   # eager read, then profile
    python benchmarks/profile_speed.py --tools ingest,pandas --rounds 3          # the first report, 3 rounds

Generates a seeded table (numbers with missing values and outliers, categories, a high-cardinality
city, ids, e-mails, booleans, dates, short text, a constant column and a binary target), writes it
to Parquet, then profiles it with each tool in its own subprocess so that the peak resident memory
(``VmHWM``, see ``_rss_mb``; tracemalloc misses Polars/Arrow allocations) belongs to one tool.
Both tools read the Parquet file and produce their HTML report; the wall time covers profile +
report, the read time is shown apart. modelloop scans the Parquet lazily by default (``pl.scan_parquet``:
each step reads the columns or rows it needs, so its read time is inside the profile time);
``--modelloop-input read`` reads it eagerly first. The RSS right after the imports is reported too
(``import MiB``), so that what the profile itself costs shows as peak minus that baseline; the goal
is a peak under 3x the Parquet size. ydata-profiling is not a modelloop dependency: install it
with ``pip install ydata-profiling`` to include the peer, best in a separate virtualenv (it pins
its own pandas and numpy) whose interpreter is passed as ``--peer-python``.

``ingest`` runs the stages a user runs on a project whose ``data.source`` is the Parquet file: the
ingest (schema, checks, content id, snapshot, frozen split) in one process, then the profile of that
version (``profile_dataset``: report, split shift, HTML + JSON) in another, as ``modelloop ingest`` and
``modelloop profile`` do. ``pandas`` is the basic pass a user would write instead: ``read_parquet``,
``describe(include="all")``, missing shares, distinct counts and duplicate rows. Both are timed from
after their imports (modelloop's stages import Polars, pandas and pyarrow on first use, so theirs fall inside
the stage's time, while pandas' own import is before its timer); the ratio printed is (ingest + profile) /
pandas, and a second line gives both sides with every import included (from before ``import pandas`` and
``from modelloop import Project``: a user's wait in a fresh process). ``--rounds`` repeats the
ingest and pandas rows, alternating them, and prints each round (the machine may be shared), with each
side's CPU seconds (user + system, all threads) beside the wall time: on a busy machine the wall times of
rounds run minutes apart vary several-fold, their CPU seconds much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KINDS = {
    **{f"num_{i}": "numeric" for i in range(10)}, **{f"int_{i}": "numeric" for i in range(4)},
    **{f"cat_{i}": "categorical" for i in range(6)}, "city": "categorical", "txn_id": "identifier",
    "email": "identifier", "flag_a": "boolean", "flag_b": "boolean", "created": "datetime",
    "updated": "datetime", "note": "text", "constant": "categorical", "is_fraud": "categorical",
}


def generate(rows: int, seed: int = 0):
    """A (rows x 30) Polars frame with planted problems; the same for the same seed."""
    import polars as pl

    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(10):
        x = rng.lognormal(0, 1, rows) if i % 3 == 0 else rng.normal(i, 1 + i, rows)
        if i < 4:
            x[rng.random(rows) < 0.02 * (i + 1)] = np.nan
        if i == 5:
            x[rng.random(rows) < 0.001] = 1e6
        cols[f"num_{i}"] = x
    for i in range(4):
        cols[f"int_{i}"] = rng.integers(0, 10 ** (i + 1), rows)
    for i in range(6):
        levels = np.array([f"L{i}_{j}" for j in range(3 + 8 * i)])
        cols[f"cat_{i}"] = levels[rng.integers(0, len(levels), rows)]
    cities = np.array([f"City{j:04d}" for j in range(5000)])
    cols["city"] = cities[rng.zipf(1.3, rows) % 5000]
    words = np.array("the a card paid online store refund late night travel gift fuel grocery".split())
    notes = np.array([" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(2000)])
    cols["note"] = notes[rng.integers(0, len(notes), rows)]
    cols["flag_a"] = rng.random(rows) < 0.3
    cols["flag_b"] = rng.random(rows) < 0.5
    start = np.datetime64("2023-01-01T00:00:00", "ms")
    created = start + rng.integers(0, 365 * 24 * 3600, rows).astype("timedelta64[s]")
    cols["created"] = created.astype("datetime64[ms]")
    cols["updated"] = (created + rng.integers(-3600, 30 * 24 * 3600, rows).astype("timedelta64[s]")).astype("datetime64[ms]")
    cols["constant"] = np.full(rows, "EUR")
    logit = -3.2 + 0.8 * np.nan_to_num(cols["num_1"]) / 2 + 1.5 * cols["flag_a"] - 0.5 * np.log(cols["num_0"] + 1e-9)
    cols["is_fraud"] = (rng.random(rows) < 1 / (1 + np.exp(-np.nan_to_num(logit)))).astype(np.int64)
    df = pl.DataFrame(cols)
    idx = pl.int_range(0, rows, eager=False)
    domains = pl.Series(["example.com", "mail.org", "corp.net"])
    df = df.with_columns(
        pl.format("T{}", idx).alias("txn_id"),
        pl.format("user{}@{}", (idx * 7919) % (rows // 3 + 1),
                  pl.lit(domains).gather(idx % 3)).alias("email"),
    )
    return df.select(list(KINDS))


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: ``VmHWM`` from /proc, because ``getrusage``'s max RSS survives ``exec`` and so would
    count the parent's peak (the table generation) in the worker's.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def _run_modelloop(path: str, how: str = "scan") -> dict[str, float]:
    # modelloop first, as the CLI does: it sets Polars' allocator options before Polars loads.
    from modelloop.data.quality import profile
    from modelloop.data.schema import Schema

    import polars as pl

    import_rss = _rss_mb()
    t0 = time.perf_counter()
    df = pl.scan_parquet(path) if how == "scan" else pl.read_parquet(path)
    t1 = time.perf_counter()
    report = profile(df, Schema(columns=dict(KINDS), target="is_fraud", id="txn_id"))
    html = report.to_html()
    json.dumps(report.to_dict())
    t2 = time.perf_counter()
    return {"read_s": t1 - t0, "wall_s": t2 - t1, "html_kb": len(html) / 1024, "import_rss_mb": import_rss,
            "input": how, "findings": len(report.findings),
            "label_rows": report.sampled.get("label_issues_rows", 0)}


def _run_ydata(path: str) -> dict[str, float]:
    import pandas as pd
    from ydata_profiling import ProfileReport

    import_rss = _rss_mb()
    t0 = time.perf_counter()
    df = pd.read_parquet(path)
    t1 = time.perf_counter()
    html = ProfileReport(df, minimal=True, progress_bar=False).to_html()
    t2 = time.perf_counter()
    return {"read_s": t1 - t0, "wall_s": t2 - t1, "html_kb": len(html) / 1024, "import_rss_mb": import_rss}


def _cpu_s() -> float:
    """CPU seconds (user + system, every thread) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_pandas(path: str) -> dict[str, float]:
    """The basic pandas pass: summary statistics, missing shares, distinct counts, duplicate rows."""
    before_imports, cpu_before_imports = time.perf_counter(), _cpu_s()
    import pandas as pd

    import_rss = _rss_mb()
    cpu = _cpu_s()
    t0 = time.perf_counter()
    df = pd.read_parquet(path)
    t1 = time.perf_counter()
    summary = {"describe": df.describe(include="all"), "missing": df.isna().mean(), "distinct": df.nunique(),
               "duplicates": int(df.duplicated().sum())}
    t2 = time.perf_counter()
    return {"read_s": t1 - t0, "wall_s": t2 - t0, "import_rss_mb": import_rss, "html_kb": 0.0,
            "duplicates": summary["duplicates"], "cpu_s": _cpu_s() - cpu,
            "with_imports_s": t2 - before_imports, "with_imports_cpu_s": _cpu_s() - cpu_before_imports}


def _project_config(path: str, project: str) -> str:
    config = Path(project) / "modelloop.yaml"
    config.write_text(f"name: bench\ndata:\n  source: {path}\n  target: is_fraud\n  id: txn_id\n")
    return str(config)


def _run_stage(stage: str, path: str, project: str) -> dict[str, float]:
    """One stage of the CLI path in this process: ``ingest`` (makes the version) or ``profile`` (of it)."""
    before_imports, cpu_before_imports = time.perf_counter(), _cpu_s()
    from modelloop import Project

    project_ = Project.load(_project_config(path, project))
    import_rss = _rss_mb()
    cpu = _cpu_s()
    t0 = time.perf_counter()
    result = project_.ingest() if stage == "ingest" else project_.profile()
    t1 = time.perf_counter()
    out = {"wall_s": t1 - t0, "read_s": 0.0, "import_rss_mb": import_rss, "cpu_s": _cpu_s() - cpu,
           "with_imports_s": t1 - before_imports, "with_imports_cpu_s": _cpu_s() - cpu_before_imports}
    if stage == "ingest":
        out["created"] = result["created"]
    else:
        out["findings"] = len(result["findings"])
    return out


def _worker(tool: str, path: str, how: str, project: str | None = None) -> None:
    if tool == "modelloop":
        result = _run_modelloop(path, how)
    elif tool == "pandas":
        result = _run_pandas(path)
    elif tool in ("ingest", "profile"):
        assert project is not None
        result = _run_stage(tool, path, project)
    else:
        result = _run_ydata(path)
    result["peak_rss_mb"] = _rss_mb()
    print(json.dumps(result))


def _run_worker(python: str, tool: str, path: str, how: str, project: str | None = None) -> dict | None:
    """One tool in a fresh interpreter (its peak memory is its own); None, with the error shown, on failure."""
    cmd = [python, __file__, "--worker", tool, "--path", path, "--modelloop-input", how]
    proc = subprocess.run(cmd + (["--project", project] if project else []), capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{tool} failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _first_report(path: str, tmp: str, round_: int) -> dict[str, float] | None:
    """``ingest`` then ``profile`` of a new project, each in its own process: the CLI path."""
    project = os.path.join(tmp, f"project-{round_}")
    os.makedirs(project)
    ingest = _run_worker(sys.executable, "ingest", path, "scan", project)
    profile = _run_worker(sys.executable, "profile", path, "scan", project) if ingest else None
    if ingest is None or profile is None:
        return None
    return {"wall_s": ingest["wall_s"] + profile["wall_s"], "read_s": 0.0, "ingest_s": ingest["wall_s"],
            "profile_s": profile["wall_s"], "import_rss_mb": max(ingest["import_rss_mb"], profile["import_rss_mb"]),
            "peak_rss_mb": max(ingest["peak_rss_mb"], profile["peak_rss_mb"]),
            "ingest_peak_mb": ingest["peak_rss_mb"], "profile_peak_mb": profile["peak_rss_mb"], "html_kb": 0.0,
            "cpu_s": ingest.get("cpu_s", 0.0) + profile.get("cpu_s", 0.0),
            "with_imports_s": ingest["with_imports_s"] + profile["with_imports_s"],
            "with_imports_cpu_s": ingest["with_imports_cpu_s"] + profile["with_imports_cpu_s"]}


def _available(python: str, module: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tools", default="modelloop,ingest,pandas,ydata")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="interpreter that has ydata-profiling (default: this one)")
    ap.add_argument("--modelloop-input", choices=("scan", "read"), default="scan",
                    help="scan the Parquet lazily (default) or read it into memory before profiling")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the ingest and pandas rows, alternating")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--project", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker, args.path, args.modelloop_input, args.project)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "table.parquet")
        t = time.perf_counter()
        generate(args.rows, args.seed).write_parquet(path)
        parquet_mb = Path(path).stat().st_size / 2**20
        print(f"table: {args.rows:,} rows x {len(KINDS)} columns, generated in {time.perf_counter() - t:.1f}s "
              f"({parquet_mb:.0f} MiB Parquet); CPUs: {os.cpu_count()}")
        results: dict[str, dict[str, float]] = {}
        rounds: dict[str, list[dict[str, float]]] = {}
        tools = args.tools.split(",")
        for round_ in range(args.rounds):
            for tool in tools:
                if round_ and tool not in ("ingest", "pandas"):
                    continue
                python = args.peer_python if tool == "ydata" else sys.executable
                if tool == "ydata" and not _available(python, "ydata_profiling"):
                    print("ydata-profiling is not installed; `pip install ydata-profiling` (or pass --peer-python) "
                          "to compare against it")
                    continue
                got = (_first_report(path, tmp, round_) if tool == "ingest"
                       else _run_worker(python, tool, path, args.modelloop_input))
                if got is not None:
                    results[tool] = got
                    rounds.setdefault(tool, []).append(got)
    print(f"\n{'tool':<12}{'profile+report s':>18}{'read s':>9}{'import MiB':>12}{'peak RSS MiB':>14}"
          f"{'peak/Parquet':>14}{'HTML KiB':>10}")
    for tool, r in results.items():
        print(f"{tool:<12}{r['wall_s']:>18.2f}{r['read_s']:>9.2f}{r['import_rss_mb']:>12.0f}{r['peak_rss_mb']:>14.0f}"
              f"{r['peak_rss_mb'] / parquet_mb:>13.1f}x{r['html_kb']:>10.0f}")
    for tool, r in results.items():
        own = r["peak_rss_mb"] - r["import_rss_mb"]
        print(f"{tool}: peak minus import baseline {own:.0f} MiB = {own / parquet_mb:.1f}x the Parquet "
              f"(goal: peak < 3x = {3 * parquet_mb:.0f} MiB)")
    if "modelloop" in results and "ydata" in results:
        m, y = results["modelloop"], results["ydata"]
        print(f"\nydata-profiling / modelloop: {y['wall_s'] / m['wall_s']:.1f}x time, "
              f"{y['peak_rss_mb'] / m['peak_rss_mb']:.1f}x peak memory")
    if "modelloop" in results:
        print(f"modelloop details: {results['modelloop']}")
    _print_first_report(rounds)


def _print_first_report(rounds: dict[str, list[dict[str, float]]]) -> None:
    """Per round: ingest, profile, their sum against the pandas pass (the user's wait to a first report)."""
    if "ingest" not in rounds:
        return
    print("\nfirst report (seconds after imports; peaks per process):")
    for i, r in enumerate(rounds["ingest"]):
        pandas = rounds.get("pandas", [])
        line = (f"  round {i + 1}: ingest {r['ingest_s']:.2f} s (peak {r['ingest_peak_mb']:.0f} MiB), "
                f"profile {r['profile_s']:.2f} s (peak {r['profile_peak_mb']:.0f} MiB), sum {r['wall_s']:.2f} s")
        if i < len(pandas):
            p = pandas[i]
            line += (f"; pandas basic pass {p['wall_s']:.2f} s (peak {p['peak_rss_mb']:.0f} MiB): "
                     f"ingest+profile / pandas = {r['wall_s'] / p['wall_s']:.2f}x")
            if p.get("cpu_s") and r.get("cpu_s"):  # less sensitive than wall time to what else the machine runs
                line += f"; CPU s {r['cpu_s']:.2f} vs {p['cpu_s']:.2f} = {r['cpu_s'] / p['cpu_s']:.2f}x"
            if p.get("with_imports_s") and r.get("with_imports_s"):  # what a user waits for, imports included
                line += (f"\n    with the imports on both sides (modelloop's Polars/pandas/pyarrow load inside the stages,"
                         f" pandas' before its timer): {r['with_imports_s']:.2f} s vs {p['with_imports_s']:.2f} s = "
                         f"{r['with_imports_s'] / p['with_imports_s']:.2f}x; CPU s {r['with_imports_cpu_s']:.2f} vs "
                         f"{p['with_imports_cpu_s']:.2f} = {r['with_imports_cpu_s'] / p['with_imports_cpu_s']:.2f}x")
        print(line)


if __name__ == "__main__":
    main()
