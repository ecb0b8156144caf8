"""Optimize: each variant of the demo fraud model and of the intents text model against the
unoptimized model served the way a user otherwise would (the peer): native ``predict_proba`` on a
pandas row for the fraud ensemble (LightGBM/XGBoost/scikit-learn), PyTorch eager for the text model.
Tabular variants are timed as ``modelloop serve`` runs them: a JSON record through the serving
runtime (the DataFrame built from it and ``predict_proba`` for the native model, the feed arrays and
the ONNX Runtime session for the others).

    python benchmarks/optimize.py [--example fraud|intents|all] [--budget 60]

Prints, per variant: batch-1 latency p50/p99, batch-64 throughput, size, the test metric and its
delta, and the speed-up and size ratios against the unoptimized model. Goal: the chosen tabular
variant at least 3× lower batch-1 latency than native predict of the ensemble, the chosen text
variant at least 3× PyTorch eager, each within the allowed metric drop.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any


def run(example: str, budget: float) -> dict[str, Any]:
    from modelloop import Project
    from modelloop.scaffold import init_project

    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / example
        init_project(root, example=example)
        p = Project.load(root / "modelloop.yaml")
        p.run(budget=budget)
        return p.optimize()


def show(r: dict[str, Any], title: str) -> None:
    base = r["variants"][0]
    print(f"\n{title}; metric {r['metric']}, target {r['target']}")
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
    chosen = next(v for v in r["variants"] if v["name"] == r["chosen"])
    print(f"chosen: {r['chosen']} -> {r['model']['name']}:{r['model']['version']}, "
          f"{base['latency_p50_ms'] / chosen['latency_p50_ms']:.1f}× lower batch-1 latency than {base['name']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", choices=["fraud", "intents", "all"], default="all")
    ap.add_argument("--budget", type=float, default=60)
    args = ap.parse_args()
    if args.example in ("fraud", "all"):
        show(run("fraud", args.budget), f"optimize on the fraud example (20,000 generated rows, search budget "
                                        f"{args.budget:.0f} s), peer: native predict_proba")
    if args.example in ("intents", "all"):
        show(run("intents", args.budget), f"optimize on the intents text example (search budget {args.budget:.0f} s), "
                                          "peer: PyTorch eager")


if __name__ == "__main__":
    main()
