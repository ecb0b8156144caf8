"""The bundled fraud example: a synthetic card-transactions table with a learnable fraud pattern.

    python -c "from modelloop.examples.fraud import generate_transactions as g; print(g(2000).head())"

The table is built the way such data arises, in this order:

1. **Customers** (one per ~18 rows): age, account opening day (8% open around the window, so
   some accounts are days old), how active they are, how much they usually spend.
2. **Genuine transactions**: a customer by activity, a merchant category by merchant popularity (a
   Zipf-like law over ~60 merchants), then the merchant, channel, country (mostly domestic), a
   day-shaped hour and a lognormal amount scaled by the category and the customer.
3. **Fraud incidents**: a stolen card is used in a *burst* of 1-5 transactions within hours. Modes:
   card-not-present online spending on risky categories (often foreign, often at night); a cloned
   card used in shops and ATMs abroad; takeover of a days-old account; and "stealth" fraud drawn
   exactly like genuine spending, which no model can catch and keeps ROC-AUC well below 1.
4. **Derived columns**: ``n_tx_last_24h`` (the customer's earlier transactions in the 24 hours
   before, so bursts show), ``account_age_days``, ``hour``, ``distance_from_home_km``.
5. **Real-world mess**: label noise (8% of fraud never reported, a few genuine transactions
   disputed), ~3% missing ``customer_age`` and ``distance_from_home_km``, and ~0.5% rows ingested
   twice (byte-identical copies sharing their ``transaction_id``).

``shift=True`` gives the following quarter after "the world changed": ~30% of traffic goes to new
merchants (including a new ``crypto_exchange`` category), amounts are ~40% higher, and fraud moved
to crypto exchanges and to domestic, card-present, high-value purchases. The customers are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["COLUMNS", "DOMESTIC_COUNTRY", "generate_transactions"]

COLUMNS = ("transaction_id", "timestamp", "customer_id", "amount", "merchant", "merchant_category",
           "country", "channel", "card_present", "hour", "customer_age", "account_age_days",
           "n_tx_last_24h", "distance_from_home_km", "is_fraud")
DOMESTIC_COUNTRY = "US"

_START = pd.Timestamp("2024-01-01")
_DAYS = 90
_FRAUD_SHARE = 0.02          # observed positives after label noise
_MISSED_FRAUD = 0.08         # fraud that is never reported (labelled 0)
_DISPUTED = 0.001            # genuine transactions disputed as fraud (labelled 1)
_DUPLICATES = 0.005
_MISSING = 0.03
_CHANNELS = ("online", "pos", "atm")

# category: (median amount, share of genuine traffic, P(online, pos, atm), merchants by popularity)
_CATEGORIES: dict[str, tuple[float, float, tuple[float, float, float], tuple[str, ...]]] = {
    "grocery": (45.0, 0.24, (0.08, 0.92, 0.0), ("FreshMart", "Green Basket", "DailyFoods",
                                                 "Corner Grocer", "ValueSave Market", "Harvest Lane")),
    "restaurant": (28.0, 0.18, (0.2, 0.8, 0.0), ("Burger Barn", "The Daily Grind", "Luigi's Trattoria",
                                                 "Sakura Sushi", "Taco Fiesta", "Golden Wok",
                                                 "Noodle Bar 88")),
    "fuel": (42.0, 0.12, (0.02, 0.98, 0.0), ("QuickFuel", "Highway Gas", "PetroPlus", "FuelStop",
                                             "Sunrise Gas")),
    "health": (30.0, 0.06, (0.12, 0.88, 0.0), ("CareWell Pharmacy", "MediPlus", "HealthHub",
                                               "PillBox Drugs", "OptiCare")),
    "apparel": (65.0, 0.08, (0.45, 0.55, 0.0), ("Urban Threads", "StyleHouse", "Denim Depot",
                                                "Shoe Palace", "Kids Closet", "Outdoor Gear Co")),
    "electronics": (160.0, 0.05, (0.55, 0.45, 0.0), ("TechWorld", "GadgetZone", "MegaByte Electronics",
                                                     "PhoneHub", "Pixel Store", "SoundWave")),
    "travel": (240.0, 0.05, (0.8, 0.2, 0.0), ("SkyHigh Airlines", "Comfort Inn", "RideNow", "TrainLink",
                                              "GlobeTrotter Travel", "CarRent Express")),
    "entertainment": (22.0, 0.09, (0.6, 0.4, 0.0), ("StreamFlix", "CineMax", "Arcade Planet",
                                                    "BookNook", "FitLife Gym", "TicketBooth")),
    "digital_goods": (20.0, 0.04, (1.0, 0.0, 0.0), ("AppMarket", "GiftCard Hub", "TopUp Mobile",
                                                    "CloudStore", "DigiKeys")),
    "gambling": (55.0, 0.01, (0.95, 0.05, 0.0), ("LuckyBet", "SpinPalace", "Golden Dice", "AceWager")),
    "cash": (100.0, 0.08, (0.0, 0.0, 1.0), ("FirstBank ATM", "CityCash ATM", "CornerCash ATM",
                                            "QuickCash ATM")),
}
# Merchants that only exist in the shifted quarter, by category; crypto_exchange is new altogether.
_NEW_MERCHANTS: dict[str, tuple[str, ...]] = {
    "crypto_exchange": ("CoinVault", "BitBridge Exchange", "Satoshi Swap", "HashHarbor"),
    "grocery": ("NovaMart", "Farm2Door", "PantryPal"),
    "restaurant": ("QuickBite Delivery", "Bowl & Co", "Ramen Republic"),
    "fuel": ("VoltCharge EV",),
    "electronics": ("TechNest", "Gizmo Galaxy"),
    "apparel": ("Threadly",),
    "entertainment": ("PlayVerse", "TuneBox"),
    "digital_goods": ("PromptPay Credits",),
    "travel": ("StayAway Rentals",),
}
_NEW_CATEGORY = ("crypto_exchange", 180.0, (1.0, 0.0, 0.0))
_FOREIGN = ("CA", "MX", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN", "CN", "JP", "NG", "RU")
_FOREIGN_GENUINE = (0.22, 0.16, 0.12, 0.08, 0.08, 0.07, 0.06, 0.04, 0.04, 0.04, 0.03, 0.04, 0.01, 0.01)
_FOREIGN_FRAUD = (0.04, 0.06, 0.10, 0.04, 0.04, 0.03, 0.03, 0.04, 0.14, 0.10, 0.10, 0.02, 0.14, 0.12)
# P(hour): genuine spending follows the day; fraud leans to the night.
_HOURS_GENUINE = np.array([2, 1, 1, 1, 1, 2, 4, 6, 8, 8, 8, 9, 10, 9, 8, 8, 8, 9, 10, 10, 9, 7, 5, 3], float)
_HOURS_NIGHT = np.array([9, 10, 10, 9, 8, 6, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 5, 6, 7, 8], float)


@dataclass
class _World:
    """The catalogue a quarter draws from: category, its amount, channel mix and merchants."""

    names: list[str]
    median: np.ndarray            # (C,) median amount per category
    channel_p: np.ndarray         # (C, 3) P(online, pos, atm)
    share: np.ndarray             # (C,) share of genuine traffic
    merchants: list[np.ndarray]   # merchant names per category
    weights: list[np.ndarray]     # their popularity (sums to 1 per category)

    def index(self, name: str) -> int:
        return self.names.index(name)


def _zipf(n: int, offset: int = 0) -> np.ndarray:
    w = 1.0 / (np.arange(n) + 1 + offset) ** 1.1
    return w / w.sum()


def _world(shift: bool) -> _World:
    names = list(_CATEGORIES)
    median = [v[0] for v in _CATEGORIES.values()]
    channel_p = [v[2] for v in _CATEGORIES.values()]
    share = np.array([v[1] for v in _CATEGORIES.values()])
    merchants = [np.array(v[3]) for v in _CATEGORIES.values()]
    weights = [_zipf(len(v[3])) for v in _CATEGORIES.values()]
    if shift:
        name, med, chan = _NEW_CATEGORY
        names.append(name)
        median.append(med)
        channel_p.append(chan)
        share = np.append(share * 0.96, 0.04)
        merchants.append(np.array(_NEW_MERCHANTS[name]))
        weights.append(_zipf(len(_NEW_MERCHANTS[name])))
        for c, cat in enumerate(names[:-1]):  # new merchants take ~1/3 of their category's traffic
            new = _NEW_MERCHANTS.get(cat, ())
            if new:
                merchants[c] = np.concatenate([merchants[c], new])
                weights[c] = np.concatenate([weights[c] * 0.68, _zipf(len(new)) * 0.32])
        median = [m * 1.4 for m in median]
    return _World(names, np.array(median), np.array(channel_p), share / share.sum(), merchants, weights)


def _customers(n_customers: int, seed: int) -> pd.DataFrame:
    """Customers are the same in the base and the shifted quarter (their own random stream)."""
    rng = np.random.default_rng([seed, 1])
    new = rng.random(n_customers) < 0.08
    opened = np.where(new, rng.uniform(-25, 85, n_customers),          # days relative to the window
                      -30 - np.minimum(rng.exponential(1400, n_customers), 7000))
    age = np.clip(rng.normal(44, 15, n_customers), 18, 92).astype(int)
    return pd.DataFrame({
        "customer_id": [f"cus_{i:05d}" for i in range(1, n_customers + 1)],
        "opened": opened,
        "new": new,
        "activity": rng.gamma(1.2, 1.0, n_customers),
        "spend": rng.lognormal(0.0, 0.45, n_customers),
        "age": age,
        "age_missing": rng.random(n_customers) < _MISSING,
    })


def _pick(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    return rng.choice(len(p), size=size, p=p / p.sum())


def _hours(rng: np.random.Generator, size: int, night: np.ndarray | float) -> np.ndarray:
    """Hours of the day; each row follows the night-heavy profile with probability ``night``."""
    is_night = rng.random(size) < night
    return np.where(is_night, _pick(rng, _HOURS_NIGHT, size), _pick(rng, _HOURS_GENUINE, size))


def _channels(rng: np.random.Generator, world: _World, cat: np.ndarray) -> np.ndarray:
    channel = np.empty(len(cat), dtype=int)
    for c in range(len(world.names)):
        rows = np.flatnonzero(cat == c)
        channel[rows] = _pick(rng, world.channel_p[c], len(rows))
    return channel


def _describe(rng: np.random.Generator, world: _World, cat: np.ndarray, foreign_p: np.ndarray,
              boost: np.ndarray, channel: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Merchant, channel, country, amount and distance for rows whose category is already drawn."""
    n = len(cat)
    merchant = np.empty(n, dtype=object)
    if channel is None:
        channel = _channels(rng, world, cat)
    for c in range(len(world.names)):
        rows = np.flatnonzero(cat == c)
        merchant[rows] = world.merchants[c][_pick(rng, world.weights[c], len(rows))]
    foreign = rng.random(n) < foreign_p
    country = np.where(foreign, np.array(_FOREIGN, dtype=object)[_pick(rng, np.array(_FOREIGN_GENUINE), n)],
                       DOMESTIC_COUNTRY)
    present = (channel != 0) & (rng.random(n) > 0.04)        # 4% of shop payments are keyed in
    amount = world.median[cat] * boost * rng.lognormal(0.0, 0.75, n)
    amount = np.where(channel == 2, np.maximum(20, np.round(amount / 20) * 20), amount)
    near = np.where(channel == 0, rng.lognormal(np.log(15), 1.2, n), rng.lognormal(np.log(6), 1.0, n))
    distance = np.where(foreign, rng.lognormal(np.log(2500), 0.7, n), near)
    return {"merchant": merchant, "channel": channel, "country": country, "present": present,
            "amount": np.round(np.maximum(amount, 0.5), 2), "distance": np.round(distance, 1)}


def _genuine(rng: np.random.Generator, world: _World, cust: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    who = _pick(rng, cust["activity"].to_numpy(), n)
    first = np.clip(cust["opened"].to_numpy()[who], 0, _DAYS - 1)
    day = np.floor(first + rng.random(n) * (_DAYS - first))
    time = day + (_hours(rng, n, 0.0) + rng.random(n)) / 24
    cat = _pick(rng, world.share, n)
    foreign_p = np.where(world.channel_p[cat, 0] > 0.5, 0.08, 0.03)
    rows = _describe(rng, world, cat, foreign_p, cust["spend"].to_numpy()[who])
    return {"who": who, "time": time, "cat": cat, "fraud": np.zeros(n, dtype=int), **rows}


def _fraud_modes(world: _World, shift: bool) -> list[dict]:
    """Each mode: share of incidents, categories it hits, channel, P(foreign), P(night), amount boost."""
    cats = world.index
    if shift:
        return [
            {"share": 0.45, "cats": {cats("crypto_exchange"): 1.0}, "channel": 0, "foreign": 0.05,
             "night": 0.1, "boost": 1.6, "burst": 1.5},
            {"share": 0.35, "cats": {cats("electronics"): 0.5, cats("apparel"): 0.3, cats("grocery"): 0.2},
             "channel": 1, "foreign": 0.0, "night": 0.0, "boost": 4.0, "burst": 1.0},
            {"share": 0.20, "cats": None, "channel": None, "foreign": 0.05, "night": 0.0, "boost": 1.0,
             "burst": 0.0},
        ]
    return [
        {"share": 0.52, "cats": {cats("digital_goods"): 0.35, cats("electronics"): 0.3,
                                 cats("gambling"): 0.2, cats("travel"): 0.15},
         "channel": 0, "foreign": 0.35, "night": 0.45, "boost": 2.2, "burst": 1.4},
        {"share": 0.18, "cats": {cats("cash"): 0.4, cats("electronics"): 0.35, cats("apparel"): 0.25},
         "channel": None, "foreign": 0.6, "night": 0.3, "boost": 2.0, "burst": 1.0},
        {"share": 0.10, "cats": {cats("electronics"): 0.5, cats("digital_goods"): 0.5},
         "channel": 0, "foreign": 0.2, "night": 0.3, "boost": 2.5, "burst": 1.2, "new_accounts": True},
        {"share": 0.12, "cats": None, "channel": None, "foreign": 0.05, "night": 0.0, "boost": 1.0,
         "burst": 0.0},  # stealth: drawn like genuine spending
    ]


def _incidents(rng: np.random.Generator, modes: list[dict], cust: pd.DataFrame,
               n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stolen-card incidents covering exactly ``n`` rows: mode, burst size, victim, start time."""
    mode = _pick(rng, np.array([m["share"] for m in modes]), n)  # at least one row each: enough
    size = np.minimum(1 + rng.poisson(np.array([m["burst"] for m in modes])[mode]), 5)
    last = np.searchsorted(np.cumsum(size), n)
    mode, size = mode[: last + 1], size[: last + 1]
    size[-1] -= size.sum() - n
    who = _pick(rng, cust["activity"].to_numpy(), len(mode))
    new_ids = np.flatnonzero(cust["new"].to_numpy())
    takeover = np.array([bool(modes[k].get("new_accounts")) for k in mode])
    if takeover.any() and len(new_ids):
        who[takeover] = rng.choice(new_ids, takeover.sum())
    lo = np.clip(cust["opened"].to_numpy()[who], 0, _DAYS - 1)
    hi = np.where(takeover, np.minimum(lo + 20, _DAYS), _DAYS)  # takeovers hit days-old accounts
    night = np.array([m["night"] for m in modes])[mode]
    day = np.floor(lo + rng.random(len(mode)) * (hi - lo))
    start = day + (_hours(rng, len(mode), night) + rng.random(len(mode))) / 24
    return mode, size, who, start


def _fraud(rng: np.random.Generator, world: _World, cust: pd.DataFrame, n: int,
           shift: bool) -> dict[str, np.ndarray]:
    """``n`` fraud rows, grouped in bursts of transactions on one stolen card."""
    modes = _fraud_modes(world, shift)
    mode, size, who, start = _incidents(rng, modes, cust, n)
    # Expand incidents to rows; later rows of a burst follow within minutes to hours.
    inc = np.repeat(np.arange(len(mode)), size)
    step = rng.exponential(35 / 1440, n)
    first = np.r_[True, inc[1:] != inc[:-1]]
    step[first] = 0.0
    offset = np.cumsum(step) - np.repeat(np.cumsum(step)[first], size)
    time = np.minimum(start[inc] + offset, _DAYS - 1e-6)
    m = mode[inc]
    cat = _pick(rng, world.share, n)
    channel = np.full(n, -1)
    for k, spec in enumerate(modes):
        rows = np.flatnonzero(m == k)
        if spec["cats"]:
            keys = np.array(list(spec["cats"]))
            cat[rows] = keys[_pick(rng, np.array(list(spec["cats"].values())), len(rows))]
        if spec["channel"] is not None:
            channel[rows] = spec["channel"]
    channel = np.where(channel < 0, _channels(rng, world, cat), channel)
    foreign_p = np.array([s["foreign"] for s in modes])[m]
    boost = np.array([s["boost"] for s in modes])[m] * cust["spend"].to_numpy()[who[inc]]
    drawn = _describe(rng, world, cat, foreign_p, boost, channel=channel)
    # Fraud abroad comes from other countries than holidays do (stealth fraud excepted).
    abroad = (drawn["country"] != DOMESTIC_COUNTRY) & np.array([s["cats"] is not None for s in modes])[m]
    drawn["country"][abroad] = np.array(_FOREIGN, dtype=object)[
        _pick(rng, np.array(_FOREIGN_FRAUD), int(abroad.sum()))]
    return {"who": who[inc], "time": time, "cat": cat, "fraud": np.ones(n, dtype=int), **drawn}


def _last_24h(who: np.ndarray, time: np.ndarray) -> np.ndarray:
    """The customer's transactions in the 24 hours before each one (itself excluded)."""
    span = _DAYS + 10.0  # customers are laid end to end on one axis, further apart than a day
    key = who * span + time
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    counts = np.empty(len(key), dtype=np.int64)
    counts[order] = np.arange(len(key)) - np.searchsorted(sorted_key, sorted_key - 1.0, side="left")
    return counts


def _label_noise(rng: np.random.Generator, fraud: np.ndarray, n_positive: int) -> np.ndarray:
    """Hide some fraud and dispute some genuine rows, landing on exactly ``n_positive`` positives."""
    y = fraud.copy()
    pos = np.flatnonzero(y == 1)
    y[rng.choice(pos, int(round(len(pos) * _MISSED_FRAUD)), replace=False)] = 0
    extra = n_positive - int(y.sum())
    if extra > 0:
        y[rng.choice(np.flatnonzero(fraud == 0), extra, replace=False)] = 1
    return y


def _table(rows: dict[str, np.ndarray], cust: pd.DataFrame, world: _World, y: np.ndarray,
           rng: np.random.Generator, day0: float, prefix: str) -> pd.DataFrame:
    order = np.argsort(rows["time"], kind="stable")
    r = {k: v[order] for k, v in rows.items()}
    y = y[order]
    n = len(order)
    seconds = np.round(r["time"] * 86400).astype(np.int64)
    stamp = _START + pd.to_timedelta(day0 + seconds / 86400, unit="D").round("s")
    who = r["who"]
    age = pd.array(np.where(cust["age_missing"].to_numpy()[who], pd.NA, cust["age"].to_numpy()[who]),
                   dtype="Int64")
    distance = np.where(rng.random(n) < np.where(r["channel"] == 0, 0.055, 0.02), np.nan, r["distance"])
    return pd.DataFrame({
        "transaction_id": [f"{prefix}{i:06d}" for i in range(1, n + 1)],
        "timestamp": stamp,
        "customer_id": cust["customer_id"].to_numpy()[who],
        "amount": r["amount"],
        "merchant": r["merchant"].astype(str),
        "merchant_category": np.array(world.names)[r["cat"]],
        "country": r["country"].astype(str),
        "channel": np.array(_CHANNELS)[r["channel"]],
        "card_present": r["present"].astype(bool),
        "hour": stamp.hour.to_numpy().astype(np.int64),
        "customer_age": age,
        "account_age_days": np.maximum(0, np.floor(r["time"] + day0 - cust["opened"].to_numpy()[who]))
        .astype(np.int64),
        "n_tx_last_24h": _last_24h(who, r["time"]),
        "distance_from_home_km": distance,
        "is_fraud": y.astype(np.int64),
    })


def _with_duplicates(df: pd.DataFrame, rng: np.random.Generator, n_dup: int) -> pd.DataFrame:
    """Double-ingested rows: exact copies placed right after their original."""
    dup = np.sort(rng.choice(len(df), n_dup, replace=False))
    index = np.sort(np.concatenate([np.arange(len(df)), dup]), kind="stable")
    return df.iloc[index].reset_index(drop=True)


def generate_transactions(n_rows: int = 20000, seed: int = 0, *, shift: bool = False) -> pd.DataFrame:
    """A synthetic card-transactions table of exactly ``n_rows`` rows, the same for the same seed.

    About 2% of rows are fraud (``is_fraud`` = 1), learnable but not trivially: a gradient-boosted
    model reaches a ROC-AUC around 0.9. ``shift=True`` gives the next quarter after the world
    changed (new merchants, higher amounts, a new fraud pattern), for the monitoring demo.
    """
    if not isinstance(n_rows, (int, np.integer)) or n_rows < 200:
        raise ConfigError(f"n_rows: must be an integer >= 200, got {n_rows!r}")
    n_dup = int(round(n_rows * _DUPLICATES))
    n_unique = n_rows - n_dup
    cust = _customers(max(50, n_unique // 18), seed)
    rng = np.random.default_rng([seed, 2 if shift else 0])
    world = _world(shift)
    n_positive = int(round(n_unique * _FRAUD_SHARE))
    n_fraud = int(round(n_unique * (_FRAUD_SHARE - _DISPUTED) / (1 - _MISSED_FRAUD - _DISPUTED)))
    good, bad = _genuine(rng, world, cust, n_unique - n_fraud), _fraud(rng, world, cust, n_fraud, shift)
    rows = {k: np.concatenate([good[k], bad[k]]) for k in good}
    y = _label_noise(rng, rows["fraud"], n_positive)
    df = _table(rows, cust, world, y, rng, day0=_DAYS + 1 if shift else 0, prefix="tx_s" if shift else "tx_")
    return _with_duplicates(df, rng, n_dup)
