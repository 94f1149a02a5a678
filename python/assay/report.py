"""The result of :func:`assay.evaluate`."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pyarrow as pa

from ._text import escape_frame


def frame_to_arrow(df: pl.DataFrame) -> pa.Table:
    """A polars frame as a ``pyarrow.Table``, kept by result objects at construction (while
    polars is usable). Column names are exported through placeholders, because polars cannot
    export a name holding a NUL byte (it would panic)."""
    names = df.columns
    if not any("\x00" in n for n in names):
        return df.to_arrow()
    tmp = df.rename({n: f"_{i}" for i, n in enumerate(names)})
    return tmp.to_arrow().rename_columns(names)


def arrow_to_dict(table: pa.Table) -> dict[str, list[Any]]:
    """A table as a dict of column lists, by pyarrow alone (safe in a forked child)."""
    return {name: table.column(i).to_pylist() for i, name in enumerate(table.column_names)}


def arrow_to_json(table: pa.Table, **extra: Any) -> str:
    """A table as JSON ``{"columns": [...], "rows": [{...}, ...], **extra}``, by pyarrow
    alone."""
    return json.dumps({"columns": table.column_names, "rows": table.to_pylist(), **extra})


class ArrowResult:
    """What every result object offers without polars: :meth:`to_arrow`, :meth:`to_dict`,
    :meth:`to_json` and the Arrow PyCapsule stream, all read from Arrow data kept at
    construction.

    **Fork safety**: polars' thread pool does not survive ``fork()``, so a child forked after
    the parent used polars can hang in any polars call (``.table.sort(...)``, ...). These
    accessors never touch polars and work in such a child; or start child processes with the
    ``"spawn"`` or ``"forkserver"`` method of :mod:`multiprocessing`.
    """

    _arrow: pa.Table

    def to_arrow(self) -> pa.Table:
        """The result table as a ``pyarrow.Table``."""
        return self._arrow

    def to_dict(self) -> dict[str, list[Any]]:
        """The result table as a dict of column lists (without polars)."""
        return arrow_to_dict(self._arrow)

    def to_json(self) -> str:
        """The result table as JSON: ``{"columns": [...], "rows": [{...}, ...]}`` (without
        polars)."""
        return arrow_to_json(self._arrow)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._arrow.__arrow_c_stream__(requested_schema)


class Report:
    """Sliced metrics: one row per slice in :attr:`table`, long form in :meth:`long`.

    ``to_arrow()``, ``to_dict()`` and ``to_json()`` read the Arrow result directly, without
    polars, and the polars frames are built on first use: in a child process forked after the
    parent used polars (whose thread pool does not survive ``fork()``), use those accessors,
    or start children with the ``"spawn"``/``"forkserver"`` method.

    Attributes
    ----------
    table : polars.DataFrame
        ``slice``, one column per slice feature, ``n``, ``weight_sum`` (weighted jobs), then one
        Float64 column per metric. ``overall`` is the first row. Undefined values are null.
    notes : polars.DataFrame
        ``slice``, ``metric``, ``note``: why each null value is null.
    metrics : list[str]
        The metric columns, in order.
    rows : int
        Rows read.
    dropped : int
        Rows dropped by ``nan_policy="drop"`` (0 otherwise).
    ci_method : str or None
        How the intervals were built (``None`` without intervals).
    """

    def __init__(
        self, table: pa.RecordBatch, notes: pa.RecordBatch, metrics: list[str], rows: int,
        dropped: int, ci_method: str | None = None,
    ) -> None:
        self.ci_method = ci_method
        full = pa.Table.from_batches([table])
        # The wide table shows m, m_lo, m_hi; standard errors live in long().
        self._se = {m: full.column(f"{m}_se") for m in metrics} if ci_method else {}
        self._arrow = full.drop_columns([f"{m}_se" for m in metrics]) if ci_method else full
        self._notes_arrow = notes
        self._table: pl.DataFrame | None = None
        self._notes: pl.DataFrame | None = None
        self.metrics = list(metrics)
        self.rows = int(rows)
        self.dropped = int(dropped)

    # The polars frames are built on first use: polars' thread pool does not survive fork(),
    # so a process that only needs the Arrow result never starts it.
    @property
    def table(self) -> pl.DataFrame:
        if self._table is None:
            self._table = pl.from_arrow(self._arrow)  # type: ignore[assignment]
        return self._table  # type: ignore[return-value]

    @property
    def notes(self) -> pl.DataFrame:
        if self._notes is None:
            self._notes = pl.from_arrow(self._notes_arrow)  # type: ignore[assignment]
        return self._notes  # type: ignore[return-value]

    def long(self) -> pl.DataFrame:
        """One row per (slice, metric): ``slice``, ``metric``, ``value``, ``note``.

        With intervals the columns are ``slice``, ``metric``, ``value``, ``lo``, ``hi``, ``se``,
        ``method``, ``note``. ``note`` says why ``value`` (or its interval) is null and is null
        otherwise.

        >>> import assay, numpy as np
        >>> rep = assay.evaluate({"y": np.array([0, 1]), "p": np.array([0.2, 0.9])},
        ...                      label="y", score="p", metrics=["accuracy", "precision"])
        >>> rep.long().shape
        (2, 4)
        """
        order = pl.DataFrame(
            {"metric": self.metrics, "_m": list(range(len(self.metrics)))},
            schema={"metric": pl.String, "_m": pl.Int64},
        )
        wide = self.table.select("slice", *self.metrics).with_row_index("_s")
        long = wide.unpivot(index=["_s", "slice"], variable_name="metric", value_name="value")
        columns = ["slice", "metric", "value"]
        if self.ci_method is not None:
            parts = {
                "lo": self.table.select("slice", *(f"{m}_lo" for m in self.metrics)),
                "hi": self.table.select("slice", *(f"{m}_hi" for m in self.metrics)),
                "se": pl.DataFrame(
                    {"slice": self.table["slice"],
                     **{f"{m}_se": pl.from_arrow(self._se[m]) for m in self.metrics}}
                ),
            }
            for what, frame in parts.items():
                frame = frame.rename({f"{m}_{what}": m for m in self.metrics})
                frame = frame.with_row_index("_s").unpivot(
                    index=["_s", "slice"], variable_name="metric", value_name=what
                )
                long = long.join(frame.drop("slice"), on=["_s", "metric"], how="left")
            long = long.with_columns(method=pl.lit(self.ci_method, dtype=pl.String))
            columns += ["lo", "hi", "se", "method"]
        notes = self.notes
        if "error_bound" in notes.columns and notes["error_bound"].is_not_null().any():
            # auc="sketch": the guaranteed bound on each approximate value's error.
            columns.append("error_bound")
        return (
            long.join(order, on="metric")
            .join(notes, on=["slice", "metric"], how="left")
            .sort("_s", "_m")
            .select(*columns, "note")
        )

    def to_arrow(self) -> pa.Table:
        """The table as a ``pyarrow.Table``."""
        return self._arrow

    def to_dict(self) -> dict[str, list[Any]]:
        """The table as a dict of column lists (built from the Arrow data, without polars)."""
        return arrow_to_dict(self._arrow)

    def to_json(self) -> str:
        """The table as JSON: ``{"columns": [...], "rows": [{...}, ...], "dropped": k}`` (built
        from the Arrow data, without polars)."""
        return arrow_to_json(self._arrow, dropped=self.dropped)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._arrow.__arrow_c_stream__(requested_schema)

    def __repr__(self) -> str:
        return (f"assay.Report ({self.rows} rows, {self.dropped} dropped)\n"
                f"{escape_frame(self.table)}")

    def _repr_html_(self) -> str:
        return escape_frame(self.table)._repr_html_()
