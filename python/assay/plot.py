"""Plots of assay's tables (optional: needs matplotlib, ``pip install "assay[plot]"``).

matplotlib is imported only when a plot is drawn, and figures are built with
:class:`matplotlib.figure.Figure`, not pyplot, so no GUI backend or global state is touched: a
plot can be drawn in a server, a test or a notebook alike. Use ``fig.savefig(...)`` to write it,
or let a notebook display the returned figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["reliability"]

_MISSING_MATPLOTLIB = 'assay.plot needs matplotlib: pip install "assay[plot]"'

_RELIABILITY_COLUMNS = (
    "slice", "bin", "lower", "upper", "count", "weight_sum",
    "mean_score", "frac_positive", "frac_lo", "frac_hi",
)


def _reliability_frame(rel: Any) -> pl.DataFrame:
    """``rel`` as a polars frame, checked to hold every column of a reliability table."""
    if not isinstance(rel, pl.DataFrame):
        try:
            rel = pl.DataFrame(rel)
        except Exception as e:  # polars raises several types for unusable input
            raise InvalidArgumentError(
                "rel must be the table returned by assay.reliability (a polars DataFrame or "
                f"anything polars.DataFrame accepts), got {type(rel).__name__}: {e}"
            ) from e
    missing = [c for c in _RELIABILITY_COLUMNS if c not in rel.columns]
    if missing:
        raise InvalidArgumentError(
            f"rel is missing the reliability column(s) {', '.join(map(repr, missing))}; "
            "pass the table returned by assay.reliability",
            missing[0],
        )
    if rel.height == 0:
        raise InvalidArgumentError("rel is empty: there are no bins to plot")
    return rel


def _as_float(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Float64).fill_null(np.nan).to_numpy()


def reliability(
    rel: Any,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    show_counts: bool = True,
    show_intervals: bool = True,
) -> Figure:
    """A reliability diagram of a table from :func:`assay.reliability`.

    The top panel plots, for every slice, the fraction of positives of each bin against the
    bin's mean predicted probability, one line with markers per slice, next to the diagonal of
    perfect calibration (the slice ``overall`` in black, the others in matplotlib's color
    cycle); a point below the diagonal means the model's probability was too high there, above
    it too low. Empty bins are skipped. The bottom panel is the histogram of the scores: each
    bin's share of its slice's total weight (its share of rows when unweighted), the slices side
    by side within each bin.

    Parameters
    ----------
    rel : polars.DataFrame
        The table returned by :func:`assay.reliability`, or anything ``polars.DataFrame``
        accepts holding the same columns (``slice``, ``bin``, ``lower``, ``upper``, ``count``,
        ``weight_sum``, ``mean_score``, ``frac_positive``, ``frac_lo``, ``frac_hi``; see
        ``docs/calibration.md``). Slices are drawn in the table's order.
    ax : matplotlib.axes.Axes, optional
        Draw the diagram on this axis only (no histogram) and return its figure. By default a
        new 7 x 6 inch figure with both panels is made.
    title : str, optional
        Title of the diagram.
    show_counts : bool, default True
        Draw the histogram panel under the diagram. Ignored when ``ax`` is given.
    show_intervals : bool, default True
        Draw each bin's Wilson interval of the fraction of positives (``frac_lo`` to
        ``frac_hi``) as a vertical bar.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: two axes (diagram, histogram), one without the histogram, or the figure of
        ``ax``.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    assay.errors.InvalidArgumentError
        ``rel`` is not a reliability table (a column is missing) or has no rows.

    Examples
    --------
    >>> import assay
    >>> from assay import plot
    >>> rel = assay.reliability(df, label="y", score="p", slices=["segment"])  # doctest: +SKIP
    >>> fig = plot.reliability(rel, title="churn model")  # doctest: +SKIP
    >>> fig.savefig("reliability.png", dpi=100)  # doctest: +SKIP

    On an existing axis, e.g. one panel of a grid:

    >>> from matplotlib.figure import Figure  # doctest: +SKIP
    >>> fig = Figure(figsize=(10, 4))  # doctest: +SKIP
    >>> left, right = fig.subplots(1, 2)  # doctest: +SKIP
    >>> plot.reliability(rel_train, ax=left, title="train")  # doctest: +SKIP
    >>> plot.reliability(rel_test, ax=right, title="test")  # doctest: +SKIP
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(_MISSING_MATPLOTLIB) from e

    table = _reliability_frame(rel)
    # The slices in the table's order ("overall" first), each one's bins in order.
    slices = [part.sort("bin") for part in table.partition_by("slice", maintain_order=True)]

    hist: Axes | None = None
    if ax is None:
        fig = Figure(figsize=(7.0, 6.0), layout="constrained")
        if show_counts:
            diagram, hist = fig.subplots(
                2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
            )
        else:
            diagram = fig.subplots()
    else:
        diagram = ax
        root = ax.get_figure(root=True)
        if root is None:
            raise InvalidArgumentError("ax must belong to a figure")
        fig = root

    diagram.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="0.55", linewidth=1.0,
                 label="perfectly calibrated")
    colors = []
    for part in slices:
        name = str(part["slice"][0])
        x = _as_float(part["mean_score"])
        y = _as_float(part["frac_positive"])
        filled = (part["count"].fill_null(0).to_numpy() > 0) & ~np.isnan(x) & ~np.isnan(y)
        # The overall slice is the reference the others are read against: drawn in black.
        style = {"color": "0.1"} if name == "overall" else {}
        (line,) = diagram.plot(x[filled], y[filled], marker="o", markersize=4, linewidth=1.5,
                               label=name, **style)
        color = line.get_color()
        colors.append(color)
        if show_intervals:
            lo = _as_float(part["frac_lo"])
            hi = _as_float(part["frac_hi"])
            ok = filled & ~np.isnan(lo) & ~np.isnan(hi)
            diagram.vlines(x[ok], lo[ok], hi[ok], colors=color, alpha=0.5, linewidth=2.0)

    diagram.set_xlim(0.0, 1.0)
    diagram.set_ylim(-0.02, 1.02)
    diagram.set_ylabel("fraction of positives")
    diagram.grid(True, linewidth=0.5, alpha=0.4)
    diagram.legend(loc="upper left", fontsize="small", frameon=False)
    if title is not None:
        diagram.set_title(title)

    if hist is None:
        diagram.set_xlabel("mean predicted probability")
        return fig

    k = len(slices)
    for i, (part, color) in enumerate(zip(slices, colors, strict=True)):
        lower = _as_float(part["lower"])
        upper = _as_float(part["upper"])
        mass = _as_float(part["weight_sum"])
        mass = np.where(np.isnan(mass), 0.0, mass)
        total = mass.sum()
        if not total > 0:
            continue
        width = (upper - lower) / k
        hist.bar(lower + i * width, mass / total, width=width, align="edge", color=color,
                 alpha=0.8, linewidth=0, label=str(part["slice"][0]))
    hist.set_xlim(0.0, 1.0)
    hist.set_ylim(bottom=0.0)
    hist.set_xlabel("mean predicted probability")
    hist.set_ylabel("fraction of rows")
    hist.grid(True, axis="y", linewidth=0.5, alpha=0.4)
    return fig
