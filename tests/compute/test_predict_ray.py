"""``modelloop predict --engine ray`` (serving/ray_predict.py): a file scored in chunks by Ray workers.

Fast: the refusals (exit 2). Slow: a real local Ray head; the Ray run's file equals the local run's, row
for row, and a bad row is named by its row in the file, leaving no output.
"""

from __future__ import annotations

import pandas as pd
import pytest
from clirun import cli
from jobs_toy import linear_project, make_project, ray_head
from servers import free_port
from toy import make_table

from modelloop.errors import DataError
from modelloop.serving.batch import predict_file


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "rya"], "predict --engine: must be local or ray, got 'rya'"),
    (["--engine", "ray"], "no Ray cluster answers at 127.0.0.1:{port}"),
    # the option is checked before Ray is asked (it was refused only after connecting)
    (["--engine", "ray", "--out-encoding", "latin-9"], "--out-encoding: must be one of utf-8, utf-8-sig, gbk"),
    (["--engine", "ray", "--out", "out.parquet", "--out-encoding", "gbk"],
     "--out-encoding: applies to a CSV output (.csv, .tsv); --out is parquet"),
])
def test_refusals_exit_2_with_one_line(tmp_path, capsys, args, message):
    port = free_port()
    make_project(tmp_path, {"address": f"127.0.0.1:{port}"})
    code, _, err = cli(["predict", "--data", "in.csv", "--out", "out.csv", *args], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message.format(port=port) in err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_ray_workers_score_a_file_in_chunks_as_the_local_run_does(tmp_path):
    """Slow (Ray's head and actors: ~40 s here). The chunk scoring itself is batch.score_chunk, the local
    run's, covered by tests/serving/test_batch_predict.py."""
    pytest.importorskip("ray")
    import ray

    from modelloop.serving.ray_predict import predict_file_on_ray

    with ray_head(cpus=2) as (address, _):
        project = linear_project(tmp_path / "p", compute={"address": address})
        ws = project.workspace
        data = tmp_path / "in.csv"
        make_table(2000, seed=3).drop(columns=["y"]).to_csv(data, index=False)
        try:
            local = predict_file(ws, data, tmp_path / "local.csv", chunk_rows=300)
            seen: list[int] = []
            res = predict_file_on_ray(ws, data, tmp_path / "ray.csv", chunk_rows=300, workers=2,
                                      progress=seen.append)
            assert res["engine"] == "ray" and res["workers"] == 2 and res["rows"] == local["rows"] == 2000
            assert res["columns"] == local["columns"] and res["model"] == local["model"]
            assert seen == sorted(seen) and seen[-1] == 2000 and len(seen) == 7     # 7 chunks, in order
            pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ray.csv"), pd.read_csv(tmp_path / "local.csv"))
            bad = pd.read_csv(data, dtype=str)
            bad.loc[1233, "amount"] = "lots"                 # the file's row 1234, in the 5th chunk
            bad.to_csv(tmp_path / "bad.csv", index=False)
            with pytest.raises(DataError, match=r"row 1234, amount: must be a number"):
                predict_file_on_ray(ws, tmp_path / "bad.csv", tmp_path / "bad_out.csv", chunk_rows=300, workers=2)
            assert not (tmp_path / "bad_out.csv").exists()
        finally:
            ray.shutdown()
