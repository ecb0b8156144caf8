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


def _ask(url: str, key: str | None, route: str = "chat", question: str = QUESTION[0]["content"]) -> None:
    """One greedy answer to ``question`` over ``route`` (chat: /v1/chat/completions; predict: /v1/predict)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if route == "chat":
        body: dict = {"model": "helpdesk", "temperature": 0, "max_tokens": 2,
                      "messages": [{"role": "user", "content": question}]}
        r = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=60, json=body)
    else:
        r = httpx.post(f"{url}/v1/predict", headers=headers, timeout=60, json={"records": [{"prompt": question}]})
    assert r.status_code == 200, r.text


def _project(trained, **serve) -> Workspace:
    raw = {"name": "helpdesk", "task": "text_generation", "data": {"source": "qa.jsonl", "target": "completion"},
           "serve": {"reload_poll_seconds": 0, **serve}}  # the served model reads the project's serve: section
    return Workspace(parse_config(raw, root=trained.root))


@pytest.mark.parametrize("route", ["chat", "predict"])
@pytest.mark.parametrize("scope", ["key", None, "shared"])
def test_a_served_prompt_prefix_serves_only_its_own_api_key(trained, scope, route):
    app = create_app(_project(trained, **({"prefix_cache_scope": scope} if scope else {})),
                     api_keys=["key-a", "key-b"])
    with running(app) as url:
        cache = app.state.serving.runtime.engine.decoder.prefix_cache
        hits = [cache.hits]
        for key in ("key-a", "key-b", "key-a", "key-b"):
            _ask(url, key, route)
            hits.append(cache.hits)
        assert cache.lookups == 4  # /v1/predict reaches the cache as the OpenAI routes do
    if scope == "shared":  # key-b's first request is served by key-a's prompt
        assert hits == [0, 0, 1, 2, 3]
    else:  # the default is "key": key-b's first request finds nothing; each key's second finds its own
        assert hits == [0, 0, 0, 1, 2]


def test_predict_and_the_openai_routes_share_a_keys_prefixes_and_requests_without_keys_share_one_salt(trained):
    """No keys configured (scope "key", the default): every request has the shared salt, so /v1/predict
    finds what a chat completion stored and a repeated /v1/predict prompt finds its own; with keys, a key's
    chat completion primes that key's /v1/predict only."""
    app = create_app(_project(trained), api_keys=[])
    with running(app) as url:
        cache = app.state.serving.runtime.engine.decoder.prefix_cache
        _ask(url, None, "chat")
        _ask(url, None, "predict")  # the same prompt tokens (the chat template): found, stored by the chat request
        _ask(url, None, "predict", "Can I cancel my order?")  # the tiny template has no system turn: not found
        _ask(url, None, "predict", "Can I cancel my order?")
        assert (cache.lookups, cache.hits) == (4, 2)
    app = create_app(_project(trained), api_keys=["key-a", "key-b"])
    with running(app) as url:
        cache = app.state.serving.runtime.engine.decoder.prefix_cache
        _ask(url, "key-a", "chat")
        _ask(url, "key-b", "predict")
        _ask(url, "key-a", "predict")
        assert (cache.lookups, cache.hits) == (3, 1)


def test_the_response_cache_answers_a_key_only_with_its_own_answers(trained):
    """``serve.cache_size`` keeps /v1/predict's answers: under scope "key" one key's cached answer (which
    comes back faster) never answers another key's request, which reaches the model instead."""
    app = create_app(_project(trained, cache_size=8), api_keys=["key-a", "key-b"])
    with running(app) as url:
        cache = app.state.serving.runtime.engine.decoder.prefix_cache
        lookups = []
        for key in ("key-a", "key-a", "key-b", "key-b"):
            _ask(url, key, "predict")
            lookups.append(cache.lookups)
    assert lookups == [1, 1, 2, 2]  # each key's second request: its own cached answer


def test_a_bad_scope_names_the_key_and_the_allowed_values(tmp_path):
    raw = {"name": "x", "task": "text_generation", "data": {"source": "qa.jsonl", "target": "completion"},
           "serve": {"prefix_cache_scope": "tenant"}}
    with pytest.raises(ConfigError, match=r"serve\.prefix_cache_scope(.|\n)*'key' or 'shared'"):
        parse_config(raw, root=tmp_path)
