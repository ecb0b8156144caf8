"""The registered generative model: the base model's identity, the fine-tuned weights (LoRA adapters, or
every weight for full fine-tuning) and the tokenizer, pickled compactly; the network is rebuilt (the base
loaded, the adapters merged in) on first use.

``predict`` answers each record's prompt greedily, as ``modelloop predict`` and a lone served request do;
``predict_together`` the same records in one padded batch, as concurrent served requests are (the train
stage's evaluation samples); ``generate`` is the decoding loop with its sampling options; ``nll`` scores
text for perplexity.

A model whose training answers are labels (``metrics.is_label_set``; ``model.choices: auto``) keeps them
(``choices_``): its answers are then decoded within them (:class:`.generate.Choices`), wherever they are
asked for, so it always answers one of its labels.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import ModelloopError
from ..text.backbone import require_torch
from .backbone import load_causal_lm, load_tokenizer, model_fingerprint, resolve_model
from .data import Shape, encode_examples, examples_of, row_example, split_completion
from .generate import Choices, Step, decode_stream, end_ids

__all__ = ["GenerativeModel"]


class GenerativeModel:
    """A causal language model fine-tuned on one project's examples (scikit-learn-shaped for the registry:
    ``task``, ``classes_``, ``schema``, ``describe``)."""

    task = "generation"
    classes_ = None
    threshold_ = None
    quantized_: str | None = None  # "int8_dynamic": Linear layers quantized on load (``variant``)
    onnx_: bytes | None = None  # a graph pickled whole (versions registered before onnx_file_; still loaded)
    # an onnx / onnx_int8_dynamic variant's graph with its KV cache (``onnx_export.py``): a file, not pickled;
    # ``store_files`` puts it beside the registered models, where it is loaded from by path
    onnx_file_: str | None = None
    serves_records = False  # optimize times it by ``predict`` (its answers are text, not the table runtime's scores)
    choices_: list[str] | None = None  # the training answers, when they are labels: answers are decoded within them

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings = dict(settings or {})

    # ---- built by the train stage ---------------------------------------------------------------
    def fitted(self, *, backbone: str, root: str, source: str, fingerprint: str, shape: Shape, schema: Any,
               tokenizer: Any, method: str, lora: dict[str, Any] | None, weights: dict[str, Any],
               context: int, description: dict[str, Any], choices: list[str] | None = None) -> GenerativeModel:
        from safetensors.torch import save

        self.choices_ = list(choices) if choices else None
        self.backbone_, self.root_, self.source_, self.fingerprint_ = backbone, root, source, fingerprint
        self.shape_, self.schema, self.method_, self.lora_ = shape, schema, method, lora
        self.context_, self.description_ = int(context), dict(description)
        self.weights_ = save({k: v.contiguous() for k, v in weights.items()})
        with tempfile.TemporaryDirectory(prefix="modelloop-tok-") as tmp:
            tokenizer.save_pretrained(tmp)
            self.tokenizer_files_ = {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}
        self.__dict__["_tokenizer"] = tokenizer
        return self

    def _check_fitted(self) -> None:
        if "weights_" not in self.__dict__:
            raise ModelloopError("this GenerativeModel is not fitted yet; train it with `modelloop train`")

    # ---- the network --------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        self._check_fitted()
        if "_tokenizer" not in self.__dict__:
            with tempfile.TemporaryDirectory(prefix="modelloop-tok-") as tmp:
                for name, data in self.tokenizer_files_.items():
                    (Path(tmp) / name).write_bytes(data)
                self.__dict__["_tokenizer"] = load_tokenizer(tmp)
        return self.__dict__["_tokenizer"]

    def base_source(self) -> str:
        """The base model's folder, resolved again if it moved; refused if its weights changed."""
        source = self.source_ if Path(self.source_).is_dir() else resolve_model(self.backbone_, root=self.root_)
        found = model_fingerprint(source)
        if found != self.fingerprint_:
            raise ModelloopError(f"the base model of this version ({self.backbone_}) has changed since training "
                                 f"(fingerprint {found}, trained on {self.fingerprint_}); restore it or retrain")
        return source

    def network(self) -> Any:
        """The fine-tuned network, adapters merged into the base (eval mode, built once); an ``onnx`` or
        ``onnx_int8_dynamic`` variant's graph run by ONNX Runtime behind the same calls (``onnx_export.py``)."""
        self._check_fitted()
        if "_net" not in self.__dict__:
            graph = self.graph_source()
            if graph is not None:
                from transformers import AutoConfig, GenerationConfig

                from .onnx_export import OrtCausalLM

                source = self.base_source()
                try:
                    generation = GenerationConfig.from_pretrained(source)
                except OSError:  # a base model without one: the tokenizer's end tokens only
                    generation = None
                self.__dict__["_net"] = OrtCausalLM(graph, AutoConfig.from_pretrained(source), generation,
                                                    threads=require_torch().get_num_threads())
            else:
                self.__dict__["_net"] = self._build(merged=True)
        return self.__dict__["_net"]

    def graph_source(self) -> bytes | Path | None:
        """An ONNX variant's graph: its file (refused when it is gone), or the bytes an older version
        pickled; None for a PyTorch network."""
        path = getattr(self, "onnx_file_", None)
        if path:
            if not Path(path).is_file():
                raise ModelloopError(f"the ONNX graph of this version is missing ({path}); restore the file or "
                                     "run `modelloop optimize` again")
            return Path(path)
        return getattr(self, "onnx_", None) or None

    def store_files(self, folder: Path) -> list[Path]:
        """Before registration (``modelloop optimize``): the graph file (and its external data) copied into
        ``folder``, named by its content (a version registered twice shares one copy), and this model
        pointed at it; returns the files (none for a model without one)."""
        import hashlib
        import shutil

        from .onnx_export import graph_files

        path = getattr(self, "onnx_file_", None)
        if not path:
            return []
        files = graph_files(Path(path))
        digest = hashlib.sha256()
        for f in files:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"graph-{digest.hexdigest()[:20]}.onnx"
        if files[0].resolve() != target.resolve():
            for f in files:  # the data file keeps the name the graph refers to it by
                dst = folder / (target.name + f.name[len(files[0].name):])
                if not dst.is_file():
                    tmp = dst.with_name(dst.name + ".part")
                    shutil.copyfile(f, tmp)
                    tmp.replace(dst)
            if len(files) > 1:  # the graph names its data file: rename it inside the graph
                import onnx

                model = onnx.load(str(target), load_external_data=False)
                for tensor in model.graph.initializer:
                    for entry in tensor.external_data:
                        if entry.key == "location":
                            entry.value = target.name + files[1].name[len(files[0].name):]
                onnx.save_model(model, str(target))
        self.onnx_file_ = str(target)
        return graph_files(target)

    def base_network(self) -> Any:
        """The base model alone (the baseline the report compares against)."""
        if "_base" not in self.__dict__:
            self.__dict__["_base"] = load_causal_lm(self.base_source())
        return self.__dict__["_base"]

    def _build(self, *, merged: bool) -> Any:
        torch = require_torch()
        from safetensors.torch import load

        weights = load(self.weights_)
        net = load_causal_lm(self.base_source())
        if self.method_ == "lora":
            from peft import LoraConfig, get_peft_model

            net = get_peft_model(net, LoraConfig(task_type="CAUSAL_LM", **(self.lora_ or {})))
        params = dict(net.named_parameters())
        missing = [k for k in weights if k not in params]
        if missing:
            raise ModelloopError(f"fine-tuned weights do not fit the base model (e.g. {missing[0]}); retrain")
        with torch.no_grad():
            for k, v in weights.items():
                params[k].copy_(v)
        if self.method_ == "lora" and merged:
            net = net.merge_and_unload()
        if getattr(self, "quantized_", None) == "int8_dynamic":
            from .quantize import int8_dynamic

            net = int8_dynamic(net)
        return net.eval()

    def variant(self, kind: str, calibration: pd.DataFrame | None = None,
                folder: Path | None = None) -> GenerativeModel:
        """This model as ``modelloop optimize`` builds it (``variants.py``): ``merged`` (the adapters merged
        into the base, stored as every weight), ``int8_dynamic`` (merged, smoothed for int8 on
        ``calibration``'s examples when given, and its Linear layers quantized to int8 when loaded:
        ``quantize.py``), ``onnx`` (merged, exported to ONNX with its KV cache) or ``onnx_int8_dynamic`` (merged,
        smoothed like int8_dynamic, exported, its MatMul weights quantized to int8 by ONNX Runtime); an ONNX
        variant's graph is a file in ``folder`` (a new temporary folder when None), not pickled bytes."""
        import copy

        from safetensors.torch import save

        if kind not in ("merged", "int8_dynamic", "onnx", "onnx_int8_dynamic") or getattr(self, "quantized_", None) \
                is not None or getattr(self, "onnx_", None) or getattr(self, "onnx_file_", None):
            raise ValueError(f"no {kind!r} variant of this model (variant of {self.describe().get('quantized')})")
        out = GenerativeModel(self.settings)
        out.__setstate__(self.__getstate__())
        net = self.network()
        variant: dict[str, Any] = {"name": kind}
        if kind in ("int8_dynamic", "onnx_int8_dynamic") and calibration is not None and len(calibration):
            from .quantize import SMOOTH_ALPHA, activation_maxima, smooth

            ids, labels, _ = encode_examples(self.tokenizer, examples_of(calibration, self.shape_, self.tokenizer),
                                             self.context_)
            net = copy.deepcopy(net)  # the built network stays as it is
            groups = smooth(net, activation_maxima(net, ids, labels, int(self.tokenizer.pad_token_id or 0))) \
                if ids else 0
            variant["smoothing"] = {"alpha": SMOOTH_ALPHA, "calibration_examples": len(ids), "groups": groups}
        if kind.startswith("onnx"):  # the graph alone: no PyTorch weights to keep
            from .onnx_export import export_onnx, graph_files, quantize_graph

            folder = Path(folder if folder is not None else tempfile.mkdtemp(prefix="modelloop-onnx-"))
            graph = export_onnx(net, folder / f"{kind}-fp32.onnx")
            if kind == "onnx_int8_dynamic":
                int8 = quantize_graph(graph, folder / f"{kind}.onnx")
                for f in graph_files(graph):
                    f.unlink()
                graph = int8
            out.onnx_file_, out.onnx_ = str(graph), None
            out.weights_ = b""
        else:
            out.weights_ = save({k: v.detach().contiguous() for k, v in net.named_parameters()})
        out.method_, out.lora_ = "full", None
        out.quantized_ = kind if kind in ("int8_dynamic", "onnx_int8_dynamic") else None
        out.description_ = {**self.description_, "variant": variant}
        return out

    # ---- answers ------------------------------------------------------------------------------------
    def prompt_ids(self, record: dict[str, Any]) -> list[int]:
        """A record's prompt as token ids, rendered as training rendered it."""
        example = row_example(record, self.shape_, self.tokenizer)
        ids = self.tokenizer(example.prompt, add_special_tokens=False)["input_ids"] if example.prompt else []
        return list(ids) or [int(self.tokenizer.bos_token_id or self.tokenizer.eos_token_id)]

    def choice_trie(self, ends: set[int]) -> Choices | None:
        """The label answers' completion tokens as training rendered them (None: a free-text model)."""
        if not getattr(self, "choices_", None):
            return None
        if "_choices" not in self.__dict__:
            tok, asked = self.tokenizer, [{"role": "user", "content": "?"}]
            self.__dict__["_choices"] = Choices(
                [tok(split_completion(tok, asked, c), add_special_tokens=False)["input_ids"] for c in self.choices_ or []],
                ends)
        return self.__dict__["_choices"]

    def generate(self, prompt_ids: Sequence[int], *, max_new_tokens: int | None = None, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = (),
                 should_stop: Callable[[], bool] | None = None, base: bool = False,
                 choices: bool | None = None) -> Iterator[Step]:
        """Decode after ``prompt_ids`` (the fine-tuned model, or the base with ``base=True``). ``choices``:
        decode within the label answers (None: for the fine-tuned model when it has them, not for the base;
        a free-text model has none either way)."""
        net = self.base_network() if base else self.network()
        ends = self.__dict__.setdefault("_ends", end_ids(self.tokenizer, net))
        within = (not base) if choices is None else choices
        return decode_stream(net, self.tokenizer, prompt_ids, max_new_tokens=max_new_tokens or self.max_new_tokens,
                             temperature=temperature, top_p=top_p, seed=seed, stop=stop, ends=ends,
                             should_stop=should_stop, choices=self.choice_trie(ends) if within else None)

    @property
    def max_new_tokens(self) -> int:
        return int(self.settings.get("max_new_tokens", 64))

    def answer(self, prompt_ids: Sequence[int], *, base: bool = False, **options: Any) -> str:
        return "".join(step.delta for step in self.generate(prompt_ids, base=base, **options))

    def predict(self, X: Any, *, base: bool = False, choices: bool | None = None) -> list[str]:
        """The greedy answer to each record's prompt (a frame, or a list of records); ``choices`` as in
        :meth:`generate`."""
        records = X.to_dict("records") if isinstance(X, pd.DataFrame) else list(X)
        return [self.answer(self.prompt_ids(r), base=base, choices=choices) for r in records]

    def predict_together(self, X: Any, *, base: bool = False, max_batch: int | None = None) -> list[str]:
        """The greedy answers to the records' prompts decoded together, as concurrent requests to the
        served model are (:meth:`.batching.BatchDecoder.answer_all`; ``max_batch``: the server's
        ``serve.MAX_BATCH`` when None): one forward pass per token for all of them, where :meth:`predict`
        runs one per token per record (8 answers of 40 tokens: 41 passes of 8 rows instead of 328 of one;
        on a CPU a pass of 8 rows costs little more than one of a single row). The
        same answers as :meth:`predict` but where padding moves a greedy tie (~1e-6 apart): ``predict``
        stays the batch-1 path that ``modelloop predict`` and a lone served request take."""
        from .batching import BatchDecoder
        from .serve import MAX_BATCH

        records = X.to_dict("records") if isinstance(X, pd.DataFrame) else list(X)
        if not records:
            return []
        net = self.base_network() if base else self.network()
        ends = self.__dict__.setdefault("_ends", end_ids(self.tokenizer, net))
        decoder = BatchDecoder(net, self.tokenizer, ends, max_batch=max_batch or MAX_BATCH)
        try:
            return decoder.answer_all([self.prompt_ids(r) for r in records], max_new_tokens=self.max_new_tokens,
                                      choices=None if base else self.choice_trie(ends))
        finally:
            decoder.close()

    def nll(self, frame: pd.DataFrame, *, base: bool = False) -> tuple[float, int]:
        """Summed negative log-likelihood and count of the completion tokens of ``frame``'s examples. The
        vocabulary is projected only where a completion token is predicted (``labelled_only``): the same
        figure, without SmolLM2's 49k-word projection at every prompt position."""
        from .sequences import sequence_nll

        net = self.base_network() if base else self.network()
        ids, labels, _ = encode_examples(self.tokenizer, examples_of(frame, self.shape_, self.tokenizer),
                                         self.context_)
        return sequence_nll(net, ids, labels, int(self.tokenizer.pad_token_id or 0), str(net.device),
                            labelled_only=True)

    def nll_with_base(self, frame: pd.DataFrame) -> tuple[tuple[float, int], tuple[float, int]]:
        """:meth:`nll` of the fine-tuned model and of the base, the layers they share (a LoRA fine-tune of
        the last ``model.lora_layers`` layers, merged, keeps the base's below them) run once for both
        (:func:`.layer_cache.paired_nll`); without shared layers, each model's own pass."""
        from .layer_cache import paired_nll, shared_layers

        net, base = self.network(), self.base_network()
        first = shared_layers(net, base)
        if not first:
            return self.nll(frame), self.nll(frame, base=True)
        ids, labels, _ = encode_examples(self.tokenizer, examples_of(frame, self.shape_, self.tokenizer),
                                         self.context_)
        tuned, plain = paired_nll([net, base], ids, labels, int(self.tokenizer.pad_token_id or 0), first)
        return tuned, plain

    def evaluation_metrics(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Figures beside the head's (``modelloop evaluate``, the retrain gate): the perplexity of the
        completions of ``frame``."""
        from .metrics import perplexity

        return {"perplexity": perplexity(*self.nll(frame))}

    # ---- the registry's view -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"family": "generative", "method": getattr(self, "method_", None),
                "backbone": getattr(self, "backbone_", None), "backbone_fingerprint": getattr(self, "fingerprint_", None),
                "shape": self.shape_.to_dict() if hasattr(self, "shape_") else None,
                "context": getattr(self, "context_", None), "lora": getattr(self, "lora_", None),
                "quantized": getattr(self, "quantized_", None), "choices": getattr(self, "choices_", None),
                **getattr(self, "description_", {})}

    def feature_importances(self) -> None:
        return None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
