"""Drift of what users ask: the served prompts' sentence embeddings against the training prompts'.

Length and language mix (the monitor's text statistics of the prompt column) miss a shift that keeps
them: users asking about another product, another kind of request, a new topic in the same language.
The monitor also compares the prompts' meaning, embedded by the text family's frozen multilingual
Universal Sentence Encoder (``families/text/encoders.py``: Chinese and English alike, no PyTorch):

1. the reference: up to ``REFERENCE_PROMPTS`` training prompts (seeded sample), embedded once per model
   version and cached in ``.modelloop/cache/promptemb-<name>-<version>.npz``;
2. the current prompts: each recent log row's question, i.e. its user turns (OpenAI chat route), its
   ``prompt`` (completions route) or its prompt column (``/v1/predict``); rows with none are counted;
3. PCA fitted on the reference, both sides projected on its first ``COMPONENTS`` components, each compared
   as a numeric feature (``data.shift.compare_distributions``, PSI on reference quantile bins + KS, with
   ``small_samples``: bins and the PSI floor follow the sample sizes) as ``prompt_embedding:pc1`` ...; they
   join the monitor's features, so alerts and ``retrain.on_drift`` act on them. The section also gives
   the cosine between the two sides' mean embeddings (1: the same centre).

Plain-text models (``text`` shape) have no training prompts: the section says so and nothing is compared.
Without the encoder's packages the section names the install command.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pandas as pd

from .data import Shape, as_messages

__all__ = [
    "COMPONENTS",
    "PREFIX",
    "REFERENCE_PROMPTS",
    "compare_embeddings",
    "prompt_drift",
    "prompt_of_log_row",
    "training_prompts",
]

COMPONENTS = 4
REFERENCE_PROMPTS = 500
PREFIX = "prompt_embedding:pc"


def training_prompts(frame: pd.DataFrame, shape: Shape) -> list[str]:
    """The user's side of each training row: the prompt, or a chat's user turns before its answer."""
    if shape.prompted:
        return [str(p) for p in frame[str(shape.prompt)].fillna("") if str(p).strip()]
    if shape.kind != "chat":
        return []
    out = []
    for value in frame[str(shape.messages)]:
        try:
            text = _user_text(as_messages(value))
        except Exception:  # a malformed chat row is the profile's finding, not drift's
            continue
        if text:
            out.append(text)
    return out


def prompt_of_log_row(inputs: dict[str, Any], shape: Shape) -> str:
    """The question of one logged request ('' when it has none)."""
    messages = inputs.get("messages", inputs.get(str(shape.messages)) if shape.messages else None)
    if messages is not None:
        try:
            return _user_text(as_messages(messages))
        except Exception:  # a malformed request was refused (400); nothing to compare
            return ""
    prompt = inputs.get("prompt", inputs.get(str(shape.prompt)) if shape.prompt else None)
    if isinstance(prompt, list):
        prompt = "\n".join(str(p) for p in prompt)
    return str(prompt).strip() if isinstance(prompt, str) else ""


def _user_text(messages: list[dict[str, str]]) -> str:
    asked = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
    return "\n".join(m["content"] for m in asked if m["role"] == "user").strip()


def compare_embeddings(
    ref: np.ndarray,
    cur: np.ndarray,
    prefix: str,
    *,
    psi_threshold: float,
    p_threshold: float,
    components: int = COMPONENTS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drift entries of the first principal components of ``ref`` (both sides projected on them), named
    ``{prefix}{i}``, and what was compared (components, bins, explained variance, centroid cosine)."""
    from ...data.shift import compare_distributions

    mean = ref.mean(axis=0)
    _, singular, axes = np.linalg.svd(ref - mean, full_matrices=False)
    k = int(min(components, len(ref) - 1, axes.shape[0]))
    names = [f"{prefix}{i + 1}" for i in range(k)]
    bins = int(np.clip(len(ref) // 20, 2, 10))
    features = compare_distributions(
        pd.DataFrame((ref - mean) @ axes[:k].T, columns=names),
        pd.DataFrame((cur - mean) @ axes[:k].T, columns=names),
        dict.fromkeys(names, "numeric"),
        bins=bins,
        psi_threshold=psi_threshold,
        p_threshold=p_threshold,
        small_samples=True,
    )
    variance = singular**2
    centre = cur.mean(axis=0)
    cosine = float(mean @ centre / max(float(np.linalg.norm(mean) * np.linalg.norm(centre)), 1e-12))
    return features, {
        "components": k,
        "bins": bins,
        "dimensions": int(ref.shape[1]),
        "explained_variance": [round(float(v / max(variance.sum(), 1e-12)), 4) for v in variance[:k]],
        "centroid_cosine": round(cosine, 4),
    }


def _encoder() -> Any:
    from ..text.encoders import USE, available, default_engine, frozen_encoder

    if not available(USE):
        return None
    return frozen_encoder(USE, default_engine(USE), 1)


def _reference(ws: Any, model_row: dict[str, Any], encoder: Any, prompts: list[str]) -> np.ndarray:
    key = hashlib.sha256("\x00".join([encoder.name, encoder.engine, *sorted(prompts)]).encode()).hexdigest()
    path = ws.state / "cache" / f"promptemb-{model_row['name']}-{model_row['version']}.npz"
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key:
                return np.asarray(z["embeddings"])
    emb = encoder.embed_pooled(prompts)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, key=np.array(key), embeddings=emb)
    os.replace(tmp, path)
    return emb


def prompt_drift(
    ws: Any,
    model_row: dict[str, Any],
    reference: pd.DataFrame,
    recent: list[dict[str, Any]],
    *,
    psi_threshold: float,
    p_threshold: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(features ``prompt_embedding:pc<i>`` -> drift entry, ``{"prompt_embedding": what was compared}``)."""
    from ..text.encoders import USE
    from .data import detect_shape

    shape = detect_shape(ws.config.data, [c for c in reference.columns if not str(c).startswith("_")])
    asked = [prompt_of_log_row(r.get("inputs") or {}, shape) for r in recent]
    current = [p for p in asked if p]
    known = training_prompts(reference, shape)
    if len(known) > REFERENCE_PROMPTS:
        known = list(pd.Series(known).sample(n=REFERENCE_PROMPTS, random_state=0))
    section: dict[str, Any] = {
        "encoder": USE,
        "current_prompts": len(current),
        "rows_without_prompt": len(asked) - len(current),
        "reference_prompts": len(known),
        "components": 0,
    }
    encoder = _encoder()
    why = (
        "plain-text training rows have no prompts to compare with"
        if shape.kind == "text"
        else f"the {USE} encoder is not installed (pip install 'modelloop[multilingual]')"
        if encoder is None
        else "fewer than 2 served prompts or 3 training prompts: embeddings not compared"
        if len(current) < 2 or len(known) < 3
        else None
    )
    if why is not None:
        return {}, {"prompt_embedding": {**section, "why": why}}
    ref = _reference(ws, model_row, encoder, known)
    cur = encoder.embed_pooled(current)[0]
    features, compared = compare_embeddings(
        ref, cur, PREFIX, psi_threshold=psi_threshold, p_threshold=p_threshold
    )
    return features, {"prompt_embedding": {**section, **compared}}
