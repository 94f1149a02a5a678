"""``task="multiclass"`` through the engine: every metric of every slice against scikit-learn or
a brute-force numpy reference (hypothesis: 2 to 50 classes, slices that lack classes, weights,
tied probabilities, one-hot probabilities, integer, string and valued labels), the per-class
and confusion tables, the input forms of the probabilities, normalization, the determinism
contract (threads, batches, shards), bootstrap intervals, K = 2 against the binary task and the
typed errors of bad input."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay.errors import AssayError, InvalidArgumentError, InvalidInputError, SchemaError

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

RTOL = 1e-9
ATOL = 1e-12
# Cohen's kappa and the MCC subtract two O(1) quantities (observed and chance agreement): both
# implementations lose a few ulps of those, which is an absolute error around 1e-15 / variance.
ATOL_AGREEMENT = 1e-10

MCC_UNDEFINED = "undefined: the labels or the predictions are all one class (a zero variance)"
KAPPA_UNDEFINED = ("undefined: the chance agreement is 1 (labels and predictions are one and "
                   "the same class)")
NO_COUNT_INTERVAL = "no interval: n_classes_present is a count of the slice"
NO_ANALYTIC = "no analytic interval for multiclass metrics: use bootstrap=B"

DEFAULT_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1",
                   "macro_precision", "macro_recall", "cohen_kappa", "mcc", "log_loss", "brier",
                   "ece_top_label", "n_classes_present"]
ALL_METRICS = [*DEFAULT_METRICS[:12], "ece_classwise", "n_classes_present"]


# --------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------


def sk(fn, *args, **kwargs):
    """A scikit-learn call with its warnings silenced (undefined ratios, k >= n_classes,
    probabilities that miss 1 by an ulp): the reference decides undefinedness itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def uniform_bin(v: np.ndarray, n_bins: int) -> np.ndarray:
    """assay's uniform calibration bins (docs/calibration.md): edges ``k * (1/n)`` (the last
    exactly 1), left-closed ``[e_k, e_k+1)``, the last bin closed."""
    edges = np.arange(n_bins + 1) * (1.0 / n_bins)
    edges[-1] = 1.0
    return np.clip(np.searchsorted(edges, v, side="right") - 1, 0, n_bins - 1)


def ece(conf: np.ndarray, hit: np.ndarray, w: np.ndarray, n_bins: int) -> float:
    """sum over bins of |weighted hits - weighted confidence| / total weight."""
    b = uniform_bin(conf, n_bins)
    hits = np.bincount(b, weights=w * hit, minlength=n_bins)
    confs = np.bincount(b, weights=w * conf, minlength=n_bins)
    return float(np.abs(hits - confs).sum() / w.sum())


def top_k_hits(y: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's label is among its k highest probabilities, ties ranked to the lower
    class index (a class ties ahead of the label when it has the same probability and a lower
    index)."""
    py = p[np.arange(len(y)), y][:, None]
    idx = np.arange(p.shape[1])[None, :]
    ahead = ((p > py) | ((p == py) & (idx < y[:, None]))).sum(axis=1)
    return ahead < k


def reference(y: np.ndarray, p: np.ndarray, w: np.ndarray | None, n_bins: int = 15,
              ks: tuple[int, ...] = ()) -> dict[str, float | None]:
    """Every multiclass metric of one slice (labels y in 0..K-1, probabilities p of shape
    (n, K), weights w or None); None where assay reports an undefined (null) value."""
    n, k_classes = p.shape
    ww = np.ones(n) if w is None else w
    pred = p.argmax(axis=1)  # ties: the first (lowest) index
    present = np.unique(y).tolist()  # weights are > 0: a class with a row is present
    all_classes = list(range(k_classes))
    kw = {"sample_weight": w}
    one_label, one_pred = len(present) == 1, len(np.unique(pred)) == 1
    out: dict[str, float | None] = {
        "accuracy": sk(skm.accuracy_score, y, pred, **kw),
        "balanced_accuracy": sk(skm.balanced_accuracy_score, y, pred, **kw),
        "macro_recall": sk(skm.recall_score, y, pred, labels=present, average="macro",
                           zero_division=0, **kw),
        "macro_precision": sk(skm.precision_score, y, pred, labels=present, average="macro",
                              zero_division=0, **kw),
        "macro_f1": sk(skm.f1_score, y, pred, labels=present, average="macro",
                       zero_division=0, **kw),
        "micro_f1": sk(skm.f1_score, y, pred, labels=present, average="micro",
                       zero_division=0, **kw),
        "weighted_f1": sk(skm.f1_score, y, pred, labels=present, average="weighted",
                          zero_division=0, **kw),
        "cohen_kappa": (None if one_label and one_pred and present[0] == pred[0]
                        else sk(skm.cohen_kappa_score, y, pred, labels=all_classes, **kw)),
        # scikit-learn returns 0.0 where a variance is 0; assay a null with a note.
        "mcc": None if one_label or one_pred else sk(skm.matthews_corrcoef, y, pred, **kw),
        "log_loss": sk(skm.log_loss, y, p, labels=all_classes, **kw),
        "brier": sk(skm.brier_score_loss, y, p, labels=all_classes, **kw),
        "ece_top_label": ece(p.max(axis=1), (pred == y).astype(float), ww, n_bins),
        "ece_classwise": float(np.mean([ece(p[:, c], (y == c).astype(float), ww, n_bins)
                                        for c in all_classes])),
        "n_classes_present": float(len(present)),
    }
    for k in ks:
        out[f"top_k_accuracy@{k}"] = float(np.average(top_k_hits(y, p, k), weights=ww))
    return {m: (None if v is None else float(v)) for m, v in out.items()}


def assert_value(got, want, what: str) -> None:
    if want is None:
        assert got is None, f"{what}: expected null, got {got!r}"
        return
    assert got is not None, f"{what}: expected {want!r}, got null"
    assert not math.isnan(got), f"{what}: got NaN, expected {want!r}"
    atol = ATOL_AGREEMENT if what.endswith(("cohen_kappa", "mcc")) else ATOL
    assert got == pytest.approx(want, rel=RTOL, abs=atol), f"{what}: {got!r} != {want!r}"


def check_per_class(pc: pl.DataFrame, names: list[str], y, p, w) -> None:
    """The per-class rows of one slice against scikit-learn (precision, recall, f1 with
    ``zero_division=nan`` -> null) and bincounts (support, weights)."""
    k = p.shape[1]
    ww = np.ones(len(y)) if w is None else w
    pred = p.argmax(axis=1)
    assert pc["class"].to_list() == names
    assert pc["support"].to_list() == np.bincount(y, minlength=k).tolist()
    np.testing.assert_allclose(pc["weight_sum"].to_numpy(),
                               np.bincount(y, weights=ww, minlength=k), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pc["predicted_weight"].to_numpy(),
                               np.bincount(pred, weights=ww, minlength=k), rtol=1e-12,
                               atol=1e-12)
    prec, rec, f1, _ = sk(skm.precision_recall_fscore_support, y, pred, labels=list(range(k)),
                          average=None, zero_division=np.nan, sample_weight=w)
    tp = np.bincount(y[pred == y], weights=ww[pred == y], minlength=k)
    lw, pw = np.bincount(y, weights=ww, minlength=k), np.bincount(pred, weights=ww, minlength=k)
    for c in range(k):
        for col, want in (("precision", prec[c]), ("recall", rec[c]), ("f1", f1[c])):
            assert_value(pc[col][c], None if math.isnan(want) else float(want),
                         f"class {names[c]} {col}")
        # The definitions by hand, too: a null exactly where the denominator is 0.
        assert (pc["precision"][c] is None) == (pw[c] == 0)
        assert (pc["recall"][c] is None) == (lw[c] == 0)
        assert (pc["f1"][c] is None) == (lw[c] + pw[c] == 0)
        if lw[c] + pw[c] > 0:
            assert pc["f1"][c] == pytest.approx(2 * tp[c] / (lw[c] + pw[c]), rel=RTOL, abs=ATOL)


def check_confusion(cf: pl.DataFrame, names: list[str], y, p, w) -> None:
    """The non-empty cells of one slice's confusion matrix, row-major, against scikit-learn."""
    k = p.shape[1]
    pred = p.argmax(axis=1)
    counts = skm.confusion_matrix(y, pred, labels=list(range(k)))
    weights = skm.confusion_matrix(y, pred, labels=list(range(k)),
                                   sample_weight=np.ones(len(y)) if w is None else w)
    cells = [(a, b) for a in range(k) for b in range(k) if counts[a, b] > 0]
    assert cf["actual"].to_list() == [names[a] for a, _ in cells]
    assert cf["predicted"].to_list() == [names[b] for _, b in cells]
    assert cf["count"].to_list() == [int(counts[a, b]) for a, b in cells]
    np.testing.assert_allclose(cf["weight_sum"].to_numpy(),
                               [weights[a, b] for a, b in cells], rtol=1e-12, atol=1e-12)
    assert int(cf["count"].sum()) == len(y)


def rows_by_slice(rep) -> dict[str, dict]:
    rows = rep.table.to_dicts()
    out = {r["slice"]: r for r in rows}
    assert len(out) == len(rows), "duplicate slice labels"
    return out


def same(a: pl.DataFrame, b: pl.DataFrame, rtol: float = 0.0) -> None:
    """Two frames: same columns and non-float values; floats bit-equal (rtol=0) or close,
    nulls and NaNs in the same places."""
    assert a.columns == b.columns and a.height == b.height, (a.columns, b.columns)
    assert a.dtypes == b.dtypes
    for c in a.columns:
        if a[c].dtype == pl.Float64:
            x = a[c].to_numpy().astype(float)
            y = b[c].to_numpy().astype(float)
            assert np.array_equal(np.isnan(x), np.isnan(y)), c
            both = ~np.isnan(x)
            if rtol == 0.0:
                assert np.array_equal(x[both], y[both]), (c, x[both], y[both])
            else:
                np.testing.assert_allclose(x[both], y[both], rtol=rtol, atol=1e-14, err_msg=c)
        else:
            assert a[c].to_list() == b[c].to_list(), c


def same_report(a, b, rtol: float = 0.0) -> None:
    same(a.table, b.table, rtol)
    same(a.per_class(), b.per_class(), rtol)
    same(a.confusion(), b.confusion(), rtol)
    assert a.notes.sort("slice", "metric").to_dicts() == b.notes.sort("slice", "metric").to_dicts()


def fsl(p: np.ndarray, dtype: pa.DataType | None = None) -> pa.Array:
    """An Arrow FixedSizeList array of the rows of p (float64 unless dtype says)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(p.ravel(), dtype or pa.float64()),
                                             p.shape[1])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.cumsum(axis=1)[:, -1:]


def divide(s: np.ndarray) -> np.ndarray:
    """Rows divided by their sum, summed left to right (cumsum: the engine's order)."""
    return s / s.cumsum(axis=1)[:, -1:]


def evaluate(data, **kw):
    kw.setdefault("label", "y")
    kw.setdefault("score", "p")
    return assay.evaluate(data, task="multiclass", **kw)


def sample(n: int, k: int, seed: int = 0, n_slices: int = 3):
    """Informative probabilities (softmax of noisy logits), labels, weights and a slice column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1.5, (n, k))
    z[np.arange(n), y] += 1.5
    p = softmax(z)
    w = rng.uniform(0.1, 3.0, n)
    g = rng.choice([f"s{i}" for i in range(n_slices)], n)
    return y, p, w, g


# --------------------------------------------------------------------------------------------
# 1. every metric of every slice against its reference
# --------------------------------------------------------------------------------------------


@st.composite
def cases(draw):
    k = draw(st.one_of(st.integers(2, 6), st.integers(7, 50)))
    n = draw(st.integers(1, 250))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Labels from a subset of the classes: classes absent overall, not only per slice.
    used = rng.choice(k, draw(st.integers(1, k)), replace=False)
    y = rng.choice(used, n)
    kind = draw(st.sampled_from(["dirichlet", "informative", "ties", "onehot", "unnormalized"]))
    normalize = "raise"
    if kind == "dirichlet":
        p_in = rng.dirichlet(np.full(k, draw(st.sampled_from([0.2, 1.0, 5.0]))), n)
    elif kind == "informative":
        z = rng.normal(0, 1, (n, k))
        z[np.arange(n), y] += draw(st.sampled_from([0.5, 2.0, 5.0]))
        p_in = softmax(z)
    elif kind == "ties":
        # Probabilities rounded to one decimal (ties within rows, values on bin edges),
        # divided by the engine.
        p_in = np.round(rng.dirichlet(np.full(k, 1.0), n), 1)
        p_in[p_in.sum(axis=1) == 0] = 1.0  # (an all-zero row: a row of k-way ties)
        normalize = "divide"
    elif kind == "onehot":
        # Exact 0/1 probabilities (log loss clips), some rows uniform (k-way ties).
        right = rng.random(n) < 0.6
        hot = np.where(right, y, rng.integers(0, k, n))
        p_in = np.eye(k)[hot]
        uniform = rng.random(n) < 0.2
        p_in[uniform] = 1.0 / k
        normalize = "divide"
    else:
        p_in = rng.uniform(0, 10, (n, k))
        normalize = "divide"
    p = p_in if normalize == "raise" else divide(p_in)
    w = rng.uniform(0.01, 5.0, n) if draw(st.booleans()) else None
    # Up to 4 slices; half the rows follow their label, so slices lack classes.
    n_slices = draw(st.integers(1, 4))
    g = np.where(rng.random(n) < 0.5, y % n_slices, rng.integers(0, n_slices, n))
    n_bins = draw(st.sampled_from([1, 5, 10, 15, 32]))
    ks = tuple(draw(st.lists(st.integers(1, k + 2), max_size=3, unique=True)))
    labels = draw(st.sampled_from(["index", "index_classes", "strings", "values"]))
    form = draw(st.sampled_from(["array", "columns"]))
    return k, y, p_in, p, normalize, w, g, n_bins, ks, labels, form


def build(k, y, p_in, w, g, labels, form):
    """The data, its score argument, classes= and the class names of the report."""
    if labels == "strings":
        classes = [f"c{c:02d}" for c in range(k)][::-1]  # (any order: classes= fixes it)
        y_col = np.array(classes, dtype=object)[y]
    elif labels == "values":
        classes = [int(10 * c - 7) for c in range(k)]  # negative values too
        y_col = np.array(classes)[y]
    else:
        classes = list(range(k)) if labels == "index_classes" else None
        y_col = y
    names = [str(c) for c in (classes or range(k))]
    cols: dict = {"y": pl.Series(y_col.tolist()), "g": pl.Series([f"g{v}" for v in g])}
    if form == "array":
        cols["p"] = pl.Series(p_in)
        score = "p"
    else:
        score = [f"p{c}" for c in range(k)]
        cols.update({f"p{c}": p_in[:, c] for c in range(k)})
    if w is not None:
        cols["w"] = w
    return pl.DataFrame(cols), score, classes, names


@settings(SETTINGS, max_examples=150)
@given(case=cases())
def test_every_metric_of_every_slice_matches_its_reference(case):
    k, y, p_in, p, normalize, w, g, n_bins, ks, labels, form = case
    df, score, classes, names = build(k, y, p_in, w, g, labels, form)
    rep = evaluate(df, score=score, classes=classes, slices=["g"], normalize=normalize,
                   weight=None if w is None else "w", calibration_bins=n_bins,
                   metrics=ALL_METRICS, k=list(ks) or None)
    assert rep.metrics == ALL_METRICS + [f"top_k_accuracy@{v}" for v in ks]
    rows = rows_by_slice(rep)
    parts = [("overall", np.ones(len(y), dtype=bool))]
    parts += [(f"g=g{v}", g == v) for v in np.unique(g)]
    assert set(rows) == {lb for lb, _ in parts} and next(iter(rows)) == "overall"
    notes = {(r["slice"], r["metric"]): r["note"] for r in rep.notes.iter_rows(named=True)}
    per_class, confusion = rep.per_class(), rep.confusion()
    for label, m in parts:
        ys, ps, ws = y[m], p[m], None if w is None else w[m]
        row = rows[label]
        assert row["n"] == int(m.sum())
        if w is not None:
            assert row["weight_sum"] == pytest.approx(ws.sum(), rel=1e-12)
        want = reference(ys, ps, ws, n_bins, ks)
        for metric, v in want.items():
            assert_value(row[metric], v, f"{label} {metric}")
            if v is None:
                assert (label, metric) in notes, (label, metric)
        if want["mcc"] is None:
            assert notes[(label, "mcc")] == MCC_UNDEFINED
        if want["cohen_kappa"] is None:
            assert notes[(label, "cohen_kappa")] == KAPPA_UNDEFINED
        # Identities of the definitions.
        assert row["macro_recall"] == row["balanced_accuracy"]
        if 1 in ks:
            assert row["top_k_accuracy@1"] == pytest.approx(row["accuracy"], rel=1e-12)
        for kv in ks:
            if kv >= k:
                assert row[f"top_k_accuracy@{kv}"] == pytest.approx(1.0, rel=1e-12)
        check_per_class(per_class.filter(pl.col("slice") == label), names, ys, ps, ws)
        check_confusion(confusion.filter(pl.col("slice") == label), names, ys, ps, ws)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 12), n=st.integers(1, 200),
       ks=st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True))
def test_top_k_accuracy_matches_scikit_learn_without_ties(seed, k, n, ks):
    """On continuous probabilities (no ties) top-k accuracy is scikit-learn's."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    w = rng.uniform(0.1, 2.0, n)
    assert all(len(np.unique(r)) == k for r in p)
    rep = evaluate(pl.DataFrame({"y": y, "p": p, "w": w}), weight="w", k=ks,
                   metrics=["accuracy"])
    for kv in ks:
        score = p[:, 1] if k == 2 else p  # (scikit-learn takes the positive column if binary)
        want = sk(skm.top_k_accuracy_score, y, score, k=kv, labels=list(range(k)),
                  sample_weight=w)
        assert rep.table[f"top_k_accuracy@{kv}"][0] == pytest.approx(want, rel=RTOL, abs=ATOL)


def test_ties_go_to_the_lowest_class_index():
    p = np.array([[0.4, 0.4, 0.2],   # argmax 0
                  [0.2, 0.4, 0.4],   # argmax 1
                  [0.25, 0.25, 0.5],  # argmax 2
                  [1.0, 1.0, 1.0]])  # argmax 0 (three equal scores, divided below)
    y = np.array([1, 2, 0, 2])
    rep = evaluate(pl.DataFrame({"y": y, "p": p}), normalize="divide", k=[1, 2])
    # Predictions 0, 1, 2, 0: no hit.
    assert rep.table["accuracy"][0] == 0.0
    cf = rep.confusion()
    assert list(zip(cf["actual"], cf["predicted"], strict=True)) == [
        ("0", "2"), ("1", "0"), ("2", "0"), ("2", "1")]
    # Top-2: row 0's label 1 ties class 0, which ranks first: in the top 2. Row 1's label 2
    # ties class 1, which ranks ahead: second, in. Row 2's label 0 ties class 1 for second
    # place and ranks ahead: in. Row 3's label 2 is third of three equal values: out.
    assert rep.table["top_k_accuracy@2"][0] == 0.75
    assert rep.table["top_k_accuracy@1"][0] == 0.0


def test_log_loss_clips_probabilities_at_machine_epsilon():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    rep = evaluate(pl.DataFrame({"y": [1, 1], "p": p}), metrics=["log_loss", "brier"])
    eps = np.finfo(float).eps
    assert rep.table["log_loss"][0] == pytest.approx((-math.log(eps) - math.log1p(-eps)) / 2,
                                                     rel=1e-12)
    assert rep.table["brier"][0] == 1.0  # (2 + 0) / 2


# --------------------------------------------------------------------------------------------
# 7. macro averages over the classes present in the slice
# --------------------------------------------------------------------------------------------


def _hand_made(k: int = 5):
    """Rows (slice, label, predicted class): slice a holds classes 0 and 1 only (one row
    predicted as absent class 3), slice b class 2 only, slice c classes 0, 1, 2 and never
    predicts 2."""
    rows = [("a", 0, 0), ("a", 0, 1), ("a", 1, 1), ("a", 1, 3), ("a", 0, 0),
            ("b", 2, 2), ("b", 2, 0), ("b", 2, 2),
            ("c", 0, 0), ("c", 1, 0), ("c", 2, 1), ("c", 2, 0)]
    g = [r[0] for r in rows]
    y = np.array([r[1] for r in rows])
    pred = np.array([r[2] for r in rows])
    p = np.full((len(rows), k), 0.3 / (k - 1))
    p[np.arange(len(rows)), pred] = 0.7
    return pl.DataFrame({"y": y, "p": p, "g": g}), y, pred


def test_macro_averages_run_over_the_classes_present_in_the_slice():
    df, _, _ = _hand_made()
    rep = evaluate(df, slices=["g"])
    rows = rows_by_slice(rep)
    a = rows["g=a"]
    assert a["n_classes_present"] == 2
    # Recall: class 0 2/3, class 1 1/2; precision: class 0 1, class 1 1/2 (class 3, predicted
    # once but absent, is not in the averages).
    assert a["macro_recall"] == pytest.approx((2 / 3 + 1 / 2) / 2, rel=1e-12)
    assert a["balanced_accuracy"] == a["macro_recall"]
    assert a["macro_precision"] == pytest.approx((1 + 1 / 2) / 2, rel=1e-12)
    assert a["macro_f1"] == pytest.approx((0.8 + 0.5) / 2, rel=1e-12)
    pc = rep.per_class().filter(pl.col("slice") == "g=a")
    present = pc.filter(pl.col("support") > 0)
    assert present["class"].to_list() == ["0", "1"]
    assert a["macro_recall"] == pytest.approx(present["recall"].mean(), rel=1e-12)
    absent = pc.filter(pl.col("support") == 0).to_dicts()
    for r in absent:
        assert r["recall"] is None and r["weight_sum"] == 0.0
    c3 = pc.filter(pl.col("class") == "3").row(0, named=True)
    assert c3["precision"] == 0.0 and c3["f1"] == 0.0 and c3["predicted_weight"] == 1.0
    c4 = pc.filter(pl.col("class") == "4").row(0, named=True)
    assert c4["precision"] is None and c4["f1"] is None
    # Slice c never predicts its present class 2: precision null in per_class, 0 in the
    # macro average.
    c = rows["g=c"]
    pc_c = rep.per_class().filter(pl.col("slice") == "g=c")
    assert pc_c.filter(pl.col("class") == "2")["precision"][0] is None
    # Class 0: 1 hit of 3 predicted; class 1: 0 of 1; class 2: never predicted.
    assert c["macro_precision"] == pytest.approx((1 / 3 + 0.0 + 0.0) / 3, rel=1e-12)


def test_a_slice_of_one_class_has_null_mcc_with_a_note():
    df, y, pred = _hand_made()
    rep = evaluate(df, slices=["g"])
    b = rows_by_slice(rep)["g=b"]
    assert b["n_classes_present"] == 1
    assert b["mcc"] is None
    note = rep.notes.filter((pl.col("slice") == "g=b") & (pl.col("metric") == "mcc"))
    assert note["note"].to_list() == [MCC_UNDEFINED]
    assert b["macro_recall"] == pytest.approx(2 / 3, rel=1e-12)
    m = (df["g"] == "b").to_numpy()
    assert b["cohen_kappa"] == pytest.approx(sk(skm.cohen_kappa_score, y[m], pred[m]), abs=1e-12)
    # scikit-learn says 0.0 here; assay says why there is no value.
    assert sk(skm.matthews_corrcoef, y[m], pred[m]) == 0.0


def test_kappa_is_null_when_labels_and_predictions_are_one_class():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    df = pl.DataFrame({"y": [0, 0, 1], "p": p, "g": ["a", "a", "b"]})
    rep = evaluate(df, slices=["g"])
    a = rows_by_slice(rep)["g=a"]
    assert a["cohen_kappa"] is None and a["mcc"] is None and a["accuracy"] == 1.0
    notes = rep.notes.filter(pl.col("slice") == "g=a")
    assert dict(zip(notes["metric"], notes["note"], strict=True))["cohen_kappa"] == KAPPA_UNDEFINED


def test_default_metrics_and_top_k_columns():
    # (The registry may grow: the metrics of this file are in it, in this order.)
    named = [m for m in assay.MULTICLASS_METRICS if m in ALL_METRICS]
    assert named == ALL_METRICS
    registry = [r for r in assay._native.metric_registry() if r[1] == "multiclass"]
    assert assay.MULTICLASS_METRICS == tuple(r[0] for r in registry if "<" not in r[0])
    y, p, _, _ = sample(100, 4)
    rep = evaluate(pl.DataFrame({"y": y, "p": p}))
    assert rep.metrics == [r[0] for r in registry if r[4]]
    assert [m for m in rep.metrics if m in ALL_METRICS] == DEFAULT_METRICS
    assert "ece_classwise" not in rep.table.columns
    assert rep.table.columns == ["slice", "spec", "n", *rep.metrics]
    rep = evaluate(pl.DataFrame({"y": y, "p": p}), k=[3, 1, 3], metrics=["accuracy"])
    assert rep.metrics == ["accuracy", "top_k_accuracy@3", "top_k_accuracy@1"]
    assert rep.table["top_k_accuracy@1"][0] == rep.table["accuracy"][0]
    rep = evaluate(pl.DataFrame({"y": y, "p": p}), k=2, metrics=["top_k_accuracy@2"])
    assert rep.metrics == ["top_k_accuracy@2"]


def test_per_class_and_confusion_of_a_binary_report_are_refused():
    rep = assay.evaluate({"y": [0, 1], "p": [0.2, 0.7]}, label="y", score="p")
    with pytest.raises(InvalidArgumentError, match="per_class"):
        rep.per_class()
    with pytest.raises(InvalidArgumentError, match="confusion"):
        rep.confusion()


# --------------------------------------------------------------------------------------------
# K = 2 is the binary task
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), weighted=st.booleans())
def test_two_classes_equal_the_binary_task_on_the_positive_column(seed, n, weighted):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.35 * y + 0.65 * rng.random(n), 0.0, 1.0)
    p1[p1 == 0.5] = 0.5001  # binary predicts 1 at 0.5, the argmax class 0
    w = rng.uniform(0.1, 3.0, n) if weighted else None
    g = rng.choice(["a", "b", "c"], n)
    data = {"y": y, "p1": p1, "p0": 1.0 - p1, "g": g}
    if w is not None:
        data["w"] = w
    metrics = ["accuracy", "log_loss", "brier", "balanced_accuracy", "mcc"]
    kw = dict(label="y", slices=["g"], weight=None if w is None else "w", metrics=metrics)
    binary = rows_by_slice(assay.evaluate(data, score="p1", **kw))
    multi = rows_by_slice(assay.evaluate(data, task="multiclass", score=["p0", "p1"], **kw))
    assert binary.keys() == multi.keys()
    for label, b in binary.items():
        m = multi[label]
        assert m["n"] == b["n"]
        for metric in metrics:
            if b[metric] is None:
                # Binary leaves balanced accuracy undefined with one class present; multiclass
                # averages over the one present class.
                if metric == "balanced_accuracy":
                    continue
                assert m[metric] is None, (label, metric)
            else:
                assert m[metric] == pytest.approx(b[metric], rel=RTOL, abs=ATOL), (label, metric)


# --------------------------------------------------------------------------------------------
# 2. input forms
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base():
    y, p, w, g = sample(400, 3, seed=21)
    names = ["cat", "dog", "bird"]
    ref = evaluate(pl.DataFrame({"y": y, "p": p, "w": w, "g": g}), weight="w", slices=["g"],
                   metrics=ALL_METRICS, k=2)
    return y, p, w, g, names, ref


def _kw():
    return dict(weight="w", slices=["g"], metrics=ALL_METRICS, k=2)


def test_polars_array_pyarrow_fixed_size_list_and_list_agree(base):
    y, p, w, g, _, ref = base
    t = pa.table({"y": y, "p": fsl(p), "w": w, "g": g})
    same_report(evaluate(t, **_kw()), ref)
    lists = pa.table({"y": y, "p": pa.array(list(p), pa.list_(pa.float64())), "w": w, "g": g})
    same_report(evaluate(lists, classes=[0, 1, 2], **_kw()), ref)
    large = pa.table({"y": y, "p": pa.array(list(p), pa.large_list(pa.float64())), "w": w,
                      "g": g})
    same_report(evaluate(large, classes=[0, 1, 2], **_kw()), ref)
    cols = {"y": y, "p0": p[:, 0], "p1": p[:, 1], "p2": p[:, 2], "w": w, "g": g}
    same_report(evaluate(cols, score=["p0", "p1", "p2"], **_kw()), ref)
    # K columns in another order with classes= naming them in that order (the per-class sums
    # are then added in another order: equal to rounding).
    rep = evaluate(cols, score=["p2", "p0", "p1"], classes=[2, 0, 1], **_kw())
    same(rep.table, ref.table, rtol=1e-12)


def test_sliced_tables_read_their_array_offsets(base):
    y, p, w, g, _, _ = base
    t = pa.table({"y": y, "p": fsl(p), "w": w, "g": g})
    for start, length in [(3, None), (17, 101), (1, 1)]:
        stop = len(y) if length is None else start + length
        fresh = pa.table({"y": y[start:stop], "p": fsl(p[start:stop]), "w": w[start:stop],
                          "g": g[start:stop]})
        want = evaluate(fresh, **_kw())
        same_report(evaluate(t.slice(start, length), **_kw()), want)
        lists = pa.table({"y": y, "p": pa.array(list(p), pa.list_(pa.float64())), "w": w,
                          "g": g})
        same_report(evaluate(lists.slice(start, length), classes=[0, 1, 2], **_kw()), want)
        df = pl.DataFrame({"y": y, "p": p, "w": w, "g": g})
        same_report(evaluate(df.slice(start, length), **_kw()), want)


def test_a_fixed_size_list_whose_child_array_is_itself_offset(base):
    y, p, w, g, _, _ = base
    n, k = p.shape
    padded = np.concatenate([np.full(5 * k, 0.5), p.ravel()])
    child = pa.array(padded).slice(5 * k)  # the values start at an offset of their own
    t = pa.table({"y": y, "p": pa.FixedSizeListArray.from_arrays(child, k), "w": w, "g": g})
    same_report(evaluate(t, **_kw()), evaluate(pa.table({"y": y, "p": fsl(p), "w": w, "g": g}),
                                               **_kw()))


def test_float32_probabilities_equal_their_float64_values(base):
    y, p, w, g, _, _ = base
    p32 = p.astype(np.float32)
    want = evaluate(pl.DataFrame({"y": y, "p": p32.astype(np.float64), "w": w, "g": g}),
                    **_kw())
    same_report(evaluate(pl.DataFrame({"y": y, "p": p32, "w": w, "g": g}), **_kw()), want)
    same_report(evaluate(pa.table({"y": y, "p": fsl(p32, pa.float32()), "w": w, "g": g}),
                         **_kw()), want)
    lists = pa.table({"y": y, "p": pa.array(list(p32), pa.list_(pa.float32())), "w": w, "g": g})
    same_report(evaluate(lists, classes=[0, 1, 2], **_kw()), want)
    cols = {"y": y, "w": w, "g": g, **{f"p{c}": p32[:, c] for c in range(3)}}
    same_report(evaluate(cols, score=["p0", "p1", "p2"], **_kw()), want)


def _renamed(rep, names):
    """per_class() and confusion() of an index-labelled report with the classes renamed."""
    to = {str(i): v for i, v in enumerate(names)}
    pc = rep.per_class().with_columns(pl.col("class").replace_strict(to))
    cf = rep.confusion().with_columns(pl.col("actual").replace_strict(to),
                                      pl.col("predicted").replace_strict(to))
    return pc, cf


@pytest.mark.parametrize("form", ["string", "large_string", "dictionary", "polars_enum",
                                  "polars_categorical", "int_values", "int32_values"])
def test_labels_named_by_classes_equal_class_indices(base, form):
    y, p, w, g, names, ref = base
    values = [names[v] for v in y]
    classes = names
    if form == "int_values":
        classes, labels = [10, 20, 30], pa.array(np.array([10, 20, 30])[y], pa.int64())
    elif form == "int32_values":
        classes, labels = [10, 20, 30], pa.array(np.array([10, 20, 30])[y], pa.int32())
    elif form == "large_string":
        labels = pa.array(values, pa.large_string())
    elif form == "dictionary":
        labels = pa.array(values).dictionary_encode()
    else:
        labels = pa.array(values)
    data = pa.table({"y": labels, "p": fsl(p), "w": w, "g": g})
    if form == "polars_enum":
        data = pl.from_arrow(data).with_columns(pl.col("y").cast(pl.Enum(names)))
    elif form == "polars_categorical":
        data = pl.from_arrow(data).with_columns(pl.col("y").cast(pl.Categorical))
    rep = evaluate(data, classes=classes, **_kw())
    same(rep.table, ref.table)
    pc, cf = _renamed(ref, [str(c) for c in classes])
    same(rep.per_class(), pc)
    same(rep.confusion(), cf)


def test_classes_fix_the_column_order_of_string_labels():
    # Column 0 is "dog": a row labelled "dog" whose first probability is highest is a hit.
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    df = pl.DataFrame({"y": ["dog", "cat", "cat"], "p": p})
    rep = evaluate(df, classes=["dog", "cat", "bird"])
    assert rep.table["accuracy"][0] == pytest.approx(2 / 3, rel=1e-12)
    assert rep.per_class()["class"].to_list() == ["dog", "cat", "bird"]
    cf = rep.confusion()
    assert cf.rows() == [("overall", "dog", "dog", 1, 1.0), ("overall", "cat", "cat", 1, 1.0),
                         ("overall", "cat", "bird", 1, 1.0)]


# --------------------------------------------------------------------------------------------
# 3. normalization
# --------------------------------------------------------------------------------------------


def test_softmax_of_logits_equals_the_softmax_probabilities():
    rng = np.random.default_rng(5)
    n, k = 600, 7
    y = rng.integers(0, k, n)
    z = rng.normal(0, 3, (n, k))
    z[np.arange(n), y] += 2
    w = rng.uniform(0.1, 2, n)
    g = rng.choice(["a", "b"], n)
    kw = dict(weight="w", slices=["g"], metrics=ALL_METRICS, k=[2, 3])
    want = evaluate(pl.DataFrame({"y": y, "p": softmax(z), "w": w, "g": g}), **kw)
    got = evaluate(pl.DataFrame({"y": y, "p": z, "w": w, "g": g}), normalize="softmax", **kw)
    same_report(got, want, rtol=1e-12)
    # Softmax does not see a shift of the logits (no overflow at 1000 either).
    shifted = evaluate(pl.DataFrame({"y": y, "p": z + 1000.0, "w": w, "g": g}),
                       normalize="softmax", **kw)
    same_report(shifted, want, rtol=1e-9)
    # The same through K columns.
    cols = {"y": y, "w": w, "g": g, **{f"z{c}": z[:, c] for c in range(k)}}
    same_report(evaluate(cols, score=[f"z{c}" for c in range(k)], normalize="softmax", **kw),
                got)
    # Reference metrics straight from the logits.
    ref = reference(y, softmax(z), w, 15, (2, 3))
    row = got.table.row(0, named=True)
    for metric, v in ref.items():
        assert_value(row[metric], v, metric)


def test_divide_of_positive_scores_equals_the_divided_probabilities():
    rng = np.random.default_rng(6)
    n, k = 500, 5
    y = rng.integers(0, k, n)
    s = rng.uniform(0, 4, (n, k))
    s[::7, 2] = 0.0
    w = rng.uniform(0.1, 2, n)
    kw = dict(weight="w", metrics=ALL_METRICS, k=2)
    want = evaluate(pl.DataFrame({"y": y, "p": divide(s), "w": w}), **kw)
    got = evaluate(pl.DataFrame({"y": y, "p": s, "w": w}), normalize="divide", **kw)
    same_report(got, want, rtol=1e-12)
    # Scaling every row by a constant changes nothing.
    same_report(evaluate(pl.DataFrame({"y": y, "p": 8.0 * s, "w": w}), normalize="divide",
                         **kw), got, rtol=1e-12)
    # Probabilities that already sum to 1 are the same under "raise" and "divide".
    p = divide(s)
    same_report(evaluate(pl.DataFrame({"y": y, "p": p, "w": w}), normalize="divide", **kw),
                want, rtol=1e-12)


def test_raise_accepts_sums_within_tolerance_as_given():
    # float32 softmax outputs of many classes miss 1 by more than an ulp: accepted and used as
    # given (as scikit-learn does; dividing would break ties between rows).
    p = np.array([[0.5, 0.25, 0.25 + 5e-5], [0.1, 0.1, 0.8 - 5e-5]])
    rep = evaluate(pl.DataFrame({"y": [2, 2], "p": p}), metrics=["log_loss"])
    assert rep.table["log_loss"][0] == pytest.approx(
        -(math.log(0.25 + 5e-5) + math.log(0.8 - 5e-5)) / 2, rel=1e-12)
    # The Brier score and the ECE of such rows stay within their ranges.
    edge = evaluate(pl.DataFrame({"y": [2], "p": np.array([[1.0, 0.00009, 0.0]])}),
                    metrics=["brier", "ece_top_label"])
    assert edge.table["brier"][0] == 2.0 and edge.table["ece_top_label"][0] == 1.0


# --------------------------------------------------------------------------------------------
# 4. determinism
# --------------------------------------------------------------------------------------------


def _big(n: int, k: int = 6, seed: int = 7) -> pa.Table:
    y, p, w, g = sample(n, k, seed=seed, n_slices=5)
    rng = np.random.default_rng(seed + 1)
    return pa.table({"y": y, "p": fsl(p), "w": w, "g": g, "h": rng.integers(0, 3, n),
                     "id": np.arange(n, dtype=np.int64)})


@pytest.mark.parametrize("interval", [{}, {"bootstrap": 30}])
def test_bits_do_not_depend_on_the_number_of_threads(interval):
    t = _big(200_000)
    kw = dict(weight="w", slices=["g", ("g", "h")], metrics=ALL_METRICS, k=[2, 4], **interval)
    one = evaluate(t, n_threads=1, **kw)
    same_report(evaluate(t, n_threads=2, **kw), one)
    same_report(evaluate(t, n_threads=3, **kw), one)


@pytest.mark.parametrize("interval", [{}, {"bootstrap": 20}])
def test_record_batches_agree_with_one_table(interval):
    t = _big(3_000, seed=8)
    kw = dict(weight="w", slices=["g"], metrics=ALL_METRICS, k=2, **interval)
    whole = evaluate(t.combine_chunks(), **kw)
    same_report(evaluate(t.to_reader(max_chunksize=7), **kw), whole, rtol=1e-12)
    batches = pa.Table.from_batches(t.to_batches(max_chunksize=113))
    same_report(evaluate(batches, **kw), whole, rtol=1e-12)
    lists = t.set_column(1, "p", t["p"].cast(pa.list_(pa.float64())))
    same_report(evaluate(lists.to_reader(max_chunksize=50), classes=list(range(6)), **kw),
                whole, rtol=1e-12)


def test_shards_merged_in_any_order_equal_one_evaluate():
    t = _big(4_000, k=4, seed=9)
    spec = assay.Spec(label="y", score="p", task="multiclass", weight="w", slices=["g"],
                      metrics=ALL_METRICS, k=[2], bootstrap=20, row_id="id")
    cuts = [0, 700, 701, 2_500, 4_000]
    parts = [spec.accumulate(t.slice(a, b - a), row_offset=a)
             for a, b in zip(cuts, cuts[1:], strict=False)]
    one = spec.evaluate(t)
    merged = assay.merge(parts[::-1]).finalize()
    same_report(merged, one, rtol=1e-12)
    same_report(assay.merge(parts).finalize(), merged)
    again = assay.PartialState.from_bytes(assay.merge(parts).to_bytes()).finalize()
    same_report(again, merged)
    same_report(pickle.loads(pickle.dumps(assay.merge(parts))).finalize(), merged)


# --------------------------------------------------------------------------------------------
# 5. bootstrap
# --------------------------------------------------------------------------------------------


def test_bootstrap_intervals_bracket_the_estimate_and_repeat_by_seed():
    t = _big(2_000, k=4, seed=10)
    kw = dict(weight="w", slices=["g"], bootstrap=200, seed=3, k=2)
    rep = evaluate(t, **kw)
    tab = rep.table
    for m in ("accuracy", "macro_f1", "log_loss", "balanced_accuracy", "brier",
              "top_k_accuracy@2"):
        lo, v, hi = tab[f"{m}_lo"], tab[m], tab[f"{m}_hi"]
        assert ((lo <= v + 1e-12) & (v <= hi + 1e-12)).all(), m
        assert (hi > lo).all(), m
    assert tab["n_classes_present_lo"].null_count() == tab.height
    assert tab["n_classes_present_hi"].null_count() == tab.height
    notes = rep.notes.filter(pl.col("metric") == "n_classes_present")
    assert sorted(notes["slice"].to_list()) == sorted(tab["slice"].to_list())
    assert set(notes["note"]) == {NO_COUNT_INTERVAL}
    long = rep.long().filter(pl.col("metric") == "accuracy")
    assert set(long["method"]) == {"percentile"} and (long["se"] > 0).all()
    same(evaluate(t, **kw).table, tab)
    other = evaluate(t, **{**kw, "seed": 4}).table
    assert other["accuracy"].to_list() == tab["accuracy"].to_list()
    assert other["accuracy_lo"].to_list() != tab["accuracy_lo"].to_list()


def test_bootstrap_covers_a_known_accuracy():
    # 100 jobs would be slow; one big job whose true accuracy is known: 0.8 by construction.
    rng = np.random.default_rng(11)
    n, k = 20_000, 3
    y = rng.integers(0, k, n)
    right = rng.random(n) < 0.8
    pred = np.where(right, y, (y + rng.integers(1, k, n)) % k)
    p = np.full((n, k), 0.2)
    p[np.arange(n), pred] = 0.6
    rep = evaluate(pl.DataFrame({"y": y, "p": p}), bootstrap=300, metrics=["accuracy"])
    assert rep.table["accuracy_lo"][0] < rep.table["accuracy"][0] < rep.table["accuracy_hi"][0]
    assert rep.table["accuracy_hi"][0] - rep.table["accuracy_lo"][0] < 0.03


def test_analytic_intervals_are_null_with_a_note():
    y, p, _, _ = sample(200, 3)
    rep = evaluate(pl.DataFrame({"y": y, "p": p}), ci_method="analytic",
                   metrics=["accuracy", "log_loss"])
    assert rep.table["accuracy_lo"][0] is None and rep.table["log_loss_hi"][0] is None
    assert set(rep.notes["note"]) == {NO_ANALYTIC}


# --------------------------------------------------------------------------------------------
# 6. bad input
# --------------------------------------------------------------------------------------------


P3 = [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]


def _t(p=P3, y=(0, 1, 2), list_type=None, label_type=None):
    typ = list_type or pa.list_(pa.float64(), 3)
    return pa.table({"y": pa.array(list(y), label_type), "p": pa.array(p, typ)})


def test_a_list_row_of_the_wrong_length_names_the_column_and_row():
    t = _t(p=[[0.2, 0.3, 0.5], [0.5, 0.5], [0.1, 0.1, 0.8]], list_type=pa.list_(pa.float64()))
    with pytest.raises(InvalidInputError, match=r'"p".*row 1 has 2 scores, expected 3') as e:
        evaluate(t, classes=[0, 1, 2])
    assert e.value.column == "p"


def test_the_list_size_and_classes_must_agree():
    with pytest.raises(SchemaError, match=r'"p".*lists of 3 values, but there are 4 classes'):
        evaluate(_t(), classes=[0, 1, 2, 3])
    with pytest.raises(SchemaError, match=r'"p".*lists of 3 values, but there are 2 classes'):
        evaluate(_t(label_type=pa.string(), y=["a", "b", "a"]), classes=["a", "b"])


def test_a_label_that_is_not_a_class_names_the_row():
    t = _t(y=["a", "b", "z"])
    with pytest.raises(InvalidInputError, match=r'"y".*label "z" at row 2.*classes=') as e:
        evaluate(t, classes=["a", "b", "c"])
    assert e.value.column == "y"
    with pytest.raises(InvalidInputError, match=r'"y".*label 5 at row 1'):
        evaluate(_t(y=[10, 5, 30]), classes=[10, 20, 30])


@pytest.mark.parametrize("bad", [3, -1])
def test_an_integer_label_outside_0_to_k_asks_for_classes(bad):
    with pytest.raises(InvalidInputError,
                       match=rf'"y".*label {bad} at row 1.*pass classes='):
        evaluate(_t(y=[0, bad, 1]))


def test_string_labels_need_classes():
    # (Refused from the schema, before any row is read; "0", "1" too: names need classes=.)
    with pytest.raises(SchemaError, match=r'"y".*class names.*pass classes='):
        evaluate(_t(y=["cat", "dog", "cat"]))
    with pytest.raises(SchemaError, match=r'"y".*class names.*pass classes='):
        evaluate(_t(y=["0", "1", "2"]))
    with pytest.raises(SchemaError, match=r'"y".*classes= names strings'):
        evaluate(_t(), classes=["a", "b", "c"])


def test_float_labels_are_refused():
    with pytest.raises(SchemaError, match=r'"y".*class indices'):
        evaluate(_t(y=[0.0, 1.0, 2.0]))


@pytest.mark.parametrize(("row", "message"), [
    ([0.5, 0.6, -0.1], r'"p".*lie in \[0, 1\].*class 2 is -0.1 at row 1.*softmax'),
    ([0.0, 1.2, -0.2], r'"p".*class 1 is 1.2 at row 1'),
    ([0.5, 0.6, 0.5], r'"p".*row 1 sum to 1.6.*normalize="divide"'),
    ([0.1, 0.1, 0.1], r'"p".*row 1 sum to 0.3.*normalize='),
])
def test_probabilities_that_are_not_probabilities_are_refused(row, message):
    with pytest.raises(InvalidInputError, match=message) as e:
        evaluate(_t(p=[P3[0], row, P3[2]]))
    assert e.value.column == "p"
    # Not droppable: nan_policy="drop" raises the same.
    with pytest.raises(InvalidInputError, match=message):
        evaluate(_t(p=[P3[0], row, P3[2]]), nan_policy="drop")


def test_divide_refuses_negative_scores_and_rows_that_sum_to_zero():
    with pytest.raises(InvalidInputError, match=r'"p".*class 0 is -1.0 at row 1'):
        evaluate(_t(p=[[1.0, 2.0, 3.0], [-1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]),
                 normalize="divide")
    with pytest.raises(InvalidInputError, match=r'"p".*row 1 sum to 0.0'):
        evaluate(_t(p=[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]),
                 normalize="divide")


def test_a_zero_sum_row_under_divide_does_not_tell_the_user_to_pass_divide():
    """The error of a row whose scores sum to 0 with normalize="divide" should not advise
    passing normalize="divide", which the caller already did."""
    with pytest.raises(InvalidInputError) as e:
        evaluate(_t(p=[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]),
                 normalize="divide")
    assert 'pass normalize="divide"' not in str(e.value), str(e.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_missing_probabilities_follow_nan_policy(bad):
    p = [P3[0], [0.5, bad, 0.5], P3[2], [0.3, 0.3, 0.4]]
    t = _t(p=p, y=[0, 1, 2, 2])
    shown = {None: "null", float("inf"): "inf"}.get(bad, "NaN")
    with pytest.raises(InvalidInputError,
                       match=rf'"p".*class 1 is {shown} at row 1.*nan_policy="drop"'):
        evaluate(t)
    rep = evaluate(t, nan_policy="drop", metrics=ALL_METRICS)
    assert rep.dropped == 1 and rep.table["n"][0] == 3
    same(rep.table, evaluate(t.take([0, 2, 3]), metrics=ALL_METRICS).table)
    with pytest.raises(InvalidInputError, match=rf"class 1 is {shown} at row 1"):
        evaluate(t, normalize="softmax")


def test_null_rows_and_null_labels_follow_nan_policy():
    t = pa.table({"y": pa.array([0, 1, None, 2]),
                  "p": pa.array([P3[0], None, P3[1], P3[2]], pa.list_(pa.float64(), 3))})
    with pytest.raises(InvalidInputError, match=r'"p".*scores of row 1 are null'):
        evaluate(t)
    rep = evaluate(t, nan_policy="drop")
    assert rep.dropped == 2 and rep.table["n"][0] == 2
    same(rep.table, evaluate(t.take([0, 3])).table)
    labels = pa.table({"y": pa.array([0, 1, None]), "p": pa.array(P3, pa.list_(pa.float64(), 3))})
    with pytest.raises(InvalidInputError, match=r'"y".*label is null at row 2'):
        evaluate(labels)
    # A null in one of K score columns.
    cols = pa.table({"y": [0, 1], "a": pa.array([0.5, None]), "b": pa.array([0.5, 0.5])})
    with pytest.raises(InvalidInputError, match=r"class 0 is null at row 1"):
        evaluate(cols, score=["a", "b"])
    assert evaluate(cols, score=["a", "b"], nan_policy="drop").dropped == 1


def test_error_rows_are_rows_of_the_whole_input_across_batches():
    y, p, _, _ = sample(60, 3, seed=12)
    p[45] = [0.5, 0.6, 0.5]
    y[50] = 7
    t = pa.table({"y": y, "p": fsl(p)})
    with pytest.raises(InvalidInputError, match=r"row 45 sum to"):
        evaluate(t.to_reader(max_chunksize=7))
    with pytest.raises(InvalidInputError, match=r"label 7 at row 50"):
        evaluate(t.set_column(1, "p", fsl(divide(np.maximum(p, 0.01)))).to_reader(
            max_chunksize=7))


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"classes": ["a"]}, InvalidArgumentError, r"classes= has 1"),
    ({"classes": ["a", "b", "a"]}, InvalidArgumentError, r"names 'a' twice"),
    ({"classes": [0, 1, 0]}, InvalidArgumentError, r"names 0 twice"),
    ({"classes": [0, "b", 2]}, InvalidArgumentError, r"all strings .* or all integers"),
    ({"classes": "abc"}, InvalidArgumentError, r"classes must be a list"),
    ({"score": ["only_one"]}, InvalidArgumentError, r"at least 2 classes"),
    ({"score": ["p0", "p0"]}, InvalidArgumentError, r"names a column twice"),
    ({"threshold": 0.3}, InvalidArgumentError, r"threshold only applies to task='binary'"),
    ({"quantiles": [0.5]}, InvalidArgumentError, r"quantiles only applies"),
    ({"auc": "sketch", "bootstrap": 10, "metrics": ["roc_auc_ovr"]}, InvalidArgumentError,
     r"bootstrap intervals of the multiclass ROC-AUCs need auc=\"exact\""),
    ({"auc_bins": 1}, InvalidArgumentError, r"auc_bins"),
    ({"calibration_strategy": "median"}, InvalidArgumentError, r"calibration_strategy"),
    ({"metrics": ["roc_auc"]}, InvalidArgumentError, r"roc_auc is not a multiclass metric"),
    ({"metrics": ["mae"]}, InvalidArgumentError, r"mae is not a multiclass metric"),
    ({"k": 0}, InvalidArgumentError, r"k \(of top_k_accuracy\)"),
    ({"k": [2, "x"]}, InvalidArgumentError, r"k \(of top_k_accuracy\)"),
    ({"normalize": "sum"}, InvalidArgumentError, r"normalize must be one of"),
    ({"prediction": "p0"}, InvalidArgumentError, r"takes score="),
])
def test_bad_arguments_are_refused(kwargs, error, message):
    data = {"y": [0, 1, 2], "p0": [0.2, 0.3, 0.5], "p1": [0.3, 0.3, 0.2],
            "p2": [0.5, 0.4, 0.3]}
    kw = {"score": ["p0", "p1", "p2"], **kwargs}
    if "prediction" in kwargs:
        kw.pop("score")
    with pytest.raises(error, match=message):
        evaluate(data, **kw)


def test_the_score_column_must_be_a_list_of_floats_of_at_least_two():
    with pytest.raises(InvalidArgumentError, match=r"variable-size list: pass classes="):
        evaluate(_t(list_type=pa.list_(pa.float64())))
    one = pa.table({"y": [0, 0], "p": pa.array([[1.0], [1.0]], pa.list_(pa.float64(), 1))})
    with pytest.raises(InvalidArgumentError, match=r"lists of 1 score"):
        evaluate(one)
    ints = pa.table({"y": [0, 1], "p": pa.array([[1, 0], [0, 1]], pa.list_(pa.int64(), 2))})
    with pytest.raises(SchemaError, match=r'"p".*list column of float32 or float64'):
        evaluate(ints)
    with pytest.raises(SchemaError, match=r'"p".*list column'):
        evaluate({"y": [0, 1], "p": [0.2, 0.7]})
    with pytest.raises(InvalidArgumentError, match=r"needs score="):
        assay.evaluate({"y": [0, 1]}, task="multiclass", label="y")


@pytest.mark.parametrize("kwargs", [{"classes": ["a", "b"]}, {"k": 2},
                                    {"normalize": "softmax"}])
def test_multiclass_options_are_refused_by_other_tasks(kwargs):
    with pytest.raises(InvalidArgumentError, match="only applies to task='multiclass'"):
        assay.evaluate({"y": [0, 1], "p": [0.2, 0.7]}, label="y", score="p", **kwargs)
    with pytest.raises(InvalidArgumentError, match="only applies to task='multiclass'"):
        assay.evaluate({"y": [0.0, 1.0], "p": [0.2, 0.7]}, task="regression", label="y",
                       prediction="p", **kwargs)


def test_every_error_is_an_assay_error():
    for call in (lambda: evaluate(_t(y=[0, 9, 1])),
                 lambda: evaluate(_t(), classes=["x"]),
                 lambda: evaluate(_t(p=[P3[0], [2.0, 0.0, 0.0], P3[2]]))):
        with pytest.raises(AssayError):
            call()


def test_unknown_columns_are_named():
    with pytest.raises(AssayError, match="nope"):
        evaluate(_t(), score="nope")
    with pytest.raises(AssayError, match="nope"):
        evaluate({"y": [0, 1], "a": [0.5, 0.5], "b": [0.5, 0.5]}, score=["a", "nope"])


# --------------------------------------------------------------------------------------------
# more label and score forms
# --------------------------------------------------------------------------------------------


def test_dictionary_labels_may_hold_values_no_row_uses():
    p = fsl(np.array(P3 + [[0.3, 0.3, 0.4]]))
    unused = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 0], pa.int8()),
                                            pa.array(["a", "b", "c", "zzz"]))
    plain = pa.array(["a", "b", "c", "a"])
    want = evaluate(pa.table({"y": plain, "p": p}), classes=["a", "b", "c"])
    same(evaluate(pa.table({"y": unused, "p": p}), classes=["a", "b", "c"]).table, want.table)
    used = pa.DictionaryArray.from_arrays(pa.array([0, 1, 3, 0], pa.int8()),
                                          pa.array(["a", "b", "c", "zzz"]))
    with pytest.raises(InvalidInputError, match=r'"y".*label "zzz" at row 2'):
        evaluate(pa.table({"y": used, "p": p}), classes=["a", "b", "c"])
    # A null key is a null label: dropped on request.
    nulls = pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0], pa.int8()),
                                           pa.array(["a", "b", "c"]))
    with pytest.raises(InvalidInputError, match=r'"y".*label is null at row 2'):
        evaluate(pa.table({"y": nulls, "p": p}), classes=["a", "b", "c"])
    rep = evaluate(pa.table({"y": nulls, "p": p}), classes=["a", "b", "c"], nan_policy="drop")
    assert rep.dropped == 1
    same(rep.table, evaluate(pa.table({"y": plain, "p": p}).take([0, 1, 3]),
                             classes=["a", "b", "c"]).table)
    ints = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 0], pa.int8()),
                                          pa.array([10, 20, 30]))
    same(evaluate(pa.table({"y": ints, "p": p}), classes=[10, 20, 30]).table, want.table)


def test_boolean_labels_are_classes_0_and_1():
    y, p, w, _ = sample(300, 2, seed=13)
    ints = evaluate(pl.DataFrame({"y": y, "p": p, "w": w}), weight="w", metrics=ALL_METRICS)
    bools = evaluate(pl.DataFrame({"y": y.astype(bool), "p": p, "w": w}), weight="w",
                     metrics=ALL_METRICS)
    same_report(bools, ints)


def test_integer_score_columns_are_read_as_numbers():
    y = np.array([0, 1, 2, 0, 2])
    hot = np.eye(3, dtype=np.int64)[[0, 1, 1, 2, 2]]
    cols = {"y": y, **{f"p{c}": hot[:, c] for c in range(3)}}
    floats = {"y": y, **{f"p{c}": hot[:, c].astype(float) for c in range(3)}}
    kw = dict(score=["p0", "p1", "p2"], metrics=ALL_METRICS)
    same_report(evaluate(cols, **kw), evaluate(floats, **kw))


def test_small_slices_keep_their_row_but_not_their_metrics():
    df = pl.DataFrame({"y": [0, 1, 2, 0], "p": np.array(P3 + [[0.3, 0.3, 0.4]]),
                       "g": ["a", "a", "a", "b"]})
    rep = evaluate(df, slices=["g"], min_slice_size=2)
    b = rows_by_slice(rep)["g=b"]
    assert b["n"] == 1 and all(b[m] is None for m in rep.metrics)
    notes = rep.notes.filter(pl.col("slice") == "g=b")
    assert sorted(notes["metric"]) == sorted(rep.metrics)
    assert all(x.startswith("not computed") for x in notes["note"])
    assert rows_by_slice(rep)["overall"]["accuracy"] == pytest.approx(0.25)


def test_compare_reports_each_models_metrics():
    rng = np.random.default_rng(14)
    n, k = 800, 4
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k))
    z[np.arange(n), y] += 2.0
    good, bad = softmax(z), rng.dirichlet(np.ones(k), n)
    df = pl.DataFrame({"y": y, "a": good, "b": bad, "g": rng.choice(["x", "y"], n)})
    metrics = ["accuracy", "macro_f1", "log_loss"]
    cmp = assay.compare(df, task="multiclass", label="y", scores={"a": "a", "b": "b"},
                        slices=["g"], metrics=metrics, bootstrap=100)
    for model in ("a", "b"):
        one = rows_by_slice(evaluate(df, score=model, slices=["g"], metrics=metrics))
        for r in cmp.table.iter_rows(named=True):
            assert r[model] == pytest.approx(one[r["slice"]][r["metric"]], rel=1e-12)
    acc = cmp.table.filter((pl.col("slice") == "overall") & (pl.col("metric") == "accuracy"))
    assert acc["verdict"][0] == "worse"


def test_streamed_inputs_read_k_from_the_declared_list_size(tmp_path):
    """Without classes=, K is the fixed size of the score column's type: a polars LazyFrame
    declares it in its schema as a DataFrame does (pl.Array(Float64, K)), and so do a
    RecordBatchReader and a Parquet file."""
    y, p, w, g = sample(300, 4, seed=15)
    df = pl.DataFrame({"y": y, "p": p, "w": w, "g": g})
    kw = dict(weight="w", slices=["g"], metrics=ALL_METRICS)
    want = evaluate(df, **kw)
    same_report(evaluate(df.to_arrow().to_reader(max_chunksize=64), **kw), want, rtol=1e-12)
    df.write_parquet(tmp_path / "mc.parquet")
    same_report(evaluate(str(tmp_path / "mc.parquet"), **kw), want, rtol=1e-12)
    same_report(evaluate(df.lazy(), classes=[0, 1, 2, 3], **kw), want, rtol=1e-12)
    same_report(evaluate(df.lazy(), **kw), want, rtol=1e-12)
