"""Property tests: the invariances every metric must satisfy, on random small tables.

- Scaling all weights by 10^k (k in [-300, 300]) changes no metric and no interval (up to
  rounding of the scaled weights themselves) and scales ``weight_sum``.
- Permuting the rows changes nothing (bootstrap replicates follow a ``row_id`` column).
- Splitting the rows into batches of any sizes changes no bit.
- Doubling every weight equals evaluating the data twice; without weights, duplicated data
  keeps every metric (they are all ratios or means).
- No metric, interval or delta column ever holds NaN or inf, whatever the weights' magnitudes.

Each is checked against the same job on the unchanged data (an independent run, not a stored
value), for ``evaluate`` (default metrics plus F-beta and calibration metrics, slices,
bootstrap and analytic intervals) and ``compare``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import assay

METRICS = [
    *assay.METRICS,
    "f2",
    "f0.5",
    assay.fbeta(1e200),
    assay.fbeta(1e-200),
    *assay.CALIBRATION_METRICS,
]
# The calibration slope and intercept come from an iterated logistic fit: scaling the weights
# by a power of two leaves them bit-identical, but on tiny slices near (quasi-)separation the
# likelihood is nearly flat and any other perturbation (rounding of 10^k x w) moves the point
# where Newton's method stops, so they are left out of the tolerance comparisons.
FITS = ("calibration_slope", "calibration_intercept")
# The debiased ECE subtracts a term in 1 / (n_eff - 1): duplicated rows double n_eff (doubled
# weights do not), so it is no ratio metric for the duplication properties.
BY_ROWS = ("ece_debiased",)
# ACE's quantile edges interpolate between neighbouring scores (numpy's linear quantiles):
# duplicated rows move them.
BY_ROWS += ("ace",)
RTOL = 1e-9
# SmoothECE is the fixed point of a bracketing search that stops at a bracket of 1e-9.
LOOSE = {"smooth_ece": 1e-7}
ATOL = 1e-12
FAST = settings(max_examples=50, deadline=None)


@st.composite
def tables(draw, min_rows=2, max_rows=40):
    """A small table: 0/1 labels, probability scores on a coarse grid (ties with each other
    and with the threshold) or anywhere in [0, 1], positive weights in [0.1, 10], a slice
    column, a second model's scores and a row id."""
    n = draw(st.integers(min_rows, max_rows))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < draw(st.sampled_from([0.1, 0.5, 0.9]))).astype(np.int8)
    if draw(st.booleans()):
        p = rng.integers(0, 9, n) / 8.0
    else:
        p = np.clip(rng.random(n) * 0.7 + 0.3 * y, 0.0, 1.0)
    q = np.clip(p + rng.normal(0, 0.2, n), 0.0, 1.0)
    w = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n))
    g = rng.choice(np.array(["a", "b", "c"]), n)
    return pa.table({"y": y, "p": p, "q": q, "w": w, "g": g, "rid": np.arange(n, dtype=np.int64)})


def _floats(table: pa.Table) -> dict[str, list]:
    """The Float64 columns of a report/comparison table, by name."""
    return {f.name: table.column(f.name).to_pylist() for f in table.schema
            if pa.types.is_floating(f.type)}


def _assert_finite_or_null(table: pa.Table) -> None:
    for name, values in _floats(table).items():
        bad = [v for v in values if v is not None and not math.isfinite(v)]
        assert not bad, f"column {name} holds {bad}"


def _assert_close(a: pa.Table, b: pa.Table, skip=("weight_sum",), rtol=RTOL, atol=ATOL,
                  skip_metrics=()) -> None:
    """Same null pattern and values within tolerance in every float column but `skip` (and the
    columns of `skip_metrics`, with their interval columns); every other column exactly
    equal."""
    assert a.schema.names == b.schema.names
    fa, fb = _floats(a), _floats(b)
    for name in a.schema.names:
        if name in skip or name.removesuffix("_lo").removesuffix("_hi").removesuffix(
            "_se"
        ) in skip_metrics:
            continue
        if name not in fa:
            assert a.column(name).to_pylist() == b.column(name).to_pylist(), name
            continue
        for i, (x, z) in enumerate(zip(fa[name], fb[name], strict=True)):
            assert (x is None) == (z is None), f"{name}[{i}]: {x} vs {z}"
            if x is not None:
                tol = max(rtol, LOOSE.get(name, 0.0)) if rtol else rtol
                assert math.isclose(x, z, rel_tol=tol, abs_tol=atol), f"{name}[{i}]: {x} vs {z}"


def _scaled(t: pa.Table, factor: float) -> pa.Table:
    w = t.column("w").to_numpy() * factor
    return t.set_column(t.schema.get_field_index("w"), "w", pa.array(w))


def _evaluate(t, *, weight="w", interval=None, slices=("g",), **kw):
    extra = {}
    if interval == "bootstrap":
        extra = {"bootstrap": 25, "row_id": "rid", "seed": 3}
    elif interval == "analytic":
        extra = {"ci_method": "analytic"}
    return assay.evaluate(t, label="y", score="p", weight=weight, slices=list(slices),
                          metrics=METRICS, **extra, **kw)


def _compare(t, *, weight="w", **kw):
    return assay.compare(t, label="y", scores={"a": "p", "b": "q"}, weight=weight, slices=["g"],
                         metrics=METRICS, bootstrap=25, row_id="rid", seed=3, **kw)


@FAST
@given(tables(), st.integers(-300, 300), st.sampled_from([None, "bootstrap", "analytic"]))
def test_scaling_the_weights_changes_no_metric(t, k, interval):
    base = _evaluate(t, interval=interval).to_arrow()
    scaled = _evaluate(_scaled(t, 10.0**k), interval=interval).to_arrow()
    _assert_finite_or_null(base)
    _assert_finite_or_null(scaled)
    _assert_close(base, scaled, skip_metrics=FITS)
    ws, wb = scaled.column("weight_sum").to_pylist(), base.column("weight_sum").to_pylist()
    for a, b in zip(ws, wb, strict=True):
        assert math.isclose(a, b * 10.0**k, rel_tol=1e-12), (a, b, k)


@FAST
@given(tables(), st.integers(-1074, 1023))
def test_scaling_by_a_power_of_two_changes_no_bit(t, e):
    # Exact scaling: the weights themselves are exact, so the report must be bit-identical
    # (but for weight_sum) wherever the weights stay normal numbers; subnormal or overflowing
    # products are skipped (the scaled data differs there).
    factor = math.ldexp(1.0, e)
    w = t.column("w").to_numpy()
    with np.errstate(over="ignore", under="ignore"):
        scaled_w = w * factor
    if not (np.all(np.isfinite(scaled_w)) and scaled_w.min() >= np.finfo(np.float64).tiny):
        return
    base = _evaluate(t).to_arrow()
    scaled = _evaluate(_scaled(t, factor)).to_arrow()
    _assert_close(base, scaled, rtol=0.0, atol=0.0)
    ws, wb = scaled.column("weight_sum").to_pylist(), base.column("weight_sum").to_pylist()
    for a, b in zip(ws, wb, strict=True):
        if math.isfinite(b * factor):
            assert a == b * factor or math.isclose(a, b * factor, rel_tol=1e-15)


@FAST
@given(tables(), st.integers(-300, 300))
def test_scaling_the_weights_changes_no_comparison(t, k):
    base = _compare(t).table
    scaled = _compare(_scaled(t, 10.0**k)).table
    _assert_finite_or_null(base.to_arrow())
    _assert_finite_or_null(scaled.to_arrow())
    strict = ~pl.col("metric").is_in([*FITS, *LOOSE])
    _assert_close(base.filter(strict).to_arrow(), scaled.filter(strict).to_arrow())
    loose = pl.col("metric").is_in(list(LOOSE))
    _assert_close(base.filter(loose).to_arrow(), scaled.filter(loose).to_arrow(),
                  rtol=max(LOOSE.values()), atol=1e-9)


@FAST
@given(tables(), st.randoms(use_true_random=False), st.sampled_from([None, "w"]),
       st.sampled_from([None, "bootstrap"]))
def test_permuting_the_rows_changes_nothing(t, rnd, weight, interval):
    order = list(range(t.num_rows))
    rnd.shuffle(order)
    base = _evaluate(t, weight=weight, interval=interval).to_arrow()
    perm = _evaluate(t.take(order), weight=weight, interval=interval).to_arrow()
    # Unweighted counts are exact; weighted sums only change their order of addition.
    _assert_close(base, perm, skip=(), skip_metrics=FITS)


@FAST
@given(tables(), st.lists(st.integers(1, 15), min_size=1, max_size=8),
       st.sampled_from([1.0, 1e-300, 1e300]), st.sampled_from([None, "bootstrap"]))
def test_batch_splits_change_no_bit(t, sizes, scale, interval):
    t = _scaled(t, scale)
    batches, at = [], 0
    for s in sizes * (t.num_rows // max(sum(sizes), 1) + 1):
        if at >= t.num_rows:
            break
        batches.extend(t.slice(at, s).to_batches())
        at += s
    split = pa.Table.from_batches(batches, schema=t.schema)
    reader = pa.RecordBatchReader.from_batches(t.schema, iter(batches))
    base = _evaluate(t, interval=interval).to_arrow()
    assert _evaluate(split, interval=interval).to_arrow().equals(base)
    assert _evaluate(reader, interval=interval).to_arrow().equals(base)


@FAST
@given(tables(), st.sampled_from([1.0, 1e-300, 1e300]))
def test_doubled_weights_equal_the_data_twice(t, scale):
    t = _scaled(t, scale)
    twice = pa.concat_tables([t, t])
    doubled = _evaluate(_scaled(t, 2.0)).to_arrow()
    again = _evaluate(twice).to_arrow()
    _assert_close(doubled, again, skip=("n", "weight_sum"), skip_metrics=FITS + BY_ROWS)
    assert again.column("n").to_pylist() == [2 * n for n in doubled.column("n").to_pylist()]
    for a, b in zip(doubled.column("weight_sum").to_pylist(),
                    again.column("weight_sum").to_pylist(), strict=True):
        assert math.isclose(a, b, rel_tol=1e-12)


@FAST
@given(tables())
def test_duplicated_unweighted_data_keeps_every_metric(t):
    one = _evaluate(t, weight=None).to_arrow()
    two = _evaluate(pa.concat_tables([t, t]), weight=None).to_arrow()
    _assert_close(one, two, skip=("n",), skip_metrics=FITS + BY_ROWS)


@st.composite
def wild_weights(draw):
    """A table whose weights span up to 300 orders of magnitude, anywhere in float64's range."""
    t = draw(tables(min_rows=2, max_rows=30))
    span = draw(st.integers(0, 300))
    lo = draw(st.integers(-307, 307 - span))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = 10.0 ** rng.uniform(lo, lo + span, t.num_rows)
    return t.set_column(t.schema.get_field_index("w"), "w", pa.array(w))


@settings(max_examples=40, deadline=None)
@given(wild_weights(), st.sampled_from([None, "bootstrap", "analytic"]))
def test_no_metric_is_ever_nan_or_inf(t, interval):
    r = _evaluate(t, interval=interval)
    _assert_finite_or_null(r.to_arrow())
    _assert_finite_or_null(r.long().to_arrow())
    # Every null has its note.
    notes = r.notes if isinstance(r.notes, pl.DataFrame) else pl.from_arrow(r.notes)
    table = r.table
    for m in METRICS:
        missing = table.filter(pl.col(m).is_null())["slice"].to_list()
        noted = notes.filter(pl.col("metric") == m)["slice"].to_list()
        assert set(missing) <= set(noted), (m, missing, noted)


@settings(max_examples=25, deadline=None)
@given(wild_weights())
def test_no_comparison_value_is_ever_nan_or_inf(t):
    _assert_finite_or_null(_compare(t).table.to_arrow())


def test_extreme_weights_give_the_unit_weight_metrics():
    # The audit's cases: all weights 1e80, 1e-100, 1e160, 1e-300 and 1.7e308.
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    p = np.clip(rng.random(n) * 0.6 + y * 0.3, 0, 1)
    w = rng.random(n) + 0.1
    t = pa.table({"y": y, "p": p, "w": w, "g": rng.choice(["a", "b"], n),
                  "rid": np.arange(n)})
    base = _evaluate(t).to_arrow()
    for factor in [1e80, 1e-100, 1e160, 1e-300, 1.7e308 / w.max()]:
        got = _evaluate(_scaled(t, factor)).to_arrow()
        _assert_finite_or_null(got)
        _assert_close(base, got, skip_metrics=FITS)
        assert got.column("mcc").null_count == 0
    # The total weight exceeds float64: weight_sum is null with a note, metrics are intact.
    huge = _evaluate(_scaled(t, 1.7e308 / w.max()))
    assert huge.table["weight_sum"][0] is None
    notes = huge.notes if isinstance(huge.notes, pl.DataFrame) else pl.from_arrow(huge.notes)
    assert "weight_sum" in notes["metric"].to_list()


@pytest.mark.parametrize("s0", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_recalibrators_on_constant_scores_map_to_the_base_rate(s0):
    # The audit's case: constant scores with a base rate of 0.52 (Platt returned the identity
    # map, 1e-12 for a score of 0, while Temperature raised).
    from assay import calibrate
    from assay.errors import InvalidInputError

    y = np.array([1] * 13 + [0] * 12)
    s = np.full(y.size, s0)
    rate = y.mean()
    p = calibrate.Platt(smoothing=False).fit(s, y)
    np.testing.assert_allclose(p.transform(np.array([s0, 0.3])), rate, rtol=1e-12)
    w = np.where(y == 1, 2.0, 1.0)
    rate_w = float((w * y).sum() / w.sum())
    np.testing.assert_allclose(calibrate.Platt(smoothing=False).fit(s, y, w).transform([s0]),
                               rate_w, rtol=1e-12)
    for cls in (calibrate.Isotonic, calibrate.HistogramBinning):
        np.testing.assert_allclose(cls().fit(s, y).transform([s0]), rate, rtol=1e-12)
    if s0 > 0.5:
        t = calibrate.Temperature().fit(s, y)
        np.testing.assert_allclose(t.transform([s0]), rate, rtol=1e-9)
    else:
        with pytest.raises(InvalidInputError, match="Platt"):
            calibrate.Temperature().fit(s, y)
