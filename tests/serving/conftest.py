"""A tiny trained project shared by the serving tests (``toy``), built once per session.

``toy`` v1 comes from ``Project.train`` (the search and its ensemble) and is production; v2 is a
linear model registered directly (same schema, other predictions) for hot-swap tests. The table and
the :class:`Toy` handle live in ``tests/toy.py``, the servers in ``tests/servers.py``.
"""

from __future__ import annotations


import numpy as np
import pytest
from toy import RAW_CONFIG, Toy, make_table, register_linear


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    from modelloop.config import parse_config
    from modelloop.project import Project

    root = tmp_path_factory.mktemp("toy")
    df = make_table()
    df.to_csv(root / "data.csv", index=False)
    project = Project(parse_config(RAW_CONFIG, root=root))
    project.ingest()
    result = project.train(budget=10, trials=4)
    assert result["model"]["version"] == 1 and result["production"]
    assert register_linear(project.workspace) == 2
    records = []
    for rec in df.drop(columns=["y"]).head(50).to_dict(orient="records"):
        records.append({k: (None if isinstance(v, float) and np.isnan(v) else
                            v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()})
    return Toy(root=root, ws=project.workspace, raw=RAW_CONFIG, records=records)
