"""Normalizes what users pass as ``data`` into an Arrow stream the engine reads once.

In-memory tables are handed over zero-copy through the Arrow PyCapsule interface; streams
(``pyarrow.RecordBatchReader``, polars ``LazyFrame``, duckdb relations, files) are read batch by
batch, so memory is bounded by the engine's states rather than by the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ColumnNotFoundError, InvalidArgumentError, InvalidInputError, SchemaError


@dataclass
class Source:
    """One input, ready to be streamed once and (when it is in memory) re-read per column."""

    open: Callable[[], Any]
    """Returns an object exposing ``__arrow_c_stream__`` (called once, after bins are resolved)."""
    column: Callable[[str], Any] | None
    """Returns a one-column stream for bin edges, or None when the input can be read only once."""
    names: list[str] | None
    """The column names, where they are known before the pass."""
    rows: int | None = None
    """The number of rows of an in-memory table (None for a stream). The engine then reserves
    its kept rows once instead of regrowing them batch by batch, and may read the table's
    batches a second time instead of keeping rows (quantile bins of the overall slice)."""

    def read_column(self, name: str, purpose: str) -> Any:
        """A one-column stream of ``name``, with a typed error when it cannot be had."""
        if self.names is not None and name not in self.names:
            raise ColumnNotFoundError(
                f"column {name!r} not found; available columns: "
                + ", ".join(repr(n) for n in self.names),
                name,
            )
        if self.column is None:
            raise InvalidArgumentError(
                f"{purpose} must read column {name!r} before the pass, but this input can be "
                "read only once"
            )
        return self.column(name)


# In-memory tables are handed over in slices of this many rows (zero-copy): the engine checks
# for Ctrl-C between batches, so a long job stays interruptible.
_BATCH_ROWS = 1 << 20


def _table_source(table: pa.Table) -> Source:
    return Source(open=lambda: table.to_reader(max_chunksize=_BATCH_ROWS),
                  column=lambda c: table.select([c]), names=table.schema.names,
                  rows=table.num_rows)


def _dict_source(data: Mapping[str, Any]) -> Source:
    arrays: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for name, values in data.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"column names must be strings, got {name!r}")
        if isinstance(values, np.ndarray):
            if values.ndim != 1:
                raise SchemaError(
                    f"column {name!r}: expected a 1-d array, got shape {values.shape}", name
                )
            arrays[name] = pa.array(values)
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            arrays[name] = values
        else:
            arrays[name] = pa.array(np.asarray(values))
        lengths[name] = len(arrays[name])
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k!r}: {v}" for k, v in lengths.items())
        first = next(iter(lengths))
        odd = next(k for k, v in lengths.items() if v != lengths[first])
        raise InvalidInputError(f"columns have different lengths ({shown})", odd)
    return _table_source(pa.table(arrays))


def _path_source(path: str | os.PathLike[str]) -> Source:
    import pyarrow.dataset as ds

    p = os.fspath(path)
    if not os.path.exists(p):
        raise InvalidArgumentError(f"no such file: {p!r}")
    suffix = p.rsplit(".", 1)[-1].lower()
    fmt = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "arrow": "ipc", "ipc": "ipc",
           "feather": "ipc"}.get(suffix)
    if fmt is None:
        raise InvalidArgumentError(
            f"cannot tell the format of {p!r}: use a .parquet, .csv, .arrow/.ipc/.feather file"
        )
    dataset = ds.dataset(p, format=fmt)
    return Source(
        open=lambda: dataset.scanner().to_reader(),
        column=lambda c: dataset.to_table(columns=[c]),
        names=dataset.schema.names,
    )


def _lazyframe_source(lf: Any) -> Source:
    return Source(open=lambda: _lazyframe_reader(lf), column=lambda c: lf.select(c).collect(),
                  names=lf.collect_schema().names())


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
    def reader() -> Any:
        if hasattr(rel, "to_arrow_reader"):
            return rel.to_arrow_reader()
        return rel.fetch_arrow_reader()

    def column(c: str) -> Any:
        one = rel.select(c)
        return one.to_arrow_table() if hasattr(one, "to_arrow_table") else one.arrow()

    return Source(open=reader, column=column, names=list(rel.columns))


def to_source(data: Any) -> Source:
    """Classifies ``data`` and returns how to stream it."""
    mod = type(data).__module__.split(".")[0]
    if isinstance(data, pa.Table):
        return _table_source(data)
    if isinstance(data, pa.RecordBatch):
        return _table_source(pa.Table.from_batches([data]))
    if isinstance(data, pa.RecordBatchReader):
        return Source(open=lambda: data, column=None, names=data.schema.names)
    if isinstance(data, (str, os.PathLike)):
        return _path_source(data)
    if isinstance(data, Mapping):
        return _dict_source(data)
    if mod == "polars":
        import polars as pl

        if isinstance(data, pl.LazyFrame):
            return _lazyframe_source(data)
        if isinstance(data, pl.DataFrame):
            return _table_source(pa.table(data))
    if mod == "pandas":
        return _table_source(pa.Table.from_pandas(data, preserve_index=False))
    if mod == "duckdb":
        return _duckdb_source(data)
    if hasattr(data, "__arrow_c_stream__"):
        return Source(open=lambda: data, column=None, names=None)
    raise InvalidArgumentError(
        f"cannot evaluate an object of type {type(data).__name__}: pass a pyarrow Table or "
        "RecordBatchReader, a polars DataFrame or LazyFrame, a pandas DataFrame, a duckdb "
        "relation, a dict of numpy arrays, a file path, or anything with __arrow_c_stream__"
    )
