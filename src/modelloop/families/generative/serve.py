"""The generative family's served object: ``/v1/predict`` answers each record's prompt greedily (as
evaluation did), and the OpenAI-compatible routes (``serving/openai.py``) decode through
:class:`Engine`.

Concurrency: requests that decode at the same time share one forward pass per token (continuous
batching, ``batching.py``: a request joins the running batch after its prefill and leaves it when it ends,
at most ``MAX_BATCH`` at once). A stream whose client went away stops, and frees its slot, at its next token.
A prompt that starts with tokens an earlier prompt computed (the chat template's system turn, a
conversation's earlier turns) reuses their keys and values (``prefix_cache.py``, at most
``PREFIX_CACHE_MB`` per served model, least recently used first out). With ``serve.prefix_cache_scope:
key`` (the default) a request's prompt finds only prefixes stored by requests with the same API key (the
cache salted by a hash of the key), so a faster answer tells no client how another client's prompt
began; requests without a key (or with no keys configured) share one salt. ``/v1/predict`` is salted as
the OpenAI routes are: the server asks the runtime for the one answering the request's key
(``Runtime.for_key``), a copy whose scorer carries that key. ``shared``: every request finds every prefix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ...serving.config import ServeConfig, serve_config
from ...serving.runtime import Runtime, Scorer, native_model, table_columns
from .batching import BatchDecoder
from .data import ROLES, as_messages, prompt_text
from .generate import Step, end_ids
from .prefix_cache import PrefixCache, key_salt

__all__ = ["MAX_BATCH", "PREFIX_CACHE_MB", "Engine", "generative_runtime"]

MAX_BATCH = 16  # sequences one decoding step serves; further requests wait for a slot
# the prefix cache's bound per served model (``serve.prefix_cache_mb``): SmolLM2-135M's keys and values take
# 46 KB per token, so ~1,400 prompt tokens (a 1B Llama's 32 KB-128 KB per token: 500-2,000)
PREFIX_CACHE_MB = float(ServeConfig.model_fields["prefix_cache_mb"].default)
PREFIX_CACHE_SCOPE = str(ServeConfig.model_fields["prefix_cache_scope"].default)


class Engine:
    """Prompts to token ids and decoding for the OpenAI routes, within the model's context."""

    def __init__(self, model: Any, *, max_batch: int = MAX_BATCH, prefix_cache_mb: float = PREFIX_CACHE_MB,
                 prefix_cache_scope: str = PREFIX_CACHE_SCOPE):
        """``prefix_cache_mb``: the bound of the prefix cache's keys and values (0: no prefix cache);
        ``prefix_cache_scope``: ``key`` (a request finds the prefixes of its own API key) or ``shared``."""
        if prefix_cache_scope not in ("key", "shared"):
            raise ValueError(f"prefix_cache_scope must be 'key' or 'shared', got {prefix_cache_scope!r}")
        self.model, self.scope = model, prefix_cache_scope
        net = model.network()
        self.context = int(getattr(net.config, "max_position_embeddings", model.context_))
        self.roles = ROLES
        ends = end_ids(model.tokenizer, net)
        # a label model answers within its labels here too, as ``modelloop predict`` does (``model.choices``)
        self.choices = model.choice_trie(ends)
        if prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0 (0: off), got {prefix_cache_mb}")
        prefixes = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        self.decoder = BatchDecoder(net, model.tokenizer, ends, max_batch=max_batch, prefix_cache=prefixes)

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Chat messages through the tokenizer's template, the assistant's turn opened."""
        tok = self.model.tokenizer
        return list(tok(prompt_text(tok, as_messages(messages)), add_special_tokens=False)["input_ids"])

    def text_ids(self, prompt: str) -> list[int]:
        tok = self.model.tokenizer
        ids = list(tok(prompt, add_special_tokens=False)["input_ids"])
        return ids or [int(tok.bos_token_id or tok.eos_token_id)]

    def stream(self, prompt_ids: Sequence[int], *, max_tokens: int, temperature: float, top_p: float,
               seed: int | None, stop: Sequence[str], should_stop: Any = None,
               api_key: str | None = None) -> Iterator[Step]:
        """Decoding steps of one request, decoded together with the others running (``batching.py``);
        ``api_key``: the request's key (None: it came without one), its prefix cache salt under scope
        ``key``."""
        return self.decoder.stream(prompt_ids, max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                   seed=seed, stop=stop, should_stop=should_stop, choices=self.choices,
                                   cache_salt=self.cache_salt(api_key))

    def cache_salt(self, api_key: str | None) -> str:
        """The prefix cache salt of a request with this key: its hash under scope ``key``, else the
        shared ``""``."""
        return key_salt(api_key) if self.scope == "key" else ""


def generative_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None, threads: int) -> Runtime:
    """The served object of a generative model version (the fine-tuned network, adapters merged), its engine
    set by ``serve_config(ws.config)`` (the server's settings: ``load_runtime(serve=...)``)."""
    native = native_model(ws, row)
    settings = serve_config(ws.config)
    engine = Engine(native, prefix_cache_mb=settings.prefix_cache_mb,
                    prefix_cache_scope=settings.prefix_cache_scope)

    def scorer(api_key: str | None) -> Scorer:
        """/v1/predict's answers to requests made with ``api_key``: greedy, as evaluation's."""
        def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
            answers = []
            for record in records:
                answers.append("".join(s.delta for s in engine.stream(
                    native.prompt_ids(record), max_tokens=native.max_new_tokens, temperature=0.0, top_p=1.0,
                    seed=None, stop=(), api_key=api_key)))
            return np.asarray(answers, dtype=object), None

        return score

    # one runtime per prefix cache salt (the requests without a key, and every request under scope "shared":
    # the runtime itself), kept while it serves: a key's requests still batch together
    keyed: dict[str, Runtime] = {}

    def by_key(rt: Runtime, api_key: str | None) -> Runtime:
        salt = engine.cache_salt(api_key)
        if not salt:
            return base
        if salt not in keyed:
            keyed[salt] = base.keyed(salt, scorer(api_key))
        return keyed[salt]

    extra = {"generation": {"shape": native.shape_.to_dict(), "method": native.method_,
                            "backbone": native.backbone_, "context": engine.context,
                            "max_new_tokens": native.max_new_tokens,
                            "choices": getattr(native, "choices_", None)}}
    base = Runtime(row, native=native, plan=plan, table=table_columns(ws, row),
                   reason=f"generative model served by {'ONNX Runtime' if native.graph_source() is not None else 'PyTorch'} "
                          "with a KV cache", scorer=scorer(None), variant="native",
                   extra=extra, by_key=by_key)
    base.engine = engine  # type: ignore[attr-defined]  # the OpenAI routes decode through it
    return base
