"""The tiny generative project's pieces: bilingual question/answer pairs with consistent facts and a
randomly initialised Llama (hidden 32, 1 layer) with a byte-level BPE tokenizer trained here, never a
download. Shared by tests/generative and the family contract suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
FACTS = [("How do I return an item?", "Returns are accepted within 30 days."),
         ("Where is my order?", "Track it with your order number."),
         ("怎么退货？", "30天内可以退货。"),
         ("Can I cancel?", "Yes, before it ships."),
         ("运费多少？", "满99元包邮。"),
         ("What are your hours?", "We answer 9 to 18 every day.")]


def make_pairs(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """``n`` prompt/completion rows drawn from six fixed facts, with a polite prefix now and then."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        q, a = FACTS[i % len(FACTS)]
        prefix = ["", "Hi, ", "Hello! ", "请问"][int(rng.integers(0, 4))]
        rows.append({"prompt": prefix + q, "completion": a})
    return pd.DataFrame(rows)


def make_chats(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """The same facts as chat ``messages`` (a system turn now and then)."""
    df = make_pairs(n, seed)
    out = []
    for i, (p, c) in enumerate(zip(df["prompt"], df["completion"], strict=True)):
        m = [{"role": "user", "content": p}, {"role": "assistant", "content": c}]
        if i % 3 == 0:
            m.insert(0, {"role": "system", "content": "You are a helpdesk."})
        out.append({"messages": m})
    return pd.DataFrame(out)


def build_tiny_llama(folder: Path, *, hidden: int = 32, layers: int = 1, heads: int = 2,
                     max_positions: int = 256, vocab_size: int = 400) -> Path:
    """A LlamaForCausalLM from a LlamaConfig (seeded random weights) and a byte-level BPE tokenizer
    trained on the toy texts, with a ChatML template like SmolLM2's."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [f"{q} {a} user assistant system You are a helpdesk." for q, a in FACTS] * 3
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", model_max_length=max_positions)
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=2 * hidden,
                         max_position_embeddings=max_positions, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def gen_config(root: Path, backbone: Path, *, source: str = "qa.jsonl", **model: Any) -> dict[str, Any]:
    """A raw project config for task text_generation on the tiny Llama. Full fine-tuning at lr 1e-2: a
    randomly initialised model learns the six facts in a few epochs (LoRA adapters on random weights
    barely move its loss; the LoRA path is tested for what it builds)."""
    settings = {"backbone": str(backbone), "method": "full", "epochs": 12, "early_stopping_patience": 3,
                "max_length": 64, "batch_size": 2, "learning_rate": 1e-2, "max_new_tokens": 12, "eval_samples": 4,
                **model}
    return {"name": "helpdesk", "task": "text_generation", "data": {"source": source, "target": "completion"},
            "split": {"strategy": "random"}, "model": settings, "train": {"budget": 120}}
