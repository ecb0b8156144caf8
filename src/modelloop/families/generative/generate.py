"""Token-by-token decoding with a KV cache: greedy or sampled (temperature, top-p, a seed), stop strings,
the end-of-turn tokens, and text deltas that never split a character or show the start of a stop string.

One function serves evaluation, ``modelloop predict``, ``/v1/predict`` and the OpenAI-compatible routes,
so an answer is the same wherever it is asked for (greedy decoding at batch 1: no padding to change the
arithmetic). ``should_stop`` is polled between tokens: a client that went away ends its generation at the
next token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..text.backbone import require_torch

__all__ = ["Answer", "Choices", "Step", "decode_stream", "end_ids", "kv_cache", "last_logits", "pick", "sampler"]


@dataclass
class Step:
    """One decoding step: the new token, the text it adds (may be empty while held back), and why the
    generation ended (``stop``: an end token or stop string; ``length``: max_new_tokens) on the last."""

    token: int | None
    delta: str
    finish_reason: str | None = None


def end_ids(tokenizer: Any, net: Any = None) -> set[int]:
    """Tokens that end an answer: the tokenizer's end-of-sequence, the model's, and ``<|im_end|>``."""
    ids = {tokenizer.eos_token_id}
    config = getattr(getattr(net, "generation_config", None), "eos_token_id", None)
    ids.update(config if isinstance(config, (list, tuple)) else [config])
    for special in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(special) if special in tokenizer.get_vocab() else None
        ids.add(tid)
    return {int(i) for i in ids if i is not None}


class Choices:
    """The answers a label model may give, as a token trie: each choice's completion tokens as training
    learned them, up to and including its end-of-turn token. Decoding under it picks, at each step, the
    likeliest token among those that continue some choice (``allowed``), so a greedy answer is always
    one of the labels and ends where that label's completion ended."""

    def __init__(self, sequences: Sequence[Sequence[int]], ends: set[int]):
        self.next: dict[tuple[int, ...], set[int]] = {}
        for seq in sequences:
            cut = next((i + 1 for i, t in enumerate(seq) if t in ends), len(seq))
            for i in range(cut):
                self.next.setdefault(tuple(seq[:i]), set()).add(int(seq[i]))
        self.count = len(sequences)

    def allowed(self, tokens: Sequence[int]) -> list[int] | None:
        """The tokens that continue a choice after ``tokens`` (None: no choice starts so; decoding is free)."""
        found = self.next.get(tuple(tokens))
        return sorted(found) if found else None


class Answer:
    """The text side of one generation, token by token: the answer so far, what was sent, characters held
    back (a possible start of a stop string, an incomplete character), and why it ended. Shared by
    :func:`decode_stream` (one sequence) and the serving engine's batched steps (``batching.py``), so an
    answer is cut and streamed the same way whichever decoded it."""

    def __init__(self, tokenizer: Any, *, max_new_tokens: int, stop: Sequence[str] = (), ends: set[int],
                 should_stop: Callable[[], bool] | None = None, choices: Choices | None = None):
        self.tokenizer, self.max_new_tokens, self.stop, self.ends = tokenizer, max_new_tokens, stop, ends
        self.should_stop, self.choices = should_stop, choices
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.tokens: list[int] = []
        self.sent = 0

    def allowed(self) -> list[int] | None:
        """The tokens the next step may pick (``choices``' continuations; None: any)."""
        return None if self.choices is None else self.choices.allowed(self.tokens)

    def take(self, token: int) -> Step:
        """The step a newly decoded token makes (its ``finish_reason`` set when the answer ends)."""
        if token in self.ends:
            return Step(None, _flush(self.tokenizer, self.tokens, self.sent), "stop")
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        sent = self.sent
        cut = min((i for i in (text.find(s, max(sent - len(s), 0)) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            return Step(token, text[sent:cut], "stop")
        safe = len(text) - self.hold
        while safe > sent and text[safe - 1] == "\ufffd":
            safe -= 1
        delta = text[sent:safe] if safe > sent else ""
        self.sent += len(delta)
        if self.should_stop is not None and self.should_stop():
            return Step(token, delta, "cancelled")
        if len(self.tokens) >= self.max_new_tokens:
            return Step(token, delta + _flush(self.tokenizer, self.tokens, self.sent), "length")
        return Step(token, delta)


def decode_stream(net: Any, tokenizer: Any, prompt_ids: Sequence[int], *, max_new_tokens: int,
                  temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                  stop: Sequence[str] = (), ends: set[int] | None = None,
                  should_stop: Callable[[], bool] | None = None, choices: Choices | None = None) -> Iterator[Step]:
    """Generate after ``prompt_ids``; yields a :class:`Step` per token (the last one has a finish reason).
    With ``choices`` every token is picked among those that continue one of them."""
    torch = require_torch()
    ends = ends if ends is not None else end_ids(tokenizer, net)
    device = next(net.parameters()).device
    generator = sampler(seed)
    answer = Answer(tokenizer, max_new_tokens=max_new_tokens, stop=stop, ends=ends, should_stop=should_stop,
                    choices=choices)
    with torch.inference_mode():
        out = net(input_ids=torch.tensor([list(prompt_ids)], device=device), use_cache=True, **last_logits(net))
        for _ in range(max_new_tokens):
            step = answer.take(pick(out.logits[0, -1].float().cpu(), temperature, top_p, generator,
                                    answer.allowed()))
            yield step
            if step.finish_reason is not None:
                return
            out = net(input_ids=torch.tensor([[step.token]], device=device), past_key_values=out.past_key_values,
                      use_cache=True)
        yield Step(None, "", "length")


def kv_cache(layers: Sequence[tuple[Any, Any]]) -> Any:
    """A transformers ``DynamicCache`` holding these per-layer (keys, values) tensors themselves: its
    constructor would concatenate each onto an empty tensor, a copy of the whole cache (at 8 sequences of
    SmolLM2, ~20 MB through PyTorch's thread pool per decoding step), so it is built empty and handed them."""
    from transformers import DynamicCache

    cache: Any = DynamicCache(ddp_cache_data=[(k[:, :, :0], v[:, :, :0]) for k, v in layers])
    for layer, (k, v) in zip(cache.layers, layers, strict=True):
        layer.keys, layer.values = k, v
    return cache


def last_logits(net: Any) -> dict[str, Any]:
    """The prompt's forward pass needs only its last position's logits: ``{"logits_to_keep": 1}`` for a
    network that takes it (transformers' causal LMs, the ONNX graph), so the vocabulary projection (for
    SmolLM2, 49k words: as much as 8 of its 30 layers) runs once per prompt, not once per prompt token."""
    from .sequences import _keeps_logits

    return {"logits_to_keep": 1} if _keeps_logits(net) else {}


def sampler(seed: int | None) -> Any:
    """A request's own random stream (a seeded request samples the same answer, batched or not)."""
    torch = require_torch()
    return torch.Generator(device="cpu").manual_seed(int(seed)) if seed is not None else None


def _flush(tokenizer: Any, tokens: list[int], sent: int) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True)[sent:] if tokens else ""


def pick(logits: Any, temperature: float, top_p: float, generator: Any, allowed: Sequence[int] | None = None
         ) -> int:
    """The next token: the most likely one (temperature 0), else drawn within the top-p mass; only among
    ``allowed`` when given (the other tokens' logits masked to -inf)."""
    torch = require_torch()
    if allowed is not None:
        keep = torch.tensor(list(allowed), dtype=torch.long)
        logits = torch.full_like(logits, float("-inf")).index_copy(0, keep, logits.index_select(0, keep))
    if temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p
        sorted_p = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
