"""A CSV saved as Shift-JIS (Japanese Excel's default) was detected as GB18030, whose two-byte ranges cover
Shift-JIS's, and read with no word as other, rare Chinese characters. It is detected as ``cp932`` (Windows'
Shift-JIS) when that reading has kana and the GB18030 one is rare-character soup (``encoding._japanese``);
Chinese GBK text reads as GB18030 as before."""

from __future__ import annotations

import random

import pandas as pd

from clirun import cli
from modelloop import Project
from modelloop.data.encoding import detect_encoding
from modelloop.data.ingest import load_dataset
from modelloop.data.sources import read_table

# GB2312's level-1 characters (the 3,755 most common), Chinese punctuation, digits, ASCII separators
COMMON = [bytes([a, b]).decode("gb2312") for a in range(0xB0, 0xD8) for b in range(0xA1, 0xFF)
          if (a, b) <= (0xD7, 0xF9)]
PUNCT = [*"，。、；：？！“”‘’（）《》【】—…·％￥0123456789", " ", ",", "\n"]
SYMBOLS = list("≤≥°±‰℃№※→←↑↓①②③ⅠⅡ■□▲△○●★☆§")
WORDS = ["返金", "が", "まだ", "届いて", "いません", "東京都", "千代田区", "丸の内", "株式会社", "山田", "太郎",
         "テスト", "お問い合わせ", "ありがとうございます", "商品", "配送", "キャンセル", "。", "、", "「", "」",
         "①", "㈱", "髙橋", "ｶﾀｶﾅ", "ﾔﾏﾀﾞ ﾀﾛｳ", "注文", "番号", "～", "ー", "円"]


def test_chinese_gbk_text_is_never_taken_for_shift_jis():
    rng, text_pool, symbol_pool = random.Random(0), COMMON * 3 + PUNCT * 10, COMMON + PUNCT * 5 + SYMBOLS * 5
    for _ in range(400):
        text = "".join(rng.choice(text_pool) for _ in range(rng.randint(5, 400)))
        assert detect_encoding(text.encode("gbk")) == "gb18030", text
    for _ in range(200):  # symbol-heavy notes: GB18030 or Windows-1252 as before, never Shift-JIS
        text = "".join(rng.choice(symbol_pool) for _ in range(rng.randint(5, 400)))
        assert detect_encoding(text.encode("gbk")) != "cp932", text


def test_japanese_shift_jis_text_is_detected_and_read_right(tmp_path):
    rng = random.Random(1)
    for _ in range(200):  # kana and kanji, half-width katakana, Windows' symbols (①, ㈱) and kanji (髙)
        rows = [f"{i}," + "".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) + f",{rng.randint(0, 9999)}"
                for i in range(rng.randint(1, 40))]
        raw = ("id,メモ,金額\n" + "\n".join(rows) + "\n").encode("cp932")
        assert detect_encoding(raw) == "cp932", raw.decode("cp932")
    jp = pd.DataFrame({"id": range(30), "メモ": ["返金がまだ届いていません", "ｶﾀｶﾅ、テスト。", "㈱髙橋商事①"] * 10})
    jp.to_csv(tmp_path / "sjis.csv", index=False, encoding="cp932")
    df, report = read_table(str(tmp_path / "sjis.csv"))
    assert report["encoding"] == "cp932" and df["メモ"].tolist() == jp["メモ"].tolist()
    # Japanese without kana (kanji names only) gives no sign: GB18030 as before, data.encoding reads it
    assert detect_encoding("株式会社山田商事,東京都千代田区\n".encode("cp932") * 20) == "gb18030"


def test_init_and_ingest_read_a_shift_jis_csv_with_a_japanese_header(tmp_path, capsys):
    df = pd.DataFrame({"金額": range(40), "区分": ["はい", "いいえ"] * 20, "メモ": ["返金がまだです", "ありがとう"] * 20})
    df.to_csv(tmp_path / "jp.csv", index=False, encoding="cp932")
    code, _, err = cli(["init", "proj", "--source", "jp.csv", "--target", "区分"], capsys, tmp_path)
    assert code == 0, err
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 0, err
    _, got, _ = load_dataset(Project.load(tmp_path / "proj" / "modelloop.yaml").workspace)
    assert sorted(set(got["区分"])) == ["いいえ", "はい"] and set(got["メモ"]) == {"返金がまだです", "ありがとう"}
