"""``Report.disparity``: how far one metric spreads across the slices of one spec (the groups),
between groups and to overall, with bootstrap intervals from the report's shared replicates;
and the named fairness criteria of binary models. Definitions: docs/disparity.md.

Every group's value and every replicate of it come from the report; the statistics are
recomputed in each replicate (its own minimum, maximum, ...), so an interval covers the
statistic, not one group. No per-row work happens here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ._args import int_arg, show
from .errors import InvalidArgumentError
from .report import ArrowResult, frame_to_arrow

if TYPE_CHECKING:
    from .report import Report

__all__ = ["Disparity", "CRITERIA", "STATISTICS", "COLUMNS"]

CRITERIA: dict[str, tuple[str, ...]] = {
    "demographic_parity": ("prediction_rate",),
    "equal_opportunity": ("recall",),
    "equalized_odds": ("recall", "fpr"),
}
"""The named fairness criteria of binary models and the metrics they compare across groups
(equalized odds: the worse of the true- and false-positive-rate disparities)."""

STATISTICS: tuple[str, ...] = (
    "group_min", "group_max", "difference", "ratio", "difference_to_overall",
    "ratio_to_overall",
)
"""The statistics of a metric's disparity, in table order (a named criterion reports the last
four)."""

COLUMNS: tuple[str, ...] = ("statistic", "metric", "value", "lo", "hi", "slices", "note")
"""The columns of :attr:`Disparity.table`."""

_MIN_DEFINED = 0.9  # as the engine: an interval needs 90% of the replicates defined
_NO_REPS = ("no interval: the report has no bootstrap replicates (evaluate with bootstrap=B "
            "and ci_method='percentile', 'basic' or 'bca')")
_NOT_KEPT = ("no interval: the report did not keep its replicates (the job's would exceed "
             "2**25 values); evaluate only the slices and metrics needed")
_FEW_REPS = "no interval: fewer than 90% of the replicates define it"
_FEW_GROUPS = "undefined: fewer than 2 groups are left"
_RATIO = "undefined: a ratio needs values >= 0 and a largest value > 0"
_RATIO_OVERALL = "undefined: a ratio to overall needs values >= 0 and an overall value > 0"
_NO_OVERALL = "undefined: the overall value is null"


@dataclass
class Disparity(ArrowResult):
    """What :meth:`assay.Report.disparity` returns. ``to_arrow()``/``to_dict()``/``to_json()``
    give :attr:`table`."""

    table: pl.DataFrame
    """One row per statistic: ``statistic``, ``metric`` (the metric that attains it: for
    equalized odds ``recall`` or ``fpr``), ``value``, ``lo``/``hi`` (the percentile interval
    over the report's bootstrap replicates, at the report's level), ``slices`` (the groups
    that attain it: [min] for ``group_min``, [max, min] for ``difference``, [min, max] for
    ``ratio``, the farthest group for the ``*_to_overall`` statistics) and ``note`` (why a
    value or interval is null)."""
    groups: pl.DataFrame
    """The groups compared: ``slice``, ``n`` and the value of each metric used."""
    excluded: pl.DataFrame
    """The groups left out: ``slice``, ``n``, ``reason`` (a null value, or fewer than
    ``min_size`` rows)."""
    metric: str
    """The metric or criterion asked for."""
    spec: tuple[str, ...]
    """The slice spec whose slices are the groups."""
    ci: float | None
    """The level of the intervals (None without replicates)."""

    def __post_init__(self) -> None:
        self._arrow = frame_to_arrow(self.table)

    def __repr__(self) -> str:
        return (f"assay.Disparity of {self.metric} across {' x '.join(self.spec)} "
                f"({self.groups.height} groups, {self.excluded.height} excluded)\n{self.table}")


def disparity(rep: Report, metric: Any, spec: Any, min_size: Any = 0) -> Disparity:
    """Implements :meth:`assay.Report.disparity`."""
    if not isinstance(metric, str):
        raise InvalidArgumentError(
            f"metric must be a metric name or a criterion, got {show(metric)}")
    min_size = int_arg(min_size, "min_size", None, 0, None)
    if metric in CRITERIA:
        used = CRITERIA[metric]
        missing = [m for m in used if m not in rep.metrics]
        if missing:
            raise InvalidArgumentError(
                f"{metric} compares {' and '.join(used)} across groups; this report has no "
                f"{', '.join(missing)} (evaluate with metrics=[..., "
                + ", ".join(repr(m) for m in missing) + "])")
    elif metric in rep.metrics:
        used = (metric,)
    else:
        raise InvalidArgumentError(
            f"unknown metric {metric!r}: the report's metrics are "
            + ", ".join(map(repr, rep.metrics)) + "; the named criteria are "
            + ", ".join(map(repr, CRITERIA)))
    features = _spec_arg(spec)
    ids = rep._spec_ids(features)
    cols = tuple(f if isinstance(f, str) else f.column for f in features)
    table = rep.table
    specs = rep._row_specs
    overall_row = int(np.flatnonzero(specs == 0)[0])
    rows = np.flatnonzero(np.isin(specs, ids))
    labels = table["slice"].to_numpy()[rows]
    n = table["n"].to_numpy()[rows].astype(np.int64)
    values = {m: table[m].to_numpy()[rows].astype(np.float64) for m in used}
    # A group is left out when a metric used is null there, or it is too small.
    null = np.zeros(len(rows), dtype=bool)
    for v in values.values():
        null |= np.isnan(v)
    small = n < min_size
    keep = ~null & ~small
    reasons = np.where(null, "null value", f"fewer than {min_size} rows")
    excluded = pl.DataFrame(
        {"slice": labels[~keep].tolist(), "n": n[~keep].tolist(),
         "reason": reasons[~keep].tolist()},
        schema={"slice": pl.String, "n": pl.UInt64, "reason": pl.String})
    groups = pl.DataFrame(
        {"slice": labels[keep].tolist(), "n": n[keep].tolist(),
         **{m: values[m][keep].tolist() for m in used}},
        schema={"slice": pl.String, "n": pl.UInt64, **{m: pl.Float64 for m in used}})
    labels = labels[keep]

    reps_note = None
    if rep.ci_method is None or rep._level is None or rep.ci_method == "analytic":
        reps_note = _NO_REPS
    elif not rep._has_replicates():
        reps_note = _NOT_KEPT
    per_metric = []
    for m in used:
        v = values[m][keep]
        o = float(table[m][overall_row]) if table[m][overall_row] is not None else np.nan
        if reps_note is None:
            r = rep._replicates(m)
            reps, o_reps = r[rows[keep]], r[overall_row]
        else:
            reps = o_reps = None
        per_metric.append(_statistics(m, v, o, reps, o_reps, labels))
    if metric == "equalized_odds":
        out = _worse(per_metric[0], per_metric[1])
    elif metric in CRITERIA:
        out = {k: per_metric[0][k] for k in STATISTICS[2:]}
    else:
        out = per_metric[0]
    level = None if reps_note is not None else rep._level
    records = []
    for stat, (value, stat_reps, slices, m, note) in out.items():
        lo = hi = None
        if note is None and value is not None:
            if reps_note is not None:
                note = reps_note
            else:
                assert stat_reps is not None and level is not None
                lo, hi, note = _interval(stat_reps, level)
        records.append({"statistic": stat, "metric": m, "value": value, "lo": lo, "hi": hi,
                        "slices": slices, "note": note})
    frame = pl.DataFrame(records, schema={
        "statistic": pl.String, "metric": pl.String, "value": pl.Float64, "lo": pl.Float64,
        "hi": pl.Float64, "slices": pl.List(pl.String), "note": pl.String})
    return Disparity(table=frame, groups=groups, excluded=excluded, metric=metric, spec=cols,
                     ci=level)


def _spec_arg(spec: Any) -> tuple[Any, ...]:
    """The spec's features (column names and ``Bins``)."""
    from ._evaluate import Bins

    if isinstance(spec, (str, Bins)):
        return (spec,)
    if isinstance(spec, Sequence) and spec and all(isinstance(c, (str, Bins)) for c in spec):
        return tuple(spec)
    raise InvalidArgumentError(
        f"spec must be a slice spec of the report: a column name, a tuple of column names or "
        f"assay.bins(...), got {show(spec)}")


# One statistic: (value or None, its replicates or None, the slices attaining it, the metric,
# the note of a null value).
_Stat = tuple[float | None, np.ndarray | None, list[str], str, str | None]


def _statistics(metric: str, v: np.ndarray, o: float, reps: np.ndarray | None,
                o_reps: np.ndarray | None, labels: np.ndarray) -> dict[str, _Stat]:
    """Every statistic of `metric` over the groups' values `v` (overall value `o`) and, per
    replicate, over `reps` (groups x B) and `o_reps`."""
    out: dict[str, _Stat] = {}
    g = len(v)

    def put(name: str, value: float, rep_values: np.ndarray | None, slices: list[str],
            note: str | None = None) -> None:
        if note is not None:
            out[name] = (None, None, [], metric, note)
        else:
            out[name] = (float(value), rep_values, slices, metric, None)

    if g == 0:
        for name in STATISTICS:
            put(name, np.nan, None, [], _FEW_GROUPS)
        return out
    lo_i, hi_i = int(np.argmin(v)), int(np.argmax(v))
    have = reps is not None
    with np.errstate(invalid="ignore", divide="ignore"):
        rmin = reps.min(axis=0) if have else None  # NaN where any group's replicate is NaN
        rmax = reps.max(axis=0) if have else None
        put("group_min", v[lo_i], rmin, [labels[lo_i]])
        put("group_max", v[hi_i], rmax, [labels[hi_i]])
        if g < 2:
            put("difference", np.nan, None, [], _FEW_GROUPS)
            put("ratio", np.nan, None, [], _FEW_GROUPS)
        else:
            put("difference", v[hi_i] - v[lo_i], rmax - rmin if have else None,
                [labels[hi_i], labels[lo_i]])
            ok = v.min() >= 0 and v.max() > 0
            put("ratio", v[lo_i] / v[hi_i], _safe_ratio(rmin, rmax) if have else None,
                [labels[lo_i], labels[hi_i]], None if ok else _RATIO)
        if np.isnan(o):
            put("difference_to_overall", np.nan, None, [], _NO_OVERALL)
            put("ratio_to_overall", np.nan, None, [], _NO_OVERALL)
            return out
        dev = np.abs(v - o)
        far = int(np.argmax(dev))
        put("difference_to_overall", dev[far],
            np.abs(reps - o_reps).max(axis=0) if have else None, [labels[far]])
        ok = v.min() >= 0 and o > 0
        ratios = _to_one(v / o) if ok else v
        near = int(np.argmin(ratios))
        rep_ratio = None
        if have and ok:
            rr = _to_one(reps / o_reps)
            rr[:, ~(o_reps > 0)] = np.nan
            rr[:, (reps < 0).any(axis=0)] = np.nan
            rep_ratio = rr.min(axis=0)
        put("ratio_to_overall", ratios[near], rep_ratio, [labels[near]],
            None if ok else _RATIO_OVERALL)
    return out


def _to_one(x: np.ndarray) -> np.ndarray:
    """A ratio expressed as a number <= 1 (x, or 1/x above 1), as Fairlearn's."""
    return np.where(x > 1, 1 / x, x)


def _safe_ratio(rmin: np.ndarray, rmax: np.ndarray) -> np.ndarray:
    """Per replicate min / max, NaN where the ratio is undefined."""
    ok = (rmin >= 0) & (rmax > 0)
    return np.where(ok, rmin / np.where(ok, rmax, 1.0), np.nan)


def _worse(tpr: dict[str, _Stat], fpr: dict[str, _Stat]) -> dict[str, _Stat]:
    """Equalized odds: the larger of the two differences, the smaller of the two ratios, in
    every replicate too."""
    out: dict[str, _Stat] = {}
    for name in STATISTICS[2:]:
        a, b = tpr[name], fpr[name]
        if a[0] is None or b[0] is None:
            out[name] = a if a[0] is None else b
            continue
        larger = name.startswith("difference")
        pick_a = a[0] >= b[0] if larger else a[0] <= b[0]
        chosen = a if pick_a else b
        reps = None
        if a[1] is not None and b[1] is not None:
            reps = np.fmax(a[1], b[1]) if larger else np.fmin(a[1], b[1])
            reps[np.isnan(a[1]) | np.isnan(b[1])] = np.nan
        out[name] = (chosen[0], reps, chosen[2], chosen[3], None)
    return out


def _interval(reps: np.ndarray, level: float) -> tuple[float | None, float | None, str | None]:
    """The percentile interval of a statistic's replicates (numpy's linear quantiles, as the
    engine's)."""
    v = reps[~np.isnan(reps)]
    if len(v) < 2 or len(v) < _MIN_DEFINED * len(reps):
        return None, None, _FEW_REPS
    a = (1 - level) / 2
    lo, hi = np.quantile(v, [a, 1 - a])
    return float(lo), float(hi), None
