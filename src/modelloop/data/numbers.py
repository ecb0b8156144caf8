"""Numbers written as text: one reading for ingest, type inference and ``modelloop predict``'s files.

Why: spreadsheets export large numbers with thousands separators (``1,100``, ``12,345.67``), and
``pd.to_numeric`` reads none of them. A column of incomes where a few rows pass 999 then failed ingest
("3 row(s) hold text ... '1,100'"), and one where every value did was not even read as a number. A
value is read with its separators when they group the digits in threes before any decimal point
(``1,100``, ``-12,345.6``); ``0,5`` or ``1,10`` (a decimal comma, a typo) is not a number here and is
reported as before. Full-width digits (``１２``, what a Chinese or Japanese input method types) are the
digits they stand for (Unicode NFKC), as the ``normalize_text`` rule reads them. Amounts and rates as a
spreadsheet formats them, ``$1,234.50``, ``-€12``, ``12 £``, ``¥3000``, ``12.5%``, are the numbers they show
(a percentage as its fraction, 0.125, as a spreadsheet holds it): a price column written so was an
``identifier`` (every value distinct text, never a feature) and a rate column 300 categories. The same
reading everywhere, so a file ``predict`` scores is read as ingest read the training data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CURRENCIES", "GROUPED_NUMBER", "read_numbers"]

GROUPED_NUMBER = r"^\s*[-+]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\s*$"
CURRENCIES = "$€£¥₹"  # a symbol before the number (after its sign) or after it; NFKC makes ￥ ¥
_UNIT = rf"^\s*(?P<sign>[-+]?)\s*[{CURRENCIES}]?\s*(?P<number>[-+]?[0-9.,]+)\s*[{CURRENCIES}]?\s*(?P<percent>%?)\s*$"


def read_numbers(values: pd.Series) -> pd.Series:
    """``values`` as float numbers (``pd.to_numeric``), text with thousands separators included; what
    is not a number is NaN (callers tell a missing value from text that is not a number)."""
    numbers = pd.to_numeric(values, errors="coerce")
    unread = (numbers.isna() & values.notna()).to_numpy()
    if unread.any():  # one pass over what pandas did not read: full-width digits (１２ is 12), then separators
        text = values[unread].astype(str).str.normalize("NFKC")
        unit = text.str.extract(_UNIT)
        has_unit = (unit["number"].notna() & (text.str.strip() != unit["number"])).to_numpy(dtype=bool)
        text = text.where(~has_unit, unit["sign"] + unit["number"])
        grouped = text.str.match(GROUPED_NUMBER).to_numpy(dtype=bool)
        text = text.where(~grouped, text.str.replace(",", "", regex=False))
        read = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", copy=True)
        read[has_unit & (unit["percent"] == "%").to_numpy(dtype=bool)] /= 100
        numbers = numbers.astype("float64")
        numbers.iloc[np.flatnonzero(unread)] = read
    return numbers
