"""Brute-force reference for ``assay.discover_regressions``, written from docs/discovery.md §10
(and the function's contract), reusing the feature encoding of ``discovery_reference``.

Every conjunction of up to ``max_level`` ``feature = value`` predicates is enumerated (one
vectorized group-by per combination of features); nothing is pruned.

- per-row paired difference ``d = error(model) - error(reference)`` (``paired_errors``);
- score (``contribution``) = ``sum_S d / n``; a slice is reported when ``size >= min_support``
  and ``score > 0``; ranking: score descending, then level, then predicates (feature position,
  value rank), exactly as ``discovery_reference``;
- ``delta`` = mean d, ``se`` = sd(d, ddof=1) / sqrt(size) (two-pass, not the one-pass formula),
  ``delta_lo/hi = delta -/+ z se`` with ``z = Phi^-1(0.5 + ci / 2)`` (null below 2 rows),
  ``effect_size = delta / sd`` (null when sd = 0 or below 2 rows), ``p_value = 1 - Phi(delta /
  se)`` (0/1 by the sign of delta when se = 0; 1 below 2 rows), all with SciPy;
- ``p_adjusted``: statsmodels' ``multipletests`` (holm / fdr_bh) over a *family*. Two families
  are available: ``"lattice"`` (every slice with ``size >= min_support``) and ``"sliceline"``
  (what a level-wise search that never prunes by score scores: level 1 in full, then every
  slice with enough rows all of whose parents were scored and have a positive
  ``sum max(d, 0)``). The engine scores the latter when ``k`` is so large that the top list is
  never full (its pruning threshold stays 0); with pruning it scores a subset of it.
- dedupe: walk the best ``max(4k, k + 20)`` slices (the engine's internal top list); keep a
  slice when, against every kept slice R above it: R an ancestor -> one-sided Welch p of the
  slice's d against R's other rows' d < (1 - ci) / 2; else, when the two share rows -> the
  paired z-test p of the slice's rows outside R < (1 - ci) / 2.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import discovery_reference as dref
import numpy as np
import polars as pl
import scipy.stats as st
from statsmodels.stats.multitest import multipletests

EPS = dref.EPS  # log loss clips probabilities to [EPS, 1 - EPS]

COLUMNS = [
    "rank", "slice", "level", "predicates", "size", "support", "error_reference",
    "error_model", "delta", "delta_lo", "delta_hi", "contribution", "effect_size", "p_value",
    "p_adjusted", "significant",
]


# ----------------------------------------------------------------------------------------------
# per-row errors
# ----------------------------------------------------------------------------------------------


def model_errors(kind: str, y, p, threshold: float = 0.5, task: str = "binary") -> np.ndarray:
    """One model's per-row error: binary log_loss / zero_one / squared, or (task="regression")
    absolute / squared residuals."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if task == "regression":
        r = np.abs(p - y)
        if kind == "absolute":
            return r
        if kind == "squared":
            return r * r
        raise AssertionError(f"unknown regression error {kind!r}")
    return dref.row_errors(kind, y, p, threshold)


def paired_errors(kind: str, y, p_model, p_reference, threshold: float = 0.5,
                  task: str = "binary") -> tuple[np.ndarray, np.ndarray]:
    """(d, reference error) of every row, d = error(model) - error(reference)."""
    e_model = model_errors(kind, y, p_model, threshold, task)
    e_ref = model_errors(kind, y, p_reference, threshold, task)
    return e_model - e_ref, e_ref


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------


def z_of(ci: float) -> float:
    return float(st.norm.ppf(0.5 + ci / 2))


def paired_p(size: int, mean: float, sd: float) -> float:
    """One-sided z-test p-value of mean d > 0 (the contract's conventions)."""
    if size < 2:
        return 1.0
    if sd == 0:
        return 0.0 if mean > 0 else 1.0
    return float(st.norm.sf(mean / (sd / math.sqrt(size))))


def paired_p_of(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return 1.0
    return paired_p(len(x), float(np.mean(x)), float(np.std(x, ddof=1)))


def welch_p_of(a: np.ndarray, b: np.ndarray) -> float:
    """One-sided Welch p-value of mean(a) > mean(b) (1 with fewer than 2 rows on a side; 0/1
    by the sign of the difference when both variances are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return 1.0
    ssa = float(np.sum((a - a.mean()) ** 2))
    ssb = float(np.sum((b - b.mean()) ** 2))
    return float(dref.welch_greater(len(a), a.mean(), ssa, len(b), b.mean(), ssb)[0])


def adjust(p, correction: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if len(p) == 0 or correction == "none":
        return p.copy()
    method = {"holm": "holm", "bh": "fdr_bh"}[correction]
    return multipletests(p, method=method)[1]


# ----------------------------------------------------------------------------------------------
# the search
# ----------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """``top``: the expected table (``p_adjusted`` over ``family``). ``slices``: every slice
    with ``size >= min_support`` (dicts). ``family``: the keys of the family's slices."""

    top: pl.DataFrame
    slices: list[dict]
    family: list[tuple]
    lattice_size: int
    rows: int
    min_support: int
    features: list[dref.Feature] = field(repr=False)

    def by_slice(self) -> dict[str, dict]:
        return {s["slice"]: s for s in self.slices}


def _mask(feats: list[dref.Feature], pairs: Sequence[tuple[int, int]], n: int) -> np.ndarray:
    m = np.ones(n, dtype=bool)
    for f, c in pairs:
        m &= feats[f].codes == c
    return m


def discover(
    features: Mapping[str, object] | Sequence[tuple[str, object]],
    d,
    base,
    *,
    k: int = 10,
    max_level: int = 3,
    min_support: float | int = 0.01,
    ci: float = 0.95,
    correction: str = "holm",
    dedupe: bool = False,
    family: str = "sliceline",
    bins: Mapping[str, Sequence[float]] | None = None,
) -> Reference:
    """The exact answer by brute force. ``d``: per-row differences; ``base``: per-row errors
    of the reference model."""
    items = list(features.items()) if isinstance(features, Mapping) else list(features)
    bins = dict(bins or {})
    feats = [dref.encode(name, values, bins.get(name)) for name, values in items]
    d = np.asarray(d, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    n = len(d)
    sigma = dref.min_support_count(min_support, n)
    alpha = 0.5 * (1.0 - ci)
    z = z_of(ci)
    nf = len(feats)

    slices: list[dict] = []
    for level in range(1, min(max_level, nf) + 1):
        for combo in itertools.combinations(range(nf), level):
            key = np.zeros(n, dtype=np.int64)
            for f in combo:
                key = key * len(feats[f].labels) + feats[f].codes
            uniq, inv, size = np.unique(key, return_inverse=True, return_counts=True)
            # np.bincount adds each bin's weights left to right, as the engine does.
            sums = np.bincount(inv, weights=d, minlength=len(uniq))
            pos = np.bincount(inv, weights=np.maximum(d, 0.0), minlength=len(uniq))
            bsum = np.bincount(inv, weights=base, minlength=len(uniq))
            means = sums / size
            ss = np.bincount(inv, weights=(d - means[inv]) ** 2, minlength=len(uniq))
            for j in np.flatnonzero(size >= sigma):
                rest = int(uniq[j])
                codes = []
                for f in reversed(combo):
                    codes.append(rest % len(feats[f].labels))
                    rest //= len(feats[f].labels)
                codes.reverse()
                pairs = tuple(zip(combo, codes, strict=True))
                preds = tuple((feats[f].name, feats[f].labels[c]) for f, c in pairs)
                sz = int(size[j])
                m = float(means[j])
                sd = math.sqrt(float(ss[j]) / (sz - 1)) if sz >= 2 else math.nan
                se = sd / math.sqrt(sz) if sz >= 2 else math.nan
                slices.append(dict(
                    slice=" & ".join(f"{a}={'null' if b is None else b}" for a, b in preds),
                    level=level, pairs=pairs, preds=preds,
                    key=tuple((f, feats[f].ranks[c]) for f, c in pairs),
                    size=sz, sum=float(sums[j]), pos=float(pos[j]), sd=sd,
                    support=sz / n, error_reference=float(bsum[j]) / sz,
                    error_model=float(bsum[j]) / sz + m, delta=m,
                    delta_lo=None if sz < 2 else m - z * se,
                    delta_hi=None if sz < 2 else m + z * se,
                    contribution=float(sums[j]) / n,
                    effect_size=None if sz < 2 or sd == 0 else m / sd,
                    p_value=paired_p(sz, m, sd),
                ))
    lattice_size = len(slices)
    searched = float(np.sum(np.maximum(d, 0.0))) > 0  # no row got worse: nothing is searched
    by_pairs = {s["pairs"]: s for s in slices}
    if not searched:
        fam: list[tuple] = []
    elif family == "lattice":
        fam = [s["pairs"] for s in slices]
    elif family == "sliceline":
        scored = {s["pairs"] for s in slices if s["level"] == 1}
        for level in range(2, min(max_level, nf) + 1):
            for s in slices:
                if s["level"] != level:
                    continue
                parents = [s["pairs"][:i] + s["pairs"][i + 1:] for i in range(level)]
                if all(p in scored and by_pairs[p]["pos"] > 0 for p in parents):
                    scored.add(s["pairs"])
        fam = [s["pairs"] for s in slices if s["pairs"] in scored]
    else:
        raise AssertionError(family)
    adjusted = dict(zip(fam, adjust([by_pairs[p]["p_value"] for p in fam], correction),
                        strict=True))
    for s in slices:
        s["p_adjusted"] = float(adjusted[s["pairs"]]) if s["pairs"] in adjusted else None
        s["significant"] = s["p_adjusted"] is not None and s["p_adjusted"] <= alpha

    valid = [s for s in slices if s["contribution"] > 0] if searched else []
    valid.sort(key=lambda s: (-s["contribution"], s["level"], s["key"]))
    if dedupe:
        # Dedupe tests at the level the correction would test one more hypothesis at, after
        # rejecting r of the m: Holm alpha / (m - r), BH alpha (r + 1) / m, none alpha.
        m = len(fam)
        r = sum(1 for p in fam if adjusted[p] <= alpha)
        if correction == "holm" and m > r:
            cut = alpha / (m - r)
        elif correction == "bh" and m > 0:
            cut = min(alpha, alpha * (r + 1) / m)
        else:
            cut = alpha
        chosen = _dedupe(valid[: max(4 * k, k + 20)], feats, d, n, k, cut)
    else:
        chosen = valid[:k]

    top = pl.DataFrame({
        "rank": pl.Series(list(range(1, len(chosen) + 1)), dtype=pl.UInt32),
        "slice": pl.Series([s["slice"] for s in chosen], dtype=pl.String),
        "level": pl.Series([s["level"] for s in chosen], dtype=pl.UInt32),
        "predicates": pl.Series(
            [[{"feature": a, "value": b} for a, b in s["preds"]] for s in chosen],
            dtype=pl.List(pl.Struct({"feature": pl.String, "value": pl.String}))),
        "size": pl.Series([s["size"] for s in chosen], dtype=pl.UInt64),
        **{c: pl.Series([s[c] for s in chosen], dtype=pl.Float64) for c in COLUMNS[5:-1]},
        "significant": pl.Series([s["significant"] for s in chosen], dtype=pl.Boolean),
    })
    return Reference(top=top, slices=slices, family=fam, lattice_size=lattice_size, rows=n,
                     min_support=sigma, features=feats)


def _dedupe(pool: list[dict], feats, d: np.ndarray, n: int, k: int, alpha: float) -> list[dict]:
    kept: list[tuple[dict, np.ndarray]] = []
    for s in pool:
        if len(kept) >= k:
            break
        rows = _mask(feats, s["pairs"], n)
        keep = True
        for r, r_rows in kept:
            if len(r["pairs"]) < len(s["pairs"]) and set(r["pairs"]) < set(s["pairs"]):
                keep = welch_p_of(d[rows], d[r_rows & ~rows]) <= alpha
            elif (rows & r_rows).any():
                rest = rows & ~r_rows
                keep = bool(rest.any()) and paired_p_of(d[rest]) <= alpha
            if not keep:
                break
        if keep:
            kept.append((s, rows))
    return [s for s, _ in kept]


def slice_mask(ref: Reference, preds: Sequence[tuple[str, str | None]]) -> np.ndarray:
    """Rows of a slice given as (feature, value label) pairs."""
    by_name = {f.name: i for i, f in enumerate(ref.features)}
    pairs = [(by_name[a], ref.features[by_name[a]].labels.index(b)) for a, b in preds]
    return _mask(ref.features, pairs, ref.rows)
