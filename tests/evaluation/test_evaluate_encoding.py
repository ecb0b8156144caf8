"""``modelloop evaluate --data`` reads a labelled CSV in the encoding predict reads one in
(``data.encoding.project_encoding``): with ``data.sources``, the one encoding the sources agree on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import yaml

from clirun import cli

# half-width katakana (and a few kanji in the header): auto reads it wrong (with kana or ten kanji: Shift-JIS)
LABELS = ("ﾍﾝﾋﾟﾝ ｱﾘ", "ﾍﾝﾋﾟﾝ ﾅｼ")


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"rid": [f"r{seed}-{i}" for i in range(n)], "金額": x.round(3),
                         "結果": np.where(x > 0, LABELS[0], LABELS[1])})


def test_evaluate_reads_a_csv_in_the_encoding_the_sources_agree_on(tmp_path, capsys):
    # a Shift-JIS project of two sources: evaluate --data read the file in data.encoding (auto: detected as
    # another encoding), so its labels and column names were not the ones the model was trained on
    _table(150, 0).to_csv(tmp_path / "a.csv", index=False, encoding="shift_jis")
    _table(150, 1).to_csv(tmp_path / "b.csv", index=False, encoding="shift_jis")
    sources = [{"name": "a", "source": "a.csv", "encoding": "shift_jis"},
               {"name": "b", "source": "b.csv", "encoding": "SJIS"}]  # an alias of the same codec
    config = {"name": "sj", "data": {"sources": sources, "target": "結果", "id": "rid"},
              "train": {"budget": 20, "trials": 2, "cv_folds": 3, "families": ["linear"], "ensemble": False}}
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    for command in (["ingest"], ["train"]):
        code, _, err = cli([*command, "--json"], capsys, tmp_path)
        assert code == 0, err
    _table(80, 2).to_csv(tmp_path / "new.csv", index=False, encoding="shift_jis")
    from modelloop.data.encoding import file_encoding

    assert file_encoding(tmp_path / "new.csv") not in ("cp932", "shift_jis")  # auto alone would misread it
    code, out, err = cli(["evaluate", "--data", "new.csv", "--json"], capsys, tmp_path)
    assert code == 0, err
    res = json.loads(out)
    assert res["rows"] == 80 and res["metrics"]["accuracy"] > 0.9
