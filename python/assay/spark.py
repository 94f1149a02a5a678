"""assay inside Apache Spark: each partition accumulates a state, states merge, the driver
finalizes. No row is shuffled.

>>> from assay import spark as aspark                                   # doctest: +SKIP
>>> spec = assay.Spec(label="y", score="p", slices=["country"])         # doctest: +SKIP
>>> rep = aspark.evaluate(spark_df, spec)                               # doctest: +SKIP

How it runs (see docs/distributed.md):

1. Only the columns the spec reads are selected.
2. Data-derived bins (``assay.bins("age", 5)``) are fixed first, with exact order statistics
   from two small Spark aggregations (a count, then the percentiles), to the same edges
   ``assay.evaluate`` would fit (bit for bit).
3. ``DataFrame.mapInArrow`` runs the Rust engine on each partition's Arrow record batches
   (streamed: a partition is never held whole) and emits one row: the partition's serialized
   :class:`assay.PartialState`, or the assay error it raised. These rows are kept on the
   executors (``localCheckpoint``), so the pass runs once.
4. States merge in a tree of ``mapInArrow`` tasks (``fan_in`` states per task), so the driver
   receives at most ``fan_in`` of them however many partitions there are; the tree follows
   the partition numbers, so a job gives the same bits on every run.
5. The driver merges what is left and finalizes.

Needs ``pip install "assay[spark]"`` (pyspark 3.5 or 4.x) on the driver, and assay itself
on the executors (the same wheel). Tested with classic SparkSessions (not Spark Connect).
"""

from __future__ import annotations

import math
from typing import Any

from . import _distributed as _d
from ._args import int_arg, show
from ._compare import Comparison
from ._evaluate import Bins
from ._spec import PartialState, Spec
from .errors import InvalidArgumentError, InvalidInputError, SchemaError
from .report import Report

__all__ = ["accumulate", "evaluate", "compare"]

ENGINE = "assay.spark"

_WHERE = ("raised by the assay.spark task of partition {part} (row numbers in the message "
          "count from that partition's first row)")
_SCHEMA_DDL = ("part long, state binary, error_kind string, error_message string, "
               "error_column string")


def evaluate(df: Any, spec: Spec, *, fan_in: int = 64) -> Report:
    """The :class:`assay.Report` of ``spec`` over a Spark DataFrame: equal to
    ``assay.evaluate`` on the same rows in one process (counts exactly, metrics and interval
    bounds to 1e-12).

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        The predictions, one row per example; only the spec's columns are read.
    spec : assay.Spec
        A spec of one model (for a comparison spec, use :func:`compare`). A spec that
        resamples (``bootstrap=B``) needs ``row_id=``: Spark has no stable row positions.
    fan_in : int
        States merged per task of the merge tree (2 to 4096); the driver merges at most
        this many.

    Raises
    ------
    assay.AssayError
        A worker's error (a bad label in partition 7) as the same class and message as
        ``assay.evaluate`` raises, with a note naming the partition.

    Examples
    --------
    >>> import assay                                                       # doctest: +SKIP
    >>> from assay import spark as aspark                                  # doctest: +SKIP
    >>> spec = assay.Spec(label="label", score="score", slices=["country"])  # doctest: +SKIP
    >>> aspark.evaluate(spark.read.parquet("preds/"), spec).table          # doctest: +SKIP
    """
    _d.check_spec(spec, ENGINE, "evaluate")
    result = accumulate(df, spec, fan_in=fan_in).finalize()
    assert isinstance(result, Report)
    return result


def compare(df: Any, spec: Spec, *, fan_in: int = 64) -> Comparison:
    """The :class:`assay.Comparison` of a comparison spec (``assay.Spec(scores={...},
    row_id=...)``) over a Spark DataFrame: equal to ``assay.compare`` on the same rows.
    Parameters and errors as :func:`evaluate`; a comparison resamples, so the spec needs
    ``row_id=``."""
    _d.check_spec(spec, ENGINE, "compare")
    result = accumulate(df, spec, fan_in=fan_in).finalize()
    assert isinstance(result, Comparison)
    return result


def accumulate(df: Any, spec: Spec, *, fan_in: int = 64) -> PartialState:
    """The merged :class:`assay.PartialState` of ``spec`` over a Spark DataFrame, to
    finalize or to merge with states from anywhere else (its spec has the data-derived bins
    fixed to this data's edges: :attr:`PartialState.spec`). Parameters as :func:`evaluate`.
    """
    spec = _d.check_spec(spec, ENGINE, "accumulate")
    fan = int_arg(fan_in, "fan_in", "assay.spark.accumulate", 2, 4096)
    if not (hasattr(df, "mapInArrow") and hasattr(df, "schema")):
        raise InvalidArgumentError(
            f"assay.spark takes a pyspark.sql.DataFrame, got {show(df)}"
        )
    _d.missing_columns(spec, df.columns, "Spark")
    cols = _d.columns(spec)
    data = df.select(*[_col(c) for c in cols])
    spec = _resolve_bins(data, spec)

    def task(batches: Any) -> Any:
        record = _d.accumulate_batches(spec, batches, _partition(), _task_cpus())
        if record is not None:
            yield record

    # The first pass runs once and its records (one small row per non-empty partition) are
    # kept on the executors: the tree below is planned from their partition numbers.
    states = data.mapInArrow(task, _SCHEMA_DDL).localCheckpoint(eager=True)
    n = _part_count(states)
    step = 1
    while n > fan:
        # One level of the tree: after it, group g holds the states of the partitions
        # [g * step, (g + 1) * step), merged into one at their lowest partition number.
        step *= fan
        n = math.ceil(n / fan)
        states = _merge_level(states, step, n)
    return _d.finish(_collect(states), spec, lambda: _arrow_schema(data), _WHERE)


def _part_count(states: Any) -> int:
    """The partition range the tree covers: the checkpointed first pass keeps the input's
    partitions, so their count is read without a job (its lineage is cut: nothing upstream
    runs again); where there are no RDDs (Spark Connect), one more than the highest partition
    number among the records, by a small aggregation."""
    try:
        return int(states.rdd.getNumPartitions())
    except Exception:  # no RDD API here: ask the records
        from pyspark.sql import functions as F

        top = states.agg(F.max("part").alias("top")).collect()[0]["top"]
        return 0 if top is None else int(top) + 1


def _merge_level(states: Any, step: int, groups: int) -> Any:
    """The records merged per group of ``step`` consecutive partition numbers, in
    ``groups`` merge tasks (a shuffle of the states only)."""
    from pyspark.sql import functions as F

    grouped = states.withColumn("_group", F.floor(F.col("part") / F.lit(step)))
    spread = grouped.repartition(groups, "_group")

    def merge_task(batches: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        parts = list(batches)
        if not parts:
            return
        table = pa.Table.from_batches(parts)
        for g in sorted(set(table.column("_group").to_pylist())):
            mine = table.filter(pc.equal(table.column("_group"), g)).drop(["_group"])
            record = _d.merge_records(mine)
            if record is not None:
                yield record

    return spread.mapInArrow(merge_task, _SCHEMA_DDL)


def _resolve_bins(data: Any, spec: Spec) -> Spec:
    """``spec`` with its data-derived bins fixed from exact order statistics (two Spark
    aggregations for any number of binned columns: the counts, then the percentiles)."""
    pending = _d.unresolved_bins(spec)
    if not pending:
        return spec
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    numeric = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType,
               T.DoubleType, T.NullType)
    fields = {f.name: f.dataType for f in data.schema.fields}
    names = list(dict.fromkeys(b.column for b in pending))
    for c in names:
        if not isinstance(fields[c], numeric):
            raise SchemaError(
                f'column "{c}": a binned column must be a numeric column, got Spark type '
                f"{fields[c].simpleString()}", c)

    def clean(c: str) -> Any:
        x = _col(c).cast("double")
        return F.when(F.isnan(x), F.lit(None)).otherwise(x)

    aggs = []
    for i, c in enumerate(names):
        x = _col(c).cast("double")
        aggs.append(F.count(clean(c)).alias(f"n{i}"))
        aggs.append(F.max(F.when(F.abs(x) == float("inf"), 1).otherwise(0)).alias(f"inf{i}"))
    counts = data.agg(*aggs).collect()[0]
    count = {c: int(counts[f"n{i}"]) for i, c in enumerate(names)}
    infinite = {c: bool(counts[f"inf{i}"]) for i, c in enumerate(names)}

    from . import _native

    ranks: dict[str, list[int]] = {c: [] for c in names}
    for b in pending:
        ranks[b.column] = sorted(set(ranks[b.column]) | set(
            _native.bin_edge_ranks(count[b.column], int(b.n or 0), b.strategy)))
    fetch = [c for c in names if ranks[c] and not infinite[c]]
    stats: dict[str, dict[int, float]] = {c: {} for c in names}
    if fetch:
        row = data.agg(*[
            F.percentile(clean(c), F.array(*[F.lit(p) for p in
                                             _d.order_statistic_fractions(count[c], ranks[c])]),
                         F.lit(2)).alias(f"q{i}")
            for i, c in enumerate(fetch)], *[F.count(clean(c)).alias(f"n{i}")
                                             for i, c in enumerate(fetch)]).collect()[0]
        for i, c in enumerate(fetch):
            if int(row[f"n{i}"]) != count[c]:
                raise InvalidInputError(
                    f'column "{c}": the DataFrame gave {count[c]} values, then '
                    f"{int(row[f'n{i}'])} when read again, so data-derived bins cannot be "
                    "placed (a source that changes between reads, or a random sample without "
                    "a seed): cache or checkpoint the DataFrame, or give edges=", c)
        for i, c in enumerate(fetch):
            stats[c] = dict(zip(ranks[c], (float(v) for v in row[f"q{i}"]), strict=True))

    def fit(b: Bins) -> list[float]:
        return _native.bin_edges_by_rank(b.column, int(b.n or 0), b.strategy,
                                         count[b.column], infinite[b.column], stats[b.column])

    return spec._with_edges(fit)


def _collect(states: Any) -> list[dict[str, Any]]:
    """The records at the top of the tree, collected as Arrow: ``DataFrame.toArrow``
    (pyspark 4) or its private 3.5 form. ``collect()`` pickles each row through the JVM
    instead, about 10x slower for the megabytes of an exact ROC-AUC state."""
    import pyarrow as pa

    if hasattr(states, "toArrow"):
        return list(states.toArrow().to_pylist())
    if hasattr(states, "_collect_as_arrow"):
        batches = states._collect_as_arrow()
        return pa.Table.from_batches(batches).to_pylist() if batches else []
    return [r.asDict() for r in states.collect()]  # a pyspark with neither (not tested)


def _col(name: str) -> Any:
    """A column by its exact name (dots and backticks quoted)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _arrow_schema(data: Any) -> Any:
    """The Arrow schema of the columns read (for the state of an empty DataFrame)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(data.schema)


def _partition() -> int:
    """The partition number of the running task."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return 0 if ctx is None else int(ctx.partitionId())


def _task_cpus() -> int:
    """The cores of the running task (``spark.task.cpus``), the engine's threads in it."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    try:
        return max(1, int(ctx.cpus())) if ctx is not None else 1
    except Exception:
        return 1
