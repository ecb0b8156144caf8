"""``train.parallel: 2`` against 1: the same tabular search budget, trials per minute and the best score.

    .venv/bin/python benchmarks/parallel_search.py [--budget 60] [--rows 4000] [--seed 0] [--json]

Both runs call modelloop's real search (``modelloop.families.tabular.search.run_search``, the one
``modelloop train`` runs) on the same seeded synthetic binary task (``sklearn make_classification``:
``--rows`` rows, 20 features, 8 informative, 3 % label noise), the same 3 stratified folds, the
same families (LightGBM, XGBoost, linear) and the same time budget, each in a fresh SQLite study. The
only difference is ``parallel``. Measured from the call to the last finished trial (so the parallel
run pays for starting its workers): finished trials per minute (and how many were pruned, the mean
trial's seconds, and trial-seconds per wall second: how many trials ran at once on average, which does
not depend on which parameters the sampler happened to pick); and the best single trial's OOF F1.
Printed: both, and parallel 2's ratio to 1 (goal in issue 24: >= 1.7x the trials per minute on 2 cores,
the same best score within noise). The machine's load average is printed before and after: on a
machine shared with other work, the second core is not free and the ratio says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.model_selection import StratifiedKFold

from modelloop.data.schema import Schema
from modelloop.families.tabular.search import SearchSettings, run_search


def _data(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series, Schema, list]:
    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, flip_y=0.03, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    target = pd.Series(np.where(y == 1, "yes", "no"))
    folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(frame, target))
    return frame, target, Schema(columns={c: "numeric" for c in frame.columns}), folds


def _run(parallel: int, budget: float, data: tuple, seed: int, folder: Path) -> dict[str, Any]:
    X, y, schema, folds = data
    ends: list[float] = []
    settings = SearchSettings(task="binary", metric="f1", budget=budget, seed=seed, ensemble=False,
                              parallel=parallel)
    start = time.monotonic()
    result = run_search(X, y, schema=schema, folds=folds, settings=settings,
                        storage=f"sqlite:///{folder / f'p{parallel}.db'}", study_name="bench",
                        work_dir=folder / f"p{parallel}", on_trial=lambda _: ends.append(time.monotonic()))
    seconds = (ends[-1] if ends else time.monotonic()) - start
    done = len(result.trials)
    busy = sum(t.duration_s for t in result.trials)
    return {"parallel": parallel, "trials": done, "pruned": sum(t.state == "pruned" for t in result.trials),
            "seconds": round(seconds, 2), "trials_per_minute": round(60.0 * done / seconds, 2),
            "mean_trial_s": round(busy / max(done, 1), 3), "trial_seconds_per_second": round(busy / seconds, 3),
            "best_f1": round(result.best_single.value or 0.0, 4), "best_family": result.best_single.family}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="search seconds, each run")
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("parallel_search.py needs 2 CPUs (train.parallel: 2)", file=sys.stderr)
        return 2
    data = _data(args.rows, args.seed)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [_run(p, args.budget, data, args.seed, Path(tmp)) for p in (1, 2)]
    load_after = os.getloadavg()
    one, two = runs
    out = {"budget_s": args.budget, "rows": args.rows, "cpus": os.cpu_count(), "runs": runs,
           "ratio_trials_per_minute": round(two["trials_per_minute"] / one["trials_per_minute"], 3),
           "best_f1_difference": round(two["best_f1"] - one["best_f1"], 4),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in load_after]}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"tabular search, {args.rows} rows x 20 features, 3 folds, budget {args.budget:g} s each, "
          f"{os.cpu_count()} CPUs; load average before {out['load_average_before']}, after {out['load_average_after']}")
    print(f"{'parallel':>8} {'trials':>7} {'pruned':>7} {'seconds':>8} {'trials/min':>11} {'mean trial s':>13} "
          f"{'trial-s/s':>10} {'best f1':>8}  best family")
    for r in runs:
        print(f"{r['parallel']:>8} {r['trials']:>7} {r['pruned']:>7} {r['seconds']:>8.1f} "
              f"{r['trials_per_minute']:>11.2f} {r['mean_trial_s']:>13.3f} {r['trial_seconds_per_second']:>10.3f} "
              f"{r['best_f1']:>8.4f}  {r['best_family']}")
    print(f"ratio parallel 2 / 1, trials per minute: {out['ratio_trials_per_minute']:.3f} (goal >= 1.7); "
          f"best f1 difference (2 - 1): {out['best_f1_difference']:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
