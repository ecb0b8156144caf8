"""Numbers written as text: one reading for ingest, type inference and ``modelloop predict``'s files.

Why: spreadsheets export large numbers with thousands separators (``1,100``, ``12,345.67``), and
``pd.to_numeric`` reads none of them. A column of incomes where a few rows pass 999 then failed ingest
("3 row(s) hold text ... '1,100'"), and one where every value did was not even read as a number. A
value is read with its separators when they group the digits in threes before any decimal point
(``1,100``, ``-12,345.6``); ``0,5`` or ``1,10`` (a decimal comma, a typo) is not a number here and is
reported as before. Full-width digits (``１２``, what a Chinese or Japanese input method types) are the
digits they stand for (Unicode NFKC), as the ``normalize_text`` rule reads them. The same reading everywhere, so a file ``predict`` scores is read as ingest read
the training data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["GROUPED_NUMBER", "read_numbers"]

GROUPED_NUMBER = r"^\s*[-+]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\s*$"


def read_numbers(values: pd.Series) -> pd.Series:
    """``values`` as float numbers (``pd.to_numeric``), text with thousands separators included; what
    is not a number is NaN (callers tell a missing value from text that is not a number)."""
    numbers = pd.to_numeric(values, errors="coerce")
    unread = (numbers.isna() & values.notna()).to_numpy()
    if unread.any():  # one pass over what pandas did not read: full-width digits (１２ is 12), then separators
        text = values[unread].astype(str).str.normalize("NFKC")
        grouped = text.str.match(GROUPED_NUMBER).to_numpy(dtype=bool)
        text = text.where(~grouped, text.str.replace(",", "", regex=False))
        numbers = numbers.astype("float64")
        numbers.iloc[np.flatnonzero(unread)] = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64")
    return numbers
