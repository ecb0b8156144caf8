"""One exception hierarchy for user mistakes.

Every error a user can fix (a bad config value, a missing file, an unknown column) is a
``ModelloopError``; the CLI maps it to exit code 2 and prints its one-line message. Anything else
is a bug and exits 1 with a traceback. Each class is also a fitting built-in so that Python callers
can catch what they expect (``ValueError``, ``LookupError``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ConfigError", "DataError", "ModelloopError", "NotFoundError", "StateError", "cap_list", "shown_json",
           "shown_number", "shown_url"]

LIST_LIMIT = 10


def cap_list(values: Iterable[Any], limit: int = LIST_LIMIT, show: Callable[[Any], str] = str) -> str:
    """``a, b, c and 490 more``: the values an error message lists, at most ``limit`` of them.

    A message stays one readable line however many values are wrong or allowed (a float target
    taken for classes once listed 10 KB of labels on one line); the count says how many were left out.
    """
    items = list(values)
    shown = ", ".join(show(v) for v in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def shown_number(value: float) -> str:
    """A metric as a person reads it: four decimals (``0.8123``), or from 1,000 up thousands separated with
    one decimal (an rmse on prices: ``15,393.1``, not ``15393.1195``); the HTML reports write figures alike."""
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"


def shown_json(value: Any) -> str:
    """A value as a message quotes it: JSON (``"正面"``, ``null``, ``[1, 2]``, as the client sent it), its
    letters as written. ``json.dumps`` escapes every non-ASCII character, so a Chinese label was shown to
    a person as ``"\\u6b63\\u9762"``; control characters stay escaped, so a message keeps to one line."""
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def shown_url(url: str) -> str:
    """A database URL as a message may show it: ``postgresql://app:***@db/shop``, the password masked (a
    message reaches terminals, logs and CI output; SQLAlchemy's ``hide_password`` does the same)."""
    return re.sub(r"(://[^:/@\s]+):[^@\s]*@", r"\1:***@", url)


class ModelloopError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class ConfigError(ModelloopError, ValueError):
    """``modelloop.yaml`` (or an argument) holds a value that is not allowed."""


class DataError(ModelloopError, ValueError):
    """Input data cannot be used as it is: missing, empty, malformed or of the wrong type."""


class NotFoundError(ModelloopError, LookupError):
    """A named object (dataset version, model, column, request id) does not exist."""


class StateError(ModelloopError, RuntimeError):
    """The project is not in a state where the command makes sense (e.g. no model trained yet)."""
