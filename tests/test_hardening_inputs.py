"""Hardening of every way data comes in (issue 12): readers whose batches do not match their
declared schema, sources that fail mid-stream, lists converted through Arrow, duplicate column
names, unreadable files, lazy inputs that fail at collect, and readers used twice.

Each bad input must give a typed :class:`assay.AssayError` whose message names the column or
path and the problem (the original exception as ``__cause__``), never a crash, a hang, an opaque
Arrow error or a plausible wrong number; each good one the same result as the table path.
"""

from __future__ import annotations

import concurrent.futures
import os
import tracemalloc
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from conftest import assert_tables_close
from sklearn.metrics import roc_auc_score

METRICS = ["accuracy", "roc_auc", "brier"]


def _table(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    g = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    return pa.table({"y": pa.array(y, pa.int64()), "p": pa.array(p, pa.float64()),
                     "g": pa.array(g, pa.string()), "w": pa.array(rng.uniform(0.5, 2, n))})


KW = dict(label="y", score="p", slices=["g"], metrics=METRICS)


def _reader(t, batches=None, schema=None):
    return pa.RecordBatchReader.from_batches(schema or t.schema,
                                             batches if batches is not None else t.to_batches(97))


# ------------------------------------------------------------------------------------------
# 1. batches that do not match the reader's declared schema
# ------------------------------------------------------------------------------------------


def test_issue_c1_uint8_batch_in_int64_reader_is_a_schema_error(assay):
    n = 1 << 20
    s = pa.schema([("y", pa.int64()), ("p", pa.float64())])
    b = pa.record_batch([pa.array(np.zeros(n, np.uint8)), pa.array(np.full(n, 0.5))],
                        names=["y", "p"])
    with pytest.raises(assay.SchemaError) as ei:
        assay.evaluate(pa.RecordBatchReader.from_batches(s, iter([b])), label="y", score="p")
    msg = str(ei.value)
    assert "batch 0" in msg and "'y'" in msg and "int64" in msg and "uint8" in msg
    assert ei.value.column == "y"


def test_float32_data_in_float64_reader_is_refused_not_misread(assay):
    t = _table()
    p32 = pa.array(t["p"].to_numpy().astype(np.float32))
    b = pa.record_batch([t["y"].combine_chunks(), p32], names=["y", "p"])
    s = pa.schema([("y", pa.int64()), ("p", pa.float64())])
    with pytest.raises(assay.SchemaError) as ei:
        assay.evaluate(pa.RecordBatchReader.from_batches(s, [b]), label="y", score="p",
                       metrics=["roc_auc"])
    msg = str(ei.value)
    assert "'p'" in msg and "64-bit" in msg and "32-bit" in msg
    # The same data with a truthful schema gives scikit-learn's value.
    ok = pa.RecordBatchReader.from_batches(b.schema, [b])
    got = assay.evaluate(ok, label="y", score="p", metrics=["roc_auc"]).table["roc_auc"][0]
    assert got == pytest.approx(roc_auc_score(t["y"].to_numpy(), p32.to_numpy()), rel=1e-12)


def test_mismatch_in_a_later_batch_names_that_batch(assay):
    t = _table()
    good = t.select(["y", "p"]).to_batches(100)
    bad = pa.record_batch([pa.array([0, 1], pa.int32()), pa.array([0.1, 0.9])], names=["y", "p"])
    r = pa.RecordBatchReader.from_batches(t.select(["y", "p"]).schema, [*good[:2], bad])
    with pytest.raises(assay.SchemaError, match=r"batch 2 .*'y'.*int64.*int32"):
        assay.evaluate(r, label="y", score="p")


@pytest.mark.parametrize("case", ["extra", "missing", "reordered"])
def test_batch_with_other_columns(assay, case):
    s = pa.schema([("y", pa.int64()), ("p", pa.float64())])
    y, p = pa.array([0, 1, 0, 1]), pa.array([0.1, 0.8, 0.3, 0.6])
    if case == "extra":
        b = pa.record_batch([y, p, pa.array([1, 2, 3, 4])], names=["y", "p", "z"])
        col = "z"
    elif case == "missing":
        b = pa.record_batch([y], names=["y"])
        col = "p"
    else:
        b = pa.record_batch([p, y], names=["p", "y"])
        col = "y"
    with pytest.raises(assay.SchemaError) as ei:
        assay.evaluate(pa.RecordBatchReader.from_batches(s, [b]), label="y", score="p")
    assert "batch 0" in str(ei.value) and repr(col) in str(ei.value)
    assert ei.value.column == col


def test_string_declared_int64_data(assay):
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("g", pa.string())])
    b = pa.record_batch([pa.array([0, 1]), pa.array([0.2, 0.7]), pa.array([5, 6])],
                        names=["y", "p", "g"])
    with pytest.raises(assay.SchemaError, match=r"'g'.*declared string.*int64"):
        assay.evaluate(pa.RecordBatchReader.from_batches(s, [b]), label="y", score="p",
                       slices=["g"])


def test_nulls_in_a_column_declared_non_nullable(assay):
    s = pa.schema([pa.field("y", pa.int64()), pa.field("p", pa.float64(), nullable=False)])
    b = pa.record_batch([pa.array([0, 1]), pa.array([0.2, None])], names=["y", "p"])
    with pytest.raises(assay.InvalidInputError, match=r"'p'.*non-nullable"):
        assay.evaluate(pa.RecordBatchReader.from_batches(s, [b]), label="y", score="p")


def test_malformed_batch_is_refused(assay):
    from assay._input import _check_batch

    class Batch:  # what a producer bypassing pyarrow's checks could hand over
        schema = pa.schema([("y", pa.int64())])

        def column(self, j):
            return pa.array([0])

        def validate(self):
            raise pa.ArrowInvalid("Buffer #1 too small")

    with pytest.raises(assay.InvalidInputError, match="batch 3 of the reader is malformed") \
            as ei:
        _check_batch(Batch(), Batch.schema, 3, "the reader")  # type: ignore[arg-type]
    assert isinstance(ei.value.__cause__, pa.ArrowInvalid)


def test_mismatch_is_caught_by_every_streaming_entry_point(assay):
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("q", pa.float64())])
    b = pa.record_batch([pa.array([0, 1, 0, 1]), pa.array(np.array([.1, .8, .3, .6], np.float32)),
                         pa.array([.2, .7, .4, .5])], names=["y", "p", "q"])

    def reader():
        return pa.RecordBatchReader.from_batches(s, [b])

    with pytest.raises(assay.SchemaError, match="'p'"):
        assay.reliability(reader(), label="y", score="p")
    with pytest.raises(assay.SchemaError, match="'p'"):
        assay.compare(reader(), label="y", scores=["p", "q"], bootstrap=20, metrics=["accuracy"])
    with pytest.raises(assay.SchemaError, match="'p'"):
        assay.discover_slices(reader(), label="y", score="p", features=["y"], min_support=1)
    with pytest.raises(assay.SchemaError, match="'p'"):
        assay.thresholds(reader(), label="y", score="p")


def test_schema_metadata_differences_are_ignored(assay):
    t = _table()
    s = t.schema.with_metadata({"origin": "test"})
    s = s.set(1, s.field(1).with_metadata({"unit": "prob"}))
    r = pa.RecordBatchReader.from_batches(s, t.to_batches(50))
    assert_tables_close(assay.evaluate(r, **KW).table, assay.evaluate(t, **KW).table)


def test_valid_readers_match_the_table_path(assay):
    t = _table(n=3000, seed=3)
    ref = assay.evaluate(t, **KW, weight="w").table

    def gen():
        yield from t.to_batches(max_chunksize=211)

    for r in (_reader(t), pa.RecordBatchReader.from_batches(t.schema, gen())):
        assert_tables_close(assay.evaluate(r, **KW, weight="w").table, ref)
    y, p = t["y"].to_numpy(), t["p"].to_numpy()
    assert ref["roc_auc"][0] == pytest.approx(
        roc_auc_score(y, p, sample_weight=t["w"].to_numpy()), rel=1e-9)


# ------------------------------------------------------------------------------------------
# 2. exceptions raised by the source mid-stream
# ------------------------------------------------------------------------------------------


def _failing_reader(t, exc):
    def gen():
        yield from t.to_batches(100)[:2]
        raise exc

    return pa.RecordBatchReader.from_batches(t.schema, gen())


def test_generator_error_is_typed_with_cause(assay):
    t = _table()
    with pytest.raises(assay.InvalidInputError) as ei:
        assay.evaluate(_failing_reader(t, ValueError("upstream broke")), **KW)
    msg = str(ei.value)
    assert "RecordBatchReader input" in msg and "batch 2" in msg and "upstream broke" in msg
    assert isinstance(ei.value.__cause__, ValueError)
    assert "Unknown error" not in msg


def test_generator_keyboard_interrupt_is_itself(assay):
    t = _table()
    with pytest.raises(KeyboardInterrupt):
        assay.evaluate(_failing_reader(t, KeyboardInterrupt()), **KW)
    # and the package is still usable afterwards
    assert assay.evaluate(t, **KW).table.height == 4


@pytest.mark.parametrize("entry", ["reliability", "compare", "discover_slices", "thresholds"])
def test_generator_errors_in_every_streaming_entry_point(assay, entry):
    t = _table().append_column("q", pa.array(np.linspace(0, 1, 400)))

    def call(r):
        if entry == "reliability":
            return assay.reliability(r, label="y", score="p")
        if entry == "compare":
            return assay.compare(r, label="y", scores=["p", "q"], bootstrap=20,
                                 metrics=["accuracy"])
        if entry == "discover_slices":
            return assay.discover_slices(r, label="y", score="p", features=["g"],
                                         min_support=1)
        return assay.thresholds(r, label="y", score="p")

    with pytest.raises(assay.InvalidInputError, match="upstream broke") as ei:
        call(_failing_reader(t, RuntimeError("upstream broke")))
    assert isinstance(ei.value.__cause__, RuntimeError)
    with pytest.raises(KeyboardInterrupt):
        call(_failing_reader(t, KeyboardInterrupt()))


def test_source_error_after_all_rows_is_not_ignored(assay):
    t = _table()

    def gen():
        yield from t.to_batches()
        raise OSError("connection reset")

    r = pa.RecordBatchReader.from_batches(t.schema, gen())
    with pytest.raises(assay.InvalidInputError, match="connection reset"):
        assay.evaluate(r, **KW)


def test_lazyframe_failing_at_collect(assay):
    lf = pl.LazyFrame({"y": [0, 1, 0, 1], "p": ["0.1", "x", "0.3", "0.4"]}).with_columns(
        pl.col("p").cast(pl.Float64))
    with pytest.raises(assay.InvalidInputError) as ei:
        assay.evaluate(lf, label="y", score="p")
    assert "LazyFrame" in str(ei.value) and "'x'" in str(ei.value) or '"x"' in str(ei.value)
    assert isinstance(ei.value.__cause__, pl.exceptions.PolarsError)
    with pytest.raises(assay.InvalidInputError, match="LazyFrame") as ei:
        assay.thresholds(lf, label="y", score="p")
    assert isinstance(ei.value.__cause__, pl.exceptions.PolarsError)


def test_lazyframe_failing_at_schema(assay):
    lf = pl.LazyFrame({"y": [0, 1]}).select("nope")
    with pytest.raises(assay.InvalidInputError, match=r"LazyFrame.*schema.*nope") as ei:
        assay.evaluate(lf, label="y", score="p")
    assert isinstance(ei.value.__cause__, pl.exceptions.PolarsError)


def test_lazyframe_failing_while_reading_bin_column(assay):
    lf = pl.LazyFrame({"y": [0, 1, 0, 1], "p": [0.1, 0.9, 0.2, 0.8],
                       "a": ["1", "2", "x", "4"]}).with_columns(pl.col("a").cast(pl.Float64))
    with pytest.raises(assay.InvalidInputError, match=r"LazyFrame.*column 'a'") as ei:
        assay.evaluate(lf, label="y", score="p", slices=[assay.bins("a", 2)])
    assert isinstance(ei.value.__cause__, pl.exceptions.PolarsError)


def test_duckdb_relation_failing_mid_stream(assay):
    con = duckdb.connect()
    rel = con.sql("select (i % 2)::int as y, (case when i = 3000 then 'x' else '0.5' end)::double"
                  " as p from range(5000) t(i)")
    with pytest.raises(assay.InvalidInputError, match=r"duckdb relation.*'x'") as ei:
        assay.evaluate(rel, label="y", score="p")
    assert ei.value.__cause__ is not None


# ------------------------------------------------------------------------------------------
# 3. dicts of lists go through Arrow, not numpy
# ------------------------------------------------------------------------------------------


def test_nul_bytes_in_list_strings_are_kept(assay):
    g = ["a\0x", "a\0y", "b\0x", "b"] * 25
    y = [0, 1] * 50
    p = list(np.linspace(0, 1, 100))
    rep = assay.evaluate({"y": y, "p": p, "g": g}, label="y", score="p", slices=["g"],
                         metrics=METRICS)
    ref = assay.evaluate(pa.table({"y": y, "p": p, "g": pa.array(g)}), label="y", score="p",
                         slices=["g"], metrics=METRICS)
    assert rep.table.height == 5  # overall + 4 distinct values
    assert_tables_close(rep.table, ref.table)


def test_one_long_string_does_not_blow_up_memory(assay):
    from assay._input import to_source

    n = 500
    g = ["short"] * n
    g[7] = "x" * 200_000  # numpy would pad every value: 500 x 200k x 4 bytes = 400 MB
    tracemalloc.start()
    try:
        source = to_source({"y": [0, 1] * (n // 2), "p": [0.5] * n, "g": g})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6, peak
    assert source.column is not None and source.column("g").nbytes < 1e6
    rep = assay.evaluate({"y": [0, 1] * (n // 2), "p": [0.5] * n, "g": g}, label="y",
                         score="p", slices=["g"], metrics=["accuracy"])
    assert sorted(rep.table["n"].to_list()) == [1, n - 1, n]


@pytest.mark.parametrize("conv", [list, tuple, "range", "object", "big_endian", "polars",
                                  "pandas"])
def test_sequences_match_the_table_path(assay, conv):
    t = _table(n=300, seed=4)
    ref = assay.evaluate(t, **KW).table
    d = {}
    for c in ("y", "p", "g"):
        v = t[c].to_pylist()
        if conv in (list, tuple):
            d[c] = conv(v)
        elif conv == "range":
            d[c] = v
        elif conv == "object":
            d[c] = np.array(v, dtype=object)
        elif conv == "big_endian":
            d[c] = np.array(v).astype(np.array(v).dtype.newbyteorder(">")) if c != "g" else v
        elif conv == "polars":
            d[c] = pl.Series(v)
        else:
            d[c] = pd.Series(v)
    if conv == "range":
        d["r"] = range(300)
    assert_tables_close(assay.evaluate(d, **KW).table, ref)


@pytest.mark.parametrize("values", [[1, "a", None], np.array([1, "a", None], dtype=object),
                                    [0.5, b"x", 1], [2**70, 1, 2], [[1], 2, 3]])
def test_mixed_values_are_schema_errors_naming_the_column(assay, values):
    d = {"y": [0, 1, 0], "p": [0.1, 0.9, 0.5], "bad": values}
    with pytest.raises(assay.SchemaError, match="'bad'") as ei:
        assay.evaluate(d, label="y", score="p", slices=["bad"])
    assert ei.value.column == "bad"
    assert isinstance(ei.value.__cause__, (pa.ArrowException, TypeError, ValueError,
                                           OverflowError))


# (A 2-d float array is a column: a fixed-size list, such as a multiclass model's
# probabilities; other 2-d and 3-d arrays are not.)
@pytest.mark.parametrize("values", [np.zeros((3, 2), dtype=np.int64), np.zeros((3, 2, 2)),
                                    np.float64(1.0), 5, "abc", None, {"a": 1}, {1, 2, 3},
                                    object()])
def test_non_columns_are_schema_errors(assay, values):
    d = {"y": [0, 1, 0], "p": [0.1, 0.9, 0.5], "bad": values}
    with pytest.raises(assay.SchemaError, match="'bad'") as ei:
        assay.evaluate(d, label="y", score="p")
    assert ei.value.column == "bad"


def test_non_string_keys(assay):
    with pytest.raises(assay.InvalidArgumentError, match="column names must be strings.*7"):
        assay.evaluate({"y": [0, 1], "p": [0.2, 0.8], 7: [1, 2]}, label="y", score="p")


# ------------------------------------------------------------------------------------------
# 4. duplicate column names
# ------------------------------------------------------------------------------------------


def _dup_table(extra_name):
    t = _table(n=200, seed=6)
    return t.append_column(extra_name, pa.array(np.linspace(0, 1, 200)))


@pytest.mark.parametrize("role", ["label", "score", "weight", "slice", "bins", "row_id"])
def test_duplicate_used_column_is_refused(assay, role):
    if role == "label":
        t = t0 = _dup_table("y")
        kw = dict(label="y", score="p")
        dup = "y"
    else:
        name = {"score": "p", "weight": "w", "slice": "g", "bins": "w", "row_id": "w"}[role]
        t0 = _table(n=200, seed=6)
        t = t0.append_column(name, t0[name])
        kw = dict(label="y", score="p")
        if role == "weight":
            kw["weight"] = "w"
        elif role == "slice":
            kw["slices"] = ["g"]
        elif role == "bins":
            kw["slices"] = [assay.bins("w", 3)]
        elif role == "row_id":
            t = t0.append_column("id", pa.array(np.arange(200))).append_column(
                "id", pa.array(np.arange(200)))
            kw.update(bootstrap=10, row_id="id", metrics=["accuracy"])
        dup = "id" if role == "row_id" else name
    for data in (t, pa.RecordBatchReader.from_batches(t.schema, t.to_batches())):
        with pytest.raises(assay.SchemaError, match=rf"{dup!r} appears 2 times") as ei:
            assay.evaluate(data, **kw)
        assert ei.value.column == dup


def test_unused_duplicate_is_fine(assay):
    t = _table(n=200, seed=6)
    d = t.append_column("extra", pa.array(np.zeros(200))).append_column(
        "extra", pa.array(np.ones(200)))
    assert_tables_close(assay.evaluate(d, **KW).table, assay.evaluate(t, **KW).table)


def test_duplicates_in_pandas_compare_and_discovery(assay):
    t = _table(n=200, seed=6)
    df = t.to_pandas()
    df2 = pd.concat([df, df[["p"]]], axis=1)
    assert list(df2.columns).count("p") == 2
    with pytest.raises(assay.SchemaError, match="'p' appears 2 times"):
        assay.evaluate(df2, label="y", score="p")
    df3 = pd.concat([df, df[["w"]]], axis=1)  # 'w' not used: fine
    assert_tables_close(assay.evaluate(df3, **KW).table, assay.evaluate(t, **KW).table)
    td = t.append_column("q", t["p"]).append_column("q", t["p"])
    with pytest.raises(assay.SchemaError, match="'q' appears 2 times"):
        assay.compare(td, label="y", scores=["p", "q"], bootstrap=10, metrics=["accuracy"])
    tg = t.append_column("g", t["g"])
    with pytest.raises(assay.SchemaError, match="'g' appears 2 times"):
        assay.discover_slices(tg, label="y", score="p", features=["g"], min_support=1)
    with pytest.raises(assay.SchemaError, match="'g' appears more than once"):
        assay.thresholds(tg, label="y", score="p")


# ------------------------------------------------------------------------------------------
# 5. files
# ------------------------------------------------------------------------------------------


def _write(t, path):
    p = str(path)
    if p.endswith(".parquet"):
        pq.write_table(t, p, row_group_size=100, compression="none")
    elif p.endswith(".csv"):
        pacsv.write_csv(t, p)
    else:
        feather.write_feather(t, p)
    return p


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".arrow"])
def test_valid_files_match_the_table_path(assay, tmp_path, suffix):
    t = _table(n=500, seed=8)
    p = _write(t, tmp_path / f"d{suffix}")
    assert_tables_close(assay.evaluate(p, **KW).table, assay.evaluate(t, **KW).table)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".arrow", ".feather"])
def test_empty_file(assay, tmp_path, suffix):
    p = tmp_path / f"empty{suffix}"
    p.write_bytes(b"")
    with pytest.raises(assay.InvalidInputError, match=r"empty\.\w+'.*empty \(0 bytes\)"):
        assay.evaluate(str(p), label="y", score="p")


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "zeroed_footer"])
def test_corrupt_files(assay, tmp_path, suffix, damage):
    t = _table(n=500, seed=8)
    p = _write(t, tmp_path / f"d{suffix}")
    raw = bytearray(Path(p).read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = bytearray(np.random.default_rng(0).integers(0, 256, len(raw), np.uint8).tobytes())
    else:
        raw[-64:] = bytes(64)
    Path(p).write_bytes(bytes(raw))
    with pytest.raises(assay.InvalidInputError) as ei:
        assay.evaluate(p, **KW)
    assert repr(p) in str(ei.value) or p in str(ei.value)
    assert ei.value.__cause__ is not None


def test_corrupt_page_read_by_the_engine(assay, tmp_path):
    t = _table(n=500, seed=8)
    p = _write(t, tmp_path / "d.parquet")
    md = pq.ParquetFile(p).metadata
    off = md.row_group(3).column(1).data_page_offset
    raw = bytearray(Path(p).read_bytes())
    raw[off:off + 12] = b"\xff" * 12  # the page header: the footer still reads fine
    Path(p).write_bytes(bytes(raw))
    with pytest.raises(assay.InvalidInputError, match="d.parquet") as ei:
        assay.evaluate(p, **KW)
    assert "batch" in str(ei.value) and isinstance(ei.value.__cause__, Exception)
    # reading the damaged column for bin edges is typed too
    with pytest.raises(assay.InvalidInputError, match=r"d\.parquet.*column 'p'"):
        assay.evaluate(p, label="y", score="y", slices=[assay.bins("p", 3)])


def test_csv_with_a_bad_row(assay, tmp_path):
    p = tmp_path / "d.csv"
    rows = "".join(f"{i % 2},0.{i % 10}\n" for i in range(3000))
    p.write_text("y,p\n" + rows + "1,0.5,extra\n")
    with pytest.raises(assay.InvalidInputError, match="d.csv") as ei:
        assay.evaluate(str(p), label="y", score="p")
    assert ei.value.__cause__ is not None


def test_fifo_is_refused_without_hanging(assay, tmp_path):
    p = tmp_path / "pipe.parquet"
    os.mkfifo(p)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(assay.evaluate, str(p), label="y", score="p")
        with pytest.raises(assay.InvalidArgumentError, match=r"pipe\.parquet.*FIFO"):
            fut.result(timeout=60)


def test_device_is_refused(assay):
    with pytest.raises(assay.InvalidArgumentError, match="/dev/null.*not a regular file"):
        assay.evaluate("/dev/null", label="y", score="p")


def test_empty_directory(assay, tmp_path):
    d = tmp_path / "data.parquet"
    d.mkdir()
    with pytest.raises(assay.EmptyInputError, match=r"data\.parquet.*no data files") as ei:
        assay.evaluate(str(d), label="y", score="p")
    assert "available columns: " not in str(ei.value)


def test_directory_of_non_data_files(assay, tmp_path):
    (tmp_path / "README.txt").write_text("hello")
    (tmp_path / "notes.md").write_text("hi")
    with pytest.raises(assay.InvalidInputError, match=r"no data files.*README\.txt"):
        assay.evaluate(str(tmp_path), label="y", score="p")


def test_directory_of_data_files(assay, tmp_path):
    t = _table(n=600, seed=9)
    d = tmp_path / "parts"
    d.mkdir()
    for i in range(3):
        _write(t.slice(200 * i, 200), d / f"part-{i}.parquet")
    (d / "_SUCCESS").write_text("")
    rep = assay.evaluate(str(d), **KW)
    assert_tables_close(rep.table, assay.evaluate(t, **KW).table)


def test_directory_named_like_a_format(assay, tmp_path):
    t = _table(n=400, seed=9)
    d = tmp_path / "out.parquet"  # as Spark writes it: files without the suffix are read too
    d.mkdir()
    _write(t.slice(0, 150), d / "part-0.parquet")
    pq.write_table(t.slice(150), d / "part-1")
    assert_tables_close(assay.evaluate(str(d), **KW).table, assay.evaluate(t, **KW).table)


@pytest.mark.filterwarnings("ignore::assay.NothingFoundWarning")  # empty by design
def test_discovery_on_a_directory_with_a_fractional_min_support(assay, tmp_path):
    t = _table(n=400, seed=9)
    d = tmp_path / "out.parquet"
    d.mkdir()
    _write(t, d / "part-0.parquet")
    got = assay.discover_slices(str(d), label="y", score="p", features=["g"], min_support=0.1)
    ref = assay.discover_slices(t, label="y", score="p", features=["g"], min_support=0.1)
    assert got.equals(ref)


def test_directory_with_a_fifo_or_mixed_formats(assay, tmp_path):
    t = _table(n=100)
    d = tmp_path / "parts"
    d.mkdir()
    _write(t, d / "a.parquet")
    os.mkfifo(d / "b.parquet")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(assay.evaluate, str(d), label="y", score="p")
        with pytest.raises(assay.InvalidArgumentError, match=r"b\.parquet.*not a regular file"):
            fut.result(timeout=60)
    os.remove(d / "b.parquet")
    _write(t, d / "c.csv")
    with pytest.raises(assay.InvalidInputError, match=r"parts.*mixes file formats"):
        assay.evaluate(str(d), label="y", score="p")


def test_missing_file(assay, tmp_path):
    with pytest.raises(assay.InvalidArgumentError, match="no such file.*nope.parquet"):
        assay.evaluate(str(tmp_path / "nope.parquet"), label="y", score="p")


def test_permission_error_is_typed(assay, tmp_path, monkeypatch):
    import pyarrow.dataset as ds

    p = _write(_table(), tmp_path / "d.parquet")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(ds, "dataset", denied)
    with pytest.raises(assay.InvalidArgumentError, match=r"d\.parquet.*permission denied") \
            as ei:
        assay.evaluate(p, label="y", score="p")
    assert isinstance(ei.value.__cause__, PermissionError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(assay, tmp_path):
    p = _write(_table(), tmp_path / "d.parquet")
    os.chmod(p, 0)
    with pytest.raises(assay.AssayError, match=r"d\.parquet"):
        assay.evaluate(p, label="y", score="p")


# ------------------------------------------------------------------------------------------
# 7. a reader used twice
# ------------------------------------------------------------------------------------------


def test_reused_reader_says_so(assay):
    t = _table()
    r = _reader(t)
    first = assay.evaluate(r, **KW)
    assert_tables_close(first.table, assay.evaluate(t, **KW).table)
    with pytest.raises(assay.InvalidInputError, match="already read") as ei:
        assay.evaluate(r, **KW)
    assert "no rows" not in str(ei.value)
    r2 = _reader(t)
    assay.thresholds(r2, label="y", score="p")
    with pytest.raises(assay.InvalidInputError, match="already read"):
        assay.reliability(r2, label="y", score="p")


def test_reader_refused_before_reading_can_be_used_again(assay):
    t = _table()
    r = _reader(t)
    with pytest.raises(assay.ColumnNotFoundError):
        assay.evaluate(r, label="nope", score="p")
    assert_tables_close(assay.evaluate(r, **KW).table, assay.evaluate(t, **KW).table)
