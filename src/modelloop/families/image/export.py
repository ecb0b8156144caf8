"""ONNX graphs of an image model: fp32 with the normalisation inside, and static int8.

The graph's contract:

* input ``pixels``: float32 ``[batch, 3, S, S]``, the resized RGB image with values 0-255 (what
  :meth:`ImageModel.pixels` gives, channels first); the graph subtracts the mean and divides by the
  standard deviation itself, so a client of the raw graph needs no preprocessing constants;
* output ``probabilities``: float32 ``[batch, K]`` in ``model.classes_`` order;
* metadata ``modelloop.classes`` (JSON) and ``modelloop.image_size``.

:func:`export_image_onnx` exports with the TorchScript exporter and checks the graph against PyTorch
on the given images (and a flat grey and a noise image) within ``atol``. :func:`quantize_image_static`
writes the int8 graph (QDQ, per-channel int8 weights, uint8 activations) with activation ranges
calibrated on a seeded sample of training images; the final softmax stays in float.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CALIBRATION_IMAGES", "OPSET", "export_image_onnx", "image_session", "quantize_image_static"]

OPSET = 17
CALIBRATION_IMAGES = 64


def image_session(path: str | Path, *, threads: int | None = 1) -> Any:
    """An ONNX Runtime session of an image graph (all graph optimizations, ``threads`` intra-op threads)."""
    from ..text.backbone import ort_session

    return ort_session(str(path), threads, disabled=())


def _probe_images(model: Any, pixels: np.ndarray | None) -> np.ndarray:
    size = model.image_size_
    rng = np.random.default_rng(0)
    extra = np.stack([np.full((size, size, 3), 128, dtype=np.uint8),
                      rng.integers(0, 256, (size, size, 3), dtype=np.uint8)])
    return extra if pixels is None or not len(pixels) else np.concatenate([pixels[:16], extra])


def export_image_onnx(model: Any, out: Path, *, pixels: np.ndarray | None = None, atol: float = 1e-4) -> dict[str, Any]:
    """Write the checked fp32 graph of ``model`` to ``out`` (temp + rename); returns what the check saw."""
    import onnx
    import torch

    model._rebuild()
    net, size = model.network_.eval(), model.image_size_

    class _Probabilities(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, pixels: Any) -> Any:
            return torch.softmax(self.inner(pixels), dim=1)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    wrapper = _Probabilities(net).eval()
    with torch.no_grad(), _quiet():
        torch.onnx.export(wrapper, (torch.zeros(1, 3, size, size),), str(tmp), input_names=["pixels"],
                          output_names=["probabilities"], dynamic_axes={"pixels": {0: "batch"},
                                                                          "probabilities": {0: "batch"}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    graph = onnx.load(str(tmp))
    for key, value in (("modelloop.classes", json.dumps([str(c) for c in model.classes_])),
                       ("modelloop.image_size", str(size))):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(tmp))
    probe = _probe_images(model, pixels)
    diff = _max_diff(model, image_session(tmp), probe)
    if diff > atol:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"the ONNX graph differs from PyTorch by {diff:.2e} (allowed {atol:g})")
    os.replace(tmp, out)
    return {"path": str(out), "max_abs_diff": diff, "checked_images": len(probe), "size_bytes": out.stat().st_size}


def _max_diff(model: Any, session: Any, pixels: np.ndarray) -> float:
    native = model.scores_of_pixels(pixels)
    graph = model.scores_of_pixels(pixels, session=session)
    return float(np.abs(native - graph).max())


def quantize_image_static(fp32: Path, out: Path, model: Any, calibration: np.ndarray) -> dict[str, Any]:
    """Static int8 of the fp32 graph, activation ranges from ``calibration`` images (uint8 NHWC)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(calibration):
        raise ValueError("no training images to calibrate on")
    batches = [np.ascontiguousarray(calibration[i:i + 8].transpose(0, 3, 1, 2), dtype=np.float32)
               for i in range(0, len(calibration), 8)]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {"pixels": batch}

    import onnx

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    pre = out.with_name(f".{out.name}.{os.getpid()}.pre.onnx")
    try:
        with _quiet():
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            # the softmax stays in float: quantized, the probabilities came out in steps of 1/255
            softmax = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Softmax"]
            quantize_static(str(pre), str(tmp), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=softmax)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        pre.unlink(missing_ok=True)
    session = image_session(out)
    native = model.scores_of_pixels(calibration)
    quant = model.scores_of_pixels(calibration, session=session)
    return {"path": str(out), "size_bytes": out.stat().st_size,
            "agreement": float((native.argmax(1) == quant.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(native - quant).max())}


class _quiet:
    """ONNX exporters and quantizers warn and log advice; keep it out of the user's terminal."""

    def __enter__(self) -> None:
        import logging
        import warnings

        self._root = logging.getLogger()
        self._level = self._root.level
        self._root.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self._warnings.__exit__(*exc)
        self._root.setLevel(self._level)
