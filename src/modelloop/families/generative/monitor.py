"""The served answers' figures of a generative model, read back from the prediction log (``modelloop
monitor``'s ``serving`` section; ``/metrics`` counts the same as they happen, ``serving/metrics.py``).

Each OpenAI-route completion is logged with ``completion_tokens``, ``prompt_tokens``, ``finish_reason``,
``ttft_ms`` and the request's ``latency_ms`` (``serving/openai.py``). Over the window's completions:

- ``tokens_per_s``: completion tokens over the completions' wall time, prefill included (what a client
  gets), and the median of each completion's own rate;
- ``ttft_ms``: time to the first token, median and 95th percentile;
- ``empty_share``: answers with no text (an end token or a stop string first); ``truncated_share``:
  answers cut at ``max_tokens`` (``finish_reason: length``); ``cancelled_share``: clients gone mid-stream;
- the prompt and answer lengths in tokens (mean, max).

Rows without these fields (``/v1/predict`` answers) are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["serving_figures"]


def serving_figures(recent: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the window's logged completions (``None`` figures when there are none)."""
    rows = [r for r in recent if isinstance(r.get("output"), dict) and "completion_tokens" in r["output"]]
    out: dict[str, Any] = {"completions": len(rows), "other_answers": len(recent) - len(rows)}
    if not rows:
        return {**out, "tokens_per_s": None, "tokens_per_s_median": None, "ttft_ms_p50": None,
                "ttft_ms_p95": None, "empty_share": None, "truncated_share": None, "cancelled_share": None,
                "prompt_tokens": None, "completion_tokens": None}
    tokens = np.asarray([float(r["output"].get("completion_tokens") or 0) for r in rows])
    seconds = np.asarray([max(float(r.get("latency_ms") or 0.0), 1e-3) / 1000.0 for r in rows])
    ttft = np.asarray([float(r["output"]["ttft_ms"]) for r in rows if r["output"].get("ttft_ms") is not None])
    prompt = np.asarray([float(r["output"].get("prompt_tokens") or 0) for r in rows])
    finish = [r["output"].get("finish_reason") for r in rows]
    text = [r["output"].get("text") for r in rows]
    n = len(rows)
    return {**out,
            "tokens_per_s": round(float(tokens.sum() / seconds.sum()), 2),
            "tokens_per_s_median": round(float(np.median(tokens / seconds)), 2),
            "ttft_ms_p50": round(float(np.percentile(ttft, 50)), 2) if len(ttft) else None,
            "ttft_ms_p95": round(float(np.percentile(ttft, 95)), 2) if len(ttft) else None,
            "empty_share": sum(not (isinstance(t, str) and t.strip()) for t in text) / n,
            "truncated_share": sum(f == "length" for f in finish) / n,
            "cancelled_share": sum(f == "cancelled" for f in finish) / n,
            "prompt_tokens": {"mean": round(float(prompt.mean()), 2), "max": int(prompt.max())},
            "completion_tokens": {"mean": round(float(tokens.mean()), 2), "max": int(tokens.max())}}
