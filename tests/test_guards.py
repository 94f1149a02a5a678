"""Guards against silent footguns: a slice spec that would make more than ``max_slices`` slices
(an ID-like column as a slice) stops the pass early with an error naming the column and its
count, in every entry point, the command line included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.cli import main
from assay.errors import InvalidArgumentError


def ids_table(n: int = 30_000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n), "id": np.arange(n),
                     "g": np.arange(n) % 7})


def test_an_id_column_as_a_slice_is_refused_with_its_count():
    with pytest.raises(InvalidArgumentError,
                       match=r'column "id" makes more than max_slices=10000 slices \(30000 '
                             r'distinct slices in the first 30000 rows\); bucket a numeric '
                             r'column with assay\.bins\("id", n\)'):
        assay.evaluate(ids_table(), label="y", score="p", slices=["g", "id"])


def test_a_cross_names_its_columns_and_the_limit_can_be_raised():
    t = ids_table(3000)
    with pytest.raises(InvalidArgumentError, match=r'the cross of \["g", "id"\].*max_slices=500'):
        assay.evaluate(t, label="y", score="p", slices=[("g", "id")], max_slices=500)
    rep = assay.evaluate(t, label="y", score="p", slices=[("g", "id")], metrics=["accuracy"],
                         max_slices=3000)
    assert rep.table.height == 1 + 3000
    rep = assay.evaluate(t, label="y", score="p", slices=["id"], metrics=["accuracy"],
                         max_slices=None)
    assert rep.table.height == 1 + 3000


def test_the_pass_stops_at_the_batch_that_passes_the_limit():
    t = ids_table(40_000)
    read = []

    def batches():
        for b in t.to_batches(max_chunksize=1000):
            read.append(b.num_rows)
            yield b

    reader = pa.RecordBatchReader.from_batches(t.schema, batches())
    with pytest.raises(InvalidArgumentError, match="in the first 11000 rows"):
        assay.evaluate(reader, label="y", score="p", slices=["id"])
    assert len(read) <= 16  # not the 40 batches of the stream (a few are read ahead)


def test_every_entry_point_has_the_guard():
    t = ids_table(2000)
    t = t.append_column("q", pa.array(t["p"].to_numpy()[::-1].copy()))
    kw = dict(label="y", slices=["id"], max_slices=100)
    with pytest.raises(InvalidArgumentError, match="max_slices=100"):
        assay.compare(t, scores=["p", "q"], bootstrap=10, **kw)
    with pytest.raises(InvalidArgumentError, match="max_slices=100"):
        assay.reliability(t, score="p", **kw)
    spec = assay.Spec(label="y", score="p", slices=["id"])
    with pytest.raises(InvalidArgumentError, match="max_slices=100"):
        spec.accumulate(t, max_slices=100)
    with pytest.raises(InvalidArgumentError, match="max_slices=100"):
        spec.evaluate(t, max_slices=100)
    assert spec.accumulate(t).rows == 2000  # 2001 slices are under the default


@pytest.mark.parametrize("bad", [0, -1, 2.5, "many", True])
def test_bad_max_slices(bad):
    with pytest.raises(InvalidArgumentError, match="max_slices"):
        assay.evaluate(ids_table(10), label="y", score="p", max_slices=bad)


def test_the_command_line_reports_it_as_a_usage_error(tmp_path, capsys):
    import pyarrow.parquet as pq

    pq.write_table(ids_table(20_000), tmp_path / "ids.parquet")
    argv = ["evaluate", str(tmp_path / "ids.parquet"), "--label", "y", "--score", "p",
            "--slice", "id", "--metrics", "accuracy"]
    assert main(argv) == 2
    assert 'assay: error: column "id" makes more than max_slices=10000' in \
        capsys.readouterr().err
    assert main([*argv, "--max-slices", "none"]) == 0


# ----------------------------------------------------------------------------------------------
# date, time and timestamp columns as slices


def temporal_table(n: int = 3000) -> pa.Table:
    import datetime as dt

    rng = np.random.default_rng(1)
    days = np.array(["2024-01-05", "2023-12-31", "2024-02-29"],
                    dtype="datetime64[D]")[rng.integers(0, 3, n)]
    return pa.table({
        "y": rng.integers(0, 2, n), "p": rng.random(n), "day": pa.array(days),
        "ts": pa.array(days.astype("datetime64[s]")).cast(pa.timestamp("s", tz="UTC")),
        "tm": pa.array([dt.time(10, 30), dt.time(8, 0)] * (n // 2)),
    })


def as_text(t: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    def text(c):  # ISO text without an all-zero fraction of a second
        return pc.replace_substring_regex(c.cast(pa.string()), r"\.0+(Z?)$", r"\1")

    return t.set_column(2, "day", text(t["day"])).set_column(3, "ts", text(t["ts"])).set_column(
        4, "tm", text(t["tm"]))


def test_dates_times_and_timestamps_are_slices_in_time_order():
    t = temporal_table()
    slices = ["day", "ts", "tm", ("day", "tm")]
    kw = dict(label="y", score="p", slices=slices, metrics=["accuracy", "roc_auc"])
    rep = assay.evaluate(t, **kw)
    labels = rep.table["slice"].to_list()
    assert labels[1:4] == ["day=2023-12-31", "day=2024-01-05", "day=2024-02-29"]
    assert labels[4] == "ts=2023-12-31 00:00:00Z"
    assert labels[7:9] == ["tm=08:00:00", "tm=10:30:00"]
    # The same report as the columns' ISO text (which sorts as time does).
    ref = assay.evaluate(as_text(t), **kw)
    assert rep.table.drop("day", "ts", "tm").equals(ref.table.drop("day", "ts", "tm"))


def test_temporal_slices_from_lazy_frames_duckdb_and_partial_states():
    import polars as pl

    t = temporal_table()
    kw = dict(label="y", score="p", slices=["day", "tm"], metrics=["accuracy"])
    want = assay.evaluate(t, **kw).table
    assert assay.evaluate(pl.from_arrow(t).lazy(), **kw).table["slice"].equals(want["slice"])
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.register("t", t)
    got = assay.evaluate(con.sql("select * from t"), **kw).table
    assert got["slice"].to_list()[:4] == want["slice"].to_list()[:4]
    spec = assay.Spec(**kw)
    merged = assay.merge([spec.accumulate(t.slice(0, 1000)),
                          spec.accumulate(t.slice(1000), row_offset=1000)]).finalize()
    assert merged.table.equals(want)


# ----------------------------------------------------------------------------------------------
# discover_slices says why it found nothing


@pytest.mark.parametrize("case, words", [
    ("perfect", "no row of the 3000 has a positive error"),
    ("ids", "every slice has fewer than min_support=30 rows"),
    ("flat", "none of the"),
])
def test_an_empty_discovery_says_why(case, words):
    rng = np.random.default_rng(0)
    n = 3000

    err = {"perfect": np.zeros(n), "ids": rng.exponential(1, n),
           "flat": np.ones(n)}[case]
    data = {"err": err, "id": np.arange(n) % 500, "g": rng.choice(["a", "b"], n)}
    features = ["id"] if case == "ids" else ["g"]
    with pytest.warns(assay.NothingFoundWarning, match=words):
        found = assay.discover_slices(data, error="err", features=features, min_support=0.01)
    assert found.height == 0



def test_found_slices_are_exempt_from_max_slices():
    # A found slice reports one cross value, however many values the cross has.
    rng = np.random.default_rng(0)
    n = 200_000  # 120 x 120 = 14,400 cells (over max_slices), ~14 rows each
    y = rng.integers(0, 2, n)
    a, b = rng.integers(0, 120, n).astype(str), rng.integers(0, 120, n).astype(str)
    p = np.where((a == "1") & (b == "2"), 1.0 - y * 0.98 - 0.01, 0.3 + 0.4 * y)  # one bad cell
    t = pa.table({"y": y, "p": p, "a": a, "b": b})
    found = assay.discover_slices(t, label="y", score="p", features=["a", "b"], max_level=2,
                                  min_support=5, alpha=1.0, k=1, max_values=1000)
    rep = assay.evaluate(t, label="y", score="p", slices=found, metrics=["accuracy"])
    assert rep.table.height == 1 + found.height


def test_timestamps_of_any_unit_and_zone_are_one_slice_across_shards():
    import polars as pl

    ts = np.array(["2024-01-05T10:30:00.25", "2024-01-05T11:00:00"], dtype="datetime64[ns]")
    base = pa.table({"y": [0, 1, 1, 0], "p": [0.2, 0.7, 0.6, 0.1],
                     "ts": pa.array(np.r_[ts, ts]).cast(pa.timestamp("ns", tz="Europe/Berlin"))})
    lazy_us = pl.from_arrow(base).lazy().with_columns(
        pl.col("ts").dt.cast_time_unit("us"))
    spec = assay.Spec(label="y", score="p", slices=["ts"], metrics=["accuracy"])
    merged = assay.merge([spec.accumulate(base),
                          spec.accumulate(lazy_us, row_offset=4)]).finalize()
    assert merged.table["slice"].to_list() == [
        "overall", "ts=2024-01-05 10:30:00.25Z", "ts=2024-01-05 11:00:00Z"]
    assert merged.table["n"].to_list() == [8, 4, 4]


def test_a_hive_key_named_like_a_file_column_is_refused(tmp_path):
    import pyarrow.parquet as pq

    for year in (2023, 2024):
        (tmp_path / "h" / f"year={year}").mkdir(parents=True)
        pq.write_table(pa.table({"y": [0, 1], "p": [0.2, 0.8], "year": [1, 2]}),
                       tmp_path / "h" / f"year={year}" / "a.parquet")
    with pytest.raises(assay.InvalidInputError, match="'year' is both a column of its files "
                                                      "and a Hive partition key"):
        assay.evaluate(str(tmp_path / "h"), label="y", score="p", slices=["year"])


def test_a_missing_column_is_reported_with_every_column_of_the_input():
    t = pa.table({"label": [0, 1], "score_v2": [0.2, 0.8], "country": ["a", "b"]})
    with pytest.raises(assay.ColumnNotFoundError, match="score_v2.*country|country.*score_v2"):
        assay.evaluate(t, label="label", score="score_v1")


# ----------------------------------------------------------------------------------------------
# Decimal columns: slices by value, bins, scores (as databases hand them over)


def decimal_table(n: int = 2000, seed: int = 0) -> pa.Table:
    import decimal

    rng = np.random.default_rng(seed)
    cents = rng.choice([-250, 0, 199, 1999, 100000], n)
    price = pa.array([decimal.Decimal(int(c)).scaleb(-2) for c in cents], pa.decimal128(9, 2))
    tier = pa.array([decimal.Decimal(int(v)) for v in rng.choice([3, 10, -1], n)],
                    pa.decimal128(12, 0))
    mask = rng.random(n) < 0.05
    return pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n),
                     "price": pa.compute.if_else(pa.array(mask), None, price), "tier": tier,
                     "cents": pa.compute.if_else(pa.array(mask), None, pa.array(cents))})


def test_decimal_columns_are_slices_by_value():
    import pyarrow.compute as pc

    t = decimal_table()
    kw = dict(label="y", score="p", metrics=["accuracy", "roc_auc", "log_loss"])
    rep = assay.evaluate(t, slices=["price", "tier", ("tier", "price")], **kw)
    # The same numbers as the decimal's text (scale kept) and, for scale 0, its integer.
    ref = assay.evaluate(t.set_column(2, "price", pc.cast(t["price"], pa.string()))
                          .set_column(3, "tier", pc.cast(t["tier"], pa.int64())),
                         slices=["price", "tier", ("tier", "price")], **kw)
    assert rep.table.drop("price", "tier").equals(ref.table.drop("price", "tier"))
    labels = rep.table["slice"].to_list()
    assert "price=19.99" in labels and "price=-2.50" in labels and "price=null" in labels
    # An integer decimal is ordered as a number, not as text.
    assert [x for x in labels if x.startswith("tier=") and "&" not in x] == [
        "tier=-1", "tier=3", "tier=10"]


def test_decimal_columns_bin_and_score_as_floats():
    import decimal

    import polars as pl

    t = decimal_table()
    kw = dict(label="y", metrics=["accuracy", "roc_auc", "brier"])
    for b in (assay.bins("price", 3), assay.bins("price", edges=[-5, 0, 20, 2000])):
        got = assay.evaluate(t, score="p", slices=[b], **kw).table
        floats = t.set_column(2, "price", pa.compute.divide(t["cents"].cast(pa.float64()),
                                                            100.0))
        want = assay.evaluate(floats, score="p", slices=[b], **kw).table
        assert got.equals(want)
    # A decimal score (and weight), from a table and from a lazy frame.
    p = pa.array([decimal.Decimal(f"{x:.3f}") for x in t["p"].to_pylist()], pa.decimal128(4, 3))
    dec = t.set_column(1, "p", p)
    ref = t.set_column(1, "p", pa.array([float(x) for x in p.to_pylist()]))
    want = assay.evaluate(ref, score="p", slices=["tier"], **kw).table
    assert assay.evaluate(dec, score="p", slices=["tier"], **kw).table.equals(want)
    assert assay.evaluate(pl.from_arrow(dec).lazy(), score="p", slices=["tier"],
                          **kw).table.equals(want)


def test_decimal_slices_from_duckdb_discovery_and_partial_states():
    t = decimal_table()
    kw = dict(label="y", score="p", slices=["price"], metrics=["accuracy"])
    want = assay.evaluate(t, **kw).table
    spec = assay.Spec(**kw)
    merged = assay.merge([spec.accumulate(t.slice(0, 700)),
                          spec.accumulate(t.slice(700), row_offset=700)]).finalize()
    assert merged.table.equals(want)
    # A model wrong exactly where price is 19.99 is found there.
    y = t["y"].to_numpy()
    bad = (t["cents"].to_numpy(zero_copy_only=False) == 1999)
    planted = t.set_column(1, "p", pa.array(np.where(bad, 0.9 - 0.8 * y, 0.1 + 0.8 * y)))
    found = assay.discover_slices(planted, label="y", score="p", features=["price", "tier"],
                                  min_support=10, k=3, max_level=1)
    assert found["slice"][0] == "price=19.99"
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.register("t", t)
    got = assay.evaluate(con.sql("select * from t"), **kw).table
    assert got["slice"].to_list() == want["slice"].to_list()


def test_bins_of_a_date_column_say_what_to_do_instead():
    import datetime

    t = pa.table({"y": [0, 1], "p": [0.2, 0.7],
                  "day": [datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)]})
    with pytest.raises(assay.errors.SchemaError, match="holds dates or times; slice by its"):
        assay.evaluate(t, label="y", score="p", slices=[assay.bins("day", 2)])
    with pytest.raises(assay.errors.SchemaError, match="holds dates"):
        assay.discover_slices(t, label="y", score="p", features=[assay.bins("day", 2)])


def test_slice_filters_select_temporal_and_decimal_slices():
    """Every slice of a date, time, timestamp (zoned, with a fraction) and decimal column, as
    the report labels it, selects the rows the report counted."""
    import datetime

    import polars as pl

    from assay._discovery import slice_filters

    rng = np.random.default_rng(1)
    n = 3000
    base = np.datetime64("2024-01-05T10:30:00.25", "ns")
    t = decimal_table(n).select(["y", "p", "price", "tier"]).append_column(
        "ts", pa.array(base + rng.integers(0, 3, n).astype("timedelta64[h]")).cast(
            pa.timestamp("ns", tz="Europe/Berlin"))).append_column(
        "day", pa.array(np.datetime64("2024-02-28", "D")
                        + rng.integers(0, 3, n).astype("timedelta64[D]"))).append_column(
        "tm", pa.array([datetime.time(8, 0, 0, 500000), datetime.time(10, 30), None][i % 3]
                       for i in range(n)))
    cols = ["ts", "day", "tm", "price", "tier"]
    rep = assay.evaluate(t, label="y", score="p", slices=cols, metrics=["accuracy"]).table
    rows = rep.filter(pl.col("slice") != "overall")
    preds = [[{"feature": c, "value": r[c]}] for r in rows.iter_rows(named=True)
             for c in cols if r[c] is not None or r["slice"] == f"{c}=null"]
    found = pl.DataFrame({"slice": rows["slice"], "predicates": preds})
    counts = pl.from_arrow(t).select([e.sum() for e in slice_filters(found)]).row(0)
    assert list(counts) == rows["n"].to_list()
    assert "ts=2024-01-05 10:30:00.25Z" in rows["slice"].to_list()
    # The filters run lazily too.
    lazy = pl.from_arrow(t).lazy().filter(slice_filters(found)[0]).collect()
    assert lazy.height == rows["n"][0]


def test_decimals_convert_to_the_nearest_double():
    """0.35 as a decimal is the float 0.35 (Arrow's own cast gives 0.35000000000000003), so
    a row on an edge lands in the same bin as the float column's row."""
    import decimal

    import polars as pl

    from assay._discovery import slice_filters

    vals = ["0.35", "0.20", "19.90", "0.10", "7.07"] * 40
    y = np.arange(len(vals)) % 2
    dec = pa.table({"y": y, "p": np.linspace(0.05, 0.95, len(vals)),
                    "price": pa.array([decimal.Decimal(v) for v in vals], pa.decimal128(10, 2))})
    flt = dec.set_column(2, "price", pa.array([float(v) for v in vals]))
    for b in (assay.bins("price", edges=[0.1, 0.35]), assay.bins("price", edges=[0.2, 7.07, 19.9]),
              assay.bins("price", 3)):
        kw = dict(label="y", score="p", slices=[b], metrics=["accuracy"])
        assert assay.evaluate(dec, **kw).table.equals(assay.evaluate(flt, **kw).table), b
    # slice_filters of a binned decimal feature select the rows the engine counted.
    planted = dec.set_column(1, "p", pa.array(np.where(
        np.array(vals) == "0.35", 1.0 - y * 0.9 - 0.05, 0.05 + 0.9 * y)))
    found = assay.discover_slices(planted, label="y", score="p",
                                  features=[assay.bins("price", edges=[0.1, 0.3, 0.4, 20])],
                                  min_support=5, k=3, max_level=1)
    counts = pl.from_arrow(dec).select([e.sum() for e in slice_filters(found)]).row(0)
    assert list(counts) == found["size"].to_list() and found["slice"][0] == "price=[0.3, 0.4)"


def test_whole_table_readers_keep_decimals_as_they_are():
    """Functions that read the whole input (simpson, thresholds, ...) get the decimal column
    itself, from any container: two 23-digit strata a float64 cannot tell apart stay two."""
    import decimal

    import polars as pl

    a, b = decimal.Decimal("12345678901234567890123"), decimal.Decimal("12345678901234567890124")
    t = pa.table({"o": [1, 0, 1, 0, 1, 1, 0, 0], "g": ["A", "B"] * 4,
                  "s": pa.array([a] * 4 + [b] * 4, pa.decimal128(38, 0))})
    want = assay.simpson(pl.from_arrow(t), outcome="o", group="g", stratum="s")
    got = assay.simpson(t, outcome="o", group="g", stratum="s")
    assert str(got) == str(want)


def test_duckdb_hugeint_columns_are_decimals():
    duckdb = pytest.importorskip("duckdb")
    rel = duckdb.sql("select (i % 2)::int y, (i % 10) / 10.0 p, (i % 3)::HUGEINT h, "
                     "(i % 4 + 1)::HUGEINT w from range(40) t(i)")
    got = assay.evaluate(rel, label="y", score="p", slices=["h"], weight="w",
                         metrics=["accuracy"]).table
    assert got["slice"].to_list() == ["overall", "h=0", "h=1", "h=2"]
    assert got["weight_sum"][0] == sum(i % 4 + 1 for i in range(40))


def test_a_decimal_slice_that_is_also_the_weight_says_so():
    import decimal

    t = pa.table({"y": [0, 1, 1], "p": [0.1, 0.8, 0.6],
                  "w": pa.array([decimal.Decimal("1.5")] * 3, pa.decimal128(4, 2))})
    with pytest.raises(assay.errors.SchemaError, match="both a categorical slice and the weight"):
        assay.evaluate(t, label="y", score="p", weight="w", slices=["w"])


def test_a_decimal_slice_that_is_also_read_as_a_number_in_discovery():
    import decimal

    t = pa.table({"y": [0, 1, 1, 0] * 50,
                  "p": pa.array([decimal.Decimal("0.25"), decimal.Decimal("0.75")] * 100,
                                pa.decimal128(4, 2))})
    with pytest.raises(assay.errors.SchemaError, match="both a categorical slice and the score"):
        assay.discover_slices(t, label="y", score="p", features=["p"])
    r = pa.table({"y": [1.0, 2.0] * 100, "p": t["p"]})
    with pytest.raises(assay.errors.SchemaError, match="and the prediction"):
        assay.evaluate(r, label="y", prediction="p", task="regression", slices=["p"])
