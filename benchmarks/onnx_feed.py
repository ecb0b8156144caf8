"""What packing the float inputs saves: a served tabular model, its graph fed one tensor per column
(as skl2onnx exports it) against the session ``modelloop serve`` opens (the float columns in one
``[N, k]`` tensor, split inside the graph).

    .venv/bin/python benchmarks/onnx_feed.py --project D [--batch 1 8] [--rounds 3]

``D`` is a project folder with a production model (``make demo`` leaves one in ``demo/``). Both
sessions get the same options and the same records; each call is the runtime's whole ``predict``
(the feed built from JSON records, the ONNX Runtime run, labels), timed back to back, the two
alternating by round. Printed: CPU µs a call on an uncontended core (``optimize.cpu_ms``: the 10th
percentile of chunks of 100 calls over 2 s; ONNX Runtime runs on the calling thread with one
intra-op thread) for each and the ratio.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.chdir(args.project)
    from modelloop.config import load_config
    from modelloop.data.ingest import load_dataset
    from modelloop.families.tabular.serve import onnx_runtime, packed_inputs, serving_session
    from modelloop.optimization.optimize import cpu_ms as _cpu_ms  # what train.max_latency_ms times with
    from modelloop.serving.runtime import load_runtime, onnx_path, to_records
    from modelloop.workspace import Workspace

    ws = Workspace(load_config())
    packed = load_runtime(ws)
    if packed.session is None or packed_inputs(packed.session) is None:
        raise SystemExit(f"the production model is not served through a packed ONNX session ({packed.reason})")
    plain = onnx_runtime(packed.row, serving_session(str(onnx_path(ws, packed.name, packed.version)), pack=False),
                    plan=packed.plan.to_dict() if packed.plan is not None else None)
    _, df, _ = load_dataset(ws, packed.row["dataset_id"])
    records = to_records(df[packed.request_schema.features()].sample(max(args.batch), random_state=0),
                         packed.request_schema)
    n_in = len(plain.session.get_inputs()), len(packed.session.get_inputs())
    print(f"model {packed.name}:{packed.version}; graph inputs {n_in[0]} per column, {n_in[1]} packed")
    for batch in args.batch:
        recs = records[:batch]
        assert np.allclose(plain.scores(recs), packed.scores(recs), atol=0, rtol=0)
        figures: dict[str, list[float]] = {"per column": [], "packed": []}
        for _ in range(args.rounds):
            figures["per column"].append(1000 * _cpu_ms(lambda recs=recs: plain.predict(recs), 2.0, 100))
            figures["packed"].append(1000 * _cpu_ms(lambda recs=recs: packed.predict(recs), 2.0, 100))
        a, b = np.median(figures["per column"]), np.median(figures["packed"])
        print(f"batch {batch:3d}: per column {a:7.1f} µs, packed {b:7.1f} µs CPU a call "
              f"-> {a / b:.2f}x (rounds: {', '.join(f'{x / y:.2f}' for x, y in zip(*figures.values(), strict=True))})")


if __name__ == "__main__":
    main()
