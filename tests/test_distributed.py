"""assay.spark and assay.ray, run for real in local mode: one Spark session (local[2]) and one
local Ray instance for the whole test session.

Every result is checked against ``assay.evaluate`` / ``assay.compare`` on the same rows in one
process (counts exactly, metrics and bounds to 1e-12), over many small partitions, empty
partitions included.
"""

from __future__ import annotations

import itertools
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_partial import assert_bit_identical, assert_same_result, make_table

import assay
from assay import _distributed
from assay import ray as aray
from assay import spark as aspark


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if found is None:
        pytest.fail("Spark needs Java 17 or later: set JAVA_HOME or put `java` on the PATH "
                    "(Debian: apt-get install openjdk-17-jre-headless)")
    return found


@pytest.fixture(scope="session")
def spark():
    _java()
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("assay-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.driver.memory", "2g")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def ray_ctx():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def table(seed: int = 0, n: int = 600) -> pa.Table:
    """Rows with ties, weights, nulls, two scores, an integer row id and slice columns of
    every kind (test_partial's generator), with the dictionary column decoded."""
    return make_table(seed, n)


def spark_df(spark, t: pa.Table, partitions: int, by: str | None = None):
    """``t`` as a Spark DataFrame of ``partitions`` partitions: round robin, or hashed by
    the column ``by`` (a low-cardinality column leaves most partitions empty)."""
    df = spark.createDataFrame(t)  # pyspark >= 4 takes Arrow tables (types kept, no pandas)
    return df.repartition(partitions, by) if by else df.repartition(partitions)


def ray_ds(ray, t: pa.Table, blocks: int, empty: bool = False):
    """``t`` as a Ray Dataset of ``blocks`` blocks; with ``empty``, one Arrow block per
    slice of uneven length, two of them empty."""
    if not empty:
        return ray.data.from_arrow(t).repartition(blocks)
    cuts = np.linspace(0, t.num_rows, blocks + 1).astype(int).tolist()
    pieces = [t.slice(a, b - a) for a, b in itertools.pairwise(cuts)]
    return ray.data.from_arrow([t.slice(0, 0), *pieces, t.slice(t.num_rows)])


SPECS = {
    "plain": dict(label="y", score="p", slices=["s", "i", ("s", "b")]),
    "weighted": dict(label="y", score="p", weight="w", slices=["s", ("i", "b")],
                     metrics=["accuracy", "roc_auc", "average_precision", "log_loss", "ece"]),
    "bootstrap": dict(label="y", score="p", slices=["s", "b"], bootstrap=40, row_id="id",
                      metrics=["accuracy", "recall", "roc_auc", "brier"]),
    "bca": dict(label="y", score="p", weight="w", slices=["i"], bootstrap=30, row_id="id",
                ci_method="bca", metrics=["precision", "roc_auc"]),
    "analytic": dict(label="y", score="p", slices=["s"], ci_method="analytic",
                     metrics=["accuracy", "roc_auc"]),
    "bins": dict(label="y", score="p", slices=[assay.bins("x", 4), ("s", assay.bins("x", 3,
                                               strategy="uniform"))],
                 metrics=["accuracy", "roc_auc"]),
    "comparison": dict(label="y", scores={"old": "p", "new": "q"}, slices=["s", "b"],
                       bootstrap=40, row_id="id", metrics=["accuracy", "roc_auc"]),
    "regression": dict(label="x", prediction="w", task="regression", slices=["s"],
                       metrics=["mae", "rmse", "r2"]),
}


def reference(spec: assay.Spec, t: pa.Table):
    return spec.evaluate(t)


def regression_table(t: pa.Table) -> pa.Table:
    """``x`` (the regression label) without nulls."""
    x = np.nan_to_num(np.array(t.column("x").to_pylist(), dtype=float), nan=0.25)
    return t.set_column(t.schema.get_field_index("x"), "x", pa.array(x))


# --------------------------------------------------------------------------------------------
# parity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SPECS))
def test_spark_equals_one_process(spark, kind):
    spec = assay.Spec(**SPECS[kind])
    t = table(seed=list(SPECS).index(kind))
    if kind == "regression":
        t = regression_table(t)
    want = reference(spec, t)
    # Many small partitions (round robin), then mostly empty ones (hashed by a column of
    # four values), with a level of merge tasks (fan_in=3).
    for df, fan_in in ((spark_df(spark, t, 9), 3), (spark_df(spark, t, 16, "b"), 64)):
        run = aspark.compare if spec.is_comparison else aspark.evaluate
        got = run(df, spec, fan_in=fan_in)
        assert_same_result(got, want)


@pytest.mark.parametrize("kind", list(SPECS))
def test_ray_equals_one_process(ray_ctx, kind):
    spec = assay.Spec(**SPECS[kind])
    t = table(seed=10 + list(SPECS).index(kind))
    if kind == "regression":
        t = regression_table(t)
    want = reference(spec, t)
    run = aray.compare if spec.is_comparison else aray.evaluate
    assert_same_result(run(ray_ds(ray_ctx, t, 7), spec), want)
    assert_same_result(run(ray_ds(ray_ctx, t, 5, empty=True), spec), want)


def test_spark_result_is_the_same_bits_on_every_run_and_close_across_fan_in(spark,
                                                                             monkeypatch):
    spec = assay.Spec(**SPECS["bootstrap"])
    df = spark_df(spark, table(3, 900), 11)
    collected: list[int] = []
    finish = _distributed.finish

    def spy(records, *args):
        collected.append(len(records))
        return finish(records, *args)

    monkeypatch.setattr(_distributed, "finish", spy)
    a = aspark.evaluate(df, spec, fan_in=2)
    assert collected == [2]  # 11 partitions, three levels of the tree: 2 states reach the driver
    monkeypatch.undo()
    assert_bit_identical(a, aspark.evaluate(df, spec, fan_in=2))
    assert_same_result(aspark.evaluate(df, spec, fan_in=64), a)


def test_ray_result_does_not_depend_on_the_blocks(ray_ctx):
    spec = assay.Spec(**SPECS["bootstrap"])
    t = table(4, 700)
    a = aray.evaluate(ray_ds(ray_ctx, t, 5), spec)
    # The canonical merge order: the same bits whatever order the blocks finish in.
    assert_bit_identical(aray.evaluate(ray_ds(ray_ctx, t, 5), spec, num_cpus=2), a)
    assert_same_result(aray.evaluate(ray_ds(ray_ctx, t, 13), spec), a)
    assert_same_result(a, reference(spec, t))


def test_a_distributed_state_merges_with_states_from_anywhere(spark, ray_ctx):
    spec = assay.Spec(**SPECS["bootstrap"])
    t = table(5, 900)
    a, b, c = t.slice(0, 300), t.slice(300, 300), t.slice(600)
    parts = [aspark.accumulate(spark_df(spark, a, 4), spec),
             aray.accumulate(ray_ds(ray_ctx, b, 3), spec),
             spec.accumulate(c)]
    assert [p.rows for p in parts] == [300, 300, 300]
    assert all(p.spec == spec for p in parts)
    assert_same_result(assay.merge(parts).finalize(), reference(spec, t))


def test_only_the_columns_the_spec_reads_leave_the_jvm(spark, monkeypatch):
    t = table(6, 200)
    df = spark_df(spark, t, 3)
    cls = type(df)
    original = cls.mapInArrow
    seen: list[list[str]] = []

    def spy(self, *args, **kwargs):
        seen.append(list(self.columns))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "mapInArrow", spy)
    spec = assay.Spec(label="y", score="p", weight="w", slices=["s", ("s", "b")],
                      metrics=["accuracy"])
    assert_same_result(aspark.evaluate(df, spec), reference(spec, t))
    assert seen[0] == ["y", "p", "w", "s", "b"]  # the first map reads the rows


def test_empty_data(spark, ray_ctx):
    spec = assay.Spec(label="y", score="p", slices=["s"])
    t = table(7, 50)
    empty_spark = spark_df(spark, t, 3).where("y > 5")
    state = aspark.accumulate(empty_spark, spec)
    assert state.rows == 0 and state.spec == spec
    with pytest.raises(assay.EmptyInputError):
        aspark.evaluate(empty_spark, spec)
    empty_ray = ray_ds(ray_ctx, t, 2).limit(0)
    assert aray.accumulate(empty_ray, spec).rows == 0
    with pytest.raises(assay.EmptyInputError):
        aray.evaluate(empty_ray, spec)


# --------------------------------------------------------------------------------------------
# data-derived bins: exact edges, to the bit
# --------------------------------------------------------------------------------------------


def _bins_table(values: list[float | None]) -> pa.Table:
    n = len(values)
    return pa.table({"y": pa.array([k % 2 for k in range(n)]),
                     "p": pa.array([((k * 37) % 101) / 100 for k in range(n)]),
                     "x": pa.array(values, pa.float64())})


values = st.lists(
    st.one_of(st.sampled_from([0.0, 1.0, 2.5, -3.0]),
              st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
              .filter(lambda v: v != 0 or str(v) == "0.0"),
              st.none(), st.just(float("nan"))),
    min_size=1, max_size=80,
).filter(lambda v: any(x is not None and x == x for x in v))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(values, st.integers(1, 9), st.sampled_from(["quantile", "uniform"]),
       st.integers(1, 5))
def test_spark_and_ray_place_the_bins_of_one_process(spark, ray_ctx, xs, n, strategy, parts):
    t = _bins_table(xs)
    spec = assay.Spec(label="y", score="p", slices=[assay.bins("x", n, strategy=strategy)],
                      metrics=["accuracy"])
    want = spec.resolve(t)
    assert aspark.accumulate(spark_df(spark, t, parts), spec).spec == want
    assert aray.accumulate(ray_ds(ray_ctx, t, parts), spec).spec == want


def test_bins_of_huge_integers_and_refused_types_match_one_process(spark, ray_ctx):
    big = 2**53 + np.array([1, 3, 5, 7, 9, 11], dtype=np.int64)
    t = pa.table({"y": pa.array([0, 1, 0, 1, 1, 0]), "p": pa.array([0.1, 0.9, 0.4, 0.6, 0.7, 0.2]),
                  "x": pa.array(big), "flag": pa.array([True, False] * 3)})
    spec = assay.Spec(label="y", score="p", slices=[assay.bins("x", 3)], metrics=["accuracy"])
    want = spec.resolve(t)
    assert aspark.accumulate(spark_df(spark, t, 2), spec).spec == want
    assert aray.accumulate(ray_ds(ray_ctx, t, 2), spec).spec == want
    bad = assay.Spec(label="y", score="p", slices=[assay.bins("flag", 2)])
    with pytest.raises(assay.SchemaError, match="numeric"):
        bad.evaluate(t)
    for run in (lambda: aspark.evaluate(spark_df(spark, t, 2), bad),
                lambda: aray.evaluate(ray_ds(ray_ctx, t, 2), bad)):
        with pytest.raises(assay.SchemaError, match='column "flag".*numeric') as e:
            run()
        assert e.value.column == "flag"


def test_the_driver_raises_the_lowest_partitions_error_as_the_nearest_known_class():
    spec = assay.Spec(label="y", score="p")
    errs = [_distributed.error_record(5, assay.InvalidInputError("five", "y")),
            _distributed.error_record(2, assay.SchemaError("two", "p"))]
    records = pa.Table.from_batches(errs).to_pylist()
    with pytest.raises(assay.SchemaError) as e:
        _distributed.finish(records, spec, lambda: None, "partition {part}")
    assert str(e.value) == "two"
    assert e.value.column == "p" and e.value.__notes__ == ["partition 2"]

    class Custom(assay.InvalidArgumentError):  # a class the driver's assay.errors lacks
        pass

    (record,) = pa.Table.from_batches([_distributed.error_record(0, Custom("c"))]).to_pylist()
    with pytest.raises(assay.InvalidArgumentError) as e:
        _distributed.finish([record], spec, lambda: None, "here")
    assert type(e.value) is assay.InvalidArgumentError and str(e.value) == "c"
    # A merge task that cannot merge sends its error as a record too (typed on the driver).
    a = assay.Spec(label="y", score="p").accumulate({"y": [0, 1], "p": [0.2, 0.8]})
    b = assay.Spec(label="y", score="p", threshold=0.3).accumulate({"y": [1], "p": [0.4]})
    both = pa.Table.from_batches([_distributed.state_record(0, a.to_bytes()),
                                  _distributed.state_record(1, b.to_bytes())])
    merged = _distributed.merge_records(both).to_pylist()
    assert merged[0]["error_kind"].startswith("StateMismatchError,")


def test_integer_bins_and_bins_errors(spark, ray_ctx):
    t = table(8, 300)
    spec = assay.Spec(label="y", score="p", slices=[assay.bins("i", 3), assay.bins("x", 2)],
                      metrics=["accuracy"])
    assert_same_result(aspark.evaluate(spark_df(spark, t, 4), spec), reference(spec, t))
    assert_same_result(aray.evaluate(ray_ds(ray_ctx, t, 4), spec), reference(spec, t))

    bad = assay.Spec(label="y", score="p", slices=[assay.bins("s", 3)])
    for run in (lambda: aspark.evaluate(spark_df(spark, t, 2), bad),
                lambda: aray.evaluate(ray_ds(ray_ctx, t, 2), bad)):
        with pytest.raises(assay.SchemaError, match='column "s".*numeric') as e:
            run()
        assert e.value.column == "s"

    inf = _bins_table([1.0, float("inf"), 2.0])
    spec = assay.Spec(label="y", score="p", slices=[assay.bins("x", 2)])
    with pytest.raises(assay.InvalidInputError) as want:
        spec.evaluate(inf)
    for run in (lambda: aspark.evaluate(spark_df(spark, inf, 2), spec),
                lambda: aray.evaluate(ray_ds(ray_ctx, inf, 2), spec)):
        with pytest.raises(assay.InvalidInputError) as got:
            run()
        assert str(got.value) == str(want.value)


def test_order_statistic_fractions_hit_their_rank():
    rng = np.random.default_rng(0)
    for count in [1, 2, 3, 10, 1000, 10**7, 10**12, 2**47]:
        ranks = sorted({0, count - 1, *rng.integers(0, count, 50).tolist()})
        for r, p in zip(ranks, _distributed.order_statistic_fractions(count, ranks),
                        strict=True):
            pos = (2 * count - 1) * p  # Spark's position over every value counted twice
            assert 0.0 <= p <= 1.0 and int(pos) // 2 == r and int(np.ceil(pos)) // 2 == r
    with pytest.raises(assay.InvalidArgumentError, match="edges="):
        _distributed.order_statistic_fractions(2**48, [0])


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_a_worker_error_reaches_the_driver_as_the_same_typed_error(spark, ray_ctx):
    t = table(9, 400)
    y = t.column("y").to_numpy().copy()
    y[123] = 2
    bad = t.set_column(0, "y", pa.array(y))
    spec = assay.Spec(label="y", score="p", slices=["s"])
    with pytest.raises(assay.InvalidInputError) as want:
        spec.evaluate(bad)
    # One partition holds every row: the message is the one-process message, intact.
    with pytest.raises(assay.InvalidInputError) as got:
        aspark.evaluate(spark_df(spark, bad, 1), spec)
    assert str(got.value) == str(want.value) and got.value.column == "y"
    assert "partition 0" in got.value.__notes__[0]
    with pytest.raises(assay.InvalidInputError) as got:
        aray.evaluate(ray_ds(ray_ctx, bad, 1), spec)
    assert str(got.value) == str(want.value) and got.value.column == "y"
    assert "assay.ray task" in got.value.__notes__[0]
    # Many partitions: the same class and column, the row counted within its partition.
    with pytest.raises(assay.InvalidInputError, match="labels must be 0 or 1") as got:
        aspark.evaluate(spark_df(spark, bad, 7), spec)
    assert got.value.column == "y"
    with pytest.raises(assay.InvalidInputError, match="labels must be 0 or 1"):
        aray.evaluate(ray_ds(ray_ctx, bad, 7), spec)


def test_resampling_without_row_id_says_how_to_add_one(spark, ray_ctx):
    t = table(10, 50)
    df, ds = spark_df(spark, t, 2), ray_ds(ray_ctx, t, 2)
    boot = assay.Spec(label="y", score="p", bootstrap=20)
    cmp = assay.Spec(label="y", scores={"a": "p", "b": "q"}, bootstrap=20)
    for mod, data in ((aspark, df), (aray, ds)):
        with pytest.raises(assay.InvalidArgumentError, match="row_id=.*xxhash64.*analytic"):
            mod.evaluate(data, boot)
        with pytest.raises(assay.InvalidArgumentError, match="comparison resamples.*row_id="):
            mod.compare(data, cmp)
    # Analytic intervals do not resample: no row id needed.
    spec = assay.Spec(label="y", score="p", ci_method="analytic", metrics=["roc_auc"])
    assert_same_result(aspark.evaluate(df, spec), reference(spec, t))


def test_arguments_are_checked(spark, ray_ctx):
    t = table(11, 40)
    df, ds = spark_df(spark, t, 2), ray_ds(ray_ctx, t, 2)
    one = assay.Spec(label="y", score="p")
    cmp = assay.Spec(label="y", scores={"a": "p", "b": "q"}, bootstrap=20, row_id="id")
    for mod, data in ((aspark, df), (aray, ds)):
        with pytest.raises(assay.InvalidArgumentError, match="takes an assay.Spec"):
            mod.evaluate(data, {"label": "y"})
        with pytest.raises(assay.InvalidArgumentError, match="use assay.*compare"):
            mod.evaluate(data, cmp)
        with pytest.raises(assay.InvalidArgumentError, match="use assay.*evaluate"):
            mod.compare(data, one)
        with pytest.raises(assay.ColumnNotFoundError, match="'nope'") as e:
            mod.evaluate(data, assay.Spec(label="y", score="nope"))
        assert e.value.column == "nope"
    with pytest.raises(assay.InvalidArgumentError, match="pyspark.sql.DataFrame"):
        aspark.evaluate(t, one)
    with pytest.raises(assay.InvalidArgumentError, match="ray.data.Dataset"):
        aray.evaluate(t, one)
    with pytest.raises(assay.InvalidArgumentError, match="fan_in"):
        aspark.evaluate(df, one, fan_in=1)
    with pytest.raises(assay.InvalidArgumentError, match="num_cpus"):
        aray.evaluate(ds, one, num_cpus=0)


def test_a_multiclass_spec_runs_in_spark_and_ray_as_in_one_process(spark, ray_ctx):
    from assay.demo import SPECIES, make_multiclass_data

    t = make_multiclass_data(3000, seed=4)
    t = t.append_column("id", pa.array(np.arange(t.num_rows), pa.int64()))
    # (Spark arrays arrive as variable-size lists: classes= names K, checked row by row.)
    t = t.set_column(1, "probs", t["probs"].cast(pa.list_(pa.float64())))
    spec = assay.Spec(label="species", score="probs", task="multiclass", classes=SPECIES,
                      slices=["light"], metrics=["accuracy", "macro_f1", "roc_auc_ovr"],
                      bootstrap=20, row_id="id")
    want = spec.evaluate(t)
    got = aspark.evaluate(spark_df(spark, t, 5), spec)
    assert_bit_identical(got, want)
    assert got.per_class().equals(want.per_class())
    assert_bit_identical(aray.evaluate(ray_ds(ray_ctx, t, 4), spec), want)


def test_the_core_package_imports_neither_engine():
    import subprocess
    import sys

    code = ("import sys, assay, assay.demo; "
            "print(sorted(m for m in ('pyspark', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "ASSAY_ALLOW_DEBUG_BUILD": "1"})
    assert out.stdout.strip() == "[]"
