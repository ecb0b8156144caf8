"""Rated answers as training rows of the model's own shape (``modelloop retrain``'s ``feedback_inputs`` hook).

The prediction log keeps what a client sent (the OpenAI routes' ``messages`` or ``prompt``, plus the
training table's prompt column, ``serving/openai.py``) and the served answer; ``POST /v1/feedback`` keeps
the answer to learn (the correction, or the served answer when it was accepted). Each labelled row becomes
a row of the champion's data shape:

* ``pairs``: the prompt column and the answer in the completion column (supervised pairs);
* ``preference``: a corrected answer is a preference pair, ``chosen`` the correction and ``rejected`` the
  answer that was served (DPO learns to prefer one over the other); an accepted answer has nothing it was
  preferred to: it is kept (the recent slice scores it) without a rejected answer, which DPO leaves out;
* ``chat``: the request's messages with the answer as the last assistant turn;
* ``text``: the prompt followed by the answer.

A row whose request kept no prompt (an empty chat, a log written before the prompt column was) is left
out and counted in the note.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .data import Shape, as_messages

__all__ = ["feedback_rows", "logged_prompt", "shape_inputs"]


def logged_prompt(inputs: dict[str, Any]) -> str | None:
    """The user's side of a logged request as one text: the completions route's ``prompt``, or the chat's
    user turns (one per line; system turns and earlier answers left out); None when there is none."""
    messages = inputs.get("messages")
    if messages is not None:
        try:
            turns = [m["content"] for m in as_messages(messages) if m["role"] == "user"]
        except Exception:  # a malformed chat was refused (400): no prompt
            return None
        text = "\n".join(t for t in turns if t.strip())
        return text or None
    prompt = inputs.get("prompt")
    return prompt if isinstance(prompt, str) and prompt.strip() else None


def shape_inputs(shape: Shape, inputs: dict[str, Any]) -> dict[str, Any]:
    """The training table's input column of a request to the OpenAI routes (``inputs``: its ``messages`` or
    ``prompt``), for the prediction log, where the monitor's length, language and embedding drift and
    ``modelloop retrain`` read it: the user's text in the prompt column (pairs, preference pairs) or the
    text column (plain text), the messages in the messages column (a raw prompt as one user turn)."""
    prompt = logged_prompt(inputs)
    if shape.kind == "chat":
        messages = inputs.get("messages")
        if messages is None and prompt is not None:
            messages = [{"role": "user", "content": prompt}]
        return {} if messages is None else {str(shape.messages): messages}
    column = shape.prompt if shape.prompted else shape.text
    return {} if prompt is None or not column else {str(column): prompt}


def feedback_rows(ws: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``frame`` (the labelled log rows: inputs, the label column, ``_request_id``, ``_version``,
    ``_prediction``) as rows of the shape of the version that served each; the note counts them."""
    from .. import label_column

    label = str(label_column(ws.config))
    shapes: dict[int, Shape | None] = {}
    out: list[dict[str, Any]] = []
    counts = {"preference_pairs": 0, "without_rejected": 0, "without_prompt": 0}
    for rec in frame.to_dict("records"):
        version = int(rec["_version"])
        if version not in shapes:
            shapes[version] = _shape_of(ws, version)
        shape = shapes[version]
        if shape is None:  # not a generative version's log: kept as it is
            out.append(rec)
            continue
        logged = _logged_inputs(ws, str(rec["_request_id"]), rec)
        answer = str(rec[label])
        row = _row(shape, logged, answer, rec, label, counts)
        if row is None:
            counts["without_prompt"] += 1
        else:
            out.append(row)
    kept = pd.DataFrame.from_records(out) if out else frame.iloc[:0]
    note: dict[str, Any] = {k: v for k, v in counts.items() if v}
    why = []
    if counts["without_prompt"]:
        why.append(
            f"{counts['without_prompt']} rated answer(s) have no prompt in the prediction log: not used"
        )
    if counts["without_rejected"]:
        why.append(
            f"{counts['without_rejected']} answer(s) were accepted without a correction: a preference "
            "model has nothing they were preferred to, so they are scored on the recent slice but not "
            "learned"
        )
    if why:
        note["why"] = "; ".join(why)
    return kept, note


def _row(
    shape: Shape, logged: dict[str, Any], answer: str, rec: dict[str, Any], label: str, counts: dict[str, int]
) -> dict[str, Any] | None:
    row = dict(rec)
    if shape.prompted:
        prompt = logged.get(str(shape.prompt))
        prompt = prompt if isinstance(prompt, str) and prompt.strip() else logged_prompt(logged)
        if prompt is None:
            return None
        row[str(shape.prompt)] = prompt
        row[str(shape.completion)] = answer
        if shape.kind == "preference":
            served = rec.get("_prediction")
            corrected = isinstance(served, str) and served.strip() and served.strip() != answer.strip()
            row[str(shape.rejected)] = served if corrected else np.nan
            counts["preference_pairs" if corrected else "without_rejected"] += 1
    elif shape.kind == "chat":
        messages = logged.get(str(shape.messages), logged.get("messages"))
        if messages is None and logged_prompt(logged) is not None:  # the completions route: one user turn
            messages = [{"role": "user", "content": logged_prompt(logged)}]
        try:
            asked = as_messages(messages)
        except Exception:
            return None
        if asked[-1]["role"] == "assistant":
            asked = asked[:-1]
        row[str(shape.messages)] = [*asked, {"role": "assistant", "content": answer}]
    else:
        prompt = logged.get(str(shape.text))
        prompt = prompt if isinstance(prompt, str) else logged_prompt(logged) or ""
        row[str(shape.text)] = prompt + answer
    if label not in (shape.completion, shape.messages, shape.text):
        row[label] = answer
    return row


def _shape_of(ws: Any, version: int) -> Shape | None:
    info = ws.catalog.get_model(ws.config.name, version).get("info") or {}
    shape = (info.get("description") or {}).get("shape")
    return Shape(**shape) if isinstance(shape, dict) and shape.get("kind") else None


def _logged_inputs(ws: Any, request_id: str, rec: dict[str, Any]) -> dict[str, Any]:
    """The request's inputs as logged (the labelled frame's label column may have replaced one of them)."""
    row = ws.catalog.get_prediction(request_id)
    return dict((row or {}).get("inputs") or rec)
