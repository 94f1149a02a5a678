"""Every metric, overall and per slice, against scikit-learn on randomized data.

Data include ties (scores rounded to 2 decimals), scores exactly 0 and 1, optional weights,
single-class slices, slices without predicted positives and slices of one row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import (
    ALL_METRICS,
    assert_row,
    assert_value,
    reference,
    rows_by_slice,
    to_table,
)
from hypothesis import assume, given
from hypothesis import strategies as st

METRICS = ALL_METRICS + ["f2", "f0.5"]


@st.composite
def datasets(draw, max_n=300):
    n = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    n_groups = draw(st.integers(1, 6))
    weighted = draw(st.booleans())
    ties = draw(st.booleans())
    threshold = draw(st.sampled_from([0.5, 0.3, 0.7, 0.05, 0.95]))
    single_class = draw(st.sets(st.integers(0, n_groups - 1), max_size=n_groups))
    no_pred_pos = draw(st.sets(st.integers(0, n_groups - 1), max_size=2))
    extremes = draw(st.booleans())
    rng = np.random.default_rng(seed)

    # skewed group sizes so that some slices hold one or two rows
    p = rng.dirichlet(np.full(n_groups, 0.4))
    gi = rng.choice(n_groups, size=n, p=p)
    y = rng.integers(0, 2, n)
    for g in single_class:
        y[gi == g] = rng.integers(0, 2)
    s = np.clip(0.3 * y + 0.7 * rng.random(n), 0.0, 1.0)
    if ties:
        s = np.round(s, 2)
    for g in no_pred_pos:
        m = gi == g
        s[m] = np.minimum(s[m], np.nextafter(threshold, -np.inf)) * 0.9
    if extremes and n > 2:
        k = rng.integers(0, n, size=max(1, n // 10))
        s[k] = rng.choice([0.0, 1.0], size=len(k))
    w = rng.uniform(0.1, 5.0, n) if weighted else None
    g = np.array([f"v{i}" for i in gi])
    return dict(y=y, s=s, w=w, g=g, gi=gi, threshold=threshold, rng=rng)


def _eval(assay, table, weighted, **kw):
    return assay.evaluate(
        table, label="label", score="score", weight="w" if weighted else None, **kw
    )


@given(d=datasets())
def test_overall_and_categorical_slices_match_sklearn(assay, d):
    y, s, w, g, t = d["y"], d["s"], d["w"], d["g"], d["threshold"]
    table = to_table(y, s, w, g=g)
    rep = _eval(assay, table, w is not None, slices=["g"], metrics=METRICS, threshold=t)
    rows = rows_by_slice(rep)

    expected_labels = {"overall"} | {f"g={v}" for v in np.unique(g)}
    assert set(rows) == expected_labels

    assert rows["overall"]["n"] == len(y)
    assert_row(rows["overall"], reference(y, s, w, t, METRICS), "overall")
    if w is not None:
        assert_value(rows["overall"]["weight_sum"], float(w.sum()), "overall weight_sum")

    for v in np.unique(g):
        m = g == v
        row = rows[f"g={v}"]
        assert row["n"] == int(m.sum())
        assert row["g"] == v
        ww = None if w is None else w[m]
        if w is not None:
            assert_value(row["weight_sum"], float(ww.sum()), f"g={v} weight_sum")
        assert_row(row, reference(y[m], s[m], ww, t, METRICS), f"slice g={v}")


@given(d=datasets(max_n=200), n_h=st.integers(1, 3))
def test_crossed_slices_match_sklearn(assay, d, n_h):
    y, s, w, g, t, rng = d["y"], d["s"], d["w"], d["g"], d["threshold"], d["rng"]
    h = np.array([f"h{i}" for i in rng.integers(0, n_h, len(y))])
    table = to_table(y, s, w, g=g, h=h)
    rep = _eval(assay, table, w is not None, slices=[("g", "h")], metrics=METRICS, threshold=t)
    rows = rows_by_slice(rep)

    combos = sorted({(a, b) for a, b in zip(g, h, strict=True)})
    expected_labels = ["overall"] + [f"g={a} & h={b}" for a, b in combos]
    # row order: overall first, then sorted by g, then by h
    assert rep.table["slice"].to_list() == expected_labels
    assert_row(rows["overall"], reference(y, s, w, t, METRICS), "overall")
    for a, b in combos:
        m = (g == a) & (h == b)
        row = rows[f"g={a} & h={b}"]
        assert row["n"] == int(m.sum())
        assert (row["g"], row["h"]) == (a, b)
        ww = None if w is None else w[m]
        assert_row(row, reference(y[m], s[m], ww, t, METRICS), f"slice g={a} & h={b}")


def _bin_index(x, edges):
    """Left-closed bins [e_j, e_{j+1}), the last one closed."""
    k = np.searchsorted(edges, x, side="right") - 1
    k[x == edges[-1]] = len(edges) - 2
    assert ((k >= 0) & (k <= len(edges) - 2)).all()
    return k


def _check_bins(assay, d, x, edges, spec, t):
    y, s, w = d["y"], d["s"], d["w"]
    table = to_table(y, s, w, x=x)
    rep = _eval(assay, table, w is not None, slices=[spec], metrics=METRICS, threshold=t)
    tab = rep.table
    assert tab["slice"][0] == "overall"
    assert_row(tab.row(0, named=True), reference(y, s, w, t, METRICS), "overall")
    bin_rows = [r for r in tab.to_dicts()[1:]]
    # Empty bins may or may not be listed; if listed, everything in them is undefined.
    for r in bin_rows:
        if r["n"] == 0:
            assert all(r[m] is None for m in METRICS), r
    bin_rows = [r for r in bin_rows if r["n"] > 0]

    k = _bin_index(x, edges)
    present = np.unique(k)
    assert len(bin_rows) == len(present), (
        f"edges={edges.tolist()}: expected {len(present)} non-empty bins, got "
        f"{[r['slice'] for r in bin_rows]}"
    )
    for r, j in zip(bin_rows, present, strict=True):
        m = k == j
        assert r["slice"].startswith("x=[")
        assert r["slice"].endswith("]" if j == len(edges) - 2 else ")"), r["slice"]
        assert r["x"] == r["slice"][len("x=") :]
        assert r["n"] == int(m.sum()), f"bin {j} of edges {edges.tolist()}: {r['slice']}"
        ww = None if w is None else w[m]
        assert_row(r, reference(y[m], s[m], ww, t, METRICS), f"bin {r['slice']}")


@given(d=datasets(max_n=200), nb=st.integers(1, 6), round_x=st.booleans())
def test_quantile_bins_match_sklearn(assay, d, nb, round_x):
    rng = d["rng"]
    n = len(d["y"])
    assume(n >= 2)
    x = rng.normal(40, 12, n)
    if round_x:
        x = np.round(x / 5) * 5  # many ties, and values equal to edges
    if len(np.unique(x)) < 2:
        x[0] = x[0] + 1.0
    edges = np.unique(np.quantile(x, np.linspace(0, 1, nb + 1)))
    _check_bins(assay, d, x, edges, assay.bins("x", nb, strategy="quantile"), d["threshold"])


@given(d=datasets(max_n=200), nb=st.integers(1, 6), round_x=st.booleans())
def test_uniform_bins_match_sklearn(assay, d, nb, round_x):
    rng = d["rng"]
    n = len(d["y"])
    assume(n >= 2)
    x = rng.uniform(-3, 7, n)
    if round_x:
        x = np.round(x)
    if len(np.unique(x)) < 2:
        x[0] = x[0] + 1.0
    edges = np.linspace(x.min(), x.max(), nb + 1)
    _check_bins(assay, d, x, edges, assay.bins("x", nb, strategy="uniform"), d["threshold"])


@given(d=datasets(max_n=200), int_col=st.booleans())
def test_explicit_edges_match_sklearn(assay, d, int_col):
    rng = d["rng"]
    n = len(d["y"])
    x = rng.integers(18, 81, n)  # integer-valued ages, values hit the edges
    if not int_col:
        x = x.astype(np.float64)
    edges = np.array([18.0, 31.0, 45.0, 60.0, 80.0])
    _check_bins(assay, d, x, edges, assay.bins("x", edges=edges.tolist()), d["threshold"])


@given(d=datasets(max_n=150), nb=st.integers(1, 4))
def test_cross_of_category_and_bins(assay, d, nb):
    y, s, w, g, t, rng = d["y"], d["s"], d["w"], d["g"], d["threshold"], d["rng"]
    assume(len(y) >= 2)
    x = np.round(rng.uniform(0, 10, len(y)))
    if len(np.unique(x)) < 2:
        x[0] += 1.0
    edges = np.unique(np.quantile(x, np.linspace(0, 1, nb + 1)))
    k = _bin_index(x, edges)
    table = to_table(y, s, w, g=g, x=x)
    rep = _eval(
        assay,
        table,
        w is not None,
        slices=[("g", assay.bins("x", nb))],
        metrics=METRICS,
        threshold=t,
    )
    rows = [r for r in rep.table.to_dicts()[1:] if r["n"] > 0]
    combos = sorted({(a, b) for a, b in zip(g, k, strict=True)})
    assert len(rows) == len(combos), [r["slice"] for r in rows]
    for r, (a, j) in zip(rows, combos, strict=True):
        m = (g == a) & (k == j)
        assert r["slice"].startswith(f"g={a} & x=["), r["slice"]
        assert r["g"] == a
        assert r["n"] == int(m.sum())
        ww = None if w is None else w[m]
        assert_row(r, reference(y[m], s[m], ww, t, METRICS), r["slice"])


def test_default_bins_strategy_is_quantile(assay):
    rng = np.random.default_rng(7)
    n = 101
    x = rng.exponential(10, n)
    y = rng.integers(0, 2, n)
    s = rng.random(n)
    t = to_table(y, s, x=x)
    a = assay.evaluate(t, label="label", score="score", slices=[assay.bins("x", 4)]).table
    b = assay.evaluate(
        t, label="label", score="score", slices=[assay.bins("x", 4, strategy="quantile")]
    ).table
    assert a.equals(b)
    edges = np.quantile(x, np.linspace(0, 1, 5))
    k = _bin_index(x, edges)
    assert a["n"].to_list()[1:] == np.bincount(k, minlength=4).tolist()


# ------------------------------------------------------------------------------------------
# targeted cases that random data hits only by luck
# ------------------------------------------------------------------------------------------


def _single(assay, y, s, w=None, t=0.5, metrics=METRICS):
    table = to_table(np.asarray(y), np.asarray(s, dtype=float), w)
    rep = assay.evaluate(
        table,
        label="label",
        score="score",
        weight=None if w is None else "w",
        metrics=metrics,
        threshold=t,
    )
    return rep.table.row(0, named=True)


@pytest.mark.parametrize(
    "y,s",
    [
        ([1], [0.7]),
        ([0], [0.7]),
        ([1], [0.2]),
        ([0], [0.2]),
        ([0, 0, 0], [0.1, 0.6, 0.6]),  # no positives
        ([1, 1, 1], [0.1, 0.6, 0.6]),  # no negatives
        ([0, 1, 1], [0.1, 0.2, 0.3]),  # no predicted positives
        ([0, 1, 1], [0.6, 0.7, 0.9]),  # no predicted negatives
        ([0, 0], [0.1, 0.2]),  # TP + FP + FN == 0
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]),  # all tied, at the threshold
        ([1, 0, 1, 0, 1], [0.0, 1.0, 1.0, 0.0, 0.5]),  # log_loss clipping at 0 and 1
    ],
)
def test_degenerate_cases(assay, y, s):
    row = _single(assay, y, s)
    assert_row(row, reference(y, s, None, 0.5, METRICS), f"y={y} s={s}")


def test_threshold_is_inclusive(assay):
    y = [0, 1, 0, 1]
    s = [0.3, 0.3, 0.29, 0.31]
    row = _single(assay, y, s, t=0.3)
    assert row["prediction_rate"] == pytest.approx(0.75)
    assert_row(row, reference(y, s, None, 0.3, METRICS))


def test_weights_equal_to_repetition(assay):
    y = np.array([0, 1, 1, 0, 1])
    s = np.array([0.2, 0.4, 0.8, 0.6, 0.4])
    w = np.array([1.0, 2.0, 3.0, 1.0, 2.0])
    row_w = _single(assay, y, s, w)
    rep = np.repeat(np.arange(5), w.astype(int))
    row_r = _single(assay, y[rep], s[rep])
    for m in METRICS:
        assert_value(row_w[m], row_r[m], m)
    assert_row(row_w, reference(y, s, w, 0.5, METRICS))


def test_scores_outside_unit_interval_allowed_without_probability_metrics(assay):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.normal(0, 3, 80), 1)
    ms = [m for m in METRICS if m not in ("log_loss", "brier")]
    row = _single(assay, y, s, t=0.0, metrics=ms)
    assert_row(row, reference(y, s, None, 0.0, ms))


def test_label_types_agree(assay):
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 2)
    base = None
    for arr in (
        pa.array(y.astype(bool)),
        pa.array(y.astype(np.int8)),
        pa.array(y.astype(np.uint8)),
        pa.array(y.astype(np.int64)),
        pa.array(y.astype(np.float32)),
        pa.array(y.astype(np.float64)),
    ):
        t = pa.table({"label": arr, "score": pa.array(s)})
        tab = assay.evaluate(t, label="label", score="score", metrics=METRICS).table
        if base is None:
            base = tab
            assert_row(tab.row(0, named=True), reference(y, s, None, 0.5, METRICS))
        else:
            assert tab.equals(base), arr.type


def test_large_input_matches_sklearn(assay):
    """Enough rows for the engine's parallel chunking (several 16k-row chunks) to matter."""
    rng = np.random.default_rng(2024)
    n = 70_000
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(0.2 * y + 0.8 * rng.random(n), 0, 1), 3)
    w = rng.uniform(0.1, 3.0, n)
    g = np.array([f"k{i:03d}" for i in range(120)], dtype="<U8")[rng.integers(0, 120, n)]
    g[-5:] = "zz_tail"  # a tiny slice at the very end
    g[:3] = "aa_head"  # and one at the very start
    table = to_table(y, s, w, g=g)
    rep = assay.evaluate(
        table, label="label", score="score", weight="w", slices=["g"], metrics=METRICS, n_threads=2
    )
    rows = rows_by_slice(rep)
    assert len(rows) == 1 + len(np.unique(g))
    assert_row(rows["overall"], reference(y, s, w, 0.5, METRICS), "overall")
    for v in ["aa_head", "zz_tail", "k000", "k057", "k119"]:
        m = g == v
        assert rows[f"g={v}"]["n"] == int(m.sum())
        assert_row(rows[f"g={v}"], reference(y[m], s[m], w[m], 0.5, METRICS), v)
    ns = {k: r["n"] for k, r in rows.items()}
    vals, counts = np.unique(g, return_counts=True)
    assert all(ns[f"g={v}"] == c for v, c in zip(vals, counts, strict=True))
