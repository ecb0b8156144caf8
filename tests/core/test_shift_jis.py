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


def test_init_and_ingest_read_a_shift_jis_csv_with_a_japanese_header(tmp_path, capsys):
    df = pd.DataFrame({"金額": range(40), "区分": ["はい", "いいえ"] * 20, "メモ": ["返金がまだです", "ありがとう"] * 20})
    df.to_csv(tmp_path / "jp.csv", index=False, encoding="cp932")
    code, _, err = cli(["init", "proj", "--source", "jp.csv", "--target", "区分"], capsys, tmp_path)
    assert code == 0, err
    code, _, err = cli(["ingest"], capsys, tmp_path / "proj")
    assert code == 0, err
    _, got, _ = load_dataset(Project.load(tmp_path / "proj" / "modelloop.yaml").workspace)
    assert sorted(set(got["区分"])) == ["いいえ", "はい"] and set(got["メモ"]) == {"返金がまだです", "ありがとう"}


KANJI = ["山田", "太郎", "佐藤", "花子", "鈴木", "一郎", "高橋", "健", "田中", "美咲", "東京都", "新宿区", "西新宿",
         "大阪府", "大阪市", "北区", "梅田", "愛知県", "名古屋市", "中区", "栄", "株式会社", "有限会社", "商事", "工業",
         "建設", "電機", "営業部長", "経理", "代表取締役社長", "技術部", "店長", "二丁目", "髙橋", "㈱", "①"]
# Chinese a team in Taiwan or Hong Kong may save as GBK: traditional names, places and firms
TRADITIONAL = ["陳", "志明", "林", "美玲", "黃", "國強", "臺灣", "臺北市", "信義區", "香港", "九龍", "旺角", "廣東",
               "貿易行", "會計", "經理", "電腦", "股份有限公司", "臺中市", "西屯區", "機械廠", "工程師", "張", "偉"]

# those of them whose GBK bytes also decode as cp932 (mostly to half-width katakana: 林 as 'ﾁﾖ'), so that
# the kana-free rule's guards, not a failed decode, keep them Chinese
AS_CP932 = ["陳", "林", "臺灣", "臺北市", "香港", "旺角", "廣東", "貿易行", "股份有限公司", "臺中市", "機械廠", "工程師",
            "張"]


def test_kanji_only_shift_jis_is_detected_and_read_right(tmp_path):
    """Japanese without kana (a customer list of kanji names, addresses and firms) was read as GB18030,
    every name other characters; data.encoding: cp932 was the only way. It is detected now."""
    rng = random.Random(2)
    for _ in range(200):
        rows = [f"{i}," + ",".join("".join(rng.choice(KANJI) for _ in range(rng.randint(1, 4))) for _ in range(3))
                for i in range(rng.randint(2, 40))]
        raw = ("id,氏名,住所,会社\n" + "\n".join(rows) + "\n").encode("cp932")
        assert detect_encoding(raw) == "cp932", raw.decode("cp932")
    jp = pd.DataFrame({"氏名": ["山田太郎", "佐藤花子"] * 10, "住所": ["東京都新宿区", "大阪府大阪市北区"] * 10})
    jp.to_csv(tmp_path / "names.csv", index=False, encoding="cp932")
    df, report = read_table(str(tmp_path / "names.csv"))
    assert report["encoding"] == "cp932" and df["氏名"].tolist() == jp["氏名"].tolist()


def test_traditional_and_simplified_chinese_gbk_without_punctuation_stays_gb18030():
    """The kana-free rule's guards: Chinese names and places in GBK, with no punctuation to give them away,
    traditional (many outside GB2312) or simplified, are never taken for kanji-only Shift-JIS."""
    import codecs

    rng = random.Random(3)
    for pool in (TRADITIONAL, AS_CP932, COMMON):
        for _ in range(300):
            cells = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(3, 120))]
            raw = ("\n".join(",".join(cells[i:i + 3]) for i in range(0, len(cells), 3)) + "\n").encode("gbk")
            assert detect_encoding(raw) != "cp932", raw.decode("gbk")
            if pool is AS_CP932:
                assert codecs.decode(raw, "cp932")  # decodes: the guards decided
