"""Paired comparison of models on the same rows: :func:`compare`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from . import _native
from ._args import U64_MAX, float_arg, int_arg, show
from ._common import LOWER_IS_BETTER, REGISTRY
from ._evaluate import (
    MAX_SLICES,
    TASKS,
    SliceLike,
    _calibration,
    _interval,
    _Job,
    _job,
    _multiclass_options,
    _ranking_options,
    _run,
    _task_column,
    _task_options,
    provenance_of,
)
from ._text import escape, escape_frame
from .errors import InvalidArgumentError, RegressionDetected
from .report import ArrowResult, Report

if TYPE_CHECKING:
    from ._provenance import Provenance

# Metrics where smaller is better, and metrics with no better or worse direction: the
# engine's metric registry.
_LOWER_IS_BETTER = LOWER_IS_BETTER
_NO_DIRECTION = frozenset(r[0] for r in REGISTRY if r[3] is None)


class Comparison(ArrowResult):
    """Paired differences between models, per slice and metric.

    ``to_arrow()``, ``to_dict()`` and ``to_json()`` read the Arrow result without polars (safe
    in a forked child; see :class:`assay.Report`), and ``table`` is built on first use.

    Attributes
    ----------
    table : polars.DataFrame
        One row per (slice, metric, compared model): ``slice``, ``metric``, one value column per
        model (named by the model), ``model`` (the model compared with the reference),
        ``delta`` (model - reference), ``delta_lo``, ``delta_hi`` (paired-bootstrap interval),
        ``delta_se``, ``p_value`` (two-sided bootstrap p-value of "no difference"),
        ``p_adjusted`` (the same, adjusted for every row of the table at once by
        :attr:`correction`; never below ``p_value``), ``simultaneous_lo``,
        ``simultaneous_hi`` (max-T bands that hold for every row at once, whatever the
        correction), ``verdict`` (from the row's own interval), ``verdict_adjusted`` (from
        the correction: the simultaneous band, or the adjusted p-value at ``1 - ci`` for
        Holm and BH) and ``note`` (why a delta is null). See docs/multiplicity.md.
    correction : str
        The correction behind ``p_adjusted`` and ``verdict_adjusted``
        (``assay.compare(correction=...)``, :meth:`with_correction`).
    replicates : numpy.ndarray
        The paired bootstrap replicate differences of every row of ``table`` (rows x B; NaN
        where a delta is undefined): every cell saw the same replicate weights, so their joint
        distribution is here, and the corrections are computed from it.
    reports : dict[str, Report]
        Each model's own report, with intervals.
    reference : str
        The model the others are compared with.
    provenance : Provenance or None
        What produced the comparison (see :class:`assay.Provenance`); each model's report
        shares it. Kept by :meth:`save`.
    """

    provenance: Provenance | None = None

    def __init__(self, table: pa.RecordBatch | pa.Table, reports: dict[str, Report],
                 reference: str, level: float, method: str,
                 correction: str = "simultaneous", replicates: np.ndarray | None = None) -> None:
        from ._multiplicity import CORRECTIONS

        if correction not in CORRECTIONS:
            raise InvalidArgumentError(
                f"correction must be one of {', '.join(map(repr, CORRECTIONS))}, got "
                f"{show(correction)}")
        arrow = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
        if replicates is None:
            replicates = _replicates(arrow)
            replicates.setflags(write=False)
        self.replicates = replicates
        raw = arrow.drop_columns([c for c in _CORRECTED if c in arrow.column_names])
        self._raw = raw
        self.correction = correction
        self._delta, self._se = _effective(raw, reference)
        self._arrow = _with_corrections(raw, replicates, level, correction, self._delta,
                                        self._se)
        self._table: pl.DataFrame | None = None
        self.reports = reports
        self.reference = reference
        self.level = level
        self.method = method

    def with_correction(
        self, correction: Literal["simultaneous", "holm", "bh", "none"],
    ) -> Comparison:
        """The same comparison with ``p_adjusted`` and ``verdict_adjusted`` under another
        correction (``simultaneous_lo``/``simultaneous_hi`` stay the max-T bands). Nothing is
        recomputed from the data.

        >>> import assay, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 600)
        >>> p = np.clip(0.4 * y + 0.6 * rng.random(600), 0, 1)
        >>> cmp = assay.compare({"y": y, "a": p, "b": p}, label="y",
        ...                     scores={"a": "a", "b": "b"}, metrics=["roc_auc"], bootstrap=50)
        >>> cmp.with_correction("holm").correction
        'holm'
        """
        return Comparison(self._raw, self.reports, self.reference, self.level, self.method,
                          correction, self.replicates)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the comparison to ``path`` (Parquet; ``.assay.parquet`` by convention): its
        table as the file's rows; each model's report, the replicate differences and the
        :attr:`provenance` in the metadata. :func:`assay.load` reads it back exactly (the
        corrections included); see docs/saved-runs.md."""
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

    @property
    def table(self) -> pl.DataFrame:
        """The comparison as a polars DataFrame (built on first use)."""
        if self._table is None:
            self._table = pl.from_arrow(self._arrow)  # type: ignore[assignment]
        return self._table  # type: ignore[return-value]

    def assert_not_worse(
        self, metric: str | Sequence[str] = "roc_auc", margin: float = 0.0,
        model: str | None = None, *,
        correction: Literal["simultaneous", "holm", "bh", "none"] = "simultaneous",
        min_slice_size: int = 0,
    ) -> pl.DataFrame:
        """Raise :class:`assay.RegressionDetected` if a model is worse than the reference by
        more than ``margin`` with confidence, in any slice; else return the gate's table.

        A gate looks at every slice at once, so its confidence must hold for all of them
        together: with 200 slices, 95% intervals taken one at a time put about 5 of them
        beyond zero by chance alone, and a gate on them fails at random. ``correction`` says
        how the slices are held together (docs/multiplicity.md):

        - ``"simultaneous"`` (default): bands ``delta -+ q * delta_se`` where ``q`` is the
          ``level`` quantile of the bootstrap distribution of the largest studentized
          deviation over the gated cells (max-T); all of them cover the true differences at
          once with probability ``level`` (family-wise). Every cell saw the same replicate
          weights, so this distribution is exact for the job, not a Bonferroni bound.
        - ``"holm"``: Holm's step-down adjustment of each cell's one-sided p-value of "worse
          by at most ``margin``" (normal, from the studentized delta and its bootstrap
          standard error; family-wise error).
        - ``"bh"``: Benjamini-Hochberg on the same p-values: controls the false-discovery rate,
          for exploration more than for gates.
        - ``"none"``: each slice's own interval (``delta_lo``/``delta_hi``), as before.

        A cell is worse when its (corrected) band lies beyond the margin on the bad side
        (``hi < -margin`` where higher is better, ``lo > margin`` for losses and error
        rates), or, with Holm and BH, when its adjusted p-value is at most ``(1 - ci) / 2``
        (the one-sided level of a two-sided interval at ``ci``).

        Parameters
        ----------
        metric : str or list of str
            The metric gated on, or several: their cells are corrected together (one family).
        margin : float
            The tolerated degradation (>= 0), in the metric's units.
        model : str, optional
            Gate one compared model (default: every model compared with the reference).
        correction : {"simultaneous", "holm", "bh", "none"}
            See above.
        min_slice_size : int
            Slices with fewer rows (in any model's report) are left out of the gate and listed
            as skipped in the returned table (and the error message), not silently.

        Returns
        -------
        polars.DataFrame
            One row per (slice, metric, model) gated: ``slice``, ``metric``, ``model``, ``n``,
            ``delta``, ``lo``, ``hi`` (the band the gate used: simultaneous, or the cell's own
            interval with ``"none"``; null with Holm and BH, which adjust p-values instead),
            ``p_worse`` (the p-value of "not worse by more than ``margin``", under the
            correction: max-T exceedance, Holm or BH adjusted, or the cell's own) and
            ``status`` (``"not worse"``, ``"worse"``, ``"skipped: n < min_slice_size"`` or
            ``"skipped: undefined"``).

        Raises
        ------
        RegressionDetected
            Naming the correction, the offending slices and the skipped ones; ``slices`` holds
            the offending rows of the returned table.

        Examples
        --------
        >>> import assay, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 2000)
        >>> p = np.clip(0.4 * y + 0.6 * rng.random(2000), 0, 1)
        >>> data = {"y": y, "old": p, "new": p}
        >>> cmp = assay.compare(data, label="y", scores={"old": "old", "new": "new"},
        ...                     metrics=["roc_auc"], bootstrap=200)
        >>> gate = cmp.assert_not_worse("roc_auc", margin=0.005)   # identical models: passes
        >>> gate["status"].to_list()
        ['not worse']
        """
        from ._multiplicity import CORRECTIONS, bh, exceedance_p, holm, max_stat, one_sided_p

        margin = float_arg(margin, "margin", "assert_not_worse", 0)
        metrics = [metric] if isinstance(metric, str) else metric
        if not isinstance(metrics, Sequence) or not metrics or not all(
                isinstance(m, str) for m in metrics):
            raise InvalidArgumentError(
                f"metric must be a metric name or a list of them, got {show(metric)}")
        if model is not None and not isinstance(model, str):
            raise InvalidArgumentError(f"model must be a model name or None, got {show(model)}")
        if correction not in CORRECTIONS:
            raise InvalidArgumentError(
                f"correction must be one of {', '.join(map(repr, CORRECTIONS))}, got "
                f"{show(correction)}")
        min_size = int_arg(min_slice_size, "min_slice_size", "assert_not_worse", 0, U64_MAX)
        known = sorted(set(self.table["metric"].to_list()))
        for m in metrics:
            if m in _NO_DIRECTION:
                raise InvalidArgumentError(
                    f"{m} has no better or worse direction; gate on a performance metric")
            if m not in known:
                raise InvalidArgumentError(f"metric {m!r} was not compared; compared: {known}")
        base = self.table.select("slice", "metric", "model", "delta", "delta_lo", "delta_hi",
                                 "delta_se")
        mask = base["metric"].is_in(list(metrics))
        if model is not None:
            if model not in set(base.filter(mask)["model"].to_list()):
                raise InvalidArgumentError(f"no model {model!r} was compared with the reference")
            mask &= base["model"] == model
        index = np.flatnonzero(mask.to_numpy())
        rows = base.filter(mask)
        # (The engine's direction: it also knows patterns such as pinball@<q>.)
        lower_is_better = _directions(rows["metric"]) < 0
        sizes = pl.concat([r.table.select("slice", pl.col("n").alias("_n"))
                           for r in self.reports.values()])
        sizes = sizes.group_by("slice").agg(pl.col("_n").min())
        n = rows.join(sizes, on="slice", how="left", maintain_order="left")["_n"]
        n = n.fill_null(0).to_numpy()
        delta, se = self._delta[index], self._se[index]
        defined = ~np.isnan(delta)
        # As in compare(min_slice_size=...): the overall row is never left out.
        tested = defined & ((n >= min_size) | (rows["slice"] == "overall").to_numpy())
        reps = self.replicates[index]
        lo = rows["delta_lo"].to_numpy().astype(np.float64)
        hi = rows["delta_hi"].to_numpy().astype(np.float64)
        alpha = (1.0 - self.level) / 2.0
        # The one-sided statistic of "worse by more than margin": large when worse.
        with np.errstate(divide="ignore", invalid="ignore"):
            slack = np.where(lower_is_better, delta - margin, -(delta + margin))
            s_worse = np.where(se > 0, slack / se, np.where(slack > 0, np.inf, -np.inf))
        if correction == "simultaneous":
            m = max_stat(delta[tested], se[tested], reps[tested])
            q = float(np.quantile(m, self.level)) if len(m) else float("nan")
            half = np.where(se > 0, q * se, 0.0)
            lo, hi = delta - half, delta + half
            p_worse = np.full(len(delta), np.nan)
            p_worse[tested] = exceedance_p(m, s_worse[tested], reps.shape[1])
            worse = np.where(lower_is_better, lo > margin, hi < -margin)
        elif correction in ("holm", "bh"):
            p_worse = np.full(len(delta), np.nan)
            p1 = one_sided_p(delta[tested], se[tested], margin, lower_is_better[tested])
            p_worse[tested] = (holm if correction == "holm" else bh)(p1)
            lo, hi = np.full(len(delta), np.nan), np.full(len(delta), np.nan)
            worse = p_worse <= alpha
        else:
            p_worse = one_sided_p(delta, se, margin, lower_is_better)
            worse = np.where(lower_is_better, lo > margin, hi < -margin)
        worse &= tested
        status = np.where(worse, "worse", "not worse")
        status = np.where(defined & ~tested, "skipped: n < min_slice_size", status)
        status = np.where(~defined, "skipped: undefined", status)
        for v in (lo, hi, p_worse):
            v[~tested] = np.nan
        gate = rows.select("slice", "metric", "model").with_columns(
            pl.Series("n", n, dtype=pl.UInt64), pl.Series("delta", delta).fill_nan(None),
            pl.Series("lo", lo).fill_nan(None), pl.Series("hi", hi).fill_nan(None),
            pl.Series("p_worse", p_worse).fill_nan(None),
            pl.Series("status", status, dtype=pl.String))
        bad = gate.filter(pl.col("status") == "worse")
        if bad.height:
            def show_row(r: dict[str, Any]) -> str:
                band = "" if r["lo"] is None else f"band [{r['lo']:+.4g}, {r['hi']:+.4g}], "
                pw = "?" if r["p_worse"] is None else f"{r['p_worse']:.3g}"
                return (f"{escape(r['slice'])} ({escape(r['metric'])}, {escape(r['model'])}: "
                        f"delta {r['delta']:+.4g}, {band}p_worse {pw})")

            listed = ", ".join(show_row(r) for r in bad.iter_rows(named=True))
            skipped = int((defined & ~tested).sum())
            cells = int(tested.sum())
            what = {"simultaneous": f"simultaneous {self.level:.0%} bands over {cells} "
                                    "cell(s) (max-T)",
                    "holm": f"Holm-adjusted one-sided p <= {alpha:.3g} over {cells} cell(s)",
                    "bh": f"Benjamini-Hochberg-adjusted one-sided p <= {alpha:.3g} over "
                          f"{cells} cell(s)",
                    "none": f"each cell's own {self.level:.0%} interval (no correction; "
                            f"{cells} cell(s))"}
            raise RegressionDetected(
                f"{', '.join(dict.fromkeys(metrics))} is worse than {self.reference!r} by more "
                f"than {margin} in {bad.height} cell(s) (slice, metric, model), by "
                f"{what[correction]}: {listed}"
                + (f"; {skipped} cell(s) of slices with fewer than {min_size} rows were "
                   "skipped" if skipped else ""),
                slices=bad, table=gate,
            )
        return gate

    def __repr__(self) -> str:
        return (f"assay.Comparison (reference {escape(repr(self.reference))}, {self.method} "
                f"{self.level:.0%} intervals)\n{escape_frame(self.table)}")


def compare(
    data: Any,
    *,
    label: str,
    scores: Mapping[str, str] | Sequence[str],
    task: Literal["binary", "regression", "multiclass", "ranking"] = "binary",
    slices: Sequence[SliceLike] | SliceLike = (),
    metrics: Sequence[str] | None = None,
    classes: Sequence[str] | Sequence[int] | None = None,
    k: int | Sequence[int] | None = None,
    normalize: Literal["raise", "divide", "softmax"] = "raise",
    query: str | None = None,
    gain: Literal["exponential", "linear"] = "exponential",
    ties: Literal["average", "stable"] = "average",
    empty: Literal["skip", "zero"] = "skip",
    quantiles: Sequence[float] | None = None,
    power: float = 0.0,
    reference: str | None = None,
    threshold: float = 0.5,
    weight: str | None = None,
    min_slice_size: int = 0,
    nan_policy: Literal["raise", "drop"] = "raise",
    bootstrap: int = 1000,
    ci: float = 0.95,
    ci_method: Literal["percentile", "basic", "bca"] = "percentile",
    seed: int = 0,
    row_id: str | None = None,
    n_threads: int | None = None,
    calibration_bins: int = 15,
    calibration_strategy: Literal["uniform", "quantile"] = "uniform",
    correction: Literal["simultaneous", "holm", "bh", "none"] = "simultaneous",
    max_slices: int | None = MAX_SLICES,
    progress: bool | None = None,
    fingerprint: Literal["schema", "content"] = "schema",
) -> Comparison:
    """Compare two or more models on the same rows, per slice, with a paired bootstrap.

    All models are evaluated in one pass over the data, and every model sees the same
    replicate weights (row ``r`` weighs the same ``Poisson(1)`` draw in replicate ``b`` for each
    model), so the interval of each difference accounts for the pairing: a difference far
    smaller than either model's own interval can still be significant.

    Parameters
    ----------
    scores
        ``{"name": "column", ...}`` (or a list of columns, named by themselves); at least two.
        With ``task="regression"`` the columns hold predictions (``quantiles`` and ``power``
        as in :func:`assay.evaluate`).
    task : {"binary", "regression", "multiclass", "ranking"}
        The task family, as in :func:`assay.evaluate`; each metric's direction (lower ``mae``
        is better, higher ``r2``) decides the verdicts, and ``mean_error`` (the bias) gets
        ``"higher"``/``"lower"``. With ``task="multiclass"`` each model's column is a list
        column of its K probabilities (``classes``, ``k`` and ``normalize`` as in
        :func:`assay.evaluate`).
    classes, k, normalize
        ``task="multiclass"``: as in :func:`assay.evaluate`.
    query, k, gain, ties, empty
        ``task="ranking"``: as in :func:`assay.evaluate`; the bootstrap resamples queries, so
        the comparison is paired by query.
    reference
        The model the others are compared with (default: the first).
    bootstrap, ci, ci_method, seed, row_id
        As in :func:`assay.evaluate`; a comparison always resamples (``ci_method`` is
        ``"percentile"``, ``"basic"`` or ``"bca"``).
    label, slices, metrics, threshold, weight, min_slice_size, nan_policy, n_threads
    calibration_bins, calibration_strategy, max_slices, progress
        As in :func:`assay.evaluate` (``min_slice_size`` never applies to ``overall``). A row
        whose score is missing for any model is dropped for all of them
        (``nan_policy="drop"``), keeping the comparison paired.
    correction : {"simultaneous", "holm", "bh", "none"}
        What ``p_adjusted`` and ``verdict_adjusted`` correct for: every row of the table at
        once, by max-T bands (default), Holm, Benjamini-Hochberg, or not at all (see
        :meth:`Comparison.assert_not_worse` and docs/multiplicity.md).

    Returns
    -------
    Comparison
        ``.table`` with ``delta = model - reference`` per slice and metric, its interval and
        p-value, and ``verdict``: ``"better"`` or ``"worse"`` when the whole interval lies on one
        side of 0 (direction-aware: lower ``log_loss``, ``brier``, ``fpr``, ``fnr`` is better;
        ``base_rate`` and ``prediction_rate`` get ``"higher"``/``"lower"``), else ``"no
        significant difference"``. ``.reports`` holds each model's own :class:`Report`.

    Examples
    --------
    >>> import assay, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 5000)
    >>> good = np.clip(0.5 * y + 0.5 * rng.random(5000), 0, 1)
    >>> noisy = np.clip(good + rng.normal(0, 0.3, 5000), 0, 1)
    >>> cmp = assay.compare({"y": y, "good": good, "noisy": noisy}, label="y",
    ...                     scores={"old": "good", "new": "noisy"}, metrics=["roc_auc"],
    ...                     bootstrap=200)
    >>> cmp.table.select("slice", "metric", "model", "verdict").row(0)
    ('overall', 'roc_auc', 'new', 'worse')
    """
    if task not in TASKS:
        _task_column(task, None, None)
    metrics, classes_, normalize_ = _multiclass_options(task, metrics, classes, k, normalize)
    metrics, ranking = _ranking_options(task, metrics, k, query, gain, ties, empty)
    binary: dict[str, tuple[Any, Any]] = {
        "threshold": (threshold, 0.5), "calibration_strategy": (calibration_strategy, "uniform")}
    if task != "multiclass":
        binary["calibration_bins"] = (calibration_bins, 15)
    names, _ = _task_options(task, metrics, quantiles=quantiles, power=power, **binary)
    models, interval = _comparison_options(scores, reference, bootstrap, ci, ci_method, seed,
                                           row_id)
    (ref_name, ref_col), others = models[0], models[1:]
    job = _job(
        label=label, score=ref_col, slices=slices,
        metrics=names, power=power, threshold=threshold,
        weight=weight, min_slice_size=min_slice_size, nan_policy=nan_policy, auc="exact",
        auc_bins=4096, interval=interval, compare=(ref_name, others),
        calibration=_calibration(calibration_bins, calibration_strategy), task=task,
        classes=classes_, normalize=normalize_, ranking=ranking,
    )
    if correction not in ("simultaneous", "holm", "bh", "none"):
        raise InvalidArgumentError(
            "correction must be one of 'simultaneous', 'holm', 'bh', 'none', got "
            f"{show(correction)}")
    result = _run(data, job, n_threads, max_slices, progress, fingerprint)
    return _comparison(result, job, correction)


def _models(scores: Any, reference: Any, what: str = "compare") -> list[tuple[str, str]]:
    """The compared models as (name, column), the reference first (validated); ``what``
    names the caller in errors."""
    if isinstance(scores, Mapping):
        models = [(str(k), v) for k, v in scores.items()]
    elif isinstance(scores, Sequence) and not isinstance(scores, str):
        models = [(c, c) for c in scores]
    else:
        raise InvalidArgumentError(
            f"scores must map model names to score columns, got {show(scores)}"
        )
    if len(models) < 2:
        raise InvalidArgumentError(
            f"{what} needs at least two models in scores, got {len(models)}"
        )
    for name, col in models:
        if not isinstance(col, str) or not isinstance(name, str):
            raise InvalidArgumentError(f"score columns must be column names, got {show(col)}")
    if len({n for n, _ in models}) != len(models):
        raise InvalidArgumentError(
            f"each model needs its own name; got {[n for n, _ in models]}"
        )
    if reference is not None:
        names = [n for n, _ in models]
        if not isinstance(reference, str) or reference not in names:
            raise InvalidArgumentError(
                f"reference {show(reference)} is not one of the models {names}"
            )
        models.sort(key=lambda m: m[0] != reference)
    return models


def _replicates(arrow: pa.Table) -> np.ndarray:
    """The engine's replicate differences (rows x B, NaN where undefined)."""
    if "_delta_replicates" not in arrow.column_names:
        return np.full((arrow.num_rows, 0), np.nan)
    col = arrow.column("_delta_replicates").combine_chunks()
    width = col.type.list_size
    values = col.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
    out = values.reshape(arrow.num_rows, width) if arrow.num_rows else np.empty((0, width))
    out[~col.is_valid().to_numpy(zero_copy_only=False)] = np.nan
    return out


def _floats(arrow: pa.Table, name: str) -> np.ndarray:
    return arrow.column(name).to_numpy().astype(np.float64) if arrow.num_rows else np.empty(0)


_CORRECTED = ("_delta_replicates", "p_adjusted", "simultaneous_lo", "simultaneous_hi",
              "verdict_adjusted")


def _directions(metrics: pl.Series | Sequence[str]) -> np.ndarray:
    """Per row, 1 where higher is better, -1 where lower is, 0 where neither."""
    names, inverse = np.unique(np.asarray(list(metrics) if not isinstance(metrics, pl.Series)
                                          else metrics.to_numpy(), dtype=object).astype(str),
                               return_inverse=True)
    sign = np.array([{True: 1, False: -1, None: 0}[_native.higher_is_better(str(m))]
                     for m in names], dtype=np.int8)
    return sign[inverse] if len(names) else np.empty(0, np.int8)


def _verdicts(up_when: np.ndarray, down_when: np.ndarray, undefined: np.ndarray,
              direction: np.ndarray) -> pa.Array:
    """better/worse (higher/lower where a metric has no direction) where ``up_when`` /
    ``down_when`` hold, else no significant difference; null where ``undefined``."""
    up = np.where(direction > 0, "better", np.where(direction < 0, "worse", "higher"))
    down = np.where(direction > 0, "worse", np.where(direction < 0, "better", "lower"))
    out = np.where(up_when, up, np.where(down_when, down, "no significant difference"))
    return pa.array(out, pa.string(), mask=undefined)


def _effective(arrow: pa.Table, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """``delta`` and ``delta_se`` as the corrections read them: a delta or a spread at the
    rounding of the models' values (1e-10 of them) is 0. Such a row's models agree but for
    the last bits of sums (``brier_uncertainty`` reads the labels only), which another order
    of the sums may cancel; studentized by that noise, it would sway every row's correction
    or read as a certain difference."""
    delta, se = _floats(arrow, "delta"), _floats(arrow, "delta_se")
    if not len(se):
        return delta, se
    scale = np.abs(_floats(arrow, reference)) if reference in arrow.column_names else \
        np.zeros(len(se))
    models = arrow.column("model").to_numpy(zero_copy_only=False).astype(str)
    for name in np.unique(models):
        if name in arrow.column_names:
            mine = models == name
            scale[mine] = np.fmax(scale[mine], np.abs(_floats(arrow, str(name))[mine]))
    noise = 1e-10 * np.nan_to_num(scale)
    return (np.where(np.abs(delta) <= noise, 0.0, delta), np.where(se <= noise, 0.0, se))


def _with_corrections(arrow: pa.Table, reps: np.ndarray, level: float,
                      correction: str, delta: np.ndarray, se: np.ndarray) -> pa.Table:
    """``arrow`` with ``p_adjusted``, ``simultaneous_lo``, ``simultaneous_hi`` (after
    ``p_value``) and ``verdict_adjusted`` (after ``verdict``), over every row (``delta``,
    ``se``: as :func:`_effective` reads them)."""
    from ._multiplicity import bh, holm, max_t, two_sided_p

    raw_p = _floats(arrow, "p_value")
    _, p_max, lo, hi = max_t(delta, se, reps, level)
    if correction == "simultaneous":
        p = p_max
    elif correction in ("holm", "bh"):
        p = (holm if correction == "holm" else bh)(two_sided_p(delta, se))
    else:
        p = raw_p
    # An adjusted p-value is never below the row's own (whose floor, 2 / (B + 1), is above
    # the max-T floor of 1 / (B + 1)).
    p = np.where(np.isnan(raw_p), p, np.fmax(p, raw_p))
    direction = _directions(arrow.column("metric").to_numpy(zero_copy_only=False))
    undefined = np.isnan(delta)
    if correction == "simultaneous":
        verdict = _verdicts(lo > 0, hi < 0, undefined | np.isnan(lo), direction)
    elif correction == "none":
        verdict = arrow.column("verdict").combine_chunks()
    else:
        sig = p <= 1.0 - level
        verdict = _verdicts(sig & (delta > 0), sig & (delta < 0), undefined, direction)
    at = arrow.column_names.index("p_value") + 1
    for k, (name, v) in enumerate((("p_adjusted", p), ("simultaneous_lo", lo),
                                   ("simultaneous_hi", hi))):
        arrow = arrow.add_column(at + k, name, pa.array(v, pa.float64(), mask=np.isnan(v)))
    at = arrow.column_names.index("verdict") + 1
    return arrow.add_column(at, "verdict_adjusted", verdict)


def _comparison_options(
    scores: Any, reference: Any, bootstrap: Any, ci: Any, ci_method: Any, seed: Any,
    row_id: Any,
) -> tuple[list[tuple[str, str]], tuple[int, float, str, int, str | None]]:
    """The models (reference first) and the interval of a comparison (validated: a
    comparison always resamples)."""
    models = _models(scores, reference)
    if ci_method not in ("percentile", "basic", "bca"):
        raise InvalidArgumentError(
            f"compare resamples: ci_method must be 'percentile', 'basic' or 'bca', got "
            f"{show(ci_method)}"
        )
    if bootstrap is None:
        raise InvalidArgumentError("compare needs bootstrap=B (1000 is usual)")
    interval = _interval(bootstrap, ci, ci_method, seed, row_id)
    assert interval is not None
    return models, interval


def _comparison(result: Any, job: _Job, correction: str = "simultaneous",
                kind: str = "compare") -> Comparison:
    """The :class:`Comparison` of a native result (of ``evaluate`` or ``finalize``) of a
    comparison job."""
    assert job.compare is not None and job.interval is not None
    table, notes, rows, dropped, other_reports, comparison, _, layouts, tables, _ = result
    ref_name, others = job.compare
    _, level, method, _, _ = job.interval
    metrics = list(job.metrics)
    reports = {ref_name: Report(table, notes, metrics, rows, dropped, ci_method=method,
                                tables=tables,
                                **job.report_layout(layouts[0]))}
    for (name, _), (t, n), layout in zip(others, other_reports, layouts[1:], strict=True):
        reports[name] = Report(t, n, metrics, rows, dropped, ci_method=method,
                               tables=None if tables else (), **job.report_layout(layout))
    cmp = Comparison(comparison, reports, ref_name, level, method, correction)
    cmp.provenance = provenance_of(result, job, kind)
    for rep in reports.values():
        rep.provenance = cmp.provenance
    return cmp
