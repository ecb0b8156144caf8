"""Profile a table into a ``QualityReport``: per-column facts, findings, scores and a quality gate.

``profile(df, schema, config)`` runs on Polars (pandas input is converted once) through a lazy view
of the table: a Polars frame is not copied, and a ``LazyFrame`` or a Parquet path is scanned, so each
step reads only the columns (or rows) it needs and a table larger than memory can be profiled. Cheap
facts use the whole table in a few wide selects per batch of columns (``column_batches``), exact
duplicates a streamed row hash; the expensive detectors (target leakage, correlations and label
issues) run on a seeded sample of ``config.sample_rows`` / ``label_issues.max_rows`` rows, gathered
by position, and the report says so under ``sampled``.

JSON contract (``QualityReport.to_dict()``, read by other programs; keys are never renamed):
``rows``, ``columns_count``, ``scores`` {completeness, validity, consistency, overall: 0–100},
``gate`` {passed, failed: [{check, column, value, threshold, message}]}, ``columns`` {name: facts},
``findings`` [{kind, column, severity, count, message, details}], ``label_issues`` [suspects],
``shift`` ({column: {method, psi, ks, p_value, drifted, ...}} or null). The ``label_issues`` finding's
details carry ``per_class`` [{label, rows, suspects, share, suggested}] and ``overlapping_classes``
(classes flagged above ``label_issues.overlap_share``: overlap, not wrong labels); a ``target_leakage``
finding's details carry ``metric``, ``score``, ``threshold`` and, when it is reported for leading every
other column, ``next_column`` and ``next_score``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from ..errors import DataError
from ._checks import (POS, correlated_pairs, cross_checks, duplicate_rows, key_checks, leakage_scores,
                      rule_checks, share_severity, take_rows)
from ._findings import Check, Finding, compute_scores, evaluate_gate, severity_rank
from ._profile import json_value, profile_columns
from ._tables import column_batches, is_internal, is_numeric, to_lazy, to_polars
from .label_issues import ROW_ID, find_label_issues
from .quality_config import FINDING_KINDS, QualityConfig, parse_section
from .schema import FEATURE_KINDS, Schema
from .task import target_kind
from .shift import compare_distributions

__all__ = ["Finding", "QualityReport", "infer_task", "profile"]


@dataclass
class QualityReport:
    """The outcome of ``profile``; ``to_dict()`` is the JSON contract, ``to_html()`` the page."""

    rows: int
    columns_count: int
    scores: dict[str, float]
    gate: dict[str, Any]
    columns: dict[str, dict[str, Any]]
    findings: list[Finding]
    label_issues: list[dict[str, Any]] = field(default_factory=list)
    shift: dict[str, dict[str, Any]] | None = None
    target: dict[str, Any] | None = None
    duplicates: dict[str, Any] = field(default_factory=dict)
    correlations: list[dict[str, Any]] = field(default_factory=list)
    leakage: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    sampled: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.gate["passed"])

    def findings_of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["findings"] = [f.to_dict() for f in self.findings]
        return _jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityReport:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["findings"] = [Finding.from_dict(f) for f in d.get("findings", [])]
        return cls(**kw)

    def to_html(self, title: str = "Data quality report") -> str:
        from ._report_html import render_html

        return render_html(self.to_dict(), title)

    def raise_for_gate(self) -> None:
        """DataError listing the failed gate checks (what ``modelloop run`` stops on); no-op if passed."""
        if not self.passed:
            lines = "; ".join(f["message"] for f in self.gate["failed"][:5])
            more = len(self.gate["failed"]) - 5
            raise DataError(f"the data failed the quality gate ({len(self.gate['failed'])} checks): {lines}"
                            f"{f'; and {more} more' if more > 0 else ''}. Run `modelloop profile` for the "
                            f"report, fix the data (`modelloop clean`) or relax quality.gate")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    return json_value(v)


def infer_task(dtype: pl.DataType, kind: str | None, distinct: int) -> str:
    """The task a target profiled without one asks for, as the family that serves a left-out task reads
    it from the column (its Polars type, kind and distinct count)."""
    from ..families import family_for_task

    family: Any = family_for_task(None)  # its optional ``column_task`` (the Family protocol's extension)
    return str(family.column_task(dtype, kind, distinct))


def _resolve(columns: list[str], schema: Schema | None) -> tuple[list[str], dict[str, str]]:
    """Columns to profile (schema's, then any other non-internal ones) and their declared kinds."""
    declared = dict(schema.columns) if schema else {}
    missing = [c for c in declared if c not in columns]
    if missing:
        raise DataError(f"column '{missing[0]}' is in the schema but not in the data; data columns: "
                        f"{', '.join(columns[:40])}")
    cols = [c for c in declared] + [c for c in columns if c not in declared and not is_internal(c)]
    return cols, declared


def _column_findings(cols: dict[str, dict[str, Any]], cfg: QualityConfig, target: str | None,
                     id_col: str | None, keys: Sequence[str] = ()) -> tuple[list[Check], list[Finding]]:
    """``keys``: declared id/key columns (a recommender's user and item): many distinct values is what
    an id is, never a ``high_cardinality`` finding."""
    checks, findings = [], []
    for c, f in cols.items():
        n, miss, share = f["rows"], f["missing"], f["missing_share"]
        checks.append(Check("completeness", c, n, miss))
        if miss:
            sev = ("error" if share >= 0.05 else "warning") if c == target else share_severity(share, 0.05, 0.5)
            findings.append(Finding("missing_values", c, sev, miss,
                                    f"column '{c}' is {share:.1%} missing ({miss} of {n} rows)"
                                    + (" — rows without a label cannot be used to train" if c == target else ""),
                                    {"share": share}))
        kind = f.get("kind") or f.get("inferred_kind")
        distinct = f.get("distinct", 0)
        if distinct <= 1 and c != id_col:
            findings.append(Finding("constant_column", c, "warning", n,
                                    f"column '{c}' holds a single value"
                                    + (f" ({f['top'][0]['value']!r})" if f.get("top") else "")
                                    + "; it carries no information (clean rule drop_columns)"))
        elif f.get("_top_share", 0) >= cfg.near_constant_share and c != target:
            findings.append(Finding("near_constant_column", c, "info", n,
                                    f"column '{c}': one value covers {f['_top_share']:.1%} of rows",
                                    {"share": f["_top_share"]}))
        if kind == "categorical" and distinct > cfg.high_cardinality and c != target and c not in keys:
            findings.append(Finding("high_cardinality", c, "warning", distinct,
                                    f"categorical column '{c}' has {distinct} distinct values (more than "
                                    f"quality.high_cardinality = {cfg.high_cardinality}); declare it text or "
                                    f"identifier, or group rare values", {"distinct": distinct}))
        if f.get("_variants"):
            findings.append(_variants_finding(c, f["_variants"], n - miss, c == target))
        out = f.get("outliers")
        if out and out["count"] and kind == "numeric" and c != target:
            findings.append(Finding("outliers", c, "warning" if out["share"] >= 0.05 else "info", out["count"],
                                    f"column '{c}': {out['count']} values ({out['share']:.2%}) outside "
                                    f"[{out['lower']:.4g}, {out['upper']:.4g}] ({out['method']})",
                                    {"share": out["share"], "lower": out["lower"], "upper": out["upper"]}))
    return checks, findings


def _variants_finding(c: str, variants: dict[str, Any], present: int, is_target: bool) -> Finding:
    """``spelling_variants``: values that are one category spelt several ways, and the rule that merges them.

    On the target each spelling is a class of its own (a warning: it splits a class); on a feature a
    category of its own, a warning from 1% of the rows."""
    groups, rows = variants["groups"], variants["rows"]
    share = rows / present if present else 0.0
    settings = {"columns": [c], **variants["settings"]}
    rule = ", ".join(f"{k}: {_yaml(v)}" for k, v in settings.items())
    said = []
    for g in groups[:3]:
        others = ", ".join(f"{v['value']!r} ({v['count']} rows)" for v in g["variants"])
        verb = "is" if len(g["variants"]) == 1 else "are"
        into = f" (merged into {g['merged']!r})" if g["merged"] != g["value"] else ""
        said.append(f"{others} {verb} {g['value']!r} ({g['count']} rows) but for "
                    f"{' and '.join(g['differs_by'])}{into}")
    more = variants["groups_total"] - len(said)
    where = f"target '{c}'" if is_target else f"column '{c}'"
    split = ", so the model sees separate classes" if is_target else ""
    message = (f"{where}: {'; '.join(said)}{f'; and {more} more such groups' if more > 0 else ''}{split}; "
               f"the clean rule {{action: normalize_text, {rule}}} (under clean.rules) merges them")
    severity = "warning" if is_target or share >= 0.01 else "info"
    return Finding("spelling_variants", c, severity, rows, message,
                   {"share": share, "groups": groups, "groups_total": variants["groups_total"],
                    "rule": {"action": "normalize_text", **settings}})


def _spelt_class(finding: Finding, found: list[Finding]) -> Finding:
    """A ``class_imbalance`` finding whose small class is another class misspelt says so: the fix is to
    merge the spellings (``spelling_variants``), not to weight the class."""
    if finding.kind != "class_imbalance" or finding.column is None:
        return finding
    minority = (finding.details.get("minority") if finding.details else None)
    for v in found:
        if v.kind != "spelling_variants" or v.column != finding.column:
            continue
        for g in v.details["groups"]:
            if any(x["value"] == minority for x in g["variants"]):
                finding.message += (f"; but {minority!r} is {g['value']!r} spelt differently (spelling_variants): "
                                    f"merge them first")
    return finding


def _yaml(v: Any) -> str:
    """A setting as modelloop.yaml spells it (``[deny]``, ``true``, ``lower``)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return f"[{', '.join(map(str, v))}]"
    return str(v)


def _top_shares(data: pl.LazyFrame, cols: dict[str, dict[str, Any]]) -> None:
    """Share of the most common value, for near-constant detection (numbers: only when p01 == p99)."""
    probe = []
    for c, f in cols.items():
        non_null = f["rows"] - f["missing"]
        if f.get("top"):
            f["_top_share"] = f["top"][0]["count"] / max(non_null, 1)
        elif f.get("quantiles") and f["quantiles"]["p01"] is not None and f["quantiles"]["p01"] == f["quantiles"]["p99"]:
            probe.append((c, f["quantiles"]["p50"], non_null))
    if probe:
        row = data.select([(pl.col(c) == v).sum().alias(c) for c, v, _ in probe]).collect().row(0, named=True)
        for c, _, non_null in probe:
            cols[c]["_top_share"] = row[c] / max(non_null, 1)


def _target_facts(data: pl.DataFrame, target: str, task: str
                  ) -> tuple[dict[str, Any], list[Finding]]:
    facts: dict[str, Any] = {"column": target, "task": task}
    if target_kind(task) != "categorical":
        return facts, []
    vc = data.get_column(target).drop_nulls().value_counts(sort=True, name="n")
    total = max(int(vc["n"].sum()), 1)
    facts["classes"] = [{"value": json_value(v), "count": int(n), "share": n / total} for v, n in vc.iter_rows()]
    if vc.height < 2:
        return facts, [Finding("class_imbalance", target, "error", vc.height,
                               f"target '{target}' has {vc.height} class; a classifier needs at least 2")]
    ratio = vc["n"][-1] / vc["n"][0]
    facts["imbalance_ratio"] = ratio
    if ratio < 0.1:
        minority = facts["classes"][-1]
        return facts, [Finding("class_imbalance", target, "warning", int(minority["count"]),
                               f"target '{target}': class {minority['value']!r} has {minority['count']} rows "
                               f"({minority['share']:.1%}), {ratio:.1%} of the largest class; prefer f1/pr_auc "
                               f"metrics and class weights", {"ratio": ratio, "minority": minority["value"]})]
    return facts, []


def _labelled_positions(data: pl.LazyFrame, target: str, max_rows: int | None, seed: int) -> pl.Series:
    """Positions of the rows ``find_label_issues`` checks: the labelled ones, a seeded ``max_rows`` of them.

    The same rows and order it would draw from the whole table, found without copying the table.
    """
    labelled = (data.select(target).with_row_index(POS).filter(pl.col(target).is_not_null()).select(POS)
                .collect().get_column(POS))
    if max_rows is not None and labelled.len() > max_rows:
        labelled = labelled.sample(max_rows, seed=seed)
    return labelled


def _label_findings(rows: pl.DataFrame, positions: pl.Series, target: str, features: list[str], cfg: QualityConfig,
                    seed: int) -> tuple[list[dict[str, Any]], list[Finding], dict[str, Any]]:
    """Label issues among ``rows``, the table's rows at ``positions`` (suspects name table positions)."""
    li = cfg.label_issues
    try:
        res = find_label_issues(rows, target, features=features, model=li.model, folds=li.folds, seed=seed,
                                max_rows=li.max_rows, top=li.top)
    except DataError as exc:
        return [], [], {"label_issues_skipped": str(exc)}
    for s in res.suspects:
        s["row"] = int(positions[s["row"]])
    info = {"label_issues_rows": res.checked_rows}
    if not res.total:
        return [], [], info
    share = res.total / res.checked_rows
    overlapping = [c for c in res.per_class if c["share"] > li.overlap_share]
    details = {"share": share, "checked_rows": res.checked_rows, "model": li.model, "per_class": res.per_class,
               "overlapping_classes": [c["label"] for c in overlapping]}
    by_class = "; ".join(f"{c['label']!r}: {c['suspects']} of {c['rows']} ({c['share']:.1%})" for c in res.per_class)
    head = (f"{res.total} of {res.checked_rows} checked rows ({share:.1%}) look mislabelled (out-of-fold model "
            f"disagrees confidently); per class: {by_class}")
    if overlapping:
        f = Finding("label_issues", target, "warning", res.total, f"{head}. " + " ".join(
            f"{c['share']:.0%} of the rows labelled {c['label']!r} look like {c['suggested']!r}: too many to be "
            f"wrong labels (above quality.label_issues.overlap_share = {li.overlap_share:g}), the classes "
            f"overlap and the features cannot tell them apart." for c in overlapping)
            + " Do not drop or relabel these rows, that would delete real cases; add features that separate "
              "the classes", details)
    else:
        f = Finding("label_issues", target, "warning" if share >= 0.01 else "info", res.total,
                    f"{head}; review label_issues, or use clean rule drop_label_issues / relabel_label_issues",
                    details)
    return res.suspects, [f], info


def _shift_findings(shift: dict[str, dict[str, Any]]) -> list[Finding]:
    out = []
    for c, r in shift.items():
        if r["drifted"]:
            test = f"KS {r['ks']:.3f}" if r["ks"] is not None else f"TVD {r['effect']:.3f}"
            p = f", p={r['p_value']:.2g}" if r["p_value"] is not None else ""
            out.append(Finding("split_shift", c, "error" if r["psi"] >= 0.5 else "warning", 1,
                               f"column '{c}' is distributed differently from the reference: PSI {r['psi']:.3f}, "
                               f"{test}{p}", {"psi": r["psi"], "p_value": r["p_value"]}))
    return out


def _external(findings: Sequence[Finding | Mapping[str, Any]]) -> tuple[list[Check], list[Finding]]:
    """Findings from elsewhere (e.g. ``integrate``); source conflicts count against consistency."""
    fs = [f if isinstance(f, Finding) else Finding.from_dict(dict(f)) for f in findings]
    checks = [Check("consistency", f"source_conflict:{f.column}", int(f.details.get("checked", f.count)), f.count)
              for f in fs if f.kind == "source_conflict"]
    return checks, fs


@dataclass
class _Run:
    """What one ``profile`` call accumulates, stage by stage."""

    data: pl.LazyFrame
    height: int
    schema: pl.Schema
    cfg: QualityConfig
    names: list[str]
    declared: dict[str, str]
    cols: dict[str, dict[str, Any]]
    kinds: dict[str, str]
    target: str | None
    id_col: str | None
    checks: list[Check] = field(default_factory=list)
    found: list[Finding] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [c for c in self.names if self.kinds[c] in FEATURE_KINDS and c not in (self.target, self.id_col)]

    def add(self, checks: list[Check], findings: list[Finding]) -> None:
        self.checks += checks
        self.found += findings


def _start(data: pl.LazyFrame, schema: Schema | None, cfg: QualityConfig, keys: Sequence[str] = ()) -> _Run:
    """Column facts (the full-table passes, a batch of columns at a time) and the per-column findings."""
    dtypes = data.collect_schema()
    names, declared = _resolve(dtypes.names(), schema)
    height = int(data.select(pl.len()).collect().item())
    cols: dict[str, dict[str, Any]] = {}
    for batch in column_batches(dtypes, names):
        cols.update(profile_columns(data.select(batch).collect(), declared, cfg.outliers))
    cols = {c: cols[c] for c in names}
    run = _Run(data, height, dtypes, cfg, names, declared, cols,
               {c: declared.get(c) or cols[c]["inferred_kind"] for c in names},
               schema.target if schema and schema.target in cols else None,
               schema.id if schema and schema.id in cols else None)
    _top_shares(data, cols)
    run.add(*_column_findings(cols, cfg, run.target, run.id_col, keys))
    for c in cols.values():
        c.pop("_top_share", None)
        c.pop("_variants", None)
    return run


def _table_checks(run: _Run, findings: Sequence[Finding | Mapping[str, Any]], distinct_rows: bool = False) -> None:
    """Duplicates (none when the caller knows ``distinct_rows``), declared rules, cross-column checks, key
    agreement and external findings."""
    data, cfg = run.data, run.cfg
    n_dup = duplicate_rows(data.select(run.names)) if run.height >= 2 and not distinct_rows else 0
    share = n_dup / run.height if run.height else 0.0
    run.extra["duplicates"] = {"rows": n_dup, "share": share}
    if n_dup:
        run.found.append(Finding("duplicate_rows", None, share_severity(share, 0.01, 0.2), n_dup,
                                 f"{n_dup} rows ({share:.1%}) repeat an earlier row exactly (clean rule "
                                 f"drop_duplicates)", {"share": share}))
    run.add(*rule_checks(data, cfg.rules, {c: run.kinds[c] for c in run.declared}))
    run.add(*cross_checks(data, cfg.checks))
    keys = cfg.keys or ([run.id_col] if run.id_col else [])
    if len(keys) == 1 and _distinct_key(run.cols.get(keys[0])):
        # a key column whose present values are all distinct (its facts say so): no row repeats a key,
        # which is what key_checks' search would find, at the cost of a pass over the column
        present = run.height - run.cols[keys[0]]["missing"]
        run.add([Check("consistency", f"key_agreement:{keys[0]}", present, 0)], [])
    elif keys:
        run.add(*key_checks(data, keys, "quality.keys"))
    run.add(*_external(findings))


def _distinct_key(facts: Mapping[str, Any] | None) -> bool:
    """Whether a column's facts show every present value distinct (an exact distinct count)."""
    return facts is not None and "distinct" in facts and facts["distinct"] == facts["rows"] - facts["missing"]


def _sampled_checks(run: _Run, task: str | None, seed: int) -> None:
    """Correlations, target facts, leakage and label issues: on a seeded sample of rows.

    The sample and the label-issue rows are read in one pass, and the sample is let go before the
    label-issue model starts (the model's feature matrix and LightGBM's binned copy of it are the
    step's largest allocations; LightGBM is driven through its C API, so pandas, SciPy and scikit-learn
    are not imported).
    """
    data, cfg, target = run.data, run.cfg, run.target
    facts: dict[str, Any] = {}
    target_findings: list[Finding] = []
    kind = None
    if target is not None:
        task = task or infer_task(run.schema[target], run.kinds[target], run.cols[target].get("distinct", 0))
        facts, target_findings = _target_facts(data.select(target).collect(), target, task)
        kind = target_kind(task)
    li = cfg.label_issues
    labelled = (_labelled_positions(data, target, li.max_rows, seed)
                if target is not None and kind == "categorical" and li.enabled and run.height >= 50
                and len(facts.get("classes", [])) >= 2 else None)
    sample, label_rows = _sample(run, run.features + ([target] if target else []), cfg.sample_rows, seed, labelled)
    run.extra["sampled"] = {"rows": sample.height, "of": run.height}
    numeric = [c for c in run.features if is_numeric(run.schema[c]) and run.kinds[c] == "numeric"]
    run.extra["correlations"] = correlated_pairs(sample, numeric, cfg.correlation_threshold)
    for p in run.extra["correlations"]:
        run.found.append(Finding("correlated_features", p["a"], "info", 1,
                                 f"columns '{p['a']}' and '{p['b']}' are correlated (r = {p['r']:.3f}); one may "
                                 f"be redundant", {"other": p["b"], "r": p["r"]}))
    if target is None:
        return
    run.extra["target"] = facts
    run.found += [_spelt_class(f, run.found) for f in target_findings]
    if cfg.leakage.enabled and kind is not None:
        run.extra["leakage"], fs = leakage_scores(sample, target, run.features, kind, cfg.leakage, seed)
        run.found += fs
    del sample
    if labelled is not None and label_rows is not None:
        leaks = {f.column for f in run.found if f.kind == "target_leakage" and f.severity == "error"}
        suspects, fs, info = _label_findings(label_rows, labelled, target,
                                             [c for c in run.features if c not in leaks], cfg, seed)
        run.extra["label_issues"] = suspects
        run.found += fs
        run.extra["sampled"].update(info)


def _sample(run: _Run, columns: list[str], rows: int, seed: int, labelled: pl.Series | None = None
            ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """``columns`` of ``rows`` seeded rows of the table (all when it has fewer: ``DataFrame.sample``'s rows
    and order), and of the rows at the positions ``labelled`` (with ``_row_id`` when the table has it),
    read in one pass. Only the columns the sampled checks use are read (features and target)."""
    extra = [ROW_ID] if labelled is not None and ROW_ID in run.schema else []
    data = run.data.select(columns + extra)
    if run.height <= rows:
        table = data.collect()
        return table.select(columns), (table[labelled] if labelled is not None else None)
    picked = pl.int_range(0, run.height, eager=True).sample(rows, seed=seed)
    if labelled is None:
        return take_rows(data, picked), None
    wanted = pl.concat([picked, labelled.cast(picked.dtype)]).unique().sort()
    table = take_rows(data, wanted)
    return table[wanted.search_sorted(picked)].select(columns), table[wanted.search_sorted(labelled)]


def _shift(run: _Run, reference: Any, seed: int) -> None:
    s = run.cfg.shift
    cols = {c: run.kinds[c] for c in run.features + ([run.target] if run.target else [])}
    reference = to_polars(reference, "reference")
    of = reference.height
    current = _at_most(run.data.select(list(cols)).collect(), s.max_rows, seed)
    reference = _at_most(reference, s.max_rows, seed + 1)
    run.extra["sampled"]["shift"] = {"reference": {"rows": reference.height, "of": of},
                                     "current": {"rows": current.height, "of": run.height}}
    run.extra["shift"] = compare_distributions(reference, current, cols, s.bins, psi_threshold=s.psi_threshold,
                                               p_threshold=s.p_threshold, effect_threshold=s.effect_threshold,
                                               seed=seed)
    run.found += _shift_findings(run.extra["shift"])


def _at_most(frame: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    """``frame``, or a seeded uniform sample of ``rows`` of its rows (in table order) when it has more."""
    return frame if frame.height <= rows else frame.with_row_index(POS).sample(rows, seed=seed).sort(POS).drop(POS)


def profile(df: Any, schema: Schema | None = None, config: QualityConfig | Mapping[str, Any] | None = None, *,
            reference: Any = None, task: str | None = None,
            findings: Sequence[Finding | Mapping[str, Any]] = (), seed: int = 0,
            keys: Sequence[str] = (), distinct_rows: bool = False) -> QualityReport:
    """Profile ``df`` (pandas, Polars eager or lazy, or a Parquet path) against ``schema`` and ``quality:``.

    ``reference`` (e.g. the train split when ``df`` is the test split) adds per-feature shift;
    ``task`` defaults to one inferred from the target; ``findings`` from ``integrate`` are merged;
    ``keys``: declared id/key columns, not flagged for their many distinct values; ``distinct_rows``: the
    caller knows that no two rows are equal (ingest found no repeated row hash), so duplicates are not searched.
    Without a schema, every non-internal column is profiled and kinds are inferred.
    """
    started = time.perf_counter()
    cfg = parse_section(QualityConfig, config, "quality")
    run = _start(to_lazy(df), schema, cfg, keys)
    _table_checks(run, findings, distinct_rows)
    _sampled_checks(run, task, seed)
    if reference is not None:
        _shift(run, reference, seed)
    run.found.sort(key=lambda f: (-severity_rank(f.severity), _kind_order(f.kind), f.column or ""))
    scores = compute_scores(run.checks, dict(cfg.weights))
    failed = evaluate_gate(cfg.gate, scores, run.found, run.cols, run.extra["duplicates"]["share"])
    return QualityReport(
        rows=run.height, columns_count=len(run.names), scores=scores,
        gate={"passed": not failed, "failed": failed}, columns=run.cols, findings=run.found,
        checks=[{"dimension": c.dimension, "name": c.name, "checked": c.checked, "failed": c.failed,
                 "pass_rate": c.pass_rate} for c in run.checks],
        duration_s=round(time.perf_counter() - started, 3), **run.extra)


def _kind_order(kind: str) -> int:
    return FINDING_KINDS.index(kind) if kind in FINDING_KINDS else len(FINDING_KINDS)
