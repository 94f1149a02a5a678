"""Normalizes what users pass as ``data`` into an Arrow stream the engine reads once.

In-memory tables are handed over zero-copy through the Arrow PyCapsule interface; streams
(``pyarrow.RecordBatchReader``, polars ``LazyFrame``, duckdb relations, files, directories,
globs, lists of files, Hive-partitioned trees, ``pyarrow.dataset.Dataset``) are read batch by
batch, so memory is bounded by the engine's states rather than by the data. A job opens its
input with the columns it reads (:meth:`Source.open`): files, datasets, lazy frames and duckdb
relations then never read the others (the projection is pushed into their scan).

Every stream goes through :func:`_checked_reader` on its way to the engine: the C Data interface
carries no buffer sizes, so only this (producer) side can tell that a batch does not match the
schema its reader declared (which would otherwise make the engine read past a buffer, or read
float32 data as float64). The same wrapper catches whatever the source raises mid-stream (a user
generator, a lazy frame's collect, a corrupt page of a file) and keeps it in the source's
:class:`StreamGuard`; the call site runs the native job inside ``with source.guard:``, which
re-raises it as itself (``KeyboardInterrupt``) or as a typed :class:`assay.AssayError` that names
the input, with the original exception as ``__cause__``.
"""

from __future__ import annotations

import glob
import os
import stat
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import (
    AssayError,
    ColumnNotFoundError,
    EmptyInputError,
    InvalidArgumentError,
    InvalidInputError,
    SchemaError,
)


class _SourceFailed(Exception):
    """Raised into pyarrow to end a stream whose source failed (the real error is stashed in
    the source's :class:`StreamGuard`)."""


class StreamGuard:
    """What went wrong in a source while the engine was reading it.

    Use it around the native call that consumes ``source.open()``::

        with source.guard:
            result = _native.evaluate(source.open(), ...)

    When the stream failed, the (opaque) native error is replaced by the source's own:
    ``KeyboardInterrupt`` (and other non-``Exception`` signals) as themselves, an
    :class:`AssayError` (a batch that does not match its schema) as it is, anything else as an
    :class:`InvalidInputError` naming the input, with the original as ``__cause__``. A
    non-``Exception`` signal raised by the native call itself (Ctrl-C) is never replaced.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.error: BaseException | None = None
        self.batch: int | None = None
        self.bar: Any = None
        """The progress line of the stream being read (:class:`assay._progress.Progress`),
        ended when the native call returns."""

    def fail(self, error: BaseException, batch: int) -> None:
        if self.error is None:
            self.error = error
            self.batch = batch

    def __enter__(self) -> StreamGuard:
        self.error = None
        self.batch = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        err, batch = self.error, self.batch
        self.error = None
        self.batch = None
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.finish(ok=exc is None and err is None)
        if err is None:
            return
        if exc is not None and not isinstance(exc, Exception):
            # The native call itself was stopped (KeyboardInterrupt, SystemExit): that wins
            # over whatever the source had failed with.
            return
        # The source failed: whether or not the native call noticed, its result (or its error)
        # is about a truncated stream, so the source's own error is what the user gets.
        if not isinstance(err, Exception) or isinstance(err, AssayError):
            raise err
        raise InvalidInputError(
            f"reading {self.what} failed at batch {batch}: {type(err).__name__}: {err}"
        ) from err


# Readers (and stream objects) that assay has started to read: a reader can be read only once,
# and a second call would otherwise see an empty input ("the input has no rows").
_CONSUMED: weakref.WeakSet[Any] = weakref.WeakSet()


def _mark_consumed(obj: Any) -> None:
    try:
        _CONSUMED.add(obj)
    except TypeError:  # not weak-referenceable: cannot be tracked
        pass


def _was_consumed(obj: Any) -> bool:
    try:
        return obj in _CONSUMED
    except TypeError:
        return False


def _type_name(t: pa.DataType) -> str:
    """An Arrow type for a message (pyarrow calls float32 "float" and float64 "double")."""
    return f"{t} ({t.bit_width}-bit float)" if pa.types.is_floating(t) else str(t)


def _check_batch(batch: pa.RecordBatch, schema: pa.Schema, i: int, what: str) -> None:
    """Refuses a batch that does not match the declared ``schema`` (names, count, types;
    metadata ignored), has nulls in a column declared non-nullable, or is malformed."""
    got = batch.schema
    if got is not schema and not got.equals(schema, check_metadata=False):
        want_names, got_names = schema.names, got.names
        if want_names != got_names:
            missing = [n for n in want_names if n not in got_names]
            extra = [n for n in got_names if n not in want_names]
            if missing:
                col, problem = missing[0], f"lacks the declared column {missing[0]!r}"
            elif extra:
                col, problem = extra[0], f"has the undeclared column {extra[0]!r}"
            else:
                col = next(a for a, b in zip(want_names, got_names, strict=False) if a != b)
                problem = f"has its columns in another order (column {col!r} is out of place)"
            raise SchemaError(
                f"batch {i} of {what} does not match the declared schema: it {problem} "
                f"(declared columns: {want_names}; batch columns: {got_names})",
                col,
            )
        for want_f, got_f in zip(schema, got, strict=True):
            if not want_f.type.equals(got_f.type):
                raise SchemaError(
                    f"batch {i} of {what} does not match the declared schema: column "
                    f"{want_f.name!r} is declared {_type_name(want_f.type)} but the batch holds "
                    f"{_type_name(got_f.type)}",
                    want_f.name,
                )
    for j, f in enumerate(schema):
        if not f.nullable and batch.column(j).null_count:
            raise InvalidInputError(
                f"batch {i} of {what}: column {f.name!r} is declared non-nullable but holds "
                f"{batch.column(j).null_count} null(s)",
                f.name,
            )
    try:
        batch.validate()
    except pa.ArrowException as e:
        raise InvalidInputError(f"batch {i} of {what} is malformed: {e}") from e


def _checked_reader(reader: pa.RecordBatchReader, what: str, guard: StreamGuard,
                    track: Any = None) -> pa.RecordBatchReader:
    """``reader`` re-streamed through a generator that checks every batch against the declared
    schema and stashes what the source raises in ``guard`` (the stream then ends with an
    error). ``track``: the user's object to remember as consumed once reading starts."""
    schema = reader.schema
    held = [reader]
    del reader

    def batches() -> Iterator[pa.RecordBatch]:
        reader = held[0]
        i = 0
        ended = False
        try:
            if track is not None:
                _mark_consumed(track)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    ended = True
                    return
                _check_batch(batch, schema, i, what)
                yield batch
                i += 1
        except GeneratorExit:  # the consumer stopped early: not a failure of the source
            raise
        except BaseException as e:  # noqa: BLE001 - stashed and re-raised by the guard
            guard.fail(e, i)
            raise _SourceFailed(f"{what} failed at batch {i}") from None
        finally:
            # Closed when read to its end. A stream stopped early (Ctrl-C, a failure, the
            # engine's refusal) is only let go: closing a dataset scanner's reader reads the
            # rest of the dataset first (Ctrl-C would wait for all of it), while releasing it
            # stops the scan. The generator drops its own reference here, so that a traceback
            # that keeps this frame (a REPL keeps the last one) does not keep the scan's files
            # and buffers.
            close = getattr(reader, "close", None) if ended else None
            held.clear()
            del reader
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
                del close

    return pa.RecordBatchReader.from_batches(schema, batches())


@dataclass
class Source:
    """One input, ready to be streamed once and (when it is in memory) re-read per column."""

    opener: Callable[[list[str] | None], Any]
    """Returns an object exposing ``__arrow_c_stream__`` of the given columns (None: all; an
    input that cannot project gives all of them): see :meth:`open`."""
    column: Callable[[str], Any] | None
    """Returns a one-column stream for bin edges, or None when the input can be read only once."""
    names: list[str] | None
    """The column names, where they are known before the pass."""
    rows: int | None = None
    """The number of rows of an in-memory table (None for a stream). The engine then reserves
    its kept rows once instead of regrowing them batch by batch, and may read the table's
    batches a second time instead of keeping rows (quantile bins of the overall slice)."""
    guard: StreamGuard = field(default_factory=lambda: StreamGuard("the input"))
    """Where a stream's failure is kept until the native call returns (see StreamGuard)."""
    schema: pa.Schema | None = None
    """The input's Arrow schema, where it is known before the pass without reading rows."""
    temporal: frozenset[str] = frozenset()
    """The input's date, time and timestamp columns (where its schema is known)."""
    decimal: frozenset[str] = frozenset()
    """The input's decimal columns (where its schema is known): handed over as float64 (a
    score, label, weight or binned column), or as their values when they are slices (see
    :func:`_slice_values`)."""
    list_sizes: dict[str, int] = field(default_factory=dict)
    """The fixed sizes of its fixed-size list columns (polars ``Array``), where its schema is
    known but not as Arrow (a multiclass job reads K off its list column of scores)."""
    progress: bool = False
    """Whether :meth:`open` shows a progress line (see :mod:`assay._progress`)."""
    total_rows: Callable[[], int | None] | None = None
    """The input's row count where it can be had without reading the rows (Parquet metadata),
    for progress; ``rows`` is used first."""
    as_text: tuple[str, ...] = ()
    """Columns the stream hands over as their values in a type the engine slices by: a date,
    time, timestamp or decimal column used as a categorical slice (set by the job, see
    :meth:`slice_as_text` and :func:`_slice_values`)."""

    def slice_as_text(self, columns: Iterable[str]) -> None:
        """Hands the temporal and decimal ones among ``columns`` (categorical slice features)
        over as values the engine slices by (:func:`_slice_values`): a date as its ISO text,
        labelled ``day=2024-01-05``, in chronological order (ISO text sorts as time does); a
        decimal as its integer (scale 0) or its text (``price=19.99``)."""
        self.as_text = tuple(c for c in dict.fromkeys(columns)
                             if c in self.temporal or c in self.decimal)

    def check_binnable(self, columns: Iterable[str]) -> None:
        """Refuses ``assay.bins`` of a date, time or timestamp column (with what to do
        instead); a categorical slice of the same column in the same job is refused too, as
        the one column cannot be handed over both as values and as numbers."""
        for c in columns:
            if c in self.temporal:
                raise SchemaError(
                    f"column {c!r}: assay.bins needs a numeric column, and {c!r} holds dates "
                    f"or times; slice by its values (slices=[{c!r}]), or derive a coarser "
                    "period column (a week, a month) and slice by that", c)
            if c in self.as_text:
                raise SchemaError(
                    f"column {c!r} (a decimal) is both a categorical slice and assay.bins in "
                    "this job; use one of them, or a copy of the column for the other", c)

    def check_numbers(self, roles: Mapping[str | None, str]) -> None:
        """Refuses a decimal column that is a categorical slice and also read as a number
        (``roles``: column -> its role, such as "weight"): it is handed over as one or the
        other."""
        for c, role in roles.items():
            if c is not None and c in self.as_text and c in self.decimal:
                raise SchemaError(
                    f"column {c!r} (a decimal) is both a categorical slice and the {role} in "
                    "this job; slice by a copy of the column", c)

    def open(self, columns: Iterable[str | None] | None = None) -> Any:
        """The input as an object exposing ``__arrow_c_stream__`` (called once, after bins
        are resolved); run the native call that consumes it inside ``with source.guard:``.

        ``columns``: the columns the job reads (None entries are ignored). Where the input
        can project (files, datasets, lazy frames, duckdb relations, tables), the stream
        holds only those of them that it has, in its own order, and the others are never
        read; a column it lacks is left to the engine to report."""
        wanted = None if columns is None else {c for c in columns if c is not None}
        if wanted is None or self.names is None or not wanted <= set(self.names):
            # (A column the input lacks: unprojected, so that the engine's error lists every
            # column the input has.)
            stream = self.opener(None)
        else:
            stream = self.opener([n for n in dict.fromkeys(self.names) if n in wanted])
        # Decimal columns the job reads as numbers (a score, label, weight or binned column):
        # only those it asked for (a whole-table read, columns=None, keeps them as they are).
        as_float = () if wanted is None else tuple(
            c for c in self.decimal if c in wanted and c not in self.as_text)
        if not (self.as_text or self.progress or as_float):
            return stream
        bar = None
        if self.progress:
            from . import _progress

            total = self.rows
            if total is None and self.total_rows is not None:
                try:
                    total = self.total_rows()
                except Exception:  # noqa: BLE001 - a total is only nice to have
                    total = None
            bar = _progress.Progress(total)
            self.guard.bar = bar
        return _transformed(stream, self.as_text, as_float, bar, self.guard)

    def read_column(self, name: str, purpose: str) -> Any:
        """A one-column stream of ``name``, with a typed error when it cannot be had."""
        if self.names is not None and name not in self.names:
            raise ColumnNotFoundError(
                f"column {name!r} not found; available columns: "
                + (", ".join(repr(n) for n in self.names) or "(none)"),
                name,
            )
        self.check_columns([name])
        if self.column is None:
            raise InvalidArgumentError(
                f"{purpose} must read column {name!r} before the pass, but this input can be "
                "read only once"
            )
        column = self.column(name)
        if name in self.decimal:  # (bin edges of a decimal column: as float64, as the pass)
            table = column if isinstance(column, pa.Table) else \
                pa.RecordBatchReader.from_stream(column).read_all()
            column = pa.table({name: _to_float(table.column(0))})
        return column

    def check_columns(self, columns: Iterable[str | None]) -> None:
        """Refuses a column the job uses whose name appears more than once in the input
        (which of them to read cannot be told)."""
        if self.names is None:
            return
        counts = Counter(self.names)
        for c in columns:
            if c is not None and counts.get(c, 0) > 1:
                raise SchemaError(
                    f"column {c!r} appears {counts[c]} times in {self.guard.what}; assay cannot "
                    "tell which one to use: rename or drop the duplicates",
                    c,
                )


def _temporal(schema: pa.Schema | None) -> frozenset[str]:
    """The date, time and timestamp columns of ``schema``."""
    if schema is None:
        return frozenset()
    t = pa.types
    return frozenset(f.name for f in schema
                     if t.is_date(f.type) or t.is_time(f.type) or t.is_timestamp(f.type))


def _decimal(schema: pa.Schema | None) -> frozenset[str]:
    """The decimal columns of ``schema``."""
    if schema is None:
        return frozenset()
    return frozenset(f.name for f in schema if pa.types.is_decimal(f.type))


def _slice_type(t: pa.DataType) -> pa.DataType:
    """The type :func:`_slice_values` gives a column of type ``t``."""
    if pa.types.is_decimal(t) and t.scale <= 0 and t.precision - t.scale <= 18:
        return pa.int64()
    return pa.string()


def _slice_values(c: Any) -> Any:
    """A date, time, timestamp or decimal column as values the engine slices by: a temporal
    one as its ISO text (:func:`_iso_text`); an integer decimal (scale <= 0) of at most 18
    digits as int64, so that its slices are ordered as numbers; any other decimal as its text,
    with the scale of its type (``19.90``; such slices are ordered as text)."""
    if not pa.types.is_decimal(c.type):
        return _iso_text(c)
    import pyarrow.compute as pc

    return pc.cast(c, _slice_type(c.type))


def _iso_text(c: Any) -> Any:
    """A date, time or timestamp column as its ISO text, the same for any unit and zone: a
    zoned timestamp in UTC (``Z``), trailing zeros of the fraction of a second dropped
    (``10:30:00.250000000`` -> ``10:30:00.25``, ``10:30:00.000000`` -> ``10:30:00``)."""
    import pyarrow.compute as pc

    if pa.types.is_timestamp(c.type) and c.type.tz is not None:
        c = pc.cast(c, pa.timestamp(c.type.unit, "UTC"))
    text = pc.cast(c, pa.string())
    text = pc.replace_substring_regex(text, pattern=r"(\.\d*?)0+(Z?)$", replacement=r"\1\2")
    return pc.replace_substring_regex(text, pattern=r"\.(Z?)$", replacement=r"\1")


def _transformed(stream: Any, as_text: Sequence[str], as_float: Sequence[str], bar: Any,
                 guard: StreamGuard) -> pa.RecordBatchReader:
    """``stream`` with the ``as_text`` columns as slice values (:func:`_slice_values`,
    vectorized per batch), the ``as_float`` ones (decimals) as float64, and ``bar`` (a
    :class:`assay._progress.Progress`, or None) counting its rows. What
    this raises (a Ctrl-C included) is stashed in ``guard``, as :func:`_checked_reader` does,
    so that it surfaces as itself."""
    reader = stream if isinstance(stream, pa.RecordBatchReader) else \
        pa.RecordBatchReader.from_stream(stream)
    schema = reader.schema
    convert: dict[str, Callable[[Any], Any]] = {}
    for n in as_text:
        if n in schema.names:
            i = schema.get_field_index(n)
            schema = schema.set(i, schema.field(i).with_type(_slice_type(schema.field(i).type)))
            convert[n] = _slice_values
    for n in as_float:
        i = schema.get_field_index(n) if n in schema.names else -1
        if i >= 0 and pa.types.is_decimal(schema.field(i).type):
            schema = schema.set(i, schema.field(i).with_type(pa.float64()))
            convert[n] = _to_float

    held = [reader]
    del reader

    def batches() -> Iterator[pa.RecordBatch]:
        reader = held[0]
        i = 0
        done = False
        try:
            for batch in reader:
                if convert:
                    cols = [convert[name](c) if name in convert else c
                            for name, c in zip(batch.schema.names, batch.columns, strict=True)]
                    batch = pa.RecordBatch.from_arrays(cols, schema=schema)
                if bar is not None:
                    bar.update(batch.num_rows)
                yield batch
                i += 1
            done = True
        except GeneratorExit:  # the consumer stopped early: not a failure of the source
            raise
        except BaseException as e:  # noqa: BLE001 - stashed and re-raised by the guard
            guard.fail(e, i)
            raise _SourceFailed(f"{guard.what} failed at batch {i}") from None
        finally:
            held.clear()
            del reader
            if bar is not None:
                if done:
                    bar.read_done()  # the engine computes now; the guard ends the line
                else:
                    bar.close(done=False)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _to_float(c: Any) -> Any:
    """A decimal column as float64: the nearest double of each value, through its text
    (Arrow's own cast scales by a power of ten in floating point, and misses: 0.35 would
    become 0.35000000000000003, and land in another bin than the float 0.35)."""
    import pyarrow.compute as pc

    return pc.cast(pc.cast(c, pa.string()), pa.float64())


def _failing(what: str, action: str, e: Exception) -> InvalidInputError:
    return InvalidInputError(f"{what} failed {action}: {type(e).__name__}: {e}")


def _stream_source(
    open_reader: Callable[[list[str] | None], Any], what: str,
    column: Callable[[str], Any] | None, names: list[str] | None, track: Any = None,
    opening: str = "to open", schema: pa.Schema | None = None,
) -> Source:
    """A streamed input: ``open_reader(columns)`` returns a pyarrow RecordBatchReader (or an
    object with ``__arrow_c_stream__``) of those columns (None: all; it may give all of them
    when it cannot project); every batch is checked on its way to the engine."""
    guard = StreamGuard(what)

    def open_(columns: list[str] | None) -> pa.RecordBatchReader:
        if track is not None and _was_consumed(track):
            raise InvalidInputError(
                f"this {type(track).__name__} was already read (by an earlier assay call); a "
                "reader can be read only once: pass a Table, or a new reader"
            )
        try:
            reader = open_reader(columns)
            if not isinstance(reader, pa.RecordBatchReader):
                reader = pa.RecordBatchReader.from_stream(reader)
        except AssayError:
            raise
        except Exception as e:
            raise _failing(what, opening, e) from e
        return _checked_reader(reader, what, guard, track)

    def column_(c: str) -> Any:
        try:
            return column(c)  # type: ignore[misc]
        except AssayError:
            raise
        except Exception as e:
            raise _failing(what, f"to read column {c!r}", e) from e

    return Source(opener=open_, column=None if column is None else column_, names=names,
                  guard=guard, schema=schema, temporal=_temporal(schema),
                  decimal=_decimal(schema))


# In-memory tables are handed over in slices of this many rows (zero-copy): the engine checks
# for Ctrl-C between batches, so a long job stays interruptible.
_BATCH_ROWS = 1 << 20


def _table_source(table: pa.Table, what: str = "the input table") -> Source:
    try:
        table.validate()
    except pa.ArrowException as e:
        raise InvalidInputError(f"{what} is malformed: {e}") from e
    def open_(columns: list[str] | None) -> pa.RecordBatchReader:
        # (A zero-copy select; the names are unique here: a job refuses a duplicated name
        # it uses before it opens the input, and never asks for the others.)
        chosen = table if columns is None else table.select(columns)
        return chosen.to_reader(max_chunksize=_BATCH_ROWS)

    return Source(opener=open_, column=lambda c: table.select([c]), names=table.schema.names,
                  rows=table.num_rows, guard=StreamGuard(what), schema=table.schema,
                  temporal=_temporal(table.schema), decimal=_decimal(table.schema))


def _column_array(name: str, values: Any) -> Any:
    """One column of a dict input as an Arrow array. Lists and other sequences go through
    Arrow (not numpy, whose fixed-width strings truncate at NUL bytes and pad every value to
    the longest one)."""
    if values is None or isinstance(values, (str, bytes, bytearray, Mapping, set, frozenset)) \
            or np.isscalar(values):
        raise SchemaError(
            f"column {name!r}: expected a sequence of values (a list, numpy array, pyarrow "
            f"array...), got {type(values).__name__}",
            name,
        )
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if not isinstance(values, np.ndarray) and not isinstance(values, Sequence) \
            and not hasattr(values, "__arrow_c_array__") \
            and not hasattr(values, "__arrow_c_stream__"):
        if not hasattr(values, "__array__"):
            raise SchemaError(
                f"column {name!r}: expected a sequence of values (a list, numpy array, pyarrow "
                f"array...), got {type(values).__name__}",
                name,
            )
        values = np.asarray(values)
    if isinstance(values, np.ndarray):
        if values.ndim == 2 and values.dtype.kind == "f" and values.shape[1] >= 1:
            # A matrix of floats (a multiclass model's probabilities, rows x K): a fixed-size
            # list column over its values, without a copy when the rows are contiguous.
            if values.dtype.byteorder not in ("=", "|"):
                values = values.astype(values.dtype.newbyteorder("="))
            flat = np.ascontiguousarray(values).reshape(-1)
            return pa.FixedSizeListArray.from_arrays(pa.array(flat), values.shape[1])
        if values.ndim != 1:
            raise SchemaError(
                f"column {name!r}: expected a 1-d array (or a 2-d array of floats: a list "
                f"column), got shape {values.shape}", name
            )
        if values.dtype.byteorder not in ("=", "|"):  # big-endian data: Arrow wants native
            values = values.astype(values.dtype.newbyteorder("="))
    elif hasattr(values, "__arrow_c_stream__") and not hasattr(values, "__arrow_c_array__"):
        try:
            return pa.chunked_array(values)
        except Exception as e:
            raise SchemaError(f"column {name!r}: cannot convert to an Arrow array: {e}",
                              name) from e
    try:
        arr = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
        raise SchemaError(
            f"column {name!r}: cannot convert to an Arrow array (mixed or unsupported value "
            f"types?): {e}",
            name,
        ) from e
    return arr


def _dict_source(data: Mapping[Any, Any]) -> Source:
    arrays: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for name, values in data.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"column names must be strings, got {name!r} ({type(name).__name__})"
            )
        arrays[name] = _column_array(name, values)
        lengths[name] = len(arrays[name])
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k!r}: {v}" for k, v in lengths.items())
        first = next(iter(lengths))
        odd = next(k for k, v in lengths.items() if v != lengths[first])
        raise InvalidInputError(f"columns have different lengths ({shown})", odd)
    return _table_source(pa.table(arrays), "the dict input")


_FORMATS = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "arrow": "ipc", "ipc": "ipc",
            "feather": "ipc"}
_FORMAT_NAMES = {"parquet": "Parquet", "csv": "CSV", "ipc": "Arrow IPC"}
_SUFFIXES = ".parquet/.pq, .csv, .arrow/.ipc/.feather"


def _suffix_format(p: str) -> str | None:
    base = os.path.basename(os.path.normpath(p))
    return _FORMATS.get(base.rsplit(".", 1)[-1].lower()) if "." in base else None


def _directory_files(p: str) -> list[str]:
    """The files under directory ``p`` (recursively), skipping hidden and ``_``-prefixed
    names as pyarrow's dataset discovery does."""
    def fail(e: OSError) -> None:
        raise e  # os.walk would skip an unreadable folder silently

    out: list[str] = []
    for root, dirs, files in os.walk(p, onerror=fail):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith((".", "_")))
    return out


_GLOB_CHARS = frozenset("*?[")


def _regular_files(files: list[str], what: str) -> None:
    """Refuses a FIFO (its read would block forever) or a device among ``files``."""
    for f in files:
        try:
            mode = os.stat(f).st_mode
        except OSError as e:
            raise InvalidArgumentError(f"cannot open {f!r} in {what}: {e.strerror or e}") from e
        if not stat.S_ISREG(mode):
            raise InvalidArgumentError(
                f"{f!r} in {what} is not a regular file (a FIFO, device or socket), which "
                "assay does not read"
            )


def _expand(p: str, what: str) -> tuple[list[str], str | None]:
    """The data files of path ``p`` (a file, or the files under a directory) and the format
    its own suffix names (None without one)."""
    try:
        st = os.stat(p)
    except FileNotFoundError as e:
        raise InvalidArgumentError(f"no such file: {p!r}") from e
    except OSError as e:
        raise InvalidArgumentError(f"cannot open {p!r}: {e.strerror or e}") from e
    fmt = _suffix_format(p)
    if stat.S_ISDIR(st.st_mode):
        try:
            files = _directory_files(p)
        except OSError as e:
            raise InvalidArgumentError(f"cannot list directory {p!r}: {e.strerror or e}") \
                from e
        return files, fmt
    if stat.S_ISFIFO(st.st_mode):
        raise InvalidArgumentError(
            f"{p!r} is a FIFO (named pipe), which assay does not read: it could wait "
            "forever for a writer; write the data to a file, or pass a "
            "pyarrow.RecordBatchReader"
        )
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgumentError(
            f"{p!r} is not a regular file or directory (a device or socket?)"
        )
    if fmt is None:
        raise InvalidArgumentError(
            f"cannot tell the format of {p!r}: use a {_SUFFIXES} file"
        )
    if st.st_size == 0:
        raise InvalidInputError(f"{what} is empty (0 bytes), not a {_FORMAT_NAMES[fmt]} file")
    return [p], fmt


def _glob_base(pattern: str) -> str:
    """The directory a glob pattern starts from: its leading components without a glob
    character (Hive partition keys are read below it)."""
    parts = pattern.split(os.sep)
    lead: list[str] = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        lead.append(part)
    return os.sep.join(lead) if lead else "."


def _path_source(path: str | os.PathLike[str] | Sequence[Any]) -> Source:
    """A file, a directory (its files, recursively; ``key=value`` folders are Hive
    partitions whose keys become columns), a glob pattern (``parts/*/*.parquet``, ``**``
    recursive; partition keys below its fixed leading folders), or a list of those."""
    return _dataset_source(*_path_dataset(path))


def _path_dataset(path: str | os.PathLike[str] | Sequence[Any]) -> tuple[Any, str]:
    """The ``pyarrow.dataset.Dataset`` of a path input (see :func:`_path_source`) and how
    errors name it."""
    if isinstance(path, (str, os.PathLike)):
        items = [path]
    else:
        items = list(path)
        if not items:
            raise InvalidArgumentError("an empty list of paths holds no data")
    files: list[str] = []
    named: dict[str, str] = {}  # files of a directory named like a format (Spark's out.parquet)
    bases: list[str] = []
    for item in items:
        p = os.fspath(item)
        if not isinstance(p, str):
            raise InvalidArgumentError(f"a path must be a str or os.PathLike[str], got {p!r}")
        if not os.path.lexists(p) and _GLOB_CHARS & set(p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                raise InvalidArgumentError(f"no file matches {p!r}")
            bases.append(_glob_base(p))
            for m in matches:
                if any(part.startswith((".", "_")) for part in
                       os.path.relpath(m, _glob_base(p)).split(os.sep)):
                    continue  # hidden and _-prefixed (Spark's _temporary), as in folders
                if os.path.isdir(m):
                    try:
                        files += _directory_files(m)
                    except OSError as e:
                        raise InvalidArgumentError(
                            f"cannot list directory {m!r}: {e.strerror or e}") from e
                else:
                    files.append(m)
            continue
        found, fmt = _expand(p, f"file {p!r}")
        if os.path.isdir(p):
            bases.append(p)
            if not found:
                raise EmptyInputError(f"directory {p!r} holds no data files (use {_SUFFIXES} "
                                      "files)")
            if fmt is not None:
                named.update(dict.fromkeys(found, fmt))
        files += found
    files = list(dict.fromkeys(files))
    single_dir = len(items) == 1 and isinstance(items[0], (str, os.PathLike)) \
        and os.path.isdir(os.fspath(items[0]))
    if len(items) == 1 and len(files) == 1 and not bases:
        what = f"file {files[0]!r}"
    elif single_dir:
        what = f"directory {os.fspath(items[0])!r}"
    elif len(items) == 1:
        what = f"the files matching {os.fspath(items[0])!r}"
    else:
        what = f"the {len(files)} files of the input list"
    if not files:
        raise EmptyInputError(f"{what} holds no data files (use {_SUFFIXES} files)")
    # A file's format is its directory's (named like a format) or its own suffix; files
    # without a known one are left out, and two formats are refused.
    formats = {f: named.get(f) or _suffix_format(f) for f in files}
    kinds = {k for k in formats.values() if k is not None}
    if not kinds:
        shown = ", ".join(repr(os.path.relpath(f, os.fspath(items[0])) if single_dir else f)
                          for f in files[:5])
        raise InvalidInputError(
            f"{what} holds no data files: none of its files ({shown}"
            f"{', ...' if len(files) > 5 else ''}) ends in {_SUFFIXES}"
        )
    if len(kinds) > 1:
        raise InvalidInputError(
            f"{what} mixes file formats ({', '.join(sorted(kinds))}): give files of one format"
        )
    fmt = kinds.pop()
    files = [f for f in files if formats[f] == fmt]
    _regular_files(files, what)
    kind = _FORMAT_NAMES[fmt]
    # Hive partitions: `key=value` folders below the one base directory of the input.
    base = bases[0] if len(set(bases)) == 1 and len(bases) == len(items) else None
    import pyarrow.dataset as ds

    try:
        if base is not None:
            # A partition key named like a column of the files would silently replace it.
            keys = {part.split("=", 1)[0] for f in files
                    for part in os.path.relpath(f, base).split(os.sep)[:-1] if "=" in part}
            clash = sorted(keys & set(ds.dataset(files[0], format=fmt).schema.names))
            if clash:
                raise InvalidInputError(
                    f"{what}: {clash[0]!r} is both a column of its files and a Hive partition "
                    f"key (folders {clash[0]}=...); rename the column or the folders")
            dataset = ds.dataset(files, format=fmt, partitioning="hive",
                                 partition_base_dir=base)
        else:
            dataset = ds.dataset(files if len(files) > 1 else files[0], format=fmt)
    except AssayError:
        raise
    except PermissionError as e:
        raise InvalidArgumentError(
            f"cannot read {what}: permission denied ({e.filename or files[0]})"
        ) from e
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InvalidInputError(
            f"cannot read {what} as {kind} (corrupt or truncated?): {e}"
        ) from e
    return dataset, what


def _dataset_source(dataset: Any, what: str = "the pyarrow Dataset input") -> Source:
    """A ``pyarrow.dataset.Dataset``: scanned batch by batch, only the job's columns."""
    try:
        schema = dataset.schema
        names = schema.names
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InvalidInputError(f"cannot read {what}: {e}") from e
    if not names:
        raise InvalidInputError(f"{what} has no columns")
    source = _stream_source(
        lambda cols: _scan(dataset, cols),
        what,
        lambda c: dataset.to_table(columns=[c]),
        names,
        schema=schema,
    )
    if getattr(getattr(dataset, "format", None), "default_extname", "") == "parquet":
        source.total_rows = dataset.count_rows  # from the files' metadata
    return source


def _scan(dataset: Any, columns: list[str] | None) -> pa.RecordBatchReader:
    """A reader of ``dataset``'s ``columns`` that stops at once when closed early. (The
    scanner's own ``to_reader()`` reads the rest of the dataset when it is closed: Ctrl-C on a
    large dataset would wait for all of it. Its ``to_batches()`` generator, the same scan,
    does not.)"""
    scanner = dataset.scanner(columns=columns)
    return pa.RecordBatchReader.from_batches(scanner.projected_schema, scanner.to_batches())


def _lazyframe_source(lf: Any) -> Source:
    what = "the polars LazyFrame input"
    try:
        names = lf.collect_schema().names()
    except Exception as e:
        raise _failing(what, "to resolve its schema", e) from e
    import polars as pl

    source = _stream_source(
        lambda cols: _lazyframe_reader(lf if cols is None else lf.select(cols)), what,
        lambda c: lf.select(c).collect(), names, opening="to collect")
    schema = lf.collect_schema()
    source.temporal = frozenset(n for n, t in schema.items()
                                if isinstance(t, (pl.Date, pl.Datetime, pl.Time))
                                or t in (pl.Date, pl.Time))
    source.decimal = frozenset(n for n, t in schema.items() if isinstance(t, pl.Decimal))
    source.list_sizes = {n: int(t.size) for n, t in schema.items()
                         if isinstance(t, pl.Array) and len(t.shape) == 1}
    return source


def _lazyframe_reader(lf: Any) -> pa.RecordBatchReader:
    def batches() -> Any:
        for df in lf.collect_batches():
            yield from df.to_arrow().to_batches()

    it = batches()
    first = next(it, None)
    if first is None:
        schema = lf.head(0).collect().to_arrow().schema
        reader = pa.RecordBatchReader.from_batches(schema, [])
    else:
        def chained() -> Any:
            yield first
            for b in it:
                yield b.cast(first.schema) if b.schema != first.schema else b

        reader = pa.RecordBatchReader.from_batches(first.schema, chained())
    return reader


def _duckdb_source(rel: Any) -> Source:
    what = "the duckdb relation input"

    def reader(cols: list[str] | None) -> Any:
        chosen = rel if cols is None else rel.select(*(_duck_column(c) for c in cols))
        if hasattr(chosen, "to_arrow_reader"):
            return chosen.to_arrow_reader()
        return chosen.fetch_arrow_reader()

    def column(c: str) -> Any:
        one = rel.select(_duck_column(c))
        return one.to_arrow_table() if hasattr(one, "to_arrow_table") else one.arrow()

    try:
        names = list(rel.columns)
        types = [str(t).upper() for t in rel.dtypes]
    except Exception as e:
        raise _failing(what, "to give its columns", e) from e
    source = _stream_source(reader, what, column, names, opening="to execute")
    source.temporal = frozenset(n for n, t in zip(names, types, strict=True)
                                if t.startswith(("DATE", "TIME")))
    # (HUGEINT and UHUGEINT reach Arrow as decimal128(38, 0).)
    source.decimal = frozenset(n for n, t in zip(names, types, strict=True)
                               if t.startswith(("DECIMAL", "HUGEINT", "UHUGEINT")))
    return source


def _duck_column(name: str) -> Any:
    """A duckdb expression selecting the column ``name`` (any characters)."""
    import duckdb

    return duckdb.ColumnExpression(name)


def _pandas_table(df: Any) -> pa.Table:
    """A pandas DataFrame as a table; duplicate column names are kept (as pyarrow allows) so
    that only a job that uses one of them is refused."""
    try:
        if df.columns.is_unique:
            return pa.Table.from_pandas(df, preserve_index=False)
        parts = [pa.Table.from_pandas(df.iloc[:, [j]], preserve_index=False)
                 for j in range(df.shape[1])]
        return pa.Table.from_arrays([t.column(0) for t in parts],
                                    names=[t.column_names[0] for t in parts])
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise SchemaError(f"cannot convert the pandas DataFrame input to Arrow: {e}") from e


def to_source(data: Any) -> Source:
    """Classifies ``data`` and returns how to stream it."""
    mod = type(data).__module__.split(".")[0]
    if isinstance(data, pa.Table):
        return _table_source(data)
    if isinstance(data, pa.RecordBatch):
        return _table_source(pa.Table.from_batches([data]), "the input record batch")
    if isinstance(data, pa.RecordBatchReader):
        return _stream_source(lambda _: data, "the RecordBatchReader input", None,
                              data.schema.names, track=data, schema=data.schema)
    if isinstance(data, (str, os.PathLike)):
        return _path_source(data)
    if isinstance(data, (list, tuple)) and data and all(
            isinstance(x, (str, os.PathLike)) for x in data):
        return _path_source(data)
    if mod == "pyarrow":
        import pyarrow.dataset as ds

        if isinstance(data, ds.Dataset):
            return _dataset_source(data)
    if isinstance(data, Mapping):
        return _dict_source(data)
    if mod == "polars":
        import polars as pl

        if isinstance(data, pl.LazyFrame):
            return _lazyframe_source(data)
        if isinstance(data, pl.DataFrame):
            return _table_source(pa.table(data), "the polars DataFrame input")
    if mod == "pandas" and hasattr(data, "columns") and hasattr(data, "iloc"):
        return _table_source(_pandas_table(data), "the pandas DataFrame input")
    if mod == "duckdb":
        return _duckdb_source(data)
    if hasattr(data, "__arrow_c_stream__"):
        # Not tracked as consumed: such an object may well be readable more than once.
        return _stream_source(lambda _: data, f"the {type(data).__name__} input stream", None,
                              None)
    raise InvalidArgumentError(
        f"cannot evaluate an object of type {type(data).__name__}: pass a pyarrow Table, "
        "RecordBatchReader or Dataset, a polars DataFrame or LazyFrame, a pandas DataFrame, a "
        "duckdb relation, a dict of numpy arrays, a file, directory or glob path (or a list "
        "of them), or anything with __arrow_c_stream__"
    )
