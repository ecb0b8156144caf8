"""The ``modelloop.yaml`` schema.

Checked in two layers (as Ludwig does): structure and value ranges by pydantic models with
``extra="forbid"``, then small named cross-field checks registered in ``CHECKS``. Every problem is
reported at once, one line each, as ``dotted.path: what is allowed, got VALUE``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from .data.quality_config import CleanConfig, QualityConfig
from .data.source_url import is_sql_source
from .errors import ConfigError, StateError, cap_list, shown_json, shown_url
from .serving.config import ServeConfig
from .compute.config import ComputeConfig
from .families.anomaly.config import AnomalyConfig

__all__ = ["CHECKS", "DEFAULT_CONFIG_NAME", "Config", "config_hash", "load_config", "parse_config"]

DEFAULT_CONFIG_NAME = "modelloop.yaml"
Kind = Literal["numeric", "categorical", "boolean", "datetime", "text", "identifier"]
Delimiter = Literal["auto", ",", ";", "\t", "|"]  # data/delimiters.py DELIMITERS
Decimal = Literal["auto", ".", ","]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(_Section):
    """One of several sources (``data.sources``), combined by ``data.combine``."""

    name: str
    source: str
    query: str | None = None
    format: Literal["auto", "csv", "parquet", "jsonl", "excel", "sql"] = "auto"
    encoding: str = "auto"
    delimiter: Delimiter = "auto"
    decimal: Decimal = "auto"
    sheet: str | None = None


class DataConfig(_Section):
    source: str | None = Field(None, description="path (CSV, Parquet, JSONL) or SQLAlchemy URL")
    sources: list[SourceConfig] = Field(default_factory=list, description="several sources instead of one")
    combine: Literal["union", "join"] = "union"
    keys: list[str] = Field(default_factory=list, description="join keys (and conflict keys for a union)")
    query: str | None = None
    format: Literal["auto", "csv", "parquet", "jsonl", "excel", "sql"] = "auto"
    encoding: str = "auto"
    sheet: str | None = Field(None, description="an Excel workbook's sheet to read; left out: its first sheet")
    delimiter: Delimiter = Field("auto", description="a CSV's field delimiter; auto: detected from its header "
                                                     "and first rows (a semicolon-separated file from Excel in "
                                                     "Europe too)")
    decimal: Decimal = Field("auto", description="a CSV's decimal mark; auto: the comma where the fields are "
                                                 "not comma-separated and numbers are written 34,56")
    on_bad_lines: Literal["error", "skip"] = "error"
    on_type_error: Literal["error", "coerce"] = "error"
    # image sources: a file that does not decode stops the ingest naming it, or is left out and counted
    on_bad_files: Literal["error", "skip"] = "error"
    # Typed str for the stages of every task that requires it (``target_given`` refuses None there); only
    # a family with partial labels (task anomaly_detection) sees None, and reads it as optional.
    target: str = Field(None, description="the label column; required except for task anomaly_detection, whose "  # type: ignore[assignment]
                                          "labels may be partial (never a feature)")
    id: str | None = None
    time: str | None = None
    group: str | None = None
    text: str | None = None
    # task text_generation: the columns of its shape (left out: found by the names prompt/completion,
    # messages or text); see families/generative/data.py
    prompt: str | None = None
    completion: str | None = None
    messages: str | None = None
    # task recommendation: the interaction columns (ids matched by their text); rating left out: implicit
    # feedback; see families/recommend/data.py
    user: str | None = None
    item: str | None = None
    rating: str | None = None
    # side tables (CSV/Parquet/JSONL, one row per id): the items' and users' features, for content scoring,
    # filters and cold start (an item no one took yet; a user with features and no interaction)
    item_features: str | None = None
    user_features: str | None = None
    columns: dict[str, Kind] = Field(default_factory=dict)
    drop: list[str] = Field(default_factory=list)


class SplitConfig(_Section):
    # Left out, the strategy follows the data: time when data.time is set, else stratified for a
    # classification and random for a regression (a continuous target has no strata). It is filled
    # in once the task is known: at load when ``task`` is set, else when it is inferred.
    strategy: Literal["stratified", "random", "time", "group", "user", "column"] | None = Field(
        None, description="default: time with data.time, else stratified (classification), random (regression) "
                          "or user (recommendation: a share of each user's interactions); column: the rows "
                          "split.column marks test are the test split")
    test_size: float = Field(0.2, gt=0.0, lt=0.9)
    seed: int = 0
    column: str | None = Field(None, description="split.strategy column: the column saying each row's side "
                                                 "(test or train, true or false, 1 or 0); never a feature")
    # True when ``strategy`` was filled in from the task rather than written in the config
    _follows_task: bool = PrivateAttr(False)


class TrainConfig(_Section):
    budget: float | None = Field(120.0, gt=0, description="seconds for the whole search")
    trials: int | None = Field(None, ge=1)
    metric: str | None = None
    families: list[Literal["lightgbm", "xgboost", "linear", "catboost"]] = Field(
        default_factory=lambda: ["lightgbm", "xgboost", "linear"], min_length=1)  # type: ignore[arg-type]
    cv_folds: int = Field(5, ge=1, le=20)
    class_weight: Literal["balanced", "none"] = "balanced"
    ensemble: bool = True
    ensemble_size: int = Field(5, ge=2, le=50)
    stack: bool = Field(True, description="tabular: also try a level-2 model over the best trials' out-of-fold "
                                          "outputs, kept only when it beats the best model or blend out of fold")
    tune_threshold: bool = True
    max_latency_ms: float | None = Field(None, gt=0, description="most ms a record may take through the "
                                                                 "served model (batch 1, CPU time on an uncontended core, this machine)")
    parallel: int = Field(1, ge=1, description="search trials run at once, each in its own worker process "
                                               "sharing the Optuna storage (at most this machine's CPU count on "
                                               "compute.engine: local; on ray Ray tasks, as many as the "
                                               "cluster's free CPUs allow, checked when the search starts)")
    ddp_processes: int = Field(1, ge=1, description="text, image and generative fine-tuning in this many data-parallel "
                                                    "processes (torch DDP: gloo on CPU, nccl on GPUs; "
                                                    "at most this machine's CPU count, and its GPU count on CUDA; "
                                                    "on compute.engine: ray Ray Train workers, at most the "
                                                    "cluster's CPUs, checked when the run starts)")


class RetrainConfig(_Section):
    """Champion/challenger gate and the triggers that start a retrain (``--if-needed``)."""

    recent_fraction: float = Field(0.3, gt=0.0, lt=1.0,
                                   description="latest share of labeled feedback held out as the recent slice")
    # Both in train.metric's direction; for rmse and mae (in the target's units) a share of the
    # champion's figure, so one default fits every scale.
    min_improvement: float = Field(0.0, ge=0.0, description="challenger must beat champion on the recent slice by this")
    # Old data says less once the world has changed: allow a moderate drop on the frozen holdout,
    # but refuse a collapse (poisoned labels, a broken pipeline).
    max_holdout_drop: float = Field(0.1, ge=0.0, le=1.0)
    min_new_labels: int = Field(200, ge=1, description="trigger: labeled feedback since the champion")
    max_age_days: float | None = Field(30.0, gt=0, description="trigger: champion older than this")
    on_drift: bool = Field(True, description="trigger: any feature drifted")
    budget: float | None = Field(None, gt=0, description="search seconds; null = train.budget")


class MonitorConfig(_Section):
    window: int = Field(5000, ge=10, description="most recent predictions compared with the training data")
    metric_windows: list[int] = Field(default_factory=lambda: [100, 1000], min_length=1)
    psi_threshold: float = Field(0.2, gt=0)
    p_value: float = Field(0.01, gt=0, lt=1)
    min_rows: int = Field(100, ge=1, description="fewer recent predictions than this: no drift verdict")
    webhook: str | None = Field(None, description="URL POSTed a JSON alert when a threshold is crossed")


class OptimizeConfig(_Section):
    variants: Literal["auto"] | list[Literal["onnx", "onnx_int8_dynamic", "onnx_int8_static", "pruned",
                                             "distilled", "merged", "int8_dynamic"]] = Field(
        "auto", description="auto: every variant the model's family builds; merged and int8_dynamic are the "
                             "generative family's own (it builds onnx and onnx_int8_dynamic too, with a KV cache)")
    max_metric_drop: float = Field(0.01, ge=0.0, le=1.0, description="on the frozen test set, in train.metric")
    target: Literal["latency", "throughput", "size"] = "latency"
    promote: bool = Field(False, description="point production at the registered variant when its parent is "
                                             "the production version")


class UiConfig(_Section):
    host: str = Field("127.0.0.1", description="modelloop ui binds here; exposing it is a deliberate act")
    port: int = Field(8001, ge=0, le=65535)
    require_key_to_read: bool = Field(False, description="with API keys configured, every page needs a key "
                                                         "(default: read-only without one, actions need one)")


# a model's name: in the registry (name:version, name@alias), its files and the API's URLs
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MODEL_NAME_RULE = "a letter A-Z or a digit, then letters A-Z, digits, _ . or -"


class StorageConfig(_Section):
    catalog: str | None = None
    tracking: str | None = None
    optuna: str | None = None


class Config(_Section):
    name: str = Field("model", pattern=MODEL_NAME_PATTERN)
    # Left out, the task is inferred from the target column at ingest (``modelloop.data.task``), filled in
    # by ``settle_task``; until then it is None. A task written here always wins.
    task: str | None = Field(
        None, description="one of the registered families' tasks (modelloop.families.TASKS); default: inferred "
                          "from the target (few values, text, booleans: classification; fractional or many "
                          "distinct numbers: regression; classes whose features are one free-text column and at "
                          "most 3 others: text_classification)")
    seed: int = 0
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    # The settings of the task's family, validated by its ``settings_schema()`` (``_the_familys_settings``):
    # that pydantic model's instance (defaults when the section is left out), or None for a family without
    # settings (a section written for one is refused by ``model_section_fits_task``).
    model: Any = Field(None, validate_default=True,
                       description="the task's model family settings (its settings_schema()); only for a family that has them")
    train: TrainConfig = Field(default_factory=TrainConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig, description="task anomaly_detection: threshold "
                                                                              "and detectors")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ui: UiConfig = Field(default_factory=UiConfig, description="modelloop ui: the loop in a browser")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="the job queue's pool, engine and "
                                                                               "scheduling (modelloop jobs / worker)")

    # The directory the config was loaded from; relative paths resolve against it.
    root: Path = Field(default=Path("."), exclude=True)
    # How ``task`` was inferred ({"task", "reason"}); None while it is the config's own (or unknown).
    _task_inferred: dict[str, str] | None = PrivateAttr(None)
    # ``model`` holds the inferred task's family defaults (the config had no ``model:``), not the user's own
    _model_follows_task: bool = PrivateAttr(False)

    @field_validator("task")
    @classmethod
    def _a_registered_task(cls, value: str | None) -> str | None:
        from .families import TASKS  # the registry's declarations: no family is imported

        if value is not None and value not in TASKS:
            raise PydanticCustomError("task_unknown", "must be one of {allowed}", {"allowed": ", ".join(TASKS)})
        return value

    @field_validator("model")
    @classmethod
    def _the_familys_settings(cls, value: Any, info: ValidationInfo) -> Any:
        """``model:`` as the task's family declares it. Its errors keep their path (``model.backbone``,
        ``model.augment.p``), so they read as any other key's. An invalid task is reported on its own."""
        from .families import settings_schema_for

        if "task" not in info.data:
            return value
        schema = settings_schema_for(info.data["task"])
        if schema is None:
            return None if value == {} else value
        return value if isinstance(value, schema) else schema.model_validate({} if value is None else value)

    @field_validator("data")
    @classmethod
    def _a_target_unless_labels_are_partial(cls, value: DataConfig, info: ValidationInfo) -> DataConfig:
        """``data.target`` is required (reported with the other errors at once) except for a task whose
        family reads partial labels (anomaly detection). An invalid task is reported on its own."""
        from .families import partial_labels

        if value.target is None and "task" in info.data and not partial_labels(info.data["task"]):
            raise ValidationError.from_exception_data("DataConfig", [InitErrorDetails(
                type="missing", loc=("target",), input=value.model_dump(exclude_defaults=True))])
        return value

    @property
    def metric(self) -> str:
        if self.train.metric:
            return self.train.metric
        if self.task is None:
            raise StateError("task: not set in modelloop.yaml and not inferred yet (that takes a dataset "
                             "version); run `modelloop ingest` first, or set task: classification | regression")
        return _head(self.task).default_metric or _no_default_metric(self.task)

    @property
    def task_inferred(self) -> dict[str, str] | None:
        """``{"task", "reason"}`` when the task was inferred from the target, None when the config set it."""
        return None if self._task_inferred is None else dict(self._task_inferred)

    def settle_task(self, task: str, reason: str) -> None:
        """Take ``task`` (inferred from the target, for ``reason``) unless the config set one.

        Fills in the split strategy that follows the task and re-runs the cross-field checks that
        depend on it, so that ``train.metric: rmse`` or ``split.strategy: stratified`` against the
        inferred task fails here, naming the inference and how to override it.
        """
        if self.task is not None and self._task_inferred is None:
            return
        from .families import settings_schema_for

        before = (self.task, self.split.strategy, self._task_inferred, self.split._follows_task, self.model,
                  self._model_follows_task)
        self.task = task  # type: ignore[assignment]  # one of the Literal's values, from infer_task
        self._task_inferred = {"task": task, "reason": reason}
        if self.split._follows_task:
            self.split.strategy = None  # it followed an earlier inference: let it follow this one
        _settle_split(self)
        settings = settings_schema_for(task)
        problems: list[str] = []
        if self.model is None or self._model_follows_task:  # no ``model:`` of the user's: the family's defaults
            self.model = None if settings is None else settings.model_validate({})
            self._model_follows_task = self.model is not None
        elif settings is not None and not isinstance(self.model, settings):
            # the user's ``model:`` written beside a left-out task: validated as the inferred task's family's
            raw = self.model.model_dump(exclude_unset=True) if isinstance(self.model, BaseModel) else self.model
            try:
                self.model = settings.model_validate(raw)
            except ValidationError as exc:
                problems = [_format_error({**e, "loc": ("model", *e["loc"])}, task) for e in exc.errors()]
        problems = problems or [p for check in CHECKS.values() for p in check(self)]
        if problems:
            (self.task, self.split.strategy, self._task_inferred, self.split._follows_task, self.model,
             self._model_follows_task) = before  # type: ignore[assignment]
            why = (f" (task {task} was inferred: {reason}; set `task:` in modelloop.yaml to choose "
                   f"another)")
            raise ConfigError("\n".join(p + why for p in problems))


def _head(task: str) -> Any:
    """The head class a config task's models predict through (its metrics, defaults, what splits apply)."""
    from .families import head_of_task

    return head_of_task(task)


def _no_default_metric(task: str) -> str:
    raise StateError(f"train.metric: task {task} has no default metric; set train.metric")


def _default_strategy(task: str | None, time: str | None) -> str | None:
    """The split a task gets when ``split.strategy`` is left out (None while the task is unknown)."""
    if time:
        return "time"
    if task is None:
        return None
    return _head(task).default_split


def _settle_split(cfg: Config) -> None:
    if cfg.split.strategy is None:
        cfg.split.strategy = _default_strategy(cfg.task, cfg.data.time)  # type: ignore[assignment]
        if cfg.split.strategy == "stratified" and cfg.data.target is None:  # no labels (anomaly): nothing to stratify
            cfg.split.strategy = "random"
        cfg.split._follows_task = cfg.split.strategy is not None


# ---- cross-field checks: each returns a list of "path: message" strings ----------------------
CHECKS: dict[str, Callable[[Config], list[str]]] = {}


def _check(fn: Callable[[Config], list[str]]) -> Callable[[Config], list[str]]:
    CHECKS[fn.__name__] = fn
    return fn


@_check
def metric_fits_task(cfg: Config) -> list[str]:
    m = cfg.train.metric
    if m is None or cfg.task is None:  # an unset task: checked once inferred
        return []
    allowed = _head(cfg.task).metrics  # () for a head outside the metric registry: its family checks it
    if allowed and m not in allowed:
        return [f"train.metric: must be one of {', '.join(allowed)} for task {cfg.task}, got '{m}'"]
    return []


@_check
def split_needs_its_column(cfg: Config) -> list[str]:
    s = cfg.split.strategy
    if s == "time" and not cfg.data.time:
        return ["split.strategy: 'time' needs data.time (the timestamp column), got data.time: null"]
    if s == "group" and not cfg.data.group:
        return ["split.strategy: 'group' needs data.group (the group column), got data.group: null"]
    if s == "user" and not cfg.data.user and not cfg.split._follows_task:  # a recommender's own: interaction_columns
        return ["split.strategy: 'user' needs data.user (the user id column), got data.user: null"]
    if s == "column" and not cfg.split.column:
        return ["split.strategy: 'column' needs split.column (the column marking each row test or train), "
                "got split.column: null"]
    if cfg.split.column and s != "column":
        left_out = " (left out, so it follows the task)" if cfg.split._follows_task else ""
        given = "null (left out)" if s is None else f"{s}{left_out}"
        return [f"split.column: read only by split.strategy: column, got split.strategy: {given}; "
                f"set split.strategy: column to use the column's sides, or remove split.column"]
    if s == "column" and cfg.split.column in (cfg.data.target, cfg.data.id, cfg.data.time, cfg.data.group,
                                              cfg.data.user):
        return [f"split.column: '{cfg.split.column}' is also a role column (data.target, id, time, group or "
                f"user); name a column of its own that marks each row test or train"]
    if s == "stratified" and cfg.task is not None and not _head(cfg.task).stratifies:
        return ["split.strategy: 'stratified' needs a classification task; use random, time or group"]
    if s == "stratified" and cfg.data.target is None:  # a task whose labels are optional, left out (anomaly)
        return [f"split.strategy: 'stratified' keeps each label's share on both sides, and this project has no "
                f"labels (task {cfg.task} without data.target); use random, time or group, or set data.target"]
    return []


@_check
def interaction_columns(cfg: Config) -> list[str]:
    """A recommender (a task split per user by default) learns from (user, item) pairs: both columns are
    named, or the first run stops here rather than on the split the user never set."""
    if cfg.task is None or _head(cfg.task).default_split != "user":
        return []
    return [f"data.{k}: required for task {cfg.task} (the {k} id column of each interaction), got nothing"
            for k in ("user", "item") if not getattr(cfg.data, k)]


@_check
def relevant_rating_needs_ratings(cfg: Config) -> list[str]:
    # a recommender's ``model.relevant_rating`` compares held-out ratings: implicit interactions have none
    threshold = getattr(cfg.model, "relevant_rating", None)
    if threshold is None or cfg.data.rating:
        return []
    return [f"model.relevant_rating: {threshold:g} needs data.rating (the rating column), got data.rating: null; "
            "without ratings every held-out interaction is relevant: remove model.relevant_rating or set "
            "data.rating"]


@_check
def model_section_fits_task(cfg: Config) -> list[str]:
    # ``model:`` is the settings of a family that has them (a pretrained encoder's); on a family without
    # them it would be silently ignored. Asking the family also reports a missing optional dependency.
    from .families import family_for_task, tasks_with_settings

    # A task left out is inferred at ingest: the section is checked (and validated as that task's family's
    # settings) when ``Config.settle_task`` settles it.
    if cfg.model is None or cfg.task is None:
        return []
    family = family_for_task(cfg.task)
    if family.settings_schema() is None:
        tasks = " | ".join(tasks_with_settings())
        return [f"model: only used by task: {tasks} (the {family.name} family has no model section), got task: "
                f"{cfg.task}; remove the section or set task: {tasks}"]
    return []


@_check
def latency_limit_fits_task(cfg: Config) -> list[str]:
    # the limit picks among a search's trials by their served latency; a family without that choice says why
    from .families import family_for_task

    why_not = family_for_task(cfg.task).latency_limit_advice if cfg.train.max_latency_ms is not None else None
    return [f"train.max_latency_ms: applies to tabular and text models; {why_not}"] if why_not else []


@_check
def anomaly_section_fits_task(cfg: Config) -> list[str]:
    # the section of the tasks whose models predict through the anomaly head (its default metric and
    # split are the head's too)
    from .families.heads import AnomalyHead

    if (cfg.task is None or _head(cfg.task) is not AnomalyHead) and cfg.anomaly != AnomalyConfig():
        return [f"anomaly: only used by task: anomaly_detection, got task: {cfg.task or 'left out'}; remove the "
                "section or set task: anomaly_detection"]
    if cfg.anomaly.per_day is not None and not cfg.data.time:  # alerts per day: the records' rate in time
        return [f"anomaly.alert_budget: {cfg.anomaly.alert_budget!r} (alerts per day) needs data.time (the records' "
                "time column), got data.time: null; or give alerts per 1,000 records (a number, or '5 per 1000')"]
    return []


@_check
def processes_fit_the_machine(cfg: Config) -> list[str]:
    # Local search workers and DDP ranks share this machine's cores: more than its CPUs only slows each
    # down (and the budget counts wall time). On the Ray engine they are Ray tasks / Ray Train workers,
    # which the cluster's free CPUs bound, checked where the cluster is known: the run's start
    # (training/ray_search.py, training/distributed.py)
    cpus = os.cpu_count() or 1
    if cfg.compute.engine != "local":
        return []
    return [f"train.{key}: must be 1..{cpus} (this machine's CPU count) on compute.engine: local, got {n}; on "
            f"compute.engine: ray the {what} on the cluster's CPUs"
            for key, n, what in (("parallel", cfg.train.parallel, "workers are Ray tasks"),
                                 ("ddp_processes", cfg.train.ddp_processes, "ranks are Ray Train workers"))
            if n > cpus]


@_check
def roles_are_distinct(cfg: Config) -> list[str]:
    d = cfg.data
    if d.id is not None and d.id == d.target:
        return [f"data.id: must differ from data.target, got '{d.id}' for both"]
    if d.target in d.drop:
        return [f"data.drop: must not list the target column '{d.target}'"]
    return []


@_check
def one_kind_of_source(cfg: Config) -> list[str]:
    d = cfg.data
    if (d.source is None) == (not d.sources):
        return ["data.source: give either data.source (one source) or data.sources (several), "
                f"got {'both' if d.source else 'neither'}"]
    names = [s.name for s in d.sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return [f"data.sources: names must be unique, got {cap_list(dupes, show=repr)} more than once"]
    if d.sources and d.combine == "join" and not d.keys:
        return ["data.keys: data.combine: join needs the key columns, got []"]
    return []


@_check
def sql_source_has_query(cfg: Config) -> list[str]:
    if cfg.data.source is None:
        return []
    if (cfg.data.format == "sql" or is_sql_source(cfg.data.source)) and not cfg.data.query:
        return [f"data.query: a SQL source ({shown_url(cfg.data.source)}) needs a query, got null"]
    return []


# ---- loading -----------------------------------------------------------------------------------
def _fields_of(model: type[BaseModel], loc: tuple, task: Any = None) -> list[str]:
    """Allowed key names at ``loc`` (for 'unknown key' messages); ``model.*`` keys are the ``task``'s
    family's."""
    for depth, part in enumerate(loc[:-1]):
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if depth == 0 and model is Config and part == "model":
            from .families import settings_schema_for

            ann = settings_schema_for(task if isinstance(task, str) else None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return [n for n, f in model.model_fields.items() if not f.exclude]


def _format_error(err: Any, task: Any = None) -> str:
    loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = _fields_of(Config, loc, task)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{path}: unknown key{hint}; allowed: {', '.join(allowed)}"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        ctx = err.get("ctx") or {}
        tag = ctx.get("tag", value.get(ctx.get("discriminator", "").strip("'")) if isinstance(value, dict) else value)
        key = f"{path}.{ctx.get('discriminator', 'action').strip(chr(39))}"
        if "expected_tags" not in ctx:
            return f"{key}: required, but missing"
        return f"{key}: must be one of {ctx['expected_tags']}, got {shown_json(tag)}"
    if err["type"] == "missing":
        return f"{path}: required, but missing"
    if err["type"] == "string_pattern_mismatch" and loc == ("name",):  # not the regular expression
        return f"name: must be {MODEL_NAME_RULE} (it names the model in the registry), got {shown_json(value)}"
    msg = err["msg"]
    if err["type"] == "literal_error":
        msg = "must be " + msg.removeprefix("Input should be ")
    else:
        msg = msg[0].lower() + msg[1:] if msg else msg
        msg = msg.replace("input should be", "must be")
    return f"{path}: {msg}, got {shown_json(value)}"


def parse_config(raw: Any, *, root: Path | str = ".") -> Config:
    """Validate a parsed YAML mapping; raise ConfigError listing every problem, one per line."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: must be a mapping of keys (name, task, data, ...), got {type(raw).__name__}")
    try:
        cfg = Config.model_validate({**raw, "root": Path(root)})
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_error(e, raw.get("task")) for e in exc.errors())) from None
    _settle_split(cfg)
    problems = [p for check in CHECKS.values() for p in check(cfg)]
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def load_config(path: Path | str = DEFAULT_CONFIG_NAME) -> Config:
    """Read and validate ``modelloop.yaml``; the error names the file when it is missing or not YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found. Run `modelloop init` to create one, or pass -c PATH.")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_config(raw, root=p.resolve().parent)


def config_hash(cfg: Config, *sections: str) -> str:
    """A short stable hash of the named sections (all when none), e.g. to key an Optuna study."""
    data = cfg.model_dump(mode="json", exclude={"root"})
    if sections:
        data = {s: data[s] for s in sections}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
