"""Realistic generated data sets: a churn model that fails on some slices (``assay demo``), two
churn models to compare (the new one broken for one channel), and a house-price regressor with
a biased city."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ._args import U64_MAX, int_arg

COUNTRIES = np.array(["BR", "DE", "IN", "JP", "MX", "NG", "US", "FR"])
DEVICES = np.array(["desktop", "mobile", "tablet"])
PLANS = np.array(["free", "basic", "pro"])


def _customers(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, ...]:
    """The churn data sets' customer features: country, device, plan."""
    country = rng.choice(COUNTRIES, rows, p=[0.14, 0.12, 0.18, 0.08, 0.1, 0.06, 0.24, 0.08])
    device = rng.choice(DEVICES, rows, p=[0.35, 0.55, 0.10])
    plan = rng.choice(PLANS, rows, p=[0.5, 0.35, 0.15])
    return country, device, plan


def make_data(rows: int = 300_000, seed: int = 0) -> pa.Table:
    """Predictions of a churn model: ``churned`` (label), ``p_churn`` (score) and features.

    The model is well calibrated and sharp on most traffic, but its signal is weak and its
    scores are too confident for ``country=NG`` and on ``device=tablet``, and it underestimates
    churn for new (young-account) users on the free plan.
    """
    rows = int_arg(rows, "rows", "make_data", 1, None)
    seed = int_arg(seed, "seed", "make_data", 0, U64_MAX)
    rng = np.random.default_rng(seed)
    country, device, plan = _customers(rng, rows)
    age = np.clip(rng.normal(38, 12, rows), 18, 85).round()
    tenure = rng.exponential(20, rows).round(1)
    z = rng.normal(0, 1, rows)
    logit = -2.0 + 1.6 * z + 0.4 * (plan == "free") - 0.02 * tenure
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    weak = (country == "NG") | (device == "tablet")
    signal = np.where(weak, 0.35 * z + rng.normal(0, 1.2, rows), z)
    model_logit = -2.0 + 1.6 * signal + 0.4 * (plan == "free") - 0.02 * tenure
    model_logit = np.where(weak, 1.8 * model_logit + 1.0, model_logit)
    model_logit -= 0.8 * ((plan == "free") & (tenure < 5))
    p = 1 / (1 + np.exp(-model_logit))
    return pa.table({
        "churned": churned,
        "p_churn": p,
        "country": country,
        "device": device,
        "plan": plan,
        "age": age,
        "tenure_months": tenure,
    })


CHANNELS = np.array(["web", "app", "partner"])


def make_comparison_data(rows: int = 200_000, seed: int = 0) -> pa.Table:
    """Predictions of two churn models on the same rows: ``churned`` (label), ``p_old`` (the
    production model), ``p_new`` (a candidate) and features ``country``, ``device``, ``plan``,
    ``channel``, ``gender``.

    Both models are equally good and well calibrated (the same signal, independent noise of
    the same size) except on ``channel=partner`` (12% of the rows), where the candidate lost
    most of its signal (a feature stopped arriving from the partner's pipeline) and is
    overconfident.
    """
    rows = int_arg(rows, "rows", "make_comparison_data", 1, None)
    seed = int_arg(seed, "seed", "make_comparison_data", 0, U64_MAX)
    rng = np.random.default_rng(seed)
    country, device, plan = _customers(rng, rows)
    channel = rng.choice(CHANNELS, rows, p=[0.5, 0.38, 0.12])
    gender = rng.choice(np.array(["female", "male", "other"]), rows, p=[0.49, 0.49, 0.02])
    z = rng.normal(0, 1, rows)
    base = -1.6 + 0.4 * (plan == "free")
    churned = rng.random(rows) < 1 / (1 + np.exp(-(base + 1.6 * z)))

    def model(noise: np.ndarray) -> np.ndarray:
        # E[z | z + noise] = (z + noise) / 1.25 with noise ~ N(0, 0.5^2): a calibrated model.
        return 1 / (1 + np.exp(-(base + 1.6 * (z + noise) / 1.25)))

    p_old = model(rng.normal(0, 0.5, rows))
    p_new = model(rng.normal(0, 0.5, rows))
    broken = channel == "partner"
    weak = 1 / (1 + np.exp(-(base + 2.0 * (0.3 * z + rng.normal(0, 1.0, rows)))))
    p_new = np.where(broken, weak, p_new)
    return pa.table({
        "churned": churned,
        "p_old": p_old,
        "p_new": p_new,
        "country": country,
        "device": device,
        "plan": plan,
        "channel": channel,
        "gender": gender,
    })


CITIES = np.array(["berlin", "lisbon", "new_york", "sao_paulo"])


def make_regression_data(rows: int = 300_000, seed: int = 0) -> pa.Table:
    """Predictions of a house-price model: ``price`` (label), ``pred`` (prediction) and
    features ``city``, ``sqft``, ``bedrooms``.

    The model is good on most homes, but it under-predicts in ``city=lisbon`` (prices there
    rose after it was trained) and its errors grow with the size of the home.
    """
    rows = int_arg(rows, "rows", "make_regression_data", 1, None)
    seed = int_arg(seed, "seed", "make_regression_data", 0, U64_MAX)
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES, rows, p=[0.3, 0.15, 0.35, 0.2])
    sqft = np.clip(rng.lognormal(6.9, 0.45, rows), 250, 8000).round()
    bedrooms = np.clip((sqft / 450 + rng.normal(0, 0.8, rows)).round(), 1, 8).astype(np.int64)
    per_sqft = np.select([city == "berlin", city == "lisbon", city == "new_york"],
                         [5200.0, 4100.0, 9800.0], 2300.0)
    price = sqft * per_sqft * rng.lognormal(-0.0072, 0.12, rows) + 8000 * bedrooms
    noise = rng.normal(0, 0.06 + 0.05 * (sqft > 2000), rows)
    pred = (sqft * per_sqft + 8000 * bedrooms) * np.exp(noise)
    pred = np.where(city == "lisbon", 0.82 * pred, pred)
    return pa.table({
        "price": price.round(-2),
        "pred": pred.round(-2),
        "city": city,
        "sqft": sqft,
        "bedrooms": bedrooms,
    })


SPECIES = ["cat", "dog", "bird", "fox"]
"""The classes of :func:`make_multiclass_data`, in score order."""


def make_multiclass_data(rows: int = 300_000, seed: int = 0) -> pa.Table:
    """Predictions of an animal classifier: ``species`` (label, one of :data:`SPECIES`),
    ``probs`` (a fixed-size list of its 4 class probabilities, float32, in :data:`SPECIES`
    order) and features ``camera`` and ``light``.

    The model is good by day, but at ``light=night`` it mistakes foxes for dogs and birds
    are rare there (some slices lack classes: ``camera=door & light=night`` has no bird).
    """
    rows = int_arg(rows, "rows", "make_multiclass_data", 1, None)
    seed = int_arg(seed, "seed", "make_multiclass_data", 0, U64_MAX)
    rng = np.random.default_rng(seed)
    camera = rng.choice(np.array(["door", "garden", "street"]), rows, p=[0.3, 0.4, 0.3])
    light = rng.choice(np.array(["day", "night"]), rows, p=[0.7, 0.3])
    night = light == "night"
    # Class priors by light; no bird at the door at night.
    prior = np.where(night[:, None], [0.35, 0.3, 0.05, 0.3], [0.35, 0.3, 0.25, 0.1])
    prior = np.where((night & (camera == "door"))[:, None], [0.4, 0.3, 0.0, 0.3], prior)
    u = rng.random(rows)[:, None]
    label = (u > np.cumsum(prior, axis=1)).sum(axis=1).clip(0, 3)
    logits = rng.normal(0.0, 1.0, (rows, 4))
    logits[np.arange(rows), label] += np.where(night, 1.2, 2.5)
    # At night a fox looks like a dog.
    fox_night = night & (label == 3)
    logits[fox_night, 1] += 1.5
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    probs = pa.FixedSizeListArray.from_arrays(pa.array(p.astype(np.float32).ravel()), 4)
    return pa.table({
        "species": np.array(SPECIES)[label],
        "probs": probs,
        "camera": camera,
        "light": light,
    })


MARKETS = ["BR", "DE", "US"]
"""The markets of :func:`make_ranking_data`."""


def make_ranking_data(queries: int = 20_000, seed: int = 0) -> pa.Table:
    """A recommender's scores, one row per (user, item): ``user_id`` (the query), ``score``,
    ``relevance`` (a grade 0-3; 0 is not relevant) and the user's attributes ``market`` (one of
    :data:`MARKETS`) and ``segment`` (``new`` or ``returning``). Each user has 5 to 50 items
    (37.5 on average); the rows are grouped by user, in a shuffled order of users.

    The model ranks well, except for new users in ``market=BR``, where its scores barely
    follow relevance; about 1 user in 7 has no relevant item.
    """
    queries = int_arg(queries, "queries", "make_ranking_data", 1, None)
    seed = int_arg(seed, "seed", "make_ranking_data", 0, U64_MAX)
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 51, queries)
    market = rng.choice(np.array(MARKETS), queries, p=[0.3, 0.3, 0.4])
    segment = rng.choice(np.array(["new", "returning"]), queries, p=[0.4, 0.6])
    user = rng.permutation(queries).astype(np.int64) + 100_000
    rows = int(sizes.sum())
    q = np.repeat(np.arange(queries), sizes)
    # Some users like nothing they were shown.
    likes = rng.random(queries) < 0.92
    relevance = np.where(rng.random(rows) < 0.15, rng.integers(1, 4, rows), 0)
    relevance = relevance * likes[q]
    weak = (market == "BR") & (segment == "new")
    signal = np.where(weak[q], 0.05, 0.6)
    score = signal * relevance + rng.normal(0.0, 0.5, rows)
    return pa.table({
        "user_id": user[q],
        "score": np.round(score, 3),
        "relevance": relevance.astype(np.int64),
        "market": market[q],
        "segment": segment[q],
    })

