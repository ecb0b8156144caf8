"""The tiny text project's pieces: a synthetic intent data set and a randomly initialised BERT with a
WordPiece tokenizer built here, never a download. Shared by tests/text and the family contract suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

INTENTS = {
    "refund": ["refund", "money", "back", "return", "reimburse"],
    "lost_card": ["card", "lost", "stolen", "block", "missing"],
    "delivery": ["package", "delivery", "late", "arrive", "courier"],
}
FILLER = ["please", "i", "want", "my", "the", "help", "now", "today", "can", "you", "need", "a", "is", "it"]
CJK = list("我的卡丢了退款快递")


def make_texts(n_per_class: int = 30, seed: int = 0) -> pd.DataFrame:
    """Three intents, each text = 2-3 of the intent's keywords among filler words (shuffled)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, words in INTENTS.items():
        for _ in range(n_per_class):
            picked = list(rng.choice(words, size=rng.integers(2, 4), replace=False))
            picked += list(rng.choice(FILLER, size=rng.integers(2, 6)))
            rng.shuffle(picked)
            rows.append({"message": " ".join(picked), "intent": label})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def build_tiny_backbone(folder: Path, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                        max_positions: int = 64) -> Path:
    """A BertModel from a BertConfig (seeded random weights) and a WordPiece tokenizer over our words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for ws in INTENTS.values() for w in ws} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, "##s", "##ed", ",", ".", "?", "!"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                                  model_max_length=max_positions)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden,
                        max_position_embeddings=max_positions)
    BertModel(config).save_pretrained(folder)
    return folder


CHINESE_INTENTS = {
    "refund": ["退款", "退钱", "把钱退给我", "申请退货"],
    "lost_card": ["卡丢了", "挂失", "银行卡被偷", "冻结我的卡"],
    "delivery": ["快递", "物流太慢", "包裹还没到", "送货"],
}
CHINESE_FILLER = ["请", "帮我", "一下", "今天", "现在", "我的", "谢谢", "麻烦", "尽快", "怎么办"]


def make_chinese_texts(n_per_class: int = 20, seed: int = 0) -> pd.DataFrame:
    """Three intents in Chinese (the same labels as :func:`make_texts`): a keyword phrase among filler
    words, with Chinese punctuation; a multilingual encoder reads them, the tiny English BERT cannot."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, phrases in CHINESE_INTENTS.items():
        for _ in range(n_per_class):
            words = [str(rng.choice(phrases)), *rng.choice(CHINESE_FILLER, size=rng.integers(1, 4))]
            rng.shuffle(words)
            rows.append({"message": "".join(words) + str(rng.choice(["。", "！", "？", ""])), "intent": label})
    frame = pd.DataFrame(rows).drop_duplicates("message")
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
