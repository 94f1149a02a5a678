"""Input types: every supported container and column type gives the same report."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import ALL_METRICS, assert_row, assert_tables_close, reference, rows_by_slice

N = 97


def _base_arrays(seed=5, n=N):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)
    w = rng.uniform(0.2, 4.0, n)
    country = np.array(["BR", "US", "DE", "FR"], dtype=object)[rng.integers(0, 4, n)]
    bucket = rng.integers(-3, 12, n)
    flag = rng.integers(0, 2, n).astype(bool)
    return dict(label=y, score=s, w=w, country=country, bucket=bucket, flag=flag)


def _base_table(seed=5, n=N):
    a = _base_arrays(seed, n)
    return pa.table(
        {
            "label": pa.array(a["label"], pa.int64()),
            "score": pa.array(a["score"], pa.float64()),
            "w": pa.array(a["w"], pa.float64()),
            "country": pa.array(list(a["country"]), pa.string()),
            "bucket": pa.array(a["bucket"], pa.int64()),
            "flag": pa.array(a["flag"], pa.bool_()),
        }
    )


SLICES = ["country", "bucket", "flag", ("country", "flag")]
KW = dict(label="label", score="score", weight="w", slices=SLICES)


_DUCK_CONNECTIONS: list = []


class _StreamOnly:
    """Something that only speaks the Arrow PyCapsule stream protocol."""

    def __init__(self, table):
        self._t = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._t.__arrow_c_stream__(requested_schema)


def _convert(kind, t: pa.Table):
    if kind == "table":
        return t
    if kind == "chunked_table":
        return pa.concat_tables([t.slice(0, 10), t.slice(10, 40), t.slice(50)])
    if kind == "record_batch":
        return t.combine_chunks().to_batches()[0]
    if kind == "reader":
        return pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=7))
    if kind == "polars":
        return pl.from_arrow(t)
    if kind == "polars_lazy":
        return pl.from_arrow(t).lazy().with_columns(pl.col("score") * 1.0)
    if kind == "pandas":
        return t.to_pandas()
    if kind == "duckdb":
        con = duckdb.connect()
        _DUCK_CONNECTIONS.append(con)  # keep the connection alive while the relation is used
        con.register("t_in", t)
        return con.sql("select * from t_in")
    if kind == "numpy_dict":
        return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}
    if kind == "stream_only":
        return _StreamOnly(t)
    raise AssertionError(kind)


KINDS = [
    "table",
    "chunked_table",
    "record_batch",
    "reader",
    "polars",
    "polars_lazy",
    "pandas",
    "duckdb",
    "numpy_dict",
    "stream_only",
]


@pytest.fixture(scope="module")
def reference_report(assay):
    return assay.evaluate(_base_table(), **KW)


def test_reference_report_matches_sklearn(reference_report):
    a = _base_arrays()
    rows = rows_by_slice(reference_report)
    y, s, w = a["label"], a["score"], a["w"]
    assert_row(rows["overall"], reference(y, s, w), "overall")
    for v in np.unique(a["country"]):
        m = a["country"] == v
        assert_row(rows[f"country={v}"], reference(y[m], s[m], w[m]), v)
    for b in np.unique(a["bucket"]):
        m = a["bucket"] == b
        assert_row(rows[f"bucket={b}"], reference(y[m], s[m], w[m]), str(b))


@pytest.mark.parametrize("kind", KINDS)
def test_every_input_type_gives_the_same_table(assay, reference_report, kind):
    data = _convert(kind, _base_table())
    rep = assay.evaluate(data, **KW)
    # (duckdb does not promise scan order: metrics do not depend on it, sums may by an ulp)
    assert_tables_close(rep.table, reference_report.table, rtol=1e-12)
    assert rep.dropped == 0


def test_numpy_dict_with_numpy_string_column(assay, reference_report):
    a = _base_arrays()
    d = dict(a)
    d["country"] = a["country"].astype(str)  # '<U2' dtype
    rep = assay.evaluate(d, **KW)
    assert_tables_close(rep.table, reference_report.table)


def test_sliced_table_with_offsets(assay):
    """Arrays with a non-zero offset (bool, null bitmaps) must be read from the offset."""
    t = _base_table(n=200)
    country = t["country"].to_pylist()
    for i in range(0, 200, 7):
        country[i] = None
    t = t.set_column(3, "country", pa.array(country, pa.string()))
    t = t.set_column(0, "label", pa.array(t["label"].to_numpy().astype(bool)))
    sub = t.slice(13, 150)
    copy = pa.Table.from_pylist(sub.to_pylist(), schema=sub.schema)
    a = assay.evaluate(sub, **KW).table
    b = assay.evaluate(copy, **KW).table
    assert_tables_close(a, b)
    y = np.array(sub["label"].to_pylist(), dtype=int)
    s = sub["score"].to_numpy()
    w = sub["w"].to_numpy()
    rows = {r["slice"]: r for r in a.to_dicts()}
    assert_row(rows["overall"], reference(y, s, w), "overall of offset slice")
    fl = np.array(sub["flag"].to_pylist())
    assert_row(
        rows["flag=true"] if "flag=true" in rows else rows["flag=True"],
        reference(y[fl], s[fl], w[fl]),
        "flag=true",
    )


# ------------------------------------------------------------------------------------------
# slice column types
# ------------------------------------------------------------------------------------------

VALS = ["b", "a", "c", "a", None, "b", "c", "c", "a", "b", "a", None]


def _slice_frame(col: pa.Array):
    n = len(col)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.random(n), 2)
    return pa.table({"label": y, "score": s, "seg": col}), y, s


@pytest.mark.parametrize(
    "arr",
    [
        pa.array(VALS, pa.string()),
        pa.array(VALS, pa.large_string()),
        pa.array(VALS, pa.string()).cast(pa.string_view()),
        pa.array(VALS, pa.string()).dictionary_encode(),
        pa.DictionaryArray.from_arrays(
            pa.array([1, 2, 0, 2, None, 1, 0, 0, 2, 1, 2, None], pa.int8()),
            pa.array(["c", "b", "a", "unused"], pa.large_string()),
        ),
        pa.DictionaryArray.from_arrays(
            pa.array([1, 2, 0, 2, None, 1, 0, 0, 2, 1, 2, None], pa.int32()),
            pa.array(["c", "b", "a"], pa.string()),
        ),
    ],
    ids=[
        "string",
        "large_string",
        "string_view",
        "dictionary",
        "dict_int8_large",
        "dict_int32_rev",
    ],
)
def test_string_like_slice_columns(assay, arr):
    t, y, s = _slice_frame(arr)
    rep = assay.evaluate(t, label="label", score="score", slices=["seg"])
    tab = rep.table
    assert tab["slice"].to_list() == ["overall", "seg=a", "seg=b", "seg=c", "seg=null"]
    assert tab["seg"].to_list() == [None, "a", "b", "c", None]
    assert tab["seg"].dtype == pl.String
    assert tab["n"].to_list() == [12, 4, 3, 3, 2]
    vals = np.array(VALS, dtype=object)
    for r in tab.to_dicts()[1:]:
        v = r["seg"]
        m = (
            np.array([x == v for x in vals])
            if v is not None
            else np.array([x is None for x in vals])
        )
        assert_row(r, reference(y[m], s[m]), r["slice"])


def test_polars_and_pandas_categoricals(assay):
    t, y, s = _slice_frame(pa.array(VALS, pa.string()))
    base = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    df = pl.from_arrow(t).with_columns(pl.col("seg").cast(pl.Categorical))
    assert assay.evaluate(df, label="label", score="score", slices=["seg"]).table.equals(base)
    df_enum = pl.from_arrow(t).with_columns(pl.col("seg").cast(pl.Enum(["c", "b", "a"])))
    assert assay.evaluate(df_enum, label="label", score="score", slices=["seg"]).table.equals(base)
    pdf = t.to_pandas()
    pdf["seg"] = pd.Categorical(pdf["seg"], categories=["c", "b", "a", "zzz"])
    assert assay.evaluate(pdf, label="label", score="score", slices=["seg"]).table.equals(base)


@pytest.mark.parametrize("typ", [pa.int8(), pa.int16(), pa.int32(), pa.int64()], ids=str)
def test_signed_integer_slices_sort_numerically(assay, typ):
    vals = [10, -5, 3, -100, 10, 3, None, -5, 100, 9, 10, 3]
    t, y, s = _slice_frame(pa.array(vals, typ))
    tab = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    assert tab["slice"].to_list() == [
        "overall",
        "seg=-100",
        "seg=-5",
        "seg=3",
        "seg=9",
        "seg=10",
        "seg=100",
        "seg=null",
    ]
    assert tab["seg"].dtype == pl.String
    assert tab["seg"].to_list()[1:] == ["-100", "-5", "3", "9", "10", "100", None]
    assert tab["n"].to_list() == [12, 1, 2, 3, 1, 3, 1, 1]
    vals_a = np.array(vals, dtype=object)
    for r in tab.to_dicts()[1:]:
        m = np.array([x is None for x in vals]) if r["seg"] is None else (vals_a == int(r["seg"]))
        assert_row(r, reference(y[m], s[m]), r["slice"])


@pytest.mark.parametrize("typ", [pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()], ids=str)
def test_unsigned_integer_slices(assay, typ):
    big = {8: 200, 16: 60000, 32: 4_000_000_000, 64: 2**63 + 5}[typ.bit_width]
    vals = [big, 2, 10, 2, big, 1, 10, 10, 1, 2, big, 2]
    t, y, s = _slice_frame(pa.array(vals, typ))
    tab = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    assert tab["slice"].to_list() == ["overall", "seg=1", "seg=2", "seg=10", f"seg={big}"]
    assert tab["n"].to_list() == [12, 2, 4, 3, 3]


def test_int64_extremes(assay):
    lo, hi = -(2**63), 2**63 - 1
    vals = [hi, lo, 0, hi, lo, 0, 0, hi, lo, 1, 1, -1]
    t, y, s = _slice_frame(pa.array(vals, pa.int64()))
    tab = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    assert tab["slice"].to_list() == [
        "overall",
        f"seg={lo}",
        "seg=-1",
        "seg=0",
        "seg=1",
        f"seg={hi}",
    ]


def test_dictionary_of_integers(assay):
    arr = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, None], pa.int16()),
        pa.array([30, -2, 7], pa.int64()),
    )
    t, y, s = _slice_frame(arr)
    tab = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    assert tab["slice"].to_list() == ["overall", "seg=-2", "seg=7", "seg=30", "seg=null"]
    assert tab["n"].to_list() == [12, 4, 3, 4, 1]


def test_boolean_slices(assay):
    vals = [True, False, None, True, True, False, False, None, True, False, True, True]
    t, y, s = _slice_frame(pa.array(vals, pa.bool_()))
    tab = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    labels = tab["slice"].to_list()
    assert len(labels) == 4
    assert labels[0] == "overall"
    assert [x.lower() for x in labels[1:3]] == ["seg=false", "seg=true"]
    assert labels[3] == "seg=null"
    assert tab["n"].to_list() == [12, 4, 6, 2]
    va = np.array(vals, dtype=object)
    for r, key in zip(tab.to_dicts()[1:], [False, True, None], strict=True):
        m = np.array([x is key for x in va])
        assert_row(r, reference(y[m], s[m]), r["slice"])


def test_null_in_cross(assay):
    country = ["BR", None, "BR", "US", None, "US", "BR", None]
    device = ["m", "d", None, "m", "d", "d", "m", "m"]
    y = np.array([0, 1, 1, 0, 1, 0, 1, 0])
    s = np.array([0.1, 0.8, 0.6, 0.3, 0.2, 0.9, 0.7, 0.5])
    t = pa.table({"label": y, "score": s, "country": country, "device": device})
    tab = assay.evaluate(t, label="label", score="score", slices=[("country", "device")]).table
    assert tab["slice"].to_list() == [
        "overall",
        "country=BR & device=m",
        "country=BR & device=null",
        "country=US & device=d",
        "country=US & device=m",
        "country=null & device=d",
        "country=null & device=m",
    ]
    assert tab["country"].to_list() == [None, "BR", "BR", "US", "US", None, None]
    assert tab["device"].to_list() == [None, "m", None, "d", "m", "d", "m"]
    assert tab["n"].to_list() == [8, 2, 1, 1, 1, 2, 1]


def test_all_null_slice_column(assay):
    t = pa.table(
        {
            "label": [0, 1, 1, 0],
            "score": [0.1, 0.9, 0.4, 0.6],
            "seg": pa.array([None, None, None, None], pa.string()),
        }
    )
    tab = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    assert tab["slice"].to_list() == ["overall", "seg=null"]
    assert tab["n"].to_list() == [4, 4]


# ------------------------------------------------------------------------------------------
# streaming inputs
# ------------------------------------------------------------------------------------------


def test_record_batch_reader_streaming(assay):
    t = _base_table(seed=9, n=5000)
    ref = assay.evaluate(t, **KW).table
    reader = pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=333))
    assert_tables_close(assay.evaluate(reader, **KW).table, ref)

    def gen():
        yield from t.to_batches(max_chunksize=50)

    reader2 = pa.RecordBatchReader.from_batches(t.schema, gen())
    assert_tables_close(assay.evaluate(reader2, **KW).table, ref)


def test_reader_with_empty_batches(assay):
    t = _base_table(seed=2, n=300)
    ref = assay.evaluate(t, **KW).table
    empty = t.slice(0, 0).to_batches()
    empty = empty or [pa.RecordBatch.from_pylist([], schema=t.schema)]
    batches = empty + t.to_batches(max_chunksize=100) + empty + empty
    reader = pa.RecordBatchReader.from_batches(t.schema, batches)
    assert_tables_close(assay.evaluate(reader, **KW).table, ref)



def test_reader_with_empty_slices_of_a_batch(assay):
    """An empty slice taken inside a batch: pyarrow exports its string columns with their
    offset into the offsets but no values; such a batch is empty, not invalid."""
    t = _base_table(seed=3, n=300).combine_chunks()
    ref = assay.evaluate(t, **KW).table
    (whole,) = t.to_batches()
    batches = [whole.slice(0, 120), whole.slice(120, 0), whole.slice(120, 180), whole.slice(299, 0)]
    reader = pa.RecordBatchReader.from_batches(t.schema, batches)
    assert_tables_close(assay.evaluate(reader, **KW).table, ref)

def test_polars_lazyframe(assay):
    t = _base_table(seed=4, n=3000)
    ref = assay.evaluate(t.filter(pc.greater(t["w"], 1.0)), **KW).table
    lf = pl.from_arrow(t).lazy().filter(pl.col("w") > 1.0)
    assert_tables_close(assay.evaluate(lf, **KW).table, ref)
    a = _base_arrays(seed=4, n=3000)
    m = a["w"] > 1.0
    rows = rows_by_slice(assay.evaluate(lf, **KW))
    assert rows["overall"]["n"] == int(m.sum())
    assert_row(rows["overall"], reference(a["label"][m], a["score"][m], a["w"][m]))


def test_polars_streaming_from_parquet(assay, tmp_path):
    t = _base_table(seed=6, n=4000)
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(t, path, row_group_size=500)
    lf = pl.scan_parquet(path)
    assert_tables_close(assay.evaluate(lf, **KW).table, assay.evaluate(t, **KW).table)


# ------------------------------------------------------------------------------------------
# label types and nan_policy="drop"
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bool", "int8", "int32", "uint8", "int64", "float32", "float64"])
def test_label_types(assay, kind):
    a = _base_arrays(seed=8)
    t = _base_table(seed=8)
    ref = assay.evaluate(t, **KW).table
    lab = a["label"].astype(kind if kind != "bool" else bool)
    t2 = t.set_column(0, "label", pa.array(lab))
    assert_tables_close(assay.evaluate(t2, **KW).table, ref, rtol=0, atol=0)
    # and through polars / pandas
    assert_tables_close(assay.evaluate(pl.from_arrow(t2), **KW).table, ref)
    assert_tables_close(assay.evaluate(t2.to_pandas(), **KW).table, ref)


def test_score_types(assay):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s32 = np.round(rng.random(50), 2).astype(np.float32)
    t32 = pa.table({"label": y, "score": s32})
    t64 = pa.table({"label": y, "score": s32.astype(np.float64)})
    a = assay.evaluate(t32, label="label", score="score").table
    b = assay.evaluate(t64, label="label", score="score").table
    assert_tables_close(a, b, rtol=0, atol=0)
    # integer scores (e.g. 0/1 hard predictions) are numeric too
    ti = pa.table({"label": y, "score": (s32 > 0.5).astype(np.int32)})
    ms = [m for m in ALL_METRICS]
    row = assay.evaluate(ti, label="label", score="score").table.row(0, named=True)
    assert_row(row, reference(y, (s32 > 0.5).astype(float), None, 0.5, ms))


def test_nan_policy_drop(assay):
    a = _base_arrays(seed=12, n=60)
    y = a["label"].astype(float)
    s = a["score"].astype(float)
    bad = {3: "nan", 10: "inf", 17: "-inf", 25: "null_score", 40: "null_label"}
    yl = list(y.astype(int))
    sl = list(s)
    for i, k in bad.items():
        if k == "nan":
            sl[i] = float("nan")
        elif k == "inf":
            sl[i] = float("inf")
        elif k == "-inf":
            sl[i] = float("-inf")
        elif k == "null_score":
            sl[i] = None
        elif k == "null_label":
            yl[i] = None
    keep = np.array([i not in bad for i in range(60)])
    t = pa.table(
        {
            "label": pa.array(yl, pa.int64()),
            "score": pa.array(sl, pa.float64()),
            "w": a["w"],
            "country": list(a["country"]),
        }
    )
    kw = dict(label="label", score="score", weight="w", slices=["country"])
    rep = assay.evaluate(t, nan_policy="drop", **kw)
    assert rep.dropped == 5
    clean = t.filter(pa.array(keep))
    ref = assay.evaluate(clean, **kw)
    assert ref.dropped == 0
    assert_tables_close(rep.table, ref.table)
    assert rep.table["n"][0] == 55
    yy, ss, ww = a["label"][keep], a["score"][keep], a["w"][keep]
    assert_row(rep.table.row(0, named=True), reference(yy, ss, ww), "overall after drop")


def test_nan_policy_drop_nothing_to_drop(assay):
    t = _base_table()
    rep = assay.evaluate(t, nan_policy="drop", **KW)
    assert rep.dropped == 0
    assert rep.table.equals(assay.evaluate(t, **KW).table)


# Inputs that can be read again per column (a one-shot RecordBatchReader or bare
# __arrow_c_stream__ object is covered by test_determinism.py::test_quantile_bins_on_a_reader).
@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("reader", "stream_only")])
@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_data_derived_bins_with_every_input_type(assay, kind, strategy):
    t = _base_table(seed=21, n=150)
    t = t.append_column(
        "amount", pa.array(np.round(np.random.default_rng(21).gamma(2.0, 10.0, 150), 1))
    )
    kw = dict(
        label="label",
        score="score",
        weight="w",
        slices=[
            assay.bins("amount", 4, strategy=strategy),
            ("country", assay.bins("amount", 3, strategy=strategy)),
        ],
    )
    ref = assay.evaluate(t, **kw).table
    rep = assay.evaluate(_convert(kind, t), **kw)
    assert_tables_close(rep.table, ref, rtol=1e-12)
    x = t["amount"].to_numpy()
    if strategy == "quantile":
        edges = np.unique(np.quantile(x, np.linspace(0, 1, 5)))
    else:
        edges = np.linspace(x.min(), x.max(), 5)
    k = np.searchsorted(edges, x, side="right") - 1
    k[x == edges[-1]] = len(edges) - 2
    counts = np.bincount(k, minlength=len(edges) - 1)
    assert ref["n"].to_list()[1 : 1 + int((counts > 0).sum())] == counts[counts > 0].tolist()


# ------------------------------------------------------------------------------------------
# dictionaries that change between chunks / batches, offsets, unicode, nullable pandas ints
# ------------------------------------------------------------------------------------------


def _dict_chunks():
    c1 = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 1, 0, None, 1], pa.int32()), pa.array(["a", "b"])
    )
    c2 = pa.DictionaryArray.from_arrays(
        pa.array([1, 0, 2, 2, 1, 0], pa.int32()), pa.array(["c", "b", "a"])
    )
    c3 = pa.DictionaryArray.from_arrays(pa.array([0, 0, 0, 1], pa.int32()), pa.array(["d", "a"]))
    plain = ["a", "b", "b", "a", None, "b", "b", "c", "a", "a", "b", "c", "d", "d", "d", "a"]
    return [c1, c2, c3], plain


def test_dictionaries_differ_between_chunks(assay):
    chunks, plain = _dict_chunks()
    n = len(plain)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 2)
    ref = assay.evaluate(
        pa.table({"label": y, "score": s, "seg": pa.array(plain)}),
        label="label",
        score="score",
        slices=["seg"],
    ).table
    assert ref["slice"].to_list() == ["overall", "seg=a", "seg=b", "seg=c", "seg=d", "seg=null"]
    assert ref["n"].to_list() == [16, 5, 5, 2, 3, 1]
    t = pa.table({"label": y, "score": s, "seg": pa.chunked_array(chunks)})
    assert t["seg"].num_chunks == 3
    assert_tables_close(assay.evaluate(t, label="label", score="score", slices=["seg"]).table, ref)
    batches = t.to_batches()
    assert len(batches) == 3
    reader = pa.RecordBatchReader.from_batches(t.schema, batches)
    assert_tables_close(
        assay.evaluate(reader, label="label", score="score", slices=["seg"]).table, ref
    )


def test_sliced_dictionary_and_offsets_in_every_role(assay):
    n = 64
    rng = np.random.default_rng(17)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 2)
    w = rng.uniform(0.5, 2, n)
    seg = [["x", "y", "z", None][i] for i in rng.integers(0, 4, n)]
    flag = [bool(v) for v in rng.integers(0, 2, n)]
    t = pa.table(
        {
            "label": pa.array(y.astype(bool)),
            "score": s,
            "w": w,
            "seg": pa.array(seg).dictionary_encode(),
            "flag": flag,
            "num": pa.array(rng.integers(0, 10, n), pa.int16()),
        }
    )
    kw = dict(label="label", score="score", weight="w", slices=["seg", "flag", ("seg", "num")])
    for off, length in [(1, 40), (7, 57), (33, 31)]:
        sub = t.slice(off, length)
        copy = pa.Table.from_pylist(sub.to_pylist(), schema=sub.schema)
        assert_tables_close(
            assay.evaluate(sub, **kw).table, assay.evaluate(copy, **kw).table, rtol=0, atol=0
        )
        m = slice(off, off + length)
        row = assay.evaluate(sub, **kw).table.row(0, named=True)
        assert_row(row, reference(y[m], s[m], w[m]), f"offset {off}")


def test_unicode_slice_values_sort_by_code_point(assay):
    vals = ["é", "e", "Z", "a", "日本", "ß", "e", "a b", "a=b & c"]
    n = len(vals)
    t = pa.table({"label": [0, 1] * 4 + [1], "score": np.linspace(0, 1, n), "seg": vals})
    tab = assay.evaluate(t, label="label", score="score", slices=["seg"]).table
    uniq = sorted(set(vals))
    assert tab["slice"].to_list() == ["overall"] + [f"seg={v}" for v in uniq]
    assert tab["seg"].to_list() == [None] + uniq


def test_pandas_nullable_integer_slice(assay):
    df = pd.DataFrame(
        {
            "label": [0, 1, 1, 0, 1, 0],
            "score": [0.1, 0.9, 0.4, 0.3, 0.8, 0.6],
            "seg": pd.array([3, None, -1, 3, None, 12], dtype="Int64"),
        }
    )
    tab = assay.evaluate(df, label="label", score="score", slices=["seg"]).table
    assert tab["slice"].to_list() == ["overall", "seg=-1", "seg=3", "seg=12", "seg=null"]
    assert tab["n"].to_list() == [6, 1, 2, 1, 2]
