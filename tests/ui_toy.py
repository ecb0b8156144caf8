"""The small projects the dashboard tests (tests/ui/) share; fixtures in tests/ui/conftest.py.

``trained_project``: the toy table of ``tests/toy.py`` (fewer rows), ingested and profiled, trained twice
with one trial so the Models page has two versions to promote and roll back between, and two logged
predictions (one with feedback) for the Trace page. ``xss_project``: ingested only, one column named
``<script>alert(1)</script>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toy import RAW_CONFIG, make_table

REQUEST_WITH_FEEDBACK, REQUEST_WITHOUT = "req-ui-1", "req-ui-2"
XSS = "<script>alert(1)</script>"
KEY = "ui-test-key-0123456789"


def trained_config() -> dict[str, Any]:
    """The raw config of ``trained_project`` (what its ``modelloop.yaml`` would hold)."""
    return {**RAW_CONFIG, "train": {"cv_folds": 2, "ensemble_size": 2}}


def write_config(project: Any) -> Path:
    """The trained project's ``modelloop.yaml``, for tests that run the ``modelloop`` command in its folder."""
    import yaml

    root = project.config.root
    (root / "modelloop.yaml").write_text(yaml.safe_dump(trained_config()), encoding="utf-8")
    return root


def trained_project(root: Path) -> Any:
    from modelloop.catalog import utcnow
    from modelloop.config import parse_config
    from modelloop.project import Project

    make_table(n=200).to_csv(root / "data.csv", index=False)
    project = Project(parse_config(trained_config(), root=root))
    project.ingest()
    project.profile()
    project.train(budget=5, trials=1)
    project.train(budget=5, trials=1)
    cat = project.workspace.catalog
    version = cat.get_alias("toy", "production")
    cat.add_predictions([{"request_id": rid, "name": "toy", "version": version, "at": utcnow(),
                          "inputs": {"amount": 10.0}, "output": {"prediction": 1}, "latency_ms": 1.0}
                         for rid in (REQUEST_WITH_FEEDBACK, REQUEST_WITHOUT)])
    cat.add_feedback(REQUEST_WITH_FEEDBACK, 1, source="file")
    # a retrain decision as feedback/retrain.py records one (a real retrain needs hundreds of labels)
    cat.add_decision(name="toy", trigger=[{"kind": "drift", "feature": XSS}], dataset_id=None,
                     champion={"version": version}, challenger={"version": None}, promoted=False,
                     reason=f"challenger not better on {XSS}")
    return project


def xss_project(root: Path) -> Any:
    from modelloop.config import parse_config
    from modelloop.project import Project

    df = make_table(n=60)[["tid", "amount", "y"]].rename(columns={"amount": XSS})
    df.to_csv(root / "data.csv", index=False)
    project = Project(parse_config(RAW_CONFIG, root=root))
    project.ingest()
    return project


def wait_http(url: str, proc: Any = None, timeout: float = 30.0) -> Any:
    """The first answer of a server that is starting (its process's stderr when it exits instead)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"modelloop ui exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")
