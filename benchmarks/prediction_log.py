"""Prediction log inserts as the log grows: modelloop's time-first request ids against random UUIDs.

    .venv/bin/python benchmarks/prediction_log.py [--rows 500000] [--batches 20] [--url sqlite:///...]

A long-running server appends every prediction to the catalog's ``predictions`` table, whose
primary key is the request id. The peer is what a hand-written service would use for that key, a
random ``uuid.uuid4().hex``: each insert then lands on a random page of the key's B-tree, and once
the table is large the page cache misses on most of them. modelloop's ids (``ServerState.new_request_id``)
start with the time in milliseconds, as UUIDv7 does, so new keys go to the end of the index.

The script fills a fresh catalog (SQLite in a temp dir, or with ``--url postgresql+psycopg://...``
a new schema of that database, dropped at the end) with ``--rows`` predictions, then appends ``--batches`` batches of 500 rows (the
server's ``log_batch``) through ``Catalog.add_predictions``, alternating the two id kinds, and
prints the wall and CPU microseconds per row of each and the ratio. The table is filled with
modelloop ids for the first half and random ones for the second, so both kinds of key already sit
in the index, as in a log written before and after an upgrade.

A second table times the writer's own Python per row on the same batches of time-first ids:
``Catalog.add_predictions`` (one compiled statement, each value through its column's bind processor,
SQLite datetimes through ``isoformat``) against the peer a hand-written service would use,
SQLAlchemy Core's ``conn.execute(predictions.insert(), rows)``, alternating. The server's log writer
shares the GIL with the event loop, so its CPU per row is what the request path pays for it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000, help="rows in the log before timing")
    ap.add_argument("--batches", type=int, default=20, help="timed batches of 500 rows per id kind")
    ap.add_argument("--url", default=None, help="catalog URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-plog-"))
    url, schema = args.url or f"sqlite:///{folder / 'catalog.db'}", None
    if url.startswith("postgresql"):  # a scratch schema: the database's own tables stay untouched
        import sqlalchemy as sa

        schema = f"bench_plog_{uuid.uuid4().hex[:8]}"
        with sa.create_engine(url).begin() as c:
            c.execute(sa.text(f"create schema {schema}"))
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    try:
        run(args, folder, url)
    finally:
        if schema is not None:
            with sa.create_engine(args.url).begin() as c:
                c.execute(sa.text(f"drop schema {schema} cascade"))


def run(args: argparse.Namespace, folder: Path, url: str) -> None:
    from modelloop.catalog import Catalog, utcnow
    from modelloop.config import parse_config
    from modelloop.serving.app import ServerState
    from modelloop.serving.config import ServeConfig
    from modelloop.workspace import Workspace

    ws = Workspace(parse_config({"name": "bench", "data": {"source": "x.csv", "target": "y"}}, root=folder))
    state = ServerState(ws, ServeConfig(), api_keys=[], secret=b"0" * 16)
    catalog = Catalog(url)
    record = {"amount": 42.5, "merchant": "Burger Barn", "country": "FR", "channel": "online",
              "card_present": False, "hour": 8.0, "customer_age": 48.0, "timestamp": "2024-03-05T08:55:50"}
    output = {"label": 0, "probabilities": {"0": 0.93, "1": 0.07}}

    def rows(ids: list[str]) -> list[dict]:
        at = utcnow()
        return [{"request_id": i, "name": "bench", "version": 1, "at": at, "inputs": record, "output": output,
                 "latency_ms": 1.0} for i in ids]

    kinds = {"modelloop (time-first)": lambda n: [state.new_request_id() for _ in range(n)],
             "peer: uuid4().hex": lambda n: [uuid.uuid4().hex for _ in range(n)]}
    t0 = time.perf_counter()
    for start in range(0, args.rows, 5000):
        kind = list(kinds.values())[0 if start < args.rows // 2 else 1]
        catalog.add_predictions(rows(kind(min(5000, args.rows - start))))
    print(f"filled {args.rows:,} rows in {time.perf_counter() - t0:.0f} s ({url.split(':')[0]})")

    spent = {k: [0.0, 0.0] for k in kinds}
    for _ in range(args.batches):
        for name, make in kinds.items():
            batch = rows(make(500))
            w, c = time.perf_counter(), time.process_time()
            catalog.add_predictions(batch)
            spent[name][0] += time.perf_counter() - w
            spent[name][1] += time.process_time() - c
    n = 500 * args.batches
    print(f"\n{'ids':24s} {'wall us/row':>12s} {'CPU us/row':>11s}")
    for name, (wall, cpu) in spent.items():
        print(f"{name:24s} {1e6 * wall / n:12.1f} {1e6 * cpu / n:11.1f}")
    ours, peer = spent["modelloop (time-first)"], spent["peer: uuid4().hex"]
    print("\n" + json.dumps({"rows_before": args.rows, "wall_ratio_peer_over_ours": round(peer[0] / ours[0], 2),
                             "cpu_ratio_peer_over_ours": round(peer[1] / ours[1], 2)}))

    from modelloop.catalog import predictions

    def core_insert(batch: list[dict]) -> None:
        with catalog.tx() as c:
            c.execute(predictions.insert(), batch)

    writers = {"modelloop add_predictions": catalog.add_predictions, "peer: SQLAlchemy Core insert": core_insert}
    cpu = dict.fromkeys(writers, 0.0)
    for _ in range(args.batches):
        for name, write in writers.items():
            batch = rows([state.new_request_id() for _ in range(500)])
            c = time.process_time()
            write(batch)
            cpu[name] += time.process_time() - c
    print(f"\n{'writer (time-first ids)':30s} {'CPU us/row':>11s}")
    for name, spent_cpu in cpu.items():
        print(f"{name:30s} {1e6 * spent_cpu / n:11.1f}")
    print(json.dumps({"writer_cpu_ratio_peer_over_ours": round(cpu["peer: SQLAlchemy Core insert"]
                                                              / cpu["modelloop add_predictions"], 2)}))


if __name__ == "__main__":
    main()
