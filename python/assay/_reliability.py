"""``assay.reliability``: the reliability table behind the binned calibration metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import polars as pl

from ._evaluate import MAX_SLICES, SliceLike, _calibration, _job, _run, ci_arg, provenance_of
from ._tables import ReliabilityTable
from .errors import InvalidArgumentError

__all__ = ["reliability"]


def reliability(
    data: Any,
    *,
    label: str,
    score: str,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    slices: Sequence[SliceLike] | SliceLike = (),
    weight: str | None = None,
    ci: float = 0.95,
    nan_policy: Literal["raise", "drop"] = "raise",
    n_threads: int | None = None,
    max_slices: int | None = MAX_SLICES,
    progress: bool | None = None,
    fingerprint: Literal["schema", "content"] = "schema",
) -> ReliabilityTable:
    """The reliability table: per slice and score bin, the mean score and the fraction of
    positives, with a Wilson interval, in one pass over the data.

    These are exactly the bins behind ``ece`` and the other binned calibration metrics of
    :func:`assay.evaluate` with ``calibration_bins=n_bins, calibration_strategy=strategy``.
    Exact definitions, and the one edge rule that differs from
    ``sklearn.calibration.calibration_curve``, are in ``docs/calibration.md``.

    Parameters
    ----------
    data
        Any input :func:`assay.evaluate` accepts (Arrow, polars, pandas, duckdb, numpy, files).
    label, score : str
        Columns of 0/1 labels and of probabilities in [0, 1].
    n_bins : int
        Bins per slice, in [1, 100000].
    strategy : {"uniform", "quantile"}
        ``"uniform"``: equal-width bins over [0, 1], left-closed ``[e_k, e_k+1)``, the last one
        closed (0.0 lands in the first bin, 1.0 in the last). ``"quantile"``: equal-mass bins
        with edges at the slice's exact quantiles ``k / n_bins`` (numpy's linear quantile;
        weighted inverted-CDF quantile with ``weight``), right-closed: a score tied with an
        edge goes to the lower bin. Repeated edges leave empty bins, which are kept.
    slices
        Slice specs as in :func:`assay.evaluate`; every slice gets its own bins.
    weight : str, optional
        Column of positive sample weights.
    ci : float
        Level of the Wilson interval of ``frac_positive`` (effective sample size
        ``weight_sum^2 / sum(w^2)``).
    nan_policy : {"raise", "drop"}
        Rows with a null/NaN label or score raise, or are dropped.
    n_threads : int, optional
        Worker threads (default: all cores); the table is bit-identical for any count.
    max_slices : int or None
        The most slices one slice spec may make, as in :func:`assay.evaluate`.
    progress : bool, optional
        Show a progress line, as in :func:`assay.evaluate`.
    fingerprint : {"schema", "content"}
        What the table's ``provenance`` records of the input, as in :func:`assay.evaluate`
        (``"content"``: also a hash of the values read, computed in the pass).

    Returns
    -------
    ReliabilityTable
        A polars DataFrame that also has ``provenance``, ``save`` and ``to_html`` (see
        :class:`assay.ReliabilityTable`). One row per (slice, bin), ``overall`` first: ``slice``,
        ``bin`` (0-based), ``lower``, ``upper`` (the bin's edges), ``count`` (rows), ``weight_sum``,
        ``mean_score``, ``frac_positive``, ``frac_lo``, ``frac_hi``. An empty bin has ``count`` 0
        and null means and bounds.

    Examples
    --------
    >>> import assay, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.random(10_000)
    >>> y = (rng.random(10_000) < p).astype(int)
    >>> rel = assay.reliability({"y": y, "p": p}, label="y", score="p", n_bins=5)
    >>> rel.select("bin", "lower", "upper", "count").head(2)
    shape: (2, 4)
    ┌─────┬───────┬───────┬───────┐
    │ bin ┆ lower ┆ upper ┆ count │
    │ --- ┆ ---   ┆ ---   ┆ ---   │
    │ i64 ┆ f64   ┆ f64   ┆ i64   │
    ╞═════╪═══════╪═══════╪═══════╡
    │ 0   ┆ 0.0   ┆ 0.2   ┆ 2049  │
    │ 1   ┆ 0.2   ┆ 0.4   ┆ 1947  │
    └─────┴───────┴───────┴───────┘
    >>> bool((rel["frac_positive"] - rel["mean_score"]).abs().max() < 0.05)
    True
    """
    if not isinstance(score, str):
        raise InvalidArgumentError("label and score must be column names (str)")
    calibration = _calibration(n_bins, strategy, ("n_bins", "strategy"))
    level = ci_arg(ci)
    job = _job(
        label=label, score=score, slices=slices, metrics=["base_rate"], threshold=0.5,
        weight=weight, min_slice_size=0, nan_policy=nan_policy, auc="exact", auc_bins=4096,
        interval=None, compare=None, calibration=calibration, reliability=level,
    )
    result = _run(data, job, n_threads, max_slices, progress, fingerprint)
    frame = pl.from_arrow(result[6])
    assert isinstance(frame, pl.DataFrame)
    # (A polars DataFrame that also keeps what produced it: see assay._tables.)
    return ReliabilityTable._of(frame, provenance_of(result, job, "reliability"))
