"""``modelloop predict``: a file in, the same rows out with the served answers added, written whole or
not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from toy import Toy

from clirun import cli


@pytest.fixture
def project(toy: Toy) -> Path:
    (toy.root / "modelloop.yaml").write_text(yaml.safe_dump(toy.raw))
    return toy.root


def _served(toy: Toy, rows: pd.DataFrame) -> list[dict]:
    from modelloop.serving.runtime import load_runtime

    runtime = load_runtime(toy.ws)
    body = json.dumps({"records": json.loads(rows.to_json(orient="records"))}).encode()
    return runtime.predict(runtime.validator.validate_json(body))


def test_predict_csv_keeps_the_columns_and_adds_the_served_answers(toy, project, capsys, tmp_path):
    rows = pd.read_csv(project / "data.csv").head(120)
    rows.to_csv(tmp_path / "in.csv", index=False)
    code, out, err = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv"),
                          "--json"], capsys, project)
    assert code == 0, err
    res = json.loads(out)
    assert res["rows"] == 120 and res["columns"] == ["label", "proba_0", "proba_1"]
    assert res["model"] == {"name": "toy", "version": 1}
    got = pd.read_csv(tmp_path / "out.csv")
    assert list(got.columns) == [*rows.columns, "label", "proba_0", "proba_1"]  # the target too: it was there
    served = _served(toy, rows.drop(columns=["y"]))
    assert got["label"].tolist() == [s["label"] for s in served]
    np.testing.assert_allclose(got["proba_1"], [s["probabilities"]["1"] for s in served], atol=1e-6)


def test_an_input_column_named_like_an_answer_is_kept_as_given_and_the_answer_keeps_its_name(toy, project,
                                                                                            tmp_path):
    # a labelled file whose labels are in 'label' (an image folder project's target): the answers overwrote
    # them. The answers keep the names programs read; the input's column is kept as given_label.
    from modelloop.serving.batch import predict_file

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(50).assign(label="given")
    rows.to_csv(tmp_path / "in.csv", index=False)
    res = predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "out.csv")
    assert res["columns"] == ["label", "proba_0", "proba_1"]
    got = pd.read_csv(tmp_path / "out.csv")
    assert list(got.columns) == [*rows.columns[:-1], "given_label", "label", "proba_0", "proba_1"]
    assert (got["given_label"] == "given").all()
    assert got["label"].tolist() == [s["label"] for s in _served(toy, rows.drop(columns=["label"]))]


def test_predict_streams_jsonl_into_parquet_in_chunks(toy, project, tmp_path):
    from modelloop.serving.batch import predict_file

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(95)
    rows.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    seen: list[int] = []
    res = predict_file(toy.ws, tmp_path / "in.jsonl", tmp_path / "out.parquet", chunk_rows=20,
                       progress=seen.append)
    assert seen == [20, 40, 60, 80, 95] and res["rows"] == 95
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert got["tid"].tolist() == rows["tid"].tolist()
    assert got["label"].tolist() == [s["label"] for s in _served(toy, rows)]


def test_a_row_the_server_would_refuse_stops_the_run_and_writes_nothing(project, capsys, tmp_path):
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(50).astype({"amount": object})
    rows.loc[37, "amount"] = "twelve"
    rows.to_csv(tmp_path / "in.csv", index=False)
    code, _, err = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv")],
                       capsys, project)
    assert code == 2
    assert "row 38, amount: must be a number" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["in.csv"]  # no output, no temporary file


def _same_answers_as_plain(project: Path, capsys, tmp_path: Path, name: str) -> pd.DataFrame:
    """``predict`` of ``{name}.csv`` and of ``plain.csv`` (the same rows, its amounts written plain) give the
    same answers: the former's output."""
    answers = {}
    for each in ("plain", name):
        code, _, err = cli(["predict", "--data", str(tmp_path / f"{each}.csv"), "--out",
                            str(tmp_path / f"{each}-out.csv")], capsys, project)
        assert code == 0, err
        answers[each] = pd.read_csv(tmp_path / f"{each}-out.csv", dtype={"amount": str})
    pd.testing.assert_frame_equal(answers[name].drop(columns=["amount"]), answers["plain"].drop(columns=["amount"]))
    return answers[name]


def test_numbers_with_thousands_separators_are_read_as_ingest_reads_them(toy, project, capsys, tmp_path):
    """A spreadsheet's export writes 1,234.5: predict reads it as the number (it stopped: "must be a
    number"), and answers as for the plain figures; a decimal comma (0,5) is still refused."""
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(60)
    rows = rows.assign(amount=np.round(rows["amount"].abs() * 1000, 1))
    rows.to_csv(tmp_path / "plain.csv", index=False)
    rows.assign(amount=[f"{v:,.1f}" for v in rows["amount"]]).to_csv(tmp_path / "grouped.csv", index=False)
    assert "," in pd.read_csv(tmp_path / "grouped.csv")["amount"].astype(str).str.cat()
    _same_answers_as_plain(project, capsys, tmp_path, "grouped")
    rows.astype({"amount": object}).assign(amount=["0,5"] * len(rows)).to_csv(tmp_path / "comma.csv", index=False)
    code, _, err = cli(["predict", "--data", str(tmp_path / "comma.csv"), "--out", str(tmp_path / "c.csv")],
                       capsys, project)
    assert code == 2 and "row 1, amount: must be a number" in err and "'0,5'" in err


def test_amounts_written_with_a_currency_sign_are_read_as_ingest_reads_them(toy, project, capsys, tmp_path):
    """An export of the same rows with its amounts formatted ($1,234.50, or 12 € after the number): the same
    answers as for the plain figures (predict stopped: "must be a number")."""
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(60)
    rows.to_csv(tmp_path / "plain.csv", index=False)
    money = [f"${v:,.2f}" if i % 2 else f"{v:.2f} €" for i, v in enumerate(rows["amount"])]
    rows.assign(amount=[m if pd.notna(v) else "" for m, v in zip(money, rows["amount"], strict=True)]).to_csv(
        tmp_path / "money.csv", index=False)
    assert _same_answers_as_plain(project, capsys, tmp_path, "money")["amount"].str.contains("$", regex=False).any()


def test_with_coerce_a_value_ingest_would_store_missing_is_scored_missing(toy, project, capsys, tmp_path):
    """A project whose data.on_type_error is coerce trained on 'twelve' as a missing amount; predict on that
    file stopped at the row ("must be a number"). Now it scores the row as training read it and says how
    many values it read as missing; without coerce it still stops."""
    raw = {**toy.raw, "data": {**toy.raw["data"], "on_type_error": "coerce"}}
    (project / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(50).astype({"amount": object})
    rows.loc[37, "amount"] = "twelve"
    rows.to_csv(tmp_path / "in.csv", index=False)
    rows.assign(amount=rows["amount"].where(rows.index != 37, None)).to_csv(tmp_path / "gap.csv", index=False)
    code, out, err = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv"),
                          "--json"], capsys, project)
    assert code == 0, err
    assert json.loads(out)["coerced"] == {"amount": 1}
    code, _, err = cli(["predict", "--data", str(tmp_path / "gap.csv"), "--out", str(tmp_path / "gap-out.csv")],
                       capsys, project)
    assert code == 0, err
    got, gap = pd.read_csv(tmp_path / "out.csv"), pd.read_csv(tmp_path / "gap-out.csv")
    pd.testing.assert_frame_equal(got.drop(columns=["amount"]), gap.drop(columns=["amount"]))
    code, out, _ = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o2.csv")],
                       capsys, project)
    assert code == 0 and "values read as missing (data.on_type_error: coerce, as at ingest): amount 1" in out


def test_the_rows_reach_the_model_with_their_digits(toy, project):
    """predict sends each chunk through the server's validator as JSON: pandas wrote 10 decimal places, so
    -0.000123456789 reached the model as -0.0001234568, where /v1/predict keeps every digit."""
    from modelloop.serving import batch
    from modelloop.serving.runtime import load_runtime

    runtime = load_runtime(toy.ws)
    seen: list = []
    score = runtime.score_records
    runtime.score_records = lambda records: (seen.extend(records), score(records))[1]
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(3)
    rows["amount"] = [1700000000.123, 12345.6789012, -0.000123456789]
    batch.score_chunk(runtime, rows, 0)
    assert [r["amount"] for r in seen] == [1700000000.123, 12345.6789012, -0.000123456789]


def test_an_interrupted_run_leaves_no_output(toy, project, tmp_path):
    from modelloop.serving.batch import predict_file

    pd.read_csv(project / "data.csv").head(60).to_csv(tmp_path / "in.csv", index=False)

    def stop(rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "out.parquet", chunk_rows=20, progress=stop)
    assert os.listdir(tmp_path) == ["in.csv"]


@pytest.mark.parametrize("args, message", [
    (["--data", "in.xls", "--out", "o.csv"], "save it as .xlsx or CSV); allowed: .csv"),
    (["--data", "in.xlsx", "--out", "o.csv"], "not a valid Excel workbook"),
    (["--data", "missing.csv", "--out", "o.csv"], "file not found"),
    (["--data", "in.csv", "--out", "o.docx"], "--out: unknown file type '.docx'"),
    (["--data", "in.csv", "--out", "in.csv"], "is the input file"),
])
def test_bad_arguments_exit_2_naming_what_is_wrong(project, capsys, tmp_path, args, message):
    pd.read_csv(project / "data.csv").head(5).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "in.xlsx").write_text("x")
    (tmp_path / "in.xls").write_text("x")
    code, _, err = cli(["predict", "-c", str(project / "modelloop.yaml"), *args], capsys, tmp_path)
    assert code == 2 and message in err, err


def test_a_file_without_a_model_column_names_it(project, capsys, tmp_path):
    pd.read_csv(project / "data.csv").drop(columns=["country"]).head(5).to_csv(tmp_path / "in.csv", index=False)
    code, _, err = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.csv")],
                       capsys, project)
    assert code == 2 and "has no column(s) country" in err


def test_a_blank_header_is_written_back_blank(toy, project, capsys, tmp_path):
    """R's write.csv and pandas' to_csv leave the row-name column's header blank; pandas reads it as
    ``Unnamed: 0``. The output keeps the user's header, so R reads it back with ``row.names = 1``."""
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(30)
    rows.index = rows.index + 101
    rows.to_csv(tmp_path / "in.csv")  # index written under a blank header
    assert (tmp_path / "in.csv").read_text().startswith(",")
    code, _, err = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv")],
                       capsys, project)
    assert code == 0, err
    header = (tmp_path / "out.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "" and "Unnamed: 0" not in header and header[-1] == "proba_1"
    got = pd.read_csv(tmp_path / "out.csv", index_col=0)
    assert got.index.tolist() == list(range(101, 131))


def test_a_gbk_csv_saved_by_excel_and_a_bom_jsonl_are_read_as_ingest_reads_them(toy, project, tmp_path):
    # Excel in China saves a CSV as GBK: predict failed with pandas' UnicodeDecodeError traceback (ingest
    # and evaluate read it); a JSON Lines file with a BOM (Windows Notepad) failed too
    from modelloop.serving.batch import predict_file

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(40)
    rows["备注"] = ["客户说退款还没到，请尽快处理"] * len(rows)
    (tmp_path / "utf8.csv").write_text(rows.to_csv(index=False), encoding="utf-8")
    (tmp_path / "gbk.csv").write_bytes(rows.to_csv(index=False).encode("gbk"))
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + rows.to_json(orient="records", lines=True,
                                                                         force_ascii=False).encode())
    predict_file(toy.ws, tmp_path / "utf8.csv", tmp_path / "want.csv")
    want = pd.read_csv(tmp_path / "want.csv")
    for name in ("gbk.csv", "bom.jsonl"):
        predict_file(toy.ws, tmp_path / name, tmp_path / "got.csv")
        got = pd.read_csv(tmp_path / "got.csv")
        assert got["备注"].tolist() == rows["备注"].tolist()
        pd.testing.assert_frame_equal(got[["label", "proba_1"]], want[["label", "proba_1"]])


def test_a_file_that_does_not_decode_is_a_clear_error(toy, project, capsys, tmp_path):
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(5)
    (tmp_path / "bad.jsonl").write_bytes(rows.to_json(orient="records", lines=True).encode()
                                         + '{"备注": "退款"}\n'.encode("gbk"))
    code, _, err = cli(["predict", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o.csv")],
                       capsys, project)
    assert code == 2 and "bad.jsonl cannot be decoded as utf-8" in err and "line 6" in err and "save it as UTF-8" in err


def test_a_jsonl_output_keeps_chinese_text_as_written(toy, project, tmp_path):
    # pandas' to_json escaped every non-ASCII character: {"\u5907\u6ce8":"\u9000\u6b3e"} for {"备注":"退款"}
    from modelloop.serving.batch import predict_file

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(5).assign(备注="退款")
    rows.to_csv(tmp_path / "in.csv", index=False)
    predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "out.jsonl")
    text = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert '"备注":"退款"' in text and "\\u" not in text
    assert [json.loads(line)["备注"] for line in text.splitlines()] == ["退款"] * 5


def test_a_shift_jis_csv_is_detected_and_read_right(toy, project, tmp_path):
    # Japanese Excel's CSV was detected as GB18030 and its Japanese read as other, Chinese characters
    from modelloop.serving.batch import predict_file

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(30).assign(メモ="返金がまだ届いていません")
    (tmp_path / "in.csv").write_bytes(rows.to_csv(index=False).encode("cp932"))
    predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv")["メモ"].tolist() == ["返金がまだ届いていません"] * 30


@pytest.mark.parametrize("encoding, note", [
    # GBK with more symbols than Chinese characters: auto takes it for Latin-1 ('温度' read as 'ÎÂ¶È')
    ("gbk", "温度≤30°C，误差±0.5‰"),
    # Shift-JIS (a Japanese team's Excel) in half-width katakana only: auto takes it for Windows-1252 and
    # reads other characters (with kana or kanji it is detected: tests/core/test_shift_jis.py)
    ("shift_jis", "ﾔﾏﾀﾞ ﾀﾛｳ"),
])
def test_predict_reads_a_csv_in_the_projects_data_encoding_as_ingest_does(toy, project, capsys, tmp_path,
                                                                          encoding, note):
    # predict detected every CSV's encoding, where ingest obeyed data.encoding: the same file was read
    # right for training and garbled (or refused) for scoring
    from modelloop.data.encoding import SAMPLE_BYTES, detect_encoding

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(30).assign(note=note)
    raw = rows.to_csv(index=False).encode(encoding)
    assert detect_encoding(raw[:SAMPLE_BYTES]) not in (encoding, "gb18030" if encoding == "gbk" else encoding)
    (tmp_path / "in.csv").write_bytes(raw)
    (project / f"{encoding}.yaml").write_text(yaml.safe_dump({**toy.raw, "data": {**toy.raw["data"],
                                                                                  "encoding": encoding}}))
    code, _, err = cli(["predict", "-c", f"{encoding}.yaml", "--data", str(tmp_path / "in.csv"),
                        "--out", str(tmp_path / "out.csv")], capsys, project)
    assert code == 0, err
    assert pd.read_csv(tmp_path / "out.csv")["note"].tolist() == [note] * 30

    # without the setting, detection as before: a UTF-8 file is read as UTF-8
    rows.to_csv(tmp_path / "utf8.csv", index=False)
    code, _, err = cli(["predict", "--data", str(tmp_path / "utf8.csv"), "--out", str(tmp_path / "o.csv")],
                       capsys, project)
    assert code == 0 and pd.read_csv(tmp_path / "o.csv")["note"].tolist() == [note] * 30, err


def test_an_excel_csv_utf8_input_gets_a_bom_output_and_out_encoding_chooses(toy, project, capsys, tmp_path):
    # the output was UTF-8 without a BOM whatever the input: Excel showed its Chinese text garbled
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(45).assign(备注="退款还没到")
    (tmp_path / "excel.csv").write_bytes(rows.to_csv(index=False).encode("utf-8-sig"))  # Excel's "CSV UTF-8"
    rows.to_csv(tmp_path / "plain.csv", index=False)
    from modelloop.serving.batch import predict_file

    res = predict_file(toy.ws, tmp_path / "excel.csv", tmp_path / "excel_out.csv", chunk_rows=20)  # 3 chunks
    raw = (tmp_path / "excel_out.csv").read_bytes()
    assert res["out_encoding"] == "utf-8-sig" and raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    assert pd.read_csv(tmp_path / "excel_out.csv", encoding="utf-8-sig")["备注"].tolist() == ["退款还没到"] * 45
    predict_file(toy.ws, tmp_path / "plain.csv", tmp_path / "plain_out.csv")  # programs' default kept
    assert not (tmp_path / "plain_out.csv").read_bytes().startswith(b"\xef\xbb\xbf")

    for asked, codec in (("gbk", "gbk"), ("UTF-8-SIG", "utf-8-sig"), ("utf8", "utf-8")):
        code, out, err = cli(["predict", "--data", str(tmp_path / "excel.csv"), "--out", str(tmp_path / "o.csv"),
                              "--out-encoding", asked, "--json"], capsys, project)
        assert code == 0 and json.loads(out)["out_encoding"] == codec, err
        raw = (tmp_path / "o.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") == (codec == "utf-8-sig")
        assert "备注" in raw.decode(codec) and raw.decode(codec).count("退款还没到") == 45


@pytest.mark.parametrize("args, message", [
    (["--out", "o.csv", "--out-encoding", "latin-9"], "--out-encoding: must be one of utf-8, utf-8-sig, gbk, cp932"),
    (["--out", "o.csv", "--out-encoding", "big5"], "got 'big5'"),
    (["--out", "o.jsonl", "--out-encoding", "gbk"], "applies to a CSV output"),
])
def test_a_bad_out_encoding_exits_2_naming_the_allowed_ones(project, capsys, tmp_path, args, message):
    pd.read_csv(project / "data.csv").head(5).to_csv(tmp_path / "in.csv", index=False)
    code, _, err = cli(["predict", "-c", str(project / "modelloop.yaml"), "--data", "in.csv", *args], capsys,
                       tmp_path)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert os.listdir(tmp_path) == ["in.csv"]


def test_a_value_the_out_encoding_cannot_hold_names_its_row_and_writes_nothing(toy, project, capsys, tmp_path):
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(50).assign(备注="好评")
    rows.loc[36, "备注"] = "好评👍"  # GBK has no emoji
    rows.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "o.csv").write_text("an earlier output\n")
    code, _, err = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.csv"),
                        "--out-encoding", "gbk"], capsys, project)
    assert code == 2 and "row 37, 备注: '好评👍' cannot be written in gbk" in err and "utf-8-sig" in err, err
    assert (tmp_path / "o.csv").read_text() == "an earlier output\n"
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "o.csv"]  # no temporary file left
    from modelloop.errors import DataError
    from modelloop.serving.batch import predict_file

    with pytest.raises(DataError, match=r"row 37, 备注"):  # row 17 of the second chunk: the file's row 37
        predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "o.csv", chunk_rows=20, out_encoding="gbk")
    assert (tmp_path / "o.csv").read_text() == "an earlier output\n"
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "o.csv"]


def test_with_several_sources_predict_reads_a_csv_in_the_encoding_they_agree_on(toy, project, capsys, tmp_path):
    # with data.sources (each read in its own encoding) predict ignored them and detected: a Shift-JIS
    # project's file was read as Windows-1252 (half-width katakana only: with kana or kanji, auto detects
    # Shift-JIS too)
    note = "ﾔﾏﾀﾞ ﾀﾛｳ"
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(30).assign(note=note)
    (tmp_path / "in.csv").write_bytes(rows.to_csv(index=False).encode("shift_jis"))
    data = {k: v for k, v in toy.raw["data"].items() if k not in ("source", "encoding")}

    def predict(sources: list[dict], out: str) -> list[str]:
        (project / "multi.yaml").write_text(yaml.safe_dump({**toy.raw, "data": {**data, "sources": sources}}))
        code, _, err = cli(["predict", "-c", "multi.yaml", "--data", str(tmp_path / "in.csv"),
                            "--out", str(tmp_path / out)], capsys, project)
        assert code == 0, err
        return pd.read_csv(tmp_path / out)["note"].tolist()

    agree = [{"name": "a", "source": "a.csv", "encoding": "shift_jis"},
             {"name": "b", "source": "b.tsv", "encoding": "SJIS"},          # an alias of the same codec
             {"name": "c", "source": "c.parquet"},                          # read as Parquet: no encoding
             {"name": "d", "source": "postgresql://db/x", "query": "select 1"}]
    assert predict(agree, "agree.csv") == [note] * 30
    # sources that disagree: data.encoding decides (auto: detected, as before)
    disagree = [{"name": "a", "source": "a.csv", "encoding": "shift_jis"}, {"name": "b", "source": "b.csv"}]
    assert predict(disagree, "auto.csv") != [note] * 30
    rows.to_csv(tmp_path / "in.csv", index=False)                           # UTF-8: detected right
    assert predict(disagree, "utf8.csv") == [note] * 30


@pytest.mark.parametrize("encoding, note", [("gbk", "退款还没到"), ("cp932", "返金がまだ届いていません"),
                                            ("cp1252", "café crème")])
def test_an_excel_code_page_input_gets_a_bom_output_excel_opens(toy, project, capsys, tmp_path, encoding, note):
    """Excel's plain "CSV" is the Windows code page (GBK, cp932, Windows-1252): the answers were plain UTF-8,
    which Excel showed garbled. They are UTF-8 with the BOM now; --out-encoding cp932 (or shift_jis) writes
    what Japanese Excel reads, as gbk does for Chinese."""
    from modelloop.serving.batch import predict_file

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(30).assign(note=note)
    (tmp_path / "in.csv").write_bytes(rows.to_csv(index=False).encode(encoding))
    res = predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "out.csv")
    raw = (tmp_path / "out.csv").read_bytes()
    assert res["out_encoding"] == "utf-8-sig" and raw.startswith(b"\xef\xbb\xbf")
    assert pd.read_csv(tmp_path / "out.csv", encoding="utf-8-sig")["note"].tolist() == [note] * 30
    if encoding == "cp932":
        for asked in ("cp932", "shift_jis"):
            code, out, err = cli(["predict", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "j.csv"),
                                  "--out-encoding", asked, "--json"], capsys, project)
            assert code == 0 and json.loads(out)["out_encoding"] == "cp932", err
            assert (tmp_path / "j.csv").read_bytes().decode("cp932").count(note) == 30


def test_predict_detects_a_csvs_encoding_once(toy, project, tmp_path, monkeypatch):
    """The output encoding, the blank headers and the rows each asked for the input's encoding: three 8 MB
    reads and detections of one file. It is detected once per version of the file; a rewritten file is
    detected again."""
    from modelloop.data import encoding
    from modelloop.serving.batch import predict_file

    calls: list[int] = []
    real = encoding.detect_encoding
    monkeypatch.setattr(encoding, "detect_encoding", lambda raw: calls.append(len(raw)) or real(raw))
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(30).assign(note="退款还没到")
    (tmp_path / "in.csv").write_bytes(rows.to_csv(index=False).encode("gbk"))
    res = predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "out.csv")
    assert len(calls) == 1 and res["out_encoding"] == "utf-8-sig"
    assert pd.read_csv(tmp_path / "out.csv", encoding="utf-8-sig")["note"].tolist() == ["退款还没到"] * 30
    (tmp_path / "in.csv").write_bytes(rows.assign(note="refund").to_csv(index=False).encode("utf-8"))
    res = predict_file(toy.ws, tmp_path / "in.csv", tmp_path / "out.csv")
    assert len(calls) == 2 and res["out_encoding"] == "utf-8"


def test_an_excel_csv_from_germany_is_read_and_answered_in_its_own_dialect(toy, project, capsys, tmp_path):
    """Excel in Germany (and much of Europe) saves Windows-1252 with semicolons between fields and decimal
    commas. ``predict`` read it as one column (exit 2: no column amount). It reads it as ingest does now and
    answers in the same dialect, so that Excel there opens the answers: the same answers as for the plain
    CSV of the same rows, the amounts and probabilities written 34,56."""
    from modelloop.serving.batch import predict_file

    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(60).assign(note="Größe für Müller")
    rows.to_csv(tmp_path / "plain.csv", index=False)
    (tmp_path / "de.csv").write_bytes(rows.to_csv(index=False, sep=";", decimal=",").encode("cp1252"))
    assert "," in (tmp_path / "de.csv").read_bytes().decode("cp1252").splitlines()[1]  # a decimal comma
    plain = predict_file(toy.ws, tmp_path / "plain.csv", tmp_path / "plain-out.csv")
    code, out, err = cli(["predict", "--data", str(tmp_path / "de.csv"), "--out", str(tmp_path / "de-out.csv"),
                          "--json"], capsys, project)
    assert code == 0, err
    assert json.loads(out)["rows"] == plain["rows"] == 60 and json.loads(out)["out_encoding"] == "utf-8-sig"
    text = (tmp_path / "de-out.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].count(";") == len(rows.columns) + 2 and "Größe für Müller" in text
    got = pd.read_csv(tmp_path / "de-out.csv", sep=";", decimal=",", encoding="utf-8-sig")
    want = pd.read_csv(tmp_path / "plain-out.csv")
    pd.testing.assert_frame_equal(got, want)


def test_an_excel_workbook_is_scored_into_a_workbook_with_the_csvs_answers(toy, project, capsys, tmp_path):
    """Small teams keep their tables in Excel: ``predict --data rows.xlsx --out answers.xlsx`` reads the first
    sheet as ingest reads a workbook, and writes the rows and answers to a sheet, the same answers as for the
    CSV of the same rows; a file that is no workbook exits 2 naming it, and writes nothing."""
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(50).assign(note="Größe 大小")
    rows.to_csv(tmp_path / "plain.csv", index=False)
    with pd.ExcelWriter(tmp_path / "rows.xlsx") as book:
        rows.to_excel(book, sheet_name="Kunden", index=False)
        rows.head(2).to_excel(book, sheet_name="other", index=False)
    code, out, err = cli(["predict", "--data", str(tmp_path / "rows.xlsx"), "--out", str(tmp_path / "answers.xlsx"),
                          "--json"], capsys, project)
    assert code == 0, err
    assert json.loads(out)["rows"] == 50
    cli(["predict", "--data", str(tmp_path / "plain.csv"), "--out", str(tmp_path / "plain-out.csv")], capsys, project)
    got = pd.read_excel(tmp_path / "answers.xlsx", sheet_name="predictions")
    want = pd.read_csv(tmp_path / "plain-out.csv")
    assert list(got.columns) == list(want.columns) and got["note"].tolist() == ["Größe 大小"] * 50
    assert got["label"].tolist() == want["label"].tolist()
    np.testing.assert_allclose(got["proba_1"], want["proba_1"], rtol=1e-12)
    (tmp_path / "bad.xlsx").write_bytes(b"id,amount\n1,2\n")
    code, _, err = cli(["predict", "--data", str(tmp_path / "bad.xlsx"), "--out", str(tmp_path / "x.csv")],
                       capsys, project)
    assert code == 2 and "not a valid Excel workbook" in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


def test_excels_unicode_text_is_scored_and_answered_tab_separated(toy, project, capsys, tmp_path):
    """Excel's "Unicode Text" (.txt: UTF-16, tabs) gives the CSV's answers, written tab-separated to a .txt
    (UTF-8 with the BOM Excel reads); predict refused the .txt that ingest reads."""
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(40)
    rows.to_csv(tmp_path / "plain.csv", index=False)
    (tmp_path / "rows.txt").write_bytes(rows.to_csv(index=False, sep="\t").encode("utf-16"))
    for name in ("plain.csv", "rows.txt"):
        code, _, err = cli(["predict", "--data", str(tmp_path / name), "--out", str(tmp_path / f"out-{name}")],
                           capsys, project)
        assert code == 0, err
    got = pd.read_csv(tmp_path / "out-rows.txt", sep="\t", encoding="utf-8-sig")
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "out-plain.csv"))


@pytest.mark.parametrize("name", ["empty.csv", "empty.xlsx"])
def test_a_file_of_a_header_alone_is_named_and_writes_nothing(project, capsys, tmp_path, name):
    """A header without rows exited 2 with the validator's 'records: list should have at least 1 item after
    validation, not 0'; the message says what the file lacks now."""
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(0)
    if name.endswith(".xlsx"):
        rows.to_excel(tmp_path / name, index=False)
    else:
        rows.to_csv(tmp_path / name, index=False)
    code, _, err = cli(["predict", "--data", str(tmp_path / name), "--out", str(tmp_path / "out.csv")],
                       capsys, project)
    assert code == 2 and f"--data: {name} has no data rows to score" in err
    assert not (tmp_path / "out.csv").exists()


def test_excels_error_values_are_scored_as_missing_values(toy, project, capsys, tmp_path):
    """#DIV/0! in a numeric column stopped predict ('must be a number'); it is a missing value, as ingest reads
    it: the answers equal those for the same rows with the cells empty."""
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(40)
    rows.loc[::5, "amount"] = np.nan
    rows.to_csv(tmp_path / "plain.csv", index=False)
    rows.astype({"amount": object}).fillna({"amount": "#DIV/0!"}).to_csv(tmp_path / "errors.csv", index=False)
    assert "#DIV/0!" in (tmp_path / "errors.csv").read_text()
    got = _same_answers_as_plain(project, capsys, tmp_path, "errors")
    assert got["amount"].isna().sum() == rows["amount"].isna().sum()  # read as the missing values they are
