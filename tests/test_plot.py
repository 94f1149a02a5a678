"""assay.plot: the reliability diagram drawn from a hand-built reliability table."""

from __future__ import annotations

import doctest
import sys

import polars as pl
import pyarrow as pa
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from assay import plot  # noqa: E402
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
    assert hist.get_ylabel() == "fraction of rows"
    assert diagram.get_xlim() == (0.0, 1.0) and hist.get_xlim() == (0.0, 1.0)
    legend = diagram.get_legend()
    assert legend is not None
    assert {t.get_text() for t in legend.get_texts()} >= {"overall", "country=BR"}


def test_histogram_bars_are_each_slices_share_of_weight():
    fig = plot.reliability(_rel())
    hist = fig.axes[1]
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
