"""Every error of the contract: its class, its Python base class, and what its message names."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest


def _t(n=20, seed=0, **extra):
    rng = np.random.default_rng(seed)
    cols = {
        "my_label": pa.array(rng.integers(0, 2, n)),
        "my_score": pa.array(np.round(rng.random(n), 2)),
        "my_w": pa.array(rng.uniform(0.5, 2.0, n)),
        "seg": pa.array([f"s{i % 3}" for i in range(n)]),
        "amount": pa.array(rng.normal(10, 3, n)),
    }
    for k, v in extra.items():
        cols[k] = v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v)
    return pa.table(cols)


def _ev(assay, data, **kw):
    kw.setdefault("label", "my_label")
    kw.setdefault("score", "my_score")
    return assay.evaluate(data, **kw)


def test_hierarchy(assay):
    E = assay
    for cls in (
        E.ColumnNotFoundError,
        E.SchemaError,
        E.InvalidInputError,
        E.EmptyInputError,
        E.InvalidArgumentError,
    ):
        assert issubclass(cls, E.AssayError), cls
    assert issubclass(E.AssayError, Exception)
    assert issubclass(E.ColumnNotFoundError, KeyError)
    assert issubclass(E.SchemaError, TypeError)
    assert issubclass(E.InvalidInputError, ValueError)
    assert issubclass(E.EmptyInputError, E.InvalidInputError)
    assert issubclass(E.EmptyInputError, ValueError)
    assert issubclass(E.InvalidArgumentError, ValueError)


def _raises(exc, data_fn, *names):
    """Run data_fn expecting `exc`; check every name appears in the message."""
    with pytest.raises(exc) as ei:
        data_fn()
    msg = str(ei.value)
    for n in names:
        assert str(n) in msg, f"message {msg!r} does not name {n!r}"
    return ei.value


# ------------------------------------------------------------------------------------------
# ColumnNotFoundError
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,missing",
    [
        (dict(label="no_such_label"), "no_such_label"),
        (dict(score="no_such_score"), "no_such_score"),
        (dict(weight="no_such_weight"), "no_such_weight"),
        (dict(slices=["no_such_slice"]), "no_such_slice"),
        (dict(slices=["seg", ("seg", "no_such_cross")]), "no_such_cross"),
    ],
)
def test_missing_columns(assay, kw, missing):
    e = _raises(assay.ColumnNotFoundError, lambda: _ev(assay, _t(), **kw), missing)
    assert isinstance(e, KeyError)
    assert isinstance(e, assay.AssayError)


def _as(kind, t):
    import polars as pl

    return {
        "table": lambda: t,
        "polars": lambda: pl.from_arrow(t),
        "polars_lazy": lambda: pl.from_arrow(t).lazy(),
        "pandas": lambda: t.to_pandas(),
        "numpy_dict": lambda: {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names},
    }[kind]()


@pytest.mark.parametrize("kind", ["table", "polars", "polars_lazy", "pandas", "numpy_dict"])
def test_missing_bins_column(assay, kind):
    data = _as(kind, _t())
    _raises(
        assay.ColumnNotFoundError,
        lambda: _ev(assay, data, slices=[assay.bins("no_such_num", 3)]),
        "no_such_num",
    )
    _raises(
        assay.ColumnNotFoundError,
        lambda: _ev(assay, _as(kind, _t()), slices=[assay.bins("no_such_num2", edges=[0, 1, 2])]),
        "no_such_num2",
    )


def test_missing_column_other_inputs(assay):
    import polars as pl

    _raises(
        assay.ColumnNotFoundError,
        lambda: _ev(assay, pl.from_arrow(_t()).lazy(), label="gone_label"),
        "gone_label",
    )
    d = {"my_label": np.array([0, 1]), "my_score": np.array([0.2, 0.8])}
    _raises(assay.ColumnNotFoundError, lambda: _ev(assay, d, slices=["gone_seg"]), "gone_seg")


# ------------------------------------------------------------------------------------------
# SchemaError
# ------------------------------------------------------------------------------------------


def test_float_slice_suggests_bins(assay):
    e = _raises(
        assay.SchemaError, lambda: _ev(assay, _t(), slices=["amount"]), "amount", "assay.bins"
    )
    assert isinstance(e, TypeError)
    _raises(assay.SchemaError, lambda: _ev(assay, _t(), slices=[("seg", "amount")]), "amount")
    f32 = _t(amount32=pa.array(np.arange(20, dtype=np.float32)))
    _raises(
        assay.SchemaError, lambda: _ev(assay, f32, slices=["amount32"]), "amount32", "assay.bins"
    )


def test_string_score(assay):
    t = _t(str_score=pa.array([str(i / 20) for i in range(20)]))
    e = _raises(assay.SchemaError, lambda: _ev(assay, t, score="str_score"), "str_score")
    assert isinstance(e, TypeError)


def test_string_label(assay):
    t = _t(str_label=pa.array(["0", "1"] * 10))
    _raises(assay.SchemaError, lambda: _ev(assay, t, label="str_label"), "str_label")


def test_string_weight(assay):
    t = _t(str_w=pa.array(["1.0"] * 20))
    _raises(assay.SchemaError, lambda: _ev(assay, t, weight="str_w"), "str_w")


def test_bins_on_string_column(assay):
    _raises(assay.SchemaError, lambda: _ev(assay, _t(), slices=[assay.bins("seg", 3)]), "seg")


# (Decimals are numbers and slices, tested in tests/test_guards.py.)
_ODD_TYPES = {
    "timestamp": lambda n: pa.array(np.arange(n).astype("datetime64[s]")),
    "date": lambda n: pa.array(np.arange(n).astype("datetime64[D]")).cast(pa.date32()),
    "struct": lambda n: pa.array([{"a": 1}] * n),
    "dict_float": lambda n: pa.array(np.linspace(0, 1, n)).dictionary_encode(),
    "string": lambda n: pa.array(["0"] * n),
}


@pytest.mark.parametrize("typ", list(_ODD_TYPES))
@pytest.mark.parametrize("role", ["label", "score", "weight", "slice", "bins"])
def test_wrong_column_types_are_schema_errors(assay, typ, role):
    if typ in ("string", "timestamp", "date") and role == "slice":
        pytest.skip("strings, dates and timestamps are valid slices (tests/test_guards.py)")
    t = _t(odd_col=_ODD_TYPES[typ](20))
    kw = {
        "label": dict(label="odd_col"),
        "score": dict(score="odd_col"),
        "weight": dict(weight="odd_col"),
        "slice": dict(slices=["odd_col"]),
        "bins": dict(slices=[assay.bins("odd_col", edges=[0, 1])]),
    }[role]
    e = _raises(assay.SchemaError, lambda: _ev(assay, t, metrics=["accuracy"], **kw), "odd_col")
    assert isinstance(e, TypeError)


def test_unsupported_slice_type(assay):
    t = _t(lst=pa.array([[1, 2]] * 20))
    _raises(assay.SchemaError, lambda: _ev(assay, t, slices=["lst"]), "lst")


# ------------------------------------------------------------------------------------------
# InvalidInputError
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 2] * 7 + [0],
        [0, 1, -1, 1] * 5,
        [0.0, 1.0, 0.5, 1.0] * 5,
        [0.0, 1.0, float("nan"), 1.0] * 5,
    ],
    ids=["label_2", "label_-1", "label_0.5", "label_nan"],
)
def test_bad_label_values(assay, labels):
    t = _t(bad_label=pa.array(labels[:20]))
    e = _raises(assay.InvalidInputError, lambda: _ev(assay, t, label="bad_label"), "bad_label")
    assert isinstance(e, ValueError)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None], ids=str)
def test_bad_score_values_raise(assay, bad):
    vals = list(np.round(np.linspace(0, 1, 20), 2))
    vals[7] = bad
    t = _t(bad_score=pa.array(vals, pa.float64()))
    _raises(assay.InvalidInputError, lambda: _ev(assay, t, score="bad_score"), "bad_score")
    _raises(
        assay.InvalidInputError,
        lambda: _ev(assay, t, score="bad_score", nan_policy="raise", metrics=["accuracy"]),
        "bad_score",
    )


def test_null_label_raises(assay):
    vals = [0, 1] * 10
    vals[4] = None
    t = _t(null_label=pa.array(vals, pa.int64()))
    _raises(assay.InvalidInputError, lambda: _ev(assay, t, label="null_label"), "null_label")


@pytest.mark.parametrize("metric", ["log_loss", "brier"])
@pytest.mark.parametrize("bad", [1.5, -0.25])
def test_probability_out_of_range_names_row(assay, metric, bad):
    n = 2000
    s = np.round(np.linspace(0, 1, n), 3)
    s[1234] = bad
    t = _t(n=n, prob=pa.array(s))
    _raises(
        assay.InvalidInputError,
        lambda: _ev(assay, t, score="prob", metrics=["accuracy", metric]),
        "prob",
        "1234",
    )
    # the row index is global, also when the input arrives in many batches
    reader = pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=100))
    _raises(
        assay.InvalidInputError,
        lambda: _ev(assay, reader, score="prob", metrics=[metric]),
        "prob",
        "1234",
    )
    # default metrics include log_loss and brier
    _raises(assay.InvalidInputError, lambda: _ev(assay, t, score="prob"), "prob")


def test_probability_out_of_range_ok_without_probability_metrics(assay):
    s = np.linspace(-2, 3, 20)
    t = _t(raw=pa.array(s))
    rep = _ev(assay, t, score="raw", metrics=["accuracy", "roc_auc", "f1"], threshold=0.0)
    assert rep.table.height == 1


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")], ids=str)
def test_bad_weights(assay, bad):
    w = np.ones(20)
    w[5] = bad
    t = _t(bad_w=pa.array(w))
    e = _raises(assay.InvalidInputError, lambda: _ev(assay, t, weight="bad_w"), "bad_w")
    assert isinstance(e, ValueError)


def test_length_mismatch_numpy_dict(assay):
    d = {"my_label": np.array([0, 1, 1]), "my_score": np.array([0.1, 0.2])}
    with pytest.raises(assay.InvalidInputError):
        _ev(assay, d)


def test_binned_auc_needs_unit_interval(assay):
    s = np.linspace(0, 1, 20)
    s[3] = 1.5
    t = _t(raw=pa.array(s))
    _raises(
        assay.InvalidInputError,
        lambda: _ev(assay, t, score="raw", metrics=["roc_auc"], auc="binned"),
        "raw",
    )


# ------------------------------------------------------------------------------------------
# EmptyInputError
# ------------------------------------------------------------------------------------------


def test_empty_input(assay):
    t = _t().slice(0, 0)
    e = _raises(assay.EmptyInputError, lambda: _ev(assay, t))
    assert isinstance(e, assay.InvalidInputError)
    assert isinstance(e, ValueError)
    reader = pa.RecordBatchReader.from_batches(t.schema, [])
    with pytest.raises(assay.EmptyInputError):
        _ev(assay, reader)
    with pytest.raises(assay.EmptyInputError):
        _ev(assay, {"my_label": np.array([], dtype=np.int64), "my_score": np.array([])})


def test_all_rows_dropped(assay):
    t = _t(n=4, nan_score=pa.array([float("nan"), None, float("inf"), float("nan")], pa.float64()))
    with pytest.raises(assay.EmptyInputError):
        _ev(assay, t, score="nan_score", nan_policy="drop")


# ------------------------------------------------------------------------------------------
# InvalidArgumentError
# ------------------------------------------------------------------------------------------


def test_unknown_metric(assay):
    e = _raises(
        assay.InvalidArgumentError,
        lambda: _ev(assay, _t(), metrics=["accuracy", "bogus_metric"]),
        "bogus_metric",
    )
    assert isinstance(e, ValueError)


@pytest.mark.parametrize("bad", ["fx", "f", "f-1"])
def test_malformed_fbeta_names(assay, bad):
    with pytest.raises(assay.InvalidArgumentError):
        _ev(assay, _t(), metrics=[bad])


def test_bad_threshold(assay):
    with pytest.raises(assay.InvalidArgumentError):
        _ev(assay, _t(), threshold=float("nan"))


def test_bad_nan_policy(assay):
    with pytest.raises(assay.InvalidArgumentError):
        _ev(assay, _t(), nan_policy="ignore")


def test_bad_auc_mode(assay):
    with pytest.raises(assay.InvalidArgumentError):
        _ev(assay, _t(), auc="approximate")


@pytest.mark.parametrize("n", [0, -1])
def test_bins_n_below_one(assay, n):
    with pytest.raises(assay.InvalidArgumentError):
        _ev(assay, _t(), slices=[assay.bins("amount", n)])


@pytest.mark.parametrize("edges", [[0, 2, 1], [0, 1, 1, 2], [5, 5], [3, 1]])
def test_bins_edges_not_increasing(assay, edges):
    with pytest.raises(assay.InvalidArgumentError):
        _ev(assay, _t(), slices=[assay.bins("amount", edges=edges)])


def test_bad_bins_strategy(assay):
    with pytest.raises(assay.InvalidArgumentError):
        _ev(assay, _t(), slices=[assay.bins("amount", 3, strategy="kmeans")])


def test_errors_leave_no_state(assay):
    """A failed call does not poison the next one."""
    with pytest.raises(assay.AssayError):
        _ev(assay, _t(), metrics=["bogus"])
    rep = _ev(assay, _t(), slices=["seg"])
    assert rep.table.height == 4
