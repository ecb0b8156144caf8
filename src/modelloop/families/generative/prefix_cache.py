"""Automatic prefix caching for the serving engine: the KV cache of a prompt's tokens, kept after its
prefill, so a later prompt that starts with the same tokens (every chat request starts with the chat
template's system turn; a conversation's next turn with the whole previous one) prefills only the tokens
after them.

Keyed by token ids, not text. A prompt's keys and values at position ``i`` depend only on its tokens
``0..i`` (causal attention), so the first ``n`` positions of any stored prompt's cache serve every later
prompt whose first ``n`` tokens are the same: :meth:`PrefixCache.lookup` returns the stored prompt that
shares the longest run of leading tokens with the new one (at most all but its last token, whose logits
the prefill must compute). Entries are whole prompts (copies of their rows of the prefill's cache, so a
batch's arrays are never kept alive); one that is a prefix of a newer one is replaced by it, and the least
recently used ones leave while the entries exceed ``max_bytes``. It belongs to one decoding thread
(``batching.py``): no locking.

Per client (``serve.prefix_cache_scope: key``, vLLM's ``cache_salt``): a cached prefix answers faster,
so a client that finds one learns that another prompt began the same way. Every entry carries a salt, and
a lookup finds only entries of its own salt: the OpenAI routes salt a request by :func:`key_salt` of its
API key, so one key's prompts never serve another's (nor the shared salt ``""``). The salt is a hash of
the key, never the key itself.

Exactness: the reused keys and values are the ones the prompt that stored them computed; in fp32 they equal
a fresh prefill's to the last bits of the arithmetic (a shorter matrix product), so greedy answers with and
without the cache agree (the tests check it on the PyTorch network and on the fused and traced ONNX
graphs). A dynamic-int8 network quantizes each call's activations with one scale per tensor, so its keys
already depend on what else was in the call (a batch's other prompts); a cached prefix is one more such
difference, not an exact replay.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MIN_TOKENS", "PrefixCache", "common_prefix", "key_salt"]

MIN_TOKENS = 8  # a shorter shared prefix is not worth a prompt's own prefill call (see batching._prefill)


@dataclass
class Hit:
    """A stored prompt usable for a new one: its first ``tokens`` positions' per-layer (keys, values),
    each (1, kv_heads, tokens, head_dim)."""

    tokens: int
    layers: list[tuple[Any, Any]]


class PrefixCache:
    """Per-layer keys and values of recent prompts, looked up by their leading tokens (module docstring)."""

    def __init__(self, max_bytes: int, *, min_tokens: int = MIN_TOKENS):
        if max_bytes < 0:
            raise ValueError(f"prefix cache: max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes, self.min_tokens = int(max_bytes), max(1, int(min_tokens))
        # (salt, prompt tokens) -> per-layer (keys, values); oldest first
        self.entries: OrderedDict[tuple[str, tuple[int, ...]], list[tuple[Any, Any]]] = OrderedDict()
        self.bytes = 0
        self.lookups = 0
        self.hits = 0
        self.reused_tokens = 0  # prompt tokens not recomputed thanks to the cache

    def lookup(self, ids: Sequence[int], salt: str = "") -> Hit | None:
        """The longest stored run of ``ids``' leading tokens (at most ``len(ids) - 1``, at least
        ``min_tokens``) among the entries of ``salt``, or None. The entry it came from becomes the most
        recently used."""
        self.lookups += 1
        best, best_key = 0, None
        limit = len(ids) - 1
        for key in self.entries:
            if key[0] != salt:
                continue
            n = common_prefix(key[1], ids, limit)
            if n > best:
                best, best_key = n, key
        if best_key is None or best < self.min_tokens:
            return None
        self.entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return Hit(best, [(k[:, :, :best], v[:, :, :best]) for k, v in self.entries[best_key]])

    def insert(self, ids: Sequence[int], layers: Sequence[tuple[Any, Any]], salt: str = "") -> bool:
        """Keep the prompt ``ids``' per-layer (keys, values), each (1, kv_heads, len(ids), head_dim) or with
        more positions on the left (only the last ``len(ids)`` are kept, copied), under ``salt`` (only
        lookups with the same salt find it). Not kept: a prompt shorter than ``min_tokens``, one a stored
        prompt of its salt already starts with, one larger than the cache. Stored prompts of its salt it
        starts with leave (it covers them). Returns whether it was kept."""
        tokens = tuple(int(t) for t in ids)
        n = len(tokens)
        if n < self.min_tokens:
            return False
        for stored in self.entries:
            if stored[0] == salt and len(stored[1]) >= n and stored[1][:n] == tokens:
                self.entries.move_to_end(stored)
                return False
        kept = [(k[:, :, k.shape[2] - n:].clone(), v[:, :, v.shape[2] - n:].clone()) for k, v in layers]
        size = sum(_nbytes(k) + _nbytes(v) for k, v in kept)
        if size > self.max_bytes:
            return False
        for stored in [s for s in self.entries if s[0] == salt and len(s[1]) < n and tokens[:len(s[1])] == s[1]]:
            self._drop(stored)
        self.entries[(salt, tokens)] = kept
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self.entries)))
        return True

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def stats(self) -> dict[str, int]:
        """Lookups, hits, prompt tokens reused, entries and bytes held."""
        return {"lookups": self.lookups, "hits": self.hits, "reused_tokens": self.reused_tokens,
                "entries": len(self.entries), "bytes": self.bytes}

    def _drop(self, key: tuple[str, tuple[int, ...]]) -> None:
        self.bytes -= sum(_nbytes(k) + _nbytes(v) for k, v in self.entries.pop(key))


def key_salt(api_key: str | None) -> str:
    """A request's cache salt under ``prefix_cache_scope: key``: a SHA-256 of its API key (so the cache
    never holds the key), ``""`` (the shared salt) for a request without one."""
    if not api_key:
        return ""
    return hashlib.sha256(b"modelloop prefix cache\0" + api_key.encode()).hexdigest()


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit``."""
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _nbytes(t: Any) -> int:
    return int(t.numel() * t.element_size())
