"""``modelloop predict --data`` on a UTF-8 CSV with a few bad bytes: it was read as Windows-1252 as a whole,
every Chinese value and header came out garbled, and the run exited 0 (or with 'has no column(s) ...')."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from toy import Toy

from clirun import cli


@pytest.fixture
def project(toy: Toy) -> Path:
    (toy.root / "modelloop.yaml").write_text(yaml.safe_dump(toy.raw))
    return toy.root


def test_predict_reports_the_first_bad_byte_instead_of_a_garbled_file(toy, project, capsys, tmp_path):
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(20)
    rows["备注"] = "客户说退款还没到"
    good = rows.to_csv(index=False).encode()
    (tmp_path / "bad.csv").write_bytes(good + good.splitlines(keepends=True)[1].replace("客".encode(), b"\xff\xfe"))
    code, _, err = cli(["predict", "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o.csv")],
                       capsys, project)
    assert code == 2 and not (tmp_path / "o.csv").exists()
    assert "--data: " in err and "bad.csv is UTF-8 with bytes that are not UTF-8" in err and "line 22, byte" in err
    assert "fix those bytes" in err and "or set data.encoding" in err  # predict reads data.encoding, as ingest

    latin = rows.assign(备注="José, Zürich")                          # a genuine Windows-1252 file: read as before
    (tmp_path / "latin.csv").write_bytes(latin.to_csv(index=False).replace("备注", "note").encode("cp1252"))
    code, _, err = cli(["predict", "--data", str(tmp_path / "latin.csv"), "--out", str(tmp_path / "o.csv")],
                       capsys, project)
    assert code == 0, err
    assert pd.read_csv(tmp_path / "o.csv")["note"].tolist() == ["José, Zürich"] * 20


def test_predict_reports_a_windows_1252_file_with_rows_pasted_in_utf8(toy, project, capsys, tmp_path):
    # read as Windows-1252 as a whole, the pasted rows' 'Renée' came out 'RenÃ©e' and predict exited 0
    rows = pd.read_csv(project / "data.csv").drop(columns=["y"]).head(20).assign(note="José, Zürich")
    pasted = rows.head(2).assign(note="Renée, Besançon").to_csv(index=False, header=False).encode()
    (tmp_path / "mixed.csv").write_bytes(rows.to_csv(index=False).encode("cp1252") + pasted)
    code, _, err = cli(["predict", "--data", str(tmp_path / "mixed.csv"), "--out", str(tmp_path / "o.csv")],
                       capsys, project)
    assert code == 2 and not (tmp_path / "o.csv").exists()
    assert "--data: " in err and "mixed.csv mixes two encodings" in err and "UTF-8 (the first: line 22)" in err, err
    assert "bytes that are not UTF-8" in err and "at line 2, byte" in err and "or set data.encoding" in err
