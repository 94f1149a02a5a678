"""``assay.baselines``: the model's metrics next to those of trivial and random classifiers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from . import _common as c
from ._evaluate import SliceLike, evaluate
from .errors import InvalidArgumentError

__all__ = ["baselines", "BASELINES"]

BASELINES: tuple[str, ...] = (
    "model", "uniform_random", "label_distribution", "zero_rule", "heuristic",
)
"""The rows of :func:`baselines`, in their order (``heuristic`` only when one is given)."""

_DEFAULT_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "mcc",
                    "roc_auc")
_ALLOWED = (*c.CONFUSION_METRICS, "roc_auc")
# Metrics without a better direction, from the engine's metric registry.
_NO_DIRECTION = frozenset(r[0] for r in c.REGISTRY if r[3] is None)
_MAX_SIMULATE = 100_000  # simulated draws (each one is a full evaluation)


def baselines(
    data: Any,
    *,
    label: str,
    score: str,
    threshold: float = 0.5,
    slices: Sequence[SliceLike] | SliceLike = (),
    heuristic: str | None = None,
    heuristic_threshold: float | None = None,
    prior: float | None = None,
    metrics: Sequence[str] | None = None,
    weight: str | None = None,
    lift_metric: str | None = None,
    min_slice_size: int = 0,
    simulate: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """The model's metrics next to those of baseline classifiers, overall and per slice.

    A metric means little without a baseline: 93% accuracy is poor when 95% of the labels are
    negative. Each slice gets one row per baseline:

    - ``model``: the model (``score >= threshold`` is positive), from :func:`assay.evaluate`.
    - ``uniform_random``: predicts each class with probability 1/2, independently of the row.
    - ``label_distribution``: predicts positive with probability ``prior``, the positive
      frequency of the training labels (default: the observed, weighted base rate of ``data``).
    - ``zero_rule``: always predicts the majority class (positive when ``prior > 0.5``, else
      negative; a tie goes to negative).
    - ``heuristic`` (when given): a column of predictions or scores of an existing system
      (e.g. a rule), thresholded at ``heuristic_threshold`` (default ``threshold``).

    The baselines see no features, so every slice's baseline uses the same ``prior`` (a
    slice-agnostic classifier). Random baselines report **expected values in closed form**: a
    classifier that predicts positive with probability ``q`` on a slice with base rate ``pi``
    has expected confusion fractions ``TP = q pi``, ``FP = q (1 - pi)``, ``FN = (1 - q) pi``,
    ``TN = (1 - q) (1 - pi)``, and each metric is computed from them with the definitions of
    :func:`assay.evaluate`. This is exact for the metrics linear in the counts (accuracy,
    recall, specificity, fpr, fnr, the rates, balanced accuracy) and for precision, and the
    large-sample limit for F1 and MCC (MCC is 0 for any random classifier). ROC-AUC of every
    random or constant baseline is 0.5 (null for a single-class slice).

    Parameters
    ----------
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    label, score : str
        Columns of 0/1 labels and of the model's scores.
    threshold : float
        The model predicts positive when ``score >= threshold``.
    slices
        Slice specs as in :func:`assay.evaluate`.
    heuristic : str, optional
        Column of a heuristic's predictions (bool or 0/1) or scores.
    heuristic_threshold : float, optional
        Threshold of the heuristic's scores (default: ``threshold``).
    prior : float, optional
        Positive-class frequency of the training labels, in [0, 1].
    metrics : list of str, optional
        Any of ``base_rate``, ``prediction_rate``, ``accuracy``, ``balanced_accuracy``,
        ``precision``, ``recall``, ``specificity``, ``fpr``, ``fnr``, ``f1``, ``f<beta>``,
        ``mcc``, ``roc_auc``. Default: accuracy, balanced_accuracy, precision, recall, f1, mcc,
        roc_auc.
    weight : str, optional
        Column of positive sample weights.
    lift_metric : str, optional
        The metric of the ``lift`` column, one of ``metrics`` (default: ``f1`` when it is
        computed, else the first metric with a better/worse direction).
    min_slice_size : int
        Slices with fewer rows get null metrics (as in :func:`assay.evaluate`).
    simulate : int, optional
        Also draw the two random baselines ``simulate`` times (with ``seed``; at most 100000)
        and report the mean metric over the draws in ``<metric>_sim`` columns: a check of the
        closed form.
    seed : int
        Seed of the simulated draws.

    Returns
    -------
    polars.DataFrame
        One row per (slice, baseline), ``overall`` first and the baselines in the order above:
        ``slice``, ``baseline``, ``n``, ``weight_sum`` (weighted jobs), one Float64 column per
        metric (null where undefined), ``lift`` and, with ``simulate``, ``<metric>_sim``.
        ``lift`` is the model's ``lift_metric`` minus the baseline's (the baseline's minus the
        model's for ``fpr``/``fnr``), so a positive lift means the model is better: a
        difference, not a ratio, because the ratio is undefined when the baseline scores 0
        (the zero rule's F1). The model row's lift is 0.

    Examples
    --------
    With 90% negative and 10% positive labels, guessing uniformly at random has F1 1/6 and
    accuracy 0.5; guessing with the label frequencies has F1 0.1 and accuracy 0.82:

    >>> import assay, numpy as np
    >>> y = np.r_[np.zeros(900), np.ones(100)]
    >>> p = np.where(y == 1, 0.8, 0.3)
    >>> tab = assay.baselines({"y": y, "p": p}, label="y", score="p",
    ...                       metrics=["accuracy", "f1"])
    >>> tab.select("baseline", "accuracy", "f1", "lift")
    shape: (4, 4)
    ┌────────────────────┬──────────┬──────────┬──────────┐
    │ baseline           ┆ accuracy ┆ f1       ┆ lift     │
    │ ---                ┆ ---      ┆ ---      ┆ ---      │
    │ str                ┆ f64      ┆ f64      ┆ f64      │
    ╞════════════════════╪══════════╪══════════╪══════════╡
    │ model              ┆ 1.0      ┆ 1.0      ┆ 0.0      │
    │ uniform_random     ┆ 0.5      ┆ 0.166667 ┆ 0.833333 │
    │ label_distribution ┆ 0.82     ┆ 0.1      ┆ 0.9      │
    │ zero_rule          ┆ 0.9      ┆ 0.0      ┆ 1.0      │
    └────────────────────┴──────────┴──────────┴──────────┘
    """
    what = "baselines"
    df = c.load(data, what)
    y = c.labels(df, label, what)
    c.scores(df, score, what)
    w = c.weights(df, weight, what)
    c.not_empty(df.height, what)
    names = c.metric_names(metrics, what, _ALLOWED, _DEFAULT_METRICS)
    if lift_metric is None:
        directional = [m for m in names if m not in _NO_DIRECTION]
        lift_metric = "f1" if "f1" in names else (directional or names)[0]
    if not isinstance(lift_metric, str):
        raise InvalidArgumentError(f"{what}: lift_metric must be a metric name, got "
                                   f"{lift_metric!r}")
    lift_name = c.metric_names([lift_metric], what, _ALLOWED)[0]
    if lift_name not in names:
        raise InvalidArgumentError(
            f"{what}: lift_metric {lift_name!r} is not one of the metrics {names}"
        )
    if lift_name in _NO_DIRECTION:
        raise InvalidArgumentError(
            f"{what}: {lift_name} has no better or worse direction; choose another lift_metric"
        )
    if prior is None:
        q_prior = float(np.average(y, weights=w))
    else:
        q_prior = c.probability_arg(prior, "prior", what)
    if heuristic_threshold is not None:
        c.real_arg(heuristic_threshold, "heuristic_threshold", what)
    if simulate is not None:
        simulate = c.positive_int(simulate, "simulate", what, 1, _MAX_SIMULATE)
    seed = c.seed_arg(seed, what)

    engine_metrics = [m for m in names if m != "base_rate"] + ["base_rate"]
    common = dict(label=label, slices=slices, threshold=threshold, weight=weight,
                  min_slice_size=min_slice_size)
    model = evaluate(df, score=score, metrics=engine_metrics, **common).table  # type: ignore[arg-type]
    pi = model.get_column("base_rate").cast(pl.Float64).fill_null(np.nan).to_numpy()
    counts = ["n", "weight_sum"] if weight is not None else ["n"]
    head = model.select("slice", *counts)

    frames: list[pl.DataFrame] = [
        head.with_columns(pl.lit("model").alias("baseline"), *(model.get_column(m)
                                                              for m in names))
    ]
    random_q = {"uniform_random": 0.5, "label_distribution": q_prior,
                "zero_rule": 1.0 if q_prior > 0.5 else 0.0}
    for base, q in random_q.items():
        cols = []
        for m in names:
            if m == "roc_auc":
                v = np.where((pi > 0) & (pi < 1), 0.5, np.nan)
            else:
                v = c.from_counts(m, q * pi, q * (1 - pi), (1 - q) * (1 - pi), (1 - q) * pi)
            cols.append(c.nullable(v, m))
        frames.append(head.with_columns(pl.lit(base).alias("baseline"), *cols))
    if heuristic is not None:
        h = c.column(df, heuristic, "heuristic", what)
        hdf = df.with_columns(h.cast(pl.Float64)) if h.dtype == pl.Boolean else df
        hthr = threshold if heuristic_threshold is None else heuristic_threshold
        ht = evaluate(hdf, score=heuristic, metrics=engine_metrics,
                      **{**common, "threshold": hthr}).table  # type: ignore[arg-type]
        frames.append(head.with_columns(pl.lit("heuristic").alias("baseline"),
                                        *(ht.get_column(m) for m in names)))
    order = ["slice", "baseline", *counts, *names]
    k = len(frames)
    out = pl.concat([f.select(order).with_columns(
        pl.lit(b, dtype=pl.Int64).alias("_b"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_s"))
        for b, f in enumerate(frames)])
    model_vals = np.tile(model.get_column(lift_name).cast(pl.Float64).fill_null(np.nan)
                         .to_numpy(), k)
    base_vals = out.get_column(lift_name).cast(pl.Float64).fill_null(np.nan).to_numpy()
    lift = base_vals - model_vals if lift_name in c.LOWER_IS_BETTER else model_vals - base_vals
    out = out.with_columns(c.nullable(lift, "lift"))

    if simulate is not None:
        sims = _simulate(df, names, q_prior, simulate, seed, common, model.height)
        none = np.full(model.height, np.nan)
        out = out.with_columns(*(
            c.nullable(np.concatenate([none, *sims[m], none] + [none] * (k - 4)), f"{m}_sim")
            for m in names
        ))
    return out.sort("_s", "_b").drop("_s", "_b")


def _simulate(df: pl.DataFrame, names: list[str], q_prior: float, draws: int, seed: int,
              common: dict[str, Any], n_slices: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric, the mean over ``draws`` simulated draws of (uniform random, label
    distribution) per slice; a draw where a metric is undefined is left out of its mean."""
    rng = np.random.default_rng(seed)
    col = "__assay_baseline_draw"
    sums = np.zeros((2, len(names), n_slices))
    defined = np.zeros((2, len(names), n_slices))
    for _ in range(draws):
        for b, q in enumerate((0.5, q_prior)):
            pred = (rng.random(df.height) < q).astype(np.float64)
            t = evaluate(df.with_columns(pl.Series(col, pred)), score=col, metrics=names,
                         **{**common, "threshold": 0.5}).table
            for j, m in enumerate(names):
                v = t.get_column(m).cast(pl.Float64).fill_null(np.nan).to_numpy()
                ok = ~np.isnan(v)
                sums[b, j] += np.where(ok, v, 0.0)
                defined[b, j] += ok
    mean = c.ratio(sums, defined)
    return {m: (mean[0, j], mean[1, j]) for j, m in enumerate(names)}
