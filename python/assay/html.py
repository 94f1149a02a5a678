"""One self-contained HTML page for a result: :func:`render` and :func:`write`.

The page works offline and alone: inline CSS, charts drawn here as inline SVG (no plotting
library), a few lines of vanilla JavaScript that sort and filter the tables, and a
Content-Security-Policy that forbids every network request and every script but that one (by
its hash). Every value taken from the result (slice values are user data) is escaped as text,
with the control characters the terminal output escapes (:mod:`assay._text`) made visible too;
no data ever lands in an attribute or in the script.

What a page holds, by input:

- :class:`assay.Report`: the overall metrics with their intervals, a forest chart of one
  metric's worst slices, and a sortable table of every slice whose cells are highlighted where
  the slice is *significantly worse than overall*: its interval lies wholly on the worse side
  of the overall value (the metric's direction from the metric registry; metrics without a
  direction, such as ``base_rate``, are never highlighted). An interval is the slice's own, not
  corrected for the number of slices.
- :class:`assay.Comparison`: the overall deltas with intervals and verdicts, a forest chart of
  one metric's deltas per slice, and the table of every (slice, metric, model) with its verdict
  under the comparison's correction (named on the page).
- :func:`assay.discover_slices` / :func:`assay.discover_regressions` tables: the discovered
  slices, charted and tabled.
- :func:`assay.reliability` tables: per-slice calibration summaries and reliability diagrams
  (each bin's histogram bar spans its true ``[lower, upper]``).

Every page ends with the result's provenance (``obj.provenance.to_dict()``) when it has one.
"""

from __future__ import annotations

import base64
import hashlib
import html as _html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ._text import escape as _printable
from .errors import InvalidArgumentError

__all__ = ["render", "write"]

# Forest charts show at most this many slices (the worst first); diagrams at most this many.
MAX_CHART_ROWS = 30
MAX_DIAGRAMS = 12
MAX_NOTES = 200
# Tables with more rows open with their intervals hidden (a checkbox shows them).
MAX_SHOWN_INTERVALS = 300

_RELIABILITY = ("slice", "bin", "lower", "upper", "count", "weight_sum", "mean_score",
                "frac_positive", "frac_lo", "frac_hi")
_DISCOVERY = ("rank", "slice", "level", "size", "support", "error_mean", "error_ratio", "score")
_REGRESSIONS = ("rank", "slice", "level", "size", "support", "error_reference", "error_model",
                "delta", "delta_lo", "delta_hi")


# ----------------------------------------------------------------------------------------
# text and numbers


def _e(value: Any) -> str:
    """``value`` as HTML text: control characters made visible, then ``<>&"'`` escaped."""
    return _html.escape(_printable(value), quote=True)


def _short(value: Any, width: int = 38) -> str:
    text = _printable(value)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _num(v: Any) -> str:
    """A number as the page shows it: integers with thousands separators, floats with four
    significant digits in fixed notation where readable, a dash for a missing value."""
    if v is None:
        return "\u2013"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    v = float(v)
    if math.isnan(v):
        return "\u2013"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    a = abs(v)
    if a == 0:
        return "0"
    if 1e-3 <= a < 1e6:
        return f"{v:.{max(0, 3 - math.floor(math.log10(a)))}f}"
    return f"{v:.3e}"


def _interval(lo: Any, hi: Any) -> str:
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f"[{_num(lo)}, {_num(hi)}]"


def _attr(name: str, value: str) -> str:
    """`` name="value"`` (escaped), or nothing for an empty value."""
    return f' {name}="{_e(value)}"' if value else ""


def _cell(value: Any, lo: Any = None, hi: Any = None, cls: str = "") -> str:
    """A numeric cell: the value (the text the sort reads), then its interval, if any."""
    ci = _interval(lo, hi)
    return f"<td{_attr('class', cls)}>{_num(value)}{f'<i>{ci}</i>' if ci else ''}</td>"


def _floats(frame: pl.DataFrame, column: str) -> np.ndarray:
    """A column as float64, NaN where null."""
    return frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _higher_is_better(metric: str) -> bool | None:
    """The metric's direction from the engine's registry (None: none, or an unknown name)."""
    from . import _native

    try:
        return _native.higher_is_better(metric)  # type: ignore[no-any-return]
    except Exception:  # a metric the registry does not know
        return None


def _chart_metric(metrics: list[str]) -> str | None:
    """The metric a chart shows by default: ``roc_auc`` where there is one, else the first
    metric with a direction, else the first."""
    if "roc_auc" in metrics:
        return "roc_auc"
    return next((m for m in metrics if _higher_is_better(m) is not None),
                metrics[0] if metrics else None)


def _description(metric: str) -> str:
    from . import _native

    for row in _native.metric_registry():
        if row[0] == metric:
            return str(row[5])
    return ""


# ----------------------------------------------------------------------------------------
# SVG charts


def _scale(lo: float, hi: float, a: float, b: float) -> Any:
    span = hi - lo if hi > lo else 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values in [lo, hi]."""
    raw = (hi - lo) / n if hi > lo else 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + k * step, 12) for k in range(max(count, 0))]


def _tick(t: float) -> str:
    return "0" if t == 0 else f"{t:.6g}"


def _domain(values: Sequence[np.ndarray | float]) -> tuple[float, float]:
    flat = np.concatenate([np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in values])
    flat = flat[np.isfinite(flat)]
    if not len(flat):
        return 0.0, 1.0
    lo, hi = float(flat.min()), float(flat.max())
    pad = (hi - lo) * 0.06 or (abs(hi) * 0.05 or 0.05)
    return lo - pad, hi + pad


def _forest_svg(labels: list[str], value: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                kinds: list[str], *, ref: float | None = None, ref_lo: float | None = None,
                ref_hi: float | None = None, ref_label: str = "overall",
                zero: bool = False, stem: bool = False) -> str:
    """One row per label: the value as a dot and its interval as a line (or, ``stem``, a line
    from ``ref`` to the value); ``ref`` as a dashed line with its interval as a band, ``zero``
    as a solid line at 0."""
    n = len(labels)
    width, left, right, top, row = 840, 230, 230, 30, 22
    height = top + n * row + 30
    parts = [value, lo, hi]
    parts += [np.array([x]) for x in (ref, ref_lo, ref_hi) if x is not None]
    if zero:
        parts.append(np.array([0.0]))
    d_lo, d_hi = _domain(parts)
    x = _scale(d_lo, d_hi, left, width - right)
    bottom = top + n * row
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img">']
    for k in range(0, n, 2):
        out.append(f'<rect class="zebra" x="0" y="{top + k * row}" width="{width}" '
                   f'height="{row}"/>')
    for t in _ticks(d_lo, d_hi):
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" '
                   f'y2="{bottom}"/><text class="tick" x="{x(t):.1f}" y="{bottom + 16}">'
                   f'{_tick(t)}</text>')
    if ref is not None and ref_lo is not None and ref_hi is not None \
            and math.isfinite(ref_lo) and math.isfinite(ref_hi):
        out.append(f'<rect class="band" x="{x(ref_lo):.1f}" y="{top}" '
                   f'width="{max(x(ref_hi) - x(ref_lo), 0.5):.1f}" height="{n * row}"/>')
    if zero:
        out.append(f'<line class="zero" x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{top}" '
                   f'y2="{bottom}"/>')
    if ref is not None and math.isfinite(ref):
        out.append(f'<line class="ref" x1="{x(ref):.1f}" x2="{x(ref):.1f}" y1="{top - 6}" '
                   f'y2="{bottom}"/><text class="reflabel" x="{x(ref):.1f}" y="{top - 10}">'
                   f'{_e(ref_label)} {_num(ref)}</text>')
    for k in range(n):
        y = top + k * row + row / 2
        v, a, b = float(value[k]), float(lo[k]), float(hi[k])
        out.append(f'<g class="r {kinds[k]}"><text class="label" x="{left - 10}" '
                   f'y="{y + 4:.1f}"><title>{_e(labels[k])}</title>{_e(_short(labels[k]))}'
                   "</text>")
        if stem and ref is not None and math.isfinite(v):
            out.append(f'<line class="ci" x1="{x(ref):.1f}" x2="{x(v):.1f}" y1="{y:.1f}" '
                       f'y2="{y:.1f}"/>')
        elif math.isfinite(a) and math.isfinite(b):
            out.append(f'<line class="ci" x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y:.1f}" '
                       f'y2="{y:.1f}"/>')
        if math.isfinite(v):
            out.append(f'<circle class="pt" cx="{x(v):.1f}" cy="{y:.1f}" r="4"/>')
        text = _num(v) + (f" {_interval(a, b)}" if math.isfinite(a) and not stem else "")
        out.append(f'<text class="val" x="{width - right + 12}" y="{y + 4:.1f}">{text}</text>'
                   "</g>")
    out.append("</svg>")
    return "".join(out)


def _reliability_svg(label: str, bins: pl.DataFrame) -> str:
    """A reliability diagram (fraction of positives against mean score per bin, with the
    Wilson intervals, the diagonal as perfect calibration) over the histogram of the rows,
    each bar drawn over its bin's true ``[lower, upper]``."""
    size, left, top, hist, gap = 232, 46, 30, 58, 14
    width, height = left + size + 16, top + size + gap + hist + 34
    x = _scale(0.0, 1.0, left, left + size)
    y = _scale(0.0, 1.0, top + size, top)
    base = top + size + gap + hist
    out = [f'<svg class="diagram" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img"><text class="dtitle" x="{left}" y="18">'
           f'<title>{_e(label)}</title>{_e(_short(label, 34))}</text>'
           f'<rect class="frame" x="{left}" y="{top}" width="{size}" height="{size}"/>']
    for t in (0.25, 0.5, 0.75):
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" '
                   f'y2="{top + size}"/><line class="grid" x1="{left}" x2="{left + size}" '
                   f'y1="{y(t):.1f}" y2="{y(t):.1f}"/>')
    for t in (0.0, 0.5, 1.0):
        out.append(f'<text class="tick" x="{x(t):.1f}" y="{base + 15}">{_tick(t)}</text>'
                   f'<text class="ytick" x="{left - 6}" y="{y(t) + 4:.1f}">{_tick(t)}</text>')
    out.append(f'<line class="diag" x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" '
               f'y2="{y(1):.1f}"/>')
    rows = bins.select("lower", "upper", "count", "mean_score", "frac_positive", "frac_lo",
                       "frac_hi").rows()
    # Bar heights are rows per unit of score, so that each bar's area is its rows: equal-mass
    # (quantile) bins of different widths compare truthfully.
    density = [(c / (u - lo_) if u > lo_ else math.inf) if c and lo_ is not None
               and u is not None else 0.0 for lo_, u, c, *_ in rows]
    most = max([d for d in density if math.isfinite(d)] + [1e-300])
    for (lower, upper, count, *_), d in zip(rows, density, strict=True):
        if not count or lower is None or upper is None:
            continue
        h = min(d / most, 1.0) * hist
        if upper - lower > 0:
            out.append(f'<rect class="bar" x="{x(lower):.2f}" y="{base - h:.1f}" '
                       f'width="{max(x(upper) - x(lower), 0.6):.2f}" height="{h:.1f}"/>')
        else:  # quantile bins over tied scores: all of the bin's rows have one score
            out.append(f'<line class="spike" x1="{x(lower):.2f}" x2="{x(lower):.2f}" '
                       f'y1="{base}" y2="{base - h:.1f}"/>')
    points = [(m, f, lo, hi) for _, _, c, m, f, lo, hi in rows
              if c and m is not None and f is not None]
    if points:
        path = " ".join(f"{x(m):.1f},{y(f):.1f}" for m, f, _, _ in points)
        out.append(f'<polyline class="curve" points="{path}"/>')
    for m, f, lo, hi in points:
        if lo is not None and hi is not None:
            out.append(f'<line class="ci" x1="{x(m):.1f}" x2="{x(m):.1f}" y1="{y(lo):.1f}" '
                       f'y2="{y(hi):.1f}"/>')
        out.append(f'<circle class="pt" cx="{x(m):.1f}" cy="{y(f):.1f}" r="3.2"/>')
    out.append(f'<line class="axis" x1="{left}" x2="{left + size}" y1="{base}" y2="{base}"/>'
               f'<text class="axlabel" x="{left + size / 2}" y="{base + 30}">mean score</text>'
               f'<text class="axlabel" transform="rotate(-90)" x="{-(top + size / 2)}" '
               f'y="12">fraction positive</text></svg>')
    return "".join(out)


# ----------------------------------------------------------------------------------------
# page pieces


def _table(table_id: str, head: list[tuple[str, str, str]], pinned: list[str],
           rows: list[str], what: str, intervals: bool = False) -> str:
    """A sortable table: ``head`` as (label, "num" or "", tooltip); ``pinned`` rows (the
    overall row) stay above the rows that sort and filter. With ``intervals``, a checkbox
    shows or hides the cells' intervals: shown up to :data:`MAX_SHOWN_INTERVALS` rows, hidden
    by default beyond (laying out a thousand rows of intervals takes the browser longer than
    the rest of the page together)."""
    ths = "".join(f"<th{_attr('class', kind)}{_attr('title', tip)}>{_e(label)}</th>"
                  for label, kind, tip in head)
    pinned_body = f'<tbody class="pinned">{"".join(pinned)}</tbody>' if pinned else ""
    shown = len(rows) <= MAX_SHOWN_INTERVALS
    toggle = (f'<label class="toggle"><input type="checkbox" data-intervals="{table_id}"'
              f'{" checked" if shown else ""}> show intervals</label>' if intervals else "")
    cls = "sortable" + ("" if shown or not intervals else " hide-ci")
    return (f'<div class="tools"><input type="search" placeholder="Filter {what}" '
            f'aria-label="Filter {what}" data-filter="{table_id}">{toggle}'
            f'<span class="count">{len(rows):,} {what}</span>'
            '<span class="hint">click a column header to sort</span></div>'
            f'<div class="scroll"><table class="{cls}" id="{table_id}"><thead><tr>{ths}'
            f'</tr></thead>{pinned_body}<tbody>{"".join(rows)}</tbody></table></div>')


def _card(key: str, value: str, sub: str = "", note: str = "", cls: str = "") -> str:
    return (f'<div class="card{" " + cls if cls else ""}"><div class="k">{_e(key)}</div>'
            f'<div class="v">{value}</div>'
            + (f'<div class="sub">{sub}</div>' if sub else "")
            + (f'<div class="note">{note}</div>' if note else "") + "</div>")


def _section(sid: str, title: str, body: str, lead: str = "") -> str:
    return (f'<section id="{sid}"><h2>{_e(title)}</h2>'
            + (f'<p class="lead">{lead}</p>' if lead else "") + body + "</section>")


def _provenance(obj: Any) -> str:
    prov = getattr(obj, "provenance", None)
    if prov is None:
        return ""
    if callable(getattr(prov, "to_dict", None)):
        d = prov.to_dict()
    elif isinstance(prov, Mapping):
        d = dict(prov)
    else:
        d = {"provenance": str(prov)}
    d = dict(d)
    d.pop("format", None)
    inp = d.pop("input", None)
    spec = d.pop("spec", None)
    names = {"kind": "produced by", "assay_version": "assay version", "created": "created",
             "git_commit": "git commit"}
    items: list[tuple[str, str]] = []
    for key in ("kind", "assay_version", "created", "git_commit"):
        if key in d:
            v = d.pop(key)
            items.append((names[key], "\u2013" if v is None else f"<code>{_e(v)}</code>"))
    schema = None
    if isinstance(inp, Mapping):
        inp = dict(inp)
        if "rows" in inp:
            items.append(("input rows", _num(inp.pop("rows"))))
        if "content_hash" in inp:
            h = inp.pop("content_hash")
            items.append(("content hash", "not computed (fingerprint=\"content\" computes it)"
                          if h is None else f"<code>{_e(h)}</code>"))
        schema = inp.pop("schema", None)
        d.update({f"input.{k}": v for k, v in inp.items()})
    elif inp is not None:
        d["input"] = inp
    for key, v in d.items():
        items.append((str(key), f"<code>{_e(json.dumps(v, default=str))}</code>"
                      if isinstance(v, (Mapping, list)) else _e(v)))
    body = "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    if isinstance(schema, list) and schema:
        cells = "".join(
            f"<tr><td>{_e(c[0])}</td><td><code>{_e(c[1])}</code></td></tr>"
            if isinstance(c, (list, tuple)) and len(c) == 2 else
            f'<tr><td colspan="2">{_e(c)}</td></tr>' for c in schema)
        body += (f"<details><summary>columns read ({len(schema)})</summary>"
                 f'<table class="plain"><tbody>{cells}</tbody></table></details>')
    if spec is not None:
        text = json.dumps(spec, indent=2, default=str, ensure_ascii=False)
        body += f"<details><summary>spec</summary><pre>{_e_block(text)}</pre></details>"
    return _section("provenance", "Provenance", body)


def _e_block(text: str) -> str:
    """Multi-line text for a ``<pre>``: each line escaped, the line breaks kept."""
    return "\n".join(_e(line) for line in text.split("\n"))


# ----------------------------------------------------------------------------------------
# pages


def _report(rep: Any, metric: str | None) -> tuple[str, str, str]:
    """The body of a Report's page: (subtitle, sections, default title)."""
    table: pl.DataFrame = rep.table
    metrics = list(rep.metrics)
    has_ci = rep.ci_method is not None and all(
        f"{m}_lo" in table.columns and f"{m}_hi" in table.columns for m in metrics)
    level = getattr(rep, "_level", None)
    is_overall = (pl.col("slice") == "overall") if "slice" in table.columns else pl.lit(False)
    overall_df = table.filter(is_overall).head(1)
    overall = overall_df.row(0, named=True) if overall_df.height else None
    rest = table.filter(~is_overall)
    ci_name = (f"{level:.0%} " if isinstance(level, float) else "") + "interval"
    ci_short = (f"{level:.0%} " if isinstance(level, float) else "") + "CI"
    directions = {m: _higher_is_better(m) for m in metrics}

    # Significantly worse than overall: the slice's interval wholly on the worse side of the
    # overall value (vectorized per metric).
    flags: dict[str, pl.Series] = {}
    if has_ci and overall is not None:
        for m in metrics:
            ref, up = overall.get(m), directions[m]
            if ref is None or up is None or (isinstance(ref, float) and math.isnan(ref)):
                continue
            # (fill_nan: polars orders NaN above every number.)
            bound = pl.col(f"{m}_hi" if up else f"{m}_lo").cast(pl.Float64).fill_nan(None)
            bad = (bound < ref) if up else (bound > ref)
            flags[m] = rest.select(bad.fill_null(False).alias(m)).to_series()
    worse_count = (pl.DataFrame(flags).sum_horizontal() if flags
                   else pl.Series([0] * rest.height, dtype=pl.UInt32))
    n_worse = int((worse_count > 0).sum())

    # headline
    cards = []
    if overall is not None:
        cards.append(_card("rows", _num(overall.get("n", rep.rows)),
                           sub=f"{_num(rep.dropped)} dropped" if rep.dropped else ""))
        for m in metrics:
            ci = _interval(overall.get(f"{m}_lo"), overall.get(f"{m}_hi")) if has_ci else ""
            up = directions[m]
            note = "" if up is None else ("higher is better" if up else "lower is better")
            cards.append(_card(m, _num(overall.get(m)),
                               sub=f"{ci_short} {ci}" if ci else "", note=note))
    sub_ci = (f"intervals: {_e(rep.ci_method)}, {_e(ci_name)}" if has_ci
              else "no intervals (evaluate with bootstrap=... or ci_method=...)")
    headline = _section("headline", "Overall", f'<div class="cards">{"".join(cards)}</div>')

    # chart
    chart = ""
    shown_metric = metric if metric is not None else _chart_metric(metrics)
    if shown_metric is not None and shown_metric not in metrics:
        raise InvalidArgumentError(
            f"metric {shown_metric!r} is not in the report; its metrics are "
            f"{', '.join(map(repr, metrics))}")
    if shown_metric is not None and rest.height:
        m = shown_metric
        cols = [pl.col("slice").cast(pl.String), pl.col(m).cast(pl.Float64).alias("v"),
                (pl.col(f"{m}_lo") if has_ci else pl.lit(None)).cast(pl.Float64).alias("lo"),
                (pl.col(f"{m}_hi") if has_ci else pl.lit(None)).cast(pl.Float64).alias("hi"),
                (flags[m] if m in flags else pl.lit(False)).alias("w")]
        rows = rest.select(cols).filter(pl.col("v").is_not_null() & pl.col("v").is_not_nan())
        rows = rows.sort("v", descending=directions[m] is False, maintain_order=True)
        top = rows.head(MAX_CHART_ROWS)
        if top.height:
            ref = None if overall is None else overall.get(m)
            svg = _forest_svg(
                top["slice"].to_list(), _floats(top, "v"), _floats(top, "lo"),
                _floats(top, "hi"), ["w" if w else "" for w in top["w"].to_list()],
                ref=ref, ref_lo=overall.get(f"{m}_lo") if has_ci and overall else None,
                ref_hi=overall.get(f"{m}_hi") if has_ci and overall else None)
            which = ("worst" if directions[m] is not None else "lowest")
            lead = (f"<code>{_e(m)}</code> per slice, the {which} {top.height} of "
                    f"{rows.height:,} slices with a value"
                    + (f", with {_e(ci_name)}s; the dashed line and band are overall's"
                       if has_ci else "; the dashed line is overall")
                    + ". Red: significantly worse than overall.")
            chart = _section("chart", f"{m} by slice", f'<div class="figure">{svg}</div>',
                             lead)

    # table
    extra = [c for c in ("spec",) if c in table.columns]
    head = [("slice", "", ""), *((c, "", "") for c in extra), ("n", "num", "rows")]
    head += [(m, "num", _description(m)) for m in metrics]
    if flags:
        head.append(("worse in", "num", "metrics on which the slice is significantly "
                                         "worse than overall"))
    value_cols = ["slice", *extra, "n" if "n" in table.columns else pl.lit(None).alias("n")]
    for m in metrics:
        value_cols += [m, *((f"{m}_lo", f"{m}_hi") if has_ci else ())]

    def html_rows(frame: pl.DataFrame, flagged: dict[str, pl.Series] | None,
                  counts: pl.Series | None) -> list[str]:
        out = []
        data = frame.select(value_cols).rows()
        flag_lists = {m: s.to_list() for m, s in (flagged or {}).items()}
        count_list = counts.to_list() if counts is not None else None
        step = 3 if has_ci else 1
        for i, r in enumerate(data):
            cells = [f'<td class="t">{_e(r[0])}</td>',
                     *(f'<td class="t">{_e(v) if v is not None else ""}</td>'
                       for v in r[1:1 + len(extra)])]
            k = 1 + len(extra)
            cells.append(_cell(r[k]))
            k += 1
            for m in metrics:
                w = m in flag_lists and flag_lists[m][i]
                lo, hi = (r[k + 1], r[k + 2]) if has_ci else (None, None)
                cells.append(_cell(r[k], lo, hi, cls="w" if w else ""))
                k += step
            if count_list is not None:
                cells.append(_cell(count_list[i]))
            worse = count_list is not None and count_list[i] > 0
            out.append(f"<tr{_attr('class', 'hw' if worse else '')}>{''.join(cells)}</tr>")
        return out

    pinned = []
    if overall_df.height:
        pinned = html_rows(overall_df, None,
                           pl.Series([0], dtype=pl.UInt32) if flags else None)
        pinned = [p.replace("<tr>", '<tr class="overall">', 1) for p in pinned]
    body_rows = html_rows(rest, flags, worse_count if flags else None)
    lead = (f"One row per slice; overall stays on top. <span class=\"swatch w\"></span> a "
            f"cell is significantly worse than overall: the slice's {_e(ci_name)} lies wholly "
            "on the worse side of the overall value (the slice's own interval, not corrected "
            f"for the number of slices). {n_worse:,} of {rest.height:,} slices are worse on "
            "at least one metric." if flags else
            "One row per slice; overall stays on top. Without intervals no slice is flagged.")
    slices = _section("slices", "Slices", _table("slice-table", head, pinned, body_rows,
                                                 "slices", intervals=has_ci), lead)
    notes = ""
    note_frame = getattr(rep, "notes", None)
    if isinstance(note_frame, pl.DataFrame) and note_frame.height and \
            {"slice", "metric", "note"} <= set(note_frame.columns):
        shown = note_frame.head(MAX_NOTES).select("slice", "metric", "note").rows()
        cells = "".join(f"<tr><td>{_e(s)}</td><td>{_e(m)}</td><td>{_e(n)}</td></tr>"
                        for s, m, n in shown)
        more = (f" (the first {MAX_NOTES:,} of {note_frame.height:,})"
                if note_frame.height > MAX_NOTES else "")
        notes = _section("notes", "Notes", f"<details><summary>why {note_frame.height:,} "
                         f"values are missing{more}</summary><table class=\"plain\"><thead>"
                         "<tr><th>slice</th><th>metric</th><th>note</th></tr></thead>"
                         f"<tbody>{cells}</tbody></table></details>")
    subtitle = (f"{_num(rep.rows)} rows read"
                + (f", {_num(rep.dropped)} dropped" if rep.dropped else "")
                + f" \u00b7 {rest.height:,} slices \u00b7 {len(metrics)} metrics \u00b7 "
                + sub_ci)
    return subtitle, headline + chart + slices + notes, "Sliced evaluation"


def _comparison(cmp: Any, metric: str | None) -> tuple[str, str, str]:
    table: pl.DataFrame = cmp.table
    ref = cmp.reference
    correction = cmp.correction
    level = cmp.level
    models = table["model"].unique(maintain_order=True).to_list()
    # Each row's own model's value (the table has one value column per model).
    picks: list[pl.Expr] = [pl.when(pl.col("model") == name).then(pl.col(name))
                            for name in models if name in table.columns]
    value_of_model = pl.coalesce(picks or [pl.lit(None, pl.Float64)])
    sizes = cmp.reports[ref].table.select("slice", pl.col("n").alias("_n")) \
        if ref in getattr(cmp, "reports", {}) and "n" in cmp.reports[ref].table.columns \
        else None
    frame = table.with_columns(
        (pl.col(ref) if ref in table.columns else pl.lit(None, pl.Float64)).alias("_ref"),
        value_of_model.alias("_model"))
    if sizes is not None:
        frame = frame.join(sizes, on="slice", how="left", maintain_order="left")
    else:
        frame = frame.with_columns(pl.lit(None, pl.UInt64).alias("_n"))
    what = {"simultaneous": "simultaneous max-T bands over every row of the table "
                            "(family-wise)",
            "holm": "Holm-adjusted p-values over every row (family-wise)",
            "bh": "Benjamini-Hochberg-adjusted p-values over every row (false discovery "
                  "rate)",
            "none": "none: each row's own interval"}.get(correction, str(correction))
    is_overall = pl.col("slice") == "overall"
    overall = frame.filter(is_overall)
    rest = frame.filter(~is_overall)
    ci_name = f"{level:.0%} interval"

    def verdict_cls(v: Any) -> str:
        return {"worse": "w", "better": "b"}.get(v, "")

    cards = []
    for r in overall.iter_rows(named=True):
        v = r["verdict_adjusted"]
        cards.append(_card(
            f"{r['metric']}: {r['model']} \u2212 {ref}", _num(r["delta"]),
            sub=f"{level:.0%} CI {_interval(r['delta_lo'], r['delta_hi'])}",
            note=f'<span class="badge {verdict_cls(v)}">{_e(v or "undefined")}</span> '
                 f"{_e(ref)} {_num(r['_ref'])} \u2192 {_e(r['model'])} {_num(r['_model'])}",
            cls=verdict_cls(v)))
    headline = _section("headline", "Overall", f'<div class="cards">{"".join(cards)}</div>',
                        f"Differences model \u2212 reference (<code>{_e(ref)}</code>) on the "
                        f"same rows, paired bootstrap ({_e(cmp.method)}, {_e(ci_name)}s). "
                        f"Verdicts under the correction <b>{_e(correction)}</b>: {_e(what)}.")
    chart = ""
    metrics = table["metric"].unique(maintain_order=True).to_list()
    shown_metric = metric if metric is not None else _chart_metric(metrics)
    if shown_metric is not None and shown_metric not in metrics:
        raise InvalidArgumentError(
            f"metric {shown_metric!r} was not compared; compared: "
            f"{', '.join(map(repr, metrics))}")
    if shown_metric is not None and models:
        m, model = shown_metric, models[0]
        rows = rest.filter((pl.col("metric") == m) & (pl.col("model") == model)
                           & pl.col("delta").is_not_null() & pl.col("delta").is_not_nan())
        rows = rows.sort("delta", descending=_higher_is_better(m) is False,
                         maintain_order=True)
        top = rows.head(MAX_CHART_ROWS)
        if top.height:
            o = overall.filter((pl.col("metric") == m) & (pl.col("model") == model))
            o_delta = o["delta"][0] if o.height else None
            svg = _forest_svg(
                top["slice"].to_list(), _floats(top, "delta"), _floats(top, "delta_lo"),
                _floats(top, "delta_hi"),
                [verdict_cls(v) for v in top["verdict_adjusted"].to_list()],
                ref=o_delta, ref_label="overall", zero=True)
            lead = (f"<code>{_e(m)}</code>: {_e(model)} \u2212 {_e(ref)} per slice, the worst "
                    f"{top.height} of {rows.height:,}, with each slice's own {_e(ci_name)}; "
                    f"colored by the verdict under the {_e(correction)} correction "
                    "(red worse, green better).")
            chart = _section("chart", f"{m}: delta by slice", f'<div class="figure">{svg}'
                             "</div>", lead)
    head = [("slice", "", ""), ("metric", "", ""), ("model", "", ""), ("n", "num", "rows"),
            (f"{ref} (reference)", "num", ""), ("model value", "num", ""),
            ("delta", "num", f"model \u2212 reference, with its own {ci_name}"),
            ("band", "num", "simultaneous max-T band"), ("p", "num", "p-value, uncorrected"),
            ("p adjusted", "num", f"p-value under the {correction} correction"),
            ("verdict", "", f"under the {correction} correction"),
            ("uncorrected", "", "verdict from the row's own interval")]
    cols = ["slice", "metric", "model", "_n", "_ref", "_model", "delta", "delta_lo",
            "delta_hi", "simultaneous_lo", "simultaneous_hi", "p_value", "p_adjusted",
            "verdict_adjusted", "verdict"]

    def html_rows(part: pl.DataFrame) -> list[str]:
        out = []
        for (s, m, model, n, rv, mv, d, dlo, dhi, slo, shi, p, pa, va,
             vr) in part.select(cols).rows():
            cls = verdict_cls(va)
            out.append(
                f"<tr{_attr('class', cls)}>"
                f'<td class="t">{_e(s)}</td><td class="t">{_e(m)}</td><td class="t">'
                f"{_e(model)}</td>{_cell(n)}{_cell(rv)}"
                f"{_cell(mv)}{_cell(d, dlo, dhi)}<td>{_interval(slo, shi)}</td>{_cell(p)}"
                f'{_cell(pa)}<td class="t">{_e(va) if va else ""}</td><td class="t">'
                f'{_e(vr) if vr else ""}</td>'
                "</tr>")
        return out

    pinned = html_rows(overall)
    body = html_rows(rest)
    n_worse = int((rest["verdict_adjusted"] == "worse").sum())
    lead = (f"One row per (slice, metric, model); the overall rows stay on top. "
            f"{n_worse:,} rows are worse under the {_e(correction)} correction.")
    slices = _section("slices", "Slices", _table("slice-table", head, pinned, body, "rows",
                                                 intervals=True), lead)
    subtitle = (f"reference <code>{_e(ref)}</code> \u00b7 models "
                + ", ".join(f"<code>{_e(m)}</code>" for m in models)
                + f" \u00b7 {len(metrics)} metrics \u00b7 correction: {_e(correction)}")
    return subtitle, headline + chart + slices, "Model comparison"


def _discovery(table: pl.DataFrame) -> tuple[str, str, str]:
    regressions = all(c in table.columns for c in _REGRESSIONS)
    sig = table["significant"].fill_null(False) if "significant" in table.columns else \
        pl.Series([False] * table.height)
    n_sig = int(sig.sum())
    cards = [_card("slices found", _num(table.height)),
             _card("significant", _num(n_sig),
                   note="after the table's multiple-testing correction")]
    if table.height:
        best = table.row(0, named=True)
        if regressions:
            cards.append(_card("top regression", _e(best["slice"]),
                               sub=f"delta {_num(best['delta'])} "
                                   f"{_interval(best['delta_lo'], best['delta_hi'])}",
                               cls="wide"))
        else:
            cards.append(_card("top slice", _e(best["slice"]),
                               sub=f"error \u00d7{_num(best['error_ratio'])} of average, "
                                   f"{_num(best['size'])} rows", cls="wide"))
    headline = _section("headline", "Summary", f'<div class="cards">{"".join(cards)}</div>')
    top = table.head(MAX_CHART_ROWS)
    chart = ""
    if top.height:
        labels = top["slice"].cast(pl.String).to_list()
        kinds = ["w" if s else "" for s in sig.head(MAX_CHART_ROWS).to_list()]

        if regressions:
            svg = _forest_svg(labels, _floats(top, "delta"), _floats(top, "delta_lo"),
                              _floats(top, "delta_hi"), kinds,
                              zero=True)
            lead = ("The error of the model minus the reference's in each slice, with its "
                    "interval; red: significant.")
        else:
            nan = np.full(top.height, np.nan)
            svg = _forest_svg(labels, _floats(top, "error_ratio"), nan, nan, kinds, ref=1.0,
                              ref_label="average error", stem=True)
            lead = ("Each slice's mean error as a multiple of the average error, in rank "
                    "order; red: significant.")
        chart = _section("chart", "Error change by slice" if regressions else
                         "Error by slice", f'<div class="figure">{svg}</div>', lead)
    # Every column but the predicates (the slice label says them) and, for regressions, the
    # interval bounds (shown under the delta).
    shown = [c for c in table.columns if c != "predicates"
             and not (regressions and c in ("delta_lo", "delta_hi"))]
    numeric = {c for c in shown if table.schema[c].is_numeric()}
    head = [(c, "num" if c in numeric else "", "") for c in shown]
    rows = []
    bounds = table.select("delta_lo", "delta_hi").rows() if regressions else []
    for i, r in enumerate(table.select(shown).rows()):
        cells = []
        for c, v in zip(shown, r, strict=True):
            if c == "delta" and regressions:
                cells.append(_cell(v, *bounds[i]))
            elif c in numeric:
                cells.append(_cell(v))
            elif isinstance(v, bool):
                cells.append(f'<td class="t">{"yes" if v else "no"}</td>')
            else:
                cells.append(f'<td class="t">{"" if v is None else _e(v)}</td>')
        cls = ' class="w"' if sig[i] else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    lead = ("The slices found, ranked; significant rows are highlighted. Columns as in "
            "docs/discovery.md.")
    body = _section("slices", "Slices", _table("slice-table", head, [], rows, "slices",
                                               intervals=regressions), lead)
    kind = "Discovered regressions" if regressions else "Discovered slices"
    return f"{table.height:,} slices \u00b7 {n_sig:,} significant", headline + chart + body, kind


def _reliability(rel: pl.DataFrame) -> tuple[str, str, str]:
    w = pl.col("weight_sum").cast(pl.Float64)
    gap = (pl.col("frac_positive") - pl.col("mean_score")).abs()
    stats = rel.group_by("slice", maintain_order=True).agg(
        pl.col("count").sum().alias("rows"),
        pl.len().alias("bins"),
        ((w * gap).sum() / w.sum()).alias("ece"),
        gap.max().alias("mce"),
        ((w * pl.col("mean_score")).sum() / w.sum()).alias("mean_score"),
        ((w * pl.col("frac_positive")).sum() / w.sum()).alias("frac_positive"),
    )
    is_overall = pl.col("slice") == "overall"
    overall = stats.filter(is_overall)
    rest = stats.filter(~is_overall)
    cards = []
    if overall.height:
        o = overall.row(0, named=True)
        cards = [_card("rows", _num(o["rows"])), _card("bins per slice", _num(o["bins"])),
                 _card("ECE", _num(o["ece"]), note="weighted mean |fraction positive \u2212 "
                                                   "mean score| over the bins"),
                 _card("MCE", _num(o["mce"]), note="largest gap of a bin"),
                 _card("mean score", _num(o["mean_score"])),
                 _card("fraction positive", _num(o["frac_positive"]))]
    headline = _section("headline", "Overall", f'<div class="cards">{"".join(cards)}</div>')
    worst = rest.sort("ece", descending=True, nulls_last=True, maintain_order=True)
    picked = pl.concat([overall, worst]).head(MAX_DIAGRAMS)["slice"].to_list()
    parts = rel.partition_by("slice", as_dict=True, maintain_order=True)
    diagrams = "".join(_reliability_svg(s, parts[(s,)]) for s in picked)
    lead = ("Per bin: the fraction of positives against the mean score, with its Wilson "
            "interval; the dashed diagonal is perfect calibration. Under each diagram, the "
            "histogram of the scores: each bar spans its bin's true range and its area is the "
            "bin's rows (a bin of tied scores, zero wide, is a line).")
    if stats.height > len(picked):
        lead += (f" Showing overall and the {len(picked) - min(overall.height, 1)} slices with "
                 f"the highest ECE of {rest.height:,}; the table lists all.")
    charts = _section("diagrams", "Reliability diagrams",
                      f'<div class="diagrams">{diagrams}</div>', lead)
    head = [("slice", "", ""), ("rows", "num", ""), ("bins", "num", ""),
            ("ECE", "num", "weighted mean gap over the bins"),
            ("MCE", "num", "largest gap of a bin"), ("mean score", "num", ""),
            ("fraction positive", "num", "")]

    def html_rows(part: pl.DataFrame) -> list[str]:
        return [f'<tr><td class="t">{_e(s)}</td>{"".join(_cell(v) for v in rest_)}</tr>'
                for s, *rest_ in part.select("slice", "rows", "bins", "ece", "mce",
                                             "mean_score", "frac_positive").rows()]

    pinned = [r.replace("<tr>", '<tr class="overall">', 1) for r in html_rows(overall)]
    table = _section("slices", "Slices", _table("slice-table", head, pinned, html_rows(rest),
                                                "slices"))
    subtitle = f"{rest.height:,} slices \u00b7 {_num(stats['bins'].max())} bins"
    return subtitle, headline + charts + table, "Reliability"


# ----------------------------------------------------------------------------------------
# the page


_CSS = """
:root{--fg:#1f2933;--muted:#6b7785;--line:#e3e7ec;--bg:#f6f8fa;--accent:#2f6fad;
--worse:#b42318;--worse-bg:#fdecea;--better:#18794e;--better-bg:#e7f6ee}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:var(--fg);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:22px 32px 16px}
header h1{margin:0 0 4px;font-size:22px;font-weight:650}
.sub{color:var(--muted);margin:0}
main{padding:8px 32px 32px;max-width:1400px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;
margin:18px 0}
h2{font-size:16px;margin:0 0 10px;font-weight:650}
.lead{color:var(--muted);margin:0 0 12px;max-width:980px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg);
padding:1px 4px;border-radius:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:10px 12px;background:#fff}
.card.wide{grid-column:span 2}
.card .k{font-size:12px;color:var(--muted);overflow-wrap:anywhere}
.card .v{font-size:21px;font-weight:600;font-variant-numeric:tabular-nums;
overflow-wrap:anywhere}
.card .sub{font-size:12px;color:var(--fg);font-variant-numeric:tabular-nums}
.card .note{font-size:11.5px;color:var(--muted);margin-top:2px}
.card.w{border-color:#f1b5ae;background:var(--worse-bg)}
.card.b{border-color:#a6dcbf;background:var(--better-bg)}
.badge{display:inline-block;border-radius:9px;padding:0 7px;font-size:11px;
background:var(--line);color:var(--fg)}
.badge.w{background:var(--worse);color:#fff}.badge.b{background:var(--better);color:#fff}
.figure{overflow-x:auto}
.diagrams{display:flex;flex-wrap:wrap;gap:6px 14px}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:var(--fg)}
svg .zebra{fill:#f7f9fb}svg .grid{stroke:#e6e9ed}svg .tick{text-anchor:middle;fill:var(--muted)}
svg .ytick{text-anchor:end;fill:var(--muted)}svg .label{text-anchor:end}
svg .val{fill:var(--muted);font-variant-numeric:tabular-nums}
svg .band{fill:#1f2933;opacity:.07}svg .ref{stroke:#1f2933;stroke-dasharray:4 3}
svg .reflabel{text-anchor:middle;fill:var(--muted)}svg .zero{stroke:#8a949e}
svg .ci{stroke:var(--accent);stroke-width:2;opacity:.75}svg .pt{fill:var(--accent)}
svg .w .ci{stroke:var(--worse)}svg .w .pt{fill:var(--worse)}svg .w .label{fill:var(--worse)}
svg .b .ci{stroke:var(--better)}svg .b .pt{fill:var(--better)}
svg .frame{fill:none;stroke:#c9d0d8}svg .diag{stroke:#8a949e;stroke-dasharray:4 3}
svg .curve{fill:none;stroke:var(--accent);stroke-width:1.5;opacity:.6}
svg .bar{fill:#9fb8d3}svg .spike{stroke:#9fb8d3;stroke-width:2}svg .axis{stroke:#c9d0d8}
svg .axlabel{text-anchor:middle;fill:var(--muted)}svg .dtitle{font-weight:600}
.tools{display:flex;gap:12px;align-items:center;margin-bottom:8px}
.tools input[type=search]{font:inherit;padding:5px 9px;border:1px solid #cfd6dd;border-radius:6px;
width:260px}
.count,.hint{color:var(--muted);font-size:12.5px}
.scroll{max-height:72vh;overflow:auto;border:1px solid var(--line);border-radius:6px}
table{border-collapse:separate;border-spacing:0;font-size:13px;width:100%}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;
vertical-align:top;white-space:nowrap}
thead th{position:sticky;top:0;background:#f0f3f6;font-weight:600;z-index:1}
table.sortable td:first-child{position:sticky;left:0;background:inherit}
table.sortable thead th:first-child{left:0;z-index:2}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:hover{background:#e6ebf0}
th.num,td{font-variant-numeric:tabular-nums}th.num{text-align:right}
td i{display:block;font-style:normal;font-size:11px;color:var(--muted)}
table.hide-ci td i{display:none}
.toggle{color:var(--muted);font-size:12.5px;display:flex;gap:4px;align-items:center}
td{text-align:right}td.t{text-align:left}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:9px}
tbody tr{background:#fff}tbody tr:nth-child(even){background:#fafbfc}
tbody.pinned tr{background:#eef3f8;font-weight:600}
tbody.pinned tr:last-child td{border-bottom:2px solid #cdd6e0}
tbody td.w{background:var(--worse-bg);color:var(--worse);font-weight:600}
td.w i{color:var(--worse)}
tbody tr.w{background:var(--worse-bg)}tbody tr.b{background:var(--better-bg)}
tr.hw td:first-child::before{content:"";display:inline-block;width:7px;height:7px;
border-radius:50%;background:var(--worse);margin-right:6px;vertical-align:1px}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;vertical-align:-1px}
.swatch.w{background:var(--worse-bg);border:1px solid var(--worse)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0 0 8px}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
details{margin-top:8px}summary{cursor:pointer;color:var(--accent)}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px;
overflow:auto;max-height:420px;font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table.plain{width:auto;margin-top:6px}table.plain td{text-align:left}
footer{color:var(--muted);font-size:12px;padding:0 32px 24px}
"""

# Sorting (click or Enter on a header; again to reverse) and filtering of the tables. It reads
# the DOM only: no data is ever written into the script.
_JS = """
(function () {
  "use strict";
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  function key(td, numeric) {
    if (!td) { return null; }
    if (!numeric) { return td.textContent; }
    var first = td.firstChild ? td.firstChild.textContent : "";
    var v = parseFloat(first.replace(/,/g, ""));
    return isNaN(v) ? null : v;
  }
  function sort(table, th, col) {
    var body = table.tBodies[table.tBodies.length - 1];
    var numeric = th.classList.contains("num");
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var keyed = Array.prototype.map.call(body.rows, function (row, i) {
      return [key(row.cells[col], numeric), i, row];
    });
    keyed.sort(function (a, b) {
      if (a[0] === null || b[0] === null) {
        return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1);
      }
      var c = numeric ? a[0] - b[0] : collator.compare(a[0], b[0]);
      return (ascending ? c : -c) || a[1] - b[1];
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k[2]); });
    body.appendChild(frag);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (t) {
    Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sort(t, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(t, th, col); }
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input[data-intervals]"), function (c) {
    var table = document.getElementById(c.getAttribute("data-intervals"));
    c.addEventListener("change", function () {
      table.classList.toggle("hide-ci", !c.checked);
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input[data-filter]"), function (f) {
    var table = document.getElementById(f.getAttribute("data-filter"));
    var count = f.parentNode.querySelector(".count");
    var label = count.textContent.replace(/^[0-9,]+ /, "");
    f.addEventListener("input", function () {
      var q = f.value.toLowerCase(), body = table.tBodies[table.tBodies.length - 1], shown = 0;
      Array.prototype.forEach.call(body.rows, function (row) {
        var hit = !q || row.textContent.toLowerCase().indexOf(q) >= 0;
        row.hidden = !hit;
        if (hit) { shown += 1; }
      });
      count.textContent = (q ? shown.toLocaleString("en-US") + " of " : "") +
        body.rows.length.toLocaleString("en-US") + " " + label;
    });
  });
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
# No request of any kind leaves the page; the one script runs by its hash, so even a value
# that escaped escaping could not run script.
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'")


def _kind(obj: Any) -> tuple[str, Any]:
    """Which page ``obj`` gets, and the object or table it is drawn from."""
    from ._compare import Comparison
    from .report import Report

    if isinstance(obj, Report):
        return "report", obj
    if isinstance(obj, Comparison):
        return "comparison", obj
    table = obj
    if not isinstance(obj, pl.DataFrame):
        inner = getattr(obj, "table", None)
        if isinstance(inner, pl.DataFrame):
            table = inner
        elif hasattr(obj, "__arrow_c_stream__") or hasattr(obj, "to_arrow"):
            try:
                table = pl.DataFrame(obj)
            except Exception as e:  # polars raises several types for unusable input
                raise InvalidArgumentError(f"cannot read {type(obj).__name__} as a table: {e}"
                                           ) from e
    if isinstance(table, pl.DataFrame):
        columns = set(table.columns)
        if set(_RELIABILITY) <= columns:
            return "reliability", table
        if set(_REGRESSIONS) <= columns or set(_DISCOVERY) <= columns:
            return "discovery", table
        raise InvalidArgumentError(
            "render takes an assay.Report, an assay.Comparison, or the table of "
            "assay.discover_slices, assay.discover_regressions or assay.reliability; this "
            f"table's columns are {', '.join(map(repr, table.columns))}")
    raise InvalidArgumentError(
        "render takes an assay.Report, an assay.Comparison, or the table of "
        "assay.discover_slices, assay.discover_regressions or assay.reliability; got "
        f"{type(obj).__name__}")


def render(obj: Any, *, title: str | None = None, metric: str | None = None) -> str:
    """One self-contained HTML page for a result, as a string.

    The page needs no network (inline CSS, inline SVG charts, a few lines of JavaScript that
    sort and filter its tables, and a Content-Security-Policy that forbids any request) and
    escapes every value it shows. What it holds is described in :mod:`assay.html`.

    Parameters
    ----------
    obj : Report, Comparison or polars.DataFrame
        An :class:`assay.Report`, an :class:`assay.Comparison`, the table returned by
        :func:`assay.discover_slices` or :func:`assay.discover_regressions` (or an object
        holding it as ``.table``), or the table returned by :func:`assay.reliability`.
    title : str, optional
        The page's title (default: what the result is).
    metric : str, optional
        The metric of a Report's or Comparison's chart (default: the first metric with a
        direction, e.g. ``roc_auc`` before ``base_rate``).

    Returns
    -------
    str
        The page, starting with ``<!DOCTYPE html>``; write it as UTF-8 (or use :func:`write`).

    Raises
    ------
    assay.errors.InvalidArgumentError
        ``obj`` is none of the above, or ``metric`` is not one of its metrics.

    Examples
    --------
    >>> import assay, numpy as np
    >>> from assay.html import render
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 2000)
    >>> p = np.clip(0.35 * y + 0.65 * rng.random(2000), 0, 1)
    >>> g = rng.choice(["a", "b", "<c>"], 2000)
    >>> rep = assay.evaluate({"y": y, "p": p, "g": g}, label="y", score="p", slices=["g"],
    ...                      metrics=["roc_auc", "accuracy"], bootstrap=100)
    >>> page = render(rep, title="Churn model, March")
    >>> page.startswith("<!DOCTYPE html>"), "g=&lt;c&gt;" in page, "g=<c>" in page
    (True, True, False)
    """
    if title is not None and not isinstance(title, str):
        raise InvalidArgumentError(f"title must be a string or None, got {type(title).__name__}")
    if metric is not None and not isinstance(metric, str):
        raise InvalidArgumentError(
            f"metric must be a metric name or None, got {type(metric).__name__}")
    kind, target = _kind(obj)
    if kind == "report":
        subtitle, body, default = _report(target, metric)
    elif kind == "comparison":
        subtitle, body, default = _comparison(target, metric)
    elif kind == "discovery":
        subtitle, body, default = _discovery(target)
    else:
        subtitle, body, default = _reliability(target)
    from ._native import __version__

    heading = title if title is not None else default
    kind_note = "" if title is None else f"{_e(default)} \u00b7 "
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="assay {_e(__version__)}">'
        f"<title>{_e(heading)}</title><link rel=\"icon\" href=\"data:,\">"
        f"<style>{_CSS}</style></head>\n<body><header><h1>{_e(heading)}</h1>"
        f'<p class="sub">{kind_note}{subtitle}</p></header>\n<main>{body}'
        f"{_provenance(obj)}</main>\n<footer>Made with assay {_e(__version__)}. A "
        "self-contained page: it loads nothing from the network.</footer>"
        f"<script>{_JS}</script></body></html>\n"
    )


def write(obj: Any, path: str | os.PathLike[str], *, title: str | None = None,
          metric: str | None = None) -> Path:
    """Write :func:`render`'s page for ``obj`` to ``path`` (UTF-8) and return the path.

    >>> import assay, numpy as np, tempfile, pathlib
    >>> from assay.html import write
    >>> rel = assay.reliability({"y": np.array([0, 1, 1, 0]), "p": np.array([.1, .8, .6, .3])},
    ...                         label="y", score="p", n_bins=2)
    >>> out = write(rel, pathlib.Path(tempfile.mkdtemp()) / "calibration.html")
    >>> out.read_text(encoding="utf-8").count("<svg class=\\"diagram\\"")
    1
    """
    page = render(obj, title=title, metric=metric)
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out


def _page(obj: Any, path: str | os.PathLike[str] | None, title: str | None,
          metric: str | None) -> str | Path:
    """``Report.to_html`` / ``Comparison.to_html``: the page, or its path once written."""
    if path is None:
        return render(obj, title=title, metric=metric)
    return write(obj, path, title=title, metric=metric)
