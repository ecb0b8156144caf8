"""Optimize: each variant of the demo fraud model against native predict (the peer: how a user
would otherwise serve it — LightGBM/XGBoost/scikit-learn ``predict_proba`` on a pandas row).

    python benchmarks/optimize.py [--budget 60] [--rows 20000]

Prints, per variant: batch-1 latency p50/p99, batch-64 throughput, size, the test metric and its
delta, and the speed-up and size ratios against native. Goal: the chosen variant at least 3× lower
batch-1 latency than native predict of the ensemble, within the allowed metric drop.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=60)
    ap.add_argument("--rows", type=int, default=20000)
    args = ap.parse_args()
    from modelloop import Project
    from modelloop.scaffold import init_project

    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "fraud"
        init_project(root, example="fraud")
        p = Project.load(root / "modelloop.yaml")
        p.run(budget=args.budget)
        r = p.optimize()
    base = r["variants"][0]
    print(f"\noptimize on the fraud example ({args.rows} rows, search budget {args.budget:.0f} s); "
          f"metric {r['metric']}, target {r['target']}")
    print(f"{'variant':18}{'p50 ms':>9}{'p99 ms':>9}{'rows/s@64':>11}{'size KiB':>10}{'metric':>9}{'delta':>9}"
          f"{'speed-up':>10}{'size ×':>8}  kept")
    for v in r["variants"]:
        if v["latency_p50_ms"] is None:
            print(f"{v['name']:18}  skipped: {v['reason']}")
            continue
        print(f"{v['name']:18}{v['latency_p50_ms']:>9.3f}{v['latency_p99_ms']:>9.3f}{v['throughput_rps']:>11.0f}"
              f"{v['size_bytes'] / 1024:>10.0f}{v['metric']:>9.4f}{v['metric_delta']:>9.4f}"
              f"{base['latency_p50_ms'] / v['latency_p50_ms']:>9.1f}×{v['size_bytes'] / base['size_bytes']:>8.2f}"
              f"  {'yes' if v['kept'] else 'no: ' + v['reason']}")
    print(f"chosen: {r['chosen']} -> {r['model']['name']}:{r['model']['version']}")


if __name__ == "__main__":
    main()
