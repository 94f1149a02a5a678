"""assay.baselines: closed-form random baselines (the issue's worked example), the model and
heuristic rows against assay.evaluate, lift, simulation, and bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

CONFUSION = ["accuracy", "balanced_accuracy", "precision", "recall", "specificity", "fpr",
             "fnr", "f1", "mcc", "prediction_rate", "base_rate"]


def _imbalanced(n_neg=900, n_pos=100):
    y = np.r_[np.zeros(n_neg, dtype=np.int64), np.ones(n_pos, dtype=np.int64)]
    p = np.where(y == 1, 0.8, 0.3)
    return {"y": y, "p": p}


def _row(tab, slice_, baseline):
    rows = tab.filter((pl.col("slice") == slice_) & (pl.col("baseline") == baseline)).to_dicts()
    assert len(rows) == 1
    return rows[0]


def _fractional_reference(metric, y, q, w=None):
    """The metric of a classifier that predicts positive with probability q, from sklearn on
    the data doubled: each row once predicted positive (weight q) and once negative (1 - q).
    This is the metric of the expected confusion counts."""
    w = np.ones(len(y)) if w is None else w
    yy = np.r_[y, y]
    pred = np.r_[np.ones(len(y)), np.zeros(len(y))]
    sw = np.r_[w * q, w * (1 - q)]
    keep = sw > 0
    yy, pred, sw = yy[keep], pred[keep], sw[keep]
    if metric == "accuracy":
        return skm.accuracy_score(yy, pred, sample_weight=sw)
    if metric == "precision":
        return skm.precision_score(yy, pred, sample_weight=sw, zero_division=np.nan)
    if metric == "recall":
        return skm.recall_score(yy, pred, sample_weight=sw)
    if metric == "f1":
        return skm.f1_score(yy, pred, sample_weight=sw, zero_division=np.nan)
    if metric == "balanced_accuracy":
        return skm.balanced_accuracy_score(yy, pred, sample_weight=sw)
    if metric == "specificity":
        return skm.recall_score(yy, pred, pos_label=0, sample_weight=sw)
    raise AssertionError(metric)


def test_issue_example_90_10(assay):
    tab = assay.baselines(_imbalanced(), label="y", score="p",
                          metrics=["accuracy", "f1", "precision", "recall", "mcc"])
    assert tab["baseline"].to_list() == ["model", "uniform_random", "label_distribution",
                                         "zero_rule"]
    uni = _row(tab, "overall", "uniform_random")
    assert round(uni["f1"], 3) == 0.167
    assert uni["f1"] == pytest.approx(1 / 6, abs=1e-15)
    assert uni["accuracy"] == pytest.approx(0.5, abs=1e-15)
    lab = _row(tab, "overall", "label_distribution")
    assert lab["f1"] == pytest.approx(0.1, abs=1e-15)
    assert lab["accuracy"] == pytest.approx(0.82, abs=1e-15)
    assert lab["mcc"] == pytest.approx(0.0, abs=1e-15)
    zero = _row(tab, "overall", "zero_rule")
    assert zero["accuracy"] == pytest.approx(0.9, abs=1e-15)
    assert zero["f1"] == 0.0
    assert zero["precision"] is None  # no predicted positives: undefined, as in evaluate
    assert zero["mcc"] is None
    model = _row(tab, "overall", "model")
    assert model["accuracy"] == 1.0 and model["lift"] == 0.0
    assert uni["lift"] == pytest.approx(1 - 1 / 6)
    assert zero["lift"] == pytest.approx(1.0)


@pytest.mark.parametrize("weighted", [False, True])
def test_closed_forms_match_fractional_sklearn_reference(assay, weighted):
    rng = np.random.default_rng(3)
    n = 3000
    y = (rng.random(n) < 0.27).astype(np.int64)
    p = np.clip(0.4 * y + 0.6 * rng.random(n), 0, 1)
    g = rng.choice(["a", "b", "c"], n)
    w = rng.uniform(0.2, 3.0, n) if weighted else None
    data = {"y": y, "p": p, "g": g} | ({"w": w} if weighted else {})
    metrics = ["accuracy", "precision", "recall", "f1", "balanced_accuracy", "specificity"]
    tab = assay.baselines(data, label="y", score="p", slices=["g"], metrics=metrics,
                          weight="w" if weighted else None)
    prior = float(np.average(y, weights=w))
    rep = assay.evaluate(data, label="y", score="p", slices=["g"], metrics=metrics,
                         weight="w" if weighted else None).table
    for sl in ["overall", "g=a", "g=b", "g=c"]:
        mask = np.ones(n, bool) if sl == "overall" else g == sl[2:]
        ws = None if w is None else w[mask]
        for base, q in [("uniform_random", 0.5), ("label_distribution", prior),
                        ("zero_rule", 0.0)]:
            row = _row(tab, sl, base)
            for m in metrics:
                if base == "zero_rule" and m == "precision":
                    assert row[m] is None
                    continue
                ref = _fractional_reference(m, y[mask], q, ws)
                assert row[m] == pytest.approx(ref, rel=1e-9, abs=1e-12), (sl, base, m)
        model = _row(tab, sl, "model")
        ev = rep.filter(pl.col("slice") == sl).to_dicts()[0]
        for m in metrics:
            assert model[m] == pytest.approx(ev[m], rel=1e-12), (sl, m)
        if weighted:
            assert model["weight_sum"] == pytest.approx(ws.sum())


def test_slice_order_rows_and_columns(assay):
    rng = np.random.default_rng(0)
    n = 500
    data = {"y": rng.integers(0, 2, n), "p": rng.random(n), "g": rng.choice(["x", "y"], n)}
    tab = assay.baselines(data, label="y", score="p", slices=["g"], heuristic="p",
                          metrics=["accuracy", "roc_auc"], lift_metric="accuracy")
    assert tab.columns == ["slice", "baseline", "n", "accuracy", "roc_auc", "lift"]
    assert tab["slice"].to_list() == ["overall"] * 5 + ["g=x"] * 5 + ["g=y"] * 5
    assert tab["baseline"].to_list()[:5] == list(assay.BASELINES)
    for base in ["uniform_random", "label_distribution", "zero_rule"]:
        assert _row(tab, "overall", base)["roc_auc"] == 0.5
    # the heuristic is the model here: identical rows, zero lift
    h, m = _row(tab, "g=x", "heuristic"), _row(tab, "g=x", "model")
    assert h["accuracy"] == m["accuracy"] and h["lift"] == 0.0


def test_heuristic_bool_column_and_threshold(assay):
    rng = np.random.default_rng(1)
    n = 400
    y = rng.integers(0, 2, n)
    rule = rng.random(n) < 0.5
    score = rng.random(n)
    data = {"y": y, "p": rng.random(n), "rule": rule, "hs": score}
    tab = assay.baselines(data, label="y", score="p", heuristic="rule", metrics=["accuracy"])
    assert _row(tab, "overall", "heuristic")["accuracy"] == pytest.approx(
        skm.accuracy_score(y, rule.astype(int)))
    tab = assay.baselines(data, label="y", score="p", heuristic="hs", heuristic_threshold=0.8,
                          metrics=["accuracy"])
    assert _row(tab, "overall", "heuristic")["accuracy"] == pytest.approx(
        skm.accuracy_score(y, (score >= 0.8).astype(int)))


def test_prior_sets_label_distribution_and_zero_rule(assay):
    data = _imbalanced()
    tab = assay.baselines(data, label="y", score="p", prior=0.7, metrics=["accuracy", "recall"])
    lab = _row(tab, "overall", "label_distribution")
    assert lab["accuracy"] == pytest.approx(0.7 * 0.1 + 0.3 * 0.9)
    assert lab["recall"] == pytest.approx(0.7)
    zero = _row(tab, "overall", "zero_rule")  # training majority is positive
    assert zero["accuracy"] == pytest.approx(0.1) and zero["recall"] == 1.0


def test_lift_is_direction_aware(assay):
    tab = assay.baselines(_imbalanced(), label="y", score="p", metrics=["fpr", "accuracy"],
                          lift_metric="fpr")
    uni = _row(tab, "overall", "uniform_random")
    assert uni["fpr"] == pytest.approx(0.5)
    assert uni["lift"] == pytest.approx(0.5)  # model fpr 0, lower is better: positive lift


def test_simulation_agrees_with_closed_form(assay):
    rng = np.random.default_rng(5)
    n = 20_000
    y = (rng.random(n) < 0.1).astype(np.int64)
    tab = assay.baselines({"y": y, "p": rng.random(n)}, label="y", score="p",
                          metrics=["accuracy", "f1"], simulate=20, seed=1)
    for base in ["uniform_random", "label_distribution"]:
        row = _row(tab, "overall", base)
        assert row["accuracy_sim"] == pytest.approx(row["accuracy"], abs=0.006)
        assert row["f1_sim"] == pytest.approx(row["f1"], abs=0.006)
    assert _row(tab, "overall", "model")["accuracy_sim"] is None
    again = assay.baselines({"y": y, "p": rng.random(n)}, label="y", score="p",
                            metrics=["accuracy", "f1"], simulate=20, seed=1)
    assert again["accuracy_sim"].to_list() == tab["accuracy_sim"].to_list()


def test_min_slice_size_nulls_every_baseline(assay):
    data = {"y": np.array([0, 1, 0, 1, 1]), "p": np.array([0.2, 0.7, 0.4, 0.9, 0.1]),
            "g": np.array(["a", "a", "a", "a", "b"])}
    tab = assay.baselines(data, label="y", score="p", slices=["g"], min_slice_size=2,
                          metrics=["accuracy"])
    small = tab.filter(pl.col("slice") == "g=b")
    assert small["accuracy"].null_count() == small.height == 4


def test_bad_input(assay):
    data = _imbalanced()
    with pytest.raises(assay.InvalidArgumentError, match="log_loss"):
        assay.baselines(data, label="y", score="p", metrics=["log_loss"])
    with pytest.raises(assay.InvalidArgumentError, match="lift_metric"):
        assay.baselines(data, label="y", score="p", metrics=["accuracy"], lift_metric="f1")
    with pytest.raises(assay.InvalidArgumentError, match="direction"):
        assay.baselines(data, label="y", score="p", metrics=["base_rate"])
    with pytest.raises(assay.InvalidArgumentError, match="prior"):
        assay.baselines(data, label="y", score="p", prior=1.5)
    with pytest.raises(assay.InvalidArgumentError, match="simulate"):
        assay.baselines(data, label="y", score="p", simulate=0)
    with pytest.raises(assay.InvalidArgumentError, match="nope"):
        assay.baselines(data, label="y", score="p", metrics=["nope"])
    with pytest.raises(assay.ColumnNotFoundError, match="yy"):
        assay.baselines(data, label="yy", score="p")
    with pytest.raises(assay.ColumnNotFoundError, match="rule"):
        assay.baselines(data, label="y", score="p", heuristic="rule")
    with pytest.raises(assay.InvalidInputError, match="0/1"):
        assay.baselines({"y": np.array([0, 2]), "p": np.array([0.1, 0.2])}, label="y",
                        score="p")
    with pytest.raises(assay.EmptyInputError):
        assay.baselines({"y": np.array([], dtype=np.int64), "p": np.array([])}, label="y",
                        score="p")
