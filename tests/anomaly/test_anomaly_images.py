"""Anomaly detection on images (``anomaly.backbone``): a folder of tiny generated images, the detectors
over the image family's frozen EfficientNet-Lite0 features, through `modelloop run`, a real server
(base64 records and a multipart upload, as a client sends them, scored as offline) and a verdict on a
served image, whose bytes the family gives back for the next training."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from clirun import cli
from servers import running

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
torch.set_num_threads(1)  # the shared 2-core test machine (tests/image/conftest.py)

SIZE = 32


def _png(kind: str, rng: np.random.Generator) -> bytes:
    from modelloop.examples.images import draw_part

    buf = io.BytesIO()
    draw_part(kind, SIZE, rng).save(buf, "PNG")
    return buf.getvalue()


def _project(root: Path, **anomaly) -> Path:
    rng = np.random.default_rng(0)
    for i in range(36):  # the ordinary parts: bolts; a few labelled anomalies: gears among them
        (root / "images" / "good").mkdir(parents=True, exist_ok=True)
        (root / "images" / "good" / f"{i:02d}.png").write_bytes(_png("bolt", rng))
    for i in range(3):
        (root / "images" / "faulty").mkdir(parents=True, exist_ok=True)
        (root / "images" / "faulty" / f"{i:02d}.png").write_bytes(_png("gear", rng))
    for i in range(6):  # unlabelled images directly in the folder
        (root / "images" / f"loose{i}.png").write_bytes(_png("bolt", rng))
    cfg = {
        "name": "parts",
        "task": "anomaly_detection",
        "data": {"source": "images", "target": "label"},
        "anomaly": {"backbone": "efficientnet-lite0", "image_size": SIZE, "contamination": 0.1, **anomaly},
        "train": {"budget": 60, "trials": 2},
    }
    (root / "modelloop.yaml").write_text(yaml.safe_dump(cfg))
    return root


def test_images_are_scored_on_backbone_features_served_as_offline(tmp_path: Path, capsys):
    from modelloop.data.ingest import load_dataset
    from modelloop.project import Project
    from modelloop.registry import load_model
    from modelloop.serving import ServeConfig, create_app

    root = _project(tmp_path)
    code, out, err = cli(["run", "--json"], capsys, root)
    assert code == 0, err
    summary = json.loads(out)
    used = summary["features"]["used"]
    assert used[0] == "embedding" and "brightness" in used and "width" not in used  # constant: left out
    assert {d["detector"] for d in summary["detectors"]} == {"knn", "lof"}  # images' default
    page = Path(summary["report"]).read_text(encoding="utf-8")  # the top anomalies show their images
    assert "<th>image</th>" in page and 'src="data:image/jpeg;base64,' in page
    ws = Project.load(root / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    model = load_model(ws, row)
    assert model.encoder_._net is None  # the network is rebuilt from the installed weights, never pickled
    _, df, _ = load_dataset(ws)
    assert df["label"].isna().sum() == 6 and set(df["label"].dropna()) == {"good", "faulty"}

    rng = np.random.default_rng(5)
    sent = [_png(kind, rng) for kind in ("bolt", "bolt", "bolt", "washer", "washer")]
    offline = model.predict_proba(pd.DataFrame({"image": [base64.b64encode(b).decode() for b in sent]}))
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        by_json = httpx.post(
            f"{url}/v1/predict",
            timeout=60,
            json={"records": [{"image": base64.b64encode(b).decode()} for b in sent]},
        )
        by_upload = httpx.post(
            f"{url}/v1/predict/image",
            timeout=60,
            files=[("file", (f"{i}.png", b)) for i, b in enumerate(sent)],
        )
        assert by_json.status_code == by_upload.status_code == 200, by_json.text
        served = [p["score"] for p in by_json.json()["predictions"]]
        uploaded = [p["score"] for p in by_upload.json()["predictions"]]
        np.testing.assert_allclose(
            served, offline[:, 0], atol=1e-6
        )  # batched or alone, as offline (answers: 6 digits)
        np.testing.assert_allclose(uploaded, offline[:, 0], atol=1e-6)
        first = by_json.json()["predictions"][0]
        assert {r["feature"] for r in first["reasons"]} <= set(used) and "is_anomaly" in first
        odd = httpx.post(f"{url}/v1/predict", timeout=60, json={"records": [{"image": "bm90IGFuIGltYWdl"}]})
        assert odd.status_code == 422 and "records[0].image" in odd.text
        rid = by_json.json()["predictions"][4]["request_id"]
        verdict = httpx.post(f"{url}/v1/feedback", json={"request_id": rid, "label": "confirmed"}, timeout=30)
        assert verdict.status_code == 201, verdict.text
    # the odd shapes score above the ordinary parts they were planted among
    assert min(offline[3:, 0]) > np.median(offline[:3, 0])
    # the verdict's image was kept by digest, and the family gives it back to retrain's merge (the image
    # family's served.py: tests/image/test_image_loop.py runs that retrain)
    from modelloop.families import get_family
    from modelloop.families.image.served import digest_of

    logged = pd.DataFrame({"image": [digest_of(sent[4])], "label": ["confirmed"]})
    back, note = get_family("anomaly").feedback_inputs(ws, logged)
    assert [base64.b64decode(t) for t in back["image"]] == [sent[4]] and note == {"images_found": 1}


def test_an_image_backbone_needs_a_folder(tmp_path: Path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    cfg = {
        "name": "x",
        "task": "anomaly_detection",
        "data": {"source": "t.csv"},
        "anomaly": {"backbone": "efficientnet-lite0"},
        "train": {"trials": 1},
    }
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2 and "is not a folder" in err and "Traceback" not in err


def test_verdicts_on_served_images_come_back_and_the_challenger_learns_from_them(tmp_path: Path):
    """run, serve, verdicts on served images, retrain: the merged version holds the served images with
    their verdicts, and the challenger reads those verdicts as labels (the labelled choice of members and
    the booster over them), so the kind of image analysts call a false alarm drops below the kind they
    confirm, where the champion ranked it above."""
    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.project import Project
    from modelloop.registry import load_model
    from modelloop.serving import ServeConfig, create_app

    root = _project(tmp_path)
    project = Project.load(root / "modelloop.yaml")
    assert project.run()["model"]["version"] == 1
    ws = project.workspace
    champion = load_model(ws, ws.catalog.get_model("parts", 1))
    assert champion.selection_["method"] == "ensemble"  # too few labelled gears to choose by them
    rng = np.random.default_rng(7)
    # analysts: gears (the planted fault) are confirmed, washers (an odd shape that is fine) false alarms
    sent = [(kind, _png(kind, rng)) for _ in range(20) for kind in ("gear", "washer")]
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        answer = httpx.post(f"{url}/v1/predict", timeout=120,
                            json={"records": [{"image": base64.b64encode(b).decode()} for _, b in sent]})
        assert answer.status_code == 200, answer.text
        for p, (kind, _) in zip(answer.json()["predictions"], sent, strict=True):
            verdict = "confirmed" if kind == "gear" else "false_alarm"
            stored = httpx.post(f"{url}/v1/feedback", json={"request_id": p["request_id"], "label": verdict},
                                timeout=30)
            assert stored.status_code == 201, stored.text
    result = project.retrain()
    assert result["added_rows"] == len(sent) and result["feedback_inputs"] == {"images_found": len(sent)}
    row, merged, _ = load_dataset(ws, result["dataset"])
    added = merged[merged["_origin"] == "feedback"]
    assert dict(zip(added["image"].map(base64.b64decode), added["label"], strict=True)) == {
        raw: ("confirmed" if kind == "gear" else "false_alarm") for kind, raw in sent}
    side = ensure_split(ws, row, merged).to_numpy()
    train = merged[side == "train"]
    faulty = int(train["label"].isin(["faulty", "confirmed"]).sum())  # the folder's gears and the verdicts'
    normal = int(train["label"].isin(["good", "false_alarm"]).sum())
    recent = round(len(sent) * ws.config.retrain.recent_fraction)  # the latest verdicts: the gate's; the rest train
    assert result["rows"]["recent"] == recent and faulty >= 10

    challenger = load_model(ws, ws.catalog.get_model("parts", result["challenger"]["model"]["version"]))
    selection = challenger.selection_
    assert selection["method"] == "average_precision" and selection["labelled_anomalies"] == faulty
    assert selection["booster"]["anomalies"] == faulty and selection["booster"]["normal"] == normal
    assert "precision_at_budget" in result["challenger"]["metrics"]["recent"]  # the gate read the recent verdicts
    fresh = [(kind, _png(kind, rng)) for _ in range(6) for kind in ("gear", "washer")]
    frame = pd.DataFrame({"image": [base64.b64encode(b).decode() for _, b in fresh]})
    gear = np.array([kind == "gear" for kind, _ in fresh])

    def gap(model) -> float:  # mean score of fresh gears minus fresh washers
        s = model.predict(frame)
        return float(s[gear].mean() - s[~gear].mean())

    assert gap(challenger) > gap(champion) + 0.1, (gap(champion), gap(challenger), selection)
