"""Readers and schema inference on real files: encodings, malformed rows, formats, SQL."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelloop.data.sources import check_types, detect_encoding, infer_schema, read_table
from modelloop.errors import DataError

ROWS = "name,city,amount\n张三,北京,12.5\nJosé,São Paulo,7\nZoë,Zürich,3.25\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
def test_csv_encodings_read_correctly(tmp_path, encoding):
    text = ROWS if encoding.startswith("utf") else "name,city,amount\n张三,北京,12.5\n李四,上海,7\n王五,广州,3\n" * 20
    p = tmp_path / "a.csv"
    p.write_bytes(text.encode(encoding))
    df, report = read_table(str(p))
    assert df.columns.tolist() == ["name", "city", "amount"]  # no BOM left in the first name
    assert df["name"].iloc[0] == "张三" and df["city"].iloc[0] == "北京"


def test_latin1_is_detected(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes(("name,city\n" + "José,São Paulo\nZoë,Zürich\nFrançois,Besançon\n" * 30).encode("latin-1"))
    df, report = read_table(str(p))
    assert df["name"].iloc[0] == "José" and df["city"].iloc[2] == "Besançon"
    explicit, _ = read_table(str(p), encoding="latin-1")
    assert explicit.equals(df)


GERMAN = ["Müller", "München", "Schäfer", "Köln", "Größe", "Straße", "Düsseldorf", "Universität", "für", "Bäcker",
          "Grüße", "Jäger", "Tür", "schön", "Nürnberg", "Zürich", "Österreich", "Übung", "Hans", "Berlin", "ja", "über"]
FRENCH = ["Hélène", "Orléans", "Jérôme", "Besançon", "François", "élève", "Noël", "Paris", "crème", "brûlée", "hôtel"]
SPANISH = ["María", "Bogotá", "José", "São Paulo", "Peña", "Muñoz", "Núñez", "Cádiz", "León", "Málaga", "Ibáñez"]


@pytest.mark.parametrize("words", [GERMAN, FRENCH, SPANISH], ids=["german", "french", "spanish"])
def test_windows_1252_words_are_never_taken_for_chinese_or_japanese(tmp_path, words):
    """Excel's CSV on Western Windows is Windows-1252. An umlaut and the letter after it are a GB18030 pair,
    so 275 of these 300 German files and all the French ones were read as Chinese: 'Müller' as 'M黮ler', a header's
    'Größe' another column name. Accented letters inside Latin words keep a file Windows-1252 now (and
    tests/core/test_shift_jis.py keeps Chinese and Japanese theirs)."""
    import random

    rng = random.Random(0)
    for _ in range(300):
        rows = [";".join(rng.choice(words) for _ in range(3)) + f";{rng.randint(0, 999)},{rng.randint(0, 99)}"
                for _ in range(rng.randint(2, 60))]
        raw = ("name;stadt;größe;betrag\n" + "\n".join(rows) + "\n").encode("cp1252")
        assert detect_encoding(raw) == "cp1252", raw.decode("cp1252")
    p = tmp_path / "kunden.csv"
    p.write_bytes("Name;Größe\nMüller;1,5\nSchäfer;2\n".encode("cp1252"))
    df, report = read_table(str(p))
    assert report["encoding"] == "cp1252" and list(df.columns) == ["Name", "Größe"]
    assert df["Name"].tolist() == ["Müller", "Schäfer"] and df["Größe"].tolist() == [1.5, 2.0]


@pytest.mark.parametrize("encoding, detected", [("utf-16", "utf-16"), ("utf-16-le", "utf-16-le"),
                                                 ("utf-16-be", "utf-16-be"), ("utf-32", "utf-32")])
def test_excels_unicode_text_is_utf16_and_tab_separated(tmp_path, encoding, detected):
    """Excel's "Unicode Text" export is UTF-16 with a byte-order mark, tab-separated, saved as .txt: it was read
    as Windows-1252, its header one column 'ÿþb e t r a g'. A BOM, or UTF-16's NUL high bytes, say it now."""
    text = "betrag\tstadt\ty\n" + "1.5\tMünchen\tja\n2\t北京\tnein\n" * 20
    raw = text.encode(encoding)
    assert detect_encoding(raw) == detected
    (tmp_path / "data.txt").write_bytes(raw)
    df, report = read_table(str(tmp_path / "data.txt"))
    assert list(df.columns) == ["betrag", "stadt", "y"] and report["delimiter"] == "\t"
    assert df["stadt"].tolist()[:2] == ["München", "北京"] and df["betrag"].sum() == 70


def test_a_file_that_is_not_the_encoding_set_names_the_line_and_byte_of_the_file(tmp_path):
    """Past the first read buffer too: the place is counted in the file, not in pandas' buffer."""
    head = b"message,label\n" + "été ok,a\n".encode() * 200_000   # 2.2 MB of valid UTF-8
    p = tmp_path / "t.csv"
    p.write_bytes(head + b"bad \xff here,b\n")
    with pytest.raises(DataError, match=rf"cannot be decoded as utf-8 \(invalid start byte at line 200002, "
                                        rf"byte {len(head) + 4}\); set data.encoding"):
        read_table(str(p), encoding="utf-8")
    p = tmp_path / "t.jsonl"
    p.write_bytes(b'{"message": "ok"}\n{"message": "bad \xff"}\n')
    with pytest.raises(DataError, match=r"cannot be decoded as utf-8 \(invalid start byte at line 2, byte 35\); "
                                        r"JSON Lines files are UTF-8"):
        read_table(str(p))
    p.write_bytes(b'\xef\xbb\xbf{"message": "ok"}\n')      # UTF-8 with a byte-order mark, as Windows tools write
    assert read_table(str(p))[0]["message"].tolist() == ["ok"]


def test_detect_encoding_maps_gbk_family_to_gb18030():
    assert detect_encoding(("客户投诉:我的卡被扣了两次钱," * 50).encode("gbk")) == "gb18030"
    assert detect_encoding("\ufeffa,b\n".encode("utf-8")) == "utf-8-sig"


def test_detect_encoding_forgives_only_a_character_cut_at_the_end_of_the_sample():
    assert detect_encoding("é".encode() * 5 + b"\xc3") == "utf-8-sig"      # the sample cut inside 'é'
    assert detect_encoding(b"name\nJos\xe9\n") == "cp1252"                # Latin-1 'é' near the end


def test_malformed_rows_fail_with_line_number_or_are_skipped_and_counted(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,b,y\n1,2,0\n3,4,5,6\n7,8,1\n9,10,11,12\n")
    with pytest.raises(DataError, match=r"line 3: expected 3 fields, saw 4"):
        read_table(str(p))
    df, report = read_table(str(p), on_bad_lines="skip")
    assert len(df) == 2 and report["skipped_lines"] == [3, 5]


@pytest.mark.parametrize("content, match", [
    (b"", "file is empty"),
    (b"a,b,y\n", "no data rows"),
])
def test_empty_inputs(tmp_path, content, match):
    p = tmp_path / "e.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_table(str(p))


def test_missing_file_and_wrong_format(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(str(tmp_path / "nope.csv"))
    fake = tmp_path / "x.parquet"
    fake.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a valid parquet file"):
        read_table(str(fake))
    odd = tmp_path / "x.docx"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"unknown file type '.docx'; allowed: .csv, .parquet, .jsonl, .xlsx"):
        read_table(str(odd))
    not_a_book = tmp_path / "x.xlsx"
    not_a_book.write_text("x")
    with pytest.raises(DataError, match="not a valid Excel workbook"):
        read_table(str(not_a_book))


def test_parquet_jsonl_and_sql_give_the_same_table(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.5, 3.0], "c": ["x", "y", "x"], "y": [0, 1, 0]})
    df.to_parquet(tmp_path / "t.parquet")
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as con:
        df.to_sql("tx", con, index=False)
    got = [read_table(str(tmp_path / "t.parquet"))[0], read_table(str(tmp_path / "t.jsonl"))[0],
           read_table(f"sqlite:///{db}", query="select * from tx where a > 0")[0]]
    for g in got:
        assert g["a"].tolist() == [1.0, 2.5, 3.0] and g["c"].astype(str).tolist() == ["x", "y", "x"]
    with pytest.raises(DataError, match="data.query failed"):
        read_table(f"sqlite:///{db}", query="select * from missing_table")


def test_schema_inference_kinds():
    n = 200
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "tx_id": [f"tx_{i:05d}" for i in range(n)],
        "amount": rng.lognormal(3, 1, n),
        "merchant": rng.choice(["a", "b", "c"], n),
        "flag": rng.choice(["yes", "no"], n),
        "ts": pd.date_range("2026-01-01", periods=n, freq="h").astype(str),
        "note": [f"the customer said the card was charged twice on day {i}" for i in range(n)],
        "y": rng.integers(0, 2, n),
    })
    s = infer_schema(df, target="y")
    assert s.columns == {"tx_id": "identifier", "amount": "numeric", "merchant": "categorical",
                         "flag": "boolean", "ts": "datetime", "note": "text", "y": "numeric"}
    assert s.features() == ["amount", "merchant", "flag", "ts"]
    s2 = infer_schema(df, target="y", id="tx_id", overrides={"merchant": "identifier"})
    assert "merchant" not in s2.features()
    with pytest.raises(DataError, match="'nope' named in the config is not in the data"):
        infer_schema(df, target="y", overrides={"nope": "numeric"})


def test_a_files_unnamed_row_numbers_are_an_identifier_not_a_feature(tmp_path):
    """R's write.csv and pandas' to_csv write the row numbers under a blank header by default: read back,
    pandas names them ``Unnamed: 0``. They must not train (a file sorted by its target leaks it), while
    an unnamed column of measurements stays a feature."""
    import polars as pl

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"glu": rng.integers(60, 200, 120), "y": rng.integers(0, 2, 120)})
    frame.index += 1  # R counts from 1
    frame.to_csv(tmp_path / "t.csv")  # the index, under a blank header
    df, _ = read_table(str(tmp_path / "t.csv"))
    assert "Unnamed: 0" in df.columns
    for table in (df, pl.from_pandas(df)):
        s = infer_schema(table, target="y")
        assert s.columns["Unnamed: 0"] == "identifier" and s.features() == ["glu"]
    measured = df.assign(**{"Unnamed: 0": rng.integers(0, 5, 120)})  # repeats: not row numbers
    assert infer_schema(measured, target="y").columns["Unnamed: 0"] == "numeric"


def test_numeric_column_with_text_names_column_and_row():
    df = pd.DataFrame({"amount": ["1.5", "2", "abc", "4"] * 10, "y": [0, 1] * 20})
    s = infer_schema(df, target="y", overrides={"amount": "numeric"})
    with pytest.raises(DataError, match=r"column 'amount' is numeric but 10 row\(s\) hold text, e.g. row 3 "
                                        r"\(file line 4\): 'abc'"):
        check_types(df, s)
    fixed, report = check_types(df, s, coerce=True)
    assert fixed["amount"].isna().sum() == 10 and report["amount"]["coerced_to_missing"] == 10
    # mostly-numeric but undeclared columns are caught too
    df2 = pd.DataFrame({"amount": [str(i) for i in range(50)] + ["n/a?"], "y": [0, 1] * 25 + [0]})
    with pytest.raises(DataError, match="column 'amount'"):
        check_types(df2, infer_schema(df2, target="y"))


def test_numbers_with_thousands_separators_are_numbers(tmp_path):
    """Incomes exported from a spreadsheet: "1,100" failed ingest as text in a numeric column, and a
    column where every value had separators was not read as numbers at all. Digits grouped in threes
    are read as the number; a decimal comma or a bad grouping is still text, named as before."""
    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(10, 5000, 200), 1)
    frame = pd.DataFrame({"income": [f"{v:,.1f}" if v >= 1000 else f"{v:.1f}" for v in values],
                          "big": [f"{v * 1000:,.0f}" for v in values], "y": rng.integers(0, 2, 200)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    df, _ = read_table(str(tmp_path / "t.csv"))
    for table in (df, pl.from_pandas(df)):
        assert infer_schema(table, target="y").columns | {} == {"income": "numeric", "big": "numeric", "y": "numeric"}
    fixed, report = check_types(df, infer_schema(df, target="y"))
    np.testing.assert_allclose(fixed["income"], values)
    np.testing.assert_allclose(fixed["big"], np.round(values * 1000))
    assert report == {}
    odd = df.assign(income=df["income"].where(df.index != 7, "1,10"))
    with pytest.raises(DataError, match=r"column 'income' is numeric but 1 row\(s\) hold text, e.g. row 8 .*'1,10'"):
        check_types(odd, infer_schema(odd, target="y"))


def test_amounts_and_rates_as_a_spreadsheet_formats_them_are_numbers(tmp_path):
    """Prices exported as $1,234.50 were an identifier (every value distinct text, never a feature) and rates
    written 12.5% three hundred categories; they are the numbers they show, a percentage its fraction, for a
    pandas and a Polars (Parquet) read alike; a symbol with no number, or a malformed one, is still text."""
    from modelloop.data.numbers import read_numbers

    rng = np.random.default_rng(2)
    prices, rates = np.round(rng.uniform(1, 5000, 300), 2), np.round(rng.uniform(0, 60, 300), 1)
    frame = pd.DataFrame({"price": [f"${v:,.2f}" for v in prices], "rate": [f"{v}%" for v in rates],
                          "fee": [f"{v:.0f} €" for v in prices], "y": rng.integers(0, 2, 300)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    df, _ = read_table(str(tmp_path / "t.csv"))
    for table in (df, pl.from_pandas(df)):
        assert infer_schema(table, target="y").columns == {"price": "numeric", "rate": "numeric", "fee": "numeric",
                                                          "y": "numeric"}
    fixed, report = check_types(df, infer_schema(df, target="y"))
    np.testing.assert_allclose(fixed["price"], prices)
    np.testing.assert_allclose(fixed["rate"], rates / 100)
    np.testing.assert_allclose(fixed["fee"], np.round(prices))
    assert report == {}
    got = read_numbers(pd.Series(["-$5", "$-5", "¥3000", "１２％", "+3%", "$", "%", "1.2.3$", "$1,23", "5%%", "0,5"]))
    np.testing.assert_allclose(got[:5], [-5, -5, 3000, 0.12, 0.03])
    assert got[5:].isna().all()


def test_codes_with_leading_zeros_are_read_as_written_and_are_not_numbers(tmp_path):
    """Zip codes and account numbers written with leading zeros (00782, 000123) were read as numbers: the
    zeros lost (00782 stored as 782, so a client sending the code as written got an unseen category) and a
    column of them numeric. They are text as written, categories or identifiers, for pandas and Polars alike;
    a column of plain whole numbers, or one where 0 stands alone, is still numeric."""
    rng = np.random.default_rng(4)
    n = 300
    frame = pd.DataFrame({"zip": [f"{v:05d}" for v in rng.integers(0, 120, n)],
                          "account": [f"{i:06d}" for i in range(n)],
                          "count": rng.integers(0, 50, n), "flag": rng.integers(0, 2, n), "y": rng.integers(0, 2, n)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    df, _ = read_table(str(tmp_path / "t.csv"))
    assert df["zip"].tolist() == frame["zip"].tolist() and df["account"].iloc[5] == "000005"
    for table in (df, pl.from_pandas(df)):
        kinds = infer_schema(table, target="y").columns
        assert {c: kinds[c] for c in ("zip", "account", "count", "flag")} == {
            "zip": "categorical", "account": "identifier", "count": "numeric", "flag": "numeric"}, type(table)
    fixed, report = check_types(df, infer_schema(df, target="y"))
    assert fixed["zip"].tolist() == frame["zip"].tolist() and report == {}


def test_full_width_digits_are_numbers():
    """Prices typed with a Chinese input method (１２, ３.５) beside ASCII ones made the column an identifier;
    they are the numbers they stand for, at ingest and in predict's files alike (read_numbers)."""
    rng = np.random.default_rng(1)
    values = rng.integers(1, 500, 120).astype(float) / 2
    full = str.maketrans("0123456789.", "０１２３４５６７８９．")
    df = pd.DataFrame({"价格": [f"{v:g}".translate(full) if i % 3 else f"{v:g}" for i, v in enumerate(values)],
                       "y": [0, 1] * 60})
    schema = infer_schema(df, target="y")
    assert schema.columns["价格"] == "numeric"
    np.testing.assert_allclose(check_types(df, schema)[0]["价格"], values)


def test_text_in_a_date_column_is_named_like_text_in_a_numeric_one():
    """'not a date' among timestamps was kept, read as missing by training and refused by the server,
    so the model could not serve its own training rows: now an error naming the row, or missing with
    data.on_type_error: coerce. Dates in the column's own format pass."""
    stamps = pd.date_range("2024-01-01", periods=120, freq="D")
    df = pd.DataFrame({"applied": stamps.strftime("%d/%m/%Y %H:%M"), "y": [0, 1] * 60})
    schema = infer_schema(df, target="y")
    assert schema.columns["applied"] == "datetime" and schema.datetime_format("applied") == "%d/%m/%Y %H:%M"
    assert check_types(df, schema)[1] == {}
    df.loc[[4, 9], "applied"] = ["not a date", "soon"]
    with pytest.raises(DataError, match=r"column 'applied' holds dates but 2 row\(s\) hold text that is not one, "
                                        r"e.g. row 5 \(file line 6\): 'not a date'.*data.on_type_error: coerce"):
        check_types(df, schema)
    fixed, report = check_types(df, schema, coerce=True)
    assert fixed["applied"].isna().sum() == 2 and fixed["applied"].iloc[0] == df["applied"].iloc[0]
    assert report["applied"]["coerced_to_missing"] == 2


def test_long_columns_are_judged_as_a_full_read_judges_them(monkeypatch):
    """Text columns longer than the sample are judged on one, read lazily from Polars, with the
    verdicts of a full read: a stray value deep in a yes/no column, and a column whose share of
    distinct values a sample would overstate (0.85 here, 0.95 in a 20,000-row sample: an identifier)
    keep their kinds."""
    import polars as pl

    from modelloop.data import sources

    n = 60_000
    rng = np.random.default_rng(0)
    flag = rng.choice(["yes", "no"], n).astype(object)
    flag[50_000] = "maybe"
    df = pd.DataFrame({
        "flag": flag,
        "yes_no": rng.choice(["yes", "no"], n),
        "mid": [f"m{v}" for v in rng.integers(0, 180_000, n)],
        "code": [f"c{i:06d}" for i in range(n)],
        "note": rng.choice(["the card was charged twice today", "refund the late fee please now"], n),
        "when": pd.date_range("2026-01-01", periods=n, freq="min").astype(str),
        "num_text": rng.integers(0, 999, n).astype(str),
        "cat": rng.choice([f"L{i}" for i in range(30)], n),
        "amount": rng.normal(size=n),
        "y": rng.integers(0, 2, n),
    })
    sampled = infer_schema(df, target="y")
    lazy = infer_schema(pl.from_pandas(df).lazy(), target="y")
    monkeypatch.setattr(sources, "_SAMPLE_ROWS", n)  # every column read whole
    full = infer_schema(df, target="y")
    assert sampled.columns == lazy.columns == full.columns == {
        "flag": "categorical", "yes_no": "boolean", "mid": "categorical", "code": "identifier", "note": "text",
        "when": "datetime", "num_text": "numeric", "cat": "categorical", "amount": "numeric", "y": "numeric"}
    assert sampled.dtypes == lazy.dtypes == full.dtypes


def test_a_database_urls_password_is_masked_in_messages_and_the_read_report():
    """A read report is kept in the catalog and shown by `ingest --json` and the dashboard; messages reach
    terminals and CI logs: neither may carry the password of data.source's URL."""
    from modelloop.errors import ConfigError, shown_url

    assert shown_url("postgresql+psycopg://app:s3cret@db:5432/shop") == "postgresql+psycopg://app:***@db:5432/shop"
    assert shown_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(ConfigError) as info:
        read_table("postgresql://app:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(info.value) and "app:***@" in str(info.value)
    with pytest.raises(DataError) as failed:  # nothing listens on port 1: the connection error names the URL
        read_table("postgresql+psycopg://app:s3cret@127.0.0.1:1/none", query="SELECT 1")
    assert "s3cret" not in str(failed.value) and "app:***@" in str(failed.value)


def test_the_read_report_of_a_postgresql_source_keeps_no_password(pg_url):
    """The local server trusts every connection, so a password in the URL is ignored by it: the read works
    and its report (what the catalog keeps) names the source masked."""
    url = pg_url.replace("postgres@", "postgres:s3cret@", 1)
    df, report = read_table(url, query="SELECT 1 AS x, 2 AS y")
    assert df.to_dict("records") == [{"x": 1, "y": 2}]
    assert "s3cret" not in report["source"] and "postgres:***@" in report["source"]
