"""Scores of generated text against references, small and dependency-free: exact match (whitespace and
case folded), the label accuracy when the references are a few repeated labels, chrF (character n-gram
F-score, Popović 2015: n = 1..6, beta = 2, whitespace removed, as sacreBLEU's default ``chrF``) and
ROUGE-L (the F-measure of the longest common subsequence of tokens; CJK characters are tokens of their
own, so Chinese answers are scored by character as other languages are by word)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["chrf", "exact_match", "is_label_set", "normalize", "perplexity", "rouge_l", "text_metrics", "tokens"]

_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_\u3400-\u9fff\uf900-\ufaff]+", re.UNICODE)
LABEL_MAX_CLASSES = 20


def normalize(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed, trailing punctuation dropped."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.rstrip(".。!！?？ ")


def exact_match(pred: str, ref: str) -> float:
    return float(normalize(pred) == normalize(ref))


def tokens(text: str) -> list[str]:
    """Words, and each CJK character alone (lower-cased)."""
    return _TOKEN.findall(text.casefold())


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1 over :func:`tokens` (0 when either side has none, 1 for two empty texts)."""
    p, r = tokens(pred), tokens(ref)
    if not p or not r:
        return float(not p and not r)
    prev = [0] * (len(r) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def chrf(pred: str, ref: str, *, n: int = 6, beta: float = 2.0) -> float:
    """Sentence chrF in [0, 1]: the F-beta of character n-gram precision and recall averaged over n."""
    p, r = "".join(pred.split()), "".join(ref.split())
    if not p or not r:
        return float(not p and not r)
    precisions, recalls = [], []
    for k in range(1, n + 1):
        pg = Counter(p[i:i + k] for i in range(len(p) - k + 1))
        rg = Counter(r[i:i + k] for i in range(len(r) - k + 1))
        if not pg or not rg:
            continue
        hit = sum((pg & rg).values())
        precisions.append(hit / sum(pg.values()))
        recalls.append(hit / sum(rg.values()))
    if not precisions:
        return 0.0
    prec, rec = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if prec + rec == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * prec * rec / (b2 * prec + rec)


def is_label_set(references: Sequence[str]) -> bool:
    """Whether the references are labels: at most 20 distinct short answers, each seen at least twice."""
    counts = Counter(normalize(r) for r in references)
    return 1 < len(counts) <= LABEL_MAX_CLASSES and min(counts.values()) >= 2 and \
        all(len(tokens(k)) <= 4 for k in counts)


def text_metrics(references: Sequence[str], predictions: Sequence[str]) -> dict[str, Any]:
    """Mean exact match, chrF and ROUGE-L (and ``label_accuracy`` when the references are labels)."""
    n = len(references)
    if n == 0:
        return {"exact_match": None, "chrf": None, "rouge_l": None}
    out: dict[str, Any] = {
        "exact_match": sum(exact_match(p, r) for p, r in zip(predictions, references, strict=True)) / n,
        "chrf": sum(chrf(p, r) for p, r in zip(predictions, references, strict=True)) / n,
        "rouge_l": sum(rouge_l(p, r) for p, r in zip(predictions, references, strict=True)) / n,
    }
    if is_label_set(references):
        out["label_accuracy"] = out["exact_match"]
    return {k: round(float(v), 6) for k, v in out.items()}


def perplexity(nll_sum: float, n_tokens: int) -> float | None:
    """exp(mean negative log-likelihood per token); None without tokens."""
    if n_tokens <= 0:
        return None
    return float(math.exp(min(nll_sum / n_tokens, 700.0)))
