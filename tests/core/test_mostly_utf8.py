"""A UTF-8 file with a few bad bytes (edited by two programs, a character cut short) is reported as that,
with the line and byte of the first bad byte, by every reader of a user's CSV: it was detected as
Windows-1252 as a whole, and a Chinese header came out garbled ("has no column(s) 评论")."""

from __future__ import annotations

import pandas as pd
import pytest

from clirun import cli
from modelloop.data.encoding import detect_encoding
from modelloop.data.sources import read_table
from modelloop.errors import DataError

BAD = "a,评论\n1,好\n".encode() + b"2,\xff\xfe\n"   # bad bytes at line 3, byte 17 of the file
CUT = ("id,评论\n" + "".join(f"{i},这个产品很好用\n" for i in range(50))).encode() + "评".encode()[:2] + b"\n"


def test_mostly_utf8_bytes_are_detected_as_utf8_and_legacy_files_as_before():
    assert detect_encoding(BAD) == "utf-8-sig" and detect_encoding(CUT) == "utf-8-sig"
    latin = ("name,city\n" + "José,São Paulo\nZoë,Zürich\n" * 30).encode("cp1252")
    assert detect_encoding(latin) == "cp1252"
    # Windows-1252 with a pair that happens to be valid UTF-8 ('Ã©' pasted from a web page) stays so; two
    # such letters on lines of their own are lines in UTF-8 ('café,Évian'): test_mixed_encoding
    assert detect_encoding(latin + "cafÃ©,Evian\n".encode("cp1252")) == "cp1252"
    gbk = ("客户投诉:我的卡被扣了两次钱," * 50).encode("gbk")
    assert detect_encoding(gbk) == "gb18030"
    assert detect_encoding(gbk + b"\xff," + gbk) == "cp1252"  # GBK with a bad byte: not called UTF-8 (as before)


def test_ingest_names_the_first_bad_byte_and_how_to_force_an_encoding(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(BAD)
    with pytest.raises(DataError, match=r"bad.csv is UTF-8 with bytes that are not UTF-8 \(the first: invalid "
                                        r"start byte at line 3, byte 17;.*fix those bytes.*set data\.encoding"):
        read_table(str(p))
    forced, report = read_table(str(p), encoding="cp1252")        # data.encoding forces one, as the message says
    assert report["encoding"] == "cp1252" and forced.shape == (2, 2)
    p.write_bytes(CUT)
    with pytest.raises(DataError, match=r"not UTF-8 \(the first: invalid continuation byte at line 52, byte 1250;"):
        read_table(str(p))


def test_ingest_command_exits_2_with_the_place(tmp_path, capsys):
    pd.DataFrame({"x": range(30), "评论": ["好", "坏"] * 15}).to_csv(tmp_path / "good.csv", index=False)
    code, _, err = cli(["init", "proj", "--source", "good.csv", "--target", "评论"], capsys, tmp_path)
    assert code == 0, err
    (tmp_path / "good.csv").write_bytes((tmp_path / "good.csv").read_bytes() + b"30,\xe5\xa5\n")  # '好' cut short
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 2 and "is UTF-8 with bytes that are not UTF-8" in err and "line 32" in err, err


def test_init_reports_the_bad_bytes_not_a_garbled_header(tmp_path, capsys):
    (tmp_path / "bad.csv").write_bytes(BAD)
    code, _, err = cli(["init", "p", "--source", "bad.csv", "--target", "评论"], capsys, tmp_path)
    assert code == 2 and "is not a column" not in err
    assert "bad.csv is UTF-8 with bytes that are not UTF-8 (the first: invalid start byte at line 3" in err
    assert not (tmp_path / "p").exists()


def test_a_text_folder_file_with_bad_bytes_is_reported_where_it_was_misread(tmp_path):
    from modelloop.data.text_folder import read_text_folder

    for label, text in (("好评", "这个产品很好用"), ("差评", "物流太慢了")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "差评" / "b.txt").write_bytes("包装破损\n差".encode() + b"\xff\n")
    with pytest.raises(DataError, match=r"b.txt is UTF-8 with bytes that are not UTF-8 \(the first: invalid start "
                                        r"byte at line 2, byte 16;"):
        read_text_folder(tmp_path)
