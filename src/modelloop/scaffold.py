"""``modelloop init`` and ``modelloop demo``: new projects from the bundled examples."""

from __future__ import annotations

import functools
import importlib
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError, cap_list

__all__ = ["EXAMPLES", "init_project"]

EXAMPLES: tuple[str, ...] = ("fraud", "intents", "sentiment", "anomaly")
EXAMPLES += ("assistant",)  # generative: bilingual customer-service pairs (examples/assistant.py)
EXAMPLES += ("images",)  # image classification: generated part images, a folder per class (examples/images.py)
EXAMPLES += ("recommend",)  # a shop's ratings with latent taste structure (examples/recommend.py)
# examples whose table a seeded generator writes: module of modelloop.examples, its function, the file
_GENERATED_TABLES = {"fraud": ("fraud", "generate_transactions", "transactions.csv"),
                     "anomaly": ("sensors", "generate_sensors", "sensors.csv"),
                     "recommend": ("recommend", "generate_interactions", "ratings.csv")}
_TEXT_EXAMPLES = ("intents", "sentiment")  # data/NAME.jsonl shipped in the package, config NAME.yaml

_BLANK = """\
# modelloop project. Every key but data.source and data.target has a default;
# `modelloop init --example fraud` writes a complete, commented example.
name: {name}
{task}data:
  source: {source}      # CSV, Parquet, JSONL path, or a SQLAlchemy URL (then `query:`)
{target}{query}  id: null                    # optional row id column (never used as a feature)
{model}{split}train:
  budget: 120                 # seconds for the whole search
{metric}"""
_METRIC_LEFT_OUT = "  # metric: f1_macro          # default: f1_macro for classification, rmse for regression\n"


_TASK_LEFT_OUT = "# task: {tasks}\n#   left out: inferred from the data at ingest (`modelloop run` says which and why)\n"
_TARGET = "  target: {target}               # the column to predict\n"
_NO_TARGET = "  # target: null               # optional for task {task}: a column of labels for a few rows, if any\n"
# a recommender's table is interactions: it names its columns instead of a target (``data.user`` ...)
_INTERACTIONS = """\
  user: null                  # required: the user id column{columns}
  item: null                  # required: the item id column
  # rating: null              # a rating column (explicit feedback); left out, interactions are implicit
  # time: null                # a timestamp column: each user's latest interactions are the test
"""
# a column whose name says it marks a holdout (``split.strategy: column``), suggested commented: left as it
# is, the team's own test rows were drawn into training and a 20 % share of every row was scored instead
_HOLDOUT_NAMES = ("split", "is_test", "holdout", "is_holdout", "partition", "subset", "train_test", "data_split",
                  "dataset_split")
_HOLDOUT = """\
# split:                      # {column} looks like your own holdout mark: uncomment to score every model
#   strategy: column          # on its test rows (test/train, true/false or 1/0); left out, a share of the
#   column: {column}{pad}# rows is drawn and {column} is a feature
"""
# a recommender's opt-in ``model.relevant_rating`` (with data.rating), commented as the metric line is: a
# team with 1-5 stars that never heard of it got ranking figures counting a held-out 1-star rating as a hit
_RELEVANT_RATING = """\
# model:
  # relevant_rating: 4        # needs data.rating: a held-out rating below it is no hit in precision, recall,
                              # ndcg, map, hit_rate (4 on 1-5 stars); left out, a 1-star rating is a hit too
"""


def init_project(directory: Path | str, *, example: str | None = None, source: str | None = None,
                 target: str | None = None, query: str | None = None, task: str | None = None) -> dict[str, Any]:
    """Write ``modelloop.yaml`` (and the example's data) into ``directory``; never overwrites.

    ``source`` / ``target`` (``init --source --target``, as Ludwig's ``init_config --dataset --target``):
    the user's own table and the column to predict go into the config, the path written relative to the
    project folder (how ``data.source`` is read); a file that is not there or a target that is not one of
    its columns is refused here, naming the columns, rather than at the first ``modelloop run``. ``task``
    (``init --task``) is written as ``task:``; a task whose labels are partial (anomaly detection, a
    recommender) needs no ``--target``."""
    from .families import TASKS, partial_labels

    root = Path(directory)
    cfg_path = root / "modelloop.yaml"
    if cfg_path.exists():
        raise ConfigError(f"{cfg_path} already exists; choose another folder or edit it")
    if example is not None and example not in EXAMPLES:
        raise ConfigError(f"--example: unknown example '{example}'; allowed: {', '.join(EXAMPLES)}")
    if example is not None and (source or target or task):
        raise ConfigError("--example writes its own data and config; give either --example or "
                          "--source/--target/--task")
    if task is not None and task not in TASKS:
        raise ConfigError(f"--task: unknown task '{task}'; allowed: {', '.join(TASKS)}")
    optional = task is not None and partial_labels(task)
    if query is not None and source is None:
        raise ConfigError("--query needs --source DATABASE_URL (the database the SQL reads)")
    if (source is None) != (target is None) and not (optional and target is None):
        given, missing = ("--source", "--target") if target is None else ("--target", "--source")
        columns = _columns(Path(source)) if source is not None else None
        unlabelled = " or ".join(t for t in TASKS if partial_labels(t))
        raise ConfigError(f"{given} needs {missing}" + (f"; the columns of {source}: {cap_list(columns)}"
                                                        if columns else "")
                          + (f" (rows without a column to predict: --task {unlabelled})" if target is None else ""))
    entry = _own_source(root, source, target, query) if source is not None else None
    root.mkdir(parents=True, exist_ok=True)
    files = [str(cfg_path)]
    if example in _GENERATED_TABLES:  # a seeded generator writes data/<file>; <example>.yaml is the config
        module, function, name = _GENERATED_TABLES[example]
        generate = getattr(importlib.import_module(f"{__package__}.examples.{module}"), function)
        (root / "data").mkdir(exist_ok=True)
        data = root / "data" / name
        generate(seed=0).to_csv(data, index=False)
        text = resources.files("modelloop.examples").joinpath(f"{example}.yaml").read_text()
        files.append(str(data))
    elif example == "images":
        from .examples.images import generate_images

        counts = generate_images(root / "data" / "parts", per_class=60, size=64, seed=0)
        text = resources.files("modelloop.examples").joinpath("images.yaml").read_text()
        files += [str(root / "data" / "parts" / k) for k in counts]
    elif example == "assistant":
        from .examples.assistant import generate_assistant

        (root / "data").mkdir(exist_ok=True)
        data = root / "data" / "assistant.jsonl"
        generate_assistant(seed=0).to_json(data, orient="records", lines=True, force_ascii=False)
        text = resources.files("modelloop.examples").joinpath("assistant.yaml").read_text()
        files.append(str(data))
    elif example in _TEXT_EXAMPLES:
        (root / "data").mkdir(exist_ok=True)
        src = resources.files("modelloop.examples")
        data = root / "data" / f"{example}.jsonl"
        data.write_bytes(src.joinpath(f"{example}.jsonl").read_bytes())
        text = src.joinpath(f"{example}.yaml").read_text()
        files.append(str(data))
    else:
        label = entry[1] if entry else ("label" if not optional else None)
        text = _BLANK.format(name=_model_name(root.resolve().name),
                             task=f"task: {task}\n" if task else _TASK_LEFT_OUT.format(tasks=" | ".join(TASKS)),
                             source=entry[0] if entry else "data/train.csv",
                             target=_TARGET.format(target=label) if label else _no_target(task, source),
                             query=f"  query: {entry[2]}\n" if entry and entry[2] else "",
                             model=_RELEVANT_RATING if _recommends(task) else "", metric=_metric_line(task),
                             split=_holdout_line(source))
    tmp = cfg_path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(cfg_path)
    return {"config": str(cfg_path), "files": files, "example": example, "source": source, "target": target,
            "task": task}


def _metric_line(task: str | None) -> str:
    """The commented ``train.metric`` line: the task's own default and allowed figures (an anomaly
    detector's pr_auc, a recommender's ndcg: f1_macro, uncommented, was refused there), else the two
    defaults a left-out task may get."""
    from .families import head_of_task

    head = head_of_task(task) if task is not None else None
    if head is None or not head.default_metric:
        return _METRIC_LEFT_OUT
    return f"  # metric: {head.default_metric:<17} # default for task {task}; allowed: {', '.join(head.metrics)}\n"


def _holdout_line(source: str | None) -> str:
    """The commented ``split: {strategy: column}`` lines when a column of ``source`` is named as a holdout
    mark is (``_HOLDOUT_NAMES``, any case), else nothing."""
    columns = _columns(Path(source)) if source is not None else None
    column = next((c for c in columns or [] if c.lower() in _HOLDOUT_NAMES), None)
    if column is None:
        return ""
    name = _scalar(column)
    return _HOLDOUT.format(column=name, pad=" " * max(1, 18 - len(name)))


def _recommends(task: str | None) -> bool:
    from .families import TASKS

    return TASKS.get(str(task)) == "recommend"


def _no_target(task: str | None, source: str | None) -> str:
    """The ``data:`` lines in place of a target: a recommender's interaction columns (the source's own
    columns named, to choose from), else the optional label column of a partial-labels task."""
    if not _recommends(task):
        return _NO_TARGET.format(task=task)
    columns = _columns(Path(source)) if source is not None else None
    return _INTERACTIONS.format(columns=f"; the columns: {cap_list(columns)}" if columns else "")


def _model_name(folder: str) -> str:
    """``name:`` for a project in ``folder``: the folder's name where it is a model name, else its letters
    and digits joined by ``_`` with a comment saying why (``init 情感项目`` wrote ``name: 情感项目``, which
    every later command refused: 'string should match pattern ...')."""
    import re

    from .config import MODEL_NAME_PATTERN, MODEL_NAME_RULE

    if re.match(MODEL_NAME_PATTERN, folder):
        return folder
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder).strip("_.-") or "model"
    return (f"{name}{' ' * max(1, 26 - len(name))}# the folder's name, {_scalar(folder)}, is not a model name: "
            f"{MODEL_NAME_RULE}")


def _own_source(root: Path, source: str, target: str | None,
                query: str | None) -> tuple[str, str | None, str | None]:
    """``(data.source, data.target, data.query)`` as YAML scalars for a user's own table: a database URL as
    given (with its ``query``, which it needs), a file relative to ``root`` (checked to exist, and
    ``target`` against its columns where they can be read without reading the rows)."""
    import os

    from .data.sources import is_sql_source

    if is_sql_source(source):
        if not query:
            raise ConfigError("--source is a database URL: give --query with the SQL that reads the table "
                              "(e.g. --query 'SELECT * FROM my_table')")  # the URL not echoed: it may hold a password
        return _scalar(source), _scalar(target) if target else None, _scalar(query)
    if query:
        raise ConfigError("--query applies to a database URL source; a file is read whole")
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"--source: file not found: {path.resolve()}")
    columns = _columns(path)  # None for a folder (text or images): ingest reads and checks it
    if columns == []:  # the target's message listed no columns
        raise ConfigError(f"--source: {source} has no header row (an empty file?); expected the table's column "
                          f"names on its first line")
    if columns is not None and target is not None and target not in columns:
        raise ConfigError(f"--target: '{target}' is not a column of {source}; its columns: {cap_list(columns)}")
    where = os.path.relpath(path.resolve(), root.resolve())
    return _scalar(where), _scalar(target) if target else None, None


def _scalar(value: str) -> str:
    """``value`` as a double-quoted YAML scalar that a person reads as typed: a column named 情感 is
    written so, not as ``\\u60c5\\u611f`` (JSON's escapes are YAML's; the file is written as UTF-8). A value
    with characters a YAML file may not hold as they are (a line separator, C1 controls) keeps the escapes."""
    import json

    return json.dumps(value, ensure_ascii=not value.isprintable())


def _columns(path: Path) -> list[str] | None:
    """The column names of a CSV, Parquet, JSONL or Excel file (its first sheet) from its header or schema (no
    rows read); None when they cannot be had that way (another format, a malformed file: ingest reads and
    checks it). A CSV's header is decoded as ingest decodes the file (``file_encoding``: a GBK file saved by
    Excel too; Polars reads every CSV as UTF-8, and a GBK header came out as U+FFFD characters). Read once
    per version of the file: ``init`` asks up to three times (the target, the holdout column, the task's
    columns), and a workbook's header costs a parse of the whole workbook."""
    if not path.is_file():
        return None
    from .data.encoding import file_version

    names = _columns_of(str(path), file_version(path))
    return None if names is None else list(names)


@functools.lru_cache(maxsize=8)
def _columns_of(given: str, version: tuple[str, int, int, int, int]) -> tuple[str, ...] | None:
    import polars as pl

    from .data.source_url import file_kind

    path = Path(given)
    kind = file_kind(path)  # as ingest reads the file (``FILE_KINDS``)
    if kind is None:
        return None
    try:
        if kind == "excel":  # its first sheet's header, as ingest reads it by default
            from .data.sources import read_excel

            names = [str(c) for c in read_excel(path, None, what="--source", rows=0).columns]
        elif kind == "csv":
            names = _csv_header(path)
        else:
            scan = pl.scan_parquet if kind == "parquet" else pl.scan_ndjson
            names = scan(path).collect_schema().names()
        return tuple(c.strip() for c in names if c.strip())  # as ingest strips them
    except DataError:  # a UTF-8 file with bad bytes: garbled names would be refused with no word of why
        raise
    except Exception:  # undecodable bytes, a malformed header: `modelloop ingest` reports it in full
        return None


def _csv_header(path: Path) -> list[str]:
    """A CSV's header as ingest reads it: in its encoding and delimiter (``file_dialect``: a semicolon-separated
    file from Excel in Europe read as one column named ``betrag;land;kunde``)."""
    from .data.delimiters import csv_header, file_dialect
    from .data.encoding import file_encoding, undecodable

    encoding = file_encoding(path)
    try:
        return csv_header(path, encoding, file_dialect(path, encoding).delimiter)
    except UnicodeDecodeError as exc:  # in the first read buffer; a bad byte further on is ingest's to report
        raise DataError(f"--source: {undecodable(path, encoding, exc, detected=True, force=None)}") from None
