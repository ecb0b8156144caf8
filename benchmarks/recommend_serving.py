"""Recommendation serving speed: ``POST /v1/recommend`` against the server's own no-op route, at
concurrency 16, in one server process (issue 20 part 6: within 70 % of the no-op route).

    .venv/bin/python benchmarks/recommend_serving.py [--project DIR] [--seconds 5] [--concurrency 16] [--rounds 3]
                                                     [--exclude-share 0] [--filter-share 0]

Without ``--project`` it writes the bundled example (``modelloop init --example recommend``) into a
temporary folder and trains it (3 trials). One server subprocess (``benchmarks/serving.py``'s ``noop``
server: the real app with its middleware, plus ``POST /v1/noop``, which reads the body and answers a
constant) is driven by the same bare-asyncio closed loop (``serving.raw_closed_loop``), alternating
``/v1/noop`` and ``/v1/recommend`` (k = 10 for a rotating set of known users, 10 % unknown: the popular
fallback) each round; ``--exclude-share`` of the requests also send an ``exclude`` list of 5 items and
``--filter-share`` a ``filter`` on the example's ``category`` (the path that scores the user's whole
row; a project without that item feature sends none).
Printed: requests/s, p50 and p99 of each, and recommend / noop per round and as
the median. Both share this machine's cores with the client: compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving as bench  # benchmarks/serving.py: the server launcher and the closed loop


def build(root: Path) -> Path:
    project = root / "shop"
    for args in (["init", str(project), "--example", "recommend"], ["run", "--trials", "3", "--json"]):
        subprocess.run([str(Path(sys.executable).parent / "modelloop"), *args], check=True, capture_output=True,
                       cwd=root if args[0] == "init" else project)
    return project


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", help="a trained recommendation project (default: the example, trained here)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--exclude-share", type=float, default=0.0, help="share of requests with an exclude list")
    ap.add_argument("--filter-share", type=float, default=0.0, help="share of requests with a filter")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(args.project) if args.project else build(Path(tmp))
        from modelloop.config import load_config
        from modelloop.workspace import Workspace

        ws = Workspace(load_config(project / "modelloop.yaml"))
        users = ws.catalog.get_model(ws.config.name, ws.catalog.get_alias(ws.config.name, "production"))
        n_users = int(users["info"]["description"]["users"])
        model = users["info"]["description"]
        from modelloop.examples.recommend import CATEGORIES

        feature = "category" if "category" in model.get("item_features", []) else None  # the example's
        rng = np.random.default_rng(0)
        bodies = []
        for u in range(500):
            body: dict[str, object] = {"user": f"u{u % n_users}" if u % 10 else f"new{u}", "k": 10}
            if rng.random() < args.exclude_share:
                body["exclude"] = [f"i{i}" for i in rng.integers(0, int(model["items"]), 5).tolist()]
            if feature is not None and rng.random() < args.filter_share:
                body["filter"] = {feature: CATEGORIES[u % len(CATEGORIES)]}
            bodies.append(json.dumps(body).encode())
        proc, url, _ = bench.start("noop", project, ws.tracking_url, "")
        try:
            bench.warm_up(url + "/v1/recommend", bodies[1])
            rows = []
            for rnd in range(args.rounds):
                for path, load in (("/v1/noop", [b"{}"]), ("/v1/recommend", bodies)):
                    got = asyncio.run(bench.raw_closed_loop(url + path, load, args.concurrency, args.seconds))
                    rows.append({"round": rnd, "route": path, **got})
                noop, rec = rows[-2]["rps"], rows[-1]["rps"]
                print(f"round {rnd}: noop {noop:.0f} req/s, recommend {rec:.0f} req/s, ratio {rec / noop:.2f}")
        finally:
            bench.stop(proc)
    for path in ("/v1/noop", "/v1/recommend"):
        mine = [r for r in rows if r["route"] == path]
        print(f"{path:15s} c={args.concurrency}: {np.median([r['rps'] for r in mine]):.0f} req/s, "
              f"p50 {np.median([r['p50'] for r in mine]):.2f} ms, p99 {np.median([r['p99'] for r in mine]):.2f} ms, "
              f"errors {sum(r['errors'] for r in mine)}")
    ratios = [b["rps"] / a["rps"] for a, b in zip(rows[::2], rows[1::2], strict=True)]
    print(f"recommend / noop (median of {len(ratios)} rounds): {np.median(ratios):.2f} (goal >= 0.70)")


if __name__ == "__main__":
    main()
