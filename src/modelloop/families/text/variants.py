"""Variants of a text model for the optimize stage, each an ONNX graph served by ONNX Runtime.

* ``onnx`` — the fp32 graph of the (LoRA-merged) network, checked against PyTorch on export
  (:func:`~modelloop.families.text.export.export_text_onnx`).
* ``onnx_int8_dynamic`` — int8 weights per output channel, activations quantized per batch at run
  time: no calibration, the usual best choice for transformers on CPU.
* ``onnx_int8_static`` — int8 weights and uint8 activations with scales fixed beforehand from a
  calibration sample of the training texts (``CALIBRATION_TEXTS``, min/max calibration), in
  QOperator form (QLinearMatMul, quantized Gather for the embeddings); layer norm and softmax stay
  in float. Measured on the intents example (MiniLM, ORT 1.32, 1 thread): QOperator + uint8 + MinMax
  was the fastest and most accurate of the four settings tried (5.3 ms at batch 1, test accuracy
  0.958 vs 1.0 fp32); QDQ + int8 + percentile/entropy ran 4-7x slower *and* lost more. Transformers
  usually lose more to static than to dynamic int8 (activation ranges vary with the text); the
  stage's quality budget decides whether it is kept.

* ``pruned`` — a new network with 40 % of each encoder layer's feed-forward neurons removed
  (structured: the matrices shrink, so ONNX Runtime's dense kernels do less work; zeroed weights
  would not), least important first (mean |activation| on training texts x output-weight norm),
  then a short fine-tune on the teacher's logits and the labels.
* ``distilled`` — a student that keeps every other encoder layer (half, top layer included),
  trained the same way for a few more epochs.

  Both (:mod:`.text_compress`, settings in :class:`~.text_compress.CompressSettings`, time-capped)
  are exported and checked like the teacher, and served in int8 unless int8 changes more than
  1 - ``INT8_MIN_AGREEMENT`` of their labels on the calibration texts (then fp32). An encoder
  without BERT-style layers, or a build that fails, is skipped with a one-line reason; nothing is
  written then. On the intents example (MiniLM-L6, 384 training texts, 2 CPU cores) the pruned
  network kept every test label of the teacher with 40 % pruned and 3 epochs (50 % changed one);
  the 3-layer student kept them all after 4 epochs; each build took 0.5-2 minutes (shared machine).

Every variant comes back as a :class:`TextVariant`: the model object to register (the teacher for
the first three, the smaller TextModel for the last two), the ONNX file, the ``formats`` key
serving looks for (``onnx`` or ``onnx_int8``) and an open session. The optimize stage scores and
times it like any other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .compress import CompressSettings

if TYPE_CHECKING:
    from ...optimization.optimize import VariantPredictor

__all__ = ["CALIBRATION_TEXTS", "TEXT_VARIANTS", "SkipVariant", "TextVariant", "TextVariantBuilder",
           "text_variant_maker"]

TEXT_VARIANTS = ("onnx", "onnx_int8_dynamic", "onnx_int8_static", "pruned", "distilled")
CALIBRATION_TEXTS = 128
INT8_MIN_AGREEMENT = 0.99  # a compressed network is served in int8 when int8 keeps this share of its labels


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


class SkipVariant(Exception):
    """A variant that does not apply (or could not be built); the message is the one-line reason."""


@dataclass
class TextVariant:
    model: Any          # the TextModel registered when this variant is chosen
    path: Path          # its ONNX file
    fmt: str            # the ``formats`` key serving reads: "onnx" (fp32) or "onnx_int8"
    session: Any

    def proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba_onnx(frame, session=self.session)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


class TextVariantBuilder:
    """Builds the variants of one teacher into ``folder`` (exporting the fp32 graph once)."""

    def __init__(self, teacher: Any, train: pd.DataFrame, *, target: str, seed: int, folder: Path,
                 compress: CompressSettings | None = None, threads: int = 1):
        self.teacher, self.train, self.target, self.seed = teacher, train, target, seed
        self.threads = threads  # intra-op threads of each variant's session: those it will be served with
        self.folder = Path(folder)
        self.compress = compress or CompressSettings()
        self._export: dict[str, Any] | None = None

    def build(self, name: str) -> TextVariant:
        from .pipeline import TextPipelineModel

        if isinstance(self.teacher, TextPipelineModel):
            return self._pipeline(name)
        if name == "onnx":
            return self._variant(self.teacher, Path(self._exported()["fp32"]["path"]), "onnx")
        if name == "onnx_int8_dynamic":
            return self._variant(self.teacher, Path(self._exported()["int8"]["path"]), "onnx_int8")
        if name == "onnx_int8_static":
            return self._variant(self.teacher, self._static(), "onnx_int8")
        if name in ("pruned", "distilled"):
            return self._compressed(name)
        raise SkipVariant(f"unknown variant; allowed: {', '.join(TEXT_VARIANTS)}")

    # ---- steps -------------------------------------------------------------------------------
    def _pipeline(self, name: str) -> TextVariant:
        """TF-IDF: its skl2onnx graph (``onnx``) and nothing else; a blend: its TF-IDF member's graph
        (the other members run in their engines); a frozen encoder: none (its encoder runs in its own
        engine, the USE one an ONNX graph already)."""
        from .blend import BlendTextModel
        from .classical import TfidfTextModel

        teacher = self.teacher
        if isinstance(teacher, BlendTextModel) and teacher.tfidf_member() is None:
            raise SkipVariant("this blend has no TF-IDF member: its encoders run in their own engines; "
                              "there is no graph to build")
        if not isinstance(teacher, (TfidfTextModel, BlendTextModel)):
            raise SkipVariant(f"a frozen {teacher.backbone_} model is served by its encoder's engine "
                              f"({teacher.engine_}) and a numpy head; there is no graph to build")
        if name != "onnx":
            what = "TF-IDF + logistic regression" if isinstance(teacher, TfidfTextModel) else "blend"
            raise SkipVariant(f"a {what} model has one graph (onnx), a TF-IDF one: no int8 weights to quantize, "
                              "no network to prune or distil")
        path = self.folder / "model.onnx"
        try:
            teacher.export_onnx(path)
        except Exception as exc:  # not convertible or not equal: served natively, and optimize says so
            raise SkipVariant(f"TF-IDF export failed: {_first_line(exc)}; the scikit-learn pipeline serves") from None
        return self._variant(teacher, path, "onnx")

    def _variant(self, model: Any, path: Path, fmt: str) -> TextVariant:
        session = model.onnx_session("int8" if fmt == "onnx_int8" else "fp32", path=path, threads=self.threads)
        return TextVariant(model=model, path=path, fmt=fmt, session=session)

    def _exported(self) -> dict[str, Any]:
        from .export import export_text_onnx

        if self._export is None:
            try:
                self._export = export_text_onnx(self.teacher, self.folder / "model.onnx", quantize=True)
            except Exception as exc:  # the exporter names the operator or layer at fault
                raise SkipVariant(f"export failed: {_first_line(exc)}") from None
        return self._export

    def _compressed(self, kind: str) -> TextVariant:
        """The pruned or distilled network, fine-tuned, exported and checked; int8 unless int8 changes
        more than ``INT8_MIN_AGREEMENT`` of its labels on the calibration texts."""
        from .export import export_text_onnx
        from .compress import NotApplicable, compress

        try:
            student = compress(self.teacher, kind, self.train, target=self.target, seed=self.seed,
                               settings=self.compress)
        except NotApplicable as exc:
            raise SkipVariant(str(exc)) from None
        except Exception as exc:
            raise SkipVariant(f"building the {kind} network failed: {type(exc).__name__}: {_first_line(exc)}") from None
        student.windows_ = getattr(self.teacher, "windows_", False)  # reads long texts as its teacher does
        try:
            report = export_text_onnx(student, self.folder / f"{kind}.onnx", quantize=True,
                                      texts=self.calibration_texts())
        except Exception as exc:  # the exporter names the operator or layer at fault
            raise SkipVariant(f"export of the {kind} network failed: {_first_line(exc)}") from None
        int8 = report["int8"]
        fmt = "onnx_int8" if int8 and int8["agreement"] >= INT8_MIN_AGREEMENT else "onnx"
        student.description_["compression"]["served"] = {
            "format": fmt, "int8_agreement": int8 and round(int8["agreement"], 4),
            "fp32_bytes": report["fp32"]["size_bytes"], "int8_bytes": int8 and int8["size_bytes"]}
        return self._variant(student, Path((int8 if fmt == "onnx_int8" else report["fp32"])["path"]), fmt)

    def calibration_texts(self) -> list[str]:
        """A seeded sample of training texts, longest-first order kept out (batches mix lengths)."""
        texts = self.train[self.teacher.text_column].fillna("").astype(str)
        n = min(CALIBRATION_TEXTS, len(texts))
        return texts.sample(n=n, random_state=self.seed).tolist() if n else []

    def _static(self) -> Path:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        from .export import _quiet_logs

        fp32 = Path(self._exported()["fp32"]["path"])
        texts = self.calibration_texts()
        if not texts:
            raise SkipVariant("no training texts to calibrate on")
        teacher = self.teacher

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it: Iterator[dict[str, np.ndarray]] | None = None

            def get_next(self) -> dict[str, np.ndarray] | None:
                if self._it is None:  # one sequence length for all batches: the calibrator stacks them
                    ids, _ = teacher.encode(texts)
                    feed = teacher.feed(ids)
                    self._it = iter([{k: v[i: i + 16] for k, v in feed.items()} for i in range(0, len(ids), 16)])
                return next(self._it, None)

        out = self.folder / "model-int8-static.onnx"
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with _quiet_logs():
                quantize_static(str(fp32), str(tmp), _Reader(), quant_format=QuantFormat.QOperator,
                                op_types_to_quantize=["MatMul", "Gemm", "Gather"], per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise SkipVariant(f"static quantization failed: {_first_line(exc)}") from None
        os.replace(tmp, out)
        return out


def text_variant_maker(teacher: Any, train: pd.DataFrame, *, target: str, seed: int, scratch: Path,
                       threads: int = 1) -> Callable[[str], VariantPredictor]:
    """``name -> predictor`` for ``modelloop optimize`` (files built in ``scratch``, sessions on
    ``threads`` threads, each timed through its own ``proba``: the server's scorer does the same)."""
    from ...optimization.optimize import VariantPredictor, VariantSkipped

    builder = TextVariantBuilder(teacher, train, target=target, seed=seed, folder=scratch, threads=threads)

    def make(name: str) -> VariantPredictor:
        try:
            variant = builder.build(name)
        except SkipVariant as exc:
            raise VariantSkipped(str(exc)) from None
        return VariantPredictor(name, variant.proba, variant.size_bytes, variant.model, variant.path.read_bytes(),
                                onnx_format=variant.fmt, serves_records=False)

    return make
