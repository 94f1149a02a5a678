"""``task="regression"`` through the engine: every metric per slice against scikit-learn and
scipy (hypothesis: ties, weights, constant labels, one-row slices, labels around 1e9), the
determinism contract (threads, batches, shards and merge orders), intervals, comparisons and
the typed errors of bad input."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import scipy.stats
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay.errors import AssayError, InvalidArgumentError, InvalidInputError

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

CONSTANT = "undefined: the labels are constant in the slice"


def in_batches(t: pa.Table, size: int) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=size))


def close(a: float, b: float, rtol: float = 1e-9) -> bool:
    return abs(a - b) <= rtol * max(1.0, abs(b))


def reference(y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> dict[str, float | None]:
    """Every default metric of one slice, by scikit-learn, scipy or the textbook formula (None
    where assay reports an undefined value)."""
    kw = {"sample_weight": w}
    e = p - y
    ww = np.ones_like(y) if w is None else w
    my = np.average(y, weights=ww)
    mp = np.average(p, weights=ww)
    vy = np.average((y - my) ** 2, weights=ww)
    vp = np.average((p - mp) ** 2, weights=ww)
    cov = np.average((y - my) * (p - mp), weights=ww)
    d = np.abs(y) + np.abs(p)
    out: dict[str, float | None] = {
        "mae": skm.mean_absolute_error(y, p, **kw),
        "mse": skm.mean_squared_error(y, p, **kw),
        "rmse": math.sqrt(skm.mean_squared_error(y, p, **kw)),
        "mean_error": float(np.average(e, weights=ww)),
        "max_error": float(np.max(np.abs(e))),
        "mape": skm.mean_absolute_percentage_error(y, p, **kw),
        "smape": float(np.average(np.where(d > 0, 2 * np.abs(e) / np.where(d > 0, d, 1), 0),
                                  weights=ww)),
        "wmape": (float(np.sum(ww * np.abs(e)) / np.sum(ww * np.abs(y)))
                  if np.sum(ww * np.abs(y)) > 0 else None),
    }
    constant = bool(np.all(y == y[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["r2"] = None if constant else skm.r2_score(y, p, **kw)
        out["explained_variance"] = None if constant else skm.explained_variance_score(y, p, **kw)
        if constant or np.all(p == p[0]):
            out["pearson"] = None
        elif w is None:
            out["pearson"] = float(scipy.stats.pearsonr(y, p)[0])
        else:
            out["pearson"] = float(cov / math.sqrt(vy * vp))
    if constant and np.all(p == p[0]):
        # (Weighted means of equal values may miss them by an ulp, which would make a
        # variance of pure rounding: decide exactly.)
        out["concordance"] = None if p[0] == y[0] else 0.0
    else:
        den = vy + vp + (mp - my) ** 2
        out["concordance"] = float(2 * cov / den) if den > 0 else None
    return out


def check_slice(row: dict, y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> None:
    want = reference(y, p, w)
    assert row["n"] == len(y)
    for name, v in want.items():
        got = row[name]
        if v is None:
            assert got is None, name
            continue
        # Correlations of near-constant data lose digits in any formula.
        tol = 1e-6 if name in ("r2", "explained_variance", "pearson", "concordance") else 1e-9
        assert got is not None and close(got, v, tol), (name, got, v)


@st.composite
def tables(draw):
    n = draw(st.integers(1, 80))
    grid = draw(st.booleans())  # few distinct values: ties and constant slices
    values = (st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0]) if grid
              else st.floats(-50, 50, allow_nan=False, width=32))
    y = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    p = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    w = (np.array(draw(st.lists(st.floats(0.01, 5), min_size=n, max_size=n)))
         if draw(st.booleans()) else None)
    # Up to 5 slices, some of them one row.
    g = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
    return y, p, w, g


@SETTINGS
@given(case=tables())
def test_every_metric_of_every_slice_matches_scikit_learn(case):
    y, p, w, g = case
    data = {"y": y, "p": p, "g": g.astype(str)}
    if w is not None:
        data["w"] = w
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", slices=["g"],
                         weight=None if w is None else "w")
    rows = {r["slice"]: r for r in rep.table.iter_rows(named=True)}
    check_slice(rows["overall"], y, p, w)
    for v in np.unique(g):
        m = g == v
        check_slice(rows[f"g={v}"], y[m], p[m], None if w is None else w[m])
    notes = rep.long().filter(pl.col("metric") == "r2")
    for r in notes.iter_rows(named=True):
        if r["value"] is None:
            assert r["note"] == CONSTANT


def test_weights_follow_sample_weight_semantics():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 500)
    p = y + rng.normal(0, 0.5, 500)
    w = rng.integers(1, 4, 500).astype(float)
    rep = assay.evaluate({"y": y, "p": p, "w": w}, task="regression", label="y",
                         prediction="p", weight="w")
    # Integer weights are row repeats.
    rep2 = assay.evaluate({"y": np.repeat(y, w.astype(int)), "p": np.repeat(p, w.astype(int))},
                          task="regression", label="y", prediction="p")
    for m in ("mae", "mse", "r2", "explained_variance", "pearson", "concordance", "mape"):
        assert close(rep.table[m][0], rep2.table[m][0], 1e-12), m
    assert rep.table["weight_sum"][0] == w.sum()


def test_labels_around_1e9_keep_r2_and_pearson():
    # E[x^2] - E[x]^2 loses every digit here; the co-moments keep them.
    rng = np.random.default_rng(2)
    n = 200_000
    y = 1e9 + rng.random(n)
    p = y + 0.3 * (rng.random(n) - 0.4)
    g = rng.integers(0, 3, n).astype(str)
    shifted_y, shifted_p = y - 1e9, p - 1e9  # exact: multiples of 2^-23 near 1e9
    rep = assay.evaluate(in_batches(pa.table({"y": y, "p": p, "g": g}), 7777),
                         task="regression", label="y", prediction="p", slices=["g"])
    want = reference(shifted_y, shifted_p, None)
    for m in ("r2", "explained_variance", "pearson", "concordance"):
        assert close(rep.table[m][0], want[m], 1e-9), m  # type: ignore[arg-type]
    naive_var = np.mean(y * y) - np.mean(y) ** 2
    assert abs(naive_var - np.var(shifted_y)) > 0.1 * np.var(shifted_y)


def test_default_metrics_come_from_the_registry():
    registry = [r for r in assay._native.metric_registry()
                if r[1] == "regression" and r[0] != "pinball@<q>"]
    assert assay.REGRESSION_METRICS == tuple(r[0] for r in registry)
    rep = assay.evaluate({"y": [1.0, 2.0, 4.0], "p": [1.5, 2.0, 3.0]}, task="regression",
                         label="y", prediction="p")
    assert rep.metrics == [r[0] for r in registry if r[4]]
    assert "msle" not in rep.metrics
    rep = assay.evaluate({"y": [0.0, 2.0, 4.0], "p": [1.0, 2.0, 3.0]}, task="regression",
                         label="y", prediction="p", metrics=["msle", "rmsle"])
    want = skm.mean_squared_log_error([0.0, 2.0, 4.0], [1.0, 2.0, 3.0])
    assert close(rep.table["msle"][0], want, 1e-12)
    assert close(rep.table["rmsle"][0], math.sqrt(want), 1e-12)


def test_min_slice_size_and_one_row_slices():
    data = {"y": [1.0, 2.0, 3.0, 5.0], "p": [1.0, 2.5, 2.0, 4.0], "g": ["a", "a", "a", "b"]}
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", slices=["g"],
                         min_slice_size=2)
    b = rep.table.filter(pl.col("slice") == "g=b").row(0, named=True)
    assert b["n"] == 1 and b["mae"] is None
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", slices=["g"])
    b = rep.table.filter(pl.col("slice") == "g=b").row(0, named=True)
    assert b["mae"] == 1.0 and b["r2"] is None and b["max_error"] == 1.0


# ---- determinism ----------------------------------------------------------------------------


def _data(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 10.0, n)
    p = y * rng.lognormal(0, 0.2, n)
    return pa.table({
        "y": y, "p": p, "q": y + rng.normal(0, 12, n), "lo": 0.8 * p, "hi": 1.25 * p,
        "w": rng.random(n) + 0.5, "id": np.arange(n, dtype=np.int64),
        "city": rng.choice(["ber", "lis", "nyc", "sao"], n), "sqft": rng.random(n) * 200,
    })


def _same(a: pl.DataFrame, b: pl.DataFrame, rtol: float = 0.0) -> None:
    assert a.columns == b.columns and a.height == b.height
    for c in a.columns:
        if a[c].dtype == pl.Float64:
            x, y = a[c].to_numpy(), b[c].to_numpy()
            both = ~np.isnan(x) & ~np.isnan(y)
            assert np.array_equal(np.isnan(x), np.isnan(y)), c
            if rtol == 0.0:
                assert np.array_equal(x[both], y[both]), c
            else:
                np.testing.assert_allclose(x[both], y[both], rtol=rtol, atol=0, err_msg=c)
        else:
            assert a[c].to_list() == b[c].to_list(), c


@pytest.mark.parametrize("interval", [{}, {"bootstrap": 50}, {"ci_method": "analytic"}])
def test_bits_do_not_depend_on_threads_and_batches_only_to_rounding(interval):
    t = _data(150_000)
    kw = dict(task="regression", label="y", prediction="p", weight="w",
              slices=["city", assay.bins("sqft", edges=[50, 100, 150])], **interval)
    one = assay.evaluate(t, n_threads=1, **kw).table
    _same(one, assay.evaluate(t, n_threads=2, **kw).table)
    _same(one, assay.evaluate(t, n_threads=4, **kw).table)
    _same(one, assay.evaluate(in_batches(t, 10_007), **kw).table, 1e-12)


@SETTINGS
@given(cuts=st.lists(st.integers(1, 19_999), max_size=15, unique=True),
       order=st.randoms(use_true_random=False),
       interval=st.sampled_from([{}, {"bootstrap": 20, "row_id": "id"},
                                 {"ci_method": "analytic"},
                                 {"bootstrap": 40, "ci_method": "bca"}]))
def test_shards_merged_in_any_order_equal_one_evaluate(cuts, order, interval):
    t = _data(20_000, seed=3)
    spec = assay.Spec(label="y", prediction="p", task="regression", weight="w",
                      slices=["city"], metrics=[*assay.REGRESSION_METRICS], power=1.5,
                      quantiles=[0.1, 0.9], lower="lo", upper="hi", **interval)
    bounds = [0, *sorted(cuts), t.num_rows]
    parts = [spec.accumulate(t.slice(a, b - a), row_offset=a)
             for a, b in zip(bounds, bounds[1:], strict=False)]
    shuffled = list(parts)
    order.shuffle(shuffled)
    merged = assay.merge(shuffled)
    one = spec.evaluate(t).table
    _same(merged.finalize().table, one, 1e-12)
    # The same shards in another order: the same bits; through bytes and pickle too.
    _same(assay.merge(parts).finalize().table, merged.finalize().table)
    again = assay.PartialState.from_bytes(merged.to_bytes())
    _same(again.finalize().table, merged.finalize().table)
    _same(pickle.loads(pickle.dumps(merged)).finalize().table, merged.finalize().table)


def test_regression_and_binary_states_do_not_merge():
    t = _data(100)
    reg = assay.Spec(label="y", prediction="p", task="regression").accumulate(t)
    t2 = t.append_column("b", pa.array(np.arange(100) % 2))
    binary = assay.Spec(label="b", score="sqft", metrics=["accuracy"], threshold=100)
    with pytest.raises(assay.StateMismatchError):
        assay.merge([reg, binary.accumulate(t2)])


def test_spec_round_trips_and_repr():
    spec = assay.Spec(label="price", prediction="pred", task="regression",
                      slices=["city"], bootstrap=100)
    assert spec.task == "regression" and spec.prediction == "pred" and spec.score is None
    interval = assay.Spec(label="price", prediction="pred", task="regression", lower="a",
                          upper="b", quantiles=[0.5], metrics=["tweedie_deviance", "coverage"],
                          power=2)
    assert (interval.lower, interval.upper, interval.power) == ("a", "b", 2.0)
    assert interval.metrics == ("tweedie_deviance", "coverage", "pinball@0.5")
    assert assay.Spec.from_dict(interval.to_dict()) == interval
    assert assay.Spec.from_dict(spec.to_dict()) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert "prediction='pred'" in repr(spec) and "task='regression'" in repr(spec)
    binary = assay.Spec(label="y", score="p")
    assert binary.task == "binary" and binary.prediction is None
    d = binary.to_dict()
    del d["task"], d["prediction"]  # a dict written before task families
    assert assay.Spec.from_dict(d) == binary


# ---- intervals and comparisons --------------------------------------------------------------


def test_bootstrap_intervals_bracket_the_estimate_and_cover():
    t = _data(20_000, seed=4)
    rep = assay.evaluate(t, task="regression", label="y", prediction="p", slices=["city"],
                         bootstrap=300, seed=1)
    for m in ("mae", "rmse", "r2", "pearson", "mean_error", "wmape", "max_error"):
        lo, v, hi = rep.table[f"{m}_lo"], rep.table[m], rep.table[f"{m}_hi"]
        assert ((lo <= v + 1e-12) & (v <= hi + 1e-12)).all(), m
        assert (hi > lo).all(), m
    for method in ("basic", "bca"):
        r = assay.evaluate(t, task="regression", label="y", prediction="p", bootstrap=200,
                           ci_method=method)
        assert r.table["mae_lo"][0] < r.table["mae"][0] < r.table["mae_hi"][0]


def test_analytic_intervals_of_the_means_follow_the_weighted_clt():
    t = _data(5_000, seed=5)
    y, p, w = (t[c].to_numpy() for c in ("y", "p", "w"))
    rep = assay.evaluate(t, task="regression", label="y", prediction="p", weight="w",
                         ci_method="analytic", ci=0.9)
    z = scipy.stats.norm.ppf(0.95)
    n = len(y)
    long = rep.long()
    for m, x in (("mae", np.abs(p - y)), ("mse", (p - y) ** 2), ("mean_error", p - y)):
        mean = np.average(x, weights=w)
        se = math.sqrt(n / (n - 1) * np.sum(w**2 * (x - mean) ** 2)) / w.sum()
        row = long.filter(pl.col("metric") == m).row(0, named=True)
        assert close(row["se"], se, 1e-9), m
        assert close(rep.table[f"{m}_lo"][0], mean - z * se, 1e-9), m
        assert close(row["hi"], mean + z * se, 1e-9), m
    r2 = long.filter(pl.col("metric") == "r2").row(0, named=True)
    assert r2["lo"] is None and "analytic" in r2["note"] and "bootstrap" in r2["note"]


def test_compare_two_regressors_uses_each_metrics_direction():
    t = _data(20_000, seed=6)
    cmp = assay.compare(t, task="regression", label="y", scores={"good": "p", "bad": "q"},
                        metrics=["mae", "r2", "mean_error"], bootstrap=200)
    overall = {r["metric"]: r for r in cmp.table.filter(pl.col("slice") == "overall")
               .iter_rows(named=True)}
    assert overall["mae"]["delta"] > 0 and overall["mae"]["verdict"] == "worse"
    assert overall["r2"]["delta"] < 0 and overall["r2"]["verdict"] == "worse"
    assert overall["mean_error"]["verdict"] in ("higher", "lower", "no significant difference")
    spec = assay.Spec(label="y", task="regression", scores={"good": "p", "bad": "q"},
                      metrics=["mae"], bootstrap=50)
    assert isinstance(spec.evaluate(t), assay.Comparison)


# ---- bad input ------------------------------------------------------------------------------


def test_non_finite_labels_and_predictions_follow_nan_policy():
    data = {"y": [1.0, float("nan"), 3.0, 4.0], "p": [1.0, 2.0, float("inf"), 5.0]}
    with pytest.raises(InvalidInputError, match=r'"y".*label is NaN at row 1.*drop'):
        assay.evaluate(data, task="regression", label="y", prediction="p")
    data2 = {"y": [1.0, 2.0, 3.0, 4.0], "p": [1.0, 2.0, float("inf"), 5.0]}
    with pytest.raises(InvalidInputError, match=r'"p".*prediction is inf at row 2'):
        assay.evaluate(data2, task="regression", label="y", prediction="p")
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", nan_policy="drop")
    assert rep.dropped == 2 and rep.table["n"][0] == 2
    assert rep.table["mae"][0] == 0.5
    nulls = pa.table({"y": pa.array([1.0, None]), "p": pa.array([1.0, 2.0])})
    with pytest.raises(InvalidInputError, match="label is null at row 1"):
        assay.evaluate(nulls, task="regression", label="y", prediction="p")


def test_log_errors_refuse_negative_values_by_column_and_row():
    data = {"y": [1.0, 2.0, 3.0], "p": [1.0, -0.5, 2.0]}
    with pytest.raises(InvalidInputError, match=r'"p".*>= 0.*-0.5 at row 1'):
        assay.evaluate(data, task="regression", label="y", prediction="p", metrics=["msle"])
    # Without msle the same data is fine.
    assay.evaluate(data, task="regression", label="y", prediction="p", metrics=["mae"])


def test_non_numeric_columns_are_refused():
    with pytest.raises(AssayError, match='"y"'):
        assay.evaluate({"y": ["a", "b"], "p": [1.0, 2.0]}, task="regression", label="y",
                       prediction="p")
    with pytest.raises(AssayError, match='"p"'):
        assay.evaluate({"y": [1.0, 2.0], "p": ["a", "b"]}, task="regression", label="y",
                       prediction="p")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"score": "p"}, "takes prediction="),
    ({}, "needs prediction="),
    ({"prediction": "p", "threshold": 0.3}, "threshold only applies to task='binary'"),
    ({"prediction": "p", "auc": "sketch"}, "auc only applies"),
    ({"prediction": "p", "calibration_bins": 10}, "calibration_bins only applies"),
    ({"prediction": "p", "metrics": ["roc_auc"]}, "roc_auc is not a regression metric"),
    ({"prediction": "p", "metrics": ["mae", "f1"]}, "f1 is not a regression metric"),
])
def test_options_that_do_not_fit_the_task_are_refused(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        assay.evaluate({"y": [1.0, 2.0], "p": [1.0, 2.0]}, task="regression", label="y",
                       **kwargs)


def test_binary_task_checks_its_own_arguments():
    with pytest.raises(InvalidArgumentError, match="task must be one of"):
        assay.evaluate({"y": [1.0]}, task="survival", label="y", prediction="y")
    with pytest.raises(InvalidArgumentError, match="prediction= is the column"):
        assay.evaluate({"y": [1, 0], "p": [0.2, 0.3]}, label="y", prediction="p")
    with pytest.raises(InvalidArgumentError, match="mae is not a binary metric"):
        assay.evaluate({"y": [1, 0], "p": [0.2, 0.3]}, label="y", score="p", metrics=["mae"])


def test_command_line_evaluates_and_splits_a_regression_job(tmp_path, capsys):
    import pyarrow.parquet as pq

    from assay.cli import main
    from assay.demo import make_regression_data

    t = make_regression_data(4_000, seed=3)
    pq.write_table(t.slice(0, 2_500), tmp_path / "a.parquet")
    pq.write_table(t.slice(2_500), tmp_path / "b.parquet")
    common = ["--task", "regression", "--label", "price", "--prediction", "pred",
              "--slice", "city", "--metrics", "mae,r2"]
    assert main(["evaluate", str(tmp_path / "a.parquet"), *common, "--save-state",
                 str(tmp_path / "a.assay")]) == 0
    assert main(["evaluate", str(tmp_path / "b.parquet"), *common, "--save-state",
                 str(tmp_path / "b.assay"), "--row-offset", "2500"]) == 0
    assert main(["finalize", str(tmp_path / "a.assay"), str(tmp_path / "b.assay"),
                 "-o", str(tmp_path / "r.parquet")]) == 0
    got = pl.read_parquet(tmp_path / "r.parquet")
    want = assay.evaluate(t, task="regression", label="price", prediction="pred",
                          slices=["city"], metrics=["mae", "r2"]).table
    _same(got.select(want.columns), want, 1e-12)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a.parquet"), "--label", "price",
                 "--prediction", "pred"]) == 2
    assert "--task binary takes --score, not --prediction" in capsys.readouterr().err


def test_dropped_rows_equal_the_rows_removed_in_any_batches():
    # Pieces without bad rows take the fast path, pieces with one the checked path: both must
    # give what the clean table gives.
    t = _data(200_000, seed=7)
    y = t["y"].to_numpy().copy()
    bad = np.zeros(len(y), dtype=bool)
    bad[[5, 70_000, 70_001, 199_999]] = True
    y[bad] = np.nan
    dirty = t.set_column(0, "y", pa.array(y))
    kw = dict(task="regression", label="y", prediction="p", weight="w", slices=["city"],
              bootstrap=20, row_id="id")
    got = assay.evaluate(in_batches(dirty, 50_000), nan_policy="drop", **kw)
    want = assay.evaluate(t.filter(pa.array(~bad)), **kw)
    assert got.dropped == 4
    _same(got.table, want.table, 1e-12)


@st.composite
def positive_tables(draw):
    n = draw(st.integers(2, 60))
    values = st.floats(0.125, 100, allow_nan=False, width=32)
    y = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    p = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    w = (np.array(draw(st.lists(st.floats(0.01, 5), min_size=n, max_size=n)))
         if draw(st.booleans()) else None)
    g = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    power = draw(st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0, -1.0]))
    qs = draw(st.lists(st.sampled_from([0.05, 0.25, 0.5, 0.9]), min_size=1, max_size=3,
                       unique=True))
    return y, p, w, g, power, qs


@SETTINGS
@given(case=positive_tables())
def test_deviances_and_pinball_match_scikit_learn(case):
    y, p, w, g, power, qs = case
    data = {"y": y, "p": p, "g": g.astype(str)}
    if w is not None:
        data["w"] = w
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", slices=["g"],
                         weight=None if w is None else "w", power=power, quantiles=qs,
                         metrics=["poisson_deviance", "gamma_deviance", "tweedie_deviance",
                                  "d2_tweedie"])
    rows = {r["slice"]: r for r in rep.table.iter_rows(named=True)}
    for label, m in [("overall", np.ones(len(y), dtype=bool)),
                     *((f"g={v}", g == v) for v in np.unique(g))]:
        row, kw = rows[label], {"sample_weight": None if w is None else w[m]}
        ys, ps = y[m], p[m]
        assert close(row["poisson_deviance"], skm.mean_poisson_deviance(ys, ps, **kw))
        assert close(row["gamma_deviance"], skm.mean_gamma_deviance(ys, ps, **kw))
        assert close(row["tweedie_deviance"],
                     skm.mean_tweedie_deviance(ys, ps, power=power, **kw))
        for q in qs:
            assert close(row[f"pinball@{q}"], skm.mean_pinball_loss(ys, ps, alpha=q, **kw))
        if np.all(ys == ys[0]):
            assert row["d2_tweedie"] is None
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = skm.d2_tweedie_score(ys, ps, power=power, **kw)
            assert close(row["d2_tweedie"], want, 1e-7), (row["d2_tweedie"], want)


@pytest.mark.parametrize(("metric", "power", "y", "p", "message"), [
    ("poisson_deviance", 0.0, [1.0, -1.0], [1.0, 1.0], r'"y".*poisson_deviance \(power 1\) '
     r"needs labels >= 0; found -1.0 at row 1"),
    ("poisson_deviance", 0.0, [1.0, 1.0], [1.0, 0.0], r'"p".*needs predictions > 0; found '
     r"0.0 at row 1"),
    ("gamma_deviance", 0.0, [0.0, 1.0], [1.0, 1.0], r'"y".*needs labels > 0; found 0.0 at row 0'),
    ("tweedie_deviance", 1.5, [1.0, 2.0], [-1.0, 1.0], r'"p".*power 1.5.*> 0'),
    ("d2_tweedie", 3.0, [1.0, 0.0], [1.0, 1.0], r'"y".*d2_tweedie \(power 3\).*> 0'),
])
def test_deviances_refuse_values_outside_their_domain(metric, power, y, p, message):
    with pytest.raises(InvalidInputError, match=message):
        assay.evaluate({"y": y, "p": p}, task="regression", label="y", prediction="p",
                       metrics=[metric], power=power)


def test_pinball_and_power_arguments_are_checked():
    data = {"y": [1.0, 2.0], "p": [1.0, 2.5]}
    with pytest.raises(InvalidArgumentError, match="quantiles"):
        assay.evaluate(data, task="regression", label="y", prediction="p", quantiles=[1.5])
    with pytest.raises(InvalidArgumentError, match="strictly between 0 and 1"):
        assay.evaluate(data, task="regression", label="y", prediction="p",
                       metrics=["pinball@0"])
    with pytest.raises(InvalidArgumentError, match="power .* must be <= 0 or >= 1"):
        assay.evaluate(data, task="regression", label="y", prediction="p", power=0.5)
    with pytest.raises(InvalidArgumentError, match="quantiles only applies to task='regression'"):
        assay.evaluate({"y": [0, 1], "p": [0.2, 0.7]}, label="y", score="p", quantiles=[0.5])
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", metrics=["mae"],
                         quantiles=[0.5, 0.9])
    assert rep.metrics == ["mae", "pinball@0.5", "pinball@0.9"]
    # The median's pinball loss is half the mae.
    assert rep.table["pinball@0.5"][0] == rep.table["mae"][0] / 2


@pytest.mark.parametrize("error", ["absolute", "squared"])
def test_discovery_ranks_slices_by_the_residual(error):
    from assay.demo import make_regression_data

    t = make_regression_data(20_000, seed=2)
    y, p = t["price"].to_numpy(), t["pred"].to_numpy()
    e = np.abs(p - y) if error == "absolute" else (p - y) ** 2
    features = ["city", "bedrooms"]
    found = assay.discover_slices(t, task="regression", label="price", prediction="pred",
                                  features=features, error=error, k=5)
    # The same search over a column of the same per-row errors.
    same = assay.discover_slices(t.append_column("e", pa.array(e)), features=features,
                                 error="e", k=5)
    assert found.height > 0
    _same(found, same, 1e-12)
    # Each slice's mean error, by brute force.
    df = pl.from_arrow(t).with_columns(e=pl.Series(e))
    for row in found.iter_rows(named=True):
        mask = pl.lit(True)
        for pred in row["predicates"]:
            mask = mask & (pl.col(pred["feature"]).cast(pl.String) == pred["value"])
        assert close(df.filter(mask)["e"].mean(), row["error_mean"], 1e-12)


def test_discovery_arguments_follow_the_task():
    data = {"y": [1.0, 2.0, 3.0], "p": [1.0, 2.0, 4.0], "g": ["a", "b", "a"]}
    with pytest.raises(InvalidArgumentError, match="takes prediction="):
        assay.discover_slices(data, task="regression", label="y", score="p", features=["g"])
    with pytest.raises(InvalidArgumentError, match="pass label= and prediction="):
        assay.discover_slices(data, task="regression", label="y", features=["g"])
    with pytest.raises(InvalidArgumentError, match="prediction= is the column"):
        assay.discover_slices(data, label="y", prediction="p", features=["g"])
    with pytest.raises(InvalidArgumentError, match="'absolute', 'squared'"):
        assay.discover_slices(data, task="regression", features=["g"], error="nope")


def test_prediction_interval_coverage_and_width_by_slice():
    rng = np.random.default_rng(8)
    n = 30_000
    y = rng.normal(0, 1, n)
    p = y + rng.normal(0, 0.5, n)
    half = rng.uniform(0.2, 1.5, n)
    w = rng.random(n) + 0.1
    g = rng.choice(["a", "b", "c"], n)
    data = {"y": y, "p": p, "lo": p - half, "hi": p + half, "w": w, "g": g}
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", lower="lo",
                         upper="hi", weight="w", slices=["g"], bootstrap=50)
    assert rep.metrics[-2:] == ["coverage", "interval_width"]
    rows = {r["slice"]: r for r in rep.table.iter_rows(named=True)}
    for label, m in [("overall", np.ones(n, dtype=bool)),
                     *((f"g={v}", g == v) for v in "abc")]:
        inside = (data["lo"][m] <= y[m]) & (y[m] <= data["hi"][m])
        assert close(rows[label]["coverage"], np.average(inside, weights=w[m]), 1e-12)
        assert close(rows[label]["interval_width"], np.average(2 * half[m], weights=w[m]),
                     1e-12)
        assert rows[label]["coverage_lo"] < rows[label]["coverage"] < rows[label]["coverage_hi"]


def test_prediction_interval_bad_bounds():
    base = {"y": [1.0, 2.0, 3.0], "p": [1.0, 2.0, 3.0], "lo": [0.0, 1.0, 2.0],
            "hi": [2.0, 3.0, 4.0]}
    kw = dict(task="regression", label="y", prediction="p", lower="lo", upper="hi")
    bad = dict(base, lo=[0.0, 3.5, 2.0])
    with pytest.raises(InvalidInputError, match=r'"lo".*lower bound 3.5 exceeds the upper '
                                                r'bound 3.0.*at row 1'):
        assay.evaluate(bad, **kw)
    missing = dict(base, hi=[2.0, float("nan"), 4.0])
    with pytest.raises(InvalidInputError, match=r'"hi".*interval bound is NaN at row 1'):
        assay.evaluate(missing, **kw)
    rep = assay.evaluate(missing, nan_policy="drop", **kw)
    assert rep.dropped == 1 and rep.table["coverage"][0] == 1.0
    with pytest.raises(InvalidArgumentError, match="both lower= and upper="):
        assay.evaluate(base, task="regression", label="y", prediction="p", lower="lo")
    with pytest.raises(InvalidArgumentError, match="coverage needs the prediction interval"):
        assay.evaluate(base, task="regression", label="y", prediction="p",
                       metrics=["coverage"])
    with pytest.raises(InvalidArgumentError, match="lower only applies to task='regression'"):
        assay.evaluate({"y": [0, 1], "p": [0.2, 0.7], "lo": [0, 0], "hi": [1, 1]}, label="y",
                       score="p", lower="lo", upper="hi")


@SETTINGS
@given(case=tables())
def test_median_absolute_error_matches_scikit_learn(case):
    y, p, w, g = case
    data = {"y": y, "p": p, "g": g.astype(str)}
    if w is not None:
        data["w"] = w
    rep = assay.evaluate(data, task="regression", label="y", prediction="p", slices=["g"],
                         weight=None if w is None else "w", metrics=["median_absolute_error"])
    rows = {r["slice"]: r for r in rep.table.iter_rows(named=True)}
    for label, m in [("overall", np.ones(len(y), dtype=bool)),
                     *((f"g={v}", g == v) for v in np.unique(g))]:
        want = skm.median_absolute_error(y[m], p[m],
                                         sample_weight=None if w is None else w[m])
        assert close(rows[label]["median_absolute_error"], want, 1e-12), (label, want)


def test_median_absolute_error_of_shards_and_its_documented_interval():
    t = _data(30_000, seed=9)
    # Rounded predictions: repeated errors, so the shards' kept rows are compacted.
    t = t.set_column(1, "p", pa.array(np.round(t["p"].to_numpy())))
    spec = assay.Spec(label="y", prediction="p", task="regression", slices=["city"],
                      metrics=["mae", "median_absolute_error"], bootstrap=20, row_id="id")
    parts = [spec.accumulate(t.slice(a, 10_000)) for a in (0, 10_000, 20_000)]
    merged = assay.PartialState.from_bytes(assay.merge(parts[::-1]).to_bytes())
    got, want = merged.finalize(), spec.evaluate(t)
    _same(got.table, want.table, 1e-12)
    y, p = t["y"].to_numpy(), t["p"].to_numpy()
    assert close(want.table["median_absolute_error"][0], skm.median_absolute_error(y, p), 1e-12)
    note = want.long().filter(pl.col("metric") == "median_absolute_error")["note"][0]
    assert "no interval" in note


@pytest.mark.parametrize("power", [-1.0, -0.5, -2.0])
def test_d2_tweedie_at_negative_powers_does_not_depend_on_batches(power):
    # Labels may be negative below power 0: the deviance of the mean label is kept as a plain
    # sum there (no move between means that may be negative).
    rng = np.random.default_rng(11)
    y = rng.normal(1.0, 3.0, 2_000)
    p = np.abs(y) + 0.5
    t = pa.table({"y": y, "p": p})
    want = skm.d2_tweedie_score(y, p, power=power)
    for size in (1, 7, 500, 2_000):
        got = assay.evaluate(in_batches(t, size), task="regression", label="y", prediction="p",
                             metrics=["d2_tweedie"], power=power).table["d2_tweedie"][0]
        assert close(got, want, 1e-9), (size, got, want)


def test_review_cases_of_the_python_layer():
    rng = np.random.default_rng(12)
    n = 2_000
    y = rng.normal(0, 1, n)
    data = {"y": y, "p": y + rng.normal(0, 0.3, n), "q": y + rng.normal(0, 0.6, n),
            "lo": y - 1.0, "hi": y + 1.0}
    kw = dict(task="regression", label="y", prediction="p")
    # quantiles= and a prediction interval together keep coverage and interval_width.
    rep = assay.evaluate(data, quantiles=[0.1, 0.9], lower="lo", upper="hi", **kw)
    assert rep.metrics[-4:] == ["coverage", "interval_width", "pinball@0.1", "pinball@0.9"]
    # A prediction interval no metric reads, and a power no metric uses, are refused.
    with pytest.raises(InvalidArgumentError, match="name one of them in metrics"):
        assay.evaluate(data, metrics=["mae"], lower="lo", upper="hi", **kw)
    with pytest.raises(InvalidArgumentError, match="power=1.5 is the power of"):
        assay.evaluate(data, metrics=["mae"], power=1.5, **kw)
    with pytest.raises(InvalidArgumentError, match="label and prediction must be column names"):
        assay.evaluate(data, task="regression", label="y", prediction=3)
    with pytest.raises(InvalidArgumentError, match="comparison does not take"):
        assay.compare(data, task="regression", label="y", scores=["p", "q"],
                      metrics=["coverage"], bootstrap=20)
    with pytest.raises(InvalidArgumentError, match="task='regression' has none"):
        assay.discover_slices({**data, "g": np.array(["a", "b"] * (n // 2))}, features=["g"],
                              threshold=0.3, **kw)
    # The gate reads each metric's direction from the engine, pinball@q included: p is the
    # better model, so q is worse at every quantile.
    cmp = assay.compare(data, task="regression", label="y", scores={"p": "p", "q": "q"},
                        metrics=["mae"], quantiles=[0.9], bootstrap=200)
    with pytest.raises(assay.RegressionDetected):
        cmp.assert_not_worse("pinball@0.9")
    flipped = assay.compare(data, task="regression", label="y", scores={"q": "q", "p": "p"},
                            metrics=["mae"], quantiles=[0.9], bootstrap=200)
    flipped.assert_not_worse("pinball@0.9")


def test_errors_beyond_the_float64_range_are_notes_not_numbers():
    rep = assay.evaluate({"y": [-1e308, 1e308], "p": [1e308, -1e308]}, task="regression",
                         label="y", prediction="p", metrics=["mean_error", "max_error", "mae"])
    row = rep.table.row(0, named=True)
    assert row["max_error"] is None and row["mae"] is None
    notes = rep.long().filter(pl.col("value").is_null())["note"].to_list()
    assert notes and all("not representable" in x for x in notes)


def test_overall_row_is_the_same_with_and_without_slices():
    # The overall slice's state does not depend on the slice specs next to it.
    t = _data(100_000, seed=13)
    kw = dict(task="regression", label="y", prediction="p", weight="w")
    alone = assay.evaluate(t, **kw).table
    cross = ("city", assay.bins("sqft", edges=[50, 150]))
    sliced = assay.evaluate(t, slices=["city", cross], **kw).table.head(1)
    _same(sliced.select(alone.columns), alone)
