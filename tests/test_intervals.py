"""Confidence intervals: shape of the results, determinism, references and coverage."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats as st

import assay
from assay.errors import ColumnNotFoundError, InvalidArgumentError, InvalidInputError, SchemaError

METRICS = list(assay.METRICS)


def _binormal(n, seed, pi=0.3, d=1.0):
    """Positives N(d, 1), negatives N(0, 1): true ROC-AUC = Phi(d / sqrt 2)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pi).astype(np.int8)
    s = rng.normal(0.0, 1.0, n) + d * y
    return {"y": y, "s": s}


def _probabilities(n=5_000, seed=0, weighted=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    p = 1 / (1 + np.exp(-(rng.normal(0, 1.2, n) + 1.5 * y - 1)))
    d = {"y": y, "p": p, "g": rng.choice(["a", "b", "c"], n), "id": rng.permutation(n)}
    if weighted:
        d["w"] = rng.uniform(0.5, 2.0, n)
    return d


def test_table_gains_bounds_and_long_gains_interval_columns():
    rep = assay.evaluate(_probabilities(), label="y", score="p", slices=["g"], bootstrap=200)
    for m in METRICS:
        assert {m, f"{m}_lo", f"{m}_hi"} <= set(rep.table.columns)
        assert f"{m}_se" not in rep.table.columns
        lo, v, hi = (rep.table[c].to_numpy() for c in (f"{m}_lo", m, f"{m}_hi"))
        assert np.all(lo <= hi)
        assert np.all((lo <= v) & (v <= hi)), m  # large slices: the estimate is inside
    long = rep.long()
    assert long.columns == ["slice", "metric", "value", "lo", "hi", "se", "method", "note"]
    assert long.height == 4 * len(METRICS)
    assert set(long["method"].to_list()) == {"percentile"}
    assert long["se"].null_count() == 0 and (long["se"] > 0).all()
    assert rep.ci_method == "percentile"
    # Without intervals nothing changes.
    plain = assay.evaluate(_probabilities(), label="y", score="p", slices=["g"])
    assert plain.long().columns == ["slice", "metric", "value", "note"]
    assert plain.table.equals(rep.table.select(plain.table.columns))


@pytest.mark.parametrize("method", ["percentile", "basic", "bca"])
def test_bit_identical_across_threads_and_equal_across_batches(method):
    d = _probabilities(20_000, weighted=True)
    table = pa.table(d)
    kw = dict(label="y", score="p", weight="w", slices=["g"], bootstrap=100, ci_method=method,
              seed=3)
    one = assay.evaluate(table, n_threads=1, **kw).to_arrow()
    two = assay.evaluate(table, n_threads=2, **kw).to_arrow()
    assert one.equals(two)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=20))
    split = assay.evaluate(reader, n_threads=2, **kw).to_arrow()
    for name in one.column_names:
        a, b = one.column(name).to_pylist(), split.column(name).to_pylist()
        if isinstance(a[0], float):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            assert a == b


def test_row_id_makes_replicates_follow_the_rows():
    d = _probabilities(8_000)
    order = np.random.default_rng(1).permutation(8_000)
    shuffled = {k: v[order] for k, v in d.items()}
    kw = dict(label="y", score="p", metrics=["accuracy", "roc_auc", "log_loss"],
              bootstrap=100, row_id="id")
    a = assay.evaluate(d, **kw).table
    b = assay.evaluate(shuffled, **kw).table
    assert a.select("slice", "spec").equals(b.select("slice", "spec"))
    for c in a.columns[2:]:
        np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-9, err_msg=c)
    # Without row ids the replicates follow positions, so the shuffle changes the bounds.
    c = assay.evaluate(shuffled, label="y", score="p", metrics=["accuracy"], bootstrap=100)
    assert c.table["accuracy_lo"][0] != a["accuracy_lo"][0]


def test_seed_changes_the_replicates_and_only_them():
    d = _probabilities(3_000)
    a = assay.evaluate(d, label="y", score="p", metrics=["accuracy"], bootstrap=100, seed=1)
    b = assay.evaluate(d, label="y", score="p", metrics=["accuracy"], bootstrap=100, seed=2)
    assert a.table["accuracy"][0] == b.table["accuracy"][0]
    assert a.table["accuracy_lo"][0] != b.table["accuracy_lo"][0]


def test_percentile_agrees_with_scipy_bootstrap_on_a_mean():
    rng = np.random.default_rng(7)
    y = (rng.random(4_000) < 0.2).astype(np.int8)
    d = {"y": y, "p": rng.random(4_000)}
    rep = assay.evaluate(d, label="y", score="p", metrics=["base_rate"], bootstrap=4_000,
                         ci=0.9, seed=11)
    ref = st.bootstrap((y.astype(float),), np.mean, n_resamples=4_000, confidence_level=0.9,
                       method="percentile", random_state=np.random.default_rng(0))
    se = math.sqrt(0.2 * 0.8 / 4_000)
    # Monte Carlo error of a 5% quantile from 4000 replicates is about 0.03 se.
    assert abs(rep.table["base_rate_lo"][0] - ref.confidence_interval.low) < 0.1 * se
    assert abs(rep.table["base_rate_hi"][0] - ref.confidence_interval.high) < 0.1 * se
    long = rep.long()
    assert abs(long["se"][0] - ref.standard_error) < 0.05 * se


def test_bca_agrees_with_scipy_bca_on_a_skewed_proportion():
    # A rare outcome makes the bootstrap distribution skewed, so bias correction and
    # acceleration (here from the influence values x - p) matter.
    # (Not rarer: scipy's multinomial replicates are multiples of 1/n, ours are continuous, and
    # the quantiles of the two differ by up to one step 1/n.)
    rng = np.random.default_rng(8)
    y = (rng.random(3_000) < 0.03).astype(np.int8)
    d = {"y": y, "p": rng.random(3_000)}
    rep = assay.evaluate(d, label="y", score="p", metrics=["base_rate"], bootstrap=4_000,
                         ci=0.9, ci_method="bca", seed=2)
    ref = st.bootstrap((y.astype(float),), np.mean, n_resamples=4_000, confidence_level=0.9,
                       method="BCa", random_state=np.random.default_rng(0))
    se = math.sqrt(0.03 * 0.97 / 3_000)
    assert abs(rep.table["base_rate_lo"][0] - ref.confidence_interval.low) < 0.15 * se
    assert abs(rep.table["base_rate_hi"][0] - ref.confidence_interval.high) < 0.15 * se
    # BCa moves the interval right of the percentile one for a right-skewed statistic.
    pct = assay.evaluate(d, label="y", score="p", metrics=["base_rate"], bootstrap=4_000,
                         ci=0.9, seed=2)
    assert rep.table["base_rate_hi"][0] > pct.table["base_rate_hi"][0]


def test_bca_of_f1_agrees_with_scipy_bca():
    # f1 is a ratio of confusion cells: its acceleration comes from the gradient influence.
    rng = np.random.default_rng(12)
    n = 1_500
    y = (rng.random(n) < 0.15).astype(np.int8)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    pred = (p >= 0.5).astype(np.int8)

    def f1(yy, pp):
        tp = np.sum((yy == 1) & (pp == 1))
        return 2 * tp / (2 * tp + np.sum((yy == 0) & (pp == 1)) + np.sum((yy == 1) & (pp == 0)))

    rep = assay.evaluate({"y": y, "p": p}, label="y", score="p", metrics=["f1"], ci=0.9,
                         bootstrap=3_000, ci_method="bca", seed=5)
    ref = st.bootstrap((y, pred), f1, paired=True, vectorized=False, n_resamples=3_000,
                       confidence_level=0.9, method="BCa", random_state=np.random.default_rng(1))
    se = ref.standard_error
    assert abs(rep.table["f1_lo"][0] - ref.confidence_interval.low) < 0.15 * se
    assert abs(rep.table["f1_hi"][0] - ref.confidence_interval.high) < 0.15 * se


def test_bca_does_not_depend_on_the_scale_of_the_weights():
    d = _probabilities(4_000, weighted=True)
    kw = dict(label="y", score="p", weight="w", metrics=["accuracy", "f1", "roc_auc"],
              bootstrap=200, ci_method="bca", seed=1)
    a = assay.evaluate(d, **kw).table
    d2 = dict(d, w=d["w"] * 1e-4)
    b = assay.evaluate(d2, **kw).table
    for m in ["accuracy", "f1", "roc_auc"]:
        for c in (f"{m}_lo", f"{m}_hi"):
            assert a[c][0] == pytest.approx(b[c][0], rel=1e-9, abs=1e-12), c


def test_bootstrap_se_of_auc_agrees_with_delong():
    d = _binormal(100_000, seed=5)
    boot = assay.evaluate(d, label="y", score="s", metrics=["roc_auc"], bootstrap=400).long()
    delong = assay.evaluate(d, label="y", score="s", metrics=["roc_auc"],
                            ci_method="analytic").long()
    assert delong["method"][0] == "analytic"
    assert abs(boot["se"][0] / delong["se"][0] - 1) < 0.10


def _delong_se(y, s):
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return math.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_analytic_intervals_match_their_textbook_formulas(seed):
    rng = np.random.default_rng(seed)
    n = 700
    y = (rng.random(n) < 0.4).astype(np.int8)
    p = np.round(np.clip(0.25 * y + 0.75 * rng.random(n), 0, 1), 2)  # ties
    rep = assay.evaluate({"y": y, "p": p}, label="y", score="p", ci_method="analytic", ci=0.9)
    row = rep.table.row(0, named=True)
    pred = p >= 0.5
    for m, k, total in [
        ("accuracy", int(np.sum(pred == (y == 1))), n),
        ("precision", int(np.sum(pred & (y == 1))), int(pred.sum())),
        ("recall", int(np.sum(pred & (y == 1))), int(y.sum())),
        ("specificity", int(np.sum(~pred & (y == 0))), int((y == 0).sum())),
    ]:
        ci = st.binomtest(k, total).proportion_ci(confidence_level=0.9, method="wilson")
        assert row[f"{m}_lo"] == pytest.approx(ci.low, abs=1e-12), m
        assert row[f"{m}_hi"] == pytest.approx(ci.high, abs=1e-12), m
    z = st.norm.ppf(0.95)
    se = _delong_se(y, p)
    assert row["roc_auc_lo"] == pytest.approx(row["roc_auc"] - z * se, abs=1e-12)
    assert row["roc_auc_hi"] == pytest.approx(row["roc_auc"] + z * se, abs=1e-12)
    brier = (p - y) ** 2
    se_b = brier.std(ddof=1) / math.sqrt(n)
    assert row["brier_lo"] == pytest.approx(brier.mean() - z * se_b, abs=1e-12)
    long = rep.long().filter(metric="f1")
    assert long["lo"][0] is None and "analytic" in long["note"][0]


def test_small_slices_get_null_bounds_with_a_note():
    d = {"y": np.array([0, 1, 1, 0, 1] * 40 + [1]), "p": np.linspace(0, 1, 201),
         "g": np.array(["big"] * 200 + ["tiny"])}
    rep = assay.evaluate(d, label="y", score="p", slices=["g"], metrics=["accuracy", "roc_auc"],
                         bootstrap=200)
    tiny = rep.long().filter(slice="g=tiny")
    auc = tiny.filter(metric="roc_auc")
    assert auc["value"][0] is None and "one class" in auc["note"][0]
    acc = tiny.filter(metric="accuracy")
    assert acc["value"][0] is not None and acc["lo"][0] is None
    assert "replicates" in acc["note"][0]


# Coverage: 300 seeded data sets of 2000 rows from a binormal model, 90% intervals, B = 200.
TRUE_AUC = st.norm.cdf(1 / math.sqrt(2))
TRUE_ACCURACY = st.norm.cdf(0.5)  # threshold 0.5 halfway between the class means


@pytest.mark.parametrize("method", ["percentile", "basic", "bca", "analytic"])
def test_coverage_of_90_percent_intervals(method):
    hits = {"roc_auc": 0, "accuracy": 0}
    sets = 300
    for k in range(sets):
        d = _binormal(2_000, seed=10_000 + k)
        rep = assay.evaluate(d, label="y", score="s", metrics=["roc_auc", "accuracy"],
                             threshold=0.5, ci=0.9, ci_method=method,
                             bootstrap=None if method == "analytic" else 200, seed=k)
        row = rep.table.row(0, named=True)
        hits["roc_auc"] += row["roc_auc_lo"] <= TRUE_AUC <= row["roc_auc_hi"]
        hits["accuracy"] += row["accuracy_lo"] <= TRUE_ACCURACY <= row["accuracy_hi"]
    for m, h in hits.items():
        assert 0.85 <= h / sets <= 0.95, f"{method} {m}: coverage {h / sets:.3f}"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(bootstrap=0), InvalidArgumentError, "bootstrap"),
        (dict(bootstrap=1), InvalidArgumentError, "bootstrap"),
        (dict(bootstrap=2.5), InvalidArgumentError, "bootstrap"),
        (dict(bootstrap=True), InvalidArgumentError, "bootstrap"),
        (dict(bootstrap=2**64), InvalidArgumentError, "bootstrap"),
        (dict(bootstrap=10, ci=1.0), InvalidArgumentError, "ci"),
        (dict(bootstrap=10, ci=0), InvalidArgumentError, "ci"),
        (dict(bootstrap=10, ci_method="jackknife"), InvalidArgumentError, "ci_method"),
        (dict(ci_method="bca"), InvalidArgumentError, "bootstrap=B"),
        (dict(bootstrap=10, seed=-1), InvalidArgumentError, "seed"),
        (dict(row_id="id"), InvalidArgumentError, "row_id"),
        (dict(bootstrap=10, row_id="nope"), ColumnNotFoundError, "nope"),
        (dict(bootstrap=10, row_id="p"), SchemaError, "integer"),
        (dict(bootstrap=10, auc="binned"), InvalidArgumentError, "exact"),
    ],
)
def test_bad_interval_options_raise_typed_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        assay.evaluate(_probabilities(200), label="y", score="p", **kwargs)


def test_bca_needs_rows_for_the_jackknife_of_metrics_without_influence_values():
    d = _probabilities(30)
    with pytest.raises(InvalidArgumentError, match="jackknife"):
        assay.evaluate(d, label="y", score="p", metrics=["log_loss"], bootstrap=50,
                       ci_method="bca")
    # Metrics of the confusion cells and ROC-AUC have influence values: no jackknife needed.
    rep = assay.evaluate(d, label="y", score="p", metrics=["accuracy", "f1", "roc_auc"],
                         bootstrap=50, ci_method="bca")
    assert rep.table["accuracy_lo"][0] is not None


def test_analytic_interval_of_a_one_row_slice_is_null():
    d = {"y": np.array([0, 1] * 50 + [1]), "p": np.linspace(0, 1, 101),
         "g": np.array(["big"] * 100 + ["one"])}
    rep = assay.evaluate(d, label="y", score="p", slices=["g"], metrics=["accuracy"],
                         ci_method="analytic")
    one = rep.long().filter(slice="g=one")
    assert one["value"][0] == 1.0 and one["lo"][0] is None and "fewer than 2" in one["note"][0]


def test_slice_columns_may_not_shadow_interval_columns():
    d = _probabilities(300)
    d["accuracy_se"] = d["g"]
    with pytest.raises(InvalidArgumentError, match="accuracy_se"):
        assay.evaluate(d, label="y", score="p", slices=["accuracy_se"], metrics=["accuracy"],
                       bootstrap=20)


def test_replicate_state_too_large_for_memory_is_refused():
    n = 60_000
    d = {"y": np.arange(n) % 2, "p": np.linspace(0, 1, n), "id": np.arange(n).astype(str)}
    with pytest.raises(InvalidArgumentError, match="GiB"):
        assay.evaluate(d, label="y", score="p", slices=["id"], metrics=["accuracy"],
                       bootstrap=5_000, max_slices=None)


def test_null_row_id_is_an_error_naming_the_column():
    d = pa.table({"y": [0, 1, 1], "p": [0.1, 0.8, 0.6], "rid": [1, None, 3]})
    with pytest.raises(InvalidInputError, match="rid"):
        assay.evaluate(d, label="y", score="p", bootstrap=10, row_id="rid")


def test_binned_auc_with_analytic_intervals():
    d = _probabilities(20_000)
    exact = assay.evaluate(d, label="y", score="p", metrics=["roc_auc"], ci_method="analytic")
    binned = assay.evaluate(d, label="y", score="p", metrics=["roc_auc"], ci_method="analytic",
                            auc="binned")
    assert binned.table["roc_auc_lo"][0] == pytest.approx(exact.table["roc_auc_lo"][0], abs=1e-3)
