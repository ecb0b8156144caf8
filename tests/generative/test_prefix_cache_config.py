"""``serve.prefix_cache_mb`` sizes the served generative model's prefix cache, 0 turns it off, and a bad
value is a config error naming the key."""

from __future__ import annotations

import pytest
from servers import running

from modelloop.config import parse_config
from modelloop.errors import ConfigError
from modelloop.families.generative.serve import PREFIX_CACHE_MB
from modelloop.serving import create_app
from modelloop.serving.config import ServeConfig
from modelloop.serving.runtime import load_runtime
from modelloop.workspace import Workspace


def _workspace(trained, **serve) -> Workspace:
    raw = {"name": "helpdesk", "task": "text_generation", "data": {"source": "qa.jsonl", "target": "completion"},
           "serve": serve}
    return Workspace(parse_config(raw, root=trained.root))


def _runtime(trained, **serve):
    return load_runtime(_workspace(trained, **serve), "helpdesk:1")


def test_the_served_model_keeps_prefixes_within_the_configured_bound(trained):
    default = _runtime(trained).engine.decoder.prefix_cache
    assert default is not None and default.max_bytes == int(PREFIX_CACHE_MB * 2**20) == 64 * 2**20
    assert _runtime(trained, prefix_cache_mb=0.5).engine.decoder.prefix_cache.max_bytes == 2**19
    assert _runtime(trained, prefix_cache_mb=0).engine.decoder.prefix_cache is None


def test_the_serve_config_given_to_create_app_sets_the_engine_over_the_projects(trained):
    """``create_app(config=...)`` is the server's settings: the engine's prefix cache follows it, not the
    project's ``serve:`` section (which stays the fallback: the test above and test_prefix_cache_scope.py)."""
    ws = _workspace(trained, prefix_cache_mb=8, prefix_cache_scope="key")
    app = create_app(ws, config=ServeConfig(reload_poll_seconds=0, prefix_cache_mb=0.5, prefix_cache_scope="shared"))
    with running(app):
        engine = app.state.serving.runtime.engine
        assert (engine.decoder.prefix_cache.max_bytes, engine.scope) == (2**19, "shared")
    assert ws.config.serve.prefix_cache_mb == 8  # the project's config is left as it was
    off = load_runtime(ws, "helpdesk:1", serve=ServeConfig(prefix_cache_mb=0)).engine
    assert off.decoder.prefix_cache is None


@pytest.mark.parametrize("value", [-1, "lots"])
def test_a_bad_bound_names_the_key(tmp_path, value):
    raw = {"name": "x", "task": "text_generation", "data": {"source": "qa.jsonl", "target": "completion"},
           "serve": {"prefix_cache_mb": value}}
    with pytest.raises(ConfigError, match=r"serve\.prefix_cache_mb"):
        parse_config(raw, root=tmp_path)
