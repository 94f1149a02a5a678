"""What :mod:`assay.spark` and :mod:`assay.ray` share: the checks of a spec before a
distributed job, the task that turns a partition's Arrow batches into a serialized state (or
a transportable error), and the driver side that re-raises a worker's error as the same typed
:class:`assay.AssayError`.

A worker never ships rows: it ships one small record per partition (the state's bytes, or an
error), and the driver (or a tree of merge tasks) merges those.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from . import errors as _errors
from ._args import show
from ._evaluate import Bins
from ._spec import PartialState, Spec, merge
from .errors import AssayError, InvalidArgumentError

# The record a task emits for its partition: its position (merge order), the state's bytes
# (null when the task failed) and, when it failed, the assay error's class, message and column.
FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("part", pa.int64()),
    ("state", pa.binary()),
    ("error_kind", pa.string()),
    ("error_message", pa.string()),
    ("error_column", pa.string()),
)
SCHEMA = pa.schema([pa.field(n, t) for n, t in FIELDS])


def check_spec(spec: Any, engine: str, mode: str) -> Spec:
    """``spec`` as an :class:`assay.Spec` that a distributed engine can run: a spec of one
    model (``mode="evaluate"``), a comparison spec (``"compare"``) or either
    (``"accumulate"``); one that resamples names a ``row_id`` column."""
    if not isinstance(spec, Spec):
        raise InvalidArgumentError(
            f"{engine}.{mode} takes an assay.Spec (assay.Spec(label=..., score=..., ...)), "
            f"got {show(spec)}"
        )
    if mode == "evaluate" and spec.is_comparison:
        raise InvalidArgumentError(
            f"{engine}.evaluate got a comparison spec (scores=...): use {engine}.compare"
        )
    if mode == "compare" and not spec.is_comparison:
        raise InvalidArgumentError(
            f"{engine}.compare takes a comparison spec (assay.Spec(scores={{...}}, ...)); "
            f"for one model use {engine}.evaluate"
        )
    interval = spec._job.interval
    if interval is not None and interval[0] > 0 and interval[4] is None:
        what = "a comparison" if spec.is_comparison else f"bootstrap={interval[0]}"
        raise InvalidArgumentError(
            f"{what} resamples rows, and a row's replicate weights follow its key: {engine} "
            "has no stable row positions (partitions are read, split and retried in any "
            "order), so the spec needs row_id=\"<column>\", a column that identifies each "
            "row the same way on every run: an integer column (a numeric key or event id, "
            "or a 64-bit hash of the columns that identify an example, e.g. in Spark "
            "df.withColumn(\"row_id\", F.xxhash64(\"user_id\", \"ts\")))."
            + (" Or use ci_method=\"analytic\", which does not resample."
               if not spec.is_comparison else "")
        )
    return spec


def columns(spec: Spec) -> list[str]:
    """The columns the spec reads, each once, in the spec's order."""
    return list(dict.fromkeys(c for c in spec._job.columns() if c is not None))


def missing_columns(spec: Spec, present: Iterable[str], engine: str) -> None:
    """Raises :class:`assay.ColumnNotFoundError` for the first column the spec reads that the
    distributed dataset lacks."""
    have = set(present)
    for c in columns(spec):
        if c not in have:
            raise _errors.ColumnNotFoundError(
                f"column {c!r} not found in the {engine} dataset (its columns: "
                f"{', '.join(map(repr, sorted(have))) or 'none'})",
                c,
            )


def unresolved_bins(spec: Spec) -> list[Bins]:
    """The data-derived bins of ``spec``, one per distinct (column, n, strategy)."""
    seen: dict[tuple[str, int | None, str], Bins] = {}
    for b in spec._job.unresolved():
        seen.setdefault((b.column, b.n, b.strategy), b)
    return list(seen.values())


def accumulate_batches(spec: Spec, batches: Iterator[pa.RecordBatch], part: int,
                       n_threads: int | None) -> pa.RecordBatch | None:
    """One task's record: the state of ``batches`` (streamed, never concatenated), or the
    assay error it raised. None for a partition with no batches (an empty state merges as
    the identity, so an empty partition sends nothing)."""
    first = next(batches, None)
    if first is None:
        return None
    reader = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))
    try:
        state = spec.accumulate(reader, n_threads=n_threads)
    except AssayError as e:
        return error_record(part, e)
    return state_record(part, state.to_bytes())


def state_record(part: int, blob: bytes) -> pa.RecordBatch:
    """The record of a state."""
    return pa.RecordBatch.from_arrays(
        [pa.array([part], pa.int64()), pa.array([blob], pa.binary()),
         pa.nulls(1, pa.string()), pa.nulls(1, pa.string()), pa.nulls(1, pa.string())],
        schema=SCHEMA)


def error_record(part: int, e: AssayError) -> pa.RecordBatch:
    """The record of an assay error raised in a task: its class (with its bases, so that the
    driver can fall back on the nearest class it knows), message and column."""
    return pa.RecordBatch.from_arrays(
        [pa.array([part], pa.int64()), pa.nulls(1, pa.binary()),
         pa.array([",".join(c.__name__ for c in type(e).__mro__)]), pa.array([str(e)]),
         pa.array([e.column], pa.string())],
        schema=SCHEMA)


def merge_records(records: pa.Table | pa.RecordBatch) -> pa.RecordBatch | None:
    """One record for a group of records: the first error (lowest ``part``) if any failed,
    else the merge of their states, at the lowest ``part``. None for no records."""
    if records.num_rows == 0:
        return None
    rows = sorted(records.to_pylist(), key=lambda r: r["part"])
    for r in rows:
        if r["error_kind"] is not None:
            return pa.RecordBatch.from_pylist([r], schema=SCHEMA)
    if len(rows) == 1:
        return pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
    try:
        merged = merge([PartialState.from_bytes(r["state"]) for r in rows])
    except AssayError as e:  # reaches the driver typed, like an error of the first pass
        return error_record(rows[0]["part"], e)
    return state_record(rows[0]["part"], merged.to_bytes())


def finish(records: Sequence[dict[str, Any]], spec: Spec, empty: Callable[[], pa.Schema],
           where: str) -> PartialState:
    """The driver's side: re-raises the first worker error (lowest partition) as its own
    assay class, message intact, or merges the states (an empty dataset gives the empty
    state of ``spec``, made from ``empty()``, the schema of the columns read). ``where`` says
    where the task ran, in the error's note (``{part}`` is the record's partition)."""
    rows = sorted(records, key=lambda r: (r["part"], r["error_message"] or ""))
    for r in rows:
        if r["error_kind"] is not None:
            raise remote_error(r, where.format(part=r["part"]))
    if not rows:
        return spec.accumulate(empty().empty_table())
    states = [PartialState.from_bytes(r["state"]) for r in rows]
    return states[0] if len(states) == 1 else merge(states)


def remote_error(record: dict[str, Any], where: str) -> AssayError:
    """The assay error a task reported, as its own class (or the nearest base class in
    :mod:`assay.errors`), with the message and column intact and ``where`` as a note."""
    cls: type[AssayError] = AssayError
    for name in str(record["error_kind"]).split(","):
        known = getattr(_errors, name, None)
        if isinstance(known, type) and issubclass(known, AssayError):
            cls = known
            break
    err = cls(record["error_message"], record["error_column"])
    err.add_note(where)
    return err


def order_statistic_fractions(count: int, ranks: Sequence[int]) -> list[float]:
    """Fractions that make an exact percentile aggregate over every value counted twice
    (Spark's ``percentile(x, p, 2)``: ``2 * count`` positions, rank ``r`` at positions
    ``2r`` and ``2r + 1``) return the order statistics of ``ranks`` themselves: each
    fraction puts the interpolation position half-way between the two copies of its rank,
    where both neighbours are the same value, so no interpolation rounding can enter (the
    position may be off by far less than 1/2 for any count below 2**48)."""
    if count >= 2**48:
        raise InvalidArgumentError(
            f"cannot place data-derived bins over {count} values exactly; give "
            "assay.bins(..., edges=[...]) or fix them on a sample with spec.resolve(sample)"
        )
    last = 2 * count - 1
    return [min(1.0, (2 * r + 0.5) / last) for r in ranks]
