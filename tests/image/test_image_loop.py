"""The image family's loop on the session's project (``conftest.trained_parts``, run through the pipeline):
a real server answers, feedback on the served images comes back, `modelloop retrain` builds a dataset
version holding those images and gates the challenger; `modelloop predict` scores folders and tables."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from clirun import cli
from servers import running

from modelloop.data.ingest import load_dataset
from modelloop.project import Project
from modelloop.serving import create_app

CLASSES = ("bolt", "nut", "washer")


def _png(kind: str, rng: np.random.Generator) -> bytes:
    from modelloop.examples.images import draw_part

    buf = io.BytesIO()
    draw_part(kind, 32, rng).save(buf, "PNG")
    return buf.getvalue()


def test_feedback_on_served_images_becomes_a_dataset_version_and_the_challenger_is_gated(trained_parts: Path, capsys):
    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    parent, base, _ = load_dataset(ws)
    rng = np.random.default_rng(11)
    sent = [(kind, _png(kind, rng)) for kind in CLASSES * 4]
    with running(create_app(ws)) as url:
        by_json = httpx.post(f"{url}/v1/predict", timeout=60, json={
            "records": [{"image": base64.b64encode(raw).decode()} for _, raw in sent[:6]]})
        by_upload = httpx.post(f"{url}/v1/predict/image", timeout=60,
                               files=[("file", (f"{i}.png", raw)) for i, (_, raw) in enumerate(sent[6:])])
        ids = [p["request_id"] for answer in (by_json, by_upload) for p in answer.json()["predictions"]]
        assert by_json.status_code == by_upload.status_code == 200 and len(ids) == len(sent)
        for rid, (kind, _) in zip(ids, sent, strict=True):
            stored = httpx.post(f"{url}/v1/feedback", json={"request_id": rid, "label": kind}, timeout=30)
            assert stored.status_code == 201, stored.text
    from modelloop.families.image.served import SERVED_DIR, digest_of
    from modelloop.ui import render_retrain

    gone = digest_of(sent[0][1])  # one labelled image no longer kept: left out, and the summary says so
    (ws.state / SERVED_DIR / gone[7:9] / gone[7:]).unlink()
    sent = sent[1:]
    code, out, err = cli(["retrain", "--json"], capsys, trained_parts)
    assert code == 0, err
    result = json.loads(out)
    assert result["added_rows"] == len(sent) and result["feedback_inputs"]["images_missing"] == 1
    render_retrain(result)  # the summary `modelloop retrain` prints
    said = " ".join(capsys.readouterr().out.split())
    assert "1 labelled image(s) are no longer kept" in said and "their feedback is not used" in said
    # the new version holds the served images themselves (their bytes, as ingest stores an image) and labels
    row, merged, _ = load_dataset(ws, result["dataset"])
    assert row["parents"] == [parent["id"]] and len(merged) == len(base) + len(sent)
    added = merged[merged["_origin"] == "feedback"]
    assert sorted(added["image"].map(base64.b64decode)) == sorted(raw for _, raw in sent)
    assert dict(zip(added["image"].map(base64.b64decode), added["label"], strict=True)) == \
        {raw: kind for kind, raw in sent}
    assert result["rows"]["recent"] == round(len(sent) / 2)  # retrain.recent_fraction 0.5 of the new feedback
    # the challenger was trained on that version and the gate decided, saying why
    challenger = ws.catalog.get_model("parts", result["challenger"]["model"]["version"])
    assert challenger["dataset_id"] == result["dataset"] and challenger["family"] == "image"
    said = ("challenger beats champion on the recent slice",) if result["promoted"] else ("does not beat", "on the frozen holdout")
    assert any(words in result["reason"] for words in said), result["reason"]
    production = ws.catalog.get_alias("parts", "production")
    assert production == (challenger["version"] if result["promoted"] else 1)
    assert {"f1_macro", "accuracy"} <= set(result["challenger"]["metrics"]["recent"])


def test_feedback_on_an_image_no_longer_kept_is_left_out_and_said(trained_parts: Path, tmp_path: Path):
    from modelloop.families.image.served import SERVED_DIR, digest_of, feedback_inputs, keep_image

    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    raw = _png("nut", np.random.default_rng(3))
    frame = pd.DataFrame({"image": [digest_of(raw), digest_of(b"gone")], "label": ["nut", "bolt"]})
    keep_image(ws.state / SERVED_DIR, raw, digest_of(raw))
    out, note = feedback_inputs(ws, frame)
    assert list(out["label"]) == ["nut"] and base64.b64decode(out["image"].iloc[0]) == raw
    assert note["images_missing"] == 1 and "not used" in note["why"]


def test_served_images_stay_under_the_cap_oldest_pruned_and_retrain_says_how_many_were_gone(trained_parts: Path,
                                                                                             tmp_path: Path, capsys):
    import time
    from types import SimpleNamespace

    from modelloop.families.image.serve import image_runtime
    from modelloop.families.image.served import SERVED_DIR, digest_of, feedback_inputs
    from modelloop.ui import render_retrain

    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    rng = np.random.default_rng(5)
    sent = [_png(kind, rng) for kind in CLASSES * 6]
    cap = sum(len(raw) for raw in sent[-8:])  # room for about 8 of the 18
    ws.config.serve.max_served_images_bytes = cap
    runtime = image_runtime(ws, ws.catalog.get_model("parts", 1), None, 1)
    assert runtime.validator.keep.max_bytes == cap  # serve.max_served_images_bytes reaches the validator
    here = SimpleNamespace(state=tmp_path)  # its own folder: the session's served images stay as they are
    runtime.validator.keep.folder = folder = tmp_path / SERVED_DIR
    for raw in sent:
        runtime.validator.record(raw)
        assert sum(f.stat().st_size for f in folder.glob("*/*")) <= cap
        time.sleep(0.01)  # distinct modification times: pruning goes by when an image was last served
    kept = [(folder / digest_of(raw)[7:9] / digest_of(raw)[7:]).is_file() for raw in sent]
    assert kept[-1] and not kept[0] and kept == sorted(kept), kept  # the oldest went first
    frame = pd.DataFrame({"image": [digest_of(raw) for raw in sent], "label": list(CLASSES * 6)})
    out, note = feedback_inputs(here, frame)
    gone = len(sent) - sum(kept)
    assert len(out) == sum(kept) and note["images_missing"] == gone
    # the retrain summary says it
    model = {"model": {"name": "parts", "version": 1}, "metrics": {"holdout": {}, "recent": {}}}
    render_retrain({"promoted": False, "reason": "r", "metric": "f1_macro", "champion": model,
                    "challenger": {**model, "model": {"name": "parts", "version": 2}},
                    "rows": {"holdout": 1, "recent": 1}, "feedback_inputs": note})
    said = " ".join(capsys.readouterr().out.split())
    assert f"{gone} labelled image(s) are no longer kept" in said and "max_served_images_bytes" in said


def test_predict_scores_a_folder_and_a_table_of_paths_reporting_bad_files_per_row(trained_parts: Path, tmp_path: Path,
                                                                                 capsys):
    from modelloop.families import family_of

    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    rng = np.random.default_rng(21)
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    files = {"a.png": _png("bolt", rng), "sub/b.png": _png("washer", rng), "c.png": _png("nut", rng)}
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    (folder / "notes.txt").write_text("not an image")
    (folder / "cut.png").write_bytes(files["a.png"][:60])
    code, out, err = cli(["predict", "--data", str(folder), "--out", str(tmp_path / "p.csv"), "--json"], capsys, trained_parts)
    assert code == 0, err
    result = json.loads(out)
    assert result["rows"] == 5 and result["failed"] == 2 and result["columns"][0] == "label"
    written = pd.read_csv(tmp_path / "p.csv")
    assert list(written["path"]) == ["a.png", "c.png", "cut.png", "notes.txt", "sub/b.png"]
    good = written[written["error"].isna()]
    # the answers are the production model's for those files
    row = ws.catalog.get_model("parts", ws.catalog.get_alias("parts", "production"))
    model = family_of(row).load(ws, row)
    expected = model.predict_proba([files[p] for p in good["path"]])
    np.testing.assert_allclose(good[[f"proba_{c}" for c in model.classes_]].to_numpy(), expected, atol=1e-5)
    assert list(good["label"]) == list(np.asarray(model.classes_)[expected.argmax(1)])
    bad = written.set_index("path").loc[["cut.png", "notes.txt"]]
    assert bad["label"].isna().all() and bad["error"].str.len().gt(0).all()
    # a table of paths relative to it: its columns kept; a missing file is a row's error too
    table = pd.DataFrame({"file": ["a.png", "sub/b.png", "gone.png"], "shelf": [1, 2, 3]})
    table.to_csv(folder / "batch.csv", index=False)
    code, out, _ = cli(["predict", "--data", str(folder / "batch.csv"), "--out", str(tmp_path / "t.jsonl")],
                       capsys, trained_parts)
    assert code == 0 and "1 row could not be scored" in out
    scored = pd.read_json(tmp_path / "t.jsonl", lines=True)
    assert list(scored.columns[:2]) == ["file", "shelf"] and scored["error"].notna().tolist() == [False, False, True]
    assert scored["error"][2].startswith("cannot read the file")
    pd.DataFrame({"shelf": [1], "note": ["x"]}).to_csv(tmp_path / "plain.csv", index=False)
    code, _, err = cli(["predict", "--data", str(tmp_path / "plain.csv"), "--out", str(tmp_path / "x.csv")], capsys,
                       trained_parts)
    assert code == 2 and "cannot tell which column holds the image paths" in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


def test_retention_deletes_old_images_and_the_cap_keeps_those_awaiting_feedback(tmp_path: Path):
    """serve.served_images_days and the cap, on a real catalog: an image served before the retention goes at
    the sweep; past the cap the oldest go first, except images whose predictions (in the window) await
    feedback or have feedback not merged by a retrain yet."""
    import datetime as dt
    import os
    import time

    from modelloop.catalog import Catalog, utcnow
    from modelloop.families.image.served import ServedImages, digest_of, keep_image, pending_digests

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    folder = tmp_path / "served"
    rng = np.random.default_rng(3)
    raw = {k: _png(CLASSES[i % 3], rng) for i, k in enumerate("gabcdef")}
    now = time.time()
    for age, k in zip((40 * 86400, 600, 500, 400, 300, 200, 100), "gabcdef", strict=True):  # g: 40 days ago
        keep_image(folder, raw[k], digest_of(raw[k]))
        path = folder / digest_of(raw[k])[7:9] / digest_of(raw[k])[7:]
        os.utime(path, (now - age, now - age))
    at = utcnow() - dt.timedelta(hours=1)  # d was served without a log row (another model's, or lost)
    catalog.add_predictions([{"request_id": k, "name": "parts", "version": 1, "at": at, "inputs": {"image": digest_of(raw[k])},
                              "output": {}, "latency_ms": 1.0} for k in "abcef"])
    catalog.add_feedback("c", "nut")  # c's verdict came, then a retrain merged it
    catalog.add_decision(name="parts", trigger={}, dataset_id=None, champion={}, challenger={}, promoted=False,
                         reason="r")
    time.sleep(0.01)
    catalog.add_feedback("b", "bolt")  # b's came after the retrain: not merged yet
    assert pending_digests(catalog, "parts", utcnow() - dt.timedelta(days=30)) == {digest_of(raw[k]) for k in "abef"}
    x = _png("washer", rng)
    cap = int((sum(len(raw[k]) for k in "abef") + len(x)) / 0.9) + 16  # room for a, b, e, f and x at 90 %
    store = ServedImages(folder, cap, days=30, pending=lambda since: pending_digests(catalog, "parts", since))
    store.keep(x, digest_of(x))
    left = {k for k, v in {**raw, "x": x}.items() if (folder / digest_of(v)[7:9] / digest_of(v)[7:]).is_file()}
    # g passed the retention; the cap took c (merged) and d (no prediction needs it), the oldest, and kept
    # a and b though older than x and d: their predictions still await feedback or its merge
    assert left == {"a", "b", "e", "f", "x"}
    assert sum(p.stat().st_size for p in folder.glob("*/*")) <= cap
    # far under the cap, the retention sweep alone deletes an image last served 40 days ago
    old, y = _png("nut", rng), _png("bolt", rng)
    keep_image(folder, old, digest_of(old))
    path = folder / digest_of(old)[7:9] / digest_of(old)[7:]
    os.utime(path, (now - 40 * 86400, now - 40 * 86400))
    ServedImages(folder, 1 << 40, days=30).keep(y, digest_of(y))
    assert not path.exists() and (folder / digest_of(y)[7:9] / digest_of(y)[7:]).is_file()


def test_evaluate_data_reads_a_folder_of_class_folders_as_images(trained_parts: Path, tmp_path: Path, capsys):
    """`modelloop evaluate --data photos/` on an image model reads the folder as the image family does; it
    was read as a folder of .txt files ('no non-empty .txt files in its class folders', exit 2)."""
    from modelloop.examples.images import generate_images
    from modelloop.families import family_of

    generate_images(tmp_path / "labeled", per_class=4, size=32, seed=5, classes=CLASSES)
    code, out, err = cli(["evaluate", "--model", "1", "--data", str(tmp_path / "labeled"), "--json"], capsys,
                         trained_parts)
    assert code == 0, err
    result = json.loads(out)
    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    model = family_of(row).load(ws, row)
    files = sorted((tmp_path / "labeled").rglob("*.*"))
    truth = [f.parent.name for f in files]
    guessed = np.asarray(model.classes_)[model.predict_proba([f.read_bytes() for f in files]).argmax(1)]
    assert result["rows"] == len(files) == 12
    assert result["metrics"]["accuracy"] == np.mean(guessed == np.asarray(truth))
