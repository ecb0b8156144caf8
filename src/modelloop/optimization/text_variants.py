"""Variants of a text model for the optimize stage, each an ONNX graph served by ONNX Runtime.

* ``onnx`` — the fp32 graph of the (LoRA-merged) network, checked against PyTorch on export
  (:func:`~modelloop.optimization.export_text.export_text_onnx`).
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

Every variant comes back as a :class:`TextVariant`: the model object to register (the teacher for
the three above), the ONNX file, the ``formats`` key serving looks for (``onnx`` or
``onnx_int8``) and an open session. The optimize stage scores and times it like any other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CALIBRATION_TEXTS", "TEXT_VARIANTS", "SkipVariant", "TextVariant", "TextVariantBuilder"]

TEXT_VARIANTS = ("onnx", "onnx_int8_dynamic", "onnx_int8_static", "pruned", "distilled")
CALIBRATION_TEXTS = 128


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

    def __init__(self, teacher: Any, train: pd.DataFrame, *, target: str, seed: int, folder: Path):
        self.teacher, self.train, self.target, self.seed = teacher, train, target, seed
        self.folder = Path(folder)
        self._export: dict[str, Any] | None = None

    def build(self, name: str) -> TextVariant:
        if name == "onnx":
            return self._variant(self.teacher, Path(self._exported()["fp32"]["path"]), "onnx")
        if name == "onnx_int8_dynamic":
            return self._variant(self.teacher, Path(self._exported()["int8"]["path"]), "onnx_int8")
        if name == "onnx_int8_static":
            return self._variant(self.teacher, self._static(), "onnx_int8")
        if name in ("pruned", "distilled"):
            raise SkipVariant("not built for text models yet (onnx, onnx_int8_dynamic and onnx_int8_static are)")
        raise SkipVariant(f"unknown variant; allowed: {', '.join(TEXT_VARIANTS)}")

    # ---- steps -------------------------------------------------------------------------------
    def _variant(self, model: Any, path: Path, fmt: str) -> TextVariant:
        session = model.onnx_session("int8" if fmt == "onnx_int8" else "fp32", path=path, threads=1)
        return TextVariant(model=model, path=path, fmt=fmt, session=session)

    def _exported(self) -> dict[str, Any]:
        from .export_text import export_text_onnx

        if self._export is None:
            try:
                self._export = export_text_onnx(self.teacher, self.folder / "model.onnx", quantize=True)
            except Exception as exc:  # the exporter names the operator or layer at fault
                raise SkipVariant(f"export failed: {str(exc).splitlines()[0][:300]}") from None
        return self._export

    def calibration_texts(self) -> list[str]:
        """A seeded sample of training texts, longest-first order kept out (batches mix lengths)."""
        texts = self.train[self.teacher.text_column].fillna("").astype(str)
        n = min(CALIBRATION_TEXTS, len(texts))
        return texts.sample(n=n, random_state=self.seed).tolist() if n else []

    def _static(self) -> Path:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        from .export_text import _quiet_logs

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
            raise SkipVariant(f"static quantization failed: {str(exc).splitlines()[0][:300]}") from None
        os.replace(tmp, out)
        return out
