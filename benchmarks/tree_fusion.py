"""What compacting a tabular graph saves: a served model's graph as skl2onnx converts it (each
ensemble member with its own preprocessing and tree node) against ``to_onnx``'s compacted one (shared
preprocessing, one tree node per kind of split: ``families/tabular/fuse.py``).

    .venv/bin/python benchmarks/tree_fusion.py (--project D | --dir D [--rows 5000 --budget 20]) \\
        [--batch 1 8 32 1024] [--rounds 3]

``--project D`` times the production model of an existing project; ``--dir D`` trains the fraud example
there first as ``benchmarks/serving.py`` does (a folder it trained before is reused). Both graphs are
opened as ``modelloop serve`` opens them (packed float inputs, one thread) and timed through the
runtime's whole ``predict`` (feed from JSON records, the ONNX Runtime run, labels). Each call takes the
next of a few hundred batches of different records: one batch repeated lets the CPU's branch predictor
learn the trees' paths (the fraud example's bagged ensemble: 47 µs a record at batch 1 repeated, about
100 µs when the record changes, as it does in a server). Printed: CPU µs a record (``optimize.cpu_ms``,
the 10th percentile of chunks over 2 s) for each graph, their ratio per round, nodes and trees.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--project", type=Path, help="an existing project: its production model")
    where.add_argument("--dir", type=Path, help="train the fraud example here first (reused when trained)")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--budget", type=float, default=20)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32, 1024])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from serving import build_project, existing_project  # the same project and records as serving.py

    from modelloop.families.tabular.export import to_onnx
    from modelloop.families.tabular.serve import onnx_runtime, serving_session
    from modelloop.optimization.optimize import cpu_ms
    from modelloop.serving.runtime import load_runtime, native_model

    project, records = existing_project(args.project) if args.project else build_project(args.dir, args.rows,
                                                                                         args.budget)
    served = load_runtime(project.workspace)
    model = native_model(project.workspace, served.row)
    plan = served.plan.to_dict() if served.plan is not None else None
    graphs = {"skl2onnx": to_onnx(model, compact=False), "compacted": to_onnx(model)}
    runtimes = {k: onnx_runtime(served.row, serving_session(g.SerializeToString()), plan=plan)
                for k, g in graphs.items()}
    for k, g in graphs.items():
        ops = Counter(n.op_type for n in g.graph.node)
        trees = sum(len(set(a.ints)) for n in g.graph.node if n.op_type.startswith("TreeEnsemble")
                    for a in n.attribute if a.name == "nodes_treeids")
        print(f"{k:10s} {len(g.graph.node):4d} nodes, {trees} trees: {dict(ops.most_common(6))}")
    rng = np.random.default_rng(0)
    check = records[:256]
    diff = float(np.max(np.abs(runtimes["skl2onnx"].scores(check) - runtimes["compacted"].scores(check))))
    print(f"max |compacted - skl2onnx| over {len(check)} records: {diff:.2g}")
    for batch in args.batch:
        batches = [[records[i] for i in rng.choice(len(records), batch, replace=batch > len(records))]
                   for _ in range(max(8, min(300, 4096 // batch)))]
        figures: dict[str, list[float]] = {k: [] for k in runtimes}
        for _ in range(args.rounds):  # alternating, so a busy spell hits both
            for k, rt in runtimes.items():
                cycle = itertools.cycle(batches)
                figures[k].append(1000 * cpu_ms(lambda rt=rt, c=cycle: rt.predict(next(c)), 2.0, 10) / batch)
        a, b = np.median(figures["skl2onnx"]), np.median(figures["compacted"])
        rounds = ", ".join(f"{x / y:.2f}" for x, y in zip(*figures.values(), strict=True))
        print(f"batch {batch:5d}: skl2onnx {a:7.1f} µs, compacted {b:7.1f} µs CPU a record "
              f"-> {a / b:.2f}x (rounds: {rounds})", flush=True)


if __name__ == "__main__":
    main()
