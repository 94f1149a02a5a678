"""The result of :func:`assay.evaluate`."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pyarrow as pa


class Report:
    """Sliced metrics: one row per slice in :attr:`table`, long form in :meth:`long`.

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
    """

    def __init__(
        self, table: pa.RecordBatch, notes: pa.RecordBatch, metrics: list[str], rows: int,
        dropped: int,
    ) -> None:
        self._arrow = pa.Table.from_batches([table])
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

        ``note`` says why ``value`` is null and is null otherwise.

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
        return (
            wide.unpivot(index=["_s", "slice"], variable_name="metric", value_name="value")
            .join(order, on="metric")
            .join(self.notes, on=["slice", "metric"], how="left")
            .sort("_s", "_m")
            .select("slice", "metric", "value", "note")
        )

    def to_arrow(self) -> pa.Table:
        """The table as a ``pyarrow.Table``."""
        return self._arrow

    def to_dict(self) -> dict[str, list[Any]]:
        """The table as a dict of column lists."""
        return self.table.to_dict(as_series=False)

    def to_json(self) -> str:
        """The table as JSON: ``{"columns": [...], "rows": [{...}, ...], "dropped": k}``."""
        return json.dumps(
            {"columns": self.table.columns, "rows": self.table.to_dicts(), "dropped": self.dropped}
        )

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._arrow.__arrow_c_stream__(requested_schema)

    def __repr__(self) -> str:
        return f"assay.Report ({self.rows} rows, {self.dropped} dropped)\n{self.table}"

    def _repr_html_(self) -> str:
        return self.table._repr_html_()
