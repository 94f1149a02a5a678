"""assay.ensemble_report: the majority-vote examples of the issue and the pairwise diversity
measures against numpy / scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm


def test_three_independent_70_percent_classifiers(assay):
    n = 200_000
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, n)
    data = {"y": y}
    for m in ("m1", "m2", "m3"):
        right = rng.random(n) < 0.7  # independent errors
        data[m] = np.where(right, y, 1 - y)
    rep = assay.ensemble_report(data, label="y", predictions=["m1", "m2", "m3"])
    expected = 0.7**3 + 3 * 0.7**2 * 0.3  # 0.343 + 0.441
    assert expected == pytest.approx(0.784)
    se = np.sqrt(expected * (1 - expected) / n)
    assert abs(rep.majority_accuracy - expected) < 4 * se
    for acc in rep.table["accuracy"][:3]:
        assert abs(acc - 0.7) < 4 * np.sqrt(0.21 / n)
    assert (rep.pairwise["error_correlation"].abs() < 0.01).all()


def test_perfectly_correlated_classifiers(assay):
    y = np.tile([0, 1], 500)
    pred = np.where(np.arange(1000) < 700, y, 1 - y)  # right on exactly 70% of rows
    data = {"y": y, "m1": pred, "m2": pred.copy(), "m3": pred.copy()}
    rep = assay.ensemble_report(data, label="y", predictions=["m1", "m2", "m3"])
    assert rep.majority_accuracy == 0.7
    assert rep.table["accuracy"].to_list() == [0.7, 0.7, 0.7, 0.7]
    assert rep.pairwise["error_correlation"].to_list() == pytest.approx([1.0] * 3)
    assert rep.pairwise["kappa"].to_list() == pytest.approx([1.0] * 3)
    assert rep.pairwise["disagreement"].to_list() == [0.0] * 3
    assert "majority vote accuracy 0.7" in repr(rep)


@pytest.mark.parametrize("weighted", [False, True])
def test_pairwise_against_references(assay, weighted):
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.integers(0, 2, n)
    scores = {f"m{i}": np.clip(0.3 * y + 0.7 * rng.random(n) + 0.05 * i, 0, 1)
              for i in range(4)}
    w = rng.uniform(0.5, 3.0, n) if weighted else None
    data = {"y": y, **scores} | ({"w": w} if weighted else {})
    names = list(scores)
    rep = assay.ensemble_report(data, label="y", predictions=names, threshold=0.6,
                                weight="w" if weighted else None)
    preds = {m: (s >= 0.6).astype(int) for m, s in scores.items()}
    for m, acc in zip(rep.table["member"][:4], rep.table["accuracy"][:4], strict=True):
        assert acc == pytest.approx(skm.accuracy_score(y, preds[m], sample_weight=w))
    votes = sum(preds.values())
    vote = (2 * votes > 4).astype(int)  # a 2-2 tie is a negative vote
    assert rep.majority_accuracy == pytest.approx(skm.accuracy_score(y, vote, sample_weight=w))
    ww = np.ones(n) if w is None else w
    for row in rep.pairwise.iter_rows(named=True):
        a, b = preds[row["a"]], preds[row["b"]]
        ea, eb = (a != y).astype(float), (b != y).astype(float)
        cov = np.cov(ea, eb, aweights=ww)
        assert row["error_correlation"] == pytest.approx(cov[0, 1] / np.sqrt(cov[0, 0] *
                                                                              cov[1, 1]))
        assert row["kappa"] == pytest.approx(skm.cohen_kappa_score(a, b, sample_weight=w))
        assert row["disagreement"] == pytest.approx(np.average(a != b, weights=ww))
        assert row["double_fault"] == pytest.approx(np.average(ea * eb, weights=ww))
    assert rep.pairwise.height == 6


def test_undefined_pairwise_values_are_null(assay):
    y = np.array([0, 1, 0, 1])
    data = {"y": y, "perfect": y, "other": np.array([0, 1, 1, 1])}
    rep = assay.ensemble_report(data, label="y", predictions=["perfect", "other"])
    assert rep.pairwise["error_correlation"][0] is None  # the perfect member never errs


def test_bad_input(assay):
    data = {"y": np.array([0, 1, 1]), "a": np.array([0, 1, 0]), "b": np.array([1, 1, 0]),
            "s": np.array(["x", "y", "z"])}
    with pytest.raises(assay.InvalidArgumentError, match="at least two"):
        assay.ensemble_report(data, label="y", predictions=["a"])
    with pytest.raises(assay.InvalidArgumentError, match="twice"):
        assay.ensemble_report(data, label="y", predictions=["a", "a"])
    with pytest.raises(assay.InvalidArgumentError, match="list"):
        assay.ensemble_report(data, label="y", predictions="a")
    with pytest.raises(assay.ColumnNotFoundError, match="c"):
        assay.ensemble_report(data, label="y", predictions=["a", "c"])
    with pytest.raises(assay.SchemaError, match="s"):
        assay.ensemble_report(data, label="y", predictions=["a", "s"])
    with pytest.raises(assay.InvalidInputError, match="0/1"):
        assay.ensemble_report({**data, "y": np.array([0, 1, 3])}, label="y",
                              predictions=["a", "b"])
