"""Calibration metrics of ``assay.evaluate`` and ``assay.reliability`` against brute-force
references written from docs/calibration.md (tests/calib_reference.py), scikit-learn and relplot.

Tests with "reference" in their name check the references themselves (against scikit-learn,
scipy and relplot) and need nothing from assay's calibration code.
"""

from __future__ import annotations

import functools
import math

import calib_reference as ref
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from conftest import assert_tables_close, assert_value, rows_by_slice
from hypothesis import given
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

import assay
from assay.errors import AssayError, InvalidArgumentError, InvalidInputError

CAL_METRICS = [
    "ece",
    "mce",
    "rmsce",
    "ace",
    "ece_debiased",
    "smooth_ece",
    "calibration_slope",
    "calibration_intercept",
    "oe_ratio",
    "brier_reliability",
    "brier_resolution",
    "brier_uncertainty",
]
# Everything a reliability table determines (plus oe_ratio): cheap to check on many cases.
BIN_METRICS = [*ref.BIN_METRICS, "ace", "oe_ratio"]
RELIABILITY_COLUMNS = [
    "slice",
    "bin",
    "lower",
    "upper",
    "count",
    "weight_sum",
    "mean_score",
    "frac_positive",
    "frac_lo",
    "frac_hi",
]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _logit(p):
    return np.log(p / (1 - p))


def _masks(g):
    """{slice label: row mask} for "overall" and the slices of the column g."""
    out = {"overall": np.ones(len(g), dtype=bool)}
    for v in np.unique(g):
        out[f"g={v}"] = g == v
    return out


def _sub(w, mask):
    return None if w is None else w[mask]


def _assert_metric(name, got, expected, what):
    """A calibration metric against its reference (rtol 1e-9, atol 1e-12; None = null).

    rmsce and ece_debiased are square roots of sums that can be ~0, where sqrt turns a 1e-17
    rounding difference into 3e-9: they are compared squared.
    """
    if name in ("rmsce", "ece_debiased") and expected is not None and got is not None:
        np.testing.assert_allclose(got**2, expected**2, rtol=1e-9, atol=1e-12, err_msg=what)
    else:
        assert_value(got, expected, what)


def _long_row(rep, slice_label, metric):
    long = rep.long().filter((pl.col("slice") == slice_label) & (pl.col("metric") == metric))
    assert long.height == 1, (slice_label, metric)
    return long.row(0, named=True)


# ----------------------------------------------------------------------------------------------
# 1. reliability tables against scikit-learn's calibration_curve
# ----------------------------------------------------------------------------------------------


def _continuous(n, seed):
    """Continuous scores with no score on an inner uniform edge, and Bernoulli labels."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.5, 2.5, n)
    y = (rng.random(n) < np.clip(1.2 * p - 0.05, 0, 1)).astype(np.int8)
    for n_bins in (5, 10, 15):
        assert not np.isin(p, ref.uniform_edges(n_bins)).any()
    return p, y


# n = 2000: n - 1 = 1999 is prime, so (n - 1) k / n_bins is never an integer, no quantile edge
# coincides with a score and sklearn's np.percentile(100 q) edges bin every row as np.quantile(q).
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_reference_bins_match_sklearn_calibration_curve(strategy, n_bins):
    p, y = _continuous(2000, seed=n_bins)
    t = ref.slice_bin_table(p, y, None, n_bins, strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    keep = t["count"] > 0
    np.testing.assert_allclose(t["frac_positive"][keep], prob_true, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t["mean_score"][keep], prob_pred, rtol=0, atol=1e-12)
    if strategy == "quantile":
        assert keep.all() and t["count"].sum() == len(p)
        np.testing.assert_array_equal(
            np.r_[t["lower"], t["upper"][-1]], np.quantile(p, np.linspace(0, 1, n_bins + 1))
        )


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_reliability_matches_sklearn_calibration_curve(strategy, n_bins):
    p, y = _continuous(2000, seed=n_bins)
    rel = assay.reliability({"y": y, "p": p}, label="y", score="p", n_bins=n_bins,
                            strategy=strategy)
    assert rel.columns == RELIABILITY_COLUMNS
    assert rel["bin"].dtype.is_integer() and rel["count"].dtype.is_integer()
    assert rel["slice"].to_list() == ["overall"] * n_bins
    assert rel["bin"].to_list() == list(range(n_bins))
    assert rel["count"].sum() == len(p)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    full = rel.filter(pl.col("count") > 0)
    np.testing.assert_allclose(full["frac_positive"].to_numpy(), prob_true, rtol=0, atol=1e-12)
    np.testing.assert_allclose(full["mean_score"].to_numpy(), prob_pred, rtol=0, atol=1e-12)
    if strategy == "quantile":
        edges = np.quantile(p, np.linspace(0, 1, n_bins + 1))
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    # bit for bit
    assert rel["lower"].to_list() == edges[:-1].tolist()
    assert rel["upper"].to_list() == edges[1:].tolist()


def _edge_case():
    s = np.array([0.0, 0.1, 1.0])  # 0.1 == np.linspace(0, 1, 11)[1], an inner edge
    y = np.array([0, 1, 1], dtype=np.int8)
    assert s[1] == np.linspace(0, 1, 11)[1]
    return s, y


def test_reference_uniform_inner_edge_goes_up_unlike_sklearn():
    s, y = _edge_case()
    assert ref.uniform_bin_ids(s, 10).tolist() == [0, 1, 9]
    # scikit-learn: np.searchsorted(edges[1:-1], s) puts 0.1 in bin 0 with 0.0
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(prob_pred, [0.05, 1.0])
    np.testing.assert_allclose(prob_true, [0.5, 1.0])
    t = ref.slice_bin_table(s, y, None, 10, "uniform")
    assert t["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]


def test_reliability_uniform_inner_edge_goes_to_the_upper_bin():
    s, y = _edge_case()
    rel = assay.reliability({"y": y, "p": s}, label="y", score="p", n_bins=10)
    assert rel["count"].to_list() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert rel["mean_score"].to_list() == [0.0, 0.1, None, None, None, None, None, None, None,
                                           1.0]
    assert rel["frac_positive"].to_list()[:2] == [0.0, 1.0]
    empty = rel.filter(pl.col("count") == 0)
    for c in ("mean_score", "frac_positive", "frac_lo", "frac_hi"):
        assert empty[c].null_count() == empty.height, c
    assert all(v in (0.0, None) for v in empty["weight_sum"].to_list())


def test_reference_wilson_matches_scipy():
    from scipy.stats import binomtest

    for k, n, ci in [(3, 10, 0.95), (0, 7, 0.9), (7, 7, 0.99), (120, 457, 0.8)]:
        lo, hi = ref.wilson(k / n, n, ci)
        want = binomtest(k, n).proportion_ci(confidence_level=ci, method="wilson")
        np.testing.assert_allclose([lo, hi], [want.low, want.high], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# 2./3. binned metrics and reliability tables on randomized data
# ----------------------------------------------------------------------------------------------


def _coprime_totals(w, g, n_bins):
    """Bump integer weights until every slice's total weight (and the overall one) is coprime
    with n_bins (a prime >= 3, or 1). Then no cumulative weight equals q_k * W exactly, and the
    weighted inverted-CDF quantile has no tie that floating-point rounding could break either
    way (the doc allows "rounding of the cumulative weights" there)."""
    if n_bins == 1:
        return w
    labels = list(np.unique(g))
    for lab in labels[:-1]:
        first = np.flatnonzero(g == lab)[0]
        while math.gcd(int(w[g == lab].sum()), n_bins) != 1:
            w[first] += 1
    last = np.flatnonzero(g == labels[-1])[0]
    while (math.gcd(int(w[g == labels[-1]].sum()), n_bins) != 1
           or math.gcd(int(w.sum()), n_bins) != 1):
        w[last] += 1
    return w


def _random_case(seed, n, kind, weighted, n_bins):
    """Slices: "a" (n rows), "b" (1-3 rows), "c" (1-15 rows, a single class)."""
    rng = np.random.default_rng(seed)
    n_b, n_c = int(rng.integers(1, 4)), int(rng.integers(1, 16))
    total = n + n_b + n_c
    if kind == "continuous":
        s = rng.random(total)
        s[rng.integers(0, total, 3)] = 0.0
        s[rng.integers(0, total, 3)] = 1.0
    elif kind == "edges":  # on the uniform edges, 0.0 and 1.0 included
        s = rng.choice(ref.uniform_edges(n_bins), total)
    else:  # "few": 1 to 3 distinct values, heavy ties, also on the quantile edges
        values = rng.choice([0.0, 0.05, 0.2, 0.5, 0.7, 0.95, 1.0], int(rng.integers(1, 4)),
                            replace=False)
        s = rng.choice(values, total)
    y = (rng.random(total) < 0.1 + 0.8 * s).astype(np.int8)
    g = np.array(["a"] * n + ["b"] * n_b + ["c"] * n_c)
    y[g == "c"] = rng.integers(0, 2)
    order = rng.permutation(total)
    s, y, g = s[order], y[order], g[order]
    w = None
    if weighted:
        w = _coprime_totals(rng.integers(1, 5, total).astype(np.float64), g, n_bins)
    data = {"y": y, "p": s, "g": g}
    if w is not None:
        data["w"] = w
    return data, s, y, w, g


def _check_reliability(rel, s, y, w, g, n_bins, strategy, ci):
    assert rel.columns == RELIABILITY_COLUMNS
    masks = _masks(g)
    assert set(rel["slice"].unique().to_list()) == set(masks)
    assert rel.height == n_bins * len(masks)
    assert rel["slice"][0] == "overall"
    for label, mask in masks.items():
        got = rel.filter(pl.col("slice") == label)
        what = f"{label} {strategy}"
        assert got["bin"].to_list() == list(range(n_bins)), what
        t = ref.slice_bin_table(s[mask], y[mask], _sub(w, mask), n_bins, strategy)
        assert got["count"].to_list() == t["count"].tolist(), what
        # edges bit for bit (np.linspace, np.quantile)
        assert got["lower"].to_list() == t["lower"].tolist(), what
        assert got["upper"].to_list() == t["upper"].tolist(), what
        full = t["count"] > 0
        np.testing.assert_allclose(got["weight_sum"].to_numpy()[full], t["weight_sum"][full],
                                   rtol=1e-12, err_msg=what)
        for c in ("mean_score", "frac_positive"):
            col = got[c]
            assert col.is_null().to_list() == (~full).tolist(), (what, c)
            np.testing.assert_allclose(col.to_numpy()[full], t[c][full], rtol=1e-12,
                                       atol=1e-12, err_msg=f"{what} {c}")
        n_eff = t["weight_sum"][full] ** 2 / t["w2"][full]
        wil = np.array([ref.wilson(f, n, ci) for f, n in zip(t["frac_positive"][full], n_eff,
                                                            strict=True)])
        for j, c in enumerate(("frac_lo", "frac_hi")):
            col = got[c]
            assert col.is_null().to_list() == (~full).tolist(), (what, c)
            np.testing.assert_allclose(col.to_numpy()[full], wil[:, j], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{what} {c}")


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 150),
    kind=st.sampled_from(["continuous", "edges", "few"]),
    weighted=st.booleans(),
    bins_index=st.integers(0, 5),
)
def test_binned_metrics_and_reliability_match_the_formulas(seed, n, kind, weighted,
                                                            bins_index):
    # weighted: prime bin counts (see _coprime_totals)
    n_bins = ([1, 3, 5, 7, 11, 13] if weighted else [1, 2, 5, 10, 15, 20])[bins_index]
    data, s, y, w, g = _random_case(seed, n, kind, weighted, n_bins)
    weight = "w" if weighted else None
    # With roc_auc the calibration states are read off the rank metrics' sorted order
    # instead of being built in the pass: both must give the formulas.
    for strategy, extra in (("uniform", []), ("quantile", []), ("uniform", ["roc_auc"]),
                            ("quantile", ["roc_auc"])):
        rep = assay.evaluate(data, label="y", score="p", slices=["g"], weight=weight,
                             metrics=BIN_METRICS + extra, calibration_bins=n_bins,
                             calibration_strategy=strategy)
        rows = rows_by_slice(rep)
        assert set(rows) == set(_masks(g))
        for label, mask in _masks(g).items():
            sw = _sub(w, mask)
            expected = ref.slice_metrics(s[mask], y[mask], sw, n_bins, strategy)
            row = rows[label]
            for m in BIN_METRICS:
                _assert_metric(m, row[m], expected[m], f"{label} {strategy} {m}")
            # the Murphy decomposition is exact on the bins
            t = ref.slice_bin_table(s[mask], y[mask], sw, n_bins, strategy)
            binned = ref.binned_brier(s[mask], y[mask], sw, t)
            murphy = row["brier_reliability"] - row["brier_resolution"] + row["brier_uncertainty"]
            assert murphy == pytest.approx(binned, rel=0, abs=1e-12), (label, strategy)
        if extra:
            continue
        ci = 0.95 if strategy == "uniform" else 0.9
        rel = assay.reliability(data, label="y", score="p", n_bins=n_bins, strategy=strategy,
                                slices=["g"], weight=weight, ci=ci)
        _check_reliability(rel, s, y, w, g, n_bins, strategy, ci)


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 150),
    kind=st.sampled_from(["continuous", "edges", "few"]),
    weighted=st.booleans(),
    n_bins=st.sampled_from([1, 3, 5, 7, 13]),
    strategy=st.sampled_from(["uniform", "quantile"]),
)
def test_reference_murphy_decomposition_and_bins_are_consistent(seed, n, kind, weighted, n_bins,
                                                                strategy):
    _, s, y, w, g = _random_case(seed, n, kind, weighted, n_bins)
    for _label, mask in _masks(g).items():
        sw = _sub(w, mask)
        t = ref.slice_bin_table(s[mask], y[mask], sw, n_bins, strategy)
        assert t["count"].sum() == mask.sum()
        assert ((t["ids"] >= 0) & (t["ids"] < n_bins)).all()
        rel, res, unc = ref.brier_decomposition(t)
        binned = ref.binned_brier(s[mask], y[mask], sw, t)
        assert rel - res + unc == pytest.approx(binned, rel=0, abs=1e-12)
        assert ref.rmsce(t) ** 2 == pytest.approx(rel, rel=1e-12, abs=1e-15)
        assert 0 <= ref.ece_debiased(t) and ref.ece(t) <= ref.mce(t) + 1e-15
        if strategy == "quantile":
            # a score tied with an edge is in the lower bin: every bin's scores lie in its edges
            for b in np.flatnonzero(t["count"]):
                inside = s[mask][t["ids"] == b]
                assert (inside >= t["lower"][b]).all() and (inside <= t["upper"][b]).all()
                if b > 0:
                    assert (inside > t["lower"][b]).all()


def test_ace_is_ece_on_quantile_bins_whatever_the_strategy():
    rng = np.random.default_rng(11)
    n = 3_000
    p = rng.beta(2, 3, n)
    y = (rng.random(n) < _sigmoid(1.8 * _logit(p))).astype(np.int8)  # gaps of both signs
    g = rng.choice(["a", "b", "c"], n)
    data = {"y": y, "p": p, "g": g}
    kw = dict(label="y", score="p", slices=["g"], metrics=["ece", "ace"], calibration_bins=12)
    uni = rows_by_slice(assay.evaluate(data, calibration_strategy="uniform", **kw))
    qua = rows_by_slice(assay.evaluate(data, calibration_strategy="quantile", **kw))
    for label, mask in _masks(g).items():
        want = ref.ece(ref.slice_bin_table(p[mask], y[mask], None, 12, "quantile"))
        assert_value(uni[label]["ace"], want, f"{label} ace (uniform)")
        assert_value(qua[label]["ace"], want, f"{label} ace (quantile)")
        assert_value(qua[label]["ece"], want, f"{label} ece (quantile)")
        # the two bin rules differ (with gaps of one sign, every binning gives |mean(y - s)|)
        assert uni[label]["ece"] != pytest.approx(want, rel=1e-8)


def test_report_columns_are_float64():
    rng = np.random.default_rng(2)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(np.int8)
    rep = assay.evaluate({"y": y, "p": p, "g": rng.choice(["a", "b"], 500)}, label="y",
                         score="p", slices=["g"], metrics=CAL_METRICS)
    assert rep.table["slice"].to_list() == ["overall", "g=a", "g=b"]
    for m in CAL_METRICS:
        assert rep.table[m].dtype == pl.Float64, m
        assert rep.table[m].null_count() == 0, m


# ----------------------------------------------------------------------------------------------
# 4. calibration slope and intercept
# ----------------------------------------------------------------------------------------------


def _miscalibrated(n=20_000, seed=0, weighted=False):
    """True probability p; the model says s = sigmoid(1.7 logit(p) - 0.4), so the recalibration
    fit is logit(p) = (logit(s) + 0.4) / 1.7: slope 1/1.7, intercept 0.4/1.7. Slice "c" holds
    only positives."""
    rng = np.random.default_rng(seed)
    p = _sigmoid(rng.normal(-0.3, 1.5, n))
    s = _sigmoid(1.7 * _logit(p) - 0.4)
    y = (rng.random(n) < p).astype(np.int8)
    g = rng.choice(["a", "b"], n)
    g[:40] = "c"
    y[:40] = 1
    data = {"y": y, "p": s, "g": g}
    w = None
    if weighted:
        w = rng.uniform(0.5, 2.0, n)
        data["w"] = w
    return data, s, y, w, g


@pytest.mark.parametrize("weighted", [False, True])
def test_reference_logistic_fit_matches_sklearn(weighted):
    _, s, y, w, _ = _miscalibrated(seed=1, weighted=weighted)
    b, a = ref.calibration_slope_intercept(s, y, w)
    z = ref.clamped_logit(s)[:, None]
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(z, y, sample_weight=w)
    assert b == pytest.approx(sk.coef_[0, 0], abs=1e-8)
    assert a == pytest.approx(sk.intercept_[0], abs=1e-8)
    a2, b2 = ref.logistic_fit_bfgs(s, y, w)
    assert (a2, b2) == pytest.approx((a, b), abs=1e-9)
    assert b == pytest.approx(1 / 1.7, abs=0.05) and a == pytest.approx(0.4 / 1.7, abs=0.1)
    # no finite fit: one class, or classes separated by the score (ties included)
    assert ref.calibration_slope_intercept(s[:40], y[:40]) == (None, None)
    assert ref.calibration_slope_intercept([0.1, 0.2, 0.2, 0.9], [0, 0, 1, 1]) == (None, None)
    assert ref.calibration_slope_intercept([0.1, 0.3, 0.2, 0.9], [0, 0, 1, 1]) != (None, None)


@pytest.mark.parametrize("weighted", [False, True])
def test_calibration_slope_and_intercept_match_a_fit_on_the_rows(weighted):
    data, s, y, w, g = _miscalibrated(seed=1, weighted=weighted)
    rep = assay.evaluate(data, label="y", score="p", slices=["g"],
                         weight="w" if weighted else None,
                         metrics=["calibration_slope", "calibration_intercept"])
    rows = rows_by_slice(rep)
    for label, mask in _masks(g).items():
        b, a = ref.calibration_slope_intercept(s[mask], y[mask], _sub(w, mask))
        got_b, got_a = rows[label]["calibration_slope"], rows[label]["calibration_intercept"]
        if label == "g=c":  # one class: no finite fit
            assert b is None and got_b is None and got_a is None
            for m in ("calibration_slope", "calibration_intercept"):
                r = _long_row(rep, label, m)
                assert r["value"] is None and r["note"], (label, m)
            continue
        assert got_b == pytest.approx(b, abs=1e-6), label
        assert got_a == pytest.approx(a, abs=1e-6), label
    assert rows["g=a"]["calibration_slope"] == pytest.approx(1 / 1.7, abs=0.06)


def test_calibration_slope_wald_interval_matches_the_information_matrix():
    data, s, y, _, g = _miscalibrated(n=5_000, seed=4)
    rep = assay.evaluate(data, label="y", score="p", slices=["g"], ci=0.9,
                         metrics=["calibration_slope", "calibration_intercept"],
                         ci_method="analytic")
    for label in ("overall", "g=a", "g=b"):
        mask = _masks(g)[label]
        want = ref.calibration_wald(s[mask], y[mask], None, ci=0.9)
        for m in ("calibration_slope", "calibration_intercept"):
            r = _long_row(rep, label, m)
            assert (r["lo"], r["hi"]) == pytest.approx(want[m], abs=1e-6), (label, m)


# ----------------------------------------------------------------------------------------------
# 5. SmoothECE
# ----------------------------------------------------------------------------------------------


def _smooth_data(name):
    n = 3_000
    rng = np.random.default_rng(len(name))
    w = None
    if name == "beta_calibrated":
        s = rng.beta(2, 5, n)
        y = rng.random(n) < s
    elif name == "underconfident":  # scores within [0.01, 0.99]
        z = rng.normal(0, 3, n)
        s = _sigmoid(0.5 * z + 0.3)
        y = rng.random(n) < _sigmoid(z)
    elif name == "overconfident":  # much mass within 1e-3 of 0 and 1: the reflections matter
        z = rng.normal(0, 1.5, n)
        s = _sigmoid(2.5 * z)
        y = rng.random(n) < _sigmoid(z)
    elif name == "shifted_with_exact_ends":  # many scores exactly 1.0, some exactly 0.0
        p = rng.random(n)
        s = np.clip(p + 0.1, 0, 1)
        s[:150] = 0.0
        y = rng.random(n) < p
    elif name == "weighted":
        s = rng.beta(3, 2, n)
        y = rng.random(n) < _sigmoid(1.8 * _logit(s))
        w = rng.uniform(0.2, 3.0, n)
    else:
        raise AssertionError(name)
    return s, y.astype(np.int8), w


# (With residuals of one sign everywhere, smECE_sigma = |mean residual| for every sigma and
# every discretization: each case above has miscalibration of both signs.)
@functools.cache
def _smooth_reference(name):
    """(scores, labels, weights, smooth_ece, sigma*), computed once per session (seconds)."""
    s, y, w = _smooth_data(name)
    value, sigma = ref.smooth_ece(s, y, w, return_sigma=True)
    return s, y, w, value, sigma


def test_reference_smooth_ece_kernel_and_fixed_point():
    t = np.linspace(0, 1, 4001)
    for sigma in (0.003, 0.05, 0.4, 1.0):
        k = ref.reflected_kernel(t, np.array([0.0, 0.3, 0.999, 1.0]), sigma)
        np.testing.assert_allclose(np.trapezoid(k, t, axis=0), 1.0, rtol=2e-6)
    # the mirror image of a row at 0 coincides with it: K(t, 0) = 2 phi(t)
    k0 = ref.reflected_kernel(t[:50], np.array([0.0]), 0.05)[:, 0]
    phi = np.exp(-0.5 * (t[:50] / 0.05) ** 2) / (0.05 * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(k0, 2 * phi, rtol=1e-12)
    s, y, _, value, sigma = _smooth_reference("beta_calibrated")
    assert value == pytest.approx(sigma, abs=1e-9)  # at the fixed point
    assert ref.smooth_ece_sigma(s, y, None, sigma / 2) > value > ref.smooth_ece_sigma(
        s, y, None, 2 * sigma)
    # all rows equally wrong the same way: smECE_sigma = mean |r| for every sigma
    assert ref.smooth_ece_sigma(np.full(10, 0.3), np.zeros(10), None, 0.07) == pytest.approx(0.3)


@pytest.mark.parametrize("name", ["beta_calibrated", "underconfident"])
def test_reference_smooth_ece_matches_relplot(name, monkeypatch):
    """relplot 1.0.3 on data away from 0 and 1 (relplot's grid counts a row within a grid cell
    of 0 or 1 only once where the reflected kernel counts it and its mirror image twice)."""
    relplot = pytest.importorskip("relplot")
    monkeypatch.setattr(relplot.config, "use_logit_scaling", False)  # reflected Gaussian kernel
    s, y, _, value, sigma = _smooth_reference(name)
    rel_value, rel_sigma = relplot.smECE(s.astype(np.float64), y.astype(np.float64),
                                         return_width=True)
    # relplot bisects [0, 1] ten times and returns the bracket's upper end
    assert rel_sigma - 2**-10 - 2e-4 <= sigma <= rel_sigma + 2e-4
    # at relplot's own sigma, only its discretization differs
    at_rel_sigma = ref.smooth_ece_sigma(s, y, None, rel_sigma)
    assert relplot.smECE_sigma(s, y, rel_sigma) == pytest.approx(at_rel_sigma, rel=5e-3)
    assert rel_value == pytest.approx(value, rel=0.05)


@pytest.mark.parametrize(
    "name",
    ["beta_calibrated", "underconfident", "overconfident", "shifted_with_exact_ends", "weighted"],
)
def test_smooth_ece_matches_the_brute_force_formula(name):
    s, y, w, value, sigma = _smooth_reference(name)
    assert sigma >= 0.005  # where the doc promises < 1e-3 relative
    data = {"y": y, "p": s}
    if w is not None:
        data["w"] = w
    rep = assay.evaluate(data, label="y", score="p", metrics=["smooth_ece"],
                         weight=None if w is None else "w")
    got = rep.table["smooth_ece"][0]
    assert abs(got - value) <= max(2e-3 * value, 1e-4), (name, got, value)


# ----------------------------------------------------------------------------------------------
# 6. debiased ECE on a perfectly calibrated model
# ----------------------------------------------------------------------------------------------


def _perfect(seed, n=500):
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return s, (rng.random(n) < s).astype(np.int8)


def test_reference_ece_debiased_removes_the_bias_of_ece():
    e, d = [], []
    for seed in range(20):
        s, y = _perfect(seed)
        t = ref.slice_bin_table(s, y, None, 15, "uniform")
        e.append(ref.ece(t))
        d.append(ref.ece_debiased(t))
    assert np.mean(e) > 0.03
    assert np.mean(d) < 0.5 * np.mean(e)


def test_ece_debiased_removes_the_bias_of_ece():
    e, d = [], []
    for seed in range(20):
        s, y = _perfect(seed)
        t = ref.slice_bin_table(s, y, None, 15, "uniform")
        row = assay.evaluate({"y": y, "p": s}, label="y", score="p",
                             metrics=["ece", "ece_debiased"]).table.row(0, named=True)
        _assert_metric("ece", row["ece"], ref.ece(t), f"seed {seed}")
        _assert_metric("ece_debiased", row["ece_debiased"], ref.ece_debiased(t), f"seed {seed}")
        e.append(row["ece"])
        d.append(row["ece_debiased"])
    assert np.mean(e) > 0.03  # plain ece is biased upward, of order sqrt(n_bins / n)
    assert np.mean(d) < 0.5 * np.mean(e)


# ----------------------------------------------------------------------------------------------
# 7. the seed example: calibrated, over- and under-confident models of one task
# ----------------------------------------------------------------------------------------------


@functools.cache
def _three_models():
    """One synthetic task; a logistic regression fitted on half of it is (nearly) calibrated on
    the other half; scaling its logit by 3 makes it over-confident, by 0.3 under-confident."""
    rng = np.random.default_rng(42)
    n = 20_000
    x = rng.normal(size=(n, 4))
    y = (rng.random(n) < _sigmoid(x @ np.array([1.0, -0.8, 0.5, 0.0]) - 0.5)).astype(np.int8)
    model = LogisticRegression().fit(x[: n // 2], y[: n // 2])
    z = model.decision_function(x[n // 2 :])
    y_test = y[n // 2 :]
    models = {"calibrated": _sigmoid(z), "over": _sigmoid(3 * z), "under": _sigmoid(0.3 * z)}
    frame = pl.DataFrame({
        "model": np.repeat(list(models), len(z)),
        "p": np.concatenate(list(models.values())),
        "y": np.tile(y_test, len(models)),
    })
    return models, y_test, frame


def test_reference_seed_example_orders_the_models():
    models, y, _ = _three_models()
    ece = {k: ref.ece(ref.slice_bin_table(p, y, None, 15, "uniform")) for k, p in models.items()}
    slope = {k: ref.calibration_slope_intercept(p, y)[0] for k, p in models.items()}
    assert ece["calibrated"] < 0.5 * min(ece["over"], ece["under"])
    assert slope["over"] < 1 < slope["under"]
    assert slope["calibrated"] == pytest.approx(1, abs=0.1)
    assert slope["over"] == pytest.approx(slope["calibrated"] / 3, rel=1e-6)


def test_seed_example_orders_the_models():
    models, y, frame = _three_models()
    rep = assay.evaluate(frame, label="y", score="p", slices=["model"],
                         metrics=["ece", "ace", "smooth_ece", "calibration_slope",
                                  "calibration_intercept", "brier_reliability"])
    rows = rows_by_slice(rep)
    r = {k: rows[f"model={k}"] for k in models}
    for key in ("ece", "ace", "smooth_ece", "brier_reliability"):
        assert r["calibrated"][key] < min(r["over"][key], r["under"][key]), key
    assert r["over"]["calibration_slope"] < 1 < r["under"]["calibration_slope"]
    assert r["calibrated"]["calibration_slope"] == pytest.approx(1, abs=0.1)
    for k, p in models.items():
        b, a = ref.calibration_slope_intercept(p, y)
        assert r[k]["calibration_slope"] == pytest.approx(b, abs=1e-6), k
        assert r[k]["calibration_intercept"] == pytest.approx(a, abs=1e-6), k
        assert_value(r[k]["ece"], ref.ece(ref.slice_bin_table(p, y, None, 15, "uniform")), k)


# ----------------------------------------------------------------------------------------------
# 8. bad input
# ----------------------------------------------------------------------------------------------


def _small(n=200, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return {"y": (rng.random(n) < p).astype(np.int8), "p": p}


def test_bad_calibration_arguments_raise_typed_errors():
    d = _small()
    ev = functools.partial(assay.evaluate, d, label="y", score="p", metrics=["ece"])
    rl = functools.partial(assay.reliability, d, label="y", score="p")
    cases = [
        (lambda: ev(calibration_bins=0), "calibration_bins"),
        (lambda: ev(calibration_bins=-3), "calibration_bins"),
        (lambda: ev(calibration_strategy="bogus"), "calibration_strategy"),
        (lambda: rl(n_bins=0), "n_bins"),
        (lambda: rl(strategy="bogus"), "strategy"),
    ]
    for call, word in cases:
        with pytest.raises(InvalidArgumentError, match=word) as info:
            call()
        assert isinstance(info.value, AssayError)


@pytest.mark.parametrize("bad", [1.5, -0.25])
@pytest.mark.parametrize("metric", ["ece", "ace", "smooth_ece", "calibration_slope", "oe_ratio",
                                    "brier_reliability"])
def test_scores_outside_0_1_are_invalid_for_calibration(bad, metric):
    d = _small()
    d["p"][17] = bad
    with pytest.raises(InvalidInputError, match="p") as info:
        assay.evaluate(d, label="y", score="p", metrics=["accuracy", metric])
    assert info.value.column == "p"
    with pytest.raises(InvalidInputError, match="p") as info:
        assay.reliability(d, label="y", score="p")
    assert info.value.column == "p"
    # without a calibration metric such scores are fine
    assay.evaluate(d, label="y", score="p", metrics=["accuracy", "roc_auc"])


# ----------------------------------------------------------------------------------------------
# 9. determinism: threads and batches
# ----------------------------------------------------------------------------------------------


def test_threads_and_batches_do_not_change_the_results():
    rng = np.random.default_rng(9)
    n = 20_000
    p = rng.beta(2, 3, n)
    t = pa.table({
        "y": (rng.random(n) < p**1.2).astype(np.int8),
        "p": np.round(p, 3),  # ties
        "g": rng.choice(["a", "b", "c"], n),
        "w": rng.uniform(0.5, 2.0, n),
    })
    batched = pa.Table.from_batches(t.to_batches(max_chunksize=97))
    assert batched.num_rows == n and len(batched.to_batches()) > 100
    for weight in (None, "w"):
        for strategy in ("uniform", "quantile"):
            kw = dict(label="y", score="p", slices=["g"], weight=weight)
            for extra in ([], ["roc_auc"]):  # built in the pass / from the sorted order
                ev = dict(metrics=CAL_METRICS + extra, calibration_bins=10,
                          calibration_strategy=strategy)
                base = assay.evaluate(t, n_threads=1, **kw, **ev).table
                # the same bits for any thread count; to 1e-12 for any batch split
                assert_tables_close(assay.evaluate(t, n_threads=2, **kw, **ev).table, base,
                                    rtol=0, atol=0)
                assert_tables_close(assay.evaluate(batched, n_threads=2, **kw, **ev).table, base)
            rl = dict(n_bins=10, strategy=strategy)
            base = assay.reliability(t, n_threads=1, **kw, **rl)
            assert_tables_close(assay.reliability(t, n_threads=2, **kw, **rl), base)
            assert_tables_close(assay.reliability(batched, n_threads=2, **kw, **rl), base)


@pytest.mark.parametrize("packed", [False, True])
def test_quantile_bins_of_scores_packed_in_a_narrow_range(packed):
    """Quantile edges come from a histogram of the probabilities counted in the pass; scores
    crowded into one of its buckets take the route over their own range. Both are exact."""
    rng = np.random.default_rng(5)
    n = 100_000
    p = rng.random(n)
    if packed:
        p = 0.5 + 1e-6 * p
        p[:3] = [0.0, 0.2, 1.0]
    y = (rng.random(n) < p).astype(np.int8)
    rel = assay.reliability({"y": y, "p": p}, label="y", score="p", n_bins=10,
                            strategy="quantile")
    t = ref.slice_bin_table(p, y, None, 10, "quantile")
    assert rel["lower"].to_list() == t["lower"].tolist()
    assert rel["upper"].to_list() == t["upper"].tolist()
    assert rel["count"].to_list() == t["count"].tolist()
    np.testing.assert_allclose(rel["mean_score"].to_numpy(), t["mean_score"], rtol=1e-12)
    np.testing.assert_allclose(rel["frac_positive"].to_numpy(), t["frac_positive"], rtol=1e-12)


@pytest.mark.parametrize("packed", [False, True])
def test_quantile_bins_read_twice_from_memory_equal_the_kept_rows(packed):
    """An in-memory table's quantile bins come from the pass's histogram and a second read of
    its batches for the rows of the quantiles' buckets; a stream keeps its rows instead. Both
    give the same bits, with rows dropped for null or NaN labels and scores, and scores
    crowded into one bucket (every row is then read again)."""
    rng = np.random.default_rng(41 + packed)
    n = 150_000
    p = rng.random(n)
    if packed:
        p = 0.25 + 1e-7 * p
        p[:2] = [0.0, 1.0]
    y = (rng.random(n) < p).astype(np.int8)
    score = pa.array(p, mask=rng.random(n) < 0.01)
    label = pa.array(y, mask=rng.random(n) < 0.01)
    p2 = np.clip(p + rng.normal(0, 0.05, n), 0, 1)
    p2[rng.random(n) < 0.01] = np.nan
    t = pa.table({"y": label, "p": score, "q": p2})
    stream = lambda: t.to_reader(max_chunksize=1 << 20)  # noqa: E731
    kw = dict(label="y", score="p", nan_policy="drop")
    rl = dict(n_bins=10, strategy="quantile")
    memory = assay.reliability(t, **kw, **rl)
    assert memory.equals(assay.reliability(stream(), **kw, **rl))
    assert memory["count"].sum() < n  # rows were dropped
    ev = dict(metrics=CAL_METRICS, calibration_bins=7, calibration_strategy="quantile")
    assert_tables_close(assay.evaluate(t, **kw, **ev).table,
                        assay.evaluate(stream(), **kw, **ev).table, rtol=0, atol=0)
    # Two models: a row missing either score is dropped for both.
    cmp = dict(scores=["p", "q"], label="y", nan_policy="drop", metrics=["ace", "ece"],
               calibration_strategy="quantile")
    a, b = assay.compare(t, **cmp), assay.compare(stream(), **cmp)
    for m in ("p", "q"):
        assert_tables_close(a.reports[m].table, b.reports[m].table, rtol=0, atol=0)
    # Against the formula on the rows the pass keeps.
    keep = ~(score.is_null().to_numpy(zero_copy_only=False)
             | label.is_null().to_numpy(zero_copy_only=False) | np.isnan(p2))
    ref_t = ref.slice_bin_table(p[keep], y[keep], None, 10, "quantile")
    one = assay.reliability(t.filter(pa.array(keep)), label="y", score="p", **rl)
    assert one["lower"].to_list() == ref_t["lower"].tolist()
    assert one["count"].to_list() == ref_t["count"].tolist()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("slices", [[], ["g"], ["g", "h"]])
def test_calibration_from_the_sorted_order_equals_the_pass(weighted, slices):
    """Jobs with exact rank metrics read their calibration states off the sorted rows; the
    values equal those built in the pass (other metrics, or auc="binned") to rounding."""
    rng = np.random.default_rng(31 + weighted)
    n = 30_000
    p = rng.beta(2, 5, n)
    p[: n // 3] = np.round(p[: n // 3], 2)  # ties
    p[:50] = 0.0
    p[50:100] = 1.0
    g = rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.1999, 0.0001])
    y = (rng.random(n) < p).astype(np.int8)
    y[g == "d"] = 1  # a one-class slice
    data = {"y": y, "p": p, "g": g, "h": rng.choice(["u", "v"], n), "w": rng.uniform(0.2, 3, n)}
    weight = "w" if weighted else None
    for strategy in ("uniform", "quantile"):
        kw = dict(label="y", score="p", slices=slices, weight=weight, calibration_bins=12,
                  calibration_strategy=strategy)
        sorted_ = assay.evaluate(data, metrics=[*CAL_METRICS, "roc_auc"], **kw).table
        passed = assay.evaluate(data, metrics=[*CAL_METRICS, "roc_auc"], auc="binned", **kw)
        assert_tables_close(sorted_.drop("roc_auc"), passed.table.drop("roc_auc"), rtol=1e-10)
        alone = assay.evaluate(data, metrics=CAL_METRICS, **kw).table
        assert_tables_close(sorted_.drop("roc_auc"), alone, rtol=1e-10)


# ----------------------------------------------------------------------------------------------
# 10. bootstrap intervals
# ----------------------------------------------------------------------------------------------


def test_bootstrap_intervals_of_calibration_metrics():
    rng = np.random.default_rng(5)
    n = 6_000
    p = rng.beta(2, 3, n)
    data = {"y": (rng.random(n) < p**1.3).astype(np.int8), "p": p,
            "g": rng.choice(["a", "b"], n)}
    rep = assay.evaluate(data, label="y", score="p", slices=["g"], bootstrap=200, seed=0,
                         calibration_strategy="uniform",
                         metrics=["ece", "rmsce", "brier_reliability", "oe_ratio",
                                  "smooth_ece", "ace"])
    long = rep.long()
    for label in ("overall", "g=a", "g=b"):
        for m in ("ece", "rmsce", "brier_reliability", "oe_ratio"):
            r = _long_row(rep, label, m)
            assert r["lo"] is not None and r["hi"] is not None, (label, m)
            assert math.isfinite(r["lo"]) and math.isfinite(r["hi"]), (label, m)
            assert r["lo"] <= r["value"] <= r["hi"], (label, m)
        for m in ("smooth_ece", "ace"):
            r = _long_row(rep, label, m)
            assert r["value"] is not None, (label, m)
            assert r["lo"] is None and r["hi"] is None, (label, m)
            assert r["note"], (label, m)
    assert set(long["method"].drop_nulls().to_list()) <= {"percentile"}


def test_calibration_fit_of_hard_scores_and_separated_classes():
    # Hard 0/1 scores (trees, kNN): the fit lives on two logits and is finite.
    rng = np.random.default_rng(17)
    y = rng.integers(0, 2, 10_000)
    p = np.where(rng.random(10_000) < 0.8, y, 1 - y).astype(float)
    rep = assay.evaluate({"y": y, "p": p}, label="y", score="p",
                         metrics=["calibration_slope", "calibration_intercept"])
    # Closed form: sigmoid(a +/- b L) = the fraction of positives at s = 1 / s = 0, with
    # L = logit(1 - 2^-52) (scores are clamped before the logit).
    eps = 2.0**-52
    big = math.log((1 - eps) / eps)
    f1, f0 = y[p == 1].mean(), y[p == 0].mean()
    lg = lambda f: math.log(f / (1 - f))  # noqa: E731
    b, a = (lg(f1) - lg(f0)) / (2 * big), (lg(f1) + lg(f0)) / 2
    assert rep.table["calibration_slope"][0] == pytest.approx(b, rel=1e-9)
    assert rep.table["calibration_intercept"][0] == pytest.approx(a, abs=1e-9)
    # Classes the score separates have no finite fit: null, with the reason.
    sep = assay.evaluate({"y": [0, 0, 1, 1], "p": [0.1, 0.2, 0.8, 0.9]}, label="y",
                         score="p", metrics=["calibration_slope"])
    assert sep.table["calibration_slope"][0] is None
    assert "separates" in sep.long()["note"][0]
