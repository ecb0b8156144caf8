"""Chinese and Japanese names on the HTML pages' charts are text the browser draws, without a warning per
character on the terminal: matplotlib's font has no CJK glyphs."""

from __future__ import annotations

import re
import warnings

import numpy as np

from modelloop.evaluation import render_report
from modelloop.feedback.report import render_monitor


def _texts(page: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", page)


def test_the_monitor_drift_chart_writes_a_chinese_feature_name_as_text():
    # it drew the chart with pyplot's default svg.fonttype 'path': 评论:chars came out as empty boxes
    feats = {name: {"method": "psi+ks", "psi": psi, "ks": 0.1, "p_value": 0.5, "drifted": psi > 0.2,
                    "threshold": 0.2} for name, psi in (("评论:chars", 0.3), ("レビュー:words", 0.01))}
    report = {"model": {"name": "情感", "version": 1}, "alerts": [], "metrics": {},
              "window": {"predictions": 10, "labeled": 0, "from": None, "to": None},
              "drift": {"features": feats}}
    with warnings.catch_warnings(record=True) as seen:  # "Glyph 35780 missing from font(s) DejaVu Sans",
        page = render_monitor(report)                       # printed per glyph
    assert not [w for w in seen if "Glyph" in str(w.message)]
    assert {"评论:chars", "レビュー:words"} <= set(_texts(page))


def test_the_evaluation_report_draws_chinese_classes_without_a_warning_per_glyph():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    from modelloop.evaluation import evaluate_predictions

    ev = evaluate_predictions("binary", y, np.c_[1 - p1, p1], classes=["负面", "正面"])
    with warnings.catch_warnings(record=True) as seen:
        page = render_report(ev, title="情感", task="binary", classes=["负面", "正面"], y_true=y,
                             output=np.c_[1 - p1, p1])
    assert not [w for w in seen if "Glyph" in str(w.message)]
    assert {"负面", "正面"} <= set(_texts(page))
