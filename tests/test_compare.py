"""Paired model comparison: assay.compare and Comparison.assert_not_worse."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.errors import ColumnNotFoundError, InvalidArgumentError, RegressionDetected

METRICS = list(assay.METRICS)


def _data(n=6_000, seed=0, noise=0.25):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.int8)
    good = 1 / (1 + np.exp(-(rng.normal(0, 1.0, n) + 2.0 * y - 1.0)))
    noisy = np.clip(good + rng.normal(0, noise, n), 0, 1)
    return {"y": y, "good": good, "noisy": noisy, "g": rng.choice(["a", "b", "c"], n)}


@pytest.mark.parametrize("method", ["percentile", "basic", "bca"])
def test_a_model_against_itself_has_zero_delta_and_zero_width(method):
    cmp = assay.compare(_data(), label="y", scores={"a": "good", "b": "good"}, slices=["g"],
                        bootstrap=100, ci_method=method)
    t = cmp.table
    assert t.height == 4 * len(METRICS)
    assert (t["delta"] == 0).all() and (t["delta_lo"] == 0).all() and (t["delta_hi"] == 0).all()
    assert set(t["verdict"].to_list()) == {"no significant difference"}
    assert (t["p_value"] == 1).all()


def test_a_noised_copy_is_worse_and_the_reference_can_be_swapped():
    d = _data()
    cmp = assay.compare(d, label="y", scores={"old": "good", "new": "noisy"}, bootstrap=200)
    row = cmp.table.filter(metric="roc_auc", slice="overall").row(0, named=True)
    assert row["verdict"] == "worse" and row["delta_hi"] < 0 and row["p_value"] < 0.05
    ll = cmp.table.filter(metric="log_loss", slice="overall").row(0, named=True)
    assert ll["delta"] > 0 and ll["verdict"] == "worse"  # a higher loss is worse
    swapped = assay.compare(d, label="y", scores={"old": "good", "new": "noisy"},
                            reference="new", bootstrap=200)
    row2 = swapped.table.filter(metric="roc_auc", slice="overall").row(0, named=True)
    assert row2["model"] == "old" and row2["verdict"] == "better"
    assert row2["delta"] == pytest.approx(-row["delta"], abs=1e-15)


def test_deltas_are_differences_of_the_models_own_reports():
    d = _data()
    kw = dict(label="y", slices=["g"], bootstrap=100, seed=4)
    cmp = assay.compare(d, scores={"old": "good", "new": "noisy"}, **kw)
    old = assay.evaluate(d, score="good", **kw)
    new = assay.evaluate(d, score="noisy", **kw)
    # Each model's report inside the comparison is exactly its own evaluation.
    assert cmp.reports["old"].to_arrow().equals(old.to_arrow())
    assert cmp.reports["new"].to_arrow().equals(new.to_arrow())
    for r in cmp.table.iter_rows(named=True):
        a = old.table.filter(slice=r["slice"])[r["metric"]][0]
        b = new.table.filter(slice=r["slice"])[r["metric"]][0]
        assert r["old"] == a and r["new"] == b
        assert r["delta"] == pytest.approx(b - a, abs=1e-15)


def test_pairing_makes_the_difference_interval_narrower_than_the_models_own():
    d = _data(noise=0.05)
    cmp = assay.compare(d, label="y", scores={"old": "good", "new": "noisy"},
                        metrics=["roc_auc"], bootstrap=300)
    r = cmp.table.row(0, named=True)
    own = cmp.reports["old"].table
    width_own = own["roc_auc_hi"][0] - own["roc_auc_lo"][0]
    assert r["delta_hi"] - r["delta_lo"] < 0.5 * width_own


def test_three_models_give_one_row_per_compared_model_and_are_deterministic():
    d = _data()
    d["worse"] = np.clip(d["good"] + np.random.default_rng(9).normal(0, 0.5, len(d["y"])), 0, 1)
    kw = dict(label="y", scores={"base": "good", "n1": "noisy", "n2": "worse"},
              metrics=["accuracy", "roc_auc"], slices=["g"], bootstrap=100)
    one = assay.compare(d, n_threads=1, **kw)
    two = assay.compare(d, n_threads=2, **kw)
    assert one.to_arrow().equals(two.to_arrow())
    assert one.table.height == 4 * 2 * 2
    assert set(one.table["model"].to_list()) == {"n1", "n2"}
    assert {"base", "n1", "n2"} <= set(one.table.columns)
    table = pa.table(d)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=50))
    split = assay.compare(reader, **kw)
    np.testing.assert_allclose(split.table["delta_lo"].to_numpy(),
                               one.table["delta_lo"].to_numpy(), rtol=1e-12, atol=1e-12)


def test_rows_missing_any_score_are_dropped_for_all_models():
    d = _data(500)
    d["noisy"] = d["noisy"].copy()
    d["noisy"][:7] = np.nan
    cmp = assay.compare(d, label="y", scores={"a": "good", "b": "noisy"}, metrics=["accuracy"],
                        bootstrap=50, nan_policy="drop")
    assert cmp.reports["a"].dropped == 7
    assert cmp.reports["a"].table["n"][0] == cmp.reports["b"].table["n"][0] == 493
    with pytest.raises(assay.InvalidInputError, match="noisy"):
        assay.compare(d, label="y", scores={"a": "good", "b": "noisy"}, bootstrap=50)


def test_assert_not_worse_gates_on_the_interval():
    d = _data()
    cmp = assay.compare(d, label="y", scores={"old": "good", "new": "noisy"}, slices=["g"],
                        bootstrap=200)
    with pytest.raises(RegressionDetected, match="roc_auc") as err:
        cmp.assert_not_worse(metric="roc_auc", margin=0.005)
    assert err.value.slices.height == 4  # overall and the three slices
    assert isinstance(err.value, AssertionError) and isinstance(err.value, assay.AssayError)
    cmp.assert_not_worse(metric="roc_auc", margin=0.9)  # a huge margin tolerates it
    with pytest.raises(RegressionDetected, match="log_loss"):
        cmp.assert_not_worse(metric="log_loss", margin=0.0)
    same = assay.compare(d, label="y", scores={"old": "good", "new": "good"}, bootstrap=100)
    same.assert_not_worse(metric="roc_auc", margin=0.0)
    with pytest.raises(InvalidArgumentError, match="was not compared"):
        same.assert_not_worse(metric="auc")
    with pytest.raises(InvalidArgumentError, match="margin"):
        same.assert_not_worse(metric="roc_auc", margin=-1)
    with pytest.raises(InvalidArgumentError, match="margin"):
        same.assert_not_worse(metric="roc_auc", margin=float("nan"))
    same.assert_not_worse(metric="roc_auc", margin=np.int64(0))
    with pytest.raises(InvalidArgumentError, match="model"):
        same.assert_not_worse(metric="roc_auc", model=["new"])
    with pytest.raises(InvalidArgumentError, match="direction"):
        same.assert_not_worse(metric="base_rate")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(scores={"a": "good"}), InvalidArgumentError, "at least two"),
        (dict(scores="good"), InvalidArgumentError, "scores"),
        (dict(scores={"a": "good", "b": "nope"}), ColumnNotFoundError, "nope"),
        (dict(scores={"a": "good", "b": "noisy"}, reference="c"), InvalidArgumentError, "c"),
        (dict(scores={"a": "good", "b": "noisy"}, ci_method="analytic"), InvalidArgumentError,
         "ci_method"),
        (dict(scores={"a": "good", "b": "noisy"}, bootstrap=None), InvalidArgumentError,
         "bootstrap"),
        (dict(scores={"a": "good", "b": "noisy"}, bootstrap=1), InvalidArgumentError,
         "bootstrap"),
        (dict(scores={"delta": "good", "b": "noisy"}), InvalidArgumentError, "rename"),
    ],
)
def test_bad_comparisons_raise_typed_errors(kwargs, error, match):
    kwargs.setdefault("bootstrap", 20)
    with pytest.raises(error, match=match):
        assay.compare(_data(300), label="y", **kwargs)


def test_a_list_of_columns_names_the_models_by_column():
    cmp = assay.compare(_data(800), label="y", scores=["good", "noisy"], metrics=["accuracy"],
                        bootstrap=30)
    assert cmp.reference == "good" and cmp.table["model"].to_list() == ["noisy"]
