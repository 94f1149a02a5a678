"""Datasets on disk as ``data=``: directories, Hive-partitioned trees (partition keys usable as
slices), globs, lists of paths and ``pyarrow.dataset.Dataset``; and the projection: a job reads
only the columns it needs, from files, datasets, lazy frames and duckdb relations (a column
whose read would fail is never read)."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import assert_tables_close

import assay
from assay._input import to_source
from assay.errors import EmptyInputError, InvalidArgumentError, InvalidInputError

KW = dict(label="y", score="p", metrics=["accuracy", "roc_auc", "log_loss"])


def table(n: int = 3000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pa.table({
        "y": y,
        "p": np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1),
        "g": rng.choice(["a", "b", "c"], n),
        "country": rng.choice(["DE", "US"], n),
        "day": rng.choice([1, 2, 3], n).astype(np.int32),
    })


def hive_tree(root, t: pa.Table) -> None:
    """``root/country=X/day=N/part-0.parquet``, the keys out of the files, as Spark and Hive
    write them."""
    for country in ("DE", "US"):
        for day in (1, 2, 3):
            mask = pa.compute.and_(pa.compute.equal(t["country"], country),
                                   pa.compute.equal(t["day"], day))
            part = t.filter(mask).drop_columns(["country", "day"])
            d = root / f"country={country}" / f"day={day}"
            d.mkdir(parents=True)
            pq.write_table(part, d / "part-0.parquet")


def same(a, b) -> None:
    assert_tables_close(a.table, b.table)


def test_hive_directory_keys_are_columns_and_slices(tmp_path):
    t = table()
    hive_tree(tmp_path / "parts", t)
    got = assay.evaluate(str(tmp_path / "parts"), slices=["country", ("country", "day")], **KW)
    same(got, assay.evaluate(t, slices=["country", ("country", "day")], **KW))
    assert got.table["slice"].to_list()[1:3] == ["country=DE", "country=US"]


@pytest.mark.parametrize("pattern", ["parts/*/*/*.parquet", "parts/**/*.parquet",
                                     "parts/country=*/day=2/*.parquet"])
def test_globs(tmp_path, monkeypatch, pattern):
    t = table()
    hive_tree(tmp_path / "parts", t)
    monkeypatch.chdir(tmp_path)
    got = assay.evaluate(pattern, slices=["country"], **KW)
    want = t if "day=2" not in pattern else t.filter(pa.compute.equal(t["day"], 2))
    same(got, assay.evaluate(want, slices=["country"], **KW))


def test_a_list_of_files_and_directories(tmp_path):
    t = table()
    (tmp_path / "d").mkdir()
    pq.write_table(t.slice(0, 1000), tmp_path / "a.parquet")
    pq.write_table(t.slice(1000, 1000), tmp_path / "d" / "b.parquet")
    pq.write_table(t.slice(2000), tmp_path / "d" / "c.parquet")
    got = assay.evaluate([tmp_path / "a.parquet", str(tmp_path / "d")], slices=["g"], **KW)
    same(got, assay.evaluate(t, slices=["g"], **KW))


def test_pyarrow_datasets(tmp_path):
    t = table()
    hive_tree(tmp_path / "parts", t)
    dataset = ds.dataset(tmp_path / "parts", format="parquet", partitioning="hive")
    same(assay.evaluate(dataset, slices=["country", "day"], **KW),
         assay.evaluate(t, slices=["country", "day"], **KW))
    same(assay.evaluate(ds.dataset(t), slices=["g"], **KW),
         assay.evaluate(t, slices=["g"], **KW))


@pytest.mark.filterwarnings("ignore::assay.NothingFoundWarning")  # empty by design
def test_compare_discovery_and_partial_states_read_datasets(tmp_path, monkeypatch):
    t = table()
    t = t.append_column("q", pa.array(np.clip(t["p"].to_numpy() + 0.05, 0, 1)))
    (tmp_path / "parts").mkdir()
    for i in range(3):
        pq.write_table(t.slice(1000 * i, 1000), tmp_path / "parts" / f"{i}.parquet")
    monkeypatch.chdir(tmp_path)
    cmp = assay.compare("parts/*.parquet", label="y", scores=["p", "q"], slices=["g"],
                        metrics=["accuracy"], bootstrap=20, seed=0)
    ref = assay.compare(t, label="y", scores=["p", "q"], slices=["g"], metrics=["accuracy"],
                        bootstrap=20, seed=0)
    assert cmp.table.equals(ref.table)
    found = assay.discover_slices("parts", label="y", score="p", features=["g", "country"])
    assert found.equals(assay.discover_slices(t, label="y", score="p",
                                              features=["g", "country"]))
    spec = assay.Spec(label="y", score="p", slices=["g"], metrics=["accuracy"])
    assert_tables_close(spec.accumulate(["parts/0.parquet", "parts/1.parquet",
                                         "parts/2.parquet"]).finalize().table,
                        assay.evaluate(t, slices=["g"], label="y", score="p",
                                       metrics=["accuracy"]).table)


# ----------------------------------------------------------------------------------------------
# projection


def test_a_csv_column_that_cannot_be_read_is_never_read(tmp_path):
    t = table()
    pcsv.write_csv(t.append_column("txt", pa.array(["x"] * t.num_rows)), tmp_path / "a.csv")
    schema = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("g", pa.string()),
                        ("country", pa.string()), ("day", pa.int32()),
                        ("txt", pa.int64())])  # "x" is no int64: reading txt fails
    dataset = ds.dataset(tmp_path / "a.csv", format="csv", schema=schema)
    with pytest.raises(pa.ArrowInvalid):
        dataset.to_table()
    same(assay.evaluate(dataset, slices=["g"], **KW), assay.evaluate(t, slices=["g"], **KW))


def test_a_lazy_column_that_would_fail_is_never_computed():
    t = table()
    lf = pl.from_arrow(t).lazy().with_columns(
        bad=pl.col("p").map_elements(lambda v: 1 / 0, return_dtype=pl.Float64))
    same(assay.evaluate(lf, slices=["g"], **KW), assay.evaluate(t, slices=["g"], **KW))


def test_a_duckdb_column_that_would_fail_is_never_computed():
    duckdb = pytest.importorskip("duckdb")
    t = table()
    con = duckdb.connect()
    con.register("t", t)
    rel = con.sql("select *, error('never computed') as bad, 1 as \"odd name.x\" from t")
    same(assay.evaluate(rel, slices=["g"], **KW), assay.evaluate(t, slices=["g"], **KW))


def test_a_path_stream_holds_only_the_columns_asked_for(tmp_path):
    t = table()
    pq.write_table(t, tmp_path / "a.parquet")
    source = to_source(str(tmp_path / "a.parquet"))
    reader = source.open(["p", None, "y"])
    assert reader.schema.names == ["y", "p"]  # the input's order
    assert source.open().schema.names == t.column_names
    # A column the input lacks: every column, so that the engine's error can list them.
    assert source.open(["p", "missing"]).schema.names == t.column_names


# ----------------------------------------------------------------------------------------------
# errors


def test_bad_dataset_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgumentError, match="no file matches 'nothing/\\*.parquet'"):
        assay.evaluate("nothing/*.parquet", **KW)
    with pytest.raises(InvalidArgumentError, match="type list: .*a list of them"):
        to_source([])
    t = table(100)
    pq.write_table(t, "a.parquet")
    pcsv.write_csv(t, "b.csv")
    with pytest.raises(InvalidInputError, match="mixes file formats"):
        assay.evaluate(["a.parquet", "b.csv"], **KW)
    with pytest.raises(InvalidArgumentError, match="no such file: 'c.parquet'"):
        assay.evaluate(["a.parquet", "c.parquet"], **KW)
    os.mkdir("empty")
    with pytest.raises(EmptyInputError, match="holds no data files"):
        assay.evaluate("empty", **KW)


@pytest.mark.parametrize("suffix", ["parquet", "feather", "arrow", "csv"])
def test_a_directory_of_each_file_format(tmp_path, suffix):
    """Parquet, Arrow IPC/Feather and CSV directories read as the table they hold, streamed
    (the progress total comes from Parquet metadata only)."""
    import pyarrow.feather as feather

    t = table()
    write = {"parquet": lambda part, p: pq.write_table(part, p),
             "feather": lambda part, p: feather.write_feather(part, p),
             "arrow": lambda part, p: feather.write_feather(part, p, compression="uncompressed"),
             "csv": lambda part, p: pcsv.write_csv(part, p)}[suffix]
    (tmp_path / "d").mkdir()
    for i in range(3):
        write(t.slice(i * 1000, 1000), tmp_path / "d" / f"part-{i}.{suffix}")
    got = assay.evaluate(str(tmp_path / "d"), slices=["g", ("country", "day")], **KW)
    same(got, assay.evaluate(t, slices=["g", ("country", "day")], **KW))
