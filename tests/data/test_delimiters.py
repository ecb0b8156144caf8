"""A CSV's delimiter and decimal mark (``data/delimiters.py``): Excel in much of Europe saves semicolons
between fields and commas in numbers; read with commas, such a file was one column."""

from __future__ import annotations

import pandas as pd
import pytest

from modelloop.data.delimiters import detect_dialect, file_dialect
from modelloop.data.sources import read_table

GERMAN = "betrag;land;kunde\n34,56;DE;nein\n82,16;AT;ja\n-1,5;CH;ja\n"


@pytest.mark.parametrize("text, delimiter, decimal", [
    (GERMAN, ";", ","),
    ("a,b,c\n1,2,3\n4.5,5,6\n", ",", "."),
    ("name;amount, EUR;label\nx;34,56;yes\ny;1,5;no\n", ";", ","),  # a comma in the header: most fields win
    ("a;b\n1.5;2\n3,5;4\n", ";", "."),           # a decimal point anywhere: the comma is no decimal mark
    ("a\tb\n1,5\t2\n", "\t", "."),                # a tab file's 1,5 may be a list: data.decimal says
    ("a|b|c\n1|2|3\n", "|", "."),
    ("review\nGreat; loved it\nBad; meh\n", ",", "."),  # one column: its text's semicolons are no fields
    ('id,comment\n1,"a;b;c"\n2,d\n', ",", "."),  # quoted semicolons
    ("a;b\n" + "1;2\n" * 9 + "3;4;5;6\n", ";", "."),  # one malformed record in ten: on_bad_lines' to report
    ("a;b\n1;2\n3;4;5;6\n7;8;9\n", ",", "."),     # a third consistent: no delimiter reads it
])
def test_the_header_and_first_records_decide(text, delimiter, decimal) -> None:
    assert detect_dialect(text) == (delimiter, decimal)


def test_a_set_value_is_kept() -> None:
    assert detect_dialect(GERMAN, delimiter=",") == (",", ".")
    assert detect_dialect(GERMAN, decimal=".") == (";", ".")
    assert detect_dialect("a,b\n1,2\n", decimal=",") == (",", ",")


def test_an_excel_csv_from_germany_reads_as_its_numbers(tmp_path) -> None:
    """Windows-1252 (Excel's code page there), semicolons, decimal commas: the numbers are numbers, and the
    read says how it read the file; ``data.delimiter`` set to the comma reads the one column it was."""
    path = tmp_path / "kunden.csv"
    path.write_bytes((GERMAN.replace("land", "größe")).encode("cp1252"))
    df, report = read_table(str(path))
    assert list(df.columns) == ["betrag", "größe", "kunde"]
    assert df["betrag"].tolist() == [34.56, 82.16, -1.5]
    assert (report["delimiter"], report["decimal"], report["encoding"]) == (";", ",", "cp1252")
    df, _ = read_table(str(path), delimiter=",")
    assert list(df.columns) == ["betrag;größe;kunde"]


def test_a_tsv_file_is_tab_separated_and_a_rewritten_file_is_detected_again(tmp_path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("a;b\tc\n1;2\t3\n")
    assert file_dialect(path) == ("\t", ".")
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    assert file_dialect(path) == (",", ".")
    path.write_text(GERMAN + "9,9;IT;ja\n")
    assert file_dialect(path) == (";", ",")
    assert pd.read_csv(path, sep=";", decimal=",")["betrag"].iloc[-1] == 9.9


def test_excels_empty_trailing_columns_are_left_out_and_reported(tmp_path) -> None:
    """A table Excel saved with empty columns after it (';;' ending each line, blank headers): pandas named
    them 'Unnamed: 3', they became features every client had to send as null. They are left out, and the
    read says so; an empty column with a name, and a blank-headed one with values, are kept."""
    (tmp_path / "t.csv").write_text("a;b;notes;;\n1,5;x;;;\n2;;;7;\n;;;;\n")
    df, report = read_table(str(tmp_path / "t.csv"))
    assert list(df.columns) == ["a", "b", "notes", "Unnamed: 3"] and df["a"].tolist()[:2] == [1.5, 2.0]
    assert report["empty_columns_dropped"] == ["Unnamed: 4"]


def test_a_header_that_names_a_column_twice_is_reported_with_the_names_it_was_read_as(tmp_path) -> None:
    """pandas reads a header's second 'amount' as 'amount.1', silently; the read report says so (and the
    ingest summary prints it)."""
    (tmp_path / "t.csv").write_text("amount;amount;y\n1;2;a\n3;4;b\n")
    df, report = read_table(str(tmp_path / "t.csv"))
    assert list(df.columns) == ["amount", "amount.1", "y"]
    assert report["repeated_columns"] == {"amount": ["amount", "amount.1"]}
    (tmp_path / "u.csv").write_text("a,b\n1,2\n")
    assert "repeated_columns" not in read_table(str(tmp_path / "u.csv"))[1]


def test_excels_error_values_are_missing_values(tmp_path) -> None:
    """A formula that failed leaves #DIV/0! (or #VALUE!, #REF!) in Excel's CSV and workbook: a numeric column
    with one stopped ingest as text in a number column, and a text column learnt it as a category."""
    from modelloop.data.sources import infer_schema

    ratio = ["#DIV/0!" if i % 10 == 0 else f"{i / 3:.4f}" for i in range(60)]
    kind = ["#REF!" if i % 7 == 0 else "ab"[i % 2] for i in range(60)]
    rows = [f"{i},{r},{k},{i % 2}" for i, (r, k) in enumerate(zip(ratio, kind, strict=True))]
    (tmp_path / "t.csv").write_text("id,ratio,kind,y\n" + "\n".join(rows) + "\n")
    df, _ = read_table(str(tmp_path / "t.csv"))
    assert df["ratio"].isna().sum() == 6 and df["kind"].isna().sum() == 9
    assert set(df["kind"].dropna()) == {"a", "b"}
    assert infer_schema(df, target="y").columns["ratio"] == "numeric"
    pd.DataFrame({"ratio": ["#DIV/0!", 1.5]}).to_excel(tmp_path / "e.xlsx", index=False)
    assert read_table(str(tmp_path / "e.xlsx"))[0]["ratio"].isna().tolist() == [True, False]
