"""A Windows-1252 file (Excel's CSV on Western Windows: 'café' with 'é' as one byte) with a few rows pasted in
UTF-8 was read as Windows-1252 as a whole, with no word: those rows came out as 'cafÃ©', new categories and
garbled text. It is reported as a file of two encodings, naming the first line of each, by the rule that
reports a UTF-8 file with a few bad bytes (``encoding.undecodable``); a genuine Windows-1252, GBK or
Shift-JIS file reads as before."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from clirun import cli
from modelloop.data.encoding import detect_encoding
from modelloop.data.sources import read_table
from modelloop.errors import DataError

LATIN = "".join(f"{i},José,São Paulo\n" for i in range(30)).encode("cp1252")       # lines 2..31 after a header
PASTED = "30,Renée,Besançon\n31,Zoë,Zürich\n".encode()                              # lines 32-33, in UTF-8


def test_a_windows_1252_file_with_utf8_lines_is_told_apart_from_chance_pairs():
    assert detect_encoding(b"id,name,city\n" + LATIN + PASTED) == "utf-8-sig"   # read as UTF-8: stops, and says
    assert detect_encoding(b"id,name,city\n" + LATIN) == "cp1252"
    # one pair that happens to be valid UTF-8 ('Ã©', a capital and a symbol) is chance, not a UTF-8 line
    assert detect_encoding(LATIN + "30,cafÃ©,Lyon\n".encode("cp1252")) == "cp1252"
    # pairs on a line with the file's own single-byte letters are chance too, however many
    assert detect_encoding(LATIN + "30,Zoë,cafÃ© Ã‰vian\n".encode("cp1252") * 3) == "cp1252"
    # German quotes ('„Gruß“': 'ß“' is valid UTF-8) open with a byte that is not: the line is Windows-1252
    assert detect_encoding(LATIN + "30,„Gruß“,„Fuß“\n".encode("cp1252") * 20) == "cp1252"


def test_gbk_and_shift_jis_files_still_read_right(tmp_path):
    rows = pd.DataFrame({"id": range(40), "评论": ["客户投诉：我的卡被扣了两次钱", "好评", "时间太长"] * 13 + ["差"]})
    rows.to_csv(tmp_path / "gbk.csv", index=False, encoding="gbk")
    df, report = read_table(str(tmp_path / "gbk.csv"))
    assert report["encoding"] == "gb18030" and df["评论"].tolist() == rows["评论"].tolist()
    # GBK with more symbols than Chinese: Windows-1252 as before (its chance UTF-8 pairs lie on lines of
    # bytes that are not UTF-8), not a file of two encodings
    note = "".join(f"{i},温度≤30°C，误差±0.5‰\n" for i in range(30)).encode("gbk")
    assert detect_encoding(note) == "cp1252"
    jp = pd.DataFrame({"id": range(30), "メモ": ["返金がまだ届いていません", "ｶﾀｶﾅ、テスト。"] * 15})
    jp.to_csv(tmp_path / "sjis.csv", index=False, encoding="shift_jis")
    assert detect_encoding((tmp_path / "sjis.csv").read_bytes()) == "cp932"  # was GB18030: test_shift_jis
    df, report = read_table(str(tmp_path / "sjis.csv"), encoding="shift_jis")
    assert report["encoding"] == "shift_jis" and df["メモ"].tolist() == jp["メモ"].tolist()


def test_ingest_exits_2_naming_the_first_line_of_each_encoding(tmp_path, capsys):
    (tmp_path / "shop.csv").write_bytes(b"id,name,city\n" + LATIN)
    code, _, err = cli(["init", "proj", "--source", "shop.csv", "--target", "city"], capsys, tmp_path)
    assert code == 0, err
    (tmp_path / "shop.csv").write_bytes(b"id,name,city\n" + LATIN + PASTED)        # rows added in UTF-8
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 2 and "Traceback" not in err
    assert "shop.csv mixes two encodings" in err and "lines in UTF-8 (the first: line 32)" in err, err
    assert "not UTF-8, as Windows-1252 writes 'é' (the first: invalid continuation byte at line 2, byte 18)" in err
    assert "save the file as UTF-8 with every line right, or set data.encoding" in err

    raw = yaml.safe_load((tmp_path / "proj" / "modelloop.yaml").read_text())       # forcing one reading
    raw["data"]["encoding"] = "cp1252"
    (tmp_path / "proj" / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 0, err


def test_a_text_folder_file_of_two_encodings_is_reported(tmp_path):
    from modelloop.data.text_folder import read_text_folder

    for label in ("bon", "mauvais"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.txt").write_bytes("Très bien, merci.\n".encode("cp1252"))
    (tmp_path / "bon" / "b.txt").write_bytes("Très bon café, à côté de l'hôtel.\n".encode("cp1252") + "Crème brûlée\n".encode())
    with pytest.raises(DataError, match=r"b.txt mixes two encodings .*: lines in UTF-8 \(the first: line 2\)"):
        read_text_folder(tmp_path)


def test_init_reports_a_file_of_two_encodings_before_writing_a_config(tmp_path, capsys):
    """init reads the header in the detected encoding, as ingest reads the file: a Windows-1252 file with
    UTF-8 lines in its first read is reported as such (not as a bad header), and no project is written."""
    (tmp_path / "shop.csv").write_bytes(b"id,name,city\n" + LATIN + PASTED)
    code, _, err = cli(["init", "proj", "--source", "shop.csv", "--target", "city"], capsys, tmp_path)
    assert code == 2 and "Traceback" not in err and "is not a column" not in err
    assert "--source: shop.csv mixes two encodings" in err and "lines in UTF-8 (the first: line 32)" in err
    assert not (tmp_path / "proj").exists()
