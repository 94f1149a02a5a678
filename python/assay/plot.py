"""Plots of assay's results (optional: needs matplotlib, ``pip install "assay[plot]"``).

- :func:`reliability`: the reliability diagram of :func:`assay.reliability`'s table, with the
  histogram of the scores under it.
- :func:`slices`: a forest plot of one metric of a :class:`assay.Report`, its interval per
  slice, sorted, with ``overall`` as the reference line.
- :func:`comparison`: a forest plot of the paired differences of an :class:`assay.Comparison`,
  its interval per slice, colored by verdict.

matplotlib is imported only when a plot is drawn, and figures are built with
:class:`matplotlib.figure.Figure`, not pyplot, so no GUI backend or global state is touched: a
plot can be drawn in a server, a test or a notebook alike. Use ``fig.savefig(...)`` to write it,
or let a notebook display the returned figure. Every plot takes ``ax=`` to draw on an axis of
your own figure instead.

The forest plots' artists carry a ``gid`` (``"points"``, ``"intervals"``, ``"overall"``,
``"zero"``) so that tests and styling code can find them:
``[a for a in ax.get_children() if a.get_gid() == "points"]``; a histogram's bars are the
axis' ``patches``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["comparison", "reliability", "slices"]

_MISSING_MATPLOTLIB = 'assay.plot needs matplotlib: pip install "assay[plot]"'

_RELIABILITY_COLUMNS = (
    "slice", "bin", "lower", "upper", "count", "weight_sum",
    "mean_score", "frac_positive", "frac_lo", "frac_hi",
)
_COMPARISON_COLUMNS = ("slice", "metric", "model", "delta", "delta_lo", "delta_hi", "verdict")

# Verdict colors of plot.comparison: red for worse, green for better, neutral otherwise.
_VERDICT_COLORS = {
    "worse": "#c0392b",
    "better": "#1e8449",
    "higher": "#2e6da4",
    "lower": "#d68910",
    "no significant difference": "0.55",
}


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(_MISSING_MATPLOTLIB) from e
    return Figure


def _text(value: Any) -> str:
    """User data (a slice label) as matplotlib text: an unescaped ``$`` would start mathtext."""
    return str(value).replace("$", r"\$")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgumentError(
            f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _frame(obj: Any, what: str, hint: str) -> pl.DataFrame:
    """``obj`` as a polars frame (anything ``polars.DataFrame`` accepts: arrow, dicts...)."""
    if isinstance(obj, pl.DataFrame):
        return obj
    try:
        return pl.DataFrame(obj)
    except Exception as e:  # polars raises several types for unusable input
        raise InvalidArgumentError(
            f"{what} must be {hint} (a polars DataFrame or anything polars.DataFrame accepts), "
            f"got {type(obj).__name__}: {e}"
        ) from e


def _require(table: pl.DataFrame, columns: tuple[str, ...], what: str, hint: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InvalidArgumentError(
            f"{what} is missing the column(s) {', '.join(map(repr, missing))}; pass {hint}",
            missing[0],
        )


def _as_float(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Float64).fill_null(np.nan).to_numpy()


def _axes_figure(ax: Axes) -> Figure:
    root = ax.get_figure(root=True)
    if root is None:
        raise InvalidArgumentError("ax must belong to a figure")
    return root  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# reliability


def _reliability_frame(rel: Any) -> pl.DataFrame:
    """``rel`` as a polars frame, checked to hold every column of a reliability table."""
    hint = "the table returned by assay.reliability"
    rel = _frame(rel, "rel", hint)
    missing = [c for c in _RELIABILITY_COLUMNS if c not in rel.columns]
    if missing:
        raise InvalidArgumentError(
            f"rel is missing the reliability column(s) {', '.join(map(repr, missing))}; "
            f"pass {hint}",
            missing[0],
        )
    if rel.height == 0:
        raise InvalidArgumentError("rel is empty: there are no bins to plot")
    return rel


def _shared_edges(table: pl.DataFrame, n_slices: int) -> bool:
    """Whether every slice has the same bins with the same edges (uniform bins do; quantile
    bins are each slice's own quantiles)."""
    per_bin = table.group_by("bin").agg(
        pl.col("lower").n_unique().alias("lowers"),
        pl.col("upper").n_unique().alias("uppers"),
        pl.col("slice").n_unique().alias("slices"),
    )
    return bool(
        ((per_bin["lowers"] == 1) & (per_bin["uppers"] == 1)
         & (per_bin["slices"] == n_slices)).all()
    )


def _populated_range(table: pl.DataFrame) -> tuple[float, float] | None:
    """The score range covered by the bins that hold rows, padded a little; None if none do."""
    filled = table.filter(pl.col("count").fill_null(0) > 0)
    if filled.height == 0:
        return None
    lo = float(filled["lower"].cast(pl.Float64).min())  # type: ignore[arg-type]
    hi = float(filled["upper"].cast(pl.Float64).max())  # type: ignore[arg-type]
    return _padded(lo, hi, 0.0, 1.0)


def _padded(lo: float, hi: float, floor: float, ceiling: float) -> tuple[float, float]:
    """[lo, hi] widened by 4% of its span (at least 0.01 wide), not past [floor, ceiling]
    unless the data are."""
    span = max(hi - lo, 0.01)
    mid = (lo + hi) / 2.0
    lo, hi = min(lo, mid - span / 2.0), max(hi, mid + span / 2.0)
    pad = 0.04 * span
    return max(lo - pad, min(lo, floor)), min(hi + pad, max(hi, ceiling))


def _x_range(xlim: Any, table: pl.DataFrame) -> tuple[float, float]:
    if isinstance(xlim, str):
        choice = _choice("xlim", xlim, ("full", "auto"))
        if choice == "auto":
            populated = _populated_range(table)
            if populated is not None:
                return populated
        return (0.0, 1.0)
    try:
        lo, hi = (float(v) for v in xlim)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(
            f"xlim must be 'full', 'auto' or a pair (low, high), got {xlim!r}") from e
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InvalidArgumentError(f"xlim must be finite with low < high, got {xlim!r}")
    return lo, hi


def _y_range(x_range: tuple[float, float], table: pl.DataFrame,
             show_intervals: bool) -> tuple[float, float]:
    """The diagram's y range for the x range shown: the same range (the diagonal stays in
    view) widened to the points of the bins in it, and their intervals when drawn."""
    if x_range == (0.0, 1.0):
        return (-0.02, 1.02)
    lo, hi = x_range
    inside = table.filter(
        (pl.col("count").fill_null(0) > 0) & pl.col("mean_score").is_between(lo, hi))
    columns = ["frac_lo", "frac_hi"] if show_intervals else ["frac_positive"]
    values = np.concatenate([_as_float(inside[c]) for c in columns] + [np.array([lo, hi])])
    values = values[~np.isnan(values)]
    y_lo, y_hi = _padded(float(values.min()), float(values.max()), -0.02, 1.02)
    return max(y_lo, -0.02), min(y_hi, 1.02)


def _heights(part: pl.DataFrame, histogram: str) -> np.ndarray:
    if histogram == "count":
        return _as_float(part["count"].fill_null(0))
    mass = np.nan_to_num(_as_float(part["weight_sum"]))
    total = mass.sum()
    return mass / total if total > 0 else np.zeros_like(mass)


def _bars(ax: Axes, left: np.ndarray, width: np.ndarray, height: np.ndarray, color: Any,
          label: str) -> None:
    """Bars from ``left`` of ``width``; a bin of zero width holding rows (quantile bins over
    tied scores: all its rows have one score) is a spike: a vertical line at that score."""
    wide = width > 0
    ax.bar(left[wide], height[wide], width=width[wide], align="edge", color=color,
           alpha=0.85, edgecolor="white", linewidth=0.4, label=label)
    spike = ~wide & (height > 0)
    if spike.any():
        lines = ax.vlines(left[spike], 0.0, height[spike], colors=[color], linewidth=2.0)
        lines.set_gid("spikes")


def reliability(
    rel: Any,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    show_counts: bool = True,
    show_intervals: bool = True,
    layout: Literal["auto", "side_by_side", "facet"] = "auto",
    histogram: Literal["count", "fraction"] = "count",
    xlim: Literal["full", "auto"] | tuple[float, float] = "full",
) -> Figure:
    """A reliability diagram of a table from :func:`assay.reliability`.

    The top panel plots, for every slice, the fraction of positives of each bin against the
    bin's mean predicted probability, one line with markers per slice, next to the diagonal of
    perfect calibration (the slice ``overall`` in black, the others in matplotlib's color
    cycle); a point below the diagonal means the model's probability was too high there, above
    it too low. Empty bins are skipped.

    Under it is the histogram of the scores: one bar per bin, from the bin's ``lower`` to its
    ``upper`` edge, so quantile bins are drawn at their true, unequal widths (equal-mass bins
    have equal counts: narrow bars are where scores are dense). A bin of zero width (quantile
    bins over many tied scores) is drawn as a spike at its score. Slices never overlap: with
    ``layout="side_by_side"`` each bin is split between the slices, their bars next to each
    other in table order; with ``layout="facet"`` every slice gets its own histogram panel at
    its own bin edges, stacked under the diagram on the same x axis.

    Parameters
    ----------
    rel : polars.DataFrame
        The table returned by :func:`assay.reliability`, or anything ``polars.DataFrame``
        accepts holding the same columns (``slice``, ``bin``, ``lower``, ``upper``, ``count``,
        ``weight_sum``, ``mean_score``, ``frac_positive``, ``frac_lo``, ``frac_hi``; see
        ``docs/calibration.md``). Slices are drawn in the table's order.
    ax : matplotlib.axes.Axes, optional
        Draw the diagram on this axis only (no histogram) and return its figure. By default a
        new figure is made: 7 x 6 inches with both panels side by side, taller when faceted.
    title : str, optional
        Title of the diagram.
    show_counts : bool, default True
        Draw the histogram under the diagram. Ignored when ``ax`` is given.
    show_intervals : bool, default True
        Draw each bin's Wilson interval of the fraction of positives (``frac_lo`` to
        ``frac_hi``) as a vertical bar.
    layout : {"auto", "side_by_side", "facet"}, default "auto"
        How the slices share the histogram. ``"side_by_side"`` needs every slice to have the
        same bin edges (uniform bins; a single slice); ``"facet"`` works with any bins;
        ``"auto"`` picks side by side when the edges are shared and facets otherwise (quantile
        bins of several slices).
    histogram : {"count", "fraction"}, default "count"
        Bar heights: each bin's ``count`` (rows), or its share of its slice's total
        ``weight_sum`` (its share of rows when unweighted), which puts slices of different
        sizes on one scale.
    xlim : {"full", "auto"} or (float, float), default "full"
        The score range shown: ``"full"`` is [0, 1]; ``"auto"`` zooms to the bins that hold
        rows (in any slice), padded by 4% of that range, for models whose scores stay in a
        corner, e.g. at a low base rate (pair it with ``strategy="quantile"`` or more bins
        for detail there); a pair sets the range. When zoomed, the diagram's y axis covers the
        same range and the points (with their intervals) of the bins in view.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: the diagram's axes first, then the histogram's (one, or one per slice
        when faceted); only the diagram without the histogram; or the figure of ``ax``.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    assay.errors.InvalidArgumentError
        ``rel`` is not a reliability table (a column is missing) or has no rows; an unknown
        ``layout``, ``histogram`` or ``xlim``; ``layout="side_by_side"`` for slices whose bin
        edges differ.

    Examples
    --------
    >>> import assay
    >>> from assay import plot
    >>> from assay.demo import make_data
    >>> df = make_data(20_000, seed=0)
    >>> rel = assay.reliability(df, label="churned", score="p_churn", n_bins=10,
    ...                         slices=["device"])
    >>> fig = plot.reliability(rel, title="churn model")   # slices side by side in each bin
    >>> len(fig.axes)
    2

    Quantile bins, one histogram per slice, zoomed to the scores the model gives:

    >>> rel = assay.reliability(df, label="churned", score="p_churn", n_bins=10,
    ...                         strategy="quantile", slices=["device"])
    >>> fig = plot.reliability(rel, layout="facet", xlim="auto")
    >>> len(fig.axes)   # the diagram and overall, desktop, mobile, tablet
    5
    >>> fig.savefig("reliability.png", dpi=100)  # doctest: +SKIP

    On an existing axis, e.g. one panel of a grid:

    >>> from matplotlib.figure import Figure
    >>> fig = Figure(figsize=(10, 4))
    >>> left, right = fig.subplots(1, 2)
    >>> _ = plot.reliability(rel, ax=left, title="train")
    """
    figure_class = _figure_class()
    table = _reliability_frame(rel)
    layout = _choice("layout", layout, ("auto", "side_by_side", "facet"))  # type: ignore[assignment]
    histogram = _choice("histogram", histogram, ("count", "fraction"))  # type: ignore[assignment]
    x_range = _x_range(xlim, table)
    y_range = _y_range(x_range, table, show_intervals)
    # The slices in the table's order ("overall" first), each one's bins in order.
    parts = [part.sort("bin") for part in table.partition_by("slice", maintain_order=True)]

    draw_histogram = ax is None and show_counts
    if draw_histogram and layout != "facet":
        shared = _shared_edges(table, len(parts))
        if layout == "side_by_side" and not shared:
            raise InvalidArgumentError(
                "layout='side_by_side' needs the same bin edges in every slice, but these "
                "slices' edges differ (quantile bins are each slice's own quantiles); use "
                "layout='facet' (or 'auto')")
        layout = "side_by_side" if shared else "facet"  # type: ignore[assignment]

    hists: list[Axes] = []
    if ax is None:
        if not draw_histogram:
            fig = figure_class(figsize=(7.0, 5.0), layout="constrained")
            diagram = fig.subplots()
        elif layout == "side_by_side":
            fig = figure_class(figsize=(7.0, 6.0), layout="constrained")
            diagram, hist = fig.subplots(2, 1, sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
            hists = [hist]
        else:
            k = len(parts)
            fig = figure_class(figsize=(7.0, 5.0 + 0.9 * k), layout="constrained")
            axes = fig.subplots(1 + k, 1, sharex=True, squeeze=False,
                                gridspec_kw={"height_ratios": [4.2] + [0.9] * k})[:, 0]
            diagram, hists = axes[0], list(axes[1:])
    else:
        diagram = ax
        fig = _axes_figure(ax)

    diagram.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="0.55", linewidth=1.0,
                 label="perfectly calibrated")
    colors = []
    for part in parts:
        name = str(part["slice"][0])
        x = _as_float(part["mean_score"])
        y = _as_float(part["frac_positive"])
        filled = (part["count"].fill_null(0).to_numpy() > 0) & ~np.isnan(x) & ~np.isnan(y)
        # The overall slice is the reference the others are read against: drawn in black.
        style: dict[str, Any] = {"color": "0.1"} if name == "overall" else {}
        (line,) = diagram.plot(x[filled], y[filled], marker="o", markersize=4, linewidth=1.5,
                               label=_text(name), **style)
        color = line.get_color()
        colors.append(color)
        if show_intervals:
            lo = _as_float(part["frac_lo"])
            hi = _as_float(part["frac_hi"])
            ok = filled & ~np.isnan(lo) & ~np.isnan(hi)
            diagram.vlines(x[ok], lo[ok], hi[ok], colors=color, alpha=0.5, linewidth=2.0)

    diagram.set_xlim(*x_range)
    diagram.set_ylim(*y_range)
    diagram.set_ylabel("fraction of positives")
    diagram.grid(True, linewidth=0.5, alpha=0.4)
    diagram.legend(loc="upper left", fontsize="small", frameon=False)
    if title is not None:
        diagram.set_title(title)

    if not hists:
        diagram.set_xlabel("mean predicted probability")
        return fig

    y_label = "rows" if histogram == "count" else "fraction of rows"
    k = len(parts)
    for i, (part, color) in enumerate(zip(parts, colors, strict=True)):
        lower = _as_float(part["lower"])
        width = _as_float(part["upper"]) - lower
        height = _heights(part, histogram)
        name = _text(part["slice"][0])
        if layout == "side_by_side":
            _bars(hists[0], lower + i * width / k, width / k, height, color, name)
        else:
            hist = hists[i]
            _bars(hist, lower, width, height, color, name)
            rows = int(part["count"].fill_null(0).sum())
            hist.text(0.995, 0.95, f"{name} (n={rows:,})", transform=hist.transAxes,
                      ha="right", va="top", fontsize="small", color=color)
            # Headroom for the label: equal-mass bins are all of the same height.
            top = float(height.max()) if len(height) else 0.0
            hist.set_ylim(0.0, top * 1.4 if top > 0 else 1.0)
            hist.tick_params(axis="y", labelsize="small")
            hist.locator_params(axis="y", nbins=3)
    for hist in hists:
        hist.set_xlim(*x_range)
        if layout == "side_by_side":
            hist.set_ylim(bottom=0.0)
        hist.grid(True, axis="y", linewidth=0.5, alpha=0.4)
    if layout == "side_by_side":
        hists[0].set_ylabel(y_label)
    else:
        # Once, by the middle panel: the panels are too short for a label each.
        hists[len(hists) // 2].set_ylabel(y_label)
    hists[-1].set_xlabel("mean predicted probability")
    return fig


# --------------------------------------------------------------------------------------------
# forest plots: slices and comparison


def _higher_is_better(metric: str) -> bool | None:
    """The metric's direction from the engine's registry (None: no direction, or unknown)."""
    from . import _native

    try:
        return _native.higher_is_better(metric)  # type: ignore[no-any-return]
    except Exception:  # a metric the registry does not know (e.g. from a hand-made table)
        return None


def _worst_first(rows: pl.DataFrame, column: str, metric: str, order: str) -> tuple[
        pl.DataFrame, str]:
    """``rows`` in the plot's top-to-bottom order, and how the kept rows were chosen."""
    if order == "table":
        return rows, "first"
    higher = _higher_is_better(metric)
    # Worst at the top: the lowest value where higher is better, the highest where lower is;
    # ascending for a metric with no direction. The sort is stable: ties keep table order.
    descending = higher is False
    which = "worst" if higher is not None else ("lowest" if not descending else "highest")
    return rows.sort(column, descending=descending, maintain_order=True), which


def _forest_axes(ax: Axes | None, n_rows: int) -> tuple[Figure, Axes]:
    if ax is not None:
        return _axes_figure(ax), ax
    fig = _figure_class()(figsize=(7.0, max(2.6, 1.3 + 0.3 * n_rows)), layout="constrained")
    return fig, fig.subplots()


def _forest(ax: Axes, labels: list[str], value: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            colors: list[Any]) -> None:
    """One row per label, top to bottom: a point at ``value`` and a line from ``lo`` to
    ``hi`` (where both are known)."""
    y = np.arange(len(labels), dtype=np.float64)
    ok = ~np.isnan(lo) & ~np.isnan(hi)
    if ok.any():
        lines = ax.hlines(y[ok], lo[ok], hi[ok], colors=[c for c, k in zip(colors, ok,
                                                                          strict=True) if k],
                          linewidth=2.0, alpha=0.8)
        lines.set_gid("intervals")
    ax.set_yticks(y, labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # the first row at the top
    ax.grid(True, axis="x", linewidth=0.5, alpha=0.4)
    ax.tick_params(axis="y", length=0)


def _reference(ax: Axes, value: float, lo: float, hi: float, label: str) -> None:
    """The overall value as a dashed vertical line, its interval (if any) as a band."""
    if np.isnan(value):
        return
    line = ax.axvline(value, color="0.1", linestyle="--", linewidth=1.0, label=label)
    line.set_gid("overall")
    if not (np.isnan(lo) or np.isnan(hi)):
        band = ax.axvspan(lo, hi, color="0.1", alpha=0.08, linewidth=0)
        band.set_gid("overall_interval")


def _interval_text(value: float, lo: float, hi: float) -> str:
    if np.isnan(lo) or np.isnan(hi):
        return f"{value:.3g}"
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]"


def _legend_and_title(ax: Axes, title: str | None) -> None:
    """The legend in a row above the axis (over no row of data), the title above it."""
    handles, labels = ax.get_legend_handles_labels()
    rows = 0
    if handles:
        ncols = min(len(handles), 3)
        rows = -(-len(handles) // ncols)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=ncols, frameon=False,
                  fontsize="small", borderaxespad=0.2, handletextpad=0.4, columnspacing=1.2)
    if title is not None:
        ax.set_title(title, pad=6.0 + 13.0 * rows)


def _report_rows(report: Any, metric: str) -> tuple[pl.DataFrame, bool]:
    """``slice``, ``value``, ``lo``, ``hi`` and ``n`` (null where unknown) of ``metric`` from a
    Report, its wide ``table`` or its ``long()`` frame; and whether there are interval
    columns."""
    from ._compare import Comparison
    from .report import Report

    if isinstance(report, Comparison):
        raise InvalidArgumentError(
            "plot.slices draws a Report; for a Comparison use plot.comparison(cmp, metric)")
    if not isinstance(metric, str):
        raise InvalidArgumentError(f"metric must be a metric name, got {metric!r}")
    hint = "a Report, its .table or its .long()"
    known: list[str]
    if isinstance(report, Report):
        table, known = report.table, list(report.metrics)
    else:
        table = _frame(report, "report", hint)
        _require(table, ("slice",), "report", hint)
        if {"metric", "value"} <= set(table.columns):
            known = table["metric"].unique(maintain_order=True).to_list()
        else:
            suffixed = {c for c in table.columns if c.endswith(("_lo", "_hi"))}
            known = [c for c, t in table.schema.items() if t.is_float() and c not in suffixed
                     and c not in ("n", "weight_sum", "lower", "upper")]
    if metric not in known:
        raise InvalidArgumentError(
            f"metric {metric!r} is not in the report; its metrics are "
            f"{', '.join(map(repr, known)) or 'none'}", metric)
    if {"metric", "value"} <= set(table.columns):
        long = table.filter(pl.col("metric") == metric)
        intervals = {"lo", "hi"} <= set(long.columns)
        rows = long.select(
            pl.col("slice").cast(pl.String),
            pl.col("value").cast(pl.Float64),
            (pl.col("lo") if intervals else pl.lit(None)).cast(pl.Float64).alias("lo"),
            (pl.col("hi") if intervals else pl.lit(None)).cast(pl.Float64).alias("hi"),
            pl.lit(None, pl.Int64).alias("n"),
        )
        return rows, intervals
    intervals = {f"{metric}_lo", f"{metric}_hi"} <= set(table.columns)
    rows = table.select(
        pl.col("slice").cast(pl.String),
        pl.col(metric).cast(pl.Float64).alias("value"),
        (pl.col(f"{metric}_lo") if intervals else pl.lit(None)).cast(pl.Float64).alias("lo"),
        (pl.col(f"{metric}_hi") if intervals else pl.lit(None)).cast(pl.Float64).alias("hi"),
        (pl.col("n") if "n" in table.columns else pl.lit(None)).cast(pl.Int64).alias("n"),
    )
    return rows, intervals


def _split_overall(rows: pl.DataFrame, what: str) -> tuple[dict[str, Any] | None,
                                                          pl.DataFrame, int]:
    """The overall row (if any), the other rows with a value, and how many had none."""
    is_overall = pl.col("slice") == "overall"
    overall = rows.filter(is_overall)
    rest = rows.filter(~is_overall)
    if rest.height == 0:
        raise InvalidArgumentError(
            f"{what} has no slice besides overall to plot; evaluate with slices=[...]")
    valued = rest.filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
    if valued.height == 0:
        raise InvalidArgumentError(
            f"no slice of {what} has a value (the notes say why each one is null)")
    return (overall.row(0, named=True) if overall.height else None,
            valued, rest.height - valued.height)


def _footnotes(shown: int, total: int, which: str, no_value: int, no_intervals: str | None
               ) -> list[str]:
    notes = []
    if shown < total:
        notes.append(f"showing the {which} {shown} of {total} slices")
    if no_value:
        notes.append(f"{no_value} slice{'s' if no_value > 1 else ''} without a value left out")
    if no_intervals:
        notes.append(no_intervals)
    return notes


def _max_slices(max_slices: Any) -> int | None:
    if max_slices is None:
        return None
    if isinstance(max_slices, bool) or not isinstance(max_slices, int | np.integer) \
            or max_slices < 1:
        raise InvalidArgumentError(
            f"max_slices must be a positive integer or None, got {max_slices!r}")
    return int(max_slices)


def slices(
    report: Any,
    metric: str,
    *,
    order: Literal["value", "table"] = "value",
    max_slices: int | None = 40,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A forest plot of one metric across the slices of a :class:`assay.Report`.

    One row per slice (``overall`` excluded): the metric's value as a point and its interval
    (``<metric>_lo`` to ``<metric>_hi``) as a horizontal line. ``overall`` is the reference: a
    dashed vertical line at its value, with its interval as a shaded band. A slice whose
    interval lies wholly on one side of that line differs from overall beyond its own
    sampling noise (its interval is for the slice alone, not a corrected test over every
    slice; see ``Report.disparity`` and ``assay.compare`` for those).

    Parameters
    ----------
    report : Report or polars.DataFrame
        A :class:`assay.Report`, its ``.table`` (``slice``, ``n``, ``<metric>``,
        ``<metric>_lo``, ``<metric>_hi``) or its ``.long()`` frame (``slice``, ``metric``,
        ``value``, ``lo``, ``hi``), or anything ``polars.DataFrame`` accepts with those
        columns. Filter the table first to plot some slice specs only.
    metric : str
        The metric to plot, one of the report's metrics.
    order : {"value", "table"}, default "value"
        ``"value"``: sorted by value, the worst slice at the top (the lowest where higher is
        better, e.g. ``roc_auc``; the highest where lower is, e.g. ``log_loss``; lowest first
        for a metric with no direction, e.g. ``base_rate``). ``"table"``: the table's order.
    max_slices : int or None, default 40
        Draw at most this many slices, the first in ``order`` (the worst by default), and say
        so under the axis; ``None`` draws all.
    ax : matplotlib.axes.Axes, optional
        Draw on this axis and return its figure. By default a new figure 7 inches wide and
        0.3 inch per slice tall.
    title : str, optional
        Title of the plot.

    Returns
    -------
    matplotlib.figure.Figure
        Rows are y = 0, 1, ... from the top, labelled ``slice (n=...)`` (``n`` when the table
        has it). Slices whose value is null are left out; a report without intervals (no
        ``bootstrap`` or ``ci_method``) is drawn as points only. Both are said under the x axis.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    assay.errors.InvalidArgumentError
        ``metric`` is not in the report; the report is not a report's table; it has no slice
        besides ``overall`` or no slice with a value; a bad ``order`` or ``max_slices``.

    Examples
    --------
    >>> import assay
    >>> from assay import plot
    >>> from assay.demo import make_data
    >>> rep = assay.evaluate(make_data(20_000, seed=0), label="churned", score="p_churn",
    ...                      slices=["country", "device"], bootstrap=100)
    >>> fig = plot.slices(rep, "roc_auc", title="ROC-AUC by slice")
    >>> [t.get_text().split(" ")[0] for t in fig.axes[0].get_yticklabels()][:2]  # worst first
    ['device=tablet', 'country=NG']
    >>> fig.savefig("slices.png", dpi=100)  # doctest: +SKIP
    """
    order = _choice("order", order, ("value", "table"))  # type: ignore[assignment]
    limit = _max_slices(max_slices)
    rows, has_intervals = _report_rows(report, metric)
    overall, rest, no_value = _split_overall(rows, "the report")
    rest, which = _worst_first(rest, "value", metric, order)
    shown = rest if limit is None else rest.head(limit)

    fig, ax = _forest_axes(ax, shown.height)
    names = shown["slice"].to_list()
    n = shown["n"].to_list()
    labels = [_text(s) if k is None else f"{_text(s)} (n={k:,})"
              for s, k in zip(names, n, strict=True)]
    value, lo, hi = (_as_float(shown[c]) for c in ("value", "lo", "hi"))
    _forest(ax, labels, value, lo, hi, ["C0"] * shown.height)
    points = ax.plot(value, np.arange(shown.height), "o", color="C0", markersize=5)[0]
    points.set_gid("points")
    if overall is not None and overall["value"] is not None:
        o_lo = np.nan if overall["lo"] is None else overall["lo"]
        o_hi = np.nan if overall["hi"] is None else overall["hi"]
        _reference(ax, overall["value"], o_lo, o_hi,
                   f"overall {_interval_text(overall['value'], o_lo, o_hi)}")
    no_intervals = None
    if not has_intervals or np.isnan(lo).all():
        no_intervals = "no intervals in the report (evaluate with bootstrap= or ci_method=)"
    notes = _footnotes(shown.height, rest.height, which, no_value, no_intervals)
    ax.set_xlabel("\n".join([_text(metric), *(f"({note})" for note in notes)]))
    _legend_and_title(ax, title)
    return fig


def _comparison_rows(cmp: Any, metric: str, model: str | None, interval: str
                     ) -> tuple[pl.DataFrame, str, str | None]:
    """``slice``, ``delta``, ``lo``, ``hi``, ``verdict`` of one metric and model; the model;
    the reference (None for a bare table)."""
    from ._compare import Comparison

    hint = "an assay.Comparison or its .table"
    reference: str | None = None
    if isinstance(cmp, Comparison):
        table, reference = cmp.table, cmp.reference
    else:
        table = _frame(cmp, "cmp", hint)
    _require(table, _COMPARISON_COLUMNS, "cmp", hint)
    if interval == "simultaneous":
        _require(table, ("simultaneous_lo", "simultaneous_hi"), "cmp", hint)
    if not isinstance(metric, str):
        raise InvalidArgumentError(f"metric must be a metric name, got {metric!r}")
    metrics = table["metric"].unique(maintain_order=True).to_list()
    if metric not in metrics:
        raise InvalidArgumentError(
            f"metric {metric!r} is not in the comparison; its metrics are "
            f"{', '.join(map(repr, metrics)) or 'none'}", metric)
    models = table["model"].unique(maintain_order=True).to_list()
    if model is None:
        if len(models) != 1:
            raise InvalidArgumentError(
                f"the comparison has several models ({', '.join(map(repr, models))}); "
                "say which one with model=")
        model = str(models[0])
    elif model not in models:
        raise InvalidArgumentError(
            f"model {model!r} is not compared here; the compared models are "
            f"{', '.join(map(repr, models))}")
    lo, hi = ("delta_lo", "delta_hi") if interval == "own" else \
        ("simultaneous_lo", "simultaneous_hi")
    rows = table.filter((pl.col("metric") == metric) & (pl.col("model") == model)).select(
        pl.col("slice").cast(pl.String),
        pl.col("delta").cast(pl.Float64).alias("value"),
        pl.col(lo).cast(pl.Float64).alias("lo"),
        pl.col(hi).cast(pl.Float64).alias("hi"),
        pl.col("verdict").cast(pl.String),
        pl.col("metric").cast(pl.String),
    )
    if interval == "simultaneous":
        # The verdict of the band drawn: the engine's rule (the band on one side of 0) with
        # the metric's direction, whatever correction the comparison carries.
        from ._compare import _directions, _verdicts

        low, high = _as_float(rows["lo"]), _as_float(rows["hi"])
        undefined = np.isnan(_as_float(rows["value"])) | np.isnan(low) | np.isnan(high)
        with np.errstate(invalid="ignore"):
            verdict = _verdicts(low > 0, high < 0, undefined, _directions(rows["metric"]))
        rows = rows.with_columns(verdict=pl.Series("verdict", verdict.to_pylist(), pl.String))
    return rows.drop("metric"), model, reference


def comparison(
    cmp: Any,
    metric: str,
    *,
    model: str | None = None,
    interval: Literal["own", "simultaneous"] = "own",
    order: Literal["value", "table"] = "value",
    max_slices: int | None = 40,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A forest plot of an :class:`assay.Comparison`: ``delta = model - reference`` of one
    metric per slice, with its paired interval, colored by verdict.

    One row per slice (``overall`` excluded): the delta as a point and its interval as a
    horizontal line, red where the model is worse, green where it is better, grey where the
    difference is not significant (blue/orange for ``higher``/``lower`` of a metric with no
    direction, e.g. ``base_rate``). A solid line marks 0 (no difference), and a dashed line
    the overall delta, with its interval as a shaded band.

    Parameters
    ----------
    cmp : Comparison or polars.DataFrame
        The result of :func:`assay.compare`, or its ``.table`` (or anything
        ``polars.DataFrame`` accepts with its columns ``slice``, ``metric``, ``model``,
        ``delta``, ``delta_lo``, ``delta_hi``, ``verdict``; and ``simultaneous_lo``,
        ``simultaneous_hi`` for ``interval="simultaneous"``).
    metric : str
        The metric whose delta is drawn, one of the comparison's metrics.
    model : str, optional
        The compared model (the table's ``model``); needed only when there are several.
    interval : {"own", "simultaneous"}, default "own"
        ``"own"``: each slice's own paired interval (``delta_lo`` to ``delta_hi``) and its
        ``verdict``. ``"simultaneous"``: the max-T bands that hold for every row of the
        comparison at once (``simultaneous_lo`` to ``simultaneous_hi``), colored by the band's
        side of 0: what ``correction="simultaneous"`` gates on.
    order : {"value", "table"}, default "value"
        ``"value"``: sorted by delta, the worst at the top (the most negative where higher is
        better, the most positive where lower is better; ascending for a metric with no
        direction). ``"table"``: the table's order.
    max_slices : int or None, default 40
        Draw at most this many slices, the first in ``order``, and say so under the axis;
        ``None`` draws all.
    ax : matplotlib.axes.Axes, optional
        Draw on this axis and return its figure. By default a new figure 7 inches wide and
        0.3 inch per slice tall.
    title : str, optional
        Title of the plot.

    Returns
    -------
    matplotlib.figure.Figure
        Rows are y = 0, 1, ... from the top, labelled by slice. Slices whose delta is null
        (see the table's ``note``) are left out, and the x label says how many.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    assay.errors.InvalidArgumentError
        ``metric`` or ``model`` is not in the comparison (or ``model`` is missing when several
        models were compared); a column is missing; no slice besides ``overall`` or none with a
        delta; a bad ``interval``, ``order`` or ``max_slices``.

    Examples
    --------
    >>> import assay
    >>> from assay import plot
    >>> from assay.demo import make_comparison_data
    >>> cmp = assay.compare(make_comparison_data(20_000, seed=0), label="churned",
    ...                     scores={"prod": "p_old", "cand": "p_new"},
    ...                     slices=["channel", "country"], metrics=["roc_auc"], bootstrap=100)
    >>> fig = plot.comparison(cmp, "roc_auc")
    >>> fig.axes[0].get_yticklabels()[0].get_text()   # the worst slice at the top
    'channel=partner'
    >>> fig.savefig("comparison.png", dpi=100)  # doctest: +SKIP
    """
    interval = _choice("interval", interval, ("own", "simultaneous"))  # type: ignore[assignment]
    order = _choice("order", order, ("value", "table"))  # type: ignore[assignment]
    limit = _max_slices(max_slices)
    rows, model, reference = _comparison_rows(cmp, metric, model, interval)
    overall, rest, no_value = _split_overall(rows, "the comparison")
    rest, which = _worst_first(rest, "value", metric, order)
    shown = rest if limit is None else rest.head(limit)

    fig, ax = _forest_axes(ax, shown.height)
    verdicts = shown["verdict"].fill_null("no significant difference").to_list()
    colors = [_VERDICT_COLORS.get(v, "0.55") for v in verdicts]
    value, lo, hi = (_as_float(shown[c]) for c in ("value", "lo", "hi"))
    ax.axvline(0.0, color="0.35", linewidth=1.0).set_gid("zero")
    _forest(ax, [_text(s) for s in shown["slice"].to_list()], value, lo, hi, colors)
    y = np.arange(shown.height, dtype=np.float64)
    verdict_array = np.asarray(verdicts, dtype=object)
    present = set(verdicts)
    # One series per verdict, in a fixed order: the legend reads the same on every plot.
    for verdict in [v for v in _VERDICT_COLORS if v in present] + sorted(
            present - set(_VERDICT_COLORS)):
        mine = verdict_array == verdict
        points = ax.plot(value[mine], y[mine], "o", markersize=5, label=verdict,
                         color=_VERDICT_COLORS.get(verdict, "0.55"))[0]
        points.set_gid("points")
    if overall is not None and overall["value"] is not None:
        o_lo = np.nan if overall["lo"] is None else overall["lo"]
        o_hi = np.nan if overall["hi"] is None else overall["hi"]
        _reference(ax, overall["value"], o_lo, o_hi,
                   f"overall {_interval_text(overall['value'], o_lo, o_hi)}")
    against = reference if reference is not None else "reference"
    kind = "paired interval" if interval == "own" else "simultaneous band"
    notes = _footnotes(shown.height, rest.height, which, no_value, None)
    ax.set_xlabel("\n".join([f"{_text(metric)}: {_text(model)} \u2212 {_text(against)} "
                             f"(with its {kind})", *(f"({note})" for note in notes)]))
    _legend_and_title(ax, title)
    return fig
