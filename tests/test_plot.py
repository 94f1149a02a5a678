"""assay.plot: the reliability diagram (hand-built tables: bar geometry, layouts, zoom), the
forest plots of a Report and a Comparison (demo data: rows, order, intervals), errors, and the
README's "Plots" section."""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

import assay  # noqa: E402
from assay import plot  # noqa: E402
from assay.demo import make_comparison_data, make_data  # noqa: E402
from assay.errors import InvalidArgumentError  # noqa: E402


def _rel() -> pl.DataFrame:
    """Two slices of 4 uniform bins; the last bin of country=BR is empty (count 0, nulls)."""
    edges = [0.0, 0.25, 0.5, 0.75, 1.0]
    rows = {
        "slice": ["overall"] * 4 + ["country=BR"] * 4,
        "bin": [0, 1, 2, 3] * 2,
        "lower": edges[:-1] * 2,
        "upper": edges[1:] * 2,
        "count": [40, 30, 20, 10, 12, 8, 5, 0],
        "weight_sum": [40.0, 30.0, 20.0, 10.0, 12.0, 8.0, 5.0, 0.0],
        "mean_score": [0.1, 0.4, 0.6, 0.9, 0.12, 0.38, 0.55, None],
        "frac_positive": [0.05, 0.35, 0.7, 0.95, 0.1, 0.25, 0.4, None],
        "frac_lo": [0.01, 0.2, 0.5, 0.6, 0.02, 0.07, 0.12, None],
        "frac_hi": [0.17, 0.52, 0.85, 0.99, 0.35, 0.59, 0.77, None],
    }
    return pl.DataFrame(rows, schema_overrides={"bin": pl.Int64, "count": pl.Int64})


def _data_lines(ax):
    return [ln for ln in ax.lines if ln.get_label() != "perfectly calibrated"]


def test_figure_with_diagram_and_histogram():
    fig = plot.reliability(_rel(), title="model A")
    assert isinstance(fig, Figure)
    diagram, hist = fig.axes
    assert len(diagram.lines) == 3  # the diagonal and one line per slice
    diagonal = [ln for ln in diagram.lines if ln.get_label() == "perfectly calibrated"]
    assert len(diagonal) == 1
    assert list(diagonal[0].get_xdata()) == [0.0, 1.0]
    assert list(diagonal[0].get_ydata()) == [0.0, 1.0]
    assert [ln.get_label() for ln in _data_lines(diagram)] == ["overall", "country=BR"]
    # The empty bin is skipped.
    assert [len(ln.get_xdata()) for ln in _data_lines(diagram)] == [4, 3]
    br = _data_lines(diagram)[1]
    assert list(br.get_xdata()) == [0.12, 0.38, 0.55]
    assert list(br.get_ydata()) == [0.1, 0.25, 0.4]

    assert diagram.get_ylabel() == "fraction of positives"
    assert diagram.get_title() == "model A"
    assert hist.get_xlabel() == "mean predicted probability"
    assert hist.get_ylabel() == "rows"
    assert diagram.get_xlim() == (0.0, 1.0) and hist.get_xlim() == (0.0, 1.0)
    legend = diagram.get_legend()
    assert legend is not None
    assert {t.get_text() for t in legend.get_texts()} >= {"overall", "country=BR"}


def test_histogram_bars_are_counts_by_default():
    hist = plot.reliability(_rel()).axes[1]
    assert [p.get_height() for p in hist.patches] == [40, 30, 20, 10, 12, 8, 5, 0]


def test_histogram_bars_are_each_slices_share_of_weight():
    fig = plot.reliability(_rel(), histogram="fraction")
    hist = fig.axes[1]
    assert hist.get_ylabel() == "fraction of rows"
    heights = [p.get_height() for p in hist.patches]
    assert len(heights) == 8
    assert heights[:4] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert heights[4:] == pytest.approx([12 / 25, 8 / 25, 5 / 25, 0.0])
    # Side by side: each slice takes half of each bin.
    assert [p.get_width() for p in hist.patches] == pytest.approx([0.125] * 8)
    assert hist.patches[4].get_x() == pytest.approx(0.125)


def test_intervals_drawn_and_optional():
    with_ci = plot.reliability(_rel()).axes[0]
    without = plot.reliability(_rel(), show_intervals=False).axes[0]
    segments = sum(len(c.get_segments()) for c in with_ci.collections)
    assert segments == 7  # one per non-empty bin
    assert len(without.collections) == 0


def test_without_histogram():
    fig = plot.reliability(_rel(), show_counts=False)
    (diagram,) = fig.axes
    assert diagram.get_xlabel() == "mean predicted probability"
    assert len(diagram.lines) == 3


def test_on_given_axis():
    fig = Figure()
    ax = fig.subplots()
    out = plot.reliability(_rel(), ax=ax, title="t")
    assert out is fig
    assert fig.axes == [ax]
    assert len(ax.lines) == 3
    assert ax.get_xlabel() == "mean predicted probability"
    assert ax.get_ylabel() == "fraction of positives"
    assert ax.get_title() == "t"


def test_slice_order_and_unsorted_bins():
    rel = _rel().reverse()  # country=BR now first, bins descending
    lines = _data_lines(plot.reliability(rel).axes[0])
    assert [ln.get_label() for ln in lines] == ["country=BR", "overall"]
    assert list(lines[1].get_xdata()) == [0.1, 0.4, 0.6, 0.9]


def test_accepts_pyarrow_table():
    table = _rel().to_arrow()
    assert isinstance(table, pa.Table)
    fig = plot.reliability(table)
    assert len(fig.axes[0].lines) == 3


def test_missing_columns():
    with pytest.raises(InvalidArgumentError, match="'frac_lo', 'frac_hi'") as info:
        plot.reliability(_rel().drop("frac_lo", "frac_hi"))
    assert "missing" in str(info.value)
    assert info.value.column == "frac_lo"


def test_empty_table():
    with pytest.raises(InvalidArgumentError, match="empty"):
        plot.reliability(_rel().clear())


def test_not_a_table():
    with pytest.raises(InvalidArgumentError):
        plot.reliability(42)


def test_saves_png(tmp_path):
    path = tmp_path / "reliability.png"
    plot.reliability(_rel(), title="model A").savefig(path, dpi=60)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000


def test_no_pyplot_state():
    plot.reliability(_rel())
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "assay\[plot\]"'):
        plot.reliability(_rel())


def test_docstring_examples():
    result = doctest.testmod(plot, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- histogram geometry: true bin widths, slices side by side or faceted, zoom -----------------


def _bars(ax) -> np.ndarray:
    """(left, right, height) of every bar of a histogram axis, left to right."""
    bars = np.array([[p.get_x(), p.get_x() + p.get_width(), p.get_height()]
                     for p in ax.patches])
    return bars[np.argsort(bars[:, 0], kind="stable")]


def _quantile_rel() -> pl.DataFrame:
    """Quantile bins: every slice has its own, unequal edges and 25 rows per bin; the first
    bin of country=BR is a point mass (many scores tied at 0.0: zero width)."""
    rows = {
        "slice": ["overall"] * 4 + ["country=BR"] * 4,
        "bin": [0, 1, 2, 3] * 2,
        "lower": [0.0, 0.05, 0.12, 0.3, 0.0, 0.0, 0.2, 0.5],
        "upper": [0.05, 0.12, 0.3, 0.9, 0.0, 0.2, 0.5, 0.7],
        "count": [25] * 8,
        "weight_sum": [25.0] * 8,
        "mean_score": [0.02, 0.08, 0.2, 0.5, 0.0, 0.1, 0.3, 0.6],
        "frac_positive": [0.04, 0.08, 0.2, 0.6, 0.0, 0.12, 0.28, 0.64],
        "frac_lo": [0.01, 0.02, 0.09, 0.4, 0.0, 0.04, 0.14, 0.44],
        "frac_hi": [0.2, 0.25, 0.39, 0.78, 0.13, 0.31, 0.47, 0.8],
    }
    return pl.DataFrame(rows, schema_overrides={"bin": pl.Int64, "count": pl.Int64})


def test_quantile_bins_are_faceted_at_their_true_edges():
    rel = _quantile_rel()
    fig = plot.reliability(rel)  # "auto": the slices' edges differ, so one panel per slice
    diagram, *hists = fig.axes
    assert len(hists) == 2
    overall, br = hists
    # Every bar spans its bin exactly: x = lower, x + width = upper, height = count.
    want = rel.filter(pl.col("slice") == "overall")
    assert _bars(overall)[:, 0] == pytest.approx(want["lower"].to_list())
    assert _bars(overall)[:, 1] == pytest.approx(want["upper"].to_list())
    assert _bars(overall)[:, 2] == pytest.approx(want["count"].to_list())
    assert _bars(br)[:, :2] == pytest.approx(np.array([[0.0, 0.2], [0.2, 0.5], [0.5, 0.7]]))
    # The zero-width bin is a spike at its score, as tall as its count.
    (spikes,) = [c for c in br.collections if c.get_gid() == "spikes"]
    assert [s.tolist() for s in spikes.get_segments()] == [[[0.0, 0.0], [0.0, 25.0]]]
    assert not [c for c in overall.collections if c.get_gid() == "spikes"]
    # The panels share the diagram's x axis; each is labelled with its slice and rows.
    assert overall.get_xlim() == br.get_xlim() == diagram.get_xlim() == (0.0, 1.0)
    assert [t.get_text() for t in br.texts] == ["country=BR (n=100)"]
    assert br.get_xlabel() == "mean predicted probability" and overall.get_xlabel() == ""


def test_quantile_bins_of_real_data_at_their_true_edges():
    rel = assay.reliability(make_data(20_000, seed=1), label="churned", score="p_churn",
                            n_bins=8, strategy="quantile", slices=["device"])
    parts = rel.partition_by("slice", maintain_order=True)
    fig = plot.reliability(rel, layout="facet")
    assert len(fig.axes) == 1 + len(parts) == 5
    for hist, part in zip(fig.axes[1:], parts, strict=True):
        part = part.sort("bin")
        wide = part.filter(pl.col("upper") > pl.col("lower"))
        bars = _bars(hist)
        assert len(bars) == wide.height
        assert bars[:, 0] == pytest.approx(wide["lower"].to_list(), rel=1e-12)
        assert bars[:, 1] == pytest.approx(wide["upper"].to_list(), rel=1e-12)
        assert bars[:, 2] == pytest.approx(wide["count"].cast(pl.Float64).to_list())
        # Quantile bins: unequal widths, not n_bins equal tenths.
        assert np.ptp(bars[:, 1] - bars[:, 0]) > 0.05


def test_side_by_side_bars_tile_each_bin_without_overlap():
    rel = assay.reliability(make_data(20_000, seed=1), label="churned", score="p_churn",
                            n_bins=10, strategy="uniform", slices=["device"])
    k = rel["slice"].n_unique()
    fig = plot.reliability(rel)  # "auto": uniform bins share their edges
    assert len(fig.axes) == 2
    bars = _bars(fig.axes[1])
    assert len(bars) == k * 10
    # No two bars overlap...
    assert np.all(bars[1:, 0] >= bars[:-1, 1] - 1e-12)
    # ...and the k bars of a bin tile it exactly, one slice after the other in table order.
    edges = rel.filter(pl.col("slice") == "overall").sort("bin")
    tiles = bars.reshape(10, k, 3)
    assert tiles[:, 0, 0] == pytest.approx(edges["lower"].to_list())
    assert tiles[:, -1, 1] == pytest.approx(edges["upper"].to_list())
    assert np.allclose(tiles[:, 1:, 0], tiles[:, :-1, 1])
    counts = np.stack([p.sort("bin")["count"].to_numpy()
                       for p in rel.partition_by("slice", maintain_order=True)], axis=1)
    assert np.array_equal(tiles[:, :, 2], counts)


def test_facet_on_uniform_bins_and_side_by_side_refused_for_quantile_bins():
    fig = plot.reliability(_rel(), layout="facet")
    assert len(fig.axes) == 3
    assert _bars(fig.axes[2])[:, :2] == pytest.approx(
        np.array([[0.0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]]))
    with pytest.raises(InvalidArgumentError, match="layout='facet'"):
        plot.reliability(_quantile_rel(), layout="side_by_side")
    # Without a histogram there is nothing to lay out.
    assert len(plot.reliability(_quantile_rel(), layout="side_by_side",
                                show_counts=False).axes) == 1
    # One slice of quantile bins: side by side is its own true widths.
    one = _quantile_rel().filter(pl.col("slice") == "overall")
    assert _bars(plot.reliability(one).axes[1])[:, :2] == pytest.approx(
        np.array([[0.0, 0.05], [0.05, 0.12], [0.12, 0.3], [0.3, 0.9]]))


def _sparse_rel() -> pl.DataFrame:
    """10 uniform bins of which only bins 1-3 (scores 0.1 to 0.4) hold rows."""
    edges = np.linspace(0.0, 1.0, 11)
    count = [0, 50, 30, 5, 0, 0, 0, 0, 0, 0]
    filled = [c > 0 for c in count]

    def only(values: list[float]) -> list[float | None]:
        return [v if f else None for v, f in zip(values, filled, strict=True)]

    return pl.DataFrame({
        "slice": ["overall"] * 10, "bin": list(range(10)),
        "lower": edges[:-1], "upper": edges[1:], "count": count,
        "weight_sum": [float(c) for c in count],
        "mean_score": only([0.0, 0.15, 0.25, 0.35] + [0.0] * 6),
        "frac_positive": only([0.0, 0.1, 0.3, 0.6] + [0.0] * 6),
        "frac_lo": only([0.0, 0.04, 0.15, 0.23] + [0.0] * 6),
        "frac_hi": only([0.0, 0.21, 0.49, 0.88] + [0.0] * 6),
    }, schema_overrides={"bin": pl.Int64, "count": pl.Int64})


def test_xlim_auto_zooms_to_the_populated_bins():
    full = plot.reliability(_sparse_rel())
    assert full.axes[0].get_xlim() == full.axes[1].get_xlim() == (0.0, 1.0)
    assert full.axes[0].get_ylim() == (-0.02, 1.02)

    fig = plot.reliability(_sparse_rel(), xlim="auto")
    diagram, hist = fig.axes
    lo, hi = diagram.get_xlim()
    span = 0.4 - 0.1
    # The populated range [0.1, 0.4], padded by at most 5% of it on each side.
    assert 0.1 - 0.05 * span <= lo < 0.1 and 0.4 < hi <= 0.4 + 0.05 * span
    assert hist.get_xlim() == (lo, hi)
    # The y axis covers the same range and the intervals of the points in view.
    y_lo, y_hi = diagram.get_ylim()
    assert y_lo <= 0.04 and y_hi >= 0.88 and y_hi < 1.02

    fixed = plot.reliability(_sparse_rel(), xlim=(0.0, 0.5))
    assert fixed.axes[0].get_xlim() == fixed.axes[1].get_xlim() == (0.0, 0.5)


def test_xlim_auto_on_a_low_base_rate():
    rng = np.random.default_rng(3)
    p = 1.0 / (1.0 + np.exp(-rng.normal(-5.0, 0.8, 20_000)))
    y = (rng.random(p.size) < p).astype(np.int8)
    rel = assay.reliability({"y": y, "p": p}, label="y", score="p", n_bins=50)
    top = rel.filter(pl.col("count") > 0)["upper"].max()
    lo, hi = plot.reliability(rel, xlim="auto").axes[1].get_xlim()
    assert lo == 0.0 and top <= hi < 0.2


@pytest.mark.parametrize("kwargs, match", [
    ({"layout": "overlap"}, "layout must be one of"),
    ({"histogram": "density"}, "histogram must be one of"),
    ({"xlim": "zoom"}, "xlim must be one of"),
    ({"xlim": (0.5, 0.1)}, "low < high"),
    ({"xlim": (0.0, float("nan"))}, "low < high"),
    ({"xlim": 3}, "a pair"),
])
def test_reliability_bad_options(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        plot.reliability(_rel(), **kwargs)


# --- forest plots ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report():
    return assay.evaluate(make_data(20_000, seed=0), label="churned", score="p_churn",
                          slices=["country", "device"], metrics=["roc_auc", "log_loss",
                                                                 "base_rate"],
                          bootstrap=50, seed=0)


@pytest.fixture(scope="module")
def cmp():
    return assay.compare(make_comparison_data(20_000, seed=0), label="churned",
                         scores={"prod": "p_old", "cand": "p_new"},
                         slices=["channel", "country"], metrics=["roc_auc", "log_loss"],
                         bootstrap=50, seed=0)


def _points(ax) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the plotted points, top row first."""
    xy = np.concatenate([np.column_stack([ln.get_xdata(), ln.get_ydata()])
                         for ln in ax.lines if ln.get_gid() == "points"])
    xy = xy[np.argsort(xy[:, 1], kind="stable")]
    return xy[:, 0], xy[:, 1]


def _intervals(ax) -> np.ndarray:
    """(lo, hi, y) of every interval line, top row first."""
    (lines,) = [c for c in ax.collections if c.get_gid() == "intervals"]
    seg = np.array([[s[0][0], s[1][0], s[0][1]] for s in lines.get_segments()])
    assert np.array_equal(seg[:, 2], [s[1][1] for s in lines.get_segments()])  # horizontal
    return seg[np.argsort(seg[:, 2], kind="stable")]


def _labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def _overall_x(ax) -> float:
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "overall"]
    x0, x1 = line.get_xdata()
    assert x0 == x1
    return float(x0)


def test_slices_one_row_per_slice_worst_first(report):
    fig = plot.slices(report, "roc_auc", title="by slice")
    (ax,) = fig.axes
    want = report.table.filter(pl.col("slice") != "overall").sort("roc_auc",
                                                                   maintain_order=True)
    assert want.height == 11  # 8 countries and 3 devices, every one with a value
    assert _labels(ax) == [f"{s} (n={n:,})" for s, n in want.select("slice", "n").rows()]
    x, y = _points(ax)
    assert np.array_equal(y, np.arange(want.height))
    assert x == pytest.approx(want["roc_auc"].to_list())
    seg = _intervals(ax)
    assert seg[:, 0] == pytest.approx(want["roc_auc_lo"].to_list())
    assert seg[:, 1] == pytest.approx(want["roc_auc_hi"].to_list())
    assert np.array_equal(seg[:, 2], np.arange(want.height))
    bottom, top = ax.get_ylim()
    assert top < 0 < want.height - 1 < bottom  # the first row is drawn at the top
    # overall: the reference line, its interval shaded.
    overall = report.table.row(0, named=True)
    assert _overall_x(ax) == pytest.approx(overall["roc_auc"])
    (band,) = [p for p in ax.patches if p.get_gid() == "overall_interval"]
    assert band.get_x() == pytest.approx(overall["roc_auc_lo"])
    assert band.get_x() + band.get_width() == pytest.approx(overall["roc_auc_hi"])
    assert ax.get_title() == "by slice" and ax.get_xlabel() == "roc_auc"
    assert [t.get_text() for t in ax.get_legend().get_texts()][0].startswith("overall 0.")


@pytest.mark.parametrize("metric, descending", [("log_loss", True), ("base_rate", False)])
def test_slices_order_follows_the_metric_direction(report, metric, descending):
    x, _ = _points(plot.slices(report, metric).axes[0])
    want = report.table.filter(pl.col("slice") != "overall")[metric].sort(
        descending=descending)
    assert x == pytest.approx(want.to_list())


def test_slices_table_order_and_max_slices(report):
    ax = plot.slices(report, "roc_auc", order="table").axes[0]
    table = report.table.filter(pl.col("slice") != "overall")
    assert [s.split(" (n=")[0] for s in _labels(ax)] == table["slice"].to_list()

    ax = plot.slices(report, "roc_auc", max_slices=3).axes[0]
    worst = table.sort("roc_auc")["slice"][:3].to_list()
    assert [s.split(" (n=")[0] for s in _labels(ax)] == worst
    assert len(_intervals(ax)) == 3
    assert "showing the worst 3 of 11 slices" in ax.get_xlabel()


def test_slices_from_the_long_frame(report):
    wide = plot.slices(report, "roc_auc").axes[0]
    long = plot.slices(report.long(), "roc_auc").axes[0]
    assert _points(long)[0] == pytest.approx(_points(wide)[0])
    assert _intervals(long) == pytest.approx(_intervals(wide))
    assert _labels(long) == [s.split(" (n=")[0] for s in _labels(wide)]  # no n in long()


def test_slices_without_intervals_draws_points_and_says_so():
    rep = assay.evaluate(make_data(5_000, seed=2), label="churned", score="p_churn",
                         slices=["device"], metrics=["roc_auc"])
    ax = plot.slices(rep, "roc_auc").axes[0]
    assert len(_points(ax)[0]) == 3
    assert not [c for c in ax.collections if c.get_gid() == "intervals"]
    assert not [p for p in ax.patches if p.get_gid() == "overall_interval"]
    assert "no intervals" in ax.get_xlabel()


def _wide(values: list[float | None]) -> pl.DataFrame:
    names = ["overall"] + [f"g={i}" for i in range(len(values) - 1)]
    return pl.DataFrame({"slice": names, "n": [100] * len(values), "mae": values},
                        schema_overrides={"mae": pl.Float64})


def test_slices_leave_out_null_values_and_escape_labels(tmp_path):
    table = _wide([1.0, 2.0, None, 0.5]).with_columns(
        pl.col("slice").replace("g=0", "price=$5-$10"))
    fig = plot.slices(table, "mae")
    ax = fig.axes[0]
    # mae: lower is better, so the worst (highest) on top; the null slice left out.
    assert _points(ax)[0].tolist() == [2.0, 0.5]
    assert _labels(ax) == [r"price=\$5-\$10 (n=100)", "g=2 (n=100)"]
    assert "1 slice without a value left out" in ax.get_xlabel()
    fig.savefig(tmp_path / "dollars.png", dpi=50)  # a $ in a label is not mathtext


def test_slices_errors(report, cmp):
    with pytest.raises(InvalidArgumentError, match="'nope' is not in the report") as info:
        plot.slices(report, "nope")
    assert "'roc_auc'" in str(info.value)
    with pytest.raises(InvalidArgumentError, match="plot.comparison"):
        plot.slices(cmp, "roc_auc")
    with pytest.raises(InvalidArgumentError, match="no slice besides overall"):
        plot.slices(_wide([1.0]), "mae")
    with pytest.raises(InvalidArgumentError, match="no slice of the report has a value"):
        plot.slices(_wide([1.0, None]), "mae")
    with pytest.raises(InvalidArgumentError, match="'slice'"):
        plot.slices(pl.DataFrame({"mae": [1.0]}), "mae")
    with pytest.raises(InvalidArgumentError, match="order must be one of"):
        plot.slices(report, "roc_auc", order="random")
    with pytest.raises(InvalidArgumentError, match="max_slices"):
        plot.slices(report, "roc_auc", max_slices=0)


def _cmp_rows(cmp, metric: str, descending: bool) -> pl.DataFrame:
    return cmp.table.filter((pl.col("metric") == metric) & (pl.col("slice") != "overall")).sort(
        "delta", descending=descending, maintain_order=True)


def _point_verdicts(ax) -> list[str]:
    """The verdict (the series' label) of every point, top row first."""
    pairs = [(y, ln.get_label()) for ln in ax.lines if ln.get_gid() == "points"
             for y in ln.get_ydata()]
    return [label for _, label in sorted(pairs)]


@pytest.mark.parametrize("metric, descending", [("roc_auc", False), ("log_loss", True)])
def test_comparison_deltas_equal_the_table(cmp, metric, descending):
    fig = plot.comparison(cmp, metric)
    (ax,) = fig.axes
    want = _cmp_rows(cmp, metric, descending)
    assert want.height == 11 and want["slice"][0] == "channel=partner"  # the broken channel
    assert _labels(ax) == want["slice"].to_list()
    x, y = _points(ax)
    assert np.array_equal(y, np.arange(want.height))
    assert x == pytest.approx(want["delta"].to_list())
    seg = _intervals(ax)
    assert seg[:, 0] == pytest.approx(want["delta_lo"].to_list())
    assert seg[:, 1] == pytest.approx(want["delta_hi"].to_list())
    assert _point_verdicts(ax) == want["verdict"].to_list()
    assert "worse" in want["verdict"].to_list()
    overall = cmp.table.filter((pl.col("metric") == metric) & (pl.col("slice") == "overall"))
    assert _overall_x(ax) == pytest.approx(overall["delta"][0])
    (zero,) = [ln for ln in ax.lines if ln.get_gid() == "zero"]
    assert list(zero.get_xdata()) == [0.0, 0.0]
    assert ax.get_xlabel() == f"{metric}: cand \u2212 prod (with its paired interval)"


def test_comparison_simultaneous_bands(cmp):
    ax = plot.comparison(cmp, "roc_auc", interval="simultaneous").axes[0]
    want = _cmp_rows(cmp, "roc_auc", False)
    seg = _intervals(ax)
    assert seg[:, 0] == pytest.approx(want["simultaneous_lo"].to_list())
    assert seg[:, 1] == pytest.approx(want["simultaneous_hi"].to_list())
    # Colored by the band: the verdict of correction="simultaneous".
    assert cmp.correction == "simultaneous"
    assert _point_verdicts(ax) == want["verdict_adjusted"].to_list()


def test_comparison_from_its_table_and_on_a_given_axis(cmp):
    fig = Figure()
    ax = fig.subplots()
    out = plot.comparison(cmp.table.to_arrow(), "roc_auc", ax=ax, order="table", title="t")
    assert out is fig and fig.axes == [ax]
    want = cmp.table.filter((pl.col("metric") == "roc_auc") & (pl.col("slice") != "overall"))
    assert _labels(ax) == want["slice"].to_list()
    assert _points(ax)[0] == pytest.approx(want["delta"].to_list())
    assert "cand \u2212 reference" in ax.get_xlabel() and ax.get_title() == "t"


def test_comparison_of_several_models_needs_model():
    three = assay.compare(make_comparison_data(5_000, seed=1), label="churned",
                          scores={"prod": "p_old", "cand": "p_new", "again": "p_old"},
                          slices=["channel"], metrics=["roc_auc"], bootstrap=20)
    with pytest.raises(InvalidArgumentError, match="several models.*model="):
        plot.comparison(three, "roc_auc")
    ax = plot.comparison(three, "roc_auc", model="again").axes[0]
    assert _points(ax)[0] == pytest.approx([0.0] * 3)  # a model compared with itself
    with pytest.raises(InvalidArgumentError, match="'nope' is not compared"):
        plot.comparison(three, "roc_auc", model="nope")


def test_comparison_errors(cmp):
    with pytest.raises(InvalidArgumentError, match="'f1' is not in the comparison"):
        plot.comparison(cmp, "f1")
    with pytest.raises(InvalidArgumentError, match="'verdict'"):
        plot.comparison(cmp.table.drop("verdict"), "roc_auc")
    with pytest.raises(InvalidArgumentError, match="interval must be one of"):
        plot.comparison(cmp, "roc_auc", interval="bonferroni")


def test_forest_plots_touch_no_pyplot_state(report, cmp):
    plot.slices(report, "roc_auc")
    plot.comparison(cmp, "roc_auc")
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


# --- README ----------------------------------------------------------------------------------


README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_plots_section_runs_as_written(tmp_path, monkeypatch):
    text = README.read_text()
    start = text.index("\n### Plots\n")
    end = re.compile(r"\n#{2,3} ").search(text, start + 1)
    section = text[start:end.start() if end else len(text)]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    for name in ("reliability.png", "slices.png", "comparison.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for image in re.findall(r"\]\((docs/[^)]+\.png)\)", section):
        assert (README.parent / image).exists(), image
