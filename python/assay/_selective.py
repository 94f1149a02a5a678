"""Confidence and thresholds: ``assay.thresholds``, ``assay.threshold_for`` and
``assay.selective`` (risk-coverage curves and AURC).

Every function sorts the scores once (``np.argsort``) and reads all thresholds or coverages off
cumulative sums of that order; slices take their rows of the same sorted order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from . import _common as c
from ._evaluate import MAX_BOOTSTRAP, SliceLike, ci_arg, evaluate
from ._text import escape_frame
from .errors import InvalidArgumentError, InvalidInputError
from .report import ArrowResult, arrow_to_dict, arrow_to_json, frame_to_arrow

__all__ = ["thresholds", "threshold_for", "ThresholdChoice", "selective", "SelectiveResult"]

_MAX_POINTS = 1_000_000  # thresholds / coverages of one curve (per slice)


def _suffix(x: np.ndarray) -> np.ndarray:
    """``out[k] = sum(x[k:])`` for k = 0..len(x) (exact for integers)."""
    out = np.zeros(x.size + 1, dtype=x.dtype)
    out[:-1] = np.cumsum(x[::-1])[::-1]
    return out


def _prefix(x: np.ndarray) -> np.ndarray:
    """``out[k] = sum(x[:k])`` for k = 0..len(x)."""
    out = np.zeros(x.size + 1, dtype=x.dtype)
    out[1:] = np.cumsum(x)
    return out


def _sorted_slices(order: np.ndarray, ss: c.SliceSet) -> list[np.ndarray]:
    """Each slice's rows, in the order of ``order`` (a subset of a sorted order is sorted)."""
    out = []
    n = order.size
    for rows in ss.rows:
        if rows.size == n:
            out.append(order)
            continue
        member = np.zeros(n, dtype=bool)
        member[rows] = True
        out.append(order[member[order]])
    return out


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------


def thresholds(
    data: Any,
    *,
    label: str,
    score: str,
    n: int = 101,
    at: Sequence[float] | None = None,
    weight: str | None = None,
    slices: Sequence[SliceLike] | SliceLike = (),
) -> pl.DataFrame:
    """The confusion table at many thresholds: counts, precision, recall, F1 and FPR.

    A row is predicted positive when ``score >= t``. The scores are sorted once; the counts at
    every threshold are read off cumulative sums of the labels in that order (binary search for
    each threshold), so a curve of any resolution costs one sort.

    Parameters
    ----------
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    label, score : str
        Columns of 0/1 labels and of scores.
    n : int
        Number of thresholds, evenly spaced over [0, 1] (``np.linspace(0, 1, n)``), in
        [2, 1000000].
    at : list of float, optional
        Explicit thresholds instead (any finite numbers, reported in the order given), e.g. the
        distinct scores.
    weight : str, optional
        Column of positive sample weights: counts become sums of weights.
    slices
        Slice specs as in :func:`assay.evaluate`; each slice gets its own curve.

    Returns
    -------
    polars.DataFrame
        One row per (slice, threshold), ``overall`` first: ``slice``, ``threshold``, ``tp``,
        ``fp``, ``tn``, ``fn`` (Int64, or Float64 weight sums with ``weight``), ``precision``,
        ``recall``, ``f1``, ``fpr``, ``accuracy``. Undefined values are null (precision with no
        predicted positives, recall without positives, FPR without negatives).

    Examples
    --------
    >>> import assay, numpy as np
    >>> data = {"y": np.array([0, 0, 1, 1]), "p": np.array([0.1, 0.4, 0.35, 0.8])}
    >>> assay.thresholds(data, label="y", score="p", n=3)
    shape: (3, 11)
    ┌─────────┬───────────┬─────┬─────┬───┬────────┬──────────┬─────┬──────────┐
    │ slice   ┆ threshold ┆ tp  ┆ fp  ┆ … ┆ recall ┆ f1       ┆ fpr ┆ accuracy │
    │ ---     ┆ ---       ┆ --- ┆ --- ┆   ┆ ---    ┆ ---      ┆ --- ┆ ---      │
    │ str     ┆ f64       ┆ i64 ┆ i64 ┆   ┆ f64    ┆ f64      ┆ f64 ┆ f64      │
    ╞═════════╪═══════════╪═════╪═════╪═══╪════════╪══════════╪═════╪══════════╡
    │ overall ┆ 0.0       ┆ 2   ┆ 2   ┆ … ┆ 1.0    ┆ 0.666667 ┆ 1.0 ┆ 0.5      │
    │ overall ┆ 0.5       ┆ 1   ┆ 0   ┆ … ┆ 0.5    ┆ 0.666667 ┆ 0.0 ┆ 0.75     │
    │ overall ┆ 1.0       ┆ 0   ┆ 0   ┆ … ┆ 0.0    ┆ 0.0      ┆ 0.0 ┆ 0.5      │
    └─────────┴───────────┴─────┴─────┴───┴────────┴──────────┴─────┴──────────┘
    """
    what = "thresholds"
    df = c.load(data, what)
    y = c.labels(df, label, what)
    s = c.scores(df, score, what)
    w = c.weights(df, weight, what)
    c.not_empty(df.height, what)
    if at is None:
        n = c.positive_int(n, "n", what, 2, _MAX_POINTS)
        grid = np.linspace(0.0, 1.0, n)
    else:
        if isinstance(at, (str, bytes)):
            raise InvalidArgumentError(f"{what}: at must be a list of numbers, got {c.show(at)}")
        try:
            grid = np.asarray(at, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgumentError(
                f"{what}: at must be a list of finite numbers, got {c.show(at)}"
            ) from None
        if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
            raise InvalidArgumentError(f"{what}: at must be a non-empty list of finite "
                                       f"numbers, got {c.show(at)}")
    ss = c.slice_set(df, slices, what)
    order = np.argsort(s, kind="stable")
    if w is None:
        pos = y.astype(np.int64)
        neg = 1 - pos
    else:
        pos = y * w
        neg = (1.0 - y) * w
    frames = []
    for label_j, rows in zip(ss.labels, _sorted_slices(order, ss), strict=True):
        k = np.searchsorted(s[rows], grid, side="left")  # rows below each threshold
        tp, fp = _suffix(pos[rows])[k], _suffix(neg[rows])[k]  # at or above the threshold
        fn, tn = _prefix(pos[rows])[k], _prefix(neg[rows])[k]  # below it
        frames.append(_confusion_frame(label_j, grid, tp, fp, tn, fn))
    return pl.concat(frames)


def _confusion_frame(slice_label: str, t: np.ndarray, tp: np.ndarray, fp: np.ndarray,
                     tn: np.ndarray, fn: np.ndarray) -> pl.DataFrame:
    cols: dict[str, Any] = {
        "slice": [slice_label] * t.size, "threshold": t, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }
    out = pl.DataFrame(cols)
    return out.with_columns(
        c.nullable(c.from_counts(m, tp, fp, tn, fn), m)
        for m in ("precision", "recall", "f1", "fpr", "accuracy")
    )


# --------------------------------------------------------------------------------------------
# threshold_for
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold chosen by :func:`threshold_for` and what it achieves.

    ``threshold`` is None (and ``met`` False) when no threshold meets the target. The
    ``*_lo``/``*_hi`` fields hold bootstrap intervals of the achieved values (None without
    ``bootstrap=``).
    """

    target: str
    goal: float
    met: bool
    threshold: float | None
    precision: float | None
    recall: float | None
    fpr: float | None
    f1: float | None
    tp: float | None
    fp: float | None
    tn: float | None
    fn: float | None
    precision_lo: float | None = None
    precision_hi: float | None = None
    recall_lo: float | None = None
    recall_hi: float | None = None
    fpr_lo: float | None = None
    fpr_hi: float | None = None
    ci: float | None = field(default=None, repr=False)

    @property
    def table(self) -> pl.DataFrame:
        """The choice as a one-row polars DataFrame."""
        row = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "ci"}
        schema = {k: (pl.String if k == "target" else pl.Boolean if k == "met" else pl.Float64)
                  for k in row}
        return pl.DataFrame([row], schema=schema)

    def to_arrow(self) -> pa.Table:
        """The choice as a one-row ``pyarrow.Table`` (without polars: safe in a forked
        child)."""
        fields = [k for k in self.__dataclass_fields__ if k != "ci"]
        types = {"target": pa.string(), "met": pa.bool_()}
        return pa.table({k: pa.array([getattr(self, k)], types.get(k, pa.float64()))
                         for k in fields})

    def to_dict(self) -> dict[str, list[Any]]:
        """The choice as a dict of one-element column lists (without polars)."""
        return arrow_to_dict(self.to_arrow())

    def to_json(self) -> str:
        """The choice as JSON ``{"columns": [...], "rows": [{...}]}`` (without polars)."""
        return arrow_to_json(self.to_arrow())

    def __repr__(self) -> str:
        rel = {"precision": ">=", "recall": ">=", "fpr": "<="}[self.target]
        head = f"assay.threshold_for: {self.target} {rel} {self.goal:g}"
        if not self.met:
            return f"{head}: no threshold meets it"

        def show(m: str) -> str:
            v = getattr(self, m)
            lo, hi = getattr(self, f"{m}_lo", None), getattr(self, f"{m}_hi", None)
            iv = f" [{c.fmt(lo)}, {c.fmt(hi)}]" if lo is not None or hi is not None else ""
            return f"{m} {c.fmt(v)}{iv}"

        return (f"{head}: threshold {self.threshold!r} gives "
                + ", ".join(show(m) for m in ("precision", "recall", "fpr")))


def threshold_for(
    data: Any,
    *,
    label: str,
    score: str,
    target_precision: float | None = None,
    target_recall: float | None = None,
    max_fpr: float | None = None,
    weight: str | None = None,
    bootstrap: int | None = None,
    ci: float = 0.95,
    seed: int = 0,
) -> ThresholdChoice:
    """The threshold that meets a precision, recall or false-positive-rate target.

    Give exactly one target. The candidates are the distinct scores (a row is positive when
    ``score >= threshold``), so tied rows always fall on the same side; the choice is:

    - ``target_precision``: the **lowest** threshold whose precision is ``>= target``. Recall
      only falls as the threshold rises, so this is the qualifying threshold with the highest
      recall (precision is not monotone in the threshold; every candidate is checked).
    - ``target_recall``: the **highest** threshold whose recall is ``>= target``: the fewest
      predicted positives (and false positives) that reach the recall.
    - ``max_fpr``: the **lowest** threshold whose FPR is ``<= max_fpr``: the highest recall
      within the false-positive budget.

    When no candidate qualifies, ``met`` is False and ``threshold`` None.

    Parameters
    ----------
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    label, score : str
        Columns of 0/1 labels and of scores.
    target_precision, target_recall, max_fpr : float
        The target, in [0, 1].
    weight : str, optional
        Column of positive sample weights.
    bootstrap : int, optional
        Replicates of the Poisson bootstrap of :func:`assay.evaluate` for intervals of the
        achieved precision, recall and FPR **at the chosen threshold** (the threshold held
        fixed). The variability of the choice of threshold itself is not included yet.
    ci : float
        Level of the intervals.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    ThresholdChoice
        ``threshold``, ``met``, the achieved ``precision``, ``recall``, ``fpr``, ``f1`` and
        counts, intervals with ``bootstrap``; ``.table`` is the same as a one-row polars
        DataFrame.

    Examples
    --------
    >>> import assay, numpy as np
    >>> data = {"y": np.array([0, 0, 1, 0, 1, 1]),
    ...         "p": np.array([0.1, 0.3, 0.4, 0.6, 0.7, 0.9])}
    >>> assay.threshold_for(data, label="y", score="p", target_precision=0.75)
    assay.threshold_for: precision >= 0.75: threshold 0.4 gives precision 0.75, recall 1, fpr 0.3333
    >>> assay.threshold_for(data, label="y", score="p", max_fpr=0.0).threshold
    0.7
    """
    what = "threshold_for"
    targets = {"precision": target_precision, "recall": target_recall, "fpr": max_fpr}
    given = [(k, v) for k, v in targets.items() if v is not None]
    if len(given) != 1:
        raise InvalidArgumentError(
            f"{what}: give exactly one of target_precision, target_recall, max_fpr "
            f"(got {len(given)})"
        )
    target, goal_arg = given[0]
    argname = {"precision": "target_precision", "recall": "target_recall", "fpr": "max_fpr"}
    goal = c.probability_arg(goal_arg, argname[target], what)
    if bootstrap is not None:
        c.positive_int(bootstrap, "bootstrap", what, 2, MAX_BOOTSTRAP)
    ci_arg(ci)
    c.seed_arg(seed, what)
    df = c.load(data, what)
    y = c.labels(df, label, what)
    s = c.scores(df, score, what)
    w = c.weights(df, weight, what)
    c.not_empty(df.height, what)
    ww = np.ones(df.height) if w is None else w
    if target in ("precision", "recall") and not (y > 0).any():
        raise InvalidInputError(f"{what}: {target} needs positive labels; {label!r} has none",
                                label)
    if target == "fpr" and not (y < 1).any():
        raise InvalidInputError(f"{what}: fpr needs negative labels; {label!r} has none", label)

    order = np.argsort(s, kind="stable")
    ss_ = s[order]
    pos = y[order] * ww[order] if w is not None else y[order].astype(np.int64)
    neg = (1.0 - y[order]) * ww[order] if w is not None else 1 - pos
    starts = np.flatnonzero(np.r_[True, ss_[1:] != ss_[:-1]])  # first row of each score
    tp, fp = _suffix(pos)[starts].astype(np.float64), _suffix(neg)[starts].astype(np.float64)
    fn, tn = _prefix(pos)[starts].astype(np.float64), _prefix(neg)[starts].astype(np.float64)
    P, N = float(pos.sum()), float(neg.sum())
    cand = ss_[starts]
    if target == "precision":
        ok = np.flatnonzero(c.ratio(tp, tp + fp) >= goal)
        j = int(ok[0]) if ok.size else None
    elif target == "recall":
        ok = np.flatnonzero(c.ratio(tp, P) >= goal)
        j = int(ok[-1]) if ok.size else None
    else:
        ok = np.flatnonzero(c.ratio(fp, N) <= goal)
        j = int(ok[0]) if ok.size else None
    if j is None:
        return ThresholdChoice(target, goal, False, *([None] * 10))
    raw = {m: float(c.from_counts(m, tp[j], fp[j], tn[j], fn[j]))
           for m in ("precision", "recall", "fpr", "f1")}
    vals = {m: (None if math.isnan(v) else v) for m, v in raw.items()}
    thr = float(cand[j])
    intervals: dict[str, float | None] = {}
    if bootstrap is not None:
        t = evaluate(df, label=label, score=score, weight=weight, threshold=thr,
                     metrics=["precision", "recall", "fpr"], bootstrap=bootstrap, ci=ci,
                     seed=seed).table
        for m in ("precision", "recall", "fpr"):
            intervals[f"{m}_lo"] = t.get_column(f"{m}_lo")[0]
            intervals[f"{m}_hi"] = t.get_column(f"{m}_hi")[0]
    return ThresholdChoice(
        target, goal, True, thr, vals["precision"], vals["recall"], vals["fpr"], vals["f1"],
        float(tp[j]), float(fp[j]), float(tn[j]), float(fn[j]), **intervals,
        ci=float(ci) if bootstrap is not None else None,
    )


# --------------------------------------------------------------------------------------------
# selective prediction
# --------------------------------------------------------------------------------------------


class SelectiveResult(ArrowResult):
    """Risk-coverage curves and AURC per slice (from :func:`selective`).
    ``to_arrow()``/``to_dict()``/``to_json()`` give ``table`` without polars (safe in a forked
    child).

    Attributes
    ----------
    table : polars.DataFrame
        One row per slice: ``slice``, ``n``, ``accuracy`` (full coverage), ``aurc``,
        ``aurc_optimal``, ``e_aurc``.
    curve : polars.DataFrame
        One row per (slice, coverage): ``slice``, ``coverage``, ``n_kept``,
        ``min_confidence``, ``risk``, then the metrics.
    """

    def __init__(self, table: pl.DataFrame, curve: pl.DataFrame) -> None:
        self.table = table
        self.curve = curve
        self._arrow = frame_to_arrow(table)

    def __repr__(self) -> str:
        points = self.curve.height // max(1, self.table.height)
        return (f"assay.selective: risk-coverage over {points} coverages per slice "
                f"(lower aurc is better)\n{escape_frame(self.table)}")


def selective(
    data: Any,
    *,
    label: str,
    score: str,
    slices: Sequence[SliceLike] | SliceLike = (),
    n: int = 100,
    threshold: float = 0.5,
    confidence: str | None = None,
    metrics: Sequence[str] | None = None,
) -> SelectiveResult:
    """Selective prediction: how good are the predictions the model is most sure of?

    Rows are ranked by confidence -- ``max(p, 1 - p)`` for a binary probability ``p``, or the
    ``confidence`` column -- and only the most confident fraction ``c`` (the coverage) is
    kept; the risk is the error rate ``1 - accuracy`` of the kept rows (a prediction is
    positive when ``p >= threshold``). A model whose confidence means something has a risk
    that falls as coverage falls.

    **AURC** (area under the risk-coverage curve, Geifman et al. 2019) is the mean over
    ``k = 1..N`` of the risk of the ``k`` most confident rows, computed over every ``k``
    (not only the ``n`` plotted coverages). ``aurc_optimal`` is the AURC of a perfect
    ranking with the same errors (all errors ranked last) and ``e_aurc = aurc -
    aurc_optimal`` ("excess AURC").

    **Ties** in confidence are not broken by row order: when only part of a tie group is
    kept, the kept rows count the group's errors pro rata -- the expected value over a random
    choice of which tied rows are kept. Without ties this is the usual definition.

    Parameters
    ----------
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    label, score : str
        Columns of 0/1 labels and of probabilities in [0, 1].
    slices
        Slice specs as in :func:`assay.evaluate`; each slice has its own ranking.
    n : int
        Points of the curve, in [1, 1000000]: coverages ``1/n, 2/n, ..., 1``. At coverage
        ``c`` a slice of ``N`` rows keeps ``k = ceil(c N)`` rows.
    threshold : float
        A row is predicted positive when ``score >= threshold``.
    confidence : str, optional
        Column of confidences (higher = surer) to rank by instead of ``max(p, 1 - p)``.
    metrics : list of str, optional
        Confusion metrics of the kept rows on the curve (default: accuracy): any of
        ``accuracy``, ``precision``, ``recall``, ``f1``, ``f<beta>``, ``specificity``, ``fpr``,
        ``fnr``, ``balanced_accuracy``, ``mcc``, ``base_rate``, ``prediction_rate``. With
        ties they are computed from the expected counts.

    Returns
    -------
    SelectiveResult
        ``.table`` (AURC per slice) and ``.curve`` (the risk-coverage curve per slice).

    Examples
    --------
    >>> import assay, numpy as np
    >>> data = {"y": np.array([1, 0, 1, 1]), "p": np.array([0.9, 0.2, 0.6, 0.45])}
    >>> res = assay.selective(data, label="y", score="p", n=4)
    >>> res.curve.select("coverage", "n_kept", "risk").rows()
    [(0.25, 1, 0.0), (0.5, 2, 0.0), (0.75, 3, 0.0), (1.0, 4, 0.25)]
    >>> round(res.table["aurc"][0], 4)
    0.0625
    """
    what = "selective"
    df = c.load(data, what)
    y = c.labels(df, label, what)
    p = c.scores(df, score, what, probability=confidence is None)
    c.not_empty(df.height, what)
    npts = c.positive_int(n, "n", what, 1, _MAX_POINTS)
    thr = c.real_arg(threshold, "threshold", what)
    conf = np.maximum(p, 1.0 - p) if confidence is None else c.scores(
        df, confidence, what, role="confidence")
    names = c.metric_names(metrics, what, c.CONFUSION_METRICS, ("accuracy",))
    ss = c.slice_set(df, slices, what)
    pred = (p >= thr).astype(np.float64)
    order = np.argsort(-conf, kind="stable")  # most confident first
    cells = {"tp": pred * y, "fp": pred * (1 - y), "tn": (1 - pred) * (1 - y),
             "fn": (1 - pred) * y}
    summary = []
    curves = []
    for label_j, rows in zip(ss.labels, _sorted_slices(order, ss), strict=True):
        N = rows.size
        k_all = np.arange(1, N + 1)
        expected = {name: _expected_topk(conf[rows], v[rows], k_all)
                    for name, v in cells.items()}
        errors = expected["fp"] + expected["fn"]
        risk_all = errors / k_all
        e_total = float(errors[-1]) if N else 0.0
        best = np.maximum(0.0, k_all - (N - e_total)) / k_all
        aurc = float(risk_all.mean()) if N else math.nan
        aurc_opt = float(best.mean()) if N else math.nan
        summary.append((label_j, N, 1.0 - e_total / N if N else math.nan, aurc, aurc_opt,
                        aurc - aurc_opt))
        m = np.arange(1, npts + 1)
        k = np.maximum(1, -(-m * N // npts))  # ceil(m N / n), at least one row
        idx = np.minimum(k, N) - 1
        cols: dict[str, Any] = {
            "slice": [label_j] * npts,
            "coverage": m / npts,
            "n_kept": k.astype(np.int64),
            "min_confidence": conf[rows][idx] if N else np.full(npts, np.nan),
            "risk": risk_all[idx] if N else np.full(npts, np.nan),
        }
        frame = pl.DataFrame(cols)
        frame = frame.with_columns(
            c.nullable(c.from_counts(name, *(expected[x][idx] for x in ("tp", "fp", "tn", "fn"))),
                       name)
            for name in names
        )
        curves.append(frame)
    table = pl.DataFrame(summary, schema={"slice": pl.String, "n": pl.Int64,
                                          "accuracy": pl.Float64, "aurc": pl.Float64,
                                          "aurc_optimal": pl.Float64, "e_aurc": pl.Float64},
                         orient="row")
    return SelectiveResult(table, pl.concat(curves))


def _expected_topk(conf_sorted: np.ndarray, v: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Expected sum of ``v`` over the ``k`` most confident rows (``conf_sorted`` descending),
    a partly kept tie group contributing pro rata."""
    n = conf_sorted.size
    if n == 0:
        return np.zeros(k.size)
    starts = np.flatnonzero(np.r_[True, conf_sorted[1:] != conf_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    cum = np.r_[0.0, np.cumsum(v)]
    group_sum = cum[starts + sizes] - cum[starts]
    g = np.searchsorted(starts, k - 1, side="right") - 1  # group of the k-th row
    return cum[starts[g]] + (k - starts[g]) * group_sum[g] / sizes[g]
