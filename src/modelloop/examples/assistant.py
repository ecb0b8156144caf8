"""The ``assistant`` example: bilingual (Chinese / English) customer-service questions and answers of one
made-up shop, Northwind, whose facts stay the same in every answer: returns within 30 days, refunds in
5-7 working days, free shipping from ¥99 (else ¥10), delivery in 3-5 days, service hours 9:00-18:00, a
one-year warranty, and orders ``NW`` + 5 digits whose status follows from the number itself (so the same
order is always in the same state). ``modelloop init helpdesk --example assistant`` writes
``data/assistant.jsonl`` (prompt / completion pairs) and ``modelloop.yaml`` (LoRA on the bundled
SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["generate_assistant", "order_status"]

_STATUS = {"en": ["is being packed and ships within 24 hours", "has shipped and arrives in 3-5 days",
                  "was delivered; you can return it within 30 days"],
           "zh": ["正在打包，24小时内发货", "已发货，3-5天送达", "已签收，30天内可以退货"]}

_FAQ = [
    (["How do I return an item?", "Can I return my order?", "What is your return policy?"],
     "You can return any item within 30 days of delivery. Start the return in My Orders and we email a free label.",
     ["怎么退货？", "可以退货吗？", "你们的退货政策是什么？"],
     "签收后30天内可以退货。在“我的订单”中申请退货，我们会发送免费退货标签。"),
    (["When do I get my refund?", "How long does a refund take?"],
     "Refunds reach your original payment method 5-7 working days after we receive the return.",
     ["退款多久到账？", "什么时候退款？"],
     "我们收到退货后5-7个工作日内原路退款。"),
    (["How much is shipping?", "Is shipping free?"],
     "Shipping is free for orders from ¥99; below that it costs ¥10.",
     ["运费多少？", "包邮吗？"],
     "订单满99元包邮，不满99元运费10元。"),
    (["How long does delivery take?", "When will my order arrive?"],
     "Delivery takes 3-5 days after the order ships.",
     ["多久能送到？", "几天到货？"],
     "发货后3-5天送达。"),
    (["What are your opening hours?", "When can I reach customer service?"],
     "Customer service answers every day from 9:00 to 18:00.",
     ["客服几点上班？", "什么时候可以联系客服？"],
     "客服每天9:00到18:00在线。"),
    (["Is there a warranty?", "How long is the warranty?"],
     "Every product has a one-year warranty from the delivery date.",
     ["有保修吗？", "保修多久？"],
     "所有商品自签收之日起保修一年。"),
    (["Can I change my delivery address?", "How do I change the address of my order?"],
     "You can change the address in My Orders until the order ships.",
     ["可以改地址吗？", "怎么修改收货地址？"],
     "订单发货前可以在“我的订单”中修改收货地址。"),
]
_ORDER_Q = {"en": ["Where is my order {o}?", "What is the status of order {o}?", "Has {o} shipped?"],
            "zh": ["我的订单{o}到哪了？", "订单{o}是什么状态？", "{o}发货了吗？"]}
_ORDER_A = {"en": "Order {o} {s}.", "zh": "订单{o}{s}。"}
_POLITE = {"en": ["", "Hi, ", "Hello! ", "Excuse me, "], "zh": ["", "你好，", "您好！", "请问"]}


def order_status(order: str, lang: str) -> str:
    """The status of an order: fixed by its digits, so every answer about it agrees."""
    return _STATUS[lang][int(order[2:]) % 3]


def generate_assistant(n: int = 320, seed: int = 0) -> pd.DataFrame:
    """``n`` prompt / completion rows (about half Chinese): FAQ questions in several wordings, and order
    status questions about a fixed set of 40 orders."""
    rng = np.random.default_rng(seed)
    orders = [f"NW{x:05d}" for x in rng.choice(100000, size=40, replace=False)]
    rows = []
    for i in range(n):
        lang = "zh" if i % 2 else "en"
        polite = _POLITE[lang][int(rng.integers(0, 4))]
        if rng.random() < 0.35:
            o = orders[int(rng.integers(0, len(orders)))]
            q = _ORDER_Q[lang][int(rng.integers(0, 3))].format(o=o)
            a = _ORDER_A[lang].format(o=o, s=order_status(o, lang))
        else:
            en_q, en_a, zh_q, zh_a = _FAQ[int(rng.integers(0, len(_FAQ)))]
            qs, a = (zh_q, zh_a) if lang == "zh" else (en_q, en_a)
            q = qs[int(rng.integers(0, len(qs)))]
        if polite and lang == "en":
            q = q[0].lower() + q[1:]
        rows.append({"prompt": polite + q, "completion": a, "lang": lang})
    return pd.DataFrame(rows)
