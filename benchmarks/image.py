"""Image-model inference on CPU: PyTorch eager against ONNX Runtime fp32, static int8 and a distilled student.

    python benchmarks/image.py [--size 224] [--per-class 40] [--threads 1] [--repeats 20] [--json out.json]

Model: EfficientNet-Lite0 with its installed ImageNet weights and a logistic-regression head fitted on
frozen features (``method: head``) of the ``images`` example's generator (4 classes, ``--per-class`` images
each at 64 px, resized to ``--size``), one seeded stratified 75/25 split. The fp32 graph and the static
int8 graph (QDQ, per-channel weights, activations calibrated on 64 training images) are built by the
same code ``modelloop optimize`` runs (``families/image/export.py``). The student is the ``distilled``
variant ``modelloop optimize`` builds (``families/image/student.py``: a small CNN distilled from that model
on the training images), timed in PyTorch eager and as its ONNX fp32 graph (``--no-student``: skipped).

Timed, for batches of 1 and 32 preprocessed test images (decoding and resizing excluded: the same for all
three), ``--threads`` intra-op threads for each: PyTorch eager (the peer: what a hand-written
torchvision-style service runs), ONNX Runtime fp32, ONNX Runtime int8; p50 latency over ``--repeats``
calls after two warm-up calls, variants alternating; the test accuracy of each; the ratios to eager.
Goal (issue 22): int8 >= 2x eager with <= 1 point of accuracy lost; the student's accuracy and speed
are printed against the teacher's eager figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _build(size: int, per_class: int, seed: int, folder: Path):
    import torch

    from modelloop.data.images import decode_image, resize
    from modelloop.examples.images import generate_images
    from modelloop.families.image.fit import extract_features
    from modelloop.families.image.backbone import load_network
    from modelloop.families.image.model import ImageModel
    from modelloop.families.text.fit import fit_linear_head

    import base64

    import pandas as pd

    counts = generate_images(folder / "images", per_class=per_class, size=64, seed=seed)
    classes = sorted(counts)
    files = sorted((folder / "images").rglob("*.*"))
    y = np.array([classes.index(f.parent.name) for f in files])
    x = np.stack([resize(decode_image(f.read_bytes()), size) for f in files])
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in range(len(classes)):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, len(idx) // 4, replace=False)] = True
    net = load_network("efficientnet-lite0", len(classes), image_size=size, seed=seed)
    W, b = fit_linear_head(extract_features(net, x[~test]), y[~test], len(classes), c=1.0, class_weight="balanced",
                           seed=seed)
    with torch.no_grad():
        net.fc.weight.copy_(torch.from_numpy(W).float())
        net.fc.bias.copy_(torch.from_numpy(b).float())
    model = ImageModel.from_network(net, classes=classes, config={"image_size": size, "method": "head",
                                                                  "backbone": "efficientnet-lite0"},
                                    target="label", description={})
    kept = [f for f, held_out in zip(files, test, strict=True) if not held_out]
    train = pd.DataFrame({"image": [base64.b64encode(f.read_bytes()).decode() for f in kept],
                          "label": [classes[c] for c in y[~test]]})
    return model, x[~test], x[test], y[test], train


def _p50(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-student", action="store_true", help="skip the distilled student")
    ap.add_argument("--student-epochs", type=int, default=None, help="default: the variant's (student.EPOCHS)")
    a = ap.parse_args()

    import torch

    from modelloop.families.image.export import export_image_onnx, image_session, quantize_image_static

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="modelloop-bench-image-") as tmp:
        folder = Path(tmp)
        model, x_train, x_test, y_test, train = _build(a.size, a.per_class, a.seed, folder)
        fp32 = export_image_onnx(model, folder / "model.onnx", pixels=x_test[:16])
        calib = x_train[np.random.default_rng(a.seed).permutation(len(x_train))[:64]]
        int8 = quantize_image_static(Path(fp32["path"]), folder / "model-int8.onnx", model, calib)
        sessions = {"onnx_fp32": image_session(fp32["path"], threads=a.threads),
                    "onnx_int8": image_session(int8["path"], threads=a.threads)}
        runners = {"pytorch_eager": lambda px: model.scores_of_pixels(px),
                   **{k: (lambda px, s=s: model.scores_of_pixels(px, session=s)) for k, s in sessions.items()}}
        sizes = {"pytorch_eager": None, "onnx_fp32": fp32["size_bytes"], "onnx_int8": int8["size_bytes"]}
        if not a.no_student:
            from modelloop.families.image.student import EPOCHS, distil_student

            t0 = time.perf_counter()
            student, info = distil_student(model, train, target="label", seed=a.seed,
                                           epochs=a.student_epochs or EPOCHS)
            print(f"student distilled in {time.perf_counter() - t0:.1f} s ({info['epochs_run']} epochs over "
                  f"{info['views']} views, {info['parameters']:,} weights)")
            s_fp32 = export_image_onnx(student, folder / "student.onnx", pixels=x_test[:16])
            s_session = image_session(s_fp32["path"], threads=a.threads)
            runners["student_eager"] = lambda px: student.scores_of_pixels(px)
            runners["student_onnx"] = lambda px: student.scores_of_pixels(px, session=s_session)
            sizes.update(student_eager=None, student_onnx=s_fp32["size_bytes"])
        results = {}
        for name, run in runners.items():
            acc = float((run(x_test).argmax(1) == y_test).mean())
            results[name] = {"accuracy": acc, "size_bytes": sizes[name]}
        for batch in (1, 32):
            px = np.ascontiguousarray(np.resize(x_test, (batch, *x_test.shape[1:])))
            repeats = a.repeats if batch == 1 else max(3, a.repeats // 4)
            for name, run in runners.items():  # alternating variants within each batch size
                results[name][f"p50_ms_batch{batch}"] = round(_p50(lambda run=run, px=px: run(px), repeats), 3)
    eager = results["pytorch_eager"]
    print(f"EfficientNet-Lite0 head, {a.size} px, {a.threads} thread(s), {len(y_test)} test images")
    print(f"{'variant':<15}{'acc':>7}{'p50 b1 ms':>12}{'p50 b32 ms':>12}{'x eager b1':>12}{'x eager b32':>13}")
    for name, r in results.items():
        r["speedup_batch1"] = round(eager["p50_ms_batch1"] / r["p50_ms_batch1"], 2)
        r["speedup_batch32"] = round(eager["p50_ms_batch32"] / r["p50_ms_batch32"], 2)
        print(f"{name:<15}{r['accuracy']:>7.3f}{r['p50_ms_batch1']:>12.2f}{r['p50_ms_batch32']:>12.2f}"
              f"{r['speedup_batch1']:>12.2f}{r['speedup_batch32']:>13.2f}")
    lost = (eager["accuracy"] - results["onnx_int8"]["accuracy"]) * 100
    print(f"int8 vs eager: {results['onnx_int8']['speedup_batch1']}x at batch 1, "
          f"{results['onnx_int8']['speedup_batch32']}x at batch 32, {lost:+.1f} accuracy points lost "
          f"(goal: >= 2x, <= 1 point)")
    if "student_onnx" in results:
        s = results["student_onnx"]
        print(f"student (ONNX) vs teacher eager: {s['speedup_batch1']}x at batch 1, {s['speedup_batch32']}x at "
              f"batch 32, {(eager['accuracy'] - s['accuracy']) * 100:+.1f} accuracy points lost")
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
