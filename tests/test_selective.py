"""assay.thresholds, assay.threshold_for and assay.selective against brute-force numpy and
scikit-learn references."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm


def _data(n=2000, seed=0, ties=True, weighted=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    if ties:
        p = np.round(p, 2)
    d = {"y": y, "p": p, "g": rng.choice(["a", "b", "c"], n)}
    if weighted:
        d["w"] = rng.uniform(0.2, 4.0, n)
    return d


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_thresholds_brute_force(assay, weighted):
    d = _data(weighted=weighted)
    tab = assay.thresholds(d, label="y", score="p", n=51, slices=["g"],
                           weight="w" if weighted else None)
    assert tab["slice"].unique(maintain_order=True).to_list() == ["overall", "g=a", "g=b",
                                                                  "g=c"]
    assert tab.height == 4 * 51
    if not weighted:
        assert tab["tp"].dtype == pl.Int64
    w = d["w"] if weighted else np.ones(len(d["y"]))
    for row in tab.iter_rows(named=True):
        m = np.ones(len(w), bool) if row["slice"] == "overall" else d["g"] == row["slice"][2:]
        y, p, ww = d["y"][m], d["p"][m], w[m]
        pred = p >= row["threshold"]
        tp = ww[pred & (y == 1)].sum()
        fp = ww[pred & (y == 0)].sum()
        tn = ww[~pred & (y == 0)].sum()
        fn = ww[~pred & (y == 1)].sum()
        for k, v in {"tp": tp, "fp": fp, "tn": tn, "fn": fn}.items():
            assert row[k] == pytest.approx(v, rel=1e-12, abs=1e-9)
        if tp + fp > 0:
            assert row["precision"] == pytest.approx(tp / (tp + fp))
        else:
            assert row["precision"] is None
        assert row["recall"] == pytest.approx(tp / (tp + fn))
        assert row["fpr"] == pytest.approx(fp / (fp + tn))
        assert row["accuracy"] == pytest.approx((tp + tn) / ww.sum())
        f1 = skm.f1_score(y, pred, sample_weight=ww, zero_division=0.0)
        assert row["f1"] == pytest.approx(f1)


def test_thresholds_match_precision_recall_curve(assay):
    d = _data(seed=3)
    prec, rec, thr = skm.precision_recall_curve(d["y"], d["p"])
    tab = assay.thresholds(d, label="y", score="p", at=thr)
    np.testing.assert_allclose(tab["threshold"], thr)
    np.testing.assert_allclose(tab["precision"], prec[:-1], rtol=1e-12)
    np.testing.assert_allclose(tab["recall"], rec[:-1], rtol=1e-12)
    fpr, tpr, roc_thr = skm.roc_curve(d["y"], d["p"], drop_intermediate=False)
    tab = assay.thresholds(d, label="y", score="p", at=roc_thr[1:])
    np.testing.assert_allclose(tab["fpr"], fpr[1:], rtol=1e-12)
    np.testing.assert_allclose(tab["recall"], tpr[1:], rtol=1e-12)


def test_thresholds_bad_input(assay):
    d = _data(50)
    with pytest.raises(assay.InvalidArgumentError, match="n must"):
        assay.thresholds(d, label="y", score="p", n=1)
    with pytest.raises(assay.InvalidArgumentError, match="at"):
        assay.thresholds(d, label="y", score="p", at=[0.5, float("nan")])
    with pytest.raises(assay.ColumnNotFoundError, match="score"):
        assay.thresholds(d, label="y", score="score")
    with pytest.raises(assay.InvalidInputError, match="non-finite"):
        assay.thresholds({"y": np.array([0, 1]), "p": np.array([0.1, np.inf])}, label="y",
                         score="p")
    with pytest.raises(assay.SchemaError):
        assay.thresholds(d, label="y", score="g")
    with pytest.raises(assay.SchemaError):
        assay.thresholds(d, label="y", score="p", slices=["p"])  # a float slice


# --------------------------------------------------------------------------------------------
# threshold_for
# --------------------------------------------------------------------------------------------


def _brute_threshold(y, p, w, target, goal):
    best = None
    for t in np.unique(p):
        pred = p >= t
        tp = w[pred & (y == 1)].sum()
        fp = w[pred & (y == 0)].sum()
        prec = tp / (tp + fp)
        rec = tp / w[y == 1].sum()
        fpr = fp / w[y == 0].sum()
        ok = {"precision": prec >= goal, "recall": rec >= goal, "fpr": fpr <= goal}[target]
        if not ok:
            continue
        if target == "recall":
            best = (t, prec, rec, fpr)  # keep the highest qualifying threshold
        elif best is None:
            best = (t, prec, rec, fpr)  # the lowest qualifying threshold
    return best


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("target,goal", [("precision", 0.6), ("precision", 0.8),
                                         ("recall", 0.5), ("recall", 0.95), ("fpr", 0.05),
                                         ("fpr", 0.0)])
def test_threshold_for_brute_force(assay, weighted, target, goal):
    d = _data(800, seed=11, weighted=weighted)
    kw = {"precision": "target_precision", "recall": "target_recall", "fpr": "max_fpr"}
    res = assay.threshold_for(d, label="y", score="p", weight="w" if weighted else None,
                              **{kw[target]: goal})
    w = d["w"] if weighted else np.ones(len(d["y"]))
    ref = _brute_threshold(d["y"], d["p"], w, target, goal)
    if ref is None:
        assert not res.met and res.threshold is None
        assert "no threshold" in repr(res)
        return
    assert res.met
    assert res.threshold == ref[0]
    assert res.precision == pytest.approx(ref[1])
    assert res.recall == pytest.approx(ref[2])
    assert res.fpr == pytest.approx(ref[3])
    row = res.table.row(0, named=True)
    assert row["threshold"] == ref[0] and row["target"] == target


def test_threshold_for_unreachable_precision(assay):
    d = {"y": np.array([0, 1, 0, 1]), "p": np.array([0.9, 0.8, 0.3, 0.2])}
    res = assay.threshold_for(d, label="y", score="p", target_precision=0.9)
    assert not res.met and res.threshold is None and res.precision is None


def test_threshold_for_bootstrap_intervals(assay):
    d = _data(3000, seed=2)
    res = assay.threshold_for(d, label="y", score="p", target_recall=0.8, bootstrap=300, seed=1)
    for m in ("precision", "recall", "fpr"):
        lo, v, hi = getattr(res, f"{m}_lo"), getattr(res, m), getattr(res, f"{m}_hi")
        assert lo <= v <= hi
    rep = assay.evaluate(d, label="y", score="p", threshold=res.threshold, bootstrap=300,
                         seed=1, metrics=["recall"]).table
    assert res.recall_lo == rep["recall_lo"][0] and res.recall_hi == rep["recall_hi"][0]
    assert "[" in repr(res)


def test_threshold_for_bad_input(assay):
    d = _data(100)
    with pytest.raises(assay.InvalidArgumentError, match="exactly one"):
        assay.threshold_for(d, label="y", score="p")
    with pytest.raises(assay.InvalidArgumentError, match="exactly one"):
        assay.threshold_for(d, label="y", score="p", target_precision=0.9, target_recall=0.9)
    for kw in [{"target_precision": 1.2}, {"target_recall": -0.1}, {"max_fpr": 2}]:
        with pytest.raises(assay.InvalidArgumentError, match=r"\[0, 1\]"):
            assay.threshold_for(d, label="y", score="p", **kw)
    with pytest.raises(assay.InvalidArgumentError):
        assay.threshold_for(d, label="y", score="p", max_fpr="0.1")
    with pytest.raises(assay.InvalidInputError, match="positive labels"):
        assay.threshold_for({"y": np.zeros(4), "p": np.linspace(0, 1, 4)}, label="y",
                            score="p", target_recall=0.5)
    with pytest.raises(assay.InvalidInputError, match="negative labels"):
        assay.threshold_for({"y": np.ones(4), "p": np.linspace(0, 1, 4)}, label="y",
                            score="p", max_fpr=0.5)


# --------------------------------------------------------------------------------------------
# selective
# --------------------------------------------------------------------------------------------


def _aurc_no_ties(y, p):
    conf = np.maximum(p, 1 - p)
    err = ((p >= 0.5) != (y == 1)).astype(float)
    order = np.argsort(-conf, kind="stable")
    k = np.arange(1, len(y) + 1)
    return np.mean(np.cumsum(err[order]) / k)


def test_selective_aurc_without_ties(assay):
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    g = rng.choice(["a", "b"], n)
    res = assay.selective({"y": y, "p": p, "g": g}, label="y", score="p", slices=["g"], n=10)
    t = res.table
    assert t["slice"].to_list() == ["overall", "g=a", "g=b"]
    for row in t.iter_rows(named=True):
        m = np.ones(n, bool) if row["slice"] == "overall" else g == row["slice"][2:]
        assert row["aurc"] == pytest.approx(_aurc_no_ties(y[m], p[m]), rel=1e-12)
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(y[m], p[m] >= 0.5))
        # optimal: all errors ranked last
        e = int(round((1 - row["accuracy"]) * m.sum()))
        k = np.arange(1, m.sum() + 1)
        opt = np.mean(np.maximum(0, k - (m.sum() - e)) / k)
        assert row["aurc_optimal"] == pytest.approx(opt, rel=1e-12)
        assert row["e_aurc"] == pytest.approx(row["aurc"] - opt)
    # the curve: risk of the ceil(c N) most confident rows
    curve = res.curve.filter(pl.col("slice") == "overall")
    conf = np.maximum(p, 1 - p)
    order = np.argsort(-conf, kind="stable")
    err = ((p >= 0.5) != (y == 1))[order]
    for row in curve.iter_rows(named=True):
        k = int(np.ceil(round(row["coverage"] * n, 9)))
        assert row["n_kept"] == k
        assert row["risk"] == pytest.approx(err[:k].mean())
        assert row["accuracy"] == pytest.approx(1 - err[:k].mean())
        assert row["min_confidence"] == conf[order][k - 1]


def test_selective_ties_are_averaged_over_tie_breaks(assay):
    # tie groups of confidence: every order of the tied rows, averaged, is the reference
    y = np.array([1, 0, 1, 0, 1, 1, 0])
    p = np.array([0.9, 0.9, 0.1, 0.7, 0.7, 0.7, 0.6])
    res = assay.selective({"y": y, "p": p}, label="y", score="p", n=7)
    conf = np.maximum(p, 1 - p)
    err = ((p >= 0.5) != (y == 1)).astype(float)
    groups = [np.flatnonzero(conf == c) for c in sorted(set(conf), reverse=True)]
    aurcs, risks = [], []
    for perms in itertools.product(*[itertools.permutations(gr) for gr in groups]):
        order = np.concatenate(perms)
        r = np.cumsum(err[order]) / np.arange(1, len(y) + 1)
        aurcs.append(r.mean())
        risks.append(r)
    assert res.table["aurc"][0] == pytest.approx(np.mean(aurcs), rel=1e-12)
    np.testing.assert_allclose(res.curve["risk"], np.mean(risks, axis=0), rtol=1e-12)


def test_selective_other_metrics_and_confidence_column(assay):
    d = _data(1500, seed=4, ties=False)
    res = assay.selective(d, label="y", score="p", metrics=["accuracy", "precision", "f2"])
    full = res.curve.filter(pl.col("coverage") == 1.0).row(0, named=True)
    ev = assay.evaluate(d, label="y", score="p", metrics=["precision", "f2"]).table
    assert full["precision"] == pytest.approx(ev["precision"][0])
    assert full["f2"] == pytest.approx(ev["f2"][0])
    # a custom confidence: the reverse ranking makes the risk curve worse
    d["c"] = -np.maximum(d["p"], 1 - d["p"])
    rev = assay.selective(d, label="y", score="p", confidence="c")
    assert rev.table["aurc"][0] > res.table["aurc"][0]
    assert "aurc" in repr(res)


def test_selective_bad_input(assay):
    d = _data(50)
    with pytest.raises(assay.InvalidInputError, match=r"\[0, 1\]"):
        assay.selective({"y": np.array([0, 1]), "p": np.array([0.2, 1.5])}, label="y",
                        score="p")
    with pytest.raises(assay.InvalidArgumentError, match="n must"):
        assay.selective(d, label="y", score="p", n=0)
    with pytest.raises(assay.InvalidArgumentError, match="roc_auc"):
        assay.selective(d, label="y", score="p", metrics=["roc_auc"])
    with pytest.raises(assay.ColumnNotFoundError, match="conf"):
        assay.selective(d, label="y", score="p", confidence="conf")
    with pytest.raises(assay.InvalidInputError, match="label"):
        assay.selective({"y": np.array([0.5, 1.0]), "p": np.array([0.2, 0.5])}, label="y",
                        score="p")
