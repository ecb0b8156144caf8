"""EDA-style text augmentation: random swap, random deletion and synonym replacement, and for Chinese
character edits and punctuation back and forth.

Wei & Zou's "EDA" operations, applied to the *training* rows of a text model only, so validation and
test scores are measured on real text. Everything is a pure function of its inputs and a seed, and
:func:`augment_frame` returns a report (counts per operation, the settings, a hash of the synonym
map) that the train stage stores with the run, so an augmented training set can be rebuilt exactly.

Texts are split into *words* with their trailing whitespace kept, so an operation never changes the
spacing or punctuation around the words it does not touch:

* Latin-script words (``[A-Za-z0-9'-]`` and accented letters) are one word each;
* Chinese/Japanese runs, which have no spaces, are cut by greedy longest match against the synonym
  map's keys (so ``退款`` can be replaced by ``退钱``), else into single characters;
* punctuation is kept in place and never swapped or deleted;
* ``swap`` and ``delete`` move whole words only: a lone Chinese character (a run cut into characters)
  is a piece of a word, so they leave it alone; ``char`` edits characters inside a run on purpose
  (neighbours trade places, or one is doubled), ``punct`` turns full-width marks (，。！？) into ASCII
  ones and back, and ``synonyms: zh`` is a small bundled Chinese list (``data/zh_synonyms.json``).

Example::

    synonyms = load_synonyms({"refund": ["reimbursement"], "退款": ["退钱"]})
    rows, report = augment_frame(df, "message", n_per_example=1, p=0.1, synonyms=synonyms, seed=0)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

__all__ = ["BUNDLED_ZH", "OPS", "augment_frame", "augment_text", "load_synonyms", "synonyms_hash"]

OPS: tuple[str, ...] = ("swap", "delete", "synonym", "char", "punct")
BUNDLED_ZH = "zh"  # ``synonyms: zh``: the small Chinese synonym list shipped as data/zh_synonyms.json
# full-width Chinese punctuation and its ASCII counterpart: ``punct`` turns one into the other
_PUNCT = {"，": ",", "。": ".", "！": "!", "？": "?", "：": ":", "；": ";", "（": "(", "）": ")", "“": '"', "”": '"'}
_PUNCT_BACK = {v: k for k, v in _PUNCT.items() if k not in "”"}
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PIECE = re.compile(rf"([A-Za-z0-9\u00c0-\u024f'’-]+|[{_CJK}]+|[^\s{_CJK}A-Za-z0-9\u00c0-\u024f])(\s*)")
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")


# --------------------------------------------------------------------------- synonyms
def load_synonyms(spec: str | Path | Mapping[str, Any] | None, *, root: Path | str = ".") -> dict[str, list[str]]:
    """A synonym map from a JSON file (relative to ``root``) or a mapping, as symmetric groups.

    Each entry ``word: [syn, ...]`` is a group whose members may all replace each other, so
    ``{"refund": ["reimbursement"]}`` also lets ``reimbursement`` become ``refund``. Latin keys are
    matched case-insensitively.
    """
    if spec is None:
        return {}
    if spec == BUNDLED_ZH:
        spec = json.loads((Path(__file__).with_name("zh_synonyms.json")).read_text(encoding="utf-8"))
    if isinstance(spec, (str, Path)):
        path = Path(spec) if Path(spec).is_absolute() else Path(root) / spec
        if not path.is_file():
            raise ConfigError(f"model.augment.synonyms: file not found: {path}; give a JSON file "
                              '{"word": ["synonym", ...]} or the mapping itself')
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"model.augment.synonyms: {path} is not UTF-8 JSON ({exc})") from None
    if not isinstance(spec, Mapping):
        raise ConfigError(f"model.augment.synonyms: must map words to lists of synonyms, got "
                          f"{type(spec).__name__}")
    groups: dict[str, set[str]] = {}
    for word, values in spec.items():
        listed = [values] if isinstance(values, str) else values
        if not isinstance(listed, Sequence) or not all(isinstance(v, str) for v in listed):
            raise ConfigError(f"model.augment.synonyms: '{word}' must map to a list of strings, "
                              f"got {json.dumps(values, default=str)}")
        members = {_key(w) for w in [str(word), *listed] if str(w).strip()}
        for m in members:
            groups.setdefault(m, set()).update(members - {m})
    return {k: sorted(v) for k, v in sorted(groups.items()) if v}


def synonyms_hash(synonyms: Mapping[str, list[str]]) -> str:
    """Short content hash of a synonym map (recorded with the run's augmentation settings)."""
    blob = json.dumps({k: list(v) for k, v in synonyms.items()}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _key(word: str) -> str:
    return word.strip().lower()


# --------------------------------------------------------------------------- words
def _split(text: str, synonyms: Mapping[str, list[str]], longest: int) -> list[list[Any]]:
    """``[[word, trailing_whitespace, is_word], ...]`` covering ``text`` exactly (leading space aside)."""
    pieces: list[list[Any]] = []
    for m in _PIECE.finditer(text):
        token, space = m.group(1), m.group(2)
        if _CJK_RUN.match(token):
            parts = _cut_cjk(token, synonyms, longest)
            pieces.extend([p, "", True] for p in parts[:-1])
            pieces.append([parts[-1], space, True])
        else:
            pieces.append([token, space, bool(re.match(r"\w", token))])
    return pieces


def _cut_cjk(run: str, synonyms: Mapping[str, list[str]], longest: int) -> list[str]:
    out, i = [], 0
    while i < len(run):
        for size in range(min(longest, len(run) - i), 0, -1):
            if size == 1 or run[i:i + size] in synonyms:
                out.append(run[i:i + size])
                i += size
                break
    return out


def _join(pieces: list[list[Any]], lead: str) -> str:
    return (lead + "".join(w + s for w, s, _ in pieces)).rstrip() if pieces else ""


def _n_changes(n_words: int, p: float) -> int:
    return max(1, int(round(p * n_words)))


# --------------------------------------------------------------------------- operations
def augment_text(text: str, op: str, *, rng: np.random.Generator, p: float = 0.1,
                 synonyms: Mapping[str, list[str]] | None = None) -> str:
    """One augmented copy of ``text`` by ``op`` (swap | delete | synonym); the text itself when the
    operation cannot apply (one word only, no word with a synonym)."""
    if op not in OPS:
        raise ConfigError(f"model.augment.ops: '{op}' is not allowed; allowed: {', '.join(OPS)}")
    synonyms = synonyms or {}
    if op == "punct":
        return _punct(text, rng, p)
    longest = max((len(k) for k in synonyms), default=1)
    lead = text[: len(text) - len(text.lstrip())]
    pieces = _split(text, synonyms, longest)
    if op == "char":
        return _join(_char_edit(pieces, rng, p), lead)
    # swap and delete move whole words: a single Chinese character is a piece of a word, never moved
    # or dropped alone (``char`` edits characters, within a run, on purpose)
    words = [i for i, piece in enumerate(pieces) if piece[2] and (op == "synonym" or not _lone_cjk(piece[0]))]
    if op == "synonym":
        candidates = [i for i in words if _key(pieces[i][0]) in synonyms]
        if not candidates:
            return text
        for i in rng.choice(candidates, size=min(len(candidates), _n_changes(len(words), p)), replace=False):
            pieces[i][0] = _match_case(pieces[i][0], str(rng.choice(synonyms[_key(pieces[i][0])])))
    elif len(words) < 2:
        return text
    elif op == "swap":
        for _ in range(_n_changes(len(words), p)):
            a, b = rng.choice(words, size=2, replace=False)
            pieces[a][0], pieces[b][0] = pieces[b][0], pieces[a][0]
    else:
        drop = {i for i in words if rng.random() < p} or {int(rng.choice(words))}
        if len(drop) == len(words):
            drop.discard(int(rng.choice(words)))
        pieces = [piece for i, piece in enumerate(pieces) if i not in drop]
    return _join(pieces, lead)


def _lone_cjk(word: str) -> bool:
    return len(word) == 1 and bool(_CJK_RUN.match(word))


def _char_edit(pieces: list[list[Any]], rng: np.random.Generator, p: float) -> list[list[Any]]:
    """Character-level edits inside Chinese runs: two neighbouring characters of one run trade places,
    or one character is doubled (a typing slip), at ``p`` of the run's characters (at least one)."""
    runs: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if _lone_cjk(piece[0]) and runs and runs[-1][-1] == i - 1 and not pieces[i - 1][1]:
            runs[-1].append(i)
        elif _lone_cjk(piece[0]):
            runs.append([i])
    spots = [i for run in runs for i in run[:-1]]
    if not spots:
        return pieces
    for i in rng.choice(spots, size=min(len(spots), _n_changes(len(spots) + 1, p)), replace=False):
        if rng.random() < 0.5:
            pieces[i][0], pieces[i + 1][0] = pieces[i + 1][0], pieces[i][0]
        else:
            pieces[i][0] = pieces[i][0] * 2
    return pieces


def _punct(text: str, rng: np.random.Generator, p: float) -> str:
    """Punctuation back and forth: full-width Chinese marks become ASCII ones and ASCII ones full-width
    (each mark with probability ``p``, at least one), as people type them either way."""
    marks = [i for i, ch in enumerate(text) if ch in _PUNCT or ch in _PUNCT_BACK]
    if not marks:
        return text
    chars = list(text)
    chosen = {int(i) for i in rng.choice(marks, size=min(len(marks), _n_changes(len(marks), p)), replace=False)}
    for i in chosen:
        chars[i] = _PUNCT.get(chars[i]) or _PUNCT_BACK[chars[i]]
    return "".join(chars)


def _match_case(original: str, replacement: str) -> str:
    if original[:1].isupper() and replacement[:1].islower():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def augment_frame(df: pd.DataFrame, text: str, *, n_per_example: int = 1, p: float = 0.1,
                  synonyms: Mapping[str, list[str]] | None = None, ops: Sequence[str] = OPS,
                  seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """New rows only (each a copy of a row of ``df`` with column ``text`` augmented) and a report.

    Each copy uses one operation drawn from ``ops`` (synonym replacement only where the text has a
    word in the map); copies equal to their source or to an earlier copy are not kept.
    """
    if text not in df.columns:
        raise DataError(f"augmentation: text column '{text}' is not in the data")
    if not 0 < p <= 0.5:
        raise ConfigError(f"model.augment.p: must be > 0 and <= 0.5, got {p}")
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise ConfigError(f"model.augment.ops: {bad or 'empty'} not allowed; allowed: {', '.join(OPS)}")
    synonyms = dict(synonyms or {})
    rng = np.random.default_rng(seed)
    sources, texts, used = [], [], {op: 0 for op in ops}
    for pos, value in enumerate(df[text].to_numpy(dtype=object)):
        if not isinstance(value, str) or not value.strip():
            continue
        seen = {value}
        for _ in range(n_per_example):
            op = str(rng.choice(list(ops)))
            new = augment_text(value, op, rng=rng, p=p, synonyms=synonyms)
            if new.strip() and new not in seen:
                seen.add(new)
                sources.append(pos)
                texts.append(new)
                used[op] += 1
    out = df.iloc[sources].reset_index(drop=True)
    out[text] = texts
    report = {"rows_in": len(df), "rows_added": len(out), "by_op": used, "n_per_example": n_per_example,
              "p": p, "ops": list(ops), "seed": seed, "synonym_groups": len(synonyms),
              "synonyms_sha256": synonyms_hash(synonyms) if synonyms else None}
    return out, report
