"""``assay.evaluate``, ``assay.bins`` and ``assay.fbeta``: validation and shaping of a job."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import _native
from ._input import Source, to_source
from .errors import InvalidArgumentError
from .report import Report

__all__ = ["Bins", "bins", "evaluate", "fbeta", "CALIBRATION_METRICS", "METRICS"]

METRICS: tuple[str, ...] = tuple(_native.default_metrics())
"""The default metrics, in their order."""

CALIBRATION_METRICS: tuple[str, ...] = tuple(_native.calibration_metrics())
"""The calibration metrics (computed only when named in ``metrics``; see docs/calibration.md)."""


@dataclass(frozen=True)
class Bins:
    """A numeric slice feature: ``column`` cut into bins. Build it with :func:`bins`."""

    column: str
    n: int | None = None
    strategy: Literal["quantile", "uniform"] = "quantile"
    edges: tuple[float, ...] | None = None

    def resolve(self, source: Source) -> list[float]:
        """The bin edges for this input (computed from the data when not given)."""
        if self.edges is not None:
            return list(self.edges)
        stream = source.read_column(
            self.column,
            f"assay.bins({self.column!r}, {self.n}) (give explicit edges= for a one-shot stream)",
        )
        return _native.bin_edges(stream, self.column, self.n, self.strategy)


def bins(
    column: str,
    n: int | None = None,
    *,
    strategy: Literal["quantile", "uniform"] = "quantile",
    edges: Sequence[float] | None = None,
) -> Bins:
    """Bucket a numeric column into bins, for use as a slice.

    Bins are left-closed and right-open, ``[e_j, e_j+1)``, except the last, which is closed
    (the maximum lands in it). Values below the first edge or above the last (possible only
    with explicit ``edges``) form the slices ``(-inf, e_0)`` and ``(e_k, inf)``; NaN and null
    form the slice ``null``.

    Parameters
    ----------
    column : str
        A numeric column.
    n : int
        Number of bins, when ``edges`` is not given.
    strategy : {"quantile", "uniform"}
        ``"quantile"``: edges at the quantiles ``k/n`` of the column (numpy's default linear
        interpolation; repeated edges from heavy ties are merged, so fewer bins may result).
        ``"uniform"``: ``n`` equal-width bins from the minimum to the maximum.
    edges : sequence of float
        Explicit, strictly increasing edges (at least two).

    Examples
    --------
    >>> import assay
    >>> assay.bins("age", 5)
    Bins(column='age', n=5, strategy='quantile', edges=None)
    >>> assay.bins("age", edges=[18, 30, 45, 65, 100]).edges
    (18.0, 30.0, 45.0, 65.0, 100.0)
    """
    if not isinstance(column, str):
        raise InvalidArgumentError(f"bins: column must be a column name, got {column!r}")
    if strategy not in ("quantile", "uniform"):
        raise InvalidArgumentError(
            f"bins({column!r}): strategy must be 'quantile' or 'uniform', got {strategy!r}"
        )
    if edges is not None:
        if n is not None:
            raise InvalidArgumentError(f"bins({column!r}): give either n or edges, not both")
        e = tuple(float(x) for x in edges)
        if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:], strict=False)):
            raise InvalidArgumentError(
                f"bins({column!r}): edges must be at least two strictly increasing numbers, "
                f"got {list(edges)}"
            )
        return Bins(column, None, strategy, e)
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise InvalidArgumentError(f"bins({column!r}): n must be a positive integer, got {n!r}")
    return Bins(column, int(n), strategy, None)


def fbeta(beta: float) -> str:
    """The metric name of F-beta for ``beta`` (e.g. ``fbeta(2.0) == "f2"``).

    >>> import assay
    >>> assay.fbeta(0.5)
    'f0.5'
    """
    if not isinstance(beta, numbers.Real) or not beta > 0:
        raise InvalidArgumentError(f"fbeta: beta must be a positive number, got {beta!r}")
    return _native.metric_name(f"f{float(beta)!r}")


SliceLike = str | Bins | tuple[str | Bins, ...]


def _feature(item: Any, source: Source) -> tuple[str, list[float] | None]:
    if isinstance(item, str):
        return (item, None)
    if isinstance(item, Bins):
        return (item.column, item.resolve(source))
    raise InvalidArgumentError(
        f"a slice is a column name, assay.bins(...), or a tuple of those; got {item!r}"
    )


def _slices(slices: Any, source: Source) -> list[list[tuple[str, list[float] | None]]]:
    return _slice_specs(slices, source)[0]


def _is_found(x: Any) -> bool:
    """Whether ``x`` is a table of slices from :func:`assay.discover_slices`."""
    import polars as pl

    return isinstance(x, pl.DataFrame) and {"slice", "predicates"} <= set(x.columns)


def _slice_specs(
    slices: Any, source: Source
) -> tuple[list[list[tuple[str, list[float] | None]]], list[str | None]]:
    """The engine's slice specs, and for each the one slice to report (a discovered slice's
    label; None: all of its slices)."""
    if isinstance(slices, (str, Bins)) or _is_found(slices):
        slices = [slices]
    out: list[list[tuple[str, list[float] | None]]] = []
    only: list[str | None] = []
    for s in slices:
        if _is_found(s):
            # Each discovered slice is the cross of its features, reported alone.
            for label, preds in s.select("slice", "predicates").iter_rows():
                out.append([(p["feature"], p.get("edges")) for p in preds])
                only.append(label)
            continue
        only.append(None)
        if isinstance(s, (tuple, list)):
            if not s:
                raise InvalidArgumentError("an empty tuple is not a slice")
            out.append([_feature(f, source) for f in s])
        else:
            out.append([_feature(s, source)])
    return out, only


def _threads(n_threads: int | None) -> int | None:
    if n_threads is None:
        env = os.environ.get("ASSAY_NUM_THREADS")
        if not env:
            return None
        try:
            n_threads = int(env)
        except ValueError:
            raise InvalidArgumentError(
                f"ASSAY_NUM_THREADS must be an integer, got {env!r}"
            ) from None
    if not isinstance(n_threads, numbers.Integral) or isinstance(n_threads, bool) or n_threads < 1:
        raise InvalidArgumentError(f"n_threads must be a positive integer, got {n_threads!r}")
    return int(n_threads)


def evaluate(
    data: Any,
    *,
    label: str,
    score: str,
    slices: Sequence[SliceLike] | SliceLike = (),
    metrics: Sequence[str] | None = None,
    threshold: float = 0.5,
    weight: str | None = None,
    min_slice_size: int = 0,
    nan_policy: Literal["raise", "drop"] = "raise",
    auc: Literal["exact", "binned"] = "exact",
    auc_bins: int = 4096,
    n_threads: int | None = None,
    bootstrap: int | None = None,
    ci: float = 0.95,
    ci_method: Literal["percentile", "basic", "bca", "analytic"] | None = None,
    seed: int = 0,
    row_id: str | None = None,
    calibration_bins: int = 15,
    calibration_strategy: Literal["uniform", "quantile"] = "uniform",
) -> Report:
    """Binary-classification metrics overall and per slice, in one pass over the data.

    Parameters
    ----------
    data
        A pyarrow ``Table``/``RecordBatch``/``RecordBatchReader``, a polars ``DataFrame`` or
        ``LazyFrame``, a pandas ``DataFrame``, a duckdb relation, a dict of numpy arrays, a path
        to a Parquet/CSV/Arrow IPC file, or anything exposing ``__arrow_c_stream__``. Readers,
        lazy frames, relations and files are streamed batch by batch.
    label : str
        Column of 0/1 labels (bool, integer 0/1 or float 0.0/1.0).
    score : str
        Column of scores; probabilities in [0, 1] when ``log_loss`` or ``brier`` is requested.
    slices
        Each entry is a slice spec: a categorical column name (string, dictionary, integer or
        boolean; null is a value of its own), ``assay.bins(...)`` for a numeric column, a
        tuple of those for a cross such as ``("country", "device")``, or the table returned by
        :func:`assay.discover_slices`, whose slices are then reported one by one (each under
        its discovered label, e.g. ``"country=NG & device=tablet"``).
    metrics : list of str, optional
        Any of ``assay.METRICS`` (default: all of them), ``"f<beta>"`` (see :func:`fbeta`) and
        the calibration metrics ``assay.CALIBRATION_METRICS``: ``ece``, ``mce``, ``rmsce``,
        ``ace``, ``ece_debiased``, ``smooth_ece``, ``calibration_slope``,
        ``calibration_intercept``, ``oe_ratio``, ``brier_reliability``, ``brier_resolution``,
        ``brier_uncertainty`` (exact definitions in ``docs/calibration.md``).
    threshold : float
        A row is predicted positive when ``score >= threshold``.
    weight : str, optional
        Column of positive sample weights (scikit-learn's ``sample_weight`` semantics).
    min_slice_size : int
        Slices with fewer rows keep their row and ``n`` but get null metrics.
    nan_policy : {"raise", "drop"}
        Rows with a NaN/inf/null score or a null label raise, or are dropped and counted in
        ``Report.dropped``.
    auc : {"exact", "binned"}
        ``"exact"`` keeps (score, label, weight, slice ids) of every row and sorts once: memory
        grows with the rows even when streaming. ``"binned"`` uses a fixed histogram of
        ``auc_bins`` equal-width bins over [0, 1] per slice (scores must be probabilities):
        fixed memory; the ROC-AUC error is at most half the weight of positive-negative pairs
        that share a bin, divided by P x N (at most ``1/2`` of the tied fraction, typically
        ~1e-4 for continuous scores with 4096 bins).
    auc_bins : int
        Histogram bins for ``auc="binned"``.
    n_threads : int, optional
        Worker threads (default: ``ASSAY_NUM_THREADS`` or all cores). Results are bit-identical
        for every thread count.
    bootstrap : int, optional
        Number of Poisson-bootstrap replicates ``B`` (1000 is usual). Replicates are folded into
        the same single pass: row ``r`` weighs ``Poisson(1)`` in replicate ``b``, drawn from a
        counter-based hash of ``(seed, row id, b)``, so nothing of size rows x B is stored and
        results do not depend on threads or batches. Each metric column ``m`` of the table gains
        ``m_lo`` and ``m_hi``; ``long()`` adds ``lo``, ``hi``, ``se`` (standard deviation of the
        replicates) and ``method``.
    ci : float
        Confidence level of the intervals, in (0, 1).
    ci_method : {"percentile", "basic", "bca", "analytic"}, optional
        Default ``"percentile"`` when ``bootstrap`` is set. ``"bca"`` takes its acceleration
        from a 20-group jackknife folded into the same pass. ``"analytic"`` needs no
        resampling: Wilson intervals for the proportions (base/prediction rate, accuracy,
        precision, recall, specificity, fpr, fnr), DeLong for ``roc_auc``, normal (CLT) for
        ``log_loss`` and ``brier``; other metrics get null bounds with a note. Weighted jobs
        use Kish's effective sample size.
    seed : int
        Seed of the bootstrap replicates.
    row_id : str, optional
        Integer column identifying each row, for data sharded across jobs: replicate weights
        then follow the id instead of the row's position in this input.
    calibration_bins : int
        Bins of the binned calibration metrics (``ece``, ``mce``, ``rmsce``, ``ace``,
        ``ece_debiased``, the Brier decomposition).
    calibration_strategy : {"uniform", "quantile"}
        ``"uniform"``: equal-width bins over [0, 1], left-closed (the last closed).
        ``"quantile"``: equal-mass bins at each slice's exact score quantiles, right-closed
        (ties at an edge go to the lower bin); like exact ROC-AUC it keeps the rows to find
        the edges. See :func:`assay.reliability` for the table behind these metrics.

    Returns
    -------
    Report
        ``Report.table`` (polars, one row per slice, ``overall`` first) and ``Report.long()``.

    Metrics
    -------
    With weighted confusion counts TP, FP, TN, FN at the threshold, P = TP + FN, N = TN + FP,
    W = P + N: ``base_rate`` P/W, ``prediction_rate`` (TP+FP)/W, ``accuracy`` (TP+TN)/W,
    ``balanced_accuracy`` (TP/P + TN/N)/2, ``precision`` TP/(TP+FP), ``recall`` TP/P,
    ``specificity`` TN/N, ``fpr`` FP/N, ``fnr`` FN/P, ``f1`` 2TP/(2TP+FP+FN), ``mcc``
    (TP TN - FP FN)/sqrt((TP+FP) P N (TN+FN)), ``roc_auc`` (Mann-Whitney, ties count 1/2),
    ``average_precision`` (sum over distinct thresholds of recall step x precision, as
    scikit-learn), ``log_loss`` (probabilities clipped to [eps, 1-eps], eps = 2.2e-16) and
    ``brier``. A value whose denominator is zero is null, with the reason in ``long()``.

    Examples
    --------
    >>> import assay, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 1000)
    >>> data = {"y": y, "p": np.clip(0.3 * y + rng.random(1000) * 0.7, 0, 1),
    ...         "country": rng.choice(["BR", "DE", "US"], 1000)}
    >>> rep = assay.evaluate(data, label="y", score="p", slices=["country"],
    ...                      metrics=["accuracy", "roc_auc"])
    >>> rep.table["slice"].to_list()
    ['overall', 'country=BR', 'country=DE', 'country=US']
    >>> round(rep.table["roc_auc"][0], 3)
    0.814

    With 95% intervals from 1000 bootstrap replicates:

    >>> rep = assay.evaluate(data, label="y", score="p", metrics=["roc_auc"], bootstrap=1000)
    >>> lo, hi = rep.table["roc_auc_lo"][0], rep.table["roc_auc_hi"][0]
    >>> bool(lo < rep.table["roc_auc"][0] < hi)
    True
    """
    if not isinstance(score, str):
        raise InvalidArgumentError("label and score must be column names (str)")
    out = _run(
        data, label=label, score=score, slices=slices, metrics=metrics, threshold=threshold,
        weight=weight, min_slice_size=min_slice_size, nan_policy=nan_policy, auc=auc,
        auc_bins=auc_bins, n_threads=n_threads, interval=_interval(
            bootstrap, ci, ci_method, seed, row_id), compare=None,
        calibration=_calibration(calibration_bins, calibration_strategy),
    )
    table, notes, rows, dropped, _, _, _ = out.result
    method = None if out.interval is None else out.interval[2]
    return Report(table, notes, out.metrics, rows, dropped, ci_method=method)


class _Run:
    """The raw output of one native job, with the options it ran with."""

    def __init__(self, result: Any, metrics: list[str], interval: Any) -> None:
        self.result = result
        self.metrics = metrics
        self.interval = interval


def _run(
    data: Any, *, label: Any, score: str, slices: Any, metrics: Any, threshold: Any,
    weight: Any, min_slice_size: Any, nan_policy: Any, auc: Any, auc_bins: Any,
    n_threads: Any, interval: Any, compare: tuple[str, list[tuple[str, str]]] | None,
    calibration: tuple[int, str] | None = None, reliability: float | None = None,
) -> _Run:
    """Validates the options shared by evaluate and compare, and runs the native job."""
    if not isinstance(label, str):
        raise InvalidArgumentError("label and score must be column names (str)")
    if weight is not None and not isinstance(weight, str):
        raise InvalidArgumentError(f"weight must be a column name or None, got {weight!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise InvalidArgumentError(f"threshold must be a number, got {threshold!r}")
    if isinstance(min_slice_size, bool) or not isinstance(min_slice_size, numbers.Integral) \
            or min_slice_size < 0:
        raise InvalidArgumentError(
            f"min_slice_size must be a non-negative integer, got {min_slice_size!r}"
        )
    if nan_policy not in ("raise", "drop"):
        raise InvalidArgumentError(f"nan_policy must be 'raise' or 'drop', got {nan_policy!r}")
    if auc not in ("exact", "binned"):
        raise InvalidArgumentError(f"auc must be 'exact' or 'binned', got {auc!r}")
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [_native.metric_name(m) if isinstance(m, str) else _bad_metric(m)
             for m in (METRICS if metrics is None else metrics)]
    threads = _threads(n_threads)
    source = to_source(data)
    spec, only = _slice_specs(slices, source)
    result = _native.evaluate(
        source.open(),
        label,
        score,
        weight,
        float(threshold),
        spec,
        names,
        int(min_slice_size),
        nan_policy,
        int(auc_bins) if auc == "binned" else None,
        threads,
        interval,
        compare,
        calibration,
        reliability,
        only if any(o is not None for o in only) else None,
        source.rows,
    )
    return _Run(result, names, interval)


def _calibration(
    n_bins: Any, strategy: Any, names: tuple[str, str] = ("calibration_bins",
                                                          "calibration_strategy")
) -> tuple[int, str]:
    """Validates the calibration bins of a job."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) \
            or not 1 <= n_bins <= 100_000:
        raise InvalidArgumentError(
            f"{names[0]} must be an integer in [1, 100000], got {n_bins!r}"
        )
    if strategy not in ("uniform", "quantile"):
        raise InvalidArgumentError(
            f"{names[1]} must be 'uniform' or 'quantile', got {strategy!r}"
        )
    return (int(n_bins), str(strategy))


def _interval(
    bootstrap: Any, ci: Any, ci_method: Any, seed: Any, row_id: Any
) -> tuple[int, float, str, int, str | None] | None:
    """Validates the interval options; None when no interval was asked for."""
    if bootstrap is not None and (
        isinstance(bootstrap, bool) or not isinstance(bootstrap, numbers.Integral)
        or not 2 <= bootstrap <= 100_000
    ):
        raise InvalidArgumentError(
            "bootstrap must be an integer in [2, 100000] (the number of replicates), got "
            f"{bootstrap!r}"
        )
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0.0 < float(ci) < 1.0:
        raise InvalidArgumentError(f"ci must be a confidence level in (0, 1), got {ci!r}")
    methods = ("percentile", "basic", "bca", "analytic")
    if ci_method is not None and ci_method not in methods:
        raise InvalidArgumentError(
            f"unknown ci_method {ci_method!r}; use one of {', '.join(map(repr, methods))}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    if row_id is not None and not isinstance(row_id, str):
        raise InvalidArgumentError(f"row_id must be a column name or None, got {row_id!r}")
    if bootstrap is None and ci_method is None:
        if row_id is not None:
            raise InvalidArgumentError("row_id only matters with bootstrap=B")
        return None
    method = ci_method or "percentile"
    if method != "analytic" and bootstrap is None:
        raise InvalidArgumentError(
            f"ci_method={method!r} resamples: pass bootstrap=B (1000 is usual), "
            "or use ci_method='analytic'"
        )
    replicates = 0 if method == "analytic" else int(bootstrap)  # type: ignore[arg-type]
    return (replicates, float(ci), method, int(seed) % (1 << 64), row_id)


def _bad_metric(m: Any) -> str:
    raise InvalidArgumentError(f"metric names are strings, got {m!r}")
