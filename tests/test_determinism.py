"""Determinism: thread count, batch splitting, and the binned AUC approximation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import assert_tables_close
from sklearn import metrics as skm


def _big(n, seed=0, ties=True, weighted=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(0.25 * y + 0.75 * rng.random(n), 0, 1)
    if ties:
        s = np.round(s, 2)
    cols = {
        "label": pa.array(y),
        "score": pa.array(s),
        "country": pa.array(np.array([f"c{i:02d}" for i in range(40)])[rng.zipf(1.6, n) % 40]),
        "device": pa.array(np.array(["mobile", "desktop", "tablet"])[rng.integers(0, 3, n)]),
        "age": pa.array(np.clip(np.round(rng.normal(40, 12, n)), 1, 99)),
    }
    if weighted:
        cols["w"] = pa.array(rng.uniform(0.1, 3.0, n))
    return pa.table(cols)


def _kw(assay, weighted=True, quantile=True):
    """Slices of every kind. Quantile bins need the data up front, so they are left out of
    the tests that stream a RecordBatchReader (see test_quantile_bins_on_a_reader)."""
    age = (
        assay.bins("age", 8) if quantile else assay.bins("age", edges=[0, 20, 30, 40, 50, 60, 100])
    )
    return dict(
        label="label",
        score="score",
        weight="w" if weighted else None,
        slices=[
            "country",
            ("country", "device"),
            age,
            ("device", assay.bins("age", edges=[0, 30, 50, 200])),
        ],
    )


def _bit_identical(a, b):
    ta, tb = a.to_arrow(), b.to_arrow()
    assert ta.schema == tb.schema
    assert ta.equals(tb), "tables differ"
    assert a.equals(b)


@pytest.mark.parametrize("weighted", [True, False])
def test_thread_count_is_bit_identical(assay, weighted):
    t = _big(120_000, seed=1, weighted=weighted)
    kw = _kw(assay, weighted)
    base = assay.evaluate(t, n_threads=1, **kw).table
    for k in (2, 3, None):
        _bit_identical(assay.evaluate(t, n_threads=k, **kw).table, base)
    # repeated runs too
    _bit_identical(assay.evaluate(t, n_threads=2, **kw).table, base)


def test_thread_count_bit_identical_on_batched_input(assay):
    t = _big(40_000, seed=2)
    kw = _kw(assay, quantile=False)

    def reader():
        return pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=997))

    base = assay.evaluate(reader(), n_threads=1, **kw).table
    _bit_identical(assay.evaluate(reader(), n_threads=2, **kw).table, base)


def test_one_batch_vs_a_thousand(assay):
    t = _big(50_000, seed=3).combine_chunks()
    kw = _kw(assay, quantile=False)
    one = assay.evaluate(t, **kw).table
    batches = t.to_batches(max_chunksize=50)
    assert len(batches) == 1000
    many = assay.evaluate(pa.RecordBatchReader.from_batches(t.schema, batches), **kw).table
    assert one["slice"].to_list() == many["slice"].to_list()
    assert one["n"].to_list() == many["n"].to_list()
    assert_tables_close(one, many, rtol=1e-12, atol=1e-12)
    # and a table made of 1000 chunks
    chunked = pa.Table.from_batches(batches)
    assert_tables_close(assay.evaluate(chunked, **kw).table, one, rtol=1e-12, atol=1e-12)


def test_uneven_batches(assay):
    t = _big(20_000, seed=4).combine_chunks()
    kw = _kw(assay, quantile=False)
    one = assay.evaluate(t, **kw).table
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, 20_000), 300, replace=False))
    bounds = np.concatenate([[0], cuts, [20_000]])
    batches = [
        t.slice(a, b - a).to_batches()[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    many = assay.evaluate(pa.RecordBatchReader.from_batches(t.schema, batches), **kw).table
    assert_tables_close(one, many, rtol=1e-12, atol=1e-12)


def test_quantile_bins_on_a_reader(assay):
    """A one-shot RecordBatchReader cannot be read twice, so data-derived bins must be refused
    with a clear error that points to explicit edges; edges computed from the in-memory table
    then give the same table over the stream."""
    t = _big(5_000, seed=7).combine_chunks()
    kw = _kw(assay, quantile=True)

    def reader():
        return pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=100))

    with pytest.raises(assay.InvalidArgumentError, match="edges="):
        assay.evaluate(reader(), **kw)
    one = assay.evaluate(t, **kw)
    edges = [float(x) for x in np.quantile(t["age"].to_numpy(), np.linspace(0, 1, 9))]
    edges = sorted(set(edges))
    kw_edges = _kw(assay, quantile=False)
    kw_edges["slices"][2] = assay.bins("age", edges=edges)
    many = assay.evaluate(reader(), **kw_edges).table
    assert_tables_close(one.table, many, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_binned_auc_close_to_exact(assay, weighted):
    t = _big(100_000, seed=5, ties=False, weighted=weighted)
    kw = dict(
        label="label", score="score", weight="w" if weighted else None, slices=["device", "country"]
    )
    exact = assay.evaluate(t, auc="exact", **kw).table
    binned = assay.evaluate(t, auc="binned", **kw).table
    assert exact["slice"].to_list() == binned["slice"].to_list()
    assert exact["n"].to_list() == binned["n"].to_list()
    big = (exact["n"] >= 5000).to_numpy()
    assert big.sum() >= 4
    for m in ("roc_auc", "average_precision"):
        e = exact[m].to_numpy()[big]
        b = binned[m].to_numpy()[big]
        np.testing.assert_allclose(b, e, rtol=0, atol=1e-3, err_msg=m)
    # everything else is unaffected by the auc mode
    others = [c for c in exact.columns if c not in ("roc_auc", "average_precision")]
    assert_tables_close(exact.select(others), binned.select(others), rtol=1e-12, atol=1e-12)
    # and the exact one is sklearn's
    y = t["label"].to_numpy()
    s = t["score"].to_numpy()
    w = t["w"].to_numpy() if weighted else None
    assert exact["roc_auc"][0] == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), rel=1e-9)
    assert binned["roc_auc"][0] == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-3)
    assert binned["average_precision"][0] == pytest.approx(
        skm.average_precision_score(y, s, sample_weight=w), abs=1e-3
    )


@pytest.mark.parametrize("weights", ["none", "ones_then_varied", "varied"])
@pytest.mark.parametrize("batch_rows", [None, 50_000])
def test_binned_auc_is_the_exact_auc_of_the_binned_scores(assay, weights, batch_rows):
    """Binned ROC-AUC of each slice equals scikit-learn's on the bin indices (scores are
    binned as min(floor(s * bins), bins - 1)), to rounding: over many chunks, several specs and
    batches that cut chunks, and weights that are all 1 for the first rows. (A chunk's
    histograms with more cells than it has rows are logged row by row, their weights kept once
    one differs from 1; smaller ones are dense: both kinds are here.)"""
    n, bins = 200_000, 1024  # overall and device dense per chunk; country and the cross logged
    t = _big(n, seed=11, ties=False, weighted=weights != "none")
    if weights == "ones_then_varied":
        w = t["w"].to_numpy().copy()
        w[: n // 2] = 1.0
        t = t.set_column(t.schema.get_field_index("w"), "w", pa.array(w))
    kw = dict(label="label", score="score", weight=None if weights == "none" else "w",
              slices=["device", "country", ("device", "country")], metrics=["roc_auc"],
              auc="binned", auc_bins=bins)
    data = t if batch_rows is None else pa.RecordBatchReader.from_batches(
        t.schema, t.to_batches(max_chunksize=batch_rows))
    tab = assay.evaluate(data, **kw).table
    y = t["label"].to_numpy()
    b = np.minimum(np.floor(t["score"].to_numpy() * bins), bins - 1)
    w = None if weights == "none" else t["w"].to_numpy()
    dev, cty = t["device"].to_numpy(zero_copy_only=False), t["country"].to_numpy(
        zero_copy_only=False)
    masks = {"overall": np.ones(n, bool)}
    for d in np.unique(dev):
        masks[f"device={d}"] = dev == d
    for c in np.unique(cty):
        masks[f"country={c}"] = cty == c
    for d in np.unique(dev):
        for c in np.unique(cty):
            masks[f"device={d} & country={c}"] = (dev == d) & (cty == c)
    got = dict(zip(tab["slice"].to_list(), tab["roc_auc"].to_list(), strict=True))
    checked = 0
    for name, m in masks.items():
        if not m.any():
            continue
        if len(np.unique(y[m])) < 2:
            assert got[name] is None, name
            continue
        want = skm.roc_auc_score(y[m], b[m], sample_weight=None if w is None else w[m])
        assert got[name] == pytest.approx(want, rel=1e-12, abs=1e-12), name
        checked += 1
    assert checked > 100


def test_fine_binned_auc_over_many_chunks_is_not_refused(assay):
    """Binned histograms are dense only in the job's total, not in each chunk in flight: 41
    slices x 1e6 bins over 17 chunks needs ~0.6 GB, not the 10 GiB a dense histogram per chunk
    would (which the state-size guard refused)."""
    n = 1_100_000
    rng = np.random.default_rng(3)
    y, s = rng.integers(0, 2, n), rng.random(n)
    t = pa.table({"y": y, "p": s, "g": rng.integers(0, 40, n)})
    rep = assay.evaluate(t, label="y", score="p", slices=["g"], metrics=["roc_auc"],
                         auc="binned", auc_bins=1_000_000)
    b = np.minimum(np.floor(s * 1_000_000), 999_999)
    assert rep.table["roc_auc"][0] == pytest.approx(skm.roc_auc_score(y, b), rel=1e-12)


def test_binned_auc_undefined_matches_exact(assay):
    """Single-class slices are null in binned mode too."""
    t = pa.table(
        {
            "label": [0, 0, 1, 1, 0],
            "score": [0.1, 0.4, 0.35, 0.8, 0.2],
            "g": ["a", "a", "b", "b", "c"],
        }
    )
    kw = dict(label="label", score="score", slices=["g"], metrics=["roc_auc", "average_precision"])
    for mode in ("exact", "binned"):
        tab = assay.evaluate(t, auc=mode, **kw).table
        assert tab["slice"].to_list() == ["overall", "g=a", "g=b", "g=c"]
        assert tab["roc_auc"].to_list()[1:] == [None, None, None], mode
        assert tab["average_precision"][1] is None, mode  # no positives
        assert tab["average_precision"][3] is None, mode
        assert tab["average_precision"][2] == pytest.approx(1.0), mode


def test_binned_auc_thread_independent(assay):
    t = _big(60_000, seed=6, ties=False)
    kw = dict(label="label", score="score", weight="w", slices=["country"], auc="binned")
    _bit_identical(
        assay.evaluate(t, n_threads=1, **kw).table, assay.evaluate(t, n_threads=2, **kw).table
    )


def _uneven_batches(t):
    """``t`` as batches of a repeating pattern of sizes: whole chunks of 65,536 rows, batches
    that cut chunks, single rows and empty batches."""
    sizes = [65_536, 1, 999, 100_003, 0, 7, 65_536 - 1_007, 150_000, 3, 60_000, 11]
    bounds = [0]
    while bounds[-1] < t.num_rows:
        bounds.append(min(t.num_rows, bounds[-1] + sizes[len(bounds) % len(sizes)]))
    (whole,) = t.combine_chunks().to_batches()
    batches = [whole.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert any(b.num_rows == 0 for b in batches)
    return batches


def _grouped_stream_is_deterministic(assay, t, kw):
    """``t`` streamed in uneven batches gives the same bits for 1, 2 and 3 threads (whose
    groups differ) and the in-memory table's counts and values (to 1e-12)."""
    batches = _uneven_batches(t)

    def run(k):
        reader = pa.RecordBatchReader.from_batches(t.schema, batches)
        return assay.evaluate(reader, n_threads=k, **kw).table

    base = run(1)
    for k in (2, 3):
        _bit_identical(run(k), base)
    one = assay.evaluate(t, **kw).table
    assert one["n"].to_list() == base["n"].to_list()
    assert_tables_close(one, base, rtol=1e-12, atol=1e-12)

@pytest.mark.parametrize("weighted", [False, True])
def test_small_batches_read_in_groups_are_bit_identical_for_any_threads(assay, weighted):
    """A stream's small batches are read in groups (a few chunks per thread) whose pieces run
    in parallel; batches that cut chunks, a group that ends inside a chunk and empty batches
    give the same bits for any thread count (the groups' sizes follow it), and the in-memory
    table's values to 1e-12."""
    n = 700_000  # about 11 chunks of 65,536 rows: several groups at any thread count
    t = _big(n, seed=12, weighted=weighted).combine_chunks()
    kw = dict(_kw(assay, weighted=weighted, quantile=False), metrics=None)
    if weighted:
        kw.update(bootstrap=8, seed=3)
    _grouped_stream_is_deterministic(assay, t, kw)


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_task_families_read_small_batches_in_groups_alike(assay, task):
    """The regression and multiclass kernels run on the grouped pass too: uneven and empty
    batches give the same bits for 1-3 threads (one group or several) and the in-memory
    table's values to 1e-12."""
    import assay.demo as demo

    n = 450_000
    if task == "regression":
        t = demo.make_regression_data(n, seed=1)
        kw = dict(task="regression", label="price", prediction="pred", slices=["city"],
                  bootstrap=4, seed=2)
    else:
        t = demo.make_multiclass_data(n, seed=1)
        kw = dict(task="multiclass", label="species", score="probs", classes=demo.SPECIES,
                  slices=["camera", "light"], metrics=None)
    _grouped_stream_is_deterministic(assay, t, kw)
