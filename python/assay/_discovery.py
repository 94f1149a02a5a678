"""``assay.discover_slices``: the slices (conjunctions of ``feature = value`` predicates) where a
model's error is much higher than average, and ``slice_filters`` to select their rows.

The definitions (score, pruning, tie-breaking, statistics, dedupe, beam search) are in
docs/discovery.md; the search itself runs in the Rust core (one pass to encode the rows, then a
level-wise search over the lattice of conjunctions).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from . import _native, _progress, _provenance
from ._args import U64_MAX, bool_arg, float_arg, int_arg, is_bool, show
from ._evaluate import (
    MAX_BINS,
    Bins,
    _fingerprint,
    _list_size,
    _multiclass_options,
    _threads,
    bins,
)
from ._input import Source, to_source
from ._provenance import Provenance
from ._tables import DiscoveryTable
from .errors import ColumnNotFoundError, InvalidArgumentError, NothingFoundWarning
from .report import ArrowResult, frame_to_arrow

__all__ = ["discover_slices", "discover_regressions", "slice_filters", "ERRORS", "COLUMNS",
           "MULTICLASS_ERRORS", "REGRESSION_COLUMNS"]

ERRORS: tuple[str, ...] = ("log_loss", "zero_one", "squared")
"""The built-in per-row errors (any other ``error=`` names a column of per-row errors)."""

COLUMNS: tuple[str, ...] = (
    "rank", "slice", "level", "predicates", "size", "support", "error_mean", "error_ratio",
    "score", "effect_size", "p_value", "q_value", "significant",
)
"""The columns of the table ``discover_slices`` returns, in order."""

REGRESSION_COLUMNS: tuple[str, ...] = (
    "rank", "slice", "level", "predicates", "size", "support", "error_reference",
    "error_model", "delta", "delta_lo", "delta_hi", "contribution", "effect_size", "p_value",
    "p_adjusted",
    "significant",
)
"""The columns of the table ``discover_regressions`` returns, in order."""

CORRECTIONS: tuple[str, ...] = ("holm", "bh", "none")
"""The corrections of ``discover_regressions``' p-values."""

_PREDICATE = pl.Struct({"feature": pl.String, "value": pl.String, "edges": pl.List(pl.Float64)})
_MAX_VALUES = 65_535  # value codes are 16-bit in the engine
# Bounds of the search sizes (k, levels, beam): far above any useful value, low enough that no
# size product in the engine can overflow.
_MAX_K = 1_000_000
_MAX_LEVEL = 1_000
_MAX_BEAM = 1_000_000


@dataclass
class Discovery(ArrowResult):
    """Everything one search returns (``discover_slices`` hands back ``table``).
    ``to_arrow()``/``to_dict()``/``to_json()`` give ``table`` without polars (safe in a forked
    child)."""

    table: pl.DataFrame
    """The ranked slices (columns :data:`COLUMNS`)."""
    rows: int
    """Rows read."""
    dropped: int
    """Rows dropped by ``nan_policy="drop"``."""
    error_mean: float
    """The mean error over the rows kept."""
    n_scored: int
    """Candidates scored (``size >= min_support``): the family of the q-values."""
    min_support: int
    """The minimum slice size in rows that the search used."""
    edges: dict[str, list[float]] = field(default_factory=dict)
    """The bin edges of every binned feature (exact; the slice labels print 6+ digits)."""
    schema: list[tuple[str, str]] | None = None
    """The columns read, as (name, Arrow type)."""
    content_hash: str | None = None
    """With ``fingerprint="content"``: the content hash of the columns read."""

    def __post_init__(self) -> None:
        self._arrow = frame_to_arrow(self.table)


def discover_slices(
    data: Any,
    *,
    label: str | None = None,
    score: str | None = None,
    prediction: str | None = None,
    task: Literal["binary", "regression", "multiclass"] = "binary",
    features: Sequence[str | Bins] | str | Bins,
    error: str | None = None,
    classes: Sequence[str] | Sequence[int] | None = None,
    normalize: Literal["raise", "divide", "softmax"] = "raise",
    k: int = 10,
    max_level: int = 3,
    min_support: float | int = 0.01,
    alpha: float = 0.95,
    method: Literal["sliceline", "beam"] = "sliceline",
    beam_width: int = 20,
    n_bins: int = 5,
    max_values: int = 1000,
    dedupe: bool = True,
    fdr: float = 0.05,
    threshold: float = 0.5,
    nan_policy: Literal["raise", "drop"] = "raise",
    n_threads: int | None = None,
    progress: bool | None = None,
    fingerprint: Literal["schema", "content"] = "schema",
) -> DiscoveryTable:
    """Find the slices where the model's error is much higher than average.

    A *slice* is a conjunction of ``feature = value`` predicates over up to ``max_level``
    features, such as ``country=NG & device=tablet``. Every slice is ranked by the SliceLine
    score (Sagadeeva & Boehm, SIGMOD 2021) of its mean error ``e_S`` and size ``|S|`` among
    ``n`` rows of mean error ``e``::

        score = alpha * (e_S / e - 1) - (1 - alpha) * (n / |S| - 1)

    and the ``k`` best slices with ``|S| >= min_support`` and ``score > 0`` are returned, each
    with a one-sided Welch t-test against the other rows and a Benjamini-Hochberg q-value.
    ``method="sliceline"`` returns the exact top-k (the lattice is pruned only where an upper
    bound of the score proves that no slice below can enter it). Definitions: docs/discovery.md.

    Parameters
    ----------
    data
        Anything :func:`assay.evaluate` reads: a pyarrow ``Table``/``RecordBatch``/
        ``RecordBatchReader``, a polars ``DataFrame``/``LazyFrame``, a pandas ``DataFrame``, a
        duckdb relation, a dict of numpy arrays, a Parquet/CSV/Arrow IPC path, or anything with
        ``__arrow_c_stream__``.
    label, score : str, optional
        Columns of 0/1 labels and scores, needed by the built-in errors.
    prediction : str, optional
        ``task="regression"``: the column of predictions (labels are then numeric targets).
    task : {"binary", "regression", "multiclass"}
        The task family, as in :func:`assay.evaluate`. With ``task="multiclass"``, ``score``
        is a list column of K class probabilities (``classes`` and ``normalize`` as in
        :func:`assay.evaluate`) and ``error`` is ``"log_loss"`` (the default,
        ``-log p(label)``) or ``"zero_one"`` (``argmax != label``).
    classes, normalize
        ``task="multiclass"``: as in :func:`assay.evaluate`.
    features : sequence of str or Bins
        The columns slices are made of. A string, integer, boolean or dictionary column is
        categorical as it is (null is a value of its own, ``country=null``); a floating-point
        column is cut into ``n_bins`` quantile bins as ``assay.bins(column, n_bins)`` would,
        and an ``assay.bins(...)`` object chooses the bins itself. Integer columns are
        categorical, as in ``assay.evaluate``: pass ``assay.bins("age", 5)`` to bucket one.
    error : str, optional
        The per-row error slices are ranked by: ``"log_loss"`` (the default; probabilities
        clipped to [eps, 1 - eps]), ``"zero_one"`` (1 when ``score >= threshold`` disagrees with
        the label), ``"squared"`` (``(score - label)^2``); with ``task="regression"``
        ``"absolute"`` (the default, ``|prediction - label|``) or ``"squared"``; or the name of
        a column of per-row errors (finite and >= 0; ``label``, ``score`` and ``prediction``
        are then not used and must not be given). A built-in name wins over a column of the
        same name.
    k : int
        Number of slices to return (fewer when fewer have a positive score), in [1, 1000000].
    max_level : int
        Most predicates per slice, in [1, 1000].
    min_support : float or int
        Smallest slice: a fraction of the rows in (0, 1) (``int(fraction * rows)`` rows, as the
        ``sliceline`` package, and at least 1), or an integer count of rows in
        [1, 2**64 - 1]. A fraction
        needs the row count before the pass, which a one-shot stream cannot give: pass a count.
    alpha : float
        Weight of the error term against the size term of the score, in (0, 1]. Near 1 favours
        small slices with very high error; lower values favour large slices. With
        ``alpha <= 0.5`` no slice can score above 0 (``error_ratio <= rows / size``).
    method : {"sliceline", "beam"}
        ``"sliceline"``: exact top-k by level-wise enumeration with upper-bound pruning.
        ``"beam"``: for wide data, keeps only the ``beam_width`` best slices of each level and
        extends those; fast but not exact.
    beam_width : int
        Slices kept per level by ``method="beam"``, in [1, 1000000].
    n_bins : int
        Quantile bins of a floating-point feature given by name, in [1, 1000000].
    max_values : int
        A categorical feature with more distinct values raises :class:`InvalidArgumentError`
        (bucket a numeric column with ``assay.bins``), at most 65535.
    dedupe : bool
        Drop a slice when one of its ancestors (a slice with a subset of its predicates) is
        already reported above it, unless its error is significantly higher (one-sided Welch
        test at level ``fdr``) than the ancestor's other rows.
    fdr : float
        False-discovery rate in (0, 1): ``significant`` is ``q_value <= fdr``.
    threshold : float
        Decision threshold of ``error="zero_one"``.
    nan_policy : {"raise", "drop"}
        Rows with a null/NaN error (or label or score) raise, or are dropped.
    n_threads : int, optional
        Worker threads (default: ``ASSAY_NUM_THREADS`` or all cores); results do not depend
        on it.
    progress : bool, optional
        Show a progress line while the rows are read, as in :func:`assay.evaluate`.
    fingerprint : {"schema", "content"}
        What the table's ``provenance`` records of the input, as in :func:`assay.evaluate`
        (``"content"``: also a hash of the values read, computed in the pass).

    Returns
    -------
    DiscoveryTable
        A polars DataFrame that also has ``provenance``, ``save`` and ``to_html`` (see
        :class:`assay.DiscoveryTable`). One row per slice, best first: ``rank`` (1-based), ``slice``
        (``"country=BR & device=mobile"``), ``level`` (number of predicates), ``predicates`` (list
        of ``{feature, value}``, value null for the null value, a bin label such as ``"[18, 30)"``
        for a binned feature), ``size`` (rows), ``support`` (size / rows), ``error_mean``,
        ``error_ratio`` (error_mean / overall mean error), ``score``, ``effect_size`` (mean error of
        the slice minus the rest's, in pooled standard deviations; null when undefined), ``p_value``
        (one-sided Welch t-test, H1: the slice's mean error is higher than the rest's), ``q_value``
        (Benjamini-Hochberg over every candidate the search scored) and ``significant`` (``q_value
        <= fdr``). Ties in score are broken by level (fewer predicates first), then by the
        predicates in feature order and value order (the order ``assay.evaluate`` sorts slices in).

    Warns
    -----
    NothingFoundWarning
        The table is empty; the warning says why: no row has an error, every slice is under
        ``min_support`` (features with many values), or no slice scores above 0.

    Raises
    ------
    ColumnNotFoundError
        A feature, label or score column is not in the data.
    InvalidArgumentError
        A bad option (``k < 1``, ``max_level < 1``, ``alpha`` outside (0, 1],
        ``min_support`` outside its range, an ``error`` that is neither a built-in error nor
        a column, ...) or a feature with more than ``max_values`` distinct values.
    InvalidInputError
        Bad values: an error column with NaN (unless ``nan_policy="drop"``), negative or
        infinite values, labels other than 0/1, probabilities outside [0, 1] for log loss.

    See Also
    --------
    slice_filters : a polars expression selecting the rows of each slice found.

    Examples
    --------
    The demo data set's model is weak for ``country=NG`` and on tablets:

    >>> import assay
    >>> from assay.demo import make_data
    >>> df = make_data(100_000, seed=0)
    >>> found = assay.discover_slices(
    ...     df, label="churned", score="p_churn", error="log_loss",
    ...     features=["country", "device", "plan", "age", "tenure_months"], k=10)
    >>> found["slice"].to_list()
    ['device=tablet', 'device=tablet & plan=free', 'country=NG', 'plan=free']
    >>> found.select("size", "error_ratio", "significant").row(0)
    (9837, 2.09..., True)
    >>> [(p["feature"], p["value"], p["edges"]) for p in found["predicates"][1]]
    [('device', 'tablet', None), ('plan', 'free', None)]

    Found slices feed back into :func:`assay.evaluate`, each reported under its label:

    >>> rep = assay.evaluate(df, label="churned", score="p_churn", slices=found,
    ...                      metrics=["log_loss"])
    >>> rep.table["slice"].to_list()[:3]
    ['overall', 'device=tablet', 'device=tablet & plan=free']

    The rows of each slice, as polars expressions (see ``assay._discovery.slice_filters``):

    >>> import polars as pl
    >>> from assay._discovery import slice_filters
    >>> pl.from_arrow(df).select(slice_filters(found)).sum().row(0)
    (9837, 4929, 5992, 50089)
    """
    found = _discover(
        data, label=label, score=score, prediction=prediction, task=task, features=features,
        error=error, classes=classes, normalize=normalize, k=k,
        max_level=max_level, min_support=min_support, alpha=alpha, method=method,
        beam_width=beam_width, n_bins=n_bins, max_values=max_values, dedupe=dedupe, fdr=fdr,
        threshold=threshold, nan_policy=nan_policy, n_threads=n_threads, progress=progress,
        fingerprint=fingerprint,
    )
    if found.table.height == 0:
        warnings.warn(_why_empty(found, float(alpha)), NothingFoundWarning, stacklevel=2)
    from ._spec import _feature_json

    options = {
        "label": label, "score": score, "prediction": prediction, "task": task,
        "features": [f if isinstance(f, str) else _feature_json(f)
                     for f in _feature_specs(features)],
        "error": error, "classes": None if classes is None else list(classes),
        "normalize": normalize, "k": k, "max_level": max_level, "min_support": min_support,
        "alpha": alpha, "method": method, "beam_width": beam_width, "n_bins": n_bins,
        "max_values": max_values, "dedupe": dedupe, "fdr": fdr, "threshold": threshold,
        "nan_policy": nan_policy,
    }
    return DiscoveryTable._of(found.table, Provenance(
        spec=None, assay_version=_native.__version__, created=_provenance.now(),
        rows=found.rows, schema=found.schema, content_hash=found.content_hash,
        git_commit=_provenance.git_commit(), kind="discovery",
        extra={"discover_slices": options}))


def _why_empty(found: Discovery, alpha: float) -> str:
    """Why a search returned no slice."""
    kept = found.rows - found.dropped
    if not found.error_mean > 0:
        return (f"discover_slices found no slice: no row of the {kept} has a positive error "
                "(the model makes no error, so no slice is worse than the rest)")
    if found.n_scored == 0:
        return (f"discover_slices found no slice: every slice has fewer than min_support="
                f"{found.min_support} rows of the {kept}. Features with many values (an "
                "ID-like integer column is categorical: one value per row) make only small "
                "slices; bucket them with assay.bins(column, n), or lower min_support")
    hint = (" (with alpha <= 0.5 no slice can score above 0)" if alpha <= 0.5 else
            "; raise alpha to favour smaller slices with higher error")
    return (f"discover_slices found no slice: none of the {found.n_scored} slices with at "
            f"least min_support={found.min_support} rows scores above 0, i.e. is worse "
            f"enough than average for its size{hint}")


def discover_regressions(
    data: Any,
    *,
    label: str,
    scores: Mapping[str, str] | Sequence[str],
    features: Sequence[str | Bins] | str | Bins,
    reference: str | None = None,
    task: Literal["binary", "regression", "multiclass"] = "binary",
    error: str | None = None,
    classes: Sequence[str] | Sequence[int] | None = None,
    normalize: Literal["raise", "divide", "softmax"] = "raise",
    k: int = 10,
    max_level: int = 3,
    min_support: float | int = 0.01,
    method: Literal["sliceline", "beam"] = "sliceline",
    beam_width: int = 20,
    n_bins: int = 5,
    max_values: int = 1000,
    dedupe: bool = True,
    ci: float = 0.95,
    correction: Literal["holm", "bh", "none"] = "holm",
    threshold: float = 0.5,
    nan_policy: Literal["raise", "drop"] = "raise",
    n_threads: int | None = None,
    progress: bool | None = None,
) -> pl.DataFrame:
    """Find the slices where a new model got worse than the reference model, on the same rows.

    Each row's *paired* difference of errors, ``d = error(model) - error(reference)``, is
    what the search works on (in the error's units), so segments that are hard for both
    models have ``d`` near 0 and only the rows the new model does worse on than the old one
    count. The search is the exact lattice
    search of :func:`discover_slices` (conjunctions of up to ``max_level`` ``feature =
    value`` predicates, at least ``min_support`` rows, pruned only where an upper bound of
    the score proves no slice below can enter the top ``k``). A slice's score is its
    ``contribution``, the sum of its ``d`` over all rows: the part of the change of the
    overall mean error its rows carry, so a broken segment ranks above its own sub-slices.
    Each slice found gets the paired (large-sample, normal) interval of its mean difference
    and the one-sided paired z-test of "the model's mean error is higher", its p-value
    adjusted over every candidate the search scored. Definitions: docs/discovery.md §10.

    The intervals and p-values are computed on the rows the slices were selected on: a
    slice chosen as the worst of many is, on average, a little less bad on new data. To
    confirm what was found, compare the models on other rows with
    ``assay.compare(holdout, ..., slices=found)``.

    Parameters
    ----------
    data
        Anything :func:`assay.evaluate` reads.
    label : str
        The column of labels (0/1 for ``task="binary"``, numeric targets for
        ``task="regression"``, classes for ``task="multiclass"``).
    scores : dict or list of two column names
        The two models, ``{"prod": "p_old", "cand": "p_new"}`` (or two column names, which
        are then the models' names): scores (probabilities) of binary classifiers, a
        regressor's predictions with ``task="regression"``, or list columns of the K class
        probabilities with ``task="multiclass"``.
    features : sequence of str or Bins
        The columns slices are made of, as in :func:`discover_slices`.
    reference : str, optional
        The name of the reference model (default: the first); the other is the model whose
        regressions are searched for.
    task : {"binary", "regression", "multiclass"}
        The task family.
    error : str, optional
        The per-row error both models are scored by: ``"log_loss"`` (the default),
        ``"zero_one"`` or ``"squared"`` for binary models; ``"absolute"`` (the default) or
        ``"squared"`` for regressors; ``"log_loss"`` (``-log p(label)``, the default) or
        ``"zero_one"`` (argmax != label) for multiclass models.
    classes, normalize
        ``task="multiclass"``: as in :func:`assay.evaluate` (both models' probabilities
        follow the same classes).
    k, max_level, min_support, method, beam_width, n_bins, max_values
        As in :func:`discover_slices`.
    dedupe : bool
        Keep a slice only when it shows a regression of its own against every slice reported
        above it that shares rows with it: against an ancestor, its differences are
        significantly higher (one-sided Welch test) than on the ancestor's other rows;
        against any other overlapping slice, its rows outside that slice are significantly
        worse on their own (one-sided paired z-test). Both test at the level the correction
        would test one more slice at (see docs/discovery.md §10).
    ci : float
        Level of the (two-sided) intervals, in (0, 1); ``significant`` is
        ``p_adjusted <= (1 - ci) / 2``, so an uncorrected slice is significant exactly when
        its interval lies above 0.
    correction : {"holm", "bh", "none"}
        How ``p_adjusted`` corrects for the many slices scored: Holm (the default; the
        chance that any slice reported significant is not worse is at most ``(1 - ci) / 2``
        over the slices the search scored), Benjamini-Hochberg (false-discovery rate, for
        exploration) or none.
    threshold : float
        Decision threshold of ``error="zero_one"``.
    nan_policy : {"raise", "drop"}
        Rows with a null/NaN label or score (of either model) raise, or are dropped.
    n_threads : int, optional
        Worker threads; results do not depend on it.
    progress : bool, optional
        Show a progress line while the rows are read, as in :func:`assay.evaluate`.

    Returns
    -------
    polars.DataFrame
        One row per slice, largest degradation first (ties as in :func:`discover_slices`):
        ``rank``, ``slice``, ``level``, ``predicates``, ``size``, ``support``,
        ``error_reference`` and ``error_model`` (the mean error of each model in the slice),
        ``delta`` (their mean difference), ``delta_lo``/``delta_hi`` (``delta -/+ z * se``
        at ``ci``, ``se`` the standard error of the mean difference; null below 2 rows),
        ``contribution`` (the score: ``delta * size / rows``), ``effect_size`` (``delta``
        over the standard deviation of the differences; null when they do not vary),
        ``p_value`` (one-sided paired z-test, H1: the model's mean error is higher),
        ``p_adjusted`` and ``significant``. Only slices with ``delta > 0`` are reported.

    Raises
    ------
    ColumnNotFoundError
        A feature, label or score column is not in the data.
    InvalidArgumentError
        Not exactly two models, an unknown reference, an ``error`` that is not a built-in
        error, a bad option (as :func:`discover_slices`), ``ci`` outside (0, 1), an unknown
        correction.
    InvalidInputError
        Bad values, naming the column: labels other than 0/1, NaN scores (unless
        ``nan_policy="drop"``), probabilities outside [0, 1] for log loss.

    Examples
    --------
    The demo's candidate model was broken for the ``partner`` channel:

    >>> import assay
    >>> from assay.demo import make_comparison_data
    >>> df = make_comparison_data(100_000, seed=0)
    >>> found = assay.discover_regressions(
    ...     df, label="churned", scores={"prod": "p_old", "cand": "p_new"},
    ...     features=["country", "device", "channel", "plan"], error="log_loss", k=5)
    >>> found["slice"].to_list()
    ['channel=partner']
    >>> found.select("error_reference", "error_model", "delta", "significant").row(0)
    (0.46..., 0.77..., 0.31..., True)

    Segments hard for both models are not regressions (only rows the candidate does worse on
    count), and a slice that is worse only through its partner rows is left out (dedupe).
    Confirm on other rows, with the compare gate:

    >>> holdout = make_comparison_data(50_000, seed=1)
    >>> cmp = assay.compare(holdout, label="churned", scores={"prod": "p_old", "cand": "p_new"},
    ...                     slices=found, metrics=["log_loss"], bootstrap=200, seed=0)
    >>> cmp.table.select("slice", "verdict").rows()
    [('overall', 'worse'), ('channel=partner', 'worse')]
    """
    from ._compare import _models

    models = _models(scores, reference, "discover_regressions")
    if len(models) != 2:
        raise InvalidArgumentError(
            f"discover_regressions compares two models, got {len(models)}: "
            + ", ".join(n for n, _ in models))
    (_, ref_col), (_, model_col) = models
    if ref_col == model_col:
        raise InvalidArgumentError(
            f"both models read the column {ref_col!r}: their errors cannot differ")
    ci = float_arg(ci, "ci", None, 0, 1, lo_open=True, hi_open=True)
    if correction not in CORRECTIONS:
        raise InvalidArgumentError(
            f"correction must be one of {', '.join(map(repr, CORRECTIONS))}, got "
            f"{show(correction)}")
    known = {"binary": ERRORS, "multiclass": MULTICLASS_ERRORS}.get(task, REGRESSION_ERRORS)
    if error is not None and (not isinstance(error, str) or error not in known):
        raise InvalidArgumentError(
            f"error must be one of {', '.join(map(repr, known))} (each model's error is "
            f"computed from the label and its {'score' if task == 'binary' else 'prediction'}),"
            f" got {show(error)}")
    output = {"score": model_col} if task != "regression" else {"prediction": model_col}
    return _discover(
        data, label=label, task=task, features=features, error=error, k=k,
        max_level=max_level, min_support=min_support, method=method, beam_width=beam_width,
        n_bins=n_bins, max_values=max_values, dedupe=dedupe, threshold=threshold,
        classes=classes, normalize=normalize,
        nan_policy=nan_policy, n_threads=n_threads, paired=(ref_col, ci, str(correction)),
        progress=progress,
        **output,
    ).table


def _discover(
    data: Any, *, label: Any = None, score: Any = None, prediction: Any = None,
    task: Any = "binary", features: Any, error: Any = None, classes: Any = None,
    normalize: Any = "raise", k: Any = 10, max_level: Any = 3, min_support: Any = 0.01,
    alpha: Any = 0.95,
    method: Any = "sliceline", beam_width: Any = 20, n_bins: Any = 5, max_values: Any = 1000,
    dedupe: Any = True, fdr: Any = 0.05, threshold: Any = 0.5, nan_policy: Any = "raise",
    n_threads: Any = None, paired: tuple[str, float, str] | None = None,
    progress: Any = None, fingerprint: Any = "schema",
) -> Discovery:
    """``discover_slices`` with its bookkeeping (rows, dropped, n_scored, edges); with
    ``paired=(reference column, ci, correction)`` the paired search of
    ``discover_regressions`` (``score``/``prediction`` is then the compared model)."""
    k = int_arg(k, "k", None, 1, _MAX_K)
    max_level = int_arg(max_level, "max_level", None, 1, _MAX_LEVEL)
    beam_width = int_arg(beam_width, "beam_width", None, 1, _MAX_BEAM)
    n_bins = int_arg(n_bins, "n_bins", None, 1, MAX_BINS)
    max_values = int_arg(max_values, "max_values", None, 1, _MAX_VALUES)
    alpha = float_arg(alpha, "alpha", None, 0, 1, lo_open=True)
    fdr = float_arg(fdr, "fdr", None, 0, 1, lo_open=True, hi_open=True)
    threshold = float_arg(threshold, "threshold", None)
    if task == "regression" and threshold != 0.5:
        raise InvalidArgumentError(
            "threshold is the decision threshold of error='zero_one' (task='binary'); "
            "task='regression' has none")
    support = _min_support(min_support)
    if method not in ("sliceline", "beam"):
        raise InvalidArgumentError(
            f"unknown method {show(method)}; use 'sliceline' (exact top-k) or 'beam'"
        )
    dedupe = bool_arg(dedupe, "dedupe")
    if nan_policy not in ("raise", "drop"):
        raise InvalidArgumentError(
            f"nan_policy must be 'raise' or 'drop', got {show(nan_policy)}"
        )
    threads = _threads(n_threads)
    specs = _feature_specs(features)
    err = _error_spec(error, label, score, prediction, task)
    _, classes_, normalize_ = _multiclass_options(task, None, classes, None, normalize)
    if task == "multiclass" and threshold != 0.5:
        raise InvalidArgumentError(
            "threshold is the decision threshold of a binary error='zero_one'; "
            "task='multiclass' predicts the argmax")

    source = to_source(data)
    source.progress = _progress.enabled(progress)
    source.slice_as_text(s for s in specs if isinstance(s, str))
    source.check_binnable(s.column for s in specs if not isinstance(s, str))
    source.check_numbers({err[1]: "label", err[2]: "prediction" if task == "regression"
                          else "score", err[3]: "error column",
                          paired[0] if paired and task != "multiclass" else None:
                          "second model's output"})
    source.check_columns([*(s if isinstance(s, str) else s.column for s in specs), *err[1:],
                          paired[0] if paired else None])
    names = source.names
    if names is not None:
        for col in [s if isinstance(s, str) else s.column for s in specs]:
            if col not in names:
                raise ColumnNotFoundError(_missing(col, names, "feature"), col)
        if paired is not None and paired[0] not in names:
            raise ColumnNotFoundError(_missing(paired[0], names, "score"), paired[0])
        if err[0] == "column" and err[3] not in names:
            known = ERRORS if task == "binary" else REGRESSION_ERRORS
            raise InvalidArgumentError(
                f"error must be one of {', '.join(map(repr, known))} or the name of a column "
                f"of per-row errors; there is no column {err[3]!r} (columns: "
                + ", ".join(map(repr, names)) + ")"
            )
    floats = _float_columns(data, source, [s for s in specs if isinstance(s, str)])
    resolved: list[tuple[str, list[float] | None]] = []
    edges: dict[str, list[float]] = {}
    for s in specs:
        spec = bins(s, n_bins) if isinstance(s, str) and s in floats else s
        if isinstance(spec, Bins):
            e = [float(x) for x in spec.resolve(source)]
            edges[spec.column] = e
            resolved.append((spec.column, e))
        else:
            resolved.append((spec, None))
    if isinstance(support, float):
        rows = _row_count(data, source, resolved[0][0])
        if rows is None:
            raise InvalidArgumentError(
                f"min_support={min_support!r} is a fraction of the rows, but this input is a "
                "one-shot stream whose row count is unknown before the pass; give a count of "
                "rows (an int >= 1)"
            )
        count = max(1, int(support * rows))
    else:
        count = support

    read = [c for c, _ in resolved] + [*err[1:], paired[0] if paired else None]
    with source.guard:  # a failure of the source mid-stream surfaces as its own typed error
        content = _fingerprint(fingerprint)
        table, rows_read, dropped, error_mean, n_scored, (schema, content_hash) = \
            _native.discover_slices(
            source.open(read),
            resolved,
            err,
            float(threshold),
            k,
            max_level,
            count,
            float(alpha),
            method,
            beam_width,
            max_values,
            dedupe,
            float(fdr),
            nan_policy,
            threads,
            paired,
            _discovery_classes(classes_, normalize_, source, err[2]) if task == "multiclass"
            else None,
            content,
        )
    return Discovery(
        table=_shape(table, edges, REGRESSION_COLUMNS if paired else COLUMNS),
        rows=int(rows_read),
        dropped=int(dropped),
        error_mean=float(error_mean),
        n_scored=int(n_scored),
        min_support=count,
        edges=edges,
        schema=[(str(n), str(t)) for n, t in schema],
        content_hash=None if content_hash is None else f"{int(content_hash):016x}",
    )


# ----------------------------------------------------------------------------------------------
# argument checks


def _min_support(value: Any) -> float | int:
    """A fraction in (0, 1) stays a float; an integer in [1, 2**64 - 1] is a count of rows."""
    if is_bool(value):
        raise InvalidArgumentError(f"min_support must be a number, got {show(value)}")
    if isinstance(value, numbers.Integral):
        if not 1 <= int(value) <= U64_MAX:
            raise InvalidArgumentError(
                f"min_support as a count of rows must be an integer in [1, {U64_MAX}], got "
                f"{show(value)} (a fraction of the rows is a float in (0, 1))"
            )
        return int(value)
    if isinstance(value, numbers.Real):
        return float_arg(
            value, "min_support as a fraction of the rows (a count of rows is an int >= 1)",
            None, 0, 1, lo_open=True, hi_open=True,
        )
    raise InvalidArgumentError(
        f"min_support must be a fraction in (0, 1) or a count of rows >= 1, got {show(value)}"
    )


def _feature_specs(features: Any) -> list[str | Bins]:
    if isinstance(features, (str, Bins)):
        features = [features]
    if not isinstance(features, Sequence) or isinstance(features, (bytes, bytearray)):
        raise InvalidArgumentError(
            f"features must be a list of column names or assay.bins(...), got {features!r}"
        )
    out: list[str | Bins] = []
    seen: set[str] = set()
    for f in features:
        if not isinstance(f, (str, Bins)):
            hint = " (discovery finds the crosses itself)" if isinstance(f, tuple) else ""
            raise InvalidArgumentError(
                f"a feature is a column name or assay.bins(...), got {f!r}{hint}"
            )
        col = f if isinstance(f, str) else f.column
        if col in seen:
            raise InvalidArgumentError(f"feature {col!r} is given twice")
        seen.add(col)
        out.append(f)
    if not out:
        raise InvalidArgumentError("discover_slices needs at least one feature")
    return out


REGRESSION_ERRORS: tuple[str, ...] = ("absolute", "squared")
"""The built-in per-row errors of ``task="regression"``."""

MULTICLASS_ERRORS: tuple[str, ...] = ("log_loss", "zero_one")
"""The built-in per-row errors of ``task="multiclass"``: ``-log p(label)`` and
``argmax != label``."""


def _error_spec(
    error: Any, label: Any, score: Any, prediction: Any = None, task: Any = "binary"
) -> tuple[str, str | None, str | None, str | None]:
    """(kind, label, model output column, error column) for the engine: the task decides the
    built-in errors, the default one and the output column's argument (score= or
    prediction=)."""
    if task == "binary":
        if prediction is not None:
            raise InvalidArgumentError(
                "prediction= is the column of a regression model's predictions; pass "
                "task='regression', or score= for a binary classifier")
        known, default, role, output, prefix = ERRORS, "log_loss", "score", score, ""
    elif task == "regression":
        if score is not None:
            raise InvalidArgumentError(
                "task='regression' takes prediction= (the column of predictions), not score=")
        known, default, role, output, prefix = (
            REGRESSION_ERRORS, "absolute", "prediction", prediction, "regression_")
    elif task == "multiclass":
        if prediction is not None:
            raise InvalidArgumentError(
                "task='multiclass' takes score= (a list column of class probabilities), not "
                "prediction=")
        known, default, role, output, prefix = (
            MULTICLASS_ERRORS, "log_loss", "score", score, "")
    elif task == "ranking":
        raise InvalidArgumentError(
            "slice discovery does not take task='ranking' yet (its errors are per query, not "
            "per row): evaluate the candidate slices with assay.evaluate(task='ranking', "
            "slices=[...])")
    else:
        raise InvalidArgumentError(
            f"task must be 'binary', 'regression' or 'multiclass', got {show(task)}")
    listed = ", ".join(map(repr, known))
    error = default if error is None else error
    if not isinstance(error, str):
        raise InvalidArgumentError(
            f"error must be one of {listed} or the name of a column of per-row errors, got "
            f"{error!r}")
    for name, value in (("label", label), (role, output)):
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a column name or None, got {value!r}")
    if error in known:
        if label is None or output is None:
            raise InvalidArgumentError(
                f"error={error!r} is computed from the label and the {role}: pass label= and "
                f"{role}= (or error='<column>' for a column of per-row errors)")
        return (prefix + error, label, output, None)
    if label is not None or output is not None:
        raise InvalidArgumentError(
            f"error={error!r} is a column of per-row errors, so label and {role} are not used; "
            f"leave them out (the built-in errors are {listed})")
    return ("column", None, None, error)


def _discovery_classes(classes: Any, normalize: str, source: Any,
                       score: str | None) -> tuple[list[str], list[int] | None, str]:
    """The native multiclass options of a search: class names, their integer values (for
    integer labels) and the normalization; without ``classes=`` the classes are 0..K-1, K
    the list column's fixed size."""
    if classes is None:
        classes = tuple(range(_list_size(source, score or "")))
    ints = [int(c) for c in classes] if all(isinstance(c, int) for c in classes) else None
    return ([str(c) for c in classes], ints, normalize)


def _missing(col: str, names: Sequence[str], role: str) -> str:
    return (f"{role} column {col!r} not found; available columns: "
            + ", ".join(repr(n) for n in names))


# ----------------------------------------------------------------------------------------------
# what the input holds, before the pass


def _float_columns(data: Any, source: Source, names: list[str]) -> set[str]:
    """The columns among ``names`` that hold floating-point numbers (binned by default).

    Read from the input's schema without reading its rows where the input has one; an input
    whose schema is unknown before the pass treats every named feature as categorical (the
    engine then rejects a float column with a hint to use ``assay.bins``).
    """
    if not names:
        return set()
    mod = type(data).__module__.split(".")[0]
    is_float: dict[str, bool] = {}
    if source.schema is not None:  # tables, readers, files, datasets
        is_float = {f.name: pa.types.is_floating(f.type) for f in source.schema}
    elif mod == "polars" and hasattr(data, "collect_schema"):
        schema = data.collect_schema()
        is_float = {n: schema[n].is_float() for n in names if n in schema}
    elif mod == "duckdb":
        head = data.limit(0)
        t = head.to_arrow_table() if hasattr(head, "to_arrow_table") else head.arrow()
        is_float = {f.name: pa.types.is_floating(f.type) for f in t.schema}
    elif source.column is not None:  # in memory (dict, pandas, ...): a zero-copy select
        for n in names:
            col = source.column(n)
            is_float[n] = pa.types.is_floating(col.schema.field(0).type)
    elif hasattr(data, "__arrow_c_schema__"):
        is_float = {f.name: pa.types.is_floating(f.type) for f in pa.schema(data)}
    return {n for n in names if is_float.get(n, False)}


def _row_count(data: Any, source: Source, column: str) -> int | None:
    """Rows of the input before the pass, or None when only the pass can tell."""
    mod = type(data).__module__.split(".")[0]
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return int(data.num_rows)
    if mod == "polars":
        import polars

        if isinstance(data, polars.LazyFrame):
            return int(data.select(polars.len()).collect().item())
        if isinstance(data, polars.DataFrame):
            return int(data.height)
    if mod == "pandas":
        return len(data)
    if mod == "duckdb":
        return len(data)
    if isinstance(data, (str, os.PathLike)) and os.fspath(data).lower().endswith(
            (".parquet", ".pq")) and os.path.isfile(data):  # (a directory: read a column)
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(os.fspath(data)).metadata.num_rows)
    if source.column is not None:
        return len(source.column(column))
    return None


# ----------------------------------------------------------------------------------------------
# the result


def _shape(table: Any, edges: Mapping[str, Sequence[float]],
           columns: Sequence[str] = COLUMNS) -> pl.DataFrame:
    """The engine's record batch as the public table: ``features``/``values`` lists zipped into
    ``predicates`` (with the exact ``edges`` of binned features, null for categorical ones),
    NaN effect sizes as null, the columns in :data:`COLUMNS` order."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    if df.height == 0:
        preds = pl.Series("predicates", [], dtype=pl.List(_PREDICATE))
    else:
        binned = pl.DataFrame(
            {"feature": list(edges), "edges": [list(map(float, e)) for e in edges.values()]},
            schema={"feature": pl.String, "edges": pl.List(pl.Float64)},
        )
        preds = (
            df.select(
                pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
                pl.col("features").alias("feature"),
                pl.col("values").alias("value"),
            )
            .explode(["feature", "value"])
            .join(binned, on="feature", how="left", maintain_order="left")
            .group_by("_row", maintain_order=True)
            .agg(pl.struct("feature", "value", "edges").alias("predicates"))
            .get_column("predicates")
        )
    return df.with_columns(
        preds.cast(pl.List(_PREDICATE)),
        pl.col("effect_size").fill_nan(None),
    ).select(columns)


# ----------------------------------------------------------------------------------------------
# slice_filters


_BIN = re.compile(r"^\[(?P<lo>[^,\s]+), (?P<hi>[^,\s]+)(?P<close>[)\]])$")
_BELOW = re.compile(r"^\(-inf, (?P<hi>[^,\s]+)\)$")
_ABOVE = re.compile(r"^\((?P<lo>[^,\s]+), inf\)$")


# The text of a time or timestamp value as the engine labels it (ISO, fraction trimmed, a zoned
# one in UTC with "Z"): polars prints these otherwise, so they are matched through the
# engine's own conversion.
_CLOCK = re.compile(r"^(\d{4,}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2}(\.\d+)?Z?$")


def _labelled(s: pl.Series) -> pl.Series:
    """A column's values as the text of their slice labels (vectorized)."""
    if s.dtype.is_temporal() and not isinstance(s.dtype, pl.Duration):
        from ._input import _iso_text

        return pl.Series(s.name, _iso_text(s.to_arrow()), dtype=pl.String)
    return s.cast(pl.String)


def _value_expr(col: str, value: str) -> pl.Expr:
    """True where column ``col`` holds the slice value ``value`` (as the label prints it)."""
    if _CLOCK.match(value):
        return pl.col(col).map_batches(lambda s: _labelled(s) == value,
                                       return_dtype=pl.Boolean)
    return pl.col(col).cast(pl.String) == value


def _is_bin_label(value: str) -> bool:
    return any(p.match(value) for p in (_BIN, _BELOW, _ABOVE))


def _bin_intervals(edges: Sequence[float]) -> dict[str, tuple[float, float, bool, bool]]:
    """Label -> (low, high, low closed, high closed) of every bin of ``edges``, labelled by the
    engine itself."""
    if isinstance(edges, (str, bytes)) or not (isinstance(edges, Sequence)
                                               or hasattr(edges, "__array__")):
        raise InvalidArgumentError(f"edges must be lists of numbers, got {show(edges)}")
    e = [float_arg(x, "each bin edge", "slice_filters") for x in list(edges)]
    if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:], strict=False)):
        raise InvalidArgumentError(
            f"slice_filters: bin edges must be at least two strictly increasing numbers, got "
            f"{show(e)}"
        )
    labels = _native.bin_labels(e)
    m = len(e)
    out = {labels[j]: (e[j], e[j + 1], True, j == m - 2) for j in range(m - 1)}
    out[labels[m - 1]] = (-math.inf, e[0], False, False)
    out[labels[m]] = (e[m - 1], math.inf, False, False)
    return out


def _parse_bin(value: str) -> tuple[float, float, bool, bool]:
    if m := _BIN.match(value):
        return (float(m["lo"]), float(m["hi"]), True, m["close"] == "]")
    if m := _BELOW.match(value):
        return (-math.inf, float(m["hi"]), False, False)
    if m := _ABOVE.match(value):
        return (float(m["lo"]), math.inf, False, False)
    raise InvalidArgumentError(f"{value!r} is not a bin label")


def _interval_expr(col: str, lo: float, hi: float, lo_closed: bool, hi_closed: bool) -> pl.Expr:
    c = pl.col(col).cast(pl.Float64)  # (as the engine bins: integers and decimals as floats)
    parts = []
    if lo != -math.inf:
        parts.append(c >= lo if lo_closed else c > lo)
    if hi != math.inf:
        parts.append(c <= hi if hi_closed else c < hi)
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out & c.is_not_nan()


def slice_filters(
    found: pl.DataFrame, edges: Mapping[str, Sequence[float]] | None = None
) -> list[pl.Expr]:
    """One polars expression per slice of ``found`` that is true on the rows of that slice.

    Each expression is named after the slice (``"country=NG & device=tablet"``), so
    ``df.filter(exprs[0])`` selects the rows of the best slice and ``df.select(exprs)`` gives
    one boolean membership column per slice. A predicate ``feature = value`` becomes
    ``pl.col(feature).cast(pl.String) == value`` for a categorical feature (so integer, boolean,
    categorical, date and decimal columns match the value as printed; times and timestamps
    match their label's ISO text, a zoned one in UTC), ``is_null()`` for the null value, and
    a range test for a binned feature: ``[a, b)`` is ``a <= x < b``, the last bin ``[a, b]``
    is closed, ``(-inf, a)`` is ``x < a``, ``(b, inf)`` is ``x > b``, and null means null or
    NaN.

    Parameters
    ----------
    found : polars.DataFrame
        A table returned by :func:`discover_slices` (its ``slice`` and ``predicates`` columns).
    edges : mapping of str to sequence of float, optional
        Exact edges of binned features. By default each predicate's own ``edges`` (which
        :func:`discover_slices` records) are used. A feature with neither is binned when every
        one of its values in ``found`` is a bin label, and its edges are then read from the
        labels, which print 6 significant digits (more where two edges would print alike):
        exact for short decimals such as ``[18, 30)``, otherwise close.

    Returns
    -------
    list of polars.Expr
        In the order of ``found``'s rows.

    Examples
    --------
    >>> import polars as pl
    >>> from assay._discovery import slice_filters
    >>> df = pl.DataFrame({"country": ["NG", "NG", "US", None], "age": [20.0, 40.0, 20.0, 50.0]})
    >>> found = pl.DataFrame({
    ...     "slice": ["country=NG & age=[18, 30)", "country=null"],
    ...     "predicates": [[{"feature": "country", "value": "NG"},
    ...                     {"feature": "age", "value": "[18, 30)"}],
    ...                    [{"feature": "country", "value": None}]]})
    >>> exprs = slice_filters(found)
    >>> df.select(exprs).rows()
    [(True, False), (False, False), (False, False), (False, True)]
    """
    if not isinstance(found, pl.DataFrame) or "predicates" not in found.columns:
        raise InvalidArgumentError(
            "slice_filters needs the table returned by assay.discover_slices (a polars "
            "DataFrame with a 'predicates' column)"
        )
    rows = found.get_column("predicates").to_list()
    given = dict(edges or {})
    for preds in rows:  # the exact edges that discover_slices recorded with each predicate
        for p in preds:
            if p.get("edges") is not None and p["feature"] not in given:
                given[p["feature"]] = p["edges"]
    exact = {str(c): _bin_intervals(e) for c, e in given.items()}
    values: dict[str, set[str | None]] = {}
    for preds in rows:
        for p in preds:
            values.setdefault(p["feature"], set()).add(p["value"])
    binned = set(exact) | {
        f for f, vs in values.items()
        if any(v is not None for v in vs) and all(v is None or _is_bin_label(v) for v in vs)
    }
    labels = (found.get_column("slice").to_list() if "slice" in found.columns
              else [None] * len(rows))
    out: list[pl.Expr] = []
    for preds, name in zip(rows, labels, strict=True):
        parts: list[pl.Expr] = []
        for p in preds:
            col, value = p["feature"], p["value"]
            c = pl.col(col)
            if value is None:
                parts.append(
                    c.is_null() | c.cast(pl.Float64).is_nan().fill_null(False)
                    if col in binned else c.is_null()
                )
            elif col in binned:
                if col in exact:
                    if value not in exact[col]:
                        raise InvalidArgumentError(
                            f"{col}={value} is not a bin of the edges given for {col!r}"
                        )
                    parts.append(_interval_expr(col, *exact[col][value]))
                else:
                    parts.append(_interval_expr(col, *_parse_bin(value)))
            else:
                parts.append(_value_expr(col, value))
        if not parts:
            raise InvalidArgumentError("a slice with no predicates")
        expr = parts[0]
        for part in parts[1:]:
            expr = expr & part
        expr = expr.fill_null(False)
        if name is not None:
            expr = expr.alias(name)
        out.append(expr)
    return out
