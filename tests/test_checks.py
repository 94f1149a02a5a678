"""Behavioural checks (assay.checks) and the noise helpers (assay.noise): results against
brute-force references, batching and input kinds, reproducibility, and every bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn import metrics as skm


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 10, n)
    df = pl.DataFrame({
        "income": income,
        "age": rng.integers(18, 80, n),
        "city": rng.choice(["Lima", "Oslo", "Pune"], n),
        "gender": rng.choice(["F", "M", "X"], n),
    })
    logit = (income - 50) / 6 + 0.02 * (df["age"].to_numpy() - 50)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return df.with_columns(pl.Series("y", y))


def _score(income, age):
    return 1 / (1 + np.exp(-((income - 50) / 6 + 0.02 * (age - 50))))


def model(batch):
    """Uses income and age only (never city or gender)."""
    return _score(batch["income"].to_numpy(), batch["age"].to_numpy().astype(float))


# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------


def test_gaussian_noise(assay):
    x = np.full(200_000, 10.0)
    add = assay.noise.gaussian(0.5, seed=1)(x)
    assert isinstance(add, np.ndarray) and add.shape == x.shape
    assert np.mean(add - x) == pytest.approx(0.0, abs=0.01)
    assert np.std(add - x) == pytest.approx(0.5, rel=0.01)
    rel = assay.noise.gaussian(0.1, relative=True, seed=1)(x)
    assert np.std(rel / x - 1) == pytest.approx(0.1, rel=0.01)
    # reproducible with a seed, and from a passed generator
    assert np.array_equal(assay.noise.gaussian(0.5, seed=1)(x), add)
    g = assay.noise.gaussian(0.5)
    a = g(x, rng=np.random.default_rng(7))
    b = g(x, rng=np.random.default_rng(7))
    assert np.array_equal(a, b)
    s = pl.Series("inc", [1.0, None, 3.0, float("nan")])
    out = assay.noise.gaussian(1.0, seed=0)(s)
    assert isinstance(out, pl.Series) and out.name == "inc" and out.dtype == pl.Float64
    assert out.is_null().to_list() == [False, True, False, False]
    assert np.isnan(out[3])
    ints = assay.noise.gaussian(0.0)(pl.Series("a", [1, 2]))
    assert ints.to_list() == [1.0, 2.0]


def test_swap_noise(assay):
    rng = np.random.default_rng(0)
    x = rng.permutation(10_000)  # distinct values: every moved row changes
    out = assay.noise.swap(0.1, seed=3)(x)
    assert sorted(out) == sorted(x)
    moved = (out != x).mean()
    assert moved == pytest.approx(0.1, abs=0.01)
    s = pl.Series("city", ["a", "b", "c", "d", "e", "f"]).cast(pl.Categorical)
    out = assay.noise.swap(1.0, seed=0)(s)
    assert out.dtype == s.dtype and sorted(out.to_list()) == sorted(s.to_list())
    assert (out.cast(pl.String) != s.cast(pl.String)).all()
    assert assay.noise.swap(0.0, seed=0)(s).to_list() == s.to_list()


def test_missing_noise(assay):
    x = np.arange(100_000, dtype=np.float64)
    out = assay.noise.missing(0.2, seed=0)(x)
    assert np.isnan(out).mean() == pytest.approx(0.2, abs=0.01)
    ints = assay.noise.missing(0.5, seed=0)(np.arange(10))
    assert ints.dtype == np.float64 and np.isnan(ints).any()
    s = pl.Series("age", list(range(1000)))
    out = assay.noise.missing(0.3, seed=2)(s)
    assert out.dtype == pl.Int64 and out.null_count() == pytest.approx(300, abs=60)
    filled = assay.noise.missing(1.0, value=-1, seed=2)(s)
    assert set(filled.to_list()) == {-1}
    strs = assay.noise.missing(1.0, value="unknown")(pl.Series(["a", "b"]))
    assert strs.to_list() == ["unknown", "unknown"]


def test_noise_bad_input(assay):
    with pytest.raises(assay.InvalidArgumentError, match="scale"):
        assay.noise.gaussian(-1.0)
    with pytest.raises(assay.InvalidArgumentError, match="rate"):
        assay.noise.swap(1.5)
    with pytest.raises(assay.InvalidArgumentError, match="rate"):
        assay.noise.missing(-0.1)
    with pytest.raises(assay.InvalidArgumentError, match="seed"):
        assay.noise.missing(0.1, seed=-3)
    with pytest.raises(assay.SchemaError, match="numeric"):
        assay.noise.gaussian(0.1)(pl.Series("c", ["a", "b"]))
    with pytest.raises(assay.InvalidArgumentError, match="Series or a numpy array"):
        assay.noise.gaussian(0.1)([1.0, 2.0])
    with pytest.raises(assay.InvalidArgumentError, match="does not fit"):
        assay.noise.missing(1.0, value="x")(pl.Series("a", [1, 2]))
    with pytest.raises(assay.InvalidArgumentError, match="Generator"):
        assay.noise.swap(0.1)(np.arange(3), rng=0)


# --------------------------------------------------------------------------------------------
# perturbation
# --------------------------------------------------------------------------------------------


def test_perturbation_against_brute_force(assay):
    df = _data()
    shift = 3.0
    res = assay.checks.perturbation(
        model, df, label="y", slices=["city"], repeats=2, metrics=["accuracy", "roc_auc"],
        perturb={"income": lambda col: col + shift},
    )
    y = df["y"].to_numpy()
    clean = model(df)
    pert = _score(df["income"].to_numpy() + shift, df["age"].to_numpy().astype(float))
    t = res.table
    assert t["perturbed"].unique().to_list() == ["income"]
    assert t["slice"].to_list() == ["overall", "city=Lima", "city=Oslo", "city=Pune"]
    for row in t.iter_rows(named=True):
        m = np.ones(len(y), bool) if row["slice"] == "overall" else \
            df["city"].to_numpy() == row["slice"].split("=")[1]
        assert row["n"] == m.sum()
        assert row["flip_rate"] == pytest.approx(((clean[m] >= .5) != (pert[m] >= .5)).mean())
        assert row["mean_abs_change"] == pytest.approx(np.abs(pert[m] - clean[m]).mean())
        assert row["max_abs_change"] == pytest.approx(np.abs(pert[m] - clean[m]).max())
        acc_c = skm.accuracy_score(y[m], clean[m] >= .5)
        acc_p = skm.accuracy_score(y[m], pert[m] >= .5)
        assert row["accuracy_clean"] == pytest.approx(acc_c)
        assert row["accuracy_perturbed"] == pytest.approx(acc_p)
        assert row["accuracy_delta"] == pytest.approx(acc_p - acc_c)
        assert row["roc_auc_perturbed"] == pytest.approx(skm.roc_auc_score(y[m], pert[m]))


def test_perturbation_ignored_column_and_separately(assay):
    df = _data(2000)
    res = assay.checks.perturbation(
        model, df, label="y", repeats=2, separately=True, max_flip_rate=0.5,
        perturb={"income": assay.noise.gaussian(0.05, relative=True),
                 "city": assay.noise.swap(0.3), "gender": assay.noise.missing(0.2)},
    )
    t = res.table
    assert t["perturbed"].to_list() == ["income+city+gender", "income", "city", "gender"]
    by = dict(zip(t["perturbed"], t["flip_rate"], strict=True))
    assert by["city"] == 0.0 and by["gender"] == 0.0  # the model ignores them
    # the same column gets the same noise alone or together: identical flips
    assert by["income"] == by["income+city+gender"] > 0
    assert res.passed and "PASSED" in repr(res)


def test_perturbation_is_reproducible_and_seeded(assay):
    df = _data(1500)
    kw = dict(label="y", repeats=3, perturb={"income": assay.noise.gaussian(0.1, relative=True)})
    a = assay.checks.perturbation(model, df, seed=4, **kw).table
    b = assay.checks.perturbation(model, df, seed=4, **kw).table
    c = assay.checks.perturbation(model, df, seed=5, **kw).table
    assert a.equals(b)
    assert not a.equals(c)
    seen = []

    def custom(col, rng):
        seen.append(rng.integers(0, 1 << 30))
        return col + rng.normal(0, 1, col.len())

    assay.checks.perturbation(model, df, label="y", repeats=3, seed=1,
                              perturb={"income": custom})
    assert len(seen) == 3 and len(set(seen)) == 3  # a fresh generator per repeat


def test_perturbation_bootstrap_intervals(assay):
    df = _data(2000)
    kw = dict(label="y", repeats=2, slices=["city"], metrics=["accuracy"],
              perturb={"income": assay.noise.gaussian(0.2, relative=True)})
    plain = assay.checks.perturbation(model, df, **kw)
    boot = assay.checks.perturbation(model, df, bootstrap=200, **kw)
    t = boot.table
    assert {"accuracy_delta_lo", "accuracy_delta_hi"} <= set(t.columns)
    np.testing.assert_allclose(t["accuracy_delta"], plain.table["accuracy_delta"], atol=1e-12)
    assert (t["accuracy_delta_lo"] <= t["accuracy_delta"]).all()
    assert (t["accuracy_delta"] <= t["accuracy_delta_hi"]).all()
    cmp = boot.comparison["income"]
    assert isinstance(cmp, assay.Comparison)


def test_perturbation_limits(assay):
    df = _data(2000)
    res = assay.checks.perturbation(
        model, df, label="y", slices=["city"], repeats=1, max_flip_rate=0.01,
        max_drop={"accuracy": 0.001}, metrics=["accuracy", "roc_auc"],
        perturb={"income": assay.noise.gaussian(0.5, relative=True)},
    )
    assert not res.passed and not bool(res)
    crit = set(res.failures["criterion"].to_list())
    assert crit == {"flip_rate", "accuracy_drop"}
    assert set(res.failures["slice"].to_list()) == {"overall", "city=Lima", "city=Oslo",
                                                    "city=Pune"}
    assert "FAILED" in repr(res) and "accuracy_drop <= 0.001" in repr(res)


@pytest.mark.parametrize("kind,cls", [("polars", pl.DataFrame), ("pandas", pd.DataFrame),
                                      ("arrow", pa.Table), ("numpy", np.ndarray)])
def test_batches_and_input_kinds(assay, kind, cls):
    df = _data(30).select("income", "age", "y")
    sizes = []

    def m(batch):
        assert isinstance(batch, cls)
        sizes.append(len(batch))
        if kind == "numpy":
            return _score(batch[:, 0], batch[:, 1].astype(float))
        if kind == "arrow":
            return _score(batch["income"].to_numpy(), batch["age"].to_numpy().astype(float))
        return _score(np.asarray(batch["income"]), np.asarray(batch["age"], dtype=float))

    res = assay.checks.perturbation(m, df, label="y", perturb={"income": lambda c: c * 1.1},
                                    repeats=2, batch_size=7, input=kind)
    assert sizes == [7, 7, 7, 7, 2] * 3  # clean + 2 repeats, never per row
    ref = assay.checks.perturbation(model, df, label="y", perturb={"income": lambda c: c * 1.1},
                                    repeats=2)
    np.testing.assert_allclose(res.table["flip_rate"], ref.table["flip_rate"])


@pytest.mark.parametrize("output", ["sklearn_proba", "column", "list", "series", "bool"])
def test_accepted_model_outputs(assay, output):
    df = _data(50).select("income", "age", "y")

    def m(batch):
        s = model(batch)
        return {"sklearn_proba": lambda: np.c_[1 - s, s], "column": lambda: s[:, None],
                "list": lambda: s.tolist(), "series": lambda: pl.Series(s),
                "bool": lambda: s >= 0.5}[output]()

    res = assay.checks.perturbation(m, df, label="y", perturb={"age": lambda c: c + 1})
    assert res.table.height == 1


def _bad_models():
    def raises(batch):
        if batch["income"][0] > -1e9 and len(sizes) >= 1:
            raise RuntimeError("boom")
        sizes.append(1)
        return model(batch)

    sizes: list[int] = []
    return {
        "raises": raises,
        "short": lambda b: model(b)[:-1],
        "nan": lambda b: np.where(np.arange(len(b)) == 3, np.nan, model(b)),
        "strings": lambda b: np.array(["a"] * len(b)),
        "none": lambda b: None,
        "matrix": lambda b: np.zeros((len(b), 3)),
    }


@pytest.mark.parametrize("which", ["raises", "short", "nan", "strings", "none", "matrix"])
def test_bad_model_errors_name_check_and_batch(assay, which):
    df = _data(40).select("income", "age", "y")
    m = _bad_models()[which]
    exc = assay.ModelError if which == "raises" else assay.ModelOutputError
    with pytest.raises(exc) as ei:
        assay.checks.perturbation(m, df, label="y", perturb={"age": lambda c: c + 1},
                                  batch_size=16)
    err = ei.value
    assert isinstance(err, assay.AssayError)
    msg = str(err)
    assert "checks.perturbation" in msg and "batch" in msg
    assert err.check == "perturbation"
    if which == "raises":
        assert err.batch == 1 and "boom" in msg and "rows 16-31" in msg
    else:
        assert err.batch == 0
    if which == "nan":
        assert "row 3" in msg
    # the other checks name themselves too
    with pytest.raises(exc, match="checks.invariance"):
        assay.checks.invariance(_bad_models()[which], _data(40), column="gender",
                                batch_size=16)
    with pytest.raises(exc, match="checks.directional"):
        assay.checks.directional(_bad_models()[which], _data(40), column="age", delta=1,
                                 batch_size=16)


def test_perturbation_bad_arguments(assay):
    df = _data(50)
    with pytest.raises(assay.InvalidArgumentError, match="nope"):
        assay.checks.perturbation(model, df, label="y", perturb={"nope": lambda c: c})
    with pytest.raises(assay.InvalidArgumentError, match="non-empty"):
        assay.checks.perturbation(model, df, label="y", perturb={})
    with pytest.raises(assay.InvalidArgumentError, match="function"):
        assay.checks.perturbation(model, df, label="y", perturb={"income": 3})
    with pytest.raises(assay.InvalidArgumentError, match="returned 49 values"):
        assay.checks.perturbation(model, df, label="y", perturb={"income": lambda c: c[1:]})
    with pytest.raises(assay.InvalidArgumentError, match="raised ZeroDivisionError"):
        assay.checks.perturbation(model, df, label="y", perturb={"income": lambda c: 1 / 0})
    with pytest.raises(assay.InvalidArgumentError, match="input"):
        assay.checks.perturbation(model, df, label="y", perturb={"age": lambda c: c},
                                  input="torch")
    with pytest.raises(assay.InvalidArgumentError, match="batch_size"):
        assay.checks.perturbation(model, df, label="y", perturb={"age": lambda c: c},
                                  batch_size=0)
    with pytest.raises(assay.InvalidArgumentError, match="repeats"):
        assay.checks.perturbation(model, df, label="y", perturb={"age": lambda c: c},
                                  repeats=0)
    with pytest.raises(assay.InvalidArgumentError, match="callable"):
        assay.checks.perturbation("model", df, label="y", perturb={"age": lambda c: c})
    with pytest.raises(assay.InvalidArgumentError, match="max_drop"):
        assay.checks.perturbation(model, df, label="y", perturb={"age": lambda c: c},
                                  max_drop={"f1": 0.1})
    with pytest.raises(assay.ColumnNotFoundError, match="label"):
        assay.checks.perturbation(model, df, label="label", perturb={"age": lambda c: c})
    with pytest.raises(assay.ColumnNotFoundError, match="zip"):
        assay.checks.perturbation(model, df, label="y", perturb={"age": lambda c: c},
                                  features=["zip"])


# --------------------------------------------------------------------------------------------
# invariance
# --------------------------------------------------------------------------------------------


def _gendered(batch):
    g = np.asarray(batch["gender"]).astype(str)
    return model(batch) + np.where(g == "M", 0.05, np.where(g == "X", -0.02, 0.0))


def test_invariance_against_brute_force(assay):
    df = _data(2000)
    res = assay.checks.invariance(_gendered, df, column="gender", slices=["city"], n_worst=5)
    base = _gendered(df)
    g = df["gender"].to_numpy()
    city = df["city"].to_numpy()
    flips, changes, pairs = [], [], []
    for v in ["F", "M", "X"]:
        cf = _gendered(df.with_columns(pl.lit(v).alias("gender")))
        changed = g != v
        pairs.append(changed)
        flips.append(changed & ((cf >= .5) != (base >= .5)))
        changes.append(np.where(changed, np.abs(cf - base), np.nan))
    pairs, flips, changes = map(np.array, (pairs, flips, changes))
    for row in res.table.iter_rows(named=True):
        m = np.ones(len(g), bool) if row["slice"] == "overall" else \
            city == row["slice"].split("=")[1]
        assert row["n"] == m.sum()
        assert row["pairs"] == pairs[:, m].sum() == 2 * m.sum()
        assert row["flip_rate"] == pytest.approx(flips[:, m].sum() / pairs[:, m].sum())
        assert row["mean_abs_change"] == pytest.approx(np.nanmean(changes[:, m]))
        assert row["max_abs_change"] == pytest.approx(np.nanmax(changes[:, m]))
        assert row["violation_rate"] == 1.0
    assert not res.passed
    w = res.worst
    assert w.height == 5 and w.columns == ["row", "from", "to", "score",
                                           "counterfactual_score", "change"]
    assert np.allclose(np.abs(w["change"]), 0.07)  # M <-> X moves the score most
    assert set(zip(w["from"], w["to"], strict=True)) <= {("M", "X"), ("X", "M")}


def test_invariance_fair_model_and_tolerance(assay):
    df = _data(500)
    assert assay.checks.invariance(model, df, column="gender").passed
    res = assay.checks.invariance(_gendered, df, column="gender", tolerance=0.1,
                                  max_flip_rate=0.2)
    assert res.table["violation_rate"][0] == 0.0 and res.passed
    res = assay.checks.invariance(_gendered, df, column="gender", values=["F"])
    assert res.table["pairs"][0] == (df["gender"] != "F").sum()
    assert set(res.worst["to"].to_list()) == {"F"}


def test_invariance_categorical_and_integer_columns(assay):
    df = _data(300).with_columns(pl.col("gender").cast(pl.Categorical),
                                 (pl.col("city") == "Oslo").cast(pl.Int8).alias("oslo"))
    res = assay.checks.invariance(_gendered, df, column="gender", values=["M", "X"])
    assert res.table["flip_rate"][0] >= 0.0 and res.worst["to"].dtype == pl.String
    assert assay.checks.invariance(model, df, column="oslo").passed


def test_invariance_bad_input(assay):
    df = _data(100)
    with pytest.raises(assay.InvalidArgumentError, match="domain"):
        assay.checks.invariance(model, df, column="gender", values=["F", "Q"])
    with pytest.raises(assay.InvalidArgumentError, match="not in the data"):
        assay.checks.invariance(model, df, column="sex")
    with pytest.raises(assay.InvalidArgumentError, match="at least two"):
        assay.checks.invariance(model, df.with_columns(pl.lit("F").alias("gender")),
                                column="gender")
    with pytest.raises(assay.InvalidArgumentError, match="values"):
        assay.checks.invariance(model, df, column="gender", values="F")
    with pytest.raises(assay.InvalidArgumentError, match="tolerance"):
        assay.checks.invariance(model, df, column="gender", tolerance=-1)


# --------------------------------------------------------------------------------------------
# directional
# --------------------------------------------------------------------------------------------


def _bumpy(batch):
    inc = batch["income"].to_numpy()
    return model(batch) - 0.3 * ((inc > 60) & (inc < 62))


def test_directional_against_brute_force(assay):
    df = _data(3000)
    res = assay.checks.directional(_bumpy, df, column="income", delta=2.0, slices=["city"],
                                   n_worst=4)
    base = _bumpy(df)
    moved = _bumpy(df.with_columns(pl.col("income") + 2.0))
    change = moved - base
    city = df["city"].to_numpy()
    for row in res.table.iter_rows(named=True):
        m = np.ones(len(city), bool) if row["slice"] == "overall" else \
            city == row["slice"].split("=")[1]
        assert row["n"] == m.sum()
        assert row["violation_rate"] == pytest.approx((change[m] < 0).mean())
        assert row["mean_change"] == pytest.approx(change[m].mean())
        assert row["worst_change"] == pytest.approx(change[m].min())
    assert not res.passed
    order = np.argsort(change, kind="stable")[:4]
    assert sorted(res.worst["row"].to_list()) == sorted(order.tolist())
    assert (res.worst["change"] < 0).all()
    # a monotone model passes; a decrease expectation fails it
    assert assay.checks.directional(model, df, column="income", delta=2.0).passed
    dec = assay.checks.directional(model, df, column="income", delta=2.0, expect="decrease")
    assert dec.table["violation_rate"][0] == 1.0
    lenient = assay.checks.directional(_bumpy, df, column="income", delta=2.0,
                                       tolerance=0.5)
    assert lenient.passed


def test_directional_skips_nulls(assay):
    df = pl.DataFrame({"income": [40.0, None, 70.0], "age": [30, 40, 50]})
    res = assay.checks.directional(
        lambda b: np.nan_to_num(model(b.with_columns(pl.col("income").fill_null(0.0)))),
        df, column="income", delta=1.0)
    assert res.table["n"][0] == 2


def test_directional_bad_input(assay):
    df = _data(100)
    with pytest.raises(assay.SchemaError, match="numeric"):
        assay.checks.directional(model, df, column="city", delta=1)
    with pytest.raises(assay.InvalidArgumentError, match="not in the data"):
        assay.checks.directional(model, df, column="sqft", delta=1)
    with pytest.raises(assay.InvalidArgumentError, match="expect"):
        assay.checks.directional(model, df, column="income", delta=1, expect="up")
    with pytest.raises(assay.InvalidArgumentError, match="delta"):
        assay.checks.directional(model, df, column="income", delta="1")


def test_slices_match_evaluate_labels(assay):
    df = _data(1000).with_columns(pl.col("income").alias("inc2"))
    specs = ["city", ("city", "gender"), assay.bins("age", 4), assay.bins("inc2", 3)]
    res = assay.checks.directional(model, df, column="income", delta=1.0, slices=specs)
    rep = assay.evaluate(df.with_columns(pl.Series("p", model(df))), label="y", score="p",
                         slices=specs, metrics=["accuracy"])
    assert res.table["slice"].to_list() == rep.table["slice"].to_list()
    assert res.table["n"].to_list() == rep.table["n"].to_list()
