"""Continuous batching of decoding steps: concurrent requests share one forward pass per token.

One decoding thread per served model runs the loop:

1. requests that arrived since the last step are admitted (up to ``max_batch`` sequences decode at once;
   the rest wait for a slot): their prompts are prefilled together in one left-padded forward pass (a
   prompt that arrives alone runs unpadded), each first token picked and sent. With a prefix cache
   (``prefix_cache.py``), a prompt whose leading tokens an earlier prompt computed (the chat template's
   system turn, a conversation's earlier turns) starts from that prompt's keys and values and computes
   only the tokens after them: such prompts share one forward pass when the network can put them side by
   side in one row (the fused ONNX graph's ``prefill_rows``: ONNX Runtime's ``GroupQueryAttention`` takes
   several new tokens after a past only at batch 1), or as one left-padded batch with a past (PyTorch, the
   traced graph: :func:`_prefill_past_batch`), else each alone (batch 1, unpadded); each prompt's keys and
   values are then stored for later ones. Prompts arriving together that start alike with nothing cached
   (a cold server's first chat requests) get their common leading tokens computed once and cached first;
2. the running sequences' KV caches live in one left-padded batch: newly prefilled caches are padded on
   the left to the batch's width (or the batch to theirs) and stacked; the attention mask hides the
   padding, and each sequence's position is its own length, so every sequence sees exactly its tokens;
3. one forward pass decodes the next token of every running sequence; each sequence picks its token with
   its own sampling settings and random stream (:func:`.generate.pick`, :func:`.generate.sampler`), and its
   text is cut and streamed by its own :class:`.generate.Answer` (stop strings, held-back characters,
   ``max_tokens``) exactly as :func:`.generate.decode_stream` does;
4. sequences that ended (an end token, a stop string, ``max_tokens``, or a client gone: ``should_stop``
   is polled every step) leave the batch at once, and padding columns no sequence needs are dropped.

A sequence alone in the batch runs unpadded and unmasked, the arithmetic of :func:`decode_stream`: a
request on an idle server answers exactly as ``modelloop predict`` does (with a prefix cache hit, its
prompt is computed in two calls, prefix and rest: the same values to the last bits of fp32 arithmetic).
Under concurrency the padded batch's arithmetic may differ in the last bits of a logit (a greedy answer could then differ where two
tokens tie to ~1e-6). The thread ends after ``idle_s`` without work and starts again on the next request.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ModelloopError
from ..text.backbone import require_torch
from .generate import Answer, Choices, Step, kv_cache, last_logits, pick, sampler
from .prefix_cache import Hit, PrefixCache, common_prefix

__all__ = ["BatchDecoder"]

_DONE = object()
_ARRIVAL_TURNS = 16  # the most zero-length turns an idle decoder gives requests arriving with the first


@dataclass
class _Seq:
    """One request in the decoder: its prompt, sampling settings, text state and the queue its steps go to."""

    ids: list[int]
    temperature: float
    top_p: float
    generator: Any
    answer: Answer
    out: queue.Queue = field(default_factory=queue.Queue)
    last: int = 0       # the token to feed next
    length: int = 0     # tokens in its cache (its next position)
    salt: str | None = ""  # its prefix cache salt (``prefix_cache.py``); None: the cache is not used for it


class BatchDecoder:
    """Decodes every submitted request in shared forward passes (see the module docstring)."""

    def __init__(self, net: Any, tokenizer: Any, ends: set[int], *, max_batch: int = 16, idle_s: float = 30.0,
                 prefix_cache: PrefixCache | None = None):
        self.net, self.tokenizer, self.ends = net, tokenizer, ends
        self.prefix_cache = prefix_cache  # None: every prompt is computed whole
        self.max_batch, self.idle_s = max(1, int(max_batch)), idle_s
        self.pending: queue.Queue[_Seq] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last = last_logits(net)  # the prefill's arguments asking for the last position's logits only
        self.steps = 0          # batched forward passes run (decoding steps after the prefill)
        self.widest = 0         # the most sequences one step decoded
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def running(self) -> bool:
        """Whether the decoding thread is alive (decoding, or idle for at most ``idle_s``)."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """End the decoding thread and wait for it (at most ``timeout`` s); requests still running or
        waiting get an error, and a later request starts the thread again. Run at interpreter exit too:
        the idle thread (a daemon, waiting inside PyTorch's inference mode) otherwise sometimes died in
        the interpreter's teardown with "terminate called without an active exception", ending the
        process with SIGABRT (1 of 6 benchmark processes)."""
        with self._lock:
            thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self.pending.put(_CLOSE)  # type: ignore[arg-type]  # the one item that is no request
        thread.join(timeout)

    # ---- the request side ----------------------------------------------------------------------------
    def stream(self, prompt_ids: Sequence[int], *, max_new_tokens: int, temperature: float = 0.0,
               top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = (),
               should_stop: Callable[[], bool] | None = None, choices: Choices | None = None,
               cache_salt: str | None = "") -> Iterator[Step]:
        """The steps of one request, as :func:`.generate.decode_stream` yields them (``choices``: each
        token picked among those that continue one of them; ``cache_salt``: only cached prefixes stored
        under the same salt serve it, and its prompt is stored under it; None: the prefix cache is neither
        read nor written for it)."""
        seq = self._seq(prompt_ids, max_new_tokens, temperature, top_p, seed, stop, should_stop, choices)
        seq.salt = cache_salt
        if max_new_tokens < 1:
            yield Step(None, "", "length")
            return
        self.pending.put(seq)
        self._ensure_thread()
        yield from _steps(seq)

    def answer_all(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                   choices: Choices | None = None) -> list[str]:
        """The greedy answers to ``prompts``, decoded together: all are queued before the decoding thread
        looks, so they share one prefill and then one forward pass per token (at most ``max_batch`` at
        once; the others join as answers end), as concurrent requests are served. Evaluation's answers
        (``stage.evaluate_generation``): one pass per token for all samples instead of one per token per
        sample. Padded, so a greedy answer may differ from :meth:`stream`'s alone on a ~1e-6 tie (module
        docstring)."""
        if max_new_tokens < 1:
            return ["" for _ in prompts]
        seqs = [self._seq(p, max_new_tokens, 0.0, 1.0, None, (), None, choices) for p in prompts]
        for seq in seqs:
            self.pending.put(seq)
        self._ensure_thread()
        return ["".join(step.delta for step in _steps(seq)) for seq in seqs]

    def _seq(self, prompt_ids: Sequence[int], max_new_tokens: int, temperature: float, top_p: float,
             seed: int | None, stop: Sequence[str], should_stop: Callable[[], bool] | None,
             choices: Choices | None) -> _Seq:
        return _Seq(list(prompt_ids), temperature, top_p, sampler(seed),
                    Answer(self.tokenizer, max_new_tokens=max_new_tokens, stop=stop, ends=self.ends,
                           should_stop=should_stop, choices=choices))

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="generative-batch", daemon=True)
                self._thread.start()

    # ---- the decoding thread -------------------------------------------------------------------------
    def _run(self) -> None:
        torch = require_torch()
        batch = _Batch(torch)
        with torch.inference_mode():
            while True:
                try:
                    self._admit(batch, block=not batch.seqs)
                except queue.Empty:
                    with self._lock:  # idle: end, unless a request slipped in meanwhile
                        if self.pending.empty():
                            self._thread = None
                            return
                    continue
                except _Closed as closed:
                    self._fail(batch.seqs + closed.waiting, ModelloopError("the model's decoder was closed "
                                                                         "(the server is stopping)"))
                    batch.clear()
                    with self._lock:
                        self._thread = None
                    return
                except Exception as exc:  # a fault of the decoder itself: the running requests fail with it
                    self._fail(batch.seqs, exc)
                    batch.clear()
                    continue
                if batch.seqs:
                    self._step(batch)

    @staticmethod
    def _fail(seqs: Sequence[_Seq], exc: BaseException) -> None:
        for seq in seqs:
            seq.out.put(exc)
            seq.out.put(_DONE)

    def _admit(self, batch: _Batch, *, block: bool) -> None:
        """Prefill the requests waiting (as many as there are free slots), together, and add to the batch
        those that go on after their first token."""
        arrived: list[_Seq] = []
        turns = 0
        while len(batch.seqs) + len(arrived) < self.max_batch:
            try:
                first = block and not arrived
                item: Any = self.pending.get(block=first, timeout=self.idle_s if first else None)
                if item is _CLOSE:
                    raise _Closed(arrived + _drain(self.pending))
                arrived.append(item)
            except queue.Empty:
                if block and not arrived:
                    raise
                # requests arriving together: a few zero-length turns let the threads already sending
                # theirs enqueue them, so they share the prefill; the first turn that adds none ends it
                if batch.seqs or turns >= _ARRIVAL_TURNS or len(arrived) == turns:
                    break
                turns = len(arrived)
                time.sleep(0)
        if not arrived:
            return
        try:
            logits, cache, mask = _prefill(self.net, arrived, int(self.tokenizer.pad_token_id or 0), self.last,
                                           self.prefix_cache)
            tokens = _picks(logits, arrived)
            going = [i for i, seq in enumerate(arrived) if self._emit(seq, tokens[i])]
            if going:
                batch.add([arrived[i] for i in going], cache, mask, going if len(going) < len(arrived) else None)
        except Exception as exc:  # these requests fail; the others go on
            self._fail(arrived, exc)

    def _emit(self, seq: _Seq, token: int) -> bool:
        """Send a sequence's next token; whether it goes on."""
        step = seq.answer.take(token)
        seq.out.put(step)
        if step.finish_reason is not None:
            seq.out.put(_DONE)
            return False
        seq.last = token
        return True

    def _step(self, batch: _Batch) -> None:
        try:
            logits = batch.forward(self.net)
            self.steps += 1
            self.widest = max(self.widest, len(batch.seqs))
            tokens = _picks(logits, batch.seqs)
            batch.keep([i for i, seq in enumerate(batch.seqs) if self._emit(seq, tokens[i])])
        except Exception as exc:  # every running request fails with it; the decoder goes on
            self._fail(batch.seqs, exc)
            batch.clear()


_CLOSE = object()  # put on ``pending`` by ``close``: the decoding thread ends


class _Closed(Exception):
    """``close`` was called; ``waiting``: the requests admitted or queued meanwhile, failed with it."""

    def __init__(self, waiting: list[_Seq]):
        super().__init__("closed")
        self.waiting = waiting


def _drain(pending: queue.Queue) -> list[_Seq]:
    out: list[_Seq] = []
    while True:
        try:
            item = pending.get_nowait()
        except queue.Empty:
            return out
        if item is not _CLOSE:
            out.append(item)


def _steps(seq: _Seq) -> Iterator[Step]:
    """A queued sequence's steps as the decoding thread sends them (its error raised here)."""
    while True:
        item = seq.out.get()
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _close_at_exit(ref: weakref.ref) -> None:
    decoder = ref()
    if decoder is not None:
        decoder.close()


def _picks(logits: Any, seqs: Sequence[_Seq]) -> list[int]:
    """Each sequence's next token from its row of ``logits`` (n, vocab): one argmax for the greedy rows,
    :func:`.generate.pick` with its own settings and random stream for the sampled ones and for those
    restricted to their choices' tokens. The argmax is NumPy's (the first maximum, as PyTorch's): a
    PyTorch one this wide wakes PyTorch's thread pool, which then competes for the cores with ONNX
    Runtime's threads running the next step."""
    greedy = logits.detach().float().cpu().numpy().argmax(-1).tolist()
    out = []
    for i, s in enumerate(seqs):
        allowed = s.answer.allowed()
        out.append(greedy[i] if s.temperature <= 0.0 and allowed is None else
                   pick(logits[i].float().cpu(), s.temperature, s.top_p, s.generator, allowed))
    return out


class _Batch:
    """The running sequences' KV cache (one model cache object, left-padded across sequences) and its
    attention mask. The cache object carries over from step to step; it is rebuilt only when sequences
    join or leave."""

    def __init__(self, torch: Any):
        self.torch = torch
        self.seqs: list[_Seq] = []
        self.cache: Any = None   # the model's cache: per layer keys/values (B, heads, width, dim)
        self.mask: Any = None    # (B, width): 1 where a sequence has a token
        self.padded = False      # False while one sequence runs unpadded (no mask, decode_stream's arithmetic)

    def add(self, seqs: list[_Seq], cache: Any, mask: Any, rows: list[int] | None) -> None:
        """Prefilled sequences join: ``cache`` and ``mask`` of their prefill (``rows`` of it, when some
        ended on their first token)."""
        torch = self.torch
        for seq in seqs:
            seq.length = len(seq.ids)
        if not self.seqs and len(seqs) == 1 and rows is None and bool(mask.all()):
            self.seqs, self.cache, self.mask, self.padded = list(seqs), cache, mask, False
            return
        new = _layers(cache)
        if rows is not None:
            index = torch.tensor(rows)
            width = max(s.length for s in seqs)
            new = [(k[index][:, :, -width:], v[index][:, :, -width:]) for k, v in new]
            mask = mask[index][:, -width:]
        if self.seqs:
            width = max(self.mask.shape[1], mask.shape[1])
            new = [(torch.cat([_left_pad(k, width), _left_pad(k2, width)]),
                    torch.cat([_left_pad(v, width), _left_pad(v2, width)]))
                   for (k, v), (k2, v2) in zip(_layers(self.cache), new, strict=True)]
            mask = torch.cat([_left_pad(self.mask, width, dim=1), _left_pad(mask, width, dim=1)])
        self.seqs, self.cache, self.mask, self.padded = [*self.seqs, *seqs], _cache(new), mask, True

    def forward(self, net: Any) -> Any:
        """One decoding step of every sequence: the next-token logits, (B, vocab)."""
        torch = self.torch
        ids = torch.tensor([[s.last] for s in self.seqs], device=net.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.seqs), 1))], dim=1)
        if not self.padded:  # alone and unpadded: decode_stream's arithmetic
            out = net(input_ids=ids, past_key_values=self.cache, use_cache=True)
        else:
            positions = torch.tensor([[s.length] for s in self.seqs], device=net.device)
            out = net(input_ids=ids, attention_mask=self.mask.to(net.device), position_ids=positions,
                      past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        for s in self.seqs:
            s.length += 1
        return out.logits[:, -1]

    def keep(self, rows: list[int]) -> None:
        """Only these sequences go on; padding columns none of them needs are dropped."""
        if len(rows) == len(self.seqs):
            return
        self.seqs = [self.seqs[i] for i in rows]
        if not self.seqs:
            self.clear()
            return
        index = self.torch.tensor(rows)
        width = max(s.length for s in self.seqs)
        self.mask = self.mask[index][:, -width:]
        self.cache = _cache([(k[index][:, :, -width:], v[index][:, :, -width:]) for k, v in _layers(self.cache)])

    def clear(self) -> None:
        self.seqs, self.cache, self.mask, self.padded = [], None, None, False


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    """Per layer (keys, values) of a transformers cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _cache(layers: list[tuple[Any, Any]]) -> Any:
    return kv_cache(layers)


def _prefill(net: Any, seqs: list[_Seq], pad_id: int, last: dict[str, Any],
             prefixes: PrefixCache | None = None) -> tuple[Any, Any, Any]:
    """The prompts' forward pass: the last position's logits per sequence (n, vocab), the KV cache and
    the attention mask (n, width), left-padded. Without a prefix cache hit: :func:`_prefill_whole`. A
    prompt with one is computed alone from the cached keys and values (:func:`_prefill_from`), the others
    together, and the parts are joined in the prompts' order. Every prompt is then offered to the cache."""
    hits = [_lookup(prefixes, s) for s in seqs]
    if prefixes is not None and _share_cold_prefix(net, [s for s, hit in zip(seqs, hits, strict=True)
                                                         if hit is None and s.salt is not None], prefixes, last):
        hits = [hit or _lookup(prefixes, s) for s, hit in zip(seqs, hits, strict=True)]
    if not any(hits):
        logits, cache, mask = _prefill_whole(net, seqs, pad_id, last)
    else:
        cold = [i for i, hit in enumerate(hits) if hit is None]
        parts = [(cold, *_prefill_whole(net, [seqs[i] for i in cold], pad_id, last))] if cold else []
        warm = [(i, hit) for i, hit in enumerate(hits) if hit is not None]
        if len(warm) > 1 and getattr(net, "packs_rows", False):  # one pass for all of them, one row
            logits, caches = net.prefill_rows([(seqs[i].ids[hit.tokens:], hit.layers) for i, hit in warm])
            parts += [([i], logits[j:j + 1], _cache(caches[j]), require_torch().ones((1, len(seqs[i].ids)),
                                                                                     dtype=require_torch().long))
                      for j, (i, _) in enumerate(warm)]
        elif len(warm) > 1 and getattr(net, "batched_past", True):  # one pass, a left-padded batch
            parts.append(([i for i, _ in warm], *_prefill_past_batch(net, [seqs[i] for i, _ in warm],
                                                                     [hit for _, hit in warm], pad_id, last)))
        else:
            parts += [([i], *_prefill_from(net, seqs[i], hit, last)) for i, hit in warm]
        logits, cache, mask = _join(parts)
    if prefixes is not None:
        layers = _layers(cache)
        for i, seq in enumerate(seqs):
            if seq.salt is not None:
                prefixes.insert(seq.ids, [(k[i:i + 1], v[i:i + 1]) for k, v in layers], seq.salt)
    return logits, cache, mask


def _lookup(prefixes: PrefixCache | None, seq: _Seq) -> Hit | None:
    """The cached prefix of ``seq``'s salt that serves it (None: no cache, none stored, or no salt)."""
    return None if prefixes is None or seq.salt is None else prefixes.lookup(seq.ids, seq.salt)


def _share_cold_prefix(net: Any, seqs: list[_Seq], prefixes: PrefixCache, last: dict[str, Any]) -> bool:
    """Prompts arriving together that no cached prefix serves but that start alike (a cold server's first
    chat requests): each group of one salt sharing at least ``min_tokens`` leading tokens gets its common
    tokens computed once, alone, and cached under that salt, so each prompt then computes only its rest.
    Whether any was."""
    groups: dict[tuple[str, tuple[int, ...]], list[list[int]]] = {}
    for seq in seqs:
        if len(seq.ids) > prefixes.min_tokens:
            groups.setdefault((seq.salt or "", tuple(seq.ids[:prefixes.min_tokens])), []).append(seq.ids)
    done = False
    for (salt, _), group in ((k, g) for k, g in groups.items() if len(g) > 1):
        first, shared = group[0], min(len(p) for p in group) - 1
        for other in group[1:]:
            shared = common_prefix(first, other, shared)
        out = net(input_ids=require_torch().tensor([first[:shared]], device=net.device), use_cache=True, **last)
        done = prefixes.insert(first[:shared], _layers(out.past_key_values), salt) or done
    return done


def _prefill_whole(net: Any, seqs: list[_Seq], pad_id: int, last: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Whole prompts: one runs alone and unpadded (``decode_stream``'s arithmetic); several run as one
    left-padded batch. ``last``: :func:`.generate.last_logits`."""
    torch = require_torch()
    device = net.device
    if len(seqs) == 1:
        out = net(input_ids=torch.tensor([seqs[0].ids], device=device), use_cache=True, **last)
        return out.logits[:, -1], out.past_key_values, torch.ones((1, len(seqs[0].ids)), dtype=torch.long)
    width = max(len(s.ids) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s.ids)) + s.ids for s in seqs])
    mask = torch.tensor([[0] * (width - len(s.ids)) + [1] * len(s.ids) for s in seqs])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = net(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
              use_cache=True, **last)
    return out.logits[:, -1], out.past_key_values, mask


def _prefill_from(net: Any, seq: _Seq, hit: Hit, last: dict[str, Any]) -> tuple[Any, Any, Any]:
    """One prompt from a cached prefix: its tokens after the ``hit``'s, at their own positions, attending
    to the cached keys and values (batch 1, unpadded); the cache returned covers the whole prompt."""
    torch = require_torch()
    past = kv_cache(hit.layers)  # the model appends to copies: the stored tensors stay as they are
    out = net(input_ids=torch.tensor([seq.ids[hit.tokens:]], device=net.device), past_key_values=past,
              use_cache=True, **last)
    return out.logits[:, -1], out.past_key_values, torch.ones((1, len(seq.ids)), dtype=torch.long)


def _prefill_past_batch(net: Any, seqs: list[_Seq], hits: list[Hit], pad_id: int,
                        last: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Prompts from cached prefixes as one left-padded batch with a past (PyTorch, the traced graph): each
    row's new tokens are its last T (T: the longest uncached rest), its past the first ``len - T`` of
    its cached positions (a row with a shorter cached prefix recomputes a few cached tokens), so every
    row is its prompt right-aligned, padding only on the left, as :func:`_prefill_whole` lays it out."""
    torch = require_torch()
    new = max(len(s.ids) - hit.tokens for s, hit in zip(seqs, hits, strict=True))
    kept = [max(len(s.ids) - new, 0) for s in seqs]  # cached positions each row takes as its past
    width = max(kept)
    ids = torch.tensor([[pad_id] * (new - len(s.ids) + k) + s.ids[k:] for s, k in zip(seqs, kept, strict=True)])
    mask = torch.tensor([[0] * (width - k) + [1] * k + [0] * (new - len(s.ids) + k) + [1] * (len(s.ids) - k)
                         for s, k in zip(seqs, kept, strict=True)])
    positions = torch.tensor([[0] * (new - len(s.ids) + k) + list(range(k, len(s.ids)))
                              for s, k in zip(seqs, kept, strict=True)])
    past = [(torch.cat([_left_pad(hit.layers[n][0][:, :, :k], width) for hit, k in zip(hits, kept, strict=True)]),
             torch.cat([_left_pad(hit.layers[n][1][:, :, :k], width) for hit, k in zip(hits, kept, strict=True)]))
            for n in range(len(hits[0].layers))]
    device = net.device
    out = net(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
              past_key_values=_cache(past), use_cache=True, **last)
    return out.logits[:, -1], out.past_key_values, mask


def _join(parts: list[tuple[list[int], Any, Any, Any]]) -> tuple[Any, Any, Any]:
    """Prefill parts (the prompts' indices, logits, cache, mask) as one left-padded batch in the prompts'
    order; one part covering every prompt in order is returned as it is."""
    if len(parts) == 1 and parts[0][0] == sorted(parts[0][0]):
        return parts[0][1], parts[0][2], parts[0][3]
    torch = require_torch()
    order = [i for rows, *_ in parts for i in rows]
    back = torch.tensor(sorted(range(len(order)), key=order.__getitem__))  # joined row of prompt i
    width = max(mask.shape[1] for *_, mask in parts)
    logits = torch.cat([p[1] for p in parts])[back]
    per_part = [_layers(p[2]) for p in parts]
    layers = [(torch.cat([_left_pad(layers[n][0], width) for layers in per_part])[back],
               torch.cat([_left_pad(layers[n][1], width) for layers in per_part])[back])
              for n in range(len(per_part[0]))]
    mask = torch.cat([_left_pad(p[3], width, dim=1) for p in parts])[back]
    return logits, _cache(layers), mask


def _left_pad(t: Any, width: int, dim: int = 2) -> Any:
    """``t`` padded with zeros on the left of ``dim`` to ``width``."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return require_torch().cat([t.new_zeros(shape), t], dim=dim)
