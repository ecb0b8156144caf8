"""Variants of an image model for the optimize stage, each an ONNX graph served by ONNX Runtime.

* ``onnx``: the fp32 graph (normalisation inside), checked against PyTorch on training images;
* ``onnx_int8_static``: int8 weights and activations, ranges calibrated on ``CALIBRATION_IMAGES``
  training images (seeded sample); the optimize stage's quality budget decides whether it is kept;
* ``distilled``: a small CNN distilled from the model on the training images (``student.py``), its own
  :class:`ImageModel`, served through its fp32 graph.

Dynamic int8 is not offered: it quantizes MatMul/Gemm only, and a CNN's work is in its convolutions.
Each predictor's ``fn`` decodes and resizes the images as the server does, then runs its session.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .export import CALIBRATION_IMAGES, export_image_onnx, image_session, quantize_image_static

if TYPE_CHECKING:
    from ...optimization.optimize import VariantPredictor

__all__ = ["IMAGE_VARIANTS", "image_variant_maker"]

IMAGE_VARIANTS = ("onnx", "onnx_int8_static", "distilled")
_WHY_NOT = {
    "onnx_int8_dynamic": "dynamic int8 quantizes MatMul/Gemm only and a CNN's work is in its convolutions; "
                         "use onnx_int8_static",
    "pruned": "structured pruning is not implemented for image backbones",
}


def image_variant_maker(teacher: Any, train: pd.DataFrame, *, target: str, seed: int, scratch: Path,
                        threads: int = 1) -> Callable[[str], VariantPredictor]:
    """``name -> predictor`` for ``modelloop optimize`` (files in ``scratch``, sessions on ``threads``)."""
    from ...optimization.optimize import VariantPredictor, VariantSkipped

    scratch = Path(scratch)
    built: dict[str, Any] = {}

    def calibration() -> np.ndarray:
        if "calibration" not in built:
            n = min(CALIBRATION_IMAGES, len(train))
            built["calibration"] = teacher.pixels(train.sample(n=n, random_state=seed)) if n else \
                np.zeros((0, teacher.image_size_, teacher.image_size_, 3), dtype=np.uint8)
        return built["calibration"]

    def fp32() -> Path:
        if "fp32" not in built:
            try:
                built["fp32"] = Path(export_image_onnx(teacher, scratch / "model.onnx", pixels=calibration())["path"])
            except Exception as exc:
                raise VariantSkipped(f"export failed: {(str(exc).splitlines() or [''])[0][:300]}") from None
        return built["fp32"]

    def predictor(name: str, path: Path, fmt: str, model: Any = teacher) -> VariantPredictor:
        session = image_session(path, threads=threads)

        def fn(frame: pd.DataFrame) -> np.ndarray:
            return model.scores_of_pixels(model.pixels(frame), session=session)

        return VariantPredictor(name, fn, path.stat().st_size, model, path.read_bytes(), onnx_format=fmt,
                                serves_records=False)

    def distilled() -> VariantPredictor:
        from ...errors import DataError
        from .student import distil_student

        try:
            student, info = distil_student(teacher, train, target=target, seed=seed)
            path = Path(export_image_onnx(student, scratch / "student.onnx", pixels=calibration())["path"])
        except (DataError, ValueError, RuntimeError) as exc:
            raise VariantSkipped(f"distillation failed: {(str(exc).splitlines() or [''])[0][:300]}") from None
        student.description_ = {**student.description_, "distillation": info}
        return predictor("distilled", path, "onnx", student)

    def make(name: str) -> VariantPredictor:
        if name == "onnx":
            return predictor(name, fp32(), "onnx")
        if name == "onnx_int8_static":
            try:
                report = quantize_image_static(fp32(), scratch / "model-int8-static.onnx", teacher, calibration())
            except Exception as exc:
                raise VariantSkipped(f"static quantization failed: {(str(exc).splitlines() or [''])[0][:300]}") \
                    from None
            return predictor(name, Path(report["path"]), "onnx_int8")
        if name == "distilled":
            return distilled()
        raise VariantSkipped(_WHY_NOT.get(name, f"not built for image models; allowed: {', '.join(IMAGE_VARIANTS)}"))

    return make
