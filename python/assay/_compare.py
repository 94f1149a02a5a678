"""Paired comparison of models on the same rows: :func:`compare`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from . import _native
from ._args import float_arg, show
from ._common import LOWER_IS_BETTER, REGISTRY
from ._evaluate import (
    TASKS,
    SliceLike,
    _calibration,
    _interval,
    _Job,
    _job,
    _run,
    _task_column,
    _task_options,
)
from ._text import escape, escape_frame
from .errors import InvalidArgumentError, RegressionDetected
from .report import ArrowResult, Report

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
        ``verdict`` and ``note`` (why a delta is null).
    reports : dict[str, Report]
        Each model's own report, with intervals.
    reference : str
        The model the others are compared with.
    """

    def __init__(self, table: pa.RecordBatch, reports: dict[str, Report], reference: str,
                 level: float, method: str) -> None:
        self._arrow = pa.Table.from_batches([table])
        self._table: pl.DataFrame | None = None
        self.reports = reports
        self.reference = reference
        self.level = level
        self.method = method

    @property
    def table(self) -> pl.DataFrame:
        """The comparison as a polars DataFrame (built on first use)."""
        if self._table is None:
            self._table = pl.from_arrow(self._arrow)  # type: ignore[assignment]
        return self._table  # type: ignore[return-value]

    def assert_not_worse(
        self, metric: str = "roc_auc", margin: float = 0.0, model: str | None = None,
    ) -> None:
        """Raise :class:`assay.RegressionDetected` if a model is worse than the reference by
        more than ``margin`` with confidence, in any slice.

        "Worse with confidence" means the whole delta interval lies beyond ``-margin`` on the
        bad side: ``delta_hi < -margin`` for metrics where higher is better, ``delta_lo >
        margin`` for losses and error rates (``log_loss``, ``brier``, ``fpr``, ``fnr``).
        Slices whose delta is undefined are not counted.

        >>> import assay, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 2000)
        >>> p = np.clip(0.4 * y + 0.6 * rng.random(2000), 0, 1)
        >>> data = {"y": y, "old": p, "new": p}
        >>> cmp = assay.compare(data, label="y", scores={"old": "old", "new": "new"},
        ...                     metrics=["roc_auc"], bootstrap=200)
        >>> cmp.assert_not_worse("roc_auc", margin=0.005)   # identical models: passes
        """
        margin = float_arg(margin, "margin", "assert_not_worse", 0)
        if not isinstance(metric, str):
            raise InvalidArgumentError(f"metric must be a metric name, got {show(metric)}")
        if model is not None and not isinstance(model, str):
            raise InvalidArgumentError(f"model must be a model name or None, got {show(model)}")
        if metric in _NO_DIRECTION:
            raise InvalidArgumentError(
                f"{metric} has no better or worse direction; gate on a performance metric"
            )
        rows = self.table.filter(pl.col("metric") == metric)
        if rows.is_empty():
            known = sorted(set(self.table["metric"].to_list()))
            raise InvalidArgumentError(f"metric {metric!r} was not compared; compared: {known}")
        if model is not None:
            if model not in set(rows["model"].to_list()):
                raise InvalidArgumentError(f"no model {model!r} was compared with the reference")
            rows = rows.filter(pl.col("model") == model)
        # (The engine's direction: it also knows patterns such as pinball@<q>.)
        lower_is_better = _native.higher_is_better(metric) is False
        bad = rows.filter(
            pl.col("delta_lo") > float(margin) if lower_is_better
            else pl.col("delta_hi") < -float(margin)
        )
        if bad.height:
            listed = ", ".join(
                f"{escape(r['slice'])} ({escape(r['model'])}: delta {r['delta']:+.4g}, "
                f"{self.level:.0%} CI [{r['delta_lo']:+.4g}, {r['delta_hi']:+.4g}])"
                for r in bad.iter_rows(named=True)
            )
            raise RegressionDetected(
                f"{metric} is worse than {self.reference!r} by more than {margin} in "
                f"{bad.height} slice(s): {listed}",
                slices=bad,
            )

    def __repr__(self) -> str:
        return (f"assay.Comparison (reference {escape(repr(self.reference))}, {self.method} "
                f"{self.level:.0%} intervals)\n{escape_frame(self.table)}")


def compare(
    data: Any,
    *,
    label: str,
    scores: Mapping[str, str] | Sequence[str],
    task: Literal["binary", "regression"] = "binary",
    slices: Sequence[SliceLike] | SliceLike = (),
    metrics: Sequence[str] | None = None,
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
    task : {"binary", "regression"}
        The task family, as in :func:`assay.evaluate`; each metric's direction (lower ``mae``
        is better, higher ``r2``) decides the verdicts, and ``mean_error`` (the bias) gets
        ``"higher"``/``"lower"``.
    reference
        The model the others are compared with (default: the first).
    bootstrap, ci, ci_method, seed, row_id
        As in :func:`assay.evaluate`; a comparison always resamples (``ci_method`` is
        ``"percentile"``, ``"basic"`` or ``"bca"``).
    label, slices, metrics, threshold, weight, min_slice_size, nan_policy, n_threads
    calibration_bins, calibration_strategy
        As in :func:`assay.evaluate` (``min_slice_size`` never applies to ``overall``). A row
        whose score is missing for any model is dropped for all of them
        (``nan_policy="drop"``), keeping the comparison paired.

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
    names, _ = _task_options(
        task, metrics, quantiles=quantiles, power=power, threshold=(threshold, 0.5),
        calibration_bins=(calibration_bins, 15),
        calibration_strategy=(calibration_strategy, "uniform"))
    models, interval = _comparison_options(scores, reference, bootstrap, ci, ci_method, seed,
                                           row_id)
    (ref_name, ref_col), others = models[0], models[1:]
    job = _job(
        label=label, score=ref_col, slices=slices,
        metrics=names, power=power, threshold=threshold,
        weight=weight, min_slice_size=min_slice_size, nan_policy=nan_policy, auc="exact",
        auc_bins=4096, interval=interval, compare=(ref_name, others),
        calibration=_calibration(calibration_bins, calibration_strategy), task=task,
    )
    return _comparison(_run(data, job, n_threads), job)


def _models(scores: Any, reference: Any) -> list[tuple[str, str]]:
    """The compared models as (name, column), the reference first (validated)."""
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
            f"compare needs at least two models in scores, got {len(models)}"
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


def _comparison(result: Any, job: _Job) -> Comparison:
    """The :class:`Comparison` of a native result (of ``evaluate`` or ``finalize``) of a
    comparison job."""
    assert job.compare is not None and job.interval is not None
    table, notes, rows, dropped, other_reports, comparison, _ = result
    ref_name, others = job.compare
    _, level, method, _, _ = job.interval
    metrics = list(job.metrics)
    reports = {ref_name: Report(table, notes, metrics, rows, dropped, ci_method=method)}
    for (name, _), (t, n) in zip(others, other_reports, strict=True):
        reports[name] = Report(t, n, metrics, rows, dropped, ci_method=method)
    return Comparison(comparison, reports, ref_name, level, method)
