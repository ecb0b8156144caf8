"""Training examples of a generative model: the three shapes of data, the chat template, tokens with
the loss on completion tokens only, packing, and the data profile.

Shapes (``data.prompt``/``data.completion``, ``data.messages`` or ``data.text`` set one; else the
columns' names decide, in this order):

* ``chat``: a ``messages`` column, a list of ``{"role", "content"}`` (or its JSON text); the last
  ``assistant`` message is the completion, everything before it the prompt;
* ``pairs``: ``prompt`` and ``completion`` columns; the prompt is one ``user`` message;
* ``text``: a ``text`` column, for domain adaptation: no prompt, every token is learned;
* ``preference``: ``prompt``, ``chosen`` and ``rejected`` columns (``data.prompt`` renames the first):
  preference pairs, learned by DPO (``preference.py``); the chosen answer is the completion, served
  and scored like a ``pairs`` one.

A prompt is rendered by the tokenizer's own chat template (``add_generation_prompt``); the completion is
what the template adds after it for the assistant's answer (its end-of-turn token included), so that a
served answer stops where training answers stopped. A tokenizer without a template gets ``prompt\\n``
and the completion followed by its end-of-sequence token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError

__all__ = ["ROLES", "Example", "Shape", "as_messages", "data_profile", "detect_shape", "encode_example", "encode_examples", "learnable",
           "examples_of", "pack", "prompt_text", "split_completion", "validation_rows"]

ROLES = ("system", "user", "assistant")
IGNORE = -100
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Shape:
    """Which columns hold the examples: ``kind`` is chat | pairs | text | preference (``completion`` is
    then the chosen answer's column, ``rejected`` the other's)."""

    kind: str
    prompt: str | None = None
    completion: str | None = None
    messages: str | None = None
    text: str | None = None
    rejected: str | None = None

    @property
    def prompted(self) -> bool:
        """A prompt column and an answer column (pairs, or preference pairs by their chosen answer)."""
        return self.kind in ("pairs", "preference")

    def input_columns(self) -> list[str]:
        """What a client sends to ``/v1/predict`` for an answer: the prompt side."""
        return [c for c in (self.prompt if self.prompted else self.messages if self.kind == "chat"
                            else self.text,) if c]

    def answer_column(self) -> str:
        return str(self.completion if self.prompted else self.messages if self.kind == "chat" else self.text)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Example:
    """One training example as text: ``prompt`` (rendered, may be empty) and ``completion`` (learned)."""

    prompt: str
    completion: str


def detect_shape(data: Any, columns: Sequence[str]) -> Shape:
    """The shape from ``data.prompt``/``completion``/``messages``/``text`` (any object with those
    attributes, e.g. the config's ``data:``), else from column names; a ConfigError names the key."""
    get = lambda key: getattr(data, key, None)  # noqa: E731
    names = set(columns)
    for key in ("prompt", "completion", "messages", "text"):
        if get(key) and get(key) not in names:
            raise ConfigError(f"data.{key}: column '{get(key)}' is not in the data (columns: {', '.join(columns)})")
    if get("messages"):
        return Shape("chat", messages=get("messages"))
    if not get("completion") and not get("text") and {"chosen", "rejected"} <= names:
        prompt = get("prompt") or "prompt"
        if prompt not in names:
            raise ConfigError(f"data.prompt: set it to the column holding the prompts of the chosen and rejected "
                              f"answers (columns: {', '.join(columns)})")
        return Shape("preference", prompt=prompt, completion="chosen", rejected="rejected")
    if get("prompt") or get("completion"):
        prompt, completion = get("prompt") or "prompt", get("completion") or "completion"
        missing = [f"data.{k}" for k, c in (("prompt", prompt), ("completion", completion)) if c not in names]
        if missing:
            raise ConfigError(f"{missing[0]}: set it to the column holding the "
                              f"{missing[0].split('.')[1]}s (columns: {', '.join(columns)})")
        return Shape("pairs", prompt=prompt, completion=completion)
    if get("text"):
        return Shape("text", text=get("text"))
    if "messages" in names:
        return Shape("chat", messages="messages")
    if {"prompt", "completion"} <= names:
        return Shape("pairs", prompt="prompt", completion="completion")
    if "text" in names:
        return Shape("text", text="text")
    target = get("target")
    others = [c for c in columns if c != target]
    if target in names and len(others) == 1:  # data.target is the answer; the one other column asks for it
        return Shape("pairs", prompt=others[0], completion=target)
    raise ConfigError("data: no column says what to learn; name the columns prompt and completion, messages, "
                      f"text, or prompt, chosen and rejected (preference pairs), or set data.prompt and data.completion, data.messages or data.text "
                      f"(columns: {', '.join(columns)})")


def as_messages(value: Any, where: str = "messages") -> list[dict[str, str]]:
    """A chat as a list of ``{"role", "content"}`` (from a list, an array or its JSON text); a DataError
    names the position and what is allowed."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: must be a list of {{role, content}} messages or its JSON text") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"{where}: must be a non-empty list of {{role, content}} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}[{i}].content: must be text")
        if m.get("role") not in ROLES:
            raise DataError(f"{where}[{i}].role: must be one of {', '.join(ROLES)}, got {json.dumps(m.get('role'))}")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    return out


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The text the model continues from: the chat template with the assistant's turn opened."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return "".join(f"{m['content']}\n" for m in messages)


def split_completion(tokenizer: Any, messages: list[dict[str, str]], answer: str) -> str:
    """What the template appends after :func:`prompt_text` for ``answer`` (end-of-turn included)."""
    if getattr(tokenizer, "chat_template", None):
        head = prompt_text(tokenizer, messages)
        full = str(tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}],
                                                 tokenize=False))
        if full.startswith(head):
            return full[len(head):]
    return answer + (tokenizer.eos_token or "")


def examples_of(frame: pd.DataFrame, shape: Shape, tokenizer: Any) -> list[Example]:
    """Each row as prompt and completion text (empty answers kept: the profile counts them)."""
    out = []
    for i, row in enumerate(frame.itertuples(index=False)):
        rec = row._asdict() if hasattr(row, "_asdict") else dict(zip(frame.columns, row, strict=True))
        out.append(row_example(rec, shape, tokenizer, where=f"row {i}"))
    return out


def row_example(rec: Mapping[str, Any], shape: Shape, tokenizer: Any, where: str = "record") -> Example:
    """One record as prompt and completion text (the completion empty when the record has none)."""
    if shape.kind == "text":
        return Example("", _text(rec.get(str(shape.text))))
    if shape.prompted:
        messages = [{"role": "user", "content": _text(rec.get(str(shape.prompt)))}]
        answer = rec.get(str(shape.completion))
        completion = split_completion(tokenizer, messages, _text(answer)) if _text(answer) else ""
        return Example(prompt_text(tokenizer, messages), completion)
    messages = as_messages(rec.get(str(shape.messages)), f"{where}.{shape.messages}")
    if messages[-1]["role"] != "assistant":
        return Example(prompt_text(tokenizer, messages), "")
    answer = messages[-1]["content"]
    return Example(prompt_text(tokenizer, messages[:-1]),
                   split_completion(tokenizer, messages[:-1], answer) if answer.strip() else "")


def answer_of(rec: Mapping[str, Any], shape: Shape) -> str:
    """The reference answer of a record (its completion or chosen answer, last assistant message or text)."""
    if shape.prompted:
        return _text(rec.get(str(shape.completion)))
    if shape.kind == "chat":
        messages = as_messages(rec.get(str(shape.messages)))
        return messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
    return _text(rec.get(str(shape.text)))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def encode_examples(tokenizer: Any, examples: Sequence[Example], max_length: int
                    ) -> tuple[list[list[int]], list[list[int]], int]:
    """Token ids and labels (``-100`` on prompt tokens: the loss is on completion tokens only) of each
    example with a completion, cut to ``max_length``; and how many were cut."""
    ids_all, labels_all, cut = [], [], 0
    for ex in examples:
        encoded = encode_example(tokenizer, ex, max_length)
        if encoded is None:
            continue
        cut += encoded[2]
        if learnable(encoded[1]):
            ids_all.append(encoded[0])
            labels_all.append(encoded[1])
    return ids_all, labels_all, cut


def encode_example(tokenizer: Any, ex: Example, max_length: int) -> tuple[list[int], list[int], bool] | None:
    """One example's token ids and labels, cut to ``max_length``, and whether it was cut; ``None`` without
    a completion. A prompt that fills ``max_length`` leaves nothing to learn (:func:`learnable`)."""
    if not ex.completion:
        return None
    p = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] if ex.prompt else []
    c = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
    if not p and tokenizer.bos_token_id is not None:
        p = [int(tokenizer.bos_token_id)]
    ids, labels = [*p, *c], [IGNORE] * len(p) + list(c)
    labels[0] = IGNORE  # nothing predicts the first token (nor, packed, from the example before it)
    cut = len(ids) > max_length
    if cut:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels, cut


def learnable(labels: Sequence[int]) -> bool:
    """Whether an encoded example has a token to learn (its first token is never predicted)."""
    return any(t != IGNORE for t in labels[1:])


def pack(ids: Sequence[list[int]], labels: Sequence[list[int]], max_length: int, *, packing: bool
         ) -> list[list[tuple[list[int], list[int]]]]:
    """Training sequences: with ``packing``, examples first-fit into sequences of at most ``max_length``
    tokens (longest first); else one example per sequence. Each sequence is its examples in order."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    if not packing:
        return [[(ids[i], labels[i])] for i in order]
    bins: list[list[tuple[list[int], list[int]]]] = []
    room: list[int] = []
    for i in order:
        n = len(ids[i])
        for b, left in enumerate(room):
            if n <= left:
                bins[b].append((ids[i], labels[i]))
                room[b] -= n
                break
        else:
            bins.append([(ids[i], labels[i])])
            room.append(max_length - n)
    return bins


def validation_rows(n: int, share: float, seed: int, groups: pd.Series | None = None) -> np.ndarray:
    """A seeded boolean mask of the rows held out for validation (at least one, never all).

    ``groups`` (the rows' ``data.group`` values, named by the column): whole groups, about ``share`` of
    the rows (``split.whole_groups``), as the test split keeps them: a customer's conversations on both
    sides let early stopping choose on customers the model trains on."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        from ...data.split import whole_groups

        return whole_groups(pd.factorize(groups.astype(str))[0], np.zeros(n, dtype=np.int64), share, rng,
                            column=str(groups.name))
    k = min(max(1, round(n * share)), max(n - 1, 0))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:k]] = True
    return mask


def data_profile(frame: pd.DataFrame, shape: Shape, tokenizer: Any, context: int) -> dict[str, Any]:
    """Token lengths (prompt, completion), duplicates, empty answers, language mix and prompts that
    leave no room in the model's context."""
    examples = examples_of(frame, shape, tokenizer)
    n_prompt = np.array([len(tokenizer(e.prompt, add_special_tokens=False)["input_ids"]) if e.prompt else 0
                         for e in examples], dtype=np.int64)
    n_answer = np.array([len(tokenizer(e.completion, add_special_tokens=False)["input_ids"])
                         if e.completion else 0 for e in examples], dtype=np.int64)
    answers = [answer_of(r, shape) for r in frame.to_dict("records")]
    prompts = [e.prompt for e in examples]
    pairs = pd.Series([f"{p}\x00{a}" for p, a in zip(prompts, answers, strict=True)])
    by_prompt = pd.DataFrame({"p": prompts, "a": answers}).groupby("p")["a"].nunique()
    texts = [f"{p} {a}" for p, a in zip(prompts, answers, strict=True)]
    cjk = np.array([bool(_CJK.search(t)) for t in texts])
    return {
        "shape": shape.to_dict(), "rows": len(frame), "context": int(context),
        "tokens": {"prompt": _lengths(n_prompt), "completion": _lengths(n_answer)},
        "empty_answers": int(sum(not a.strip() for a in answers)),
        "duplicates": int(pairs.duplicated().sum()),
        "prompts_with_several_answers": int((by_prompt > 1).sum()) if shape.kind != "text" else 0,
        "prompts_over_context": int((n_prompt >= context).sum()),
        "over_context": int((n_prompt + n_answer > context).sum()),
        "language_mix": {"cjk": round(float(cjk.mean()), 4) if len(cjk) else 0.0,
                         "other": round(float(1 - cjk.mean()), 4) if len(cjk) else 0.0},
    }


def _lengths(n: np.ndarray) -> dict[str, Any]:
    if not len(n):
        return {"min": 0, "median": 0, "p95": 0, "max": 0, "mean": 0.0}
    return {"min": int(n.min()), "median": int(np.median(n)), "p95": int(np.percentile(n, 95)),
            "max": int(n.max()), "mean": round(float(n.mean()), 2)}
