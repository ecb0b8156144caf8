"""The bundled anomaly example: machine-sensor readings with planted anomalies and a sparse label column.

    python -c "from modelloop.examples.sensors import generate_sensors as g; print(g(2000).head())"

Twelve machines on three lines report every few minutes over two weeks. A reading's columns follow from
the machine's state: ``mode`` (normal, eco, boost) sets ``rpm``; ``power_kw`` follows ``rpm`` and the mode;
``temperature_c`` follows power (and the hour: the hall warms by day); ``vibration_mm_s`` follows rpm;
``pressure_bar`` is steady per line. Four kinds of anomaly are planted (``kind`` in :func:`planted`):

* **global outliers**: a temperature spike, a vibration or pressure far outside the usual range;
* **broken correlations**: each value ordinary on its own, but the pair impossible (high rpm with almost
  no power; a hot machine drawing idle power);
* **rare category combinations**: a machine reported on a line it is not on, or ``boost`` on line C,
  which never boosts;
* **bursts in time**: one machine, at night, a run of readings within half an hour (it usually reports
  once or twice an hour) with vibration a little up and pressure a little down: each reading is only
  slightly off, the burst is what an analyst sees. The family's time window column (``anomaly.window``
  by ``anomaly.window_by: machine``: readings of the same machine in the hour before) counts it.

Ordinary work that looks odd is there too: about 1.2 % of the readings are **service runs** (mode
``service``: the machine turning slowly, idle power, a cool casing) during maintenance. A detector flags
them (a rare mode, values far below the usual); they are not incidents, and analysts mark them
``false_alarm``: the verdicts that ``modelloop retrain`` learns from.

``incident`` is the sparse label column: about a third of the anomalies were checked and marked
``anomaly``, and about 3 % of the ordinary readings were checked and marked ``normal``; the rest is empty.
It is never a feature; the family uses it to choose among detectors and to evaluate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ANOMALY_KINDS", "COLUMNS", "generate_sensors"]

COLUMNS = ("reading_id", "timestamp", "machine", "line", "mode", "rpm", "power_kw", "temperature_c",
           "vibration_mm_s", "pressure_bar", "incident")
ANOMALY_KINDS = ("global_outlier", "broken_correlation", "rare_combination", "burst")
_START = pd.Timestamp("2025-03-03")
_LINES = {f"M{i:02d}": "ABC"[i % 3] for i in range(1, 13)}
_PRESSURE = {"A": 4.0, "B": 5.5, "C": 3.2}
_MODE_RPM = {"normal": 1500.0, "eco": 1100.0, "boost": 1900.0}
_ANOMALY_SHARE = 0.02
_LABELLED_ANOMALIES = 0.35
_LABELLED_NORMAL = 0.03
_SERVICE_SHARE = 0.012


def _readings(n: int, rng: np.random.Generator, start: pd.Timestamp) -> pd.DataFrame:
    machines = np.array(list(_LINES))
    machine = rng.choice(machines, n)
    line = np.array([_LINES[m] for m in machine])
    mode = np.where(line == "C", rng.choice(["normal", "eco"], n, p=[0.7, 0.3]),
                    rng.choice(["normal", "eco", "boost"], n, p=[0.6, 0.25, 0.15]))
    minutes = np.sort(rng.uniform(0, 14 * 24 * 60, n))
    ts = start + pd.to_timedelta(minutes, unit="m")
    hour = ts.hour.to_numpy()
    rpm = np.array([_MODE_RPM[m] for m in mode]) * rng.normal(1.0, 0.04, n)
    power = 0.02 * rpm * np.where(mode == "eco", 0.85, 1.0) + rng.normal(0, 1.2, n)
    temperature = 30 + 0.9 * power + 3 * np.sin((hour - 9) / 24 * 2 * np.pi) + rng.normal(0, 1.5, n)
    vibration = 0.0025 * rpm + rng.gamma(4.0, 0.12, n)
    pressure = np.array([_PRESSURE[x] for x in line]) + rng.normal(0, 0.15, n)
    return pd.DataFrame({"timestamp": ts, "machine": machine, "line": line, "mode": mode, "rpm": rpm,
                         "power_kw": power, "temperature_c": temperature, "vibration_mm_s": vibration,
                         "pressure_bar": pressure})


def _plant(df: pd.DataFrame, rows: np.ndarray, kind: str, rng: np.random.Generator, start: pd.Timestamp) -> None:
    k = len(rows)
    if kind == "global_outlier":
        which = rng.integers(0, 3, k)
        df.loc[rows[which == 0], "temperature_c"] += rng.uniform(35, 60, int((which == 0).sum()))
        df.loc[rows[which == 1], "vibration_mm_s"] *= rng.uniform(4, 8, int((which == 1).sum()))
        df.loc[rows[which == 2], "pressure_bar"] = rng.uniform(0.2, 1.0, int((which == 2).sum()))
    elif kind == "broken_correlation":
        half = rows[: k // 2]
        df.loc[half, "power_kw"] = rng.uniform(6, 10, len(half))        # high rpm, idle power
        df.loc[half, "rpm"] = rng.uniform(1800, 2000, len(half))
        rest = rows[k // 2:]
        df.loc[rest, "temperature_c"] = rng.uniform(68, 75, len(rest))  # hot at idle power
        df.loc[rest, "power_kw"] = rng.uniform(8, 12, len(rest))
    elif kind == "rare_combination":
        half = rows[: k // 2]
        df.loc[half, "line"] = [("ABC".replace(_LINES[m], ""))[0] for m in df.loc[half, "machine"]]
        rest = rows[k // 2:]
        df.loc[rest, "line"] = "C"
        df.loc[rest, "mode"] = "boost"
        df.loc[rest, "machine"] = rng.choice([m for m, x in _LINES.items() if x == "C"], len(rest))
        df.loc[rest, "pressure_bar"] = _PRESSURE["C"] + rng.normal(0, 0.15, len(rest))
    else:  # burst: one machine, one night, readings minutes apart
        machine = rng.choice(list(_LINES))
        night = start + pd.Timedelta(days=int(rng.integers(1, 13)), hours=int(rng.integers(1, 4)))
        df.loc[rows, "timestamp"] = night + pd.to_timedelta(np.sort(rng.uniform(0, 30, k)), unit="m")
        df.loc[rows, "machine"] = machine
        df.loc[rows, "line"] = _LINES[machine]
        df.loc[rows, "vibration_mm_s"] = df.loc[rows, "vibration_mm_s"] * rng.uniform(1.1, 1.4, k)
        df.loc[rows, "pressure_bar"] = _PRESSURE[_LINES[machine]] - rng.uniform(0.1, 0.4, k)


def generate_sensors(n: int = 6000, seed: int = 0, *, with_kind: bool = False,
                     start: str | pd.Timestamp | None = None) -> pd.DataFrame:
    """``n`` readings over two weeks from ``start`` (default 2025-03-03; about 2 % anomalies of the four
    kinds); ``with_kind`` adds the planted ``kind`` column (empty for ordinary readings), which the
    example's data file leaves out. A later ``start`` gives the traffic after a training set."""
    rng = np.random.default_rng(seed)
    begin = _START if start is None else pd.Timestamp(start)
    df = _readings(n, rng, begin)
    df["kind"] = ""
    order = rng.permutation(n)
    picked = order[: max(len(ANOMALY_KINDS), int(n * _ANOMALY_SHARE))]
    service = order[len(picked): len(picked) + int(n * _SERVICE_SHARE)]
    df.loc[service, "mode"] = "service"
    df.loc[service, "rpm"] = rng.uniform(50, 900, len(service))          # each run at its own test speed
    df.loc[service, "power_kw"] = rng.uniform(0.2, 9.0, len(service))
    df.loc[service, "temperature_c"] = rng.uniform(15, 45, len(service))
    df.loc[service, "vibration_mm_s"] = rng.uniform(0.1, 2.5, len(service))
    for kind, rows in zip(ANOMALY_KINDS, np.array_split(picked, len(ANOMALY_KINDS)), strict=True):
        _plant(df, rows, kind, rng, begin)
        df.loc[rows, "kind"] = kind
    is_anomaly = (df["kind"] != "").to_numpy()
    checked = np.where(is_anomaly, rng.random(n) < _LABELLED_ANOMALIES, rng.random(n) < _LABELLED_NORMAL)
    df["incident"] = pd.Series(np.where(is_anomaly, "anomaly", "normal"), dtype=object).where(checked, None)
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    df.insert(0, "reading_id", [f"r{i:06d}" for i in range(n)])
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    for c, digits in (("rpm", 0), ("power_kw", 2), ("temperature_c", 1), ("vibration_mm_s", 3), ("pressure_bar", 2)):
        df[c] = df[c].round(digits)
    columns = [*COLUMNS, "kind"] if with_kind else list(COLUMNS)
    return df[columns]
