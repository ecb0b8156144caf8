"""The profile's interaction checks on a version: repeated pairs, ids seen once, ratings off the scale,
the popularity skew; each a finding the quality gate can act on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelloop.config import parse_config
from modelloop.data.quality_config import FINDING_KINDS


def test_the_profile_lists_the_interaction_findings(tmp_path):
    from modelloop.data.stages import profile_dataset
    from modelloop.project import Project

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"user": rng.integers(0, 40, n), "item": rng.zipf(1.6, n) % 60,
                       "stars": rng.integers(1, 6, n).astype(float)})
    df.loc[[30, 70], "stars"] = [50.0, -4.0]                        # off the 1-5 scale
    df = pd.concat([df, df.iloc[:5], pd.DataFrame({"user": [999], "item": [998], "stars": [3.0]})])
    df.to_csv(tmp_path / "r.csv", index=False)
    project = Project(parse_config({"name": "q", "task": "recommendation", "data": {
        "source": "r.csv", "user": "user", "item": "item", "rating": "stars"}}, root=tmp_path))
    project.ingest()
    findings = {f["kind"]: f for f in profile_dataset(project.workspace, write=False)["findings"]}
    assert findings["duplicate_interactions"]["count"] >= 5
    assert findings["rating_outliers"]["count"] == 2 and findings["rating_outliers"]["details"]["scale"] == [1.0, 5.0]
    assert findings["single_interaction_users"]["count"] >= 1  # user 999
    skew = findings["popularity_skew"]
    assert skew["details"]["top_share"] > 0.5 and skew["severity"] == "warning"  # a Zipf catalog
    assert {"duplicate_interactions", "rating_outliers", "popularity_skew"} <= set(FINDING_KINDS)


def test_declared_id_columns_are_not_flagged_for_many_values_and_others_still_are(tmp_path):
    """data.user and data.item (and data.id, data.keys) are ids: their many distinct values are no
    high_cardinality finding; an undeclared categorical column with as many values still is one."""
    from modelloop.data.stages import profile_dataset
    from modelloop.project import Project

    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({"user": rng.integers(0, 80, n), "item": rng.integers(0, 60, n)})
    df["shop"] = "s" + df["item"].astype(str)  # one value per item: an attribute with 60 values
    df.to_csv(tmp_path / "r.csv", index=False)
    project = Project(parse_config({"name": "q", "task": "recommendation", "quality": {"high_cardinality": 20},
                                    "data": {"source": "r.csv", "user": "user", "item": "item",
                                             "columns": {"shop": "categorical"}}}, root=tmp_path))
    project.ingest()
    report = profile_dataset(project.workspace, write=False)
    flagged = {f["column"] for f in report["findings"] if f["kind"] == "high_cardinality"}
    assert flagged == {"shop"}
    assert report["columns"]["user"]["distinct"] > 20 and report["columns"]["item"]["distinct"] > 20
