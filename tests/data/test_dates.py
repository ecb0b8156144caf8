"""Which columns are dates, and that training and the server read each value alike (``data.dates``).

dateutil reads ``m01`` as a time on 1 January of year 1 and ``may`` as a date, so codes and month
names were inferred as datetimes: the feature was destroyed in training and the served model then
refused the table's own rows. A date column's values must carry their year.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from modelloop.data.dates import infer_datetime_format, parse_datetimes, read_datetime
from modelloop.data.sources import infer_schema

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def kind_of(values: list, n: int = 120) -> tuple[str, dict[str, str]]:
    """The inferred kind of a column of ``values`` (repeated to ``n`` rows), and the formats found."""
    col = (values * (n // len(values) + 1))[:n]
    schema = infer_schema(pd.DataFrame({"x": col, "y": [0, 1] * (n // 2)}), target="y")
    return schema.columns["x"], schema.datetime_formats


@pytest.mark.parametrize("values", [
    [f"m{i:02d}" for i in range(1, 26)],                   # merchant codes: year 1 to dateutil
    MONTHS,                                                # bank-marketing's `month`
    ["January", "February", "March", "April", "May"],
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
    ["08:15", "12:30", "23:59"],                           # times of day carry no date
    ["Q1", "Q2", "Q3", "Q4"],
], ids=["codes", "month-abbr", "month-names", "weekday-abbr", "weekday-names", "times", "quarters"])
def test_codes_and_names_are_categorical(values) -> None:
    assert kind_of(values)[0] == "categorical"


@pytest.mark.parametrize(("values", "fmt"), [
    (["2024-03-05", "2023-12-31"], None),
    (["2024-03-05 08:55:00", "2023-12-31 23:10:05"], None),
    (["2024-03-05T08:55:00Z", "2023-12-31t23:10:05z", "2024-01-02T03:04:05+02:00"], None),
    (["03/05/2024 08:55", "12/31/2023 23:10"], "%m/%d/%Y %H:%M"),
    (["03/05/2024", "13/05/2024"], "%d/%m/%Y"),            # a day past 12: the column is day-first
    (["5 Mar 2024", "17 Apr 2023"], "%d %b %Y"),
    (["5 Mar 2024", "2024-03-05", "03/05/2024 08:55", "March 7, 2023"], None),   # mixed spellings
], ids=["iso-date", "iso-time", "rfc3339", "us", "day-first", "day-month-name", "mixed"])
def test_dates_in_every_spelling_are_datetime_with_their_format(values, fmt) -> None:
    assert kind_of(values) == ("datetime", {"x": fmt} if fmt else {})


@pytest.mark.parametrize(("values", "kind"), [
    (["1", "2.5", "030", "-4"], "numeric"),
    (["2024", "2023", "2022"], "numeric"),                 # years alone are numbers
    (["yes", "no", "Yes", "NO"], "boolean"),
    (["y", "n"], "boolean"),
])
def test_numbers_and_booleans_as_text_keep_their_kind(values, kind) -> None:
    assert kind_of(values)[0] == kind


def test_a_day_first_column_is_read_day_first_throughout() -> None:
    s = pd.Series(["03/05/2024", "13/05/2024", None])
    fmt = infer_datetime_format(s)
    parsed = parse_datetimes(s, fmt)
    assert parsed[0] == pd.Timestamp("2024-05-03") and parsed[1] == pd.Timestamp("2024-05-13")
    assert pd.isna(parsed[2])
    assert read_datetime("03/05/2024", fmt) == dt.datetime(2024, 5, 3)
    assert read_datetime("2024-05-03", fmt) == dt.datetime(2024, 5, 3)   # ISO 8601 always reads


SPELLINGS = ["2024-03-05", "2024-03-05 08:55:00", "2024-03-05T08:55:00Z", "2024-03-05t08:55:00z",
             "2024-03-05T10:55:00+02:00", "2024-03-05 08:55:00.250", "20240305", "2024-03",
             "03/05/2024 08:55", "5 Mar 2024", "March 5, 2024", "Tue, 05 Mar 2024 08:55:00 +0000",
             " 2024-03-05 ", "m01", "may", "Monday", "12:30", "not a date", "03/05/24",
             "0001-01-01T02:00:01+02:01", "9999-12-31T23:00:00-02:00", "0001-01-01T00:00:00", "1500-06-01T00:00:00Z"]


@pytest.mark.parametrize("fmt", [None, "%m/%d/%Y %H:%M", "%d %b %Y"])
def test_training_reads_a_column_as_the_server_reads_each_value(fmt) -> None:
    """``parse_datetimes`` (training features) and ``read_datetime`` (the request validator) agree on
    every value: the same instant (naive UTC), or nothing for both."""
    column = parse_datetimes(pd.Series(SPELLINGS), fmt)
    for value, trained in zip(SPELLINGS, column, strict=True):
        served = read_datetime(value, fmt)
        if served is not None and served.tzinfo is not None:
            served = served.astimezone(dt.timezone.utc).replace(tzinfo=None)
        want = pd.NaT if served is None else pd.Timestamp(served)
        assert (pd.isna(want) and pd.isna(trained)) or want == trained, (value, fmt, served, trained)


def test_a_value_without_its_year_is_no_date() -> None:
    assert read_datetime("m01") is None and read_datetime("may") is None and read_datetime("12:30") is None
    assert read_datetime("5 Mar 2024") == dt.datetime(2024, 3, 5)
    assert parse_datetimes(pd.Series(["m01", "may", "5 Mar 2024"])).isna().tolist() == [True, True, False]



@pytest.mark.parametrize("values", [
    ["3/5/24", "12/31/23"], ["24-03-05", "23-12-31"], ["5 Mar 24", "17 Apr 23"], ["Mar 5", "Apr 17"],
    ["05.03.24 08:55", "31.12.23 23:10"],
])
def test_a_column_without_four_digit_years_is_no_date_column(values) -> None:
    """Schema inference skips the date readers for a column whose values mostly lack a four-digit year
    (they cost ~0.1 s a text column on a million rows); the readers' verdict on such a column is the same."""
    from modelloop.data.dates import is_datetime_column

    assert not is_datetime_column(pd.Series(values * 30))
    assert kind_of(values)[0] == "categorical"


@pytest.mark.parametrize("value", ["0001-01-01T02:00:01+02:01", "9999-12-31T23:00:00-02:00"])
def test_an_aware_time_outside_the_years_in_utc_is_no_date(value) -> None:
    """Year 1 with a positive offset is year 0 in UTC, 9999 with a negative one year 10000: NumPy held them
    and Python's datetime cannot, so the server's conversion raised (HTTP 500) and the profile's time span
    of such a column raised ValueError (a traceback from ``modelloop profile``). Both readers say no date."""
    assert read_datetime(value) is None
    assert parse_datetimes(pd.Series([value, "2024-03-05T10:55:00+02:00"])).isna().tolist() == [True, False]
    assert read_datetime("0001-01-01T00:00:00") == dt.datetime(1, 1, 1)  # the range's own ends still read
