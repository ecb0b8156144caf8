"""Writes the bundled text examples ``intents.jsonl`` and ``sentiment.jsonl`` (see TEXT_README.md).

    python -m modelloop.examples.make_text_examples [OUT_DIR]

Both files are fully determined by the templates, the paraphrase lists and the seed below; a test
regenerates them and compares with the shipped files byte for byte.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["INTENTS", "make_intents", "make_sentiment", "write_examples"]

SEED = 7

# --------------------------------------------------------------------------- intents
# Slot fillers shared by the templates ({name} in a template picks one at random).
_EN = {
    "hi": ["", "", "Hi, ", "Hello, ", "Hey, ", "Good morning, ", "Excuse me, "],
    "pls": ["", "", " please", ", please help", " asap", ", thanks", " thank you"],
    "item": ["order", "package", "parcel", "shoes", "laptop", "headphones", "jacket", "phone case"],
    "card": ["card", "credit card", "debit card", "bank card", "visa card"],
    "when": ["yesterday", "last week", "on Monday", "two days ago", "this morning", "last night"],
    "amount": ["$25", "$49.99", "120 dollars", "the full amount", "$300", "15 euros"],
}
_ZH = {
    "hi": ["", "", "你好，", "您好，", "客服你好，", "请问", "麻烦问一下，"],
    "pls": ["", "", "，谢谢", "，麻烦尽快处理", "，急", "！", "，辛苦了"],
    "item": ["订单", "包裹", "快递", "鞋子", "电脑", "耳机", "外套", "手机壳"],
    "card": ["卡", "信用卡", "银行卡", "借记卡", "储蓄卡"],
    "when": ["昨天", "上周", "周一", "两天前", "今天早上", "昨晚"],
    "amount": ["25元", "49.9元", "一百二十块", "全款", "300块", "十五欧元"],
}

INTENTS: dict[str, dict[str, list[str]]] = {
    "duplicate_charge": {
        "en": ["{hi}my {card} was charged twice{pls}", "{hi}I was billed two times for the same {item}{pls}",
               "why did you take {amount} from my account twice?", "{hi}I see a double charge on my {card}",
               "the same payment of {amount} shows up twice on my statement",
               "{hi}you charged me twice for one {item}{pls}", "duplicate transaction on my {card} {when}",
               "I only bought one {item} but got charged two times", "double billing for my {item}{pls}",
               "paid once, charged twice - {amount} each time"],
        "zh": ["{hi}我的{card}被扣了两次钱{pls}", "{hi}同一笔{item}扣了我两次款", "为什么{when}扣了我两次{amount}？",
               "{hi}账单上同一笔消费出现了两次", "{hi}重复扣款了{pls}", "{when}付了一次钱但是扣了两次",
               "我的{card}被重复收费{amount}", "一个{item}收了我两次钱{pls}", "{hi}系统多扣了我一笔{amount}",
               "明明只付了一次，怎么扣了两遍"],
    },
    "refund_request": {
        "en": ["{hi}I want a refund for my {item}{pls}", "{hi}can I get my money back?",
               "please refund the {amount} I paid {when}", "{hi}how do I return the {item} and get a refund",
               "the {item} is broken, I want my money back{pls}", "{hi}I'd like to request a refund{pls}",
               "when will I receive my refund for the {item}?", "{hi}return and refund for my {item}",
               "give me my {amount} back, the {item} never worked", "refund please, the {item} is not as described"],
        "zh": ["{hi}我要退款{pls}", "{hi}{item}有质量问题，申请退款", "{when}买的{item}能退钱吗？", "{hi}怎么申请退货退款",
               "把{amount}退给我{pls}", "{hi}{item}坏了，我想退货", "退款什么时候到账？", "{hi}我想把{item}退了，钱退回原卡",
               "{item}和描述不符，要求退款{pls}", "麻烦帮我办理一下退款"],
    },
    "lost_card": {
        "en": ["{hi}I lost my {card}{pls}", "{hi}my {card} was stolen {when}", "please block my {card}, I can't find it",
               "{hi}someone stole my wallet with my {card} in it", "I think I left my {card} at a restaurant {when}",
               "{hi}freeze my {card} right now{pls}", "how do I report a lost {card}?", "{hi}my {card} is missing",
               "cancel my {card}, it was stolen{pls}", "I need a replacement {card}, mine is gone"],
        "zh": ["{hi}我的{card}丢了{pls}", "{hi}{card}{when}被偷了", "请帮我冻结{card}，找不到了", "{hi}钱包丢了，里面有{card}",
               "{card}挂失怎么办理？", "{hi}马上冻结我的{card}{pls}", "{when}把{card}落在餐厅了", "{hi}我的{card}不见了",
               "{card}被盗了，请帮我止付{pls}", "我要补办一张{card}，原来的丢了"],
    },
    "delivery_status": {
        "en": ["{hi}where is my {item}?", "{hi}my {item} hasn't arrived yet{pls}", "when will my {item} be delivered?",
               "{hi}I ordered {when} and still nothing", "track my {item}{pls}", "{hi}the tracking for my {item} hasn't moved",
               "is my {item} lost in the mail?", "{hi}delivery is late, where is it", "how long until my {item} gets here",
               "my {item} says delivered but I never got it"],
        "zh": ["{hi}我的{item}到哪里了？", "{hi}{item}怎么还没到{pls}", "{item}什么时候能送到？", "{hi}{when}下的单，到现在还没收到",
               "帮我查一下物流{pls}", "{hi}{item}的物流信息一直不更新", "{item}是不是寄丢了？", "{hi}快递太慢了，到哪了",
               "显示已签收，但我没收到{item}", "还要多久才能收到{item}"],
    },
    "change_address": {
        "en": ["{hi}I need to change my shipping address{pls}", "{hi}can I update the delivery address for my {item}?",
               "I moved {when}, please send the {item} to my new address", "{hi}wrong address on my {item}{pls}",
               "change the address on my order{pls}", "{hi}how do I edit my address", "please ship my {item} to my office instead",
               "{hi}I typed the wrong street name for my {item}", "update my address before the {item} ships",
               "can the courier deliver my {item} to a different address?"],
        "zh": ["{hi}我要修改收货地址{pls}", "{hi}{item}的地址能改吗？", "我{when}搬家了，{item}寄到新地址", "{hi}{item}地址填错了{pls}",
               "帮我改一下订单地址{pls}", "{hi}怎么修改地址", "{item}改寄到公司吧", "{hi}收货地址写错了一个字",
               "发货前帮我把地址改一下", "快递能送到别的地址吗？"],
    },
    "cancel_order": {
        "en": ["{hi}I want to cancel my order{pls}", "{hi}please cancel the {item} I ordered {when}",
               "can I still cancel my {item} order?", "{hi}I changed my mind, cancel the {item}",
               "cancel order before it ships{pls}", "{hi}I ordered the {item} by mistake, please cancel",
               "how do I cancel an order?", "{hi}stop my order for the {item}", "I don't need the {item} anymore, cancel it",
               "cancel my purchase of the {item}{pls}"],
        "zh": ["{hi}我要取消订单{pls}", "{hi}{when}下的{item}帮我取消", "{item}的订单还能取消吗？", "{hi}不想要了，取消{item}",
               "还没发货就帮我取消吧{pls}", "{hi}{item}下错单了，请取消", "怎么取消订单？", "{hi}把{item}的订单撤销",
               "{item}不需要了，取消掉", "帮我取消这笔订单{pls}"],
    },
    "reset_password": {
        "en": ["{hi}I forgot my password{pls}", "{hi}I can't log in to my account", "how do I reset my password?",
               "{hi}the password reset email never came", "my account is locked after too many attempts{pls}",
               "{hi}I need to change my password", "the login code doesn't work", "{hi}I can't sign in since {when}",
               "reset my password{pls}", "locked out of my account, help"],
        "zh": ["{hi}我忘记密码了{pls}", "{hi}登录不了账号", "怎么重置密码？", "{hi}没收到重置密码的邮件", "账号输错密码被锁了{pls}",
               "{hi}我想改一下登录密码", "验证码一直不对", "{hi}{when}开始就登不上去了", "帮我重置密码{pls}",
               "账户被锁定了，怎么办"],
    },
    "talk_to_agent": {
        "en": ["{hi}I want to talk to a real person{pls}", "{hi}can I speak to a human agent?", "connect me to customer service",
               "{hi}this bot is useless, get me a human", "I need to speak with a manager{pls}",
               "{hi}transfer me to an agent", "is there a phone number I can call?", "{hi}let me chat with a live agent",
               "human please", "I'd rather talk to someone from support{pls}"],
        "zh": ["{hi}转人工{pls}", "{hi}我要找人工客服", "帮我接通客服", "{hi}机器人没用，我要真人", "我要找你们经理{pls}",
               "{hi}转接人工服务", "有电话可以打吗？", "{hi}我想和在线客服聊", "人工！", "还是让真人客服来处理吧"],
    },
}


def _fill(template: str, slots: dict[str, list[str]], rng: random.Random) -> str:
    out = template
    for name, choices in slots.items():
        while "{" + name + "}" in out:
            out = out.replace("{" + name + "}", rng.choice(choices), 1)
    return out


def _en_noise(text: str, rng: random.Random) -> str:
    """Chat-style variation: lower case, dropped final punctuation, a doubled space."""
    roll = rng.random()
    if roll < 0.25:
        text = text.lower()
    if rng.random() < 0.3:
        text = text.rstrip("?.!")
    if roll > 0.9:
        text = text.replace(" ", "  ", 1)
    return text[:1].upper() + text[1:] if rng.random() < 0.7 else text


def _unique(make: Callable[[], str], n: int) -> list[str]:
    seen: list[str] = []
    for _ in range(50 * n):
        if len(seen) == n:
            break
        text = make().strip()
        if text and text not in seen:
            seen.append(text)
    return seen


def make_intents(per_language: int = 30, seed: int = SEED) -> list[dict[str, str]]:
    """``per_language`` English and as many Chinese messages per intent (8 intents)."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for intent, langs in INTENTS.items():
        for lang, templates in langs.items():
            slots = _EN if lang == "en" else _ZH

            def one(templates: list[str] = templates, slots: dict = slots, lang: str = lang) -> str:
                text = _fill(rng.choice(templates), slots, rng)
                return _en_noise(text, rng) if lang == "en" else text

            rows += [{"message": m, "intent": intent, "lang": lang} for m in _unique(one, per_language)]
    rng.shuffle(rows)
    return rows


# --------------------------------------------------------------------------- sentiment
_PRODUCTS_EN = ["phone", "headphones", "coffee maker", "backpack", "hotel room", "laptop", "blender",
                "running shoes", "desk lamp", "restaurant", "vacuum cleaner", "e-reader"]
_PRODUCTS_ZH = ["手机", "耳机", "咖啡机", "背包", "酒店房间", "笔记本电脑", "榨汁机", "跑鞋", "台灯", "餐厅", "吸尘器", "电子书阅读器"]
_ASPECTS_EN = ["battery", "sound", "build quality", "price", "delivery", "customer service", "design", "screen",
               "material", "service", "size", "setup"]
_ASPECTS_ZH = ["电池", "音质", "做工", "价格", "物流", "客服", "外观", "屏幕", "材质", "服务", "尺寸", "安装"]
_SENTIMENT = {
    ("en", "positive"): {
        "adj": ["great", "excellent", "fantastic", "solid", "impressive", "lovely", "superb", "really good"],
        "templates": ["The {aspect} is {adj}.", "{adj_cap} {product}, would buy again.", "Love this {product}! The {aspect} is {adj}.",
                      "Not bad at all, the {aspect} is {adj}.", "Exceeded my expectations, {adj} {aspect}.",
                      "Five stars. The {product} works perfectly.", "I was worried, but the {aspect} turned out {adj}.",
                      "Highly recommend this {product}.", "No complaints, the {aspect} is {adj} for the price.",
                      "My second {product} from them and still {adj}."]},
    ("en", "negative"): {
        "adj": ["terrible", "awful", "disappointing", "cheap", "poor", "useless", "flimsy", "really bad"],
        "templates": ["The {aspect} is {adj}.", "{adj_cap} {product}, do not buy.", "Returned the {product}, the {aspect} was {adj}.",
                      "Not great, the {aspect} is {adj}.", "Stopped working after a week. {adj_cap}.",
                      "One star. The {product} broke on day two.", "I wanted to like it, but the {aspect} is {adj}.",
                      "Would not recommend this {product}.", "Waste of money, the {aspect} is {adj}.",
                      "The {aspect} looked good in photos but is {adj} in person."]},
    ("zh", "positive"): {
        "adj": ["很好", "非常棒", "不错", "超出预期", "很满意", "挺好的", "一流", "特别好"],
        "templates": ["{aspect}{adj}。", "这个{product}{adj}，还会回购。", "{product}收到了，{aspect}{adj}！", "一点都不差，{aspect}{adj}。",
                      "比想象中好，{aspect}{adj}。", "五星好评，{product}很好用。", "本来有点担心，结果{aspect}{adj}。",
                      "强烈推荐这款{product}。", "这个价格{aspect}{adj}，没什么可挑剔的。", "第二次买了，{aspect}依然{adj}。"]},
    ("zh", "negative"): {
        "adj": ["太差了", "很糟糕", "让人失望", "很一般", "不行", "有问题", "很廉价", "特别差"],
        "templates": ["{aspect}{adj}。", "这个{product}{adj}，别买。", "{product}退货了，{aspect}{adj}。", "不怎么样，{aspect}{adj}。",
                      "用了一周就坏了，{adj}。", "一星差评，{product}第二天就坏了。", "本来想好好用的，可是{aspect}{adj}。",
                      "不推荐这款{product}。", "白花钱，{aspect}{adj}。", "图片看着不错，实物{aspect}{adj}。"]},
}


def make_sentiment(per_group: int = 150, seed: int = SEED) -> list[dict[str, str]]:
    """``per_group`` reviews for each (language, sentiment): 600 rows by default."""
    rng = random.Random(seed + 1)
    rows: list[dict[str, str]] = []
    for (lang, label), spec in _SENTIMENT.items():
        products, aspects = (_PRODUCTS_EN, _ASPECTS_EN) if lang == "en" else (_PRODUCTS_ZH, _ASPECTS_ZH)

        def one(spec: dict = spec, products: list[str] = products, aspects: list[str] = aspects) -> str:
            adj = rng.choice(spec["adj"])
            text = rng.choice(spec["templates"]).format(aspect=rng.choice(aspects), product=rng.choice(products),
                                                        adj=adj, adj_cap=adj[:1].upper() + adj[1:])
            return text[:1].upper() + text[1:]

        rows += [{"review": r, "sentiment": label, "lang": lang} for r in _unique(one, per_group)]
    rng.shuffle(rows)
    return rows


def _jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_examples(out_dir: Path | str) -> list[Path]:
    """Write ``intents.jsonl`` and ``sentiment.jsonl`` (UTF-8, one JSON object per line)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "intents.jsonl", out / "sentiment.jsonl"]
    for path, rows in zip(paths, (make_intents(), make_sentiment()), strict=True):
        path.write_text(_jsonl(rows), encoding="utf-8")
    return paths


if __name__ == "__main__":
    for p in write_examples(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent):
        print(p)
