"""``serve.prefix_cache_scope``: a cached prompt prefix answers faster, so under ``key`` (the default) it
serves only requests made with the API key whose request stored it (the cache salted by a hash of the key,
as vLLM's ``cache_salt``); ``shared`` lets every request find it. Read from the cache's hit counter, not
from timing."""

from __future__ import annotations

import httpx
import pytest
import torch
from servers import running

from modelloop.config import parse_config
from modelloop.errors import ConfigError
from modelloop.families.generative.prefix_cache import PrefixCache, key_salt
from modelloop.serving import create_app
from modelloop.workspace import Workspace

QUESTION = [{"role": "user", "content": "How do I return an item?"}]


def _kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    t = torch.arange(n, dtype=torch.float32).reshape(1, 1, n, 1)
    return [(t, t.clone())]


def test_a_prefix_stored_under_one_salt_is_found_only_under_it():
    cache = PrefixCache(1 << 20, min_tokens=2)
    a, b = key_salt("key-a"), key_salt("key-b")
    assert a and b and a != b and "key-a" not in a and key_salt(None) == key_salt("") == ""
    assert cache.insert([1, 2, 3, 4], _kv(4), a)
    assert cache.lookup([1, 2, 3, 4, 5], b) is None and cache.lookup([1, 2, 3, 4, 5]) is None
    assert cache.lookup([1, 2, 3, 4, 5], a).tokens == 4
    assert cache.insert([1, 2, 3], _kv(3), b)  # another salt: not covered by a's longer prompt
    assert cache.insert([1, 2, 3, 4, 5], _kv(5), a)  # covers a's [1, 2, 3, 4] only
    assert sorted(cache.entries) == sorted([(a, (1, 2, 3, 4, 5)), (b, (1, 2, 3))])


def _ask(url: str, key: str) -> None:
    r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                   json={"model": "helpdesk", "temperature": 0, "max_tokens": 2, "messages": QUESTION})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("scope", ["key", None, "shared"])
def test_a_served_prompt_prefix_serves_only_its_own_api_key(trained, scope):
    serve = {"reload_poll_seconds": 0, **({"prefix_cache_scope": scope} if scope else {})}
    raw = {"name": "helpdesk", "task": "text_generation", "data": {"source": "qa.jsonl", "target": "completion"},
           "serve": serve}  # the served model reads the project's serve: section
    app = create_app(Workspace(parse_config(raw, root=trained.root)), api_keys=["key-a", "key-b"])
    with running(app) as url:
        cache = app.state.serving.runtime.engine.decoder.prefix_cache
        hits = [cache.hits]
        for key in ("key-a", "key-b", "key-a", "key-b"):
            _ask(url, key)
            hits.append(cache.hits)
        lookups, entries = cache.lookups, len(cache.entries)
        r = httpx.post(f"{url}/v1/predict", headers={"Authorization": "Bearer key-a"}, timeout=60,
                       json={"records": [{"prompt": "Can I cancel my order?"}]})
        assert r.status_code == 200, r.text
        # /v1/predict's scorer has no key: under "key" it neither reads nor fills the cache
        assert (cache.lookups - lookups, len(cache.entries) - entries) == ((1, 1) if scope == "shared" else (0, 0))
    if scope == "shared":  # key-b's first request is served by key-a's prompt
        assert hits == [0, 0, 1, 2, 3]
    else:  # the default is "key": key-b's first request finds nothing; each key's second finds its own
        assert hits == [0, 0, 0, 1, 2]


def test_a_bad_scope_names_the_key_and_the_allowed_values(tmp_path):
    raw = {"name": "x", "task": "text_generation", "data": {"source": "qa.jsonl", "target": "completion"},
           "serve": {"prefix_cache_scope": "tenant"}}
    with pytest.raises(ConfigError, match=r"serve\.prefix_cache_scope(.|\n)*'key' or 'shared'"):
        parse_config(raw, root=tmp_path)
