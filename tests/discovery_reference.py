"""Brute-force reference for ``assay.discover_slices``, written from docs/discovery.md.

Every conjunction of up to ``max_level`` ``feature = value`` predicates is enumerated
(``itertools.combinations`` over the features, then every value tuple that occurs, counted with
one vectorized group-by per combination of features), scored, filtered and ranked exactly as the
docs say. No pruning, no lattice joins, no cleverness: it is slow on wide data and that is fine.

- score: ``alpha * (mean_S / mean - 1) - (1 - alpha) * (n / size_S - 1)``; a slice is *valid*
  when ``size_S >= min_support`` and ``score > 0``.
- ranking: score descending, then level ascending, then the predicates compared as a list of
  ``(feature position, value rank)`` pairs, values ranked as ``assay.evaluate`` sorts them
  (strings by code point, integers numerically, false < true, bins in edge order with the
  below-range bin first, null last).
- p-value: one-sided Welch t-test of the slice's errors against the other rows' (SciPy),
  effect size: Cohen's d with the pooled standard deviation, q-value: Benjamini-Hochberg over a
  family of p-values (here: *every* slice with ``size >= min_support``, the largest family the
  engine can score; the engine scores a subset, see the tests).
- dedupe: walk the ranking; drop a slice when an already kept slice is an ancestor (a proper
  subset of its predicates) and the slice's errors are not significantly higher (one-sided
  Welch p < fdr) than the ancestor's other rows.

Also here: the per-row errors of the built-in error kinds, and the bin labels and bin ids of
``assay.bins`` (ported from the engine's ``slicing`` module so labels can be compared).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import scipy.stats as st

# Probabilities are clipped to [EPS, 1 - EPS] for log loss (as everywhere in assay).
EPS = 2.0**-52

OUTPUT_COLUMNS = [
    "rank", "slice", "level", "predicates", "size", "support", "error_mean", "error_ratio",
    "score", "effect_size", "p_value", "q_value", "significant",
]


# ----------------------------------------------------------------------------------------------
# per-row errors
# ----------------------------------------------------------------------------------------------


def row_errors(kind: str, y, p, threshold: float = 0.5) -> np.ndarray:
    """The per-row error of a built-in kind: log_loss, zero_one or squared."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if kind == "log_loss":
        q = np.clip(p, EPS, 1.0 - EPS)
        return -np.log(np.where(y == 1.0, q, 1.0 - q))
    if kind == "zero_one":
        return ((p >= threshold) != (y == 1.0)).astype(np.float64)
    if kind == "squared":
        return (p - y) * (p - y)
    raise AssertionError(f"unknown error kind {kind!r}")


# ----------------------------------------------------------------------------------------------
# features: value codes, labels and report order
# ----------------------------------------------------------------------------------------------


def format_edge(x: float, digits: int) -> str:
    """A bin edge as the engine prints it: integers plainly, else ``digits`` significant
    digits without trailing zeros."""
    if x == math.trunc(x) and abs(x) < 1e15:
        return str(int(x))
    magnitude = math.floor(math.log10(abs(x)))
    decimals = min(max(digits - 1 - magnitude, 0), 17)
    s = f"{x:.{decimals}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Labels of bin ids ``0 .. m`` for ``m`` edges: the ``m - 1`` bins, then below, above."""
    digits = 6
    while True:
        f = [format_edge(float(e), digits) for e in edges]
        if all(a != b for a, b in zip(f, f[1:], strict=False)) or digits >= 17:
            m = len(edges)
            labels = [f"[{f[j]}, {f[j + 1]}{']' if j == m - 2 else ')'}" for j in range(m - 1)]
            return labels + [f"(-inf, {f[0]})", f"({f[m - 1]}, inf)"]
        digits += 3


def bin_ids(x, edges: Sequence[float]) -> np.ndarray:
    """Bin id of every value: ``[e_j, e_j+1)`` is ``j`` (the last bin closed), ``m - 1`` below
    the first edge, ``m`` above the last, ``m + 1`` NaN or null (``x`` as float, NaN for null)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    m = len(e)
    k = np.searchsorted(e, x, side="right")  # number of edges <= x
    ids = np.where(k == 0, m - 1, np.where(k == m, np.where(x == e[-1], m - 2, m), k - 1))
    return np.where(np.isnan(x), m + 1, ids).astype(np.int64)


@dataclass
class Feature:
    """One feature: a code per row, the label of each code (None = null) and its rank in the
    report order."""

    name: str
    codes: np.ndarray
    labels: list[str | None]
    ranks: list[int]


def _values(values) -> pa.Array:
    if isinstance(values, pl.Series):
        values = values.to_arrow()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values.tolist() if isinstance(values, np.ndarray) else list(values))
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return values


def _label(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def encode(name: str, values, edges: Sequence[float] | None = None) -> Feature:
    """Codes of a categorical column (``edges`` None) or of a column cut at ``edges``."""
    arr = _values(values)
    if edges is not None:
        x = np.asarray(arr.cast(pa.float64()).fill_null(float("nan")).to_numpy(
            zero_copy_only=False), dtype=np.float64)
        m = len(edges)
        labels: list[str | None] = [*bin_labels(edges), None]
        # report order: below range, the bins in order, above, null
        ranks = [j + 1 for j in range(m - 1)] + [0, m, m + 1]
        return Feature(name, bin_ids(x, edges), labels, ranks)
    py = arr.to_pylist()
    distinct = sorted({v for v in py if v is not None})
    has_null = any(v is None for v in py)
    order: list = distinct + ([None] if has_null else [])
    code = {v: i for i, v in enumerate(order)}
    codes = np.fromiter((code[v] for v in py), dtype=np.int64, count=len(py))
    labels = [None if v is None else _label(v) for v in order]
    return Feature(name, codes, labels, list(range(len(order))))


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------


def welch_greater(n1, m1, ss1, n2, m2, ss2) -> np.ndarray:
    """One-sided Welch t-test p-values, H1: mean 1 > mean 2, from sizes, means and sums of
    squared deviations (vectorized; SciPy's ``ttest_ind_from_stats``).

    Where the test is undefined the engine's convention applies: 1 when either side has fewer
    than 2 rows; when both variances are 0, 0 if mean 1 > mean 2 else 1.
    """
    n1, m1, ss1, n2, m2, ss2 = (np.atleast_1d(np.asarray(a, dtype=np.float64))
                                for a in (n1, m1, ss1, n2, m2, ss2))
    ok = (n1 >= 2) & (n2 >= 2)
    v1 = np.where(ok, np.maximum(ss1, 0.0) / np.maximum(n1 - 1, 1), 0.0)
    v2 = np.where(ok, np.maximum(ss2, 0.0) / np.maximum(n2 - 1, 1), 0.0)
    se = np.sqrt(v1 / np.maximum(n1, 1) + v2 / np.maximum(n2, 1))
    live = ok & (se > 0)
    p = np.where(m1 > m2, 0.0, 1.0)
    p = np.where(ok, p, 1.0)
    if live.any():
        with np.errstate(all="ignore"):
            res = st.ttest_ind_from_stats(
                m1[live], np.sqrt(v1[live]), n1[live], m2[live], np.sqrt(v2[live]), n2[live],
                equal_var=False, alternative="greater")
        p[live] = res.pvalue
    return p


def effect_size(n1, m1, ss1, n2, m2, ss2) -> np.ndarray:
    """(mean 1 - mean 2) / pooled SD, pooled SD = sqrt((ss1 + ss2) / (n1 + n2 - 2)); NaN where
    undefined (an empty side, fewer than 3 rows, or a pooled SD of 0)."""
    n1, m1, ss1, n2, m2, ss2 = (np.atleast_1d(np.asarray(a, dtype=np.float64))
                                for a in (n1, m1, ss1, n2, m2, ss2))
    ok = (n1 >= 1) & (n2 >= 1) & (n1 + n2 >= 3)
    with np.errstate(all="ignore"):
        sd = np.sqrt((np.maximum(ss1, 0) + np.maximum(ss2, 0)) / (n1 + n2 - 2))
        d = (m1 - m2) / sd
    return np.where(ok & (sd > 0), d, np.nan)


def benjamini_hochberg(p) -> np.ndarray:
    """BH adjusted p-values: q_(i) = min over j >= i of min(1, m p_(j) / j), p sorted."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q


# ----------------------------------------------------------------------------------------------
# the search
# ----------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """The brute-force answer.

    ``top``: the ranked slices, with the columns of ``assay.discover_slices`` (``q_value`` over
    the full family). ``scored``: every slice with ``size >= min_support`` (the full family),
    with its predicates as a tuple ``preds`` of (feature, value label) and its statistics.
    """

    top: pl.DataFrame
    scored: pl.DataFrame
    n_family: int
    error_mean: float
    rows: int
    min_support: int
    features: list[Feature] = field(repr=False)

    def by_slice(self) -> dict[str, dict]:
        """Every scored slice by its label."""
        return {r["slice"]: r for r in self.scored.iter_rows(named=True)}


def min_support_count(min_support: float | int, rows: int) -> int:
    """A fraction becomes ``int(fraction * rows)`` (as the sliceline package), never below 1."""
    if isinstance(min_support, float):
        return max(1, int(min_support * rows))
    return int(min_support)


def _seq_sum(x: np.ndarray) -> float:
    """A left-to-right sum (as the engine accumulates), not NumPy's pairwise one."""
    return float(np.bincount(np.zeros(len(x), dtype=np.int64), weights=x, minlength=1)[0])


def discover(
    features: Mapping[str, object] | Sequence[tuple[str, object]],
    errors,
    *,
    k: int = 10,
    max_level: int = 3,
    min_support: float | int = 0.01,
    alpha: float = 0.95,
    dedupe: bool = False,
    fdr: float = 0.05,
    bins: Mapping[str, Sequence[float]] | None = None,
    dedupe_pool: int | None = None,
) -> Reference:
    """The exact top-k by brute force.

    ``features`` maps a name to its column (list, numpy, pyarrow or polars), in feature order;
    ``bins`` maps a feature to the edges it is cut at (the others are categorical).
    ``dedupe_pool`` limits dedupe to the best that many valid slices (None: all of them).
    """
    items = list(features.items()) if isinstance(features, Mapping) else list(features)
    bins = dict(bins or {})
    feats = [encode(name, values, bins.get(name)) for name, values in items]
    e = np.asarray(errors, dtype=np.float64)
    n = len(e)
    sigma = min_support_count(min_support, n)
    total = _seq_sum(e)
    mean = total / n
    ss_total = float(np.sum((e - np.mean(e)) ** 2))
    mbar = float(np.mean(e))

    recs: dict[str, list] = {c: [] for c in (
        "slice", "level", "preds", "key", "size", "sum", "error_mean", "ss", "score")}
    nf = len(feats)
    for level in range(1, min(max_level, nf) + 1):
        for combo in itertools.combinations(range(nf), level):
            key = np.zeros(n, dtype=np.int64)
            for f in combo:
                key = key * len(feats[f].labels) + feats[f].codes
            uniq, inv, size = np.unique(key, return_inverse=True, return_counts=True)
            sums = np.bincount(inv, weights=e, minlength=len(uniq))
            means = sums / size
            ss = np.bincount(inv, weights=(e - means[inv]) ** 2, minlength=len(uniq))
            score = alpha * (sums / size / mean - 1.0) - (1.0 - alpha) * (n / size - 1.0)
            for j in np.flatnonzero(size >= sigma):
                rest = int(uniq[j])
                codes = []
                for f in reversed(combo):
                    codes.append(rest % len(feats[f].labels))
                    rest //= len(feats[f].labels)
                codes.reverse()
                pairs = list(zip(combo, codes, strict=True))
                preds = tuple((feats[f].name, feats[f].labels[c]) for f, c in pairs)
                recs["slice"].append(" & ".join(
                    f"{a}={'null' if b is None else b}" for a, b in preds))
                recs["level"].append(level)
                recs["preds"].append(preds)
                recs["key"].append(tuple((f, feats[f].ranks[c]) for f, c in pairs))
                recs["size"].append(int(size[j]))
                recs["sum"].append(float(sums[j]))
                recs["error_mean"].append(float(means[j]))
                recs["ss"].append(float(ss[j]))
                recs["score"].append(float(score[j]))

    size = np.asarray(recs["size"], dtype=np.float64)
    sums = np.asarray(recs["sum"], dtype=np.float64)
    m1 = np.asarray(recs["error_mean"], dtype=np.float64)
    ss1 = np.asarray(recs["ss"], dtype=np.float64)
    n2 = n - size
    with np.errstate(all="ignore"):
        m2 = np.where(n2 > 0, (total - sums) / np.maximum(n2, 1), np.nan)
        ss2 = ss_total - ss1 - size * (m1 - mbar) ** 2 - n2 * np.nan_to_num(m2 - mbar) ** 2
    p = welch_greater(size, m1, ss1, n2, m2, ss2) if len(size) else np.zeros(0)
    d = effect_size(size, m1, ss1, n2, m2, ss2) if len(size) else np.zeros(0)
    if total > 0:
        q = benjamini_hochberg(p)
        n_family = len(p)
    else:  # no error anywhere: nothing is searched (the engine's convention)
        q = np.ones(len(p))
        n_family = 0
    rows = [
        dict(slice=recs["slice"][i], level=recs["level"][i], preds=recs["preds"][i],
             key=recs["key"][i], size=recs["size"][i], sum=recs["sum"][i],
             error_mean=recs["error_mean"][i], ss=recs["ss"][i], score=recs["score"][i],
             support=recs["size"][i] / n, error_ratio=recs["error_mean"][i] / mean,
             effect_size=None if np.isnan(d[i]) else float(d[i]), p_value=float(p[i]),
             q_value=float(q[i]))
        for i in range(len(size))
    ]
    valid = [r for r in rows if r["score"] > 0] if total > 0 else []
    valid.sort(key=lambda r: (-r["score"], r["level"], r["key"]))
    chosen = _dedupe(valid, fdr, k, dedupe_pool) if dedupe else valid[:k]

    top = pl.DataFrame(
        {
            "rank": pl.Series([i + 1 for i in range(len(chosen))], dtype=pl.UInt32),
            "slice": pl.Series([r["slice"] for r in chosen], dtype=pl.String),
            "level": pl.Series([r["level"] for r in chosen], dtype=pl.UInt32),
            "predicates": pl.Series(
                [[{"feature": a, "value": b} for a, b in r["preds"]] for r in chosen],
                dtype=pl.List(pl.Struct({"feature": pl.String, "value": pl.String}))),
            "size": pl.Series([r["size"] for r in chosen], dtype=pl.UInt64),
            **{c: pl.Series([r[c] for r in chosen], dtype=pl.Float64) for c in (
                "support", "error_mean", "error_ratio", "score", "effect_size", "p_value",
                "q_value")},
            "significant": pl.Series([r["q_value"] <= fdr for r in chosen], dtype=pl.Boolean),
        }
    )
    scored = pl.DataFrame(
        [{c: r[c] for c in ("slice", "level", "size", "sum", "error_mean", "ss", "score",
                            "support", "error_ratio", "effect_size", "p_value", "q_value")}
         for r in rows],
        schema={"slice": pl.String, "level": pl.Int64, "size": pl.Int64, "sum": pl.Float64,
                "error_mean": pl.Float64, "ss": pl.Float64, "score": pl.Float64,
                "support": pl.Float64, "error_ratio": pl.Float64, "effect_size": pl.Float64,
                "p_value": pl.Float64, "q_value": pl.Float64},
    ).with_columns(pl.Series("preds", [r["preds"] for r in rows], dtype=pl.Object))
    return Reference(top=top, scored=scored, n_family=n_family, error_mean=mean, rows=n,
                     min_support=sigma, features=feats)


def _dedupe(valid: list[dict], fdr: float, k: int, pool: int | None) -> list[dict]:
    kept: list[dict] = []
    for r in valid if pool is None else valid[:pool]:
        if len(kept) >= k:
            break
        mine = set(r["preds"])
        ancestors = [a for a in kept if len(a["preds"]) < len(mine) and set(a["preds"]) < mine]
        ok = True
        for a in ancestors:
            n1, na = r["size"], a["size"]
            n2 = na - n1
            m1, ma = r["error_mean"], a["error_mean"]
            m2 = (a["sum"] - r["sum"]) / n2 if n2 > 0 else math.nan
            ss2 = a["ss"] - r["ss"] - n1 * (m1 - ma) ** 2 - (n2 * (m2 - ma) ** 2 if n2 else 0.0)
            pv = float(welch_greater(n1, m1, r["ss"], n2, m2, ss2)[0])
            if not pv < fdr:
                ok = False
                break
        if ok:
            kept.append(r)
    return kept


def slice_rows(ref: Reference, preds: Sequence[tuple[str, str | None]]) -> np.ndarray:
    """Boolean mask of the rows of a slice given as (feature, value label) pairs."""
    by_name = {f.name: f for f in ref.features}
    mask = np.ones(ref.rows, dtype=bool)
    for name, value in preds:
        f = by_name[name]
        mask &= f.codes == f.labels.index(value)
    return mask
