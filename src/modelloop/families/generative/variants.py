"""What ``modelloop optimize`` builds for a generative model, each checked against the model it comes from
before the stage scores and times it:

- ``merged``: the LoRA adapters merged into the base weights once, stored as a full model (no PEFT on
  load, one network). Checked: the same greedy tokens on ``CHECK_PROMPTS`` training prompts; any
  difference and it is not offered. A model fine-tuned on every weight has nothing to merge.
- ``int8_dynamic``: the merged network, smoothed for int8 (SmoothQuant, calibrated on ``CALIBRATION_ROWS``
  other training rows; the fp32 function unchanged), with PyTorch dynamic int8 quantization of its Linear
  layers (weights int8 per output channel, activations quantized per call; the embeddings, norms,
  ``lm_head``, ``down_proj`` and ``o_proj`` stay fp32: ``quantize.py``), applied when the version is
  loaded. Checked: the perplexity of the training sample's completions may rise by at most
  ``PERPLEXITY_BUDGET`` (a share); the greedy agreement is recorded. The stage then holds it to
  ``optimize.max_metric_drop`` on the test split, like every variant.

- ``onnx``: the merged network exported to ONNX with its KV cache as inputs and outputs, run by ONNX
  Runtime in the same decoding loops (``onnx_export.py``); the graph is a file (a tied embedding stored
  once), copied beside the registered models when the variant is registered and loaded from there by path. Checked: the perplexity may change by at most
  ``ONNX_PERPLEXITY_TOLERANCE`` (float arithmetic in another order); the greedy agreement is recorded.
- ``onnx_int8_dynamic``: the same graph from the smoothed network, its MatMul weights quantized to int8 by ONNX
  Runtime (dynamic, per output channel; the layers ``int8_dynamic`` keeps fp32 get block-wise 8-bit weights
  instead: ``onnx_export.quantize_graph``). Checked like ``int8_dynamic``.

Other names are skipped with the allowed ones.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CALIBRATION_ROWS", "CHECK_PROMPTS", "GENERATIVE_VARIANTS", "ONNX_PERPLEXITY_TOLERANCE",
           "PERPLEXITY_BUDGET", "generative_variant_maker"]

GENERATIVE_VARIANTS = ("merged", "int8_dynamic", "onnx", "onnx_int8_dynamic")
ONNX_PERPLEXITY_TOLERANCE = 0.001  # onnx (fp32): at most 0.1 % perplexity change
CHECK_PROMPTS = 16        # training prompts the checks answer
PERPLEXITY_BUDGET = 0.05  # int8: at most 5 % more perplexity than the model it comes from
CALIBRATION_ROWS = 32     # int8: training rows (not the checked ones) whose activations set the smoothing


def generative_variant_maker(teacher: Any, train: pd.DataFrame, *, target: str, seed: int,
                             scratch: Path | None = None) -> Callable[[str], Any]:
    """``name -> VariantPredictor`` for the names in :data:`GENERATIVE_VARIANTS`; others are skipped. The ONNX
    variants' graphs are files in ``scratch`` (optimize's temporary folder; registration copies the chosen
    one beside the registered models: ``GenerativeModel.store_files``); a variant's size is its pickle plus
    its graph files."""
    from ...evaluation.evaluate import model_inputs
    from ...optimization.optimize import VariantPredictor, VariantSkipped
    from .metrics import perplexity
    from .onnx_export import graph_files

    sample = train.sample(n=min(CHECK_PROMPTS, len(train)), random_state=seed) if len(train) else train
    prompts = model_inputs(teacher, sample, target)  # a chat's messages are its prompt and its target
    rest = train.drop(index=sample.index)  # int8's smoothing is calibrated on other rows than it is checked on
    calibration = rest.sample(n=min(CALIBRATION_ROWS, len(rest)), random_state=seed) if len(rest) else sample

    def make(name: str) -> Any:
        if name not in GENERATIVE_VARIANTS:
            raise VariantSkipped(f"{name}: not built for generative models; allowed: "
                                 f"{', '.join(GENERATIVE_VARIANTS)}")
        if name == "merged" and teacher.method_ != "lora":
            raise VariantSkipped("merged: fine-tuned on every weight, there are no adapters to merge")
        model = teacher.variant(name, calibration=calibration, folder=scratch)
        before, after = teacher.predict(prompts), model.predict(prompts)
        same = sum(a == b for a, b in zip(before, after, strict=True))
        checks: dict[str, Any] = {"prompts": len(before), "same_greedy_answers": same}
        if name == "merged" and same < len(before):
            raise VariantSkipped(f"merged: {len(before) - same} of {len(before)} greedy answers differ from the "
                                 "adapted model's")
        if name != "merged":
            base, quantized = perplexity(*teacher.nll(sample)), perplexity(*model.nll(sample))
            change = (quantized - base) / base if base and quantized else None
            checks.update(perplexity=quantized, parent_perplexity=base, perplexity_change=change)
            allowed = ONNX_PERPLEXITY_TOLERANCE if name == "onnx" else PERPLEXITY_BUDGET
            too_far = change is None or (abs(change) if name == "onnx" else change) > allowed
            if too_far:
                raise VariantSkipped(f"{name}: perplexity {quantized} vs {base} on {len(sample)} training "
                                     f"rows, more than {allowed:.1%} {'apart' if name == 'onnx' else 'higher'}")
        model.description_["variant"] = {**model.description_.get("variant", {}), "name": name, "checks": checks}
        graph = getattr(model, "onnx_file_", None)
        size = len(pickle.dumps(model)) + (sum(f.stat().st_size for f in graph_files(Path(graph))) if graph else 0)
        return VariantPredictor(name, lambda frame: np.asarray(model.predict(frame), dtype=object), size, model,
                                serves_records=False)

    return make
