"""Export, quantize, prune, distil: turning a trained model into the variant that pays in production."""

from __future__ import annotations

from .export import check_onnx, onnx_inputs, to_onnx

__all__ = ["check_onnx", "onnx_inputs", "to_onnx"]
