"""The paired bootstrap interval of an F1 gain: modelloop's (``evaluation.metrics.paired_change_interval``,
as the retrain gate and optimize call it: 200 resamples, two figures each) against the peer a user would
otherwise write, scikit-learn's ``f1_score`` called on each resample of each model's labels.

    .venv/bin/python benchmarks/label_metrics.py [--rows 300] [--rounds 200] [--repeat 5] [--seed 0] [--json]

Both run on the same rows and the same resamples (one seeded generator drawing row positions, as
``_percentiles`` does), alternating, so a busy spell of the machine hits both. Printed per metric
(``f1_macro`` on 3 classes, binary ``f1``): the median CPU seconds of one interval over ``--repeat`` runs
(``time.process_time``: the machine is shared, wall time would count other jobs), their ratio, and whether
the two intervals are equal to the 6 decimals modelloop keeps. modelloop counts the figures from the
(true, predicted) pairs instead of calling scikit-learn, whose input checks cost milliseconds a call: this
measures that choice. Exit status 1 when an interval differs from the peer's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

CASES = (("f1_macro", 3), ("f1", 2))


def _peer(metric: str, k: int, y: np.ndarray, after: np.ndarray, before: np.ndarray, rounds: int,
          seed: int) -> list[float]:
    """What a user writes without modelloop: f1_score on each paired resample of the predicted labels."""
    from sklearn.metrics import f1_score

    if metric == "f1":
        def f1(t: np.ndarray, p: np.ndarray) -> float:
            return float(f1_score(t, p, pos_label=1, zero_division=0))
    else:
        def f1(t: np.ndarray, p: np.ndarray) -> float:
            return float(f1_score(t, p, average="macro", labels=list(range(k)), zero_division=0))
    pa, pb = after.argmax(axis=1), before.argmax(axis=1)
    rng = np.random.default_rng(seed)
    gains = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            i = rng.integers(0, len(y), len(y))
            gains.append(f1(y[i], pa[i]) - f1(y[i], pb[i]))
    lo, hi = np.nanpercentile(np.array(gains), [2.5, 97.5])
    return [round(float(lo), 6), round(float(hi), 6)]


def _cpu_seconds(call: Callable[[], list[float]]) -> tuple[float, list[float]]:
    start = time.process_time()
    value = call()
    return time.process_time() - start, value


def _case(metric: str, k: int, rng: np.random.Generator, rows: int, rounds: int, repeat: int,
          seed: int) -> dict[str, Any]:
    from modelloop.evaluation.metrics import paired_change_interval

    y = rng.integers(0, k, rows)
    # two models that mostly agree with the truth, the "after" one a little more often
    after, before = (rng.dirichlet(np.ones(k), rows) + np.eye(k)[y] * w for w in (0.6, 0.5))
    calls = {"modelloop": lambda: paired_change_interval(metric, y, (after, None), (before, None),
                                                        rounds=rounds, seed=seed),
             "sklearn": lambda: _peer(metric, k, y, after, before, rounds, seed)}
    for call in calls.values():  # first call: imports, caches
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    intervals: dict[str, list[float]] = {}
    for _ in range(repeat):
        for name, call in calls.items():
            seconds, intervals[name] = _cpu_seconds(call)
            times[name].append(seconds)
    ours, peer = statistics.median(times["modelloop"]), statistics.median(times["sklearn"])
    return {"metric": metric, "classes": k, "modelloop_cpu_s": round(ours, 4), "sklearn_cpu_s": round(peer, 4),
            "ratio": round(peer / ours, 1), "interval": intervals["modelloop"],
            "sklearn_interval": intervals["sklearn"], "equal": intervals["modelloop"] == intervals["sklearn"]}


def run(rows: int, rounds: int, repeat: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    cases = [_case(metric, k, rng, rows, rounds, repeat, seed) for metric, k in CASES]
    return {"rows": rows, "rounds": rounds, "repeat": repeat, "seed": seed, "cases": cases,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300, help="test rows the interval resamples")
    ap.add_argument("--rounds", type=int, default=200, help="bootstrap resamples (modelloop's default: 200)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each; the median is printed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = run(args.rows, args.rounds, args.repeat, args.seed)
    ok = all(c["equal"] for c in out["cases"])
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if ok else 1
    print(f"paired bootstrap interval of an F1 gain, {args.rows} rows, {args.rounds} resamples, median CPU s of "
          f"{args.repeat} runs; load average {out['load_average']}")
    print(f"{'metric':10} {'classes':>7} {'modelloop s':>12} {'f1_score s':>11} {'ratio':>7}  interval (equal)")
    for c in out["cases"]:
        print(f"{c['metric']:10} {c['classes']:>7} {c['modelloop_cpu_s']:>12.4f} {c['sklearn_cpu_s']:>11.4f} "
              f"{c['ratio']:>6.1f}x  {c['interval']} ({'equal' if c['equal'] else 'DIFFERS: ' + str(c['sklearn_interval'])})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
