"""The result of :func:`assay.evaluate`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from ._text import escape_frame
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from ._disparity import Disparity
    from ._provenance import Provenance


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
        ``slice``, ``spec`` (the slice spec of the row: ``"overall"``, ``"country"``,
        ``"country & device"``), one column per slice feature, ``n``, ``weight_sum`` (weighted
        jobs), then one Float64 column per metric (with ``_lo``/``_hi`` columns when there are
        intervals). ``overall`` is the first row. Undefined values are null.

        A feature column is filled only in the rows of the specs that use the feature: in a
        row of spec ``"country"`` the ``device`` column is null because the spec does not use
        it, while in a row of ``"country & device"`` a null ``device`` is the slice of rows
        whose device is null (its label says ``device=null``). ``spec`` tells the two apart.
        A binned feature (``assay.bins("age", ...)``) also gets numeric ``age_lower`` and
        ``age_upper`` columns, the bin's edges (``-inf``/``inf`` at the open ends; the label
        in ``age`` says which ends are closed).
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
    provenance : Provenance or None
        What produced the report: the spec, assay's version, when, the input's fingerprint
        and the git commit (see :class:`assay.Provenance`); kept by :meth:`save`.
    """

    provenance: Provenance | None = None

    def __init__(
        self, table: pa.RecordBatch, notes: pa.RecordBatch, metrics: list[str], rows: int,
        dropped: int, ci_method: str | None = None, layout: pa.RecordBatch | None = None,
        specs: Sequence[tuple[tuple[Any, ...], str | None]] = (), level: float | None = None,
        tables: Sequence[tuple[str, pa.RecordBatch]] | None = (),
    ) -> None:
        self.ci_method = ci_method
        # A task family's own tables (multiclass: per_class, confusion), by name; None for a
        # compared model's report, whose tables the comparison does not keep.
        self._tables = None if tables is None else dict(tables)
        # The engine's layout batch: each row's slice spec (0 = overall) and, with bootstrap
        # replicates, every metric's replicate values (for summaries across slices); the
        # job's specs as (features, the label of a found slice or None).
        self._layout = layout
        self._specs = [(tuple(f), only) for f, only in specs]
        self._level = level
        full = _with_spec_columns(pa.Table.from_batches([table]), layout, self._specs)
        # The wide table shows m, m_lo, m_hi; standard errors live in long().
        self._se = {m: full.column(f"{m}_se") for m in metrics} if ci_method else {}
        self._arrow = full.drop_columns([f"{m}_se" for m in metrics]) if ci_method else full
        self._notes_arrow = notes
        self._table: pl.DataFrame | None = None
        self._notes: pl.DataFrame | None = None
        self.metrics = list(metrics)
        self.rows = int(rows)
        self.dropped = int(dropped)

    def _family_table(self, name: str, method: str) -> pl.DataFrame:
        if self._tables is None:
            raise InvalidArgumentError(
                f"Report.{method}() of a comparison is kept for the reference model only; "
                "evaluate this model on its own (assay.evaluate) for its table")
        if name not in self._tables:
            raise InvalidArgumentError(
                f"Report.{method}() is a table of task='multiclass' reports; this report has "
                "no classes")
        return pl.from_arrow(self._tables[name])  # type: ignore[return-value]

    def per_class(self) -> pl.DataFrame:
        """One row per (slice, class) of a ``task="multiclass"`` report, every class of
        every reported slice: ``slice``, ``class``, ``support`` (rows whose label is the
        class), ``weight_sum`` (their weight), ``predicted_weight`` (weight of the rows whose
        argmax is the class), ``precision``, ``recall`` and ``f1`` (one-vs-rest at the
        argmax), ``roc_auc`` (one-vs-rest, when the job computes a multiclass ROC-AUC) and
        ``note``. A ratio whose denominator is 0 is null, and ``note`` says why: ``recall``
        and ``f1`` of a class absent from the slice, ``precision`` of a class never predicted
        there (the macro averages of :attr:`table` run over the classes present in the slice
        and count such a precision as 0, as scikit-learn's ``zero_division=0``)."""
        return self._family_table("per_class", "per_class")

    def confusion(self) -> pl.DataFrame:
        """The confusion matrix of every reported slice of a ``task="multiclass"`` report,
        in long form: ``slice``, ``actual``, ``predicted``, ``count`` (rows) and
        ``weight_sum``; only cells with rows are listed (pivot with polars for a matrix)."""
        return self._family_table("confusion", "confusion")

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

    def disparity(self, metric: str, spec: Any, *, min_size: int = 0) -> Disparity:
        """How far ``metric`` spreads across the slices of ``spec`` (the groups), with
        bootstrap intervals: Fairlearn's ``MetricFrame`` summaries, with intervals for every
        one of them.

        The statistics (one row each in the result's ``table``): ``group_min``,
        ``group_max``, ``difference`` (max - min), ``ratio`` (min / max),
        ``difference_to_overall`` (the largest ``|group - overall|``) and
        ``ratio_to_overall`` (the smallest ``group / overall``, a ratio above 1 inverted),
        each with the slices that attain it. Each interval is the percentile interval of the
        statistic recomputed in every bootstrap replicate (every slice saw the same replicate
        weights, so the groups' joint variation is kept), at the report's ``ci``.

        ``metric`` may also name a fairness criterion of a binary model, reported as its
        four ``difference``/``ratio`` statistics: ``"demographic_parity"`` (the
        ``prediction_rate`` across groups), ``"equal_opportunity"`` (``recall``) and
        ``"equalized_odds"`` (the worse of the ``recall`` and ``fpr`` disparities, in every
        replicate too; the ``metric`` column says which one attains it).

        Parameters
        ----------
        metric : str
            A metric of the report, or ``"demographic_parity"``, ``"equal_opportunity"``,
            ``"equalized_odds"`` (which need ``prediction_rate``, ``recall``, ``fpr`` among
            the report's metrics).
        spec : str, tuple of str or Bins
            A slice spec of the report (``"gender"``, ``("gender", "age")``,
            ``assay.bins("age", ...)``); its slices are the groups.
        min_size : int
            Groups with fewer rows are left out (listed in ``excluded``), as are groups
            whose value is null.

        Returns
        -------
        Disparity
            ``table`` (``statistic``, ``metric``, ``value``, ``lo``, ``hi``, ``slices``,
            ``note``), ``groups`` (the groups compared) and ``excluded`` (the groups left
            out, with the reason). Without bootstrap replicates (``bootstrap=0`` or
            ``ci_method="analytic"``) ``lo``/``hi`` are null and ``note`` says why.

        Raises
        ------
        InvalidArgumentError
            An unknown metric or criterion, a criterion whose metrics the report lacks, or a
            spec that is not one of the report's.

        Examples
        --------
        >>> import assay
        >>> from assay.demo import make_data
        >>> df = make_data(20_000, seed=0)
        >>> rep = assay.evaluate(df, label="churned", score="p_churn", slices=["country"],
        ...                      metrics=["prediction_rate", "recall", "fpr"],
        ...                      bootstrap=200, seed=0)
        >>> d = rep.disparity("equalized_odds", spec="country")
        >>> d.table.columns
        ['statistic', 'metric', 'value', 'lo', 'hi', 'slices', 'note']
        >>> d.table["statistic"].to_list()
        ['difference', 'ratio', 'difference_to_overall', 'ratio_to_overall']
        >>> lo, value, hi = d.table.select("lo", "value", "hi").row(0)
        >>> lo <= value <= hi
        True
        """
        from ._disparity import disparity

        return disparity(self, metric, spec, min_size)

    @property
    def _row_specs(self) -> np.ndarray:
        """Each row's slice spec (0 = overall, then the job's specs from 1)."""
        if self._layout is None:
            from .errors import InvalidArgumentError

            raise InvalidArgumentError("this report does not know its slice specs")
        return self._layout.column("spec").to_numpy()

    def _spec_ids(self, spec: tuple[Any, ...]) -> list[int]:
        """The spec numbers (from 1) of ``spec`` (column names and ``Bins``, in any order):
        a ``Bins`` must equal the report's, a name matches a column of either kind. Entries
        with the same features (the slices of a ``discover_slices`` table) are one spec."""
        from .errors import InvalidArgumentError

        def column(f: Any) -> str:
            return f if isinstance(f, str) else f.column

        def show(s: tuple[Any, ...]) -> str:
            return repr(s[0] if len(s) == 1 else s)

        want = sorted(map(column, spec))
        matched: list[tuple[int, tuple[Any, ...]]] = []
        seen: set[tuple[tuple[Any, ...], str | None]] = set()
        for i, (s, only) in enumerate(self._specs):
            if sorted(map(column, s)) != want or not all(
                    f in s for f in spec if not isinstance(f, str)):
                continue
            if (s, only) not in seen:  # the same spec given twice: its slices once
                seen.add((s, only))
                matched.append((i + 1, s))
        if not matched:
            known = ", ".join(show(s) for s in dict.fromkeys(s for s, _ in self._specs))
            raise InvalidArgumentError(
                f"spec {show(spec)} is not a slice spec of this report (its specs: "
                f"{known or 'none'})")
        kinds = {frozenset(map(repr, s)) for _, s in matched}
        if len(kinds) > 1:
            raise InvalidArgumentError(
                f"spec {show(spec)} matches {len(kinds)} slice specs of this report ("
                + ", ".join(show(s) for s in dict.fromkeys(s for _, s in matched))
                + "); pass the assay.bins(...) object of the one meant")
        return [i for i, _ in matched]

    def _has_replicates(self) -> bool:
        return self._layout is not None and len(self._layout.schema) > 1

    def _replicates(self, metric: str) -> np.ndarray:
        """The replicate values of ``metric`` (rows x B, NaN where undefined)."""
        assert self._layout is not None
        col = self._layout.column(metric)
        width = col.type.list_size
        # (.values keeps the slots under null rows, which flatten() would drop.)
        flat = col.values.slice(col.offset * width, len(col) * width)
        out = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), width)
        if col.null_count:
            out[~col.is_valid().to_numpy(zero_copy_only=False)] = np.nan
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the report to ``path`` (Parquet; ``.assay.parquet`` by convention): its
        table as the file's rows, and everything else (intervals' standard errors, notes,
        replicate values, slice specs, family tables, :attr:`provenance`) in the file's
        metadata. :func:`assay.load` reads it back exactly; see docs/saved-runs.md.

        >>> import assay, tempfile, os
        >>> rep = assay.evaluate({"y": [0, 1, 1, 0], "p": [0.2, 0.8, 0.6, 0.3]}, label="y",
        ...                      score="p", metrics=["accuracy"])
        >>> path = rep.save(os.path.join(tempfile.mkdtemp(), "run.assay.parquet"))
        >>> assay.load(path).table.equals(rep.table)
        True
        """
        from ._saved import save

        return save(self, path)

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None,
                metric: str | None = None) -> str | Path:
        """A self-contained HTML page of this result (no network; inline CSS, SVG and a
        little JS; see :mod:`assay.html` and docs/html.md): returned as a string, or written
        to ``path`` (UTF-8) and its path returned. ``metric`` picks the metric its chart
        shows (default ``roc_auc``, else the first with a direction)."""
        from .html import _page

        return _page(self, path, title, metric)

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
        """A compact summary: the counts, the overall row's headline metrics (with their
        intervals), and the first slices; :attr:`table` has every column."""
        return _summary(self)

    def _repr_html_(self) -> str:
        return escape_frame(self.table)._repr_html_()


def _spec_label(feats: Sequence[Any]) -> str:
    """The ``spec`` column's text of a slice spec: its features' columns, joined by ``&``."""
    return " & ".join(f if isinstance(f, str) else f.column for f in feats)


def _with_spec_columns(full: pa.Table, layout: pa.RecordBatch | None,
                       specs: Sequence[tuple[tuple[Any, ...], str | None]]) -> pa.Table:
    """``full`` with the ``spec`` column (after ``slice``) and each binned feature's numeric
    ``<feature>_lower``/``<feature>_upper`` columns (after the feature's), from the engine's
    layout (each row's spec number) and the job's specs. Unchanged without a layout, or when
    it has them already (a loaded run)."""
    import pyarrow.compute as pc

    if layout is None or "spec" in full.column_names or "spec" not in layout.schema.names \
            or full.num_rows != layout.num_rows or "slice" not in full.column_names:
        return full
    labels = np.array(["overall", *(_spec_label(f) for f, _ in specs)], dtype=object)
    index = layout.column("spec").to_numpy(zero_copy_only=False).astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= len(labels)):
        return full
    at = full.column_names.index("slice") + 1
    full = full.add_column(at, "spec", pa.array(labels[index], pa.string()))
    binned = dict.fromkeys(f.column for feats, _ in specs for f in feats
                           if not isinstance(f, str))
    for col in binned:
        names = full.column_names
        lower, upper = f"{col}_lower", f"{col}_upper"
        if col not in names or lower in names or upper in names:
            continue
        text = full.column(col)
        if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
            continue
        parts = pc.extract_regex(
            text, r"^[\[\(](?P<lo>[^,]+), (?P<hi>[^\]\)]+)[\]\)]$")
        edges = [pc.cast(pc.struct_field(parts, k), pa.float64()) for k in ("lo", "hi")]
        i = names.index(col) + 1
        full = full.add_column(i, lower, edges[0]).add_column(i + 1, upper, edges[1])
    return full


# The metrics a summary shows first when the report has them (then the report's first ones).
_HEADLINE = ("roc_auc", "average_precision", "log_loss", "brier", "accuracy", "f1", "ece",
             "rmse", "mae", "r2", "macro_f1", "accuracy_top1", "ndcg@10", "mrr")


def _summary(rep: Report, *, metrics: int = 4, rows: int = 10) -> str:
    """The compact text of :meth:`Report.__repr__`."""
    if rep.ci_method is not None:
        metrics = min(metrics, 3)  # (a value with its interval is three numbers wide)
    shown = [m for m in _HEADLINE if m in rep.metrics][:metrics]
    shown += [m for m in rep.metrics if m not in shown][:max(0, metrics - len(shown))]
    t = rep.table
    n_slices = t.height - 1
    n_specs = len({s for s, _ in rep._specs}) if rep._specs else 0
    head = (f"assay.Report: {rep.rows:,} rows ({rep.dropped:,} dropped), {n_slices:,} slices"
            f"{f' in {n_specs} specs' if n_specs else ''}, {len(rep.metrics)} metrics")
    if rep.ci_method is not None:
        level = f" {rep._level:.0%}" if rep._level is not None else ""
        head += f"; intervals: {rep.ci_method}{level}"
    cells = []
    for m in shown:
        value = pl.col(m).round(4).cast(pl.String).fill_null("null")
        if f"{m}_lo" in t.columns:
            value = pl.col(m).round(3).cast(pl.String).fill_null("null")
            lo = pl.col(f"{m}_lo").round(3).cast(pl.String).fill_null("?")
            hi = pl.col(f"{m}_hi").round(3).cast(pl.String).fill_null("?")
            value = pl.format("{} [{}, {}]", value, lo, hi)
        cells.append(value.alias(m))
    frame = t.head(rows).select("slice", "n", *cells)
    more = [f"{t.height - rows:,} more slices" if t.height > rows else "",
            f"{len(rep.metrics) - len(shown)} more metrics"
            if len(rep.metrics) > len(shown) else ""]
    hint = ", ".join(x for x in more if x)
    tail = f"({hint}: see .table, .long(), .notes)" if hint else \
        "(.table, .long() and .notes have the details)"
    with pl.Config(tbl_rows=rows + 1, tbl_hide_dataframe_shape=True, fmt_str_lengths=48,
                   tbl_hide_column_data_types=True, tbl_width_chars=140):
        body = str(escape_frame(frame))
    return f"{head}\n{body}\n{tail}"
