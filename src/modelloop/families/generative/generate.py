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

__all__ = ["Step", "decode_stream", "end_ids"]


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


def decode_stream(net: Any, tokenizer: Any, prompt_ids: Sequence[int], *, max_new_tokens: int,
                  temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                  stop: Sequence[str] = (), ends: set[int] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Iterator[Step]:
    """Generate after ``prompt_ids``; yields a :class:`Step` per token (the last one has a finish reason)."""
    torch = require_torch()
    ends = ends if ends is not None else end_ids(tokenizer, net)
    device = next(net.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(int(seed)) if seed is not None else None
    hold = max((len(s) for s in stop), default=1) - 1
    tokens: list[int] = []
    sent = 0
    with torch.inference_mode():
        out = net(input_ids=torch.tensor([list(prompt_ids)], device=device), use_cache=True)
        for _ in range(max_new_tokens):
            logits = out.logits[0, -1].float().cpu()
            token = _pick(logits, temperature, top_p, generator)
            if token in ends:
                yield Step(None, _flush(tokenizer, tokens, sent), "stop")
                return
            tokens.append(token)
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            cut = min((i for i in (text.find(s, max(sent - len(s), 0)) for s in stop) if i >= 0), default=-1)
            if cut >= 0:
                yield Step(token, text[sent:cut], "stop")
                return
            safe = len(text) - hold
            while safe > sent and text[safe - 1] == "\ufffd":
                safe -= 1
            delta = text[sent:safe] if safe > sent else ""
            sent += len(delta)
            if should_stop is not None and should_stop():
                yield Step(token, delta, "cancelled")
                return
            if len(tokens) >= max_new_tokens:
                yield Step(token, delta + _flush(tokenizer, tokens, sent), "length")
                return
            yield Step(token, delta)
            out = net(input_ids=torch.tensor([[token]], device=device), past_key_values=out.past_key_values,
                      use_cache=True)
        yield Step(None, "", "length")


def _flush(tokenizer: Any, tokens: list[int], sent: int) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True)[sent:] if tokens else ""


def _pick(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    torch = require_torch()
    if temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p
        sorted_p = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
