"""How a TF-IDF text model is served: modelloop's ``TfidfScorer`` against the skl2onnx graph in ONNX Runtime
(what a user serving scikit-learn through ONNX would run) and scikit-learn's own ``predict_proba``, on the
same fitted pipeline and texts, in one run.

    python benchmarks/tfidf_serving.py [SET] [--rows 3200] [--batch 640]

SET: a review folder or sdist that ``text_zh.py`` reads (neg.txt/pos.txt), else the bundled sentiment example.
The pipeline is the search's widest TF-IDF (character 1–3-grams, word 1–2-grams, jieba words 1–2 where jieba is
installed, NB scaling). Printed: CPU ms of one text at batch 1 (``latency.per_text_ms``: the median over 16 texts
of each one's least of 3 calls) and per text in one batch, the graph's conversion seconds, the largest difference
in probabilities from scikit-learn, and the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _texts(source: str | None, rows: int) -> tuple[list[str], np.ndarray]:
    if source:
        from text_zh import _read

        df = _read(source, "text", "label", rows)
    else:
        ex = Path(__file__).resolve().parents[1] / "src" / "modelloop" / "examples" / "sentiment.jsonl"
        df = pd.read_json(ex, lines=True).rename(columns={"review": "text", "sentiment": "label"})
    return df["text"].astype(str).tolist(), pd.factorize(df["label"])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?")
    ap.add_argument("--rows", type=int, default=3200)
    ap.add_argument("--batch", type=int, default=640)
    args = ap.parse_args()

    from modelloop.families.text.classical import (
        LARGEST_N, TfidfTextModel, fit_tfidf, pipeline_inputs, segmenter, tfidf_defaults, tfidf_inputs)
    from modelloop.families.text.latency import per_text_ms, probe_texts

    texts, y = _texts(args.source, args.rows)
    params = {**tfidf_defaults(), "char_max": LARGEST_N["chars"], "word_max": LARGEST_N["words"], "nb": True}
    if segmenter() is not None:
        params["seg_max"] = LARGEST_N["segs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = fit_tfidf(texts, y, params, class_weight="balanced", seed=0)
    model = TfidfTextModel.from_pipeline(pipe, classes=sorted(set(y.tolist())), text_column="text", target=None,
                                         config={}, seed=0, class_weight="balanced", metric="f1_macro",
                                         description={})
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        session = model._open_session(model.export_onnx(Path(folder) / "tfidf.onnx")["path"], 1)
        convert_s = time.perf_counter() - t0
        probe, batch = probe_texts(texts), texts[: args.batch]
        ways = {"modelloop scorer": lambda ts: model.score_texts(ts)[0],
                "skl2onnx + ORT": lambda ts: model.score_texts(ts, session)[0],
                "scikit-learn": lambda ts: pipe.predict_proba(tfidf_inputs(ts, pipeline_inputs(pipe)))}
        want = ways["scikit-learn"](batch)
        print(f"{len(texts)} texts, {sum(len(v.vocabulary_) for _, v, _ in pipe[0].transformers_ if hasattr(v, 'vocabulary_'))}"
              f" n-grams; graph converted in {convert_s:.1f} s; median text {int(np.median([len(t) for t in texts]))} chars")
        one, many = {}, {}
        for name, fn in ways.items():
            one[name] = per_text_ms(lambda t, fn=fn: fn([t]), probe)
            t0 = time.process_time()
            got = fn(batch)
            many[name] = (time.process_time() - t0) * 1000 / len(batch)
            diff = float(np.abs(np.asarray(got) - want).max())
            print(f"  {name:<17} batch 1 {one[name]:7.3f} ms CPU   batch {len(batch)} {many[name]:7.3f} ms a text   "
                  f"max |p - sklearn| {diff:.1e}")
    s = "modelloop scorer"
    print(f"  ratio at batch 1: graph / scorer {one['skl2onnx + ORT'] / one[s]:.2f}x, scikit-learn / scorer "
          f"{one['scikit-learn'] / one[s]:.2f}x; in a batch: {many['skl2onnx + ORT'] / many[s]:.2f}x, "
          f"{many['scikit-learn'] / many[s]:.2f}x")


if __name__ == "__main__":
    main()
