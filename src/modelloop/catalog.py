"""The lineage catalog: datasets, runs, models, deployments, predictions, feedback, decisions.

SQLAlchemy Core over SQLite (WAL mode) by default; a PostgreSQL URL works unchanged. One context
manager (``Catalog.tx``) owns every transaction. The schema version is checked when the catalog is
opened: an older catalog is migrated in place, in one transaction (:data:`MIGRATIONS`), and a newer
one is refused with the reason.

The prediction log keeps two rollups, written in the same transaction as the rows they count, so they
always agree with the log and the dashboard never reads a million rows to draw a month
(schema 5): ``prediction_hours`` (requests, latency sum and maximum, and requests under each of
:data:`LATENCY_EDGES_MS` per model, hour and version) and ``label_days`` (labels per model, day of the
labelled prediction and version, counted when the label or, if the label came first, the prediction is
stored). ``drift_days`` keeps the Monitoring page's drift of a day, keyed by the requests it covered (and,
under day ``live``, its live metrics keyed by the newest label they saw). ``claims`` (schema 6) names the
background computation each process of the dashboard has under way, so processes sharing the catalog start
each one once (:meth:`Catalog.claim`).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.engine import Connection, Engine

from .errors import NotFoundError, StateError

__all__ = ["LATENCY_EDGES_MS", "MIGRATIONS", "SCHEMA_VERSION", "Catalog", "hour_key", "time_bucket", "utcnow"]

SCHEMA_VERSION = 6
# upper edges (ms) of the latency buckets the log's rollup counts under; slower requests count above the last
LATENCY_EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_md = sa.MetaData()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


meta = sa.Table("meta", _md, sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.String(256), nullable=False))
datasets = sa.Table(
    "datasets", _md,
    sa.Column("id", sa.String(64), primary_key=True),        # content hash (12 hex chars)
    sa.Column("project", sa.String(128), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),             # 1, 2, 3... per project, for people
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("step", sa.String(32), nullable=False),         # ingest | clean | feedback-merge
    sa.Column("parents", sa.JSON, nullable=False),
    sa.Column("schema", sa.JSON, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("source", sa.JSON, nullable=False),
    sa.Column("quality", sa.JSON, nullable=True),
)
splits = sa.Table(
    "splits", _md,
    sa.Column("dataset_id", sa.String(64), sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),        # hash of the split settings
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
runs = sa.Table(
    "runs", _md,
    sa.Column("id", sa.String(64), primary_key=True),         # the MLflow run id
    sa.Column("project", sa.String(128), nullable=False, index=True),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),         # train | retrain | optimize
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("artifacts", sa.JSON, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
)
models = sa.Table(
    "models", _md,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("parent_version", sa.Integer, nullable=True),   # e.g. an optimized variant's original
    sa.Column("family", sa.String(64), nullable=True),        # the model family that made it (schema 2)
    sa.Column("formats", sa.JSON, nullable=False),            # {"native": uri, "onnx": path, ...}
    sa.Column("metrics", sa.JSON, nullable=False),            # holdout (frozen test set) figures
    sa.Column("input_schema", sa.JSON, nullable=False),
    sa.Column("info", sa.JSON, nullable=False),               # size, latency, description, threshold
    sa.Column("created_at", sa.DateTime, nullable=False),
)
deployments = sa.Table(
    "deployments", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
)
predictions = sa.Table(
    "predictions", _md,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False, index=True),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("output", sa.JSON, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
)
feedback = sa.Table(
    "feedback", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.JSON, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),       # api | file
)
decisions = sa.Table(
    "retrain_decisions", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("trigger", sa.JSON, nullable=False),
    sa.Column("dataset_id", sa.String(64), nullable=True),
    sa.Column("champion", sa.JSON, nullable=False),
    sa.Column("challenger", sa.JSON, nullable=False),
    sa.Column("promoted", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

# ---- the compute queue (schema 3; modelloop.compute) -------------------------------------------
jobs = sa.Table(
    "jobs", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(128), nullable=False, index=True),
    sa.Column("root", sa.Text, nullable=False),                 # the folder the command runs in
    sa.Column("command", sa.JSON, nullable=False),              # modelloop's arguments: ["train", "--budget", "60"]
    sa.Column("resources", sa.JSON, nullable=False),            # {cpus, gpus, memory, custom}
    sa.Column("priority", sa.Integer, nullable=False),          # 0..100 (low 20, normal 50, high 80)
    sa.Column("submitter", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # queued running preempted succeeded failed cancelled
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("submitted_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),        # the latest attempt's
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),         # host:pid of the worker running it
    sa.Column("heartbeat_at", sa.DateTime, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),                # the job's process (group) on the worker's host
    sa.Column("assigned", sa.JSON, nullable=True),              # {gpus: [indices]} of the running attempt
    sa.Column("stop", sa.String(16), nullable=True),            # cancel | preempt: asked of the worker running it
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("features", sa.JSON, nullable=False),             # what demand prediction groups by: verb, rows
    sa.Column("usage", sa.JSON, nullable=True),                 # measured: {seconds, peak_memory}
    sa.Column("result", sa.JSON, nullable=True),                # the run / model version it made
    sa.Column("logs", sa.Text, nullable=False),
)
job_events = sa.Table(
    "job_events", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
)

# ---- an anomaly model's time window at serving (schema 4; families/anomaly/features.WindowHistory) --------
anomaly_window = sa.Table(
    "anomaly_window", _md,
    sa.Column("name", sa.String(128), primary_key=True),        # the model name (its versions share the traffic)
    sa.Column("record", sa.String(64), primary_key=True),       # sha256 of the record: sent twice, counted once
    sa.Column("key", sa.Text, nullable=False),                  # its anomaly.window_by value ('' for every record)
    sa.Column("t", sa.Float, nullable=False),                   # its data.time, epoch seconds
)
anomaly_window_by_key = sa.Index("ix_anomaly_window_name_key_t", anomaly_window.c.name, anomaly_window.c.key,
                                 anomaly_window.c.t)


# ---- the prediction log's rollups and the dashboard's drift (schema 5) -------------------------------------
prediction_hours = sa.Table(
    "prediction_hours", _md,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("hour", sa.String(13), primary_key=True),          # 'YYYY-MM-DD HH' of the predictions' ``at``
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("latency_sum", sa.Float, nullable=False),          # ms
    sa.Column("latency_max", sa.Float, nullable=False),
    *[sa.Column(f"le_{e}", sa.BigInteger, nullable=False) for e in LATENCY_EDGES_MS],  # requests <= e ms
)
label_days = sa.Table(
    "label_days", _md,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),           # 'YYYY-MM-DD' of the labelled prediction
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("labels", sa.BigInteger, nullable=False),
)
drift_days = sa.Table(
    "drift_days", _md,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),          # the model version the day was compared with
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("settings", sa.String(64), primary_key=True),      # hash of what else the figures depend on
    sa.Column("requests", sa.BigInteger, nullable=False),        # the day's requests when it was computed
    sa.Column("figures", sa.JSON, nullable=False),
    sa.Column("computed_at", sa.DateTime, nullable=False),
)
claims = sa.Table(
    "claims", _md,
    sa.Column("key", sa.String(255), primary_key=True),          # what is being computed
    sa.Column("owner", sa.String(64), nullable=False),           # who computes it (a random id per app)
    sa.Column("at", sa.DateTime, nullable=False),                # when the claim was taken
)


def time_bucket(column: Any, dialect: str, by: str) -> Any:
    """SQL of a datetime column's hour (``YYYY-MM-DD HH``) or day (``YYYY-MM-DD``) key: text on SQLite, where
    the catalog stores datetimes as ISO text, ``to_char`` on PostgreSQL; :func:`hour_key` in Python."""
    if dialect == "postgresql":
        return sa.func.to_char(column, "YYYY-MM-DD HH24" if by == "hour" else "YYYY-MM-DD")
    return sa.func.substr(sa.cast(column, sa.String), 1, 13 if by == "hour" else 10)


def hour_key(at: dt.datetime | str) -> str:
    """``YYYY-MM-DD HH`` of a prediction's time, as :func:`time_bucket` reads it back from the stored value
    (an aware time counts in UTC); its first 10 characters are the day's key."""
    if isinstance(at, str):                         # ISO text, as SQLite stores it
        return at[:13].replace("T", " ")
    if at.tzinfo is not None:
        at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return at.isoformat(" ")[:13]


_UPSERTS: dict[tuple[Any, ...], tuple[str, list[str], bool]] = {}


def _upsert(c: Connection, table: sa.Table, rows: list[dict[str, Any]], add: list[str], top: Iterable[str] = ()) -> None:
    """Insert ``rows`` into a rollup, adding their ``add`` columns to (and keeping the larger ``top``) of a
    row with the same key; sorted by key, so concurrent writers lock rows in one order. The statement is
    compiled once per dialect and run through the driver (building it cost ~2.7 ms per log batch)."""
    if not rows:
        return
    keys = [col.name for col in table.primary_key.columns]
    rows = sorted(rows, key=lambda r: tuple(r[k] for k in keys))
    top = tuple(top)
    cache_key = (c.dialect.name, table.name, tuple(add), top)
    found = _UPSERTS.get(cache_key)
    if found is None:
        from sqlalchemy.dialects import postgresql, sqlite

        pg = c.dialect.name == "postgresql"
        stmt = (postgresql if pg else sqlite).insert(table)
        larger = sa.func.greatest if pg else sa.func.max             # SQLite's max() of two values is scalar
        values = {n: table.c[n] + stmt.excluded[n] for n in add}
        values.update({n: larger(table.c[n], stmt.excluded[n]) for n in top})
        compiled = stmt.on_conflict_do_update(index_elements=keys, set_=values).compile(dialect=c.dialect)
        names = list(compiled.positiontup or []) if compiled.positional else list(compiled.binds)
        _UPSERTS[cache_key] = found = (compiled.string, names, bool(compiled.positional))
    sql, names, positional = found
    if positional:
        c.exec_driver_sql(sql, [tuple(r[n] for n in names) for r in rows])
    else:
        c.exec_driver_sql(sql, [{n: r[n] for n in names} for r in rows])


def _log_lock(c: Connection) -> None:
    """On PostgreSQL, one writer of predictions or labels at a time (until commit): a label and its
    prediction stored at once by two transactions would each miss the other, and neither would count it in
    ``label_days``. SQLite has one writer anyway."""
    if c.dialect.name == "postgresql":
        c.execute(sa.text("SELECT pg_advisory_xact_lock(7702505)"))


def _count_predictions(c: Connection, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` (just inserted) to ``prediction_hours``, and the labels already stored for them to
    ``label_days``."""
    hours: dict[tuple[str, str, int], list[float]] = {}
    edges = LATENCY_EDGES_MS
    for r in rows:
        lat = float(r["latency_ms"])
        key = (r["name"], hour_key(r["at"]), int(r["version"]))
        acc = hours.get(key)
        if acc is None:
            hours[key] = acc = [0, 0.0, lat] + [0] * len(edges)
        acc[0] += 1
        acc[1] += lat
        if lat > acc[2]:
            acc[2] = lat
        first = bisect.bisect_left(edges, lat)             # the first edge with lat <= edge
        if first < len(edges):
            acc[3 + first] += 1
    out = []
    for (name, hour, version), (n, total, top, *per_bucket) in hours.items():
        cum: dict[str, float] = {}
        below = 0.0
        for e, k in zip(edges, per_bucket, strict=True):
            below += k
            cum[f"le_{e}"] = int(below)
        out.append({"name": name, "hour": hour, "version": version, "requests": int(n), "latency_sum": total,
                    "latency_max": top, **cum})
    _upsert(c, prediction_hours, out, ["requests", "latency_sum", *(f"le_{e}" for e in edges)], ["latency_max"])
    by_id = {r["request_id"]: r for r in rows}
    labelled: list[dict[str, Any]] = []
    ids = list(by_id)
    mark = "?" if c.dialect.paramstyle == "qmark" else "%s"
    for i in range(0, len(ids), 500):      # driver SQL: SQLAlchemy's IN of 500 values cost ~4 µs per row
        chunk = ids[i:i + 500]
        sql = f"SELECT request_id FROM {feedback.name} WHERE request_id IN ({', '.join([mark] * len(chunk))})"
        labelled.extend(by_id[rid] for (rid,) in c.exec_driver_sql(sql, tuple(chunk)))
    _count_labels(c, [(r["name"], r["version"], r["at"]) for r in labelled])


def _count_labels(c: Connection, found: Iterable[tuple[str, int, dt.datetime]]) -> None:
    """Add labels of predictions ``(name, version, at)`` to ``label_days``."""
    days: dict[tuple[str, str, int], int] = {}
    for name, version, at in found:
        key = (name, hour_key(at)[:10], int(version))
        days[key] = days.get(key, 0) + 1
    _upsert(c, label_days, [{"name": k[0], "day": k[1], "version": k[2], "labels": n} for k, n in days.items()],
            ["labels"])


def _count_feedback(c: Connection, request_ids: list[str]) -> None:
    """Add the labels of ``request_ids`` (just stored) whose predictions are in the log to ``label_days``
    (a prediction logged later counts its label then)."""
    found: list[tuple[str, int, dt.datetime]] = []
    for i in range(0, len(request_ids), 500):
        q = (sa.select(predictions.c.name, predictions.c.version, predictions.c.at)
             .where(predictions.c.request_id.in_(request_ids[i:i + 500])))
        found.extend((name, version, at) for name, version, at in c.execute(q))
    _count_labels(c, found)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")     # readers never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL survives a killed process
    cur.execute("PRAGMA busy_timeout=30000")   # several server workers share one file
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _fast_datetime(column_type: Any, dialect: Any) -> Any:
    """SQLite's DateTime bind processor as one C call (``isoformat``) for naive datetimes: the same text
    SQLAlchemy writes (``YYYY-MM-DD HH:MM:SS.ffffff``) at a fifth of the cost per prediction row;
    anything else goes through SQLAlchemy's own processor. None where the driver takes datetimes."""
    if dialect.name != "sqlite" or not isinstance(column_type, sa.DateTime):
        return None
    slow = column_type.dialect_impl(dialect).bind_processor(dialect)

    def process(value: Any) -> Any:
        if type(value) is dt.datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return slow(value) if slow is not None else value

    return process


def _json_text(value: Any) -> str:
    """JSON text of a column value; like ``json.dumps``, an unknown type is an error, not a string."""
    return to_json(value).decode()


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping) if r is not None else None  # type: ignore[return-value]


def _add_model_family(c: Connection) -> None:
    """Schema 1 -> 2: ``models.family``, filled for every version from what it recorded (a text model's
    schema reads one text column and no table features)."""
    from .families import family_name_of

    c.execute(sa.text("ALTER TABLE models ADD COLUMN family VARCHAR(64)"))
    for r in c.execute(sa.select(models.c.name, models.c.version, models.c.input_schema)).all():
        c.execute(models.update().where(models.c.name == r.name, models.c.version == r.version)
                  .values(family=family_name_of({"input_schema": r.input_schema})))


def _add_job_queue(c: Connection) -> None:
    """Schema 2 -> 3: the compute queue's ``jobs`` and ``job_events`` tables (empty)."""
    for table in (jobs, job_events):
        table.create(c, checkfirst=True)


def _add_anomaly_window(c: Connection) -> None:
    """Schema 3 -> 4: the ``anomaly_window`` table (empty) an anomaly model's served records are counted in."""
    anomaly_window.create(c, checkfirst=True)


def _add_log_rollups(c: Connection) -> None:
    """Schema 4 -> 5: the prediction log's rollups, filled from the log as it is (one ``GROUP BY`` each), and
    the dashboard's ``drift_days`` (empty)."""
    for table in (prediction_hours, label_days, drift_days):
        table.create(c, checkfirst=True)
    c.execute(prediction_hours.delete())
    c.execute(label_days.delete())
    dialect = c.dialect.name
    hour = time_bucket(predictions.c.at, dialect, "hour")
    lat = predictions.c.latency_ms
    cums = [sa.func.sum(sa.case((lat <= e, 1), else_=0)) for e in LATENCY_EDGES_MS]
    c.execute(prediction_hours.insert().from_select(
        [col.name for col in prediction_hours.columns],
        sa.select(predictions.c.name, hour, predictions.c.version, sa.func.count(), sa.func.sum(lat),
                  sa.func.max(lat), *cums).group_by(predictions.c.name, hour, predictions.c.version)))
    day = time_bucket(predictions.c.at, dialect, "day")
    c.execute(label_days.insert().from_select(
        ["name", "day", "version", "labels"],
        sa.select(predictions.c.name, day, predictions.c.version, sa.func.count())
        .select_from(feedback.join(predictions, predictions.c.request_id == feedback.c.request_id))
        .group_by(predictions.c.name, day, predictions.c.version)))


def _add_claims(c: Connection) -> None:
    """Schema 5 -> 6: the ``claims`` table (empty) of the dashboard's background computations."""
    claims.create(c, checkfirst=True)


# MIGRATIONS[v] takes a catalog of schema version v to v + 1, inside the opening transaction
MIGRATIONS = {1: _add_model_family, 2: _add_job_queue, 3: _add_anomaly_window, 4: _add_log_rollups,
              5: _add_claims}


class Catalog:
    """Lineage store. ``Catalog(url)`` creates the tables on first use."""

    def __init__(self, url: str):
        self.url = url
        kw: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kw["pool_pre_ping"] = True
        # JSON columns (the prediction log's inputs and outputs on every request) written by
        # pydantic-core's serializer: ~3 us for a 15-field record where json.dumps takes ~10
        self.engine: Engine = sa.create_engine(url, json_serializer=_json_text, **kw)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._open()

    def _open(self) -> None:
        _md.create_all(self.engine)
        with self.tx() as c:
            found = c.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if found is None:
                c.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            if int(found) > SCHEMA_VERSION:
                raise StateError(
                    f"catalog {self.url} has schema version {found}, newer than this modelloop's "
                    f"({SCHEMA_VERSION}); upgrade modelloop (pip install -U modelloop) to open it"
                )
            for version in range(int(found), SCHEMA_VERSION):
                MIGRATIONS[version](c)
            if int(found) != SCHEMA_VERSION:
                c.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction: commits on success, rolls back on any exception."""
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # ---- datasets ---------------------------------------------------------------------------
    def add_dataset(self, **row: Any) -> dict[str, Any]:
        """Insert a dataset version unless one with the same id exists; returns the stored row."""
        with self.tx() as c:
            old = c.execute(sa.select(datasets).where(datasets.c.id == row["id"])).first()
            if old is not None:
                return _row(old)
            seq = c.execute(sa.select(sa.func.max(datasets.c.seq))
                            .where(datasets.c.project == row["project"])).scalar() or 0
            row = {"created_at": utcnow(), "quality": None, **row, "seq": seq + 1}
            c.execute(datasets.insert().values(**row))
            return row

    def get_dataset(self, ref: str, project: str | None = None) -> dict[str, Any]:
        """A dataset version by id, id prefix or ``v<seq>``."""
        q = sa.select(datasets)
        if project:
            q = q.where(datasets.c.project == project)
        if ref.startswith("v") and ref[1:].isdigit():
            q = q.where(datasets.c.seq == int(ref[1:]))
        else:
            q = q.where(datasets.c.id.startswith(ref))
        with self.tx() as c:
            rows = c.execute(q).fetchall()
        if len(rows) != 1:
            what = "matches several" if rows else "matches no"
            raise NotFoundError(f"dataset '{ref}' {what} dataset version; see `modelloop status`")
        return _row(rows[0])

    def list_datasets(self, project: str) -> list[dict[str, Any]]:
        with self.tx() as c:
            q = sa.select(datasets).where(datasets.c.project == project).order_by(datasets.c.seq)
            return [_row(r) for r in c.execute(q)]

    def latest_dataset(self, project: str) -> dict[str, Any] | None:
        rows = self.list_datasets(project)
        return rows[-1] if rows else None

    def set_dataset_quality(self, dataset_id: str, quality: dict[str, Any]) -> None:
        with self.tx() as c:
            c.execute(datasets.update().where(datasets.c.id == dataset_id).values(quality=quality))

    # ---- splits -----------------------------------------------------------------------------
    def add_split(self, **row: Any) -> None:
        with self.tx() as c:
            q = sa.select(splits.c.key).where(splits.c.dataset_id == row["dataset_id"],
                                             splits.c.key == row["key"])
            if c.execute(q).first() is None:
                c.execute(splits.insert().values(created_at=utcnow(), **row))

    def list_splits(self, dataset_id: str) -> list[dict[str, Any]]:
        """Every split of a dataset version (settings, row counts per part)."""
        with self.tx() as c:
            return [_row(r) for r in c.execute(sa.select(splits).where(splits.c.dataset_id == dataset_id))]

    def get_split(self, dataset_id: str, key: str) -> dict[str, Any] | None:
        with self.tx() as c:
            q = sa.select(splits).where(splits.c.dataset_id == dataset_id, splits.c.key == key)
            return _row(c.execute(q).first())

    # ---- runs and models --------------------------------------------------------------------
    def add_run(self, **row: Any) -> None:
        with self.tx() as c:
            c.execute(runs.insert().values(**row))

    def list_runs(self, project: str) -> list[dict[str, Any]]:
        with self.tx() as c:
            q = sa.select(runs).where(runs.c.project == project).order_by(runs.c.started_at)
            return [_row(r) for r in c.execute(q)]

    def add_model(self, **row: Any) -> dict[str, Any]:
        from .families import family_name_of

        row = {"created_at": utcnow(), "parent_version": None, **row}
        row["family"] = row.get("family") or family_name_of(row)
        with self.tx() as c:
            c.execute(models.insert().values(**row))
        return row

    def get_model(self, name: str, version: int) -> dict[str, Any]:
        with self.tx() as c:
            r = c.execute(sa.select(models).where(models.c.name == name,
                                                  models.c.version == version)).first()
        if r is None:
            raise NotFoundError(f"model {name}:{version} does not exist; see `modelloop status`")
        return _row(r)

    def list_models(self, name: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(models).order_by(models.c.name, models.c.version)
        if name:
            q = q.where(models.c.name == name)
        with self.tx() as c:
            return [_row(r) for r in c.execute(q)]

    def update_model(self, name: str, version: int, **values: Any) -> None:
        with self.tx() as c:
            c.execute(models.update().where(models.c.name == name, models.c.version == version)
                      .values(**values))

    # ---- deployments (aliases) ----------------------------------------------------------------
    def set_alias(self, name: str, version: int, alias: str, reason: str | None = None) -> None:
        self.get_model(name, version)
        with self.tx() as c:
            c.execute(deployments.insert().values(name=name, version=version, alias=alias,
                                                  at=utcnow(), reason=reason))

    def alias_history(self, name: str, alias: str) -> list[dict[str, Any]]:
        q = (sa.select(deployments).where(deployments.c.name == name, deployments.c.alias == alias)
             .order_by(deployments.c.id))
        with self.tx() as c:
            return [_row(r) for r in c.execute(q)]

    def current_aliases(self, name: str) -> dict[str, int]:
        """Where every alias of a model points now (alias -> version), from the deployment history."""
        q = sa.select(deployments.c.alias, deployments.c.version).where(deployments.c.name == name) \
            .order_by(deployments.c.id)
        with self.tx() as c:
            return {alias: version for alias, version in c.execute(q)}

    def get_feedback(self, request_id: str) -> dict[str, Any] | None:
        with self.tx() as c:
            return _row(c.execute(sa.select(feedback).where(feedback.c.request_id == request_id)).first())

    def get_alias(self, name: str, alias: str) -> int | None:
        hist = self.alias_history(name, alias)
        return hist[-1]["version"] if hist else None

    # ---- predictions, feedback, decisions -------------------------------------------------------
    def add_predictions(self, rows: list[dict[str, Any]]) -> None:
        """Append prediction rows in one transaction (the serving log's hot path).

        The statement is compiled once per dialect and the rows go straight to the driver's
        ``executemany``, each value through its column type's own bind processor (JSON text,
        SQLite date strings): the same stored values as ``c.execute(predictions.insert(), rows)``
        for about a third less Python per row, which the server's event loop shares the GIL with.
        """
        if not rows:
            return
        with self.tx() as c:
            _log_lock(c)
            sql, columns, positional = self._prediction_insert(c.dialect)
            values = [tuple([r[n] if p is None else p(r[n]) for n, p in columns]) for r in rows]
            names = [n for n, _ in columns]
            c.exec_driver_sql(sql, values if positional else [dict(zip(names, v, strict=True)) for v in values])
            _count_predictions(c, rows)

    def _prediction_insert(self, dialect: Any) -> tuple[str, list[tuple[str, Any]], bool]:
        cached = getattr(self, "_insert_cache", None)
        if cached is None or cached[0] is not dialect:
            compiled = predictions.insert().compile(dialect=dialect)
            names = list(compiled.positiontup or []) if compiled.positional else list(compiled.binds)
            columns = [(n, _fast_datetime(predictions.c[n].type, dialect)
                        or predictions.c[n].type.dialect_impl(dialect).bind_processor(dialect)) for n in names]
            self._insert_cache = cached = (dialect, compiled.string, columns, compiled.positional)
        return cached[1], cached[2], cached[3]

    def get_prediction(self, request_id: str) -> dict[str, Any] | None:
        with self.tx() as c:
            return _row(c.execute(sa.select(predictions)
                                  .where(predictions.c.request_id == request_id)).first())

    def add_feedback(self, request_id: str, label: Any, source: str = "api") -> bool:
        """Store a label durably; False when the request already has feedback."""
        with self.tx() as c:
            _log_lock(c)
            if c.execute(sa.select(feedback.c.id).where(feedback.c.request_id == request_id)).first():
                return False
            c.execute(feedback.insert().values(request_id=request_id, label=label, at=utcnow(),
                                               source=source))
            _count_feedback(c, [request_id])
        return True

    def add_decision(self, **row: Any) -> None:
        with self.tx() as c:
            c.execute(decisions.insert().values(at=utcnow(), **row))

    def list_decisions(self, name: str) -> list[dict[str, Any]]:
        with self.tx() as c:
            q = sa.select(decisions).where(decisions.c.name == name).order_by(decisions.c.id)
            return [_row(r) for r in c.execute(q)]

    # ---- an anomaly model's served time window ------------------------------------------------------
    def add_window_records(self, name: str, rows: list[tuple[str, str, float]], before: float | None = None) -> None:
        """Keep served records ``(record digest, key, time)`` of model ``name`` (a digest already kept is
        left as it is), then forget those with a time before ``before``."""
        table = anomaly_window
        with self.tx() as c:
            if rows:
                from sqlalchemy.dialects import postgresql, sqlite

                dialect: Any = postgresql if c.dialect.name == "postgresql" else sqlite
                c.execute(dialect.insert(table).on_conflict_do_nothing(),
                          [{"name": name, "record": r, "key": k, "t": float(t)} for r, k, t in rows])
            if before is not None:
                c.execute(table.delete().where(table.c.name == name, table.c.t < float(before)))

    def window_records(self, name: str, keys: list[str], since: float) -> list[tuple[str, str, float]]:
        """``(record digest, key, time)`` of the records of model ``name`` with one of ``keys`` and a time
        from ``since``."""
        table = anomaly_window
        q = (sa.select(table.c.record, table.c.key, table.c.t)
             .where(table.c.name == name, table.c.key.in_(keys), table.c.t >= float(since)))
        with self.tx() as c:
            return [(str(r), str(k), float(t)) for r, k, t in c.execute(q)]

    # ---- the dashboard's drift by day ----------------------------------------------------------------
    def get_drift_day(self, name: str, version: int, day: str, settings: str) -> dict[str, Any] | None:
        """The drift figures stored for model ``name:version`` on ``day`` under ``settings``, with the day's
        ``requests`` they covered and when they were ``computed_at``; None when there are none."""
        t = drift_days
        q = sa.select(t.c.requests, t.c.figures, t.c.computed_at).where(
            t.c.name == name, t.c.version == version, t.c.day == day, t.c.settings == settings)
        with self.tx() as c:
            return _row(c.execute(q).first())

    def put_drift_day(self, name: str, version: int, day: str, settings: str, requests: int,
                      figures: dict[str, Any]) -> None:
        """Keep a day's drift figures (replacing those of an earlier count of its requests)."""
        from sqlalchemy.dialects import postgresql, sqlite

        row = {"name": name, "version": version, "day": day, "settings": settings, "requests": requests,
               "figures": figures, "computed_at": utcnow()}
        with self.tx() as c:
            stmt = (postgresql if c.dialect.name == "postgresql" else sqlite).insert(drift_days).values(**row)
            c.execute(stmt.on_conflict_do_update(index_elements=["name", "version", "day", "settings"],
                                                 set_={k: stmt.excluded[k] for k in ("requests", "figures", "computed_at")}))

    def claim(self, key: str, owner: str, seconds: float) -> bool:
        """True when ``owner`` now holds the claim on ``key``: nobody held it, or its holder took it more than
        ``seconds`` ago (and so is taken to have died). One statement each way, so of two processes claiming
        at once exactly one wins, on SQLite and PostgreSQL alike."""
        from sqlalchemy.dialects import postgresql, sqlite

        now = utcnow()
        with self.tx() as c:
            dialect = postgresql if c.dialect.name == "postgresql" else sqlite
            taken = c.execute(dialect.insert(claims).values(key=key, owner=owner, at=now)   # (rowcount is -1 on
                              .on_conflict_do_nothing().returning(claims.c.key)).first()    # psycopg here)
            if taken is None:
                stale = now - dt.timedelta(seconds=seconds)
                taken = c.execute(claims.update().where(claims.c.key == key, claims.c.at < stale)
                                  .values(owner=owner, at=now).returning(claims.c.key)).first()
            return taken is not None

    def claim_holder(self, key: str) -> str | None:
        """The owner holding the claim on ``key``, or None."""
        with self.tx() as c:
            return c.execute(sa.select(claims.c.owner).where(claims.c.key == key)).scalar()

    def take_over(self, key: str, holder: str, owner: str) -> bool:
        """Hand ``holder``'s claim on ``key`` to ``owner`` (its caller knows ``holder`` died); False when
        ``holder`` no longer holds it (released, or taken over by another)."""
        with self.tx() as c:
            return c.execute(claims.update().where(claims.c.key == key, claims.c.owner == holder)
                             .values(owner=owner, at=utcnow()).returning(claims.c.key)).first() is not None

    def release(self, key: str, owner: str) -> None:
        """Give up ``owner``'s claim on ``key`` (a claim taken over by another owner is left alone)."""
        with self.tx() as c:
            c.execute(claims.delete().where(claims.c.key == key, claims.c.owner == owner))

    # ---- joins for monitoring and retraining ----------------------------------------------------
    def recent_predictions(self, name: str, limit: int, version: int | None = None) -> list[dict[str, Any]]:
        """The latest ``limit`` predictions of a model (oldest first), with their feedback if any."""
        q = (sa.select(predictions, feedback.c.label, feedback.c.at.label("feedback_at"))
             .select_from(predictions.outerjoin(feedback, feedback.c.request_id == predictions.c.request_id))
             .where(predictions.c.name == name).order_by(predictions.c.at.desc()).limit(limit))
        if version is not None:
            q = q.where(predictions.c.version == version)
        with self.tx() as c:
            return [_row(r) for r in c.execute(q)][::-1]

    def labeled_predictions(self, name: str, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Predictions that got feedback (oldest feedback first), optionally only newer than ``since``."""
        q = (sa.select(predictions, feedback.c.label, feedback.c.at.label("feedback_at"))
             .select_from(predictions.join(feedback, feedback.c.request_id == predictions.c.request_id))
             .where(predictions.c.name == name).order_by(feedback.c.at, feedback.c.id))
        if since is not None:
            q = q.where(feedback.c.at > since)
        with self.tx() as c:
            return [_row(r) for r in c.execute(q)]

    def has_feedback(self, request_ids: list[str]) -> set[str]:
        with self.tx() as c:
            q = sa.select(feedback.c.request_id).where(feedback.c.request_id.in_(request_ids))
            return {r[0] for r in c.execute(q)}

    def known_requests(self, request_ids: list[str]) -> set[str]:
        with self.tx() as c:
            q = sa.select(predictions.c.request_id).where(predictions.c.request_id.in_(request_ids))
            return {r[0] for r in c.execute(q)}

    def add_feedback_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert many labels in one transaction (the caller removed unknown and duplicate ids)."""
        if rows:
            with self.tx() as c:
                _log_lock(c)
                c.execute(feedback.insert(), [{"at": utcnow(), **r} for r in rows])
                _count_feedback(c, [r["request_id"] for r in rows])
