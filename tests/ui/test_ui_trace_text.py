"""The Trace page shows a logged request's inputs and answer as JSON a person reads: a Chinese model's
output read {"label": "\\u7269\\u6d41\\u67e5\\u8be2", ...} (Jinja's tojson escapes every non-ASCII character,
and ' < > & as \\u0027 ...)."""

from __future__ import annotations

from pathlib import Path

import ui_toy


def test_trace_shows_chinese_inputs_and_labels_as_written(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from modelloop.catalog import utcnow
    from modelloop.dashboard import create_app

    project = ui_toy.trained_project(tmp_path)
    cat = project.workspace.catalog
    version = cat.get_alias("toy", "production")
    cat.add_predictions([{"request_id": "req-zh", "name": "toy", "version": version, "at": utcnow(),
                          "inputs": {"评论": "物流很快, it's <fine>"},
                          "output": {"label": "物流查询", "probabilities": {"物流查询": 0.9}}, "latency_ms": 1.0}])
    cat.add_feedback("req-zh", "物流查询", source="file")
    with TestClient(create_app(project, keys=[])) as c:
        page = c.get("/trace", params={"request_id": "req-zh"}).text
    assert "\\u" not in page
    assert "{&#34;评论&#34;: &#34;物流很快, it&#39;s &lt;fine&gt;&#34;}" in page   # escaped for HTML, and only so
    assert "&#34;label&#34;: &#34;物流查询&#34;" in page and "<code>&#34;物流查询&#34;</code>" in page
