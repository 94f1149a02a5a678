"""``assay.evaluate``, ``assay.bins`` and ``assay.fbeta``: validation and shaping of a job."""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import _native, _progress, _provenance
from ._args import U64_MAX, column_arg, float_arg, int_arg, max_threads, show
from ._input import Source, to_source
from ._provenance import Provenance
from .errors import InvalidArgumentError
from .report import Report

__all__ = ["Bins", "bins", "evaluate", "fbeta", "CALIBRATION_METRICS", "METRICS",
           "MULTICLASS_METRICS", "RANKING_METRICS", "REGRESSION_METRICS", "TASKS"]

METRICS: tuple[str, ...] = tuple(_native.default_metrics())
"""The default metrics of ``task="binary"``, in their order."""

_REGISTRY = tuple(_native.metric_registry())

REGRESSION_METRICS: tuple[str, ...] = tuple(
    r[0] for r in _REGISTRY if r[1] == "regression" and "<" not in r[0])
"""Every named metric of ``task="regression"``, in report order; ``pinball@<q>`` (from
``quantiles=``) comes on top. ``msle``, ``rmsle``, the deviances and ``d2_tweedie`` are computed
only when named: they have domains (non-negative or positive values)."""

MULTICLASS_METRICS: tuple[str, ...] = tuple(
    r[0] for r in _REGISTRY if r[1] == "multiclass" and "<" not in r[0])
"""Every named metric of ``task="multiclass"``, in report order; ``top_k_accuracy@<k>`` (from
``k=``) comes on top. ``ece_classwise`` is computed only when named (it bins every class of
every row)."""

RANKING_METRICS: tuple[str, ...] = tuple(r[0] for r in _REGISTRY if r[1] == "ranking")
"""Every metric of ``task="ranking"``: the cutoff patterns (``ndcg@<k>``, ``map@<k>``,
``precision@<k>``, ``recall@<k>``, ``hit_rate@<k>``, one metric per ``k`` of ``k=``) and
``mrr``, ``auc_per_query``, ``n_items``, ``n_skipped``."""

TASKS: tuple[str, ...] = ("binary", "regression", "multiclass", "ranking")
"""The task families of :func:`evaluate`."""


def _default_metrics(task: str) -> tuple[str, ...]:
    """The metrics a job of ``task`` computes when given none (the registry's defaults; a
    ranking job's cutoff patterns come from ``k=``)."""
    return tuple(r[0] for r in _REGISTRY if r[1] == task and r[4] and "<" not in r[0])


GAINS = ("exponential", "linear")
"""How ``task="ranking"`` turns a relevance grade into a DCG gain: ``2**rel - 1`` or ``rel``."""
TIES = ("average", "stable")
"""How ``task="ranking"`` orders tied scores: the expectation over their orderings, or input
order."""
EMPTY = ("skip", "zero")
"""What ``task="ranking"`` does with a query that has no relevant item."""
MAX_CUTOFF = 1 << 20
"""The largest ranking cutoff ``k``."""
# The cutoff metrics, in report order: each ``k`` of ``k=`` makes one of each.
_CUTOFF_METRICS = ("ndcg", "map", "precision", "recall", "hit_rate")


def _ranking_options(task: str, metrics: Any, k: Any, query: Any, gain: Any, ties: Any,
                     empty: Any) -> tuple[Any, tuple[str, str, str, str] | None]:
    """The metrics (cutoff metrics at each ``k``) and the native options of a ranking job;
    for another task, checks that the ranking options keep their defaults."""
    _only_for("ranking", task, query=(query, None), gain=(gain, "exponential"),
              ties=(ties, "average"), empty=(empty, "skip"))
    if task != "ranking":
        return metrics, None
    if query is None:
        raise InvalidArgumentError(
            "task='ranking' needs query= (the column of the query or user each row belongs to)")
    column_arg(query, "query", None)
    for name, value, allowed in (("gain", gain, GAINS), ("ties", ties, TIES),
                                 ("empty", empty, EMPTY)):
        if value not in allowed:
            raise InvalidArgumentError(
                f"{name} must be one of {', '.join(map(repr, allowed))}, got {show(value)}")
    ks = [10] if k is None else (
        [k] if isinstance(k, numbers.Integral) and not isinstance(k, bool) else k)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise InvalidArgumentError(
            f"k (the ranking cutoffs) must be a whole number >= 1 or a list of them, got "
            f"{show(k)}")
    cutoffs = [int_arg(v, "k (a ranking cutoff)", None, 1, MAX_CUTOFF) for v in ks]
    cutoffs = list(dict.fromkeys(cutoffs))
    if metrics is None:
        names = [f"{m}@{c}" for c in cutoffs for m in _CUTOFF_METRICS]
        names += list(_default_metrics("ranking"))
    else:
        given = [metrics] if isinstance(metrics, str) else metrics
        if isinstance(given, (bytes, bytearray)) or not isinstance(given, Sequence):
            raise InvalidArgumentError(
                f"metrics must be a metric name or a list of metric names, got {show(metrics)}")
        # A cutoff metric named without its cutoff is computed at each k.
        names = []
        for m in given:
            names += [f"{m}@{c}" for c in cutoffs] if m in _CUTOFF_METRICS else [m]
        # ("ndcg" and "ndcg@10" at the default k name one metric.)
        names = list(dict.fromkeys(names))
    return names, (str(query), str(gain), str(ties), str(empty))


def _score_parts(task: Any, score: Any) -> tuple[str, ...] | None:
    """The K score columns of a multiclass model given as a list of column names (None for a
    list column), validated."""
    if task != "multiclass" or isinstance(score, str) or score is None:
        return None
    if isinstance(score, (bytes, bytearray)) or not isinstance(score, Sequence) \
            or not all(isinstance(c, str) for c in score):
        raise InvalidArgumentError(
            "task='multiclass' takes score= as one list column (a polars Array, an Arrow "
            f"FixedSizeList or List) or a list of K column names, got {show(score)}")
    parts = tuple(score)
    if len(parts) < 2:
        raise InvalidArgumentError(
            f"a multiclass model needs at least 2 classes; score= names {len(parts)} column(s)")
    if len(set(parts)) != len(parts):
        raise InvalidArgumentError(f"score= names a column twice: {show(list(parts))}")
    return parts


def _task_column(task: Any, score: Any, prediction: Any) -> str:
    """The column of the model's output for ``task``: ``score=`` (binary, multiclass) or
    ``prediction=`` (regression), validated (a multiclass model's K columns: the first)."""
    if task not in TASKS:
        raise InvalidArgumentError(
            f"task must be one of {', '.join(map(repr, TASKS))}, got {show(task)}")
    parts = _score_parts(task, score)
    if parts is not None:
        if prediction is not None:
            raise InvalidArgumentError(
                "task='multiclass' takes score= (the class probabilities), not prediction=")
        return parts[0]
    if task == "multiclass":
        if prediction is not None:
            raise InvalidArgumentError(
                "task='multiclass' takes score= (the class probabilities), not prediction=")
        if score is None:
            raise InvalidArgumentError(
                "task='multiclass' needs score= (a list column of K class probabilities, or "
                "a list of K column names)")
        return score
    if task in ("binary", "ranking"):
        if prediction is not None:
            raise InvalidArgumentError(
                "prediction= is the column of a regression model's predictions; pass "
                f"task='regression', or score= for task={task!r}")
        if score is None:
            raise InvalidArgumentError(f"task={task!r} needs score= (the column of scores)")
        column = score
    else:
        if score is not None:
            raise InvalidArgumentError(
                f"task={task!r} takes prediction= (the column of predictions), not score=")
        if prediction is None:
            raise InvalidArgumentError(
                f"task={task!r} needs prediction= (the column of predictions)")
        column = prediction
    if not isinstance(column, str):
        name = "prediction" if task == "regression" else "score"
        raise InvalidArgumentError(
            f"label and {name} must be column names (str); got {name}={show(column)}")
    return column


def _only_for(owner: str, task: str, **given: tuple[Any, Any]) -> None:
    """Refuses options of task ``owner`` (``name=(value, default)``) set for another task:
    they would be silently ignored."""
    if task == owner:
        return
    for name, (value, default) in given.items():
        if value is not default and value != default:
            raise InvalidArgumentError(
                f"{name} only applies to task={owner!r}; task={task!r} has no {name}")


def _task_options(
    task: str, metrics: Any, *, quantiles: Any = None, power: Any = 0.0, lower: Any = None,
    upper: Any = None, **binary: tuple[Any, Any],
) -> tuple[Any, tuple[str, str] | None]:
    """Checks that the options of the other task keep their defaults (``binary``: the binary
    options as ``name=(value, default)``); the metrics with the regression options' own
    (``pinball@q``, ``coverage``, ``interval_width``) and the prediction interval's columns."""
    _only_for("binary", task, **binary)
    _only_for("regression", task, quantiles=(quantiles, None), power=(power, 0.0),
              lower=(lower, None), upper=(upper, None))
    metrics = _with_quantiles(_with_bounds(metrics, lower, upper, task), quantiles, task)
    return metrics, _bounds(lower, upper)


def _with_quantiles(metrics: Any, quantiles: Any, task: str) -> Any:
    """``metrics`` (None: the task's defaults) with ``pinball@<q>`` for each of
    ``quantiles``."""
    if quantiles is None:
        return metrics
    if isinstance(quantiles, (str, bytes)) or not isinstance(quantiles, Sequence):
        raise InvalidArgumentError(
            f"quantiles must be a list of numbers in (0, 1), got {show(quantiles)}")
    names = list(_metric_list(metrics, task))
    for q in quantiles:
        v = float_arg(q, "each of quantiles", None, 0, 1, lo_open=True, hi_open=True)
        name = _native.metric_name(f"pinball@{v!r}")
        if name not in names:
            names.append(name)
    return names


def _bounds(lower: Any, upper: Any) -> tuple[str, str] | None:
    """The (lower, upper) columns of a prediction interval (both or neither)."""
    column_arg(lower, "lower", None, optional=True)
    column_arg(upper, "upper", None, optional=True)
    if (lower is None) != (upper is None):
        raise InvalidArgumentError(
            "a prediction interval needs both lower= and upper= (its bounds' columns)")
    return None if lower is None else (lower, upper)


def _with_bounds(metrics: Any, lower: Any, upper: Any, task: str) -> Any:
    """``metrics`` with ``coverage`` and ``interval_width`` when a prediction interval is
    given and the metrics are the defaults; explicit metrics must use the interval."""
    if lower is None or upper is None:
        return metrics
    if metrics is None:
        return [*_metric_list(None, task), "coverage", "interval_width"]
    names = _metric_list(metrics, task)
    if not {"coverage", "interval_width"} & set(names):
        raise InvalidArgumentError(
            "lower= and upper= (a prediction interval) are read for coverage and "
            "interval_width: name one of them in metrics, or leave metrics=None")
    return names


def _check_power(power: Any, metrics: Sequence[str]) -> None:
    """Refuses a Tweedie power that no metric of the job uses (it would be ignored)."""
    p = float_arg(power, "power", None)
    if 0.0 < p < 1.0:
        raise InvalidArgumentError(
            f"power (of the Tweedie deviance) must be <= 0 or >= 1, got {p!r}")
    if p != 0.0 and not {"tweedie_deviance", "d2_tweedie"} & set(metrics):
        raise InvalidArgumentError(
            f"power={p!r} is the power of tweedie_deviance and d2_tweedie; name one of them "
            "in metrics")


MAX_CLASSES = 65_536
"""The most classes of a ``task="multiclass"`` job."""

NORMALIZE = ("raise", "divide", "softmax")
"""How ``task="multiclass"`` treats scores that are not probabilities (see :func:`evaluate`)."""


def _classes_arg(classes: Any) -> tuple[Any, ...] | None:
    """Validates ``classes=``: K >= 2 distinct strings, or K >= 2 distinct integers."""
    if classes is None:
        return None
    if hasattr(classes, "tolist") and not isinstance(classes, (str, bytes)):
        classes = classes.tolist()
    if isinstance(classes, (str, bytes, bytearray)) or not isinstance(classes, Sequence):
        raise InvalidArgumentError(
            f"classes must be a list of class names (str) or values (int), got {show(classes)}")
    values = tuple(classes)
    strings = all(isinstance(c, str) for c in values)
    ints = all(isinstance(c, int) and not isinstance(c, bool) for c in values)
    if not (strings or ints):
        raise InvalidArgumentError(
            "classes must be all strings (the label values) or all integers, got "
            f"{show(list(values))}")
    if not 2 <= len(values) <= MAX_CLASSES:
        raise InvalidArgumentError(
            f"a multiclass job needs 2 to {MAX_CLASSES} classes; classes= has {len(values)} "
            "(K = 1 is not a classification: every row has the one class)")
    if len(set(values)) != len(values):
        seen: set[Any] = set()
        dup = next(c for c in values if c in seen or seen.add(c))  # type: ignore[func-returns-value]
        raise InvalidArgumentError(f"classes= names {dup!r} twice; each class must be named once")
    return values


def _binary_options(task: str, threshold: Any, auc: Any, auc_bins: Any, auc_max_runs: Any,
                    calibration_strategy: Any, calibration_bins: Any
                    ) -> dict[str, tuple[Any, Any]]:
    """The options of the binary task that another task must leave at their defaults, as
    ``name=(value, default)`` (multiclass bins its calibration errors, uniform or quantile,
    and its ROC-AUCs exact, binned or sketched)."""
    binary: dict[str, tuple[Any, Any]] = {"threshold": (threshold, 0.5)}
    if task != "multiclass":
        binary.update(auc=(auc, "exact"), auc_bins=(auc_bins, 4096),
                      auc_max_runs=(auc_max_runs, None),
                      calibration_bins=(calibration_bins, 15),
                      calibration_strategy=(calibration_strategy, "uniform"))
    return binary


def _with_top_k(metrics: Any, k: Any, task: str) -> Any:
    """``metrics`` (None: the task's defaults) with ``top_k_accuracy@<k>`` for each ``k``."""
    if k is None:
        return metrics
    ks = [k] if isinstance(k, int) and not isinstance(k, bool) else k
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise InvalidArgumentError(
            f"k (of top_k_accuracy) must be a whole number >= 1 or a list of them, got {show(k)}")
    names = list(_metric_list(metrics, task))
    for v in ks:
        name = f"top_k_accuracy@{int_arg(v, 'k (of top_k_accuracy)', None, 1, MAX_CLASSES)}"
        if name not in names:
            names.append(name)
    return names


def _multiclass_options(task: str, metrics: Any, classes: Any, k: Any,
                        normalize: Any) -> tuple[Any, tuple[Any, ...] | None, str]:
    """The metrics (with ``top_k_accuracy@k``), classes and normalization of a multiclass job;
    for another task, checks that those options keep their defaults."""
    _only_for("multiclass", task, classes=(classes, None), normalize=(normalize, "raise"))
    if task not in ("multiclass", "ranking") and k is not None:
        raise InvalidArgumentError(
            f"k only applies to task='multiclass' (top_k_accuracy@k) and task='ranking' (the "
            f"cutoffs of ndcg@k, ...); task={task!r} has no k")
    if task != "multiclass":
        return metrics, None, "raise"
    if normalize not in NORMALIZE:
        raise InvalidArgumentError(
            f"normalize must be one of {', '.join(map(repr, NORMALIZE))}, got {show(normalize)}")
    return _with_top_k(metrics, k, task), _classes_arg(classes), str(normalize)


CALIBRATION_METRICS: tuple[str, ...] = tuple(_native.calibration_metrics())
"""The calibration metrics (computed only when named in ``metrics``; see docs/calibration.md)."""

# Upper bounds of the sizes a user controls (each error message states its bound).
MAX_BINS = 1_000_000
"""The most bins of ``assay.bins(column, n)``, ``auc_bins`` and the discovery ``n_bins``."""
MAX_CALIBRATION_BINS = 100_000
"""The most bins of ``calibration_bins`` / ``reliability(n_bins=...)``."""
MAX_BOOTSTRAP = 100_000
"""The most bootstrap replicates."""


@dataclass(frozen=True)
class Bins:
    """A numeric slice feature: ``column`` cut into bins. Build it with :func:`bins`."""

    column: str
    n: int | None = None
    strategy: Literal["quantile", "uniform"] = "quantile"
    edges: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        # Bins is public: one built directly gets the checks of assay.bins (edges given to
        # assay.bins are checked there).
        if not isinstance(self.column, str):
            raise InvalidArgumentError(
                f"Bins: column must be a column name, got {show(self.column)}"
            )
        if self.edges is None:
            int_arg(self.n, "n", f"bins({self.column!r})", 1, MAX_BINS)
        elif not isinstance(self.edges, tuple):
            raise InvalidArgumentError(
                f"bins({self.column!r}): build bins with explicit edges by "
                "assay.bins(column, edges=[...])"
            )

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
        Number of bins, when ``edges`` is not given: an integer in [1, 1000000]
        (quantile bins cannot outnumber the column's values).
    strategy : {"quantile", "uniform"}
        ``"quantile"``: edges at the quantiles ``k/n`` of the column (numpy's default linear
        interpolation; repeated edges from heavy ties are merged, so fewer bins may result).
        ``"uniform"``: ``n`` equal-width bins from the minimum to the maximum.
    edges : sequence of float
        Explicit, strictly increasing, finite edges (at least two, at most 1000001).

    Examples
    --------
    >>> import assay
    >>> assay.bins("age", 5)
    Bins(column='age', n=5, strategy='quantile', edges=None)
    >>> assay.bins("age", edges=[18, 30, 45, 65, 100]).edges
    (18.0, 30.0, 45.0, 65.0, 100.0)
    """
    if not isinstance(column, str):
        raise InvalidArgumentError(f"bins: column must be a column name, got {show(column)}")
    what = f"bins({show(column)})"
    if strategy not in ("quantile", "uniform"):
        raise InvalidArgumentError(
            f"{what}: strategy must be 'quantile' or 'uniform', got {show(strategy)}"
        )
    if edges is not None:
        if n is not None:
            raise InvalidArgumentError(f"{what}: give either n or edges, not both")
        if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence) \
                and not hasattr(edges, "__array__"):
            raise InvalidArgumentError(
                f"{what}: edges must be a list of numbers, got {show(edges)}"
            )
        values = list(edges)
        if len(values) > MAX_BINS + 1:
            raise InvalidArgumentError(
                f"{what}: at most {MAX_BINS + 1} edges ({MAX_BINS} bins), got {len(values)} edges"
            )
        e = tuple(float_arg(x, "each edge", what) for x in values)
        if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:], strict=False)):
            raise InvalidArgumentError(
                f"{what}: edges must be at least two strictly increasing numbers, "
                f"got {show(list(e))}"
            )
        return Bins(column, None, strategy, e)
    return Bins(column, int_arg(n, "n", what, 1, MAX_BINS), strategy, None)


def fbeta(beta: float) -> str:
    """The metric name of F-beta for ``beta`` (e.g. ``fbeta(2.0) == "f2"``).

    >>> import assay
    >>> assay.fbeta(0.5)
    'f0.5'
    """
    b = float_arg(beta, "beta", "fbeta", 0, lo_open=True)
    return _native.metric_name(f"f{b!r}")


SliceLike = str | Bins | tuple[str | Bins, ...]


Feature = str | Bins
"""One feature of a normalised slice spec: a column name or :class:`Bins`."""

SliceEntry = tuple[tuple[Feature, ...], str | None]
"""A normalised slice spec: its features (a cross when more than one), and the one slice to
report (a discovered slice's label; None: all of its slices)."""


def _check_feature(item: Any) -> Feature:
    if isinstance(item, (str, Bins)):
        return item
    raise InvalidArgumentError(
        f"a slice is a column name, assay.bins(...), or a tuple of those; got {show(item)}"
    )


def _is_found(x: Any) -> bool:
    """Whether ``x`` is a table of slices from :func:`assay.discover_slices`."""
    import polars as pl

    return isinstance(x, pl.DataFrame) and {"slice", "predicates"} <= set(x.columns)


def _slice_list(slices: Any) -> list[Any]:
    """``slices`` as a list of slice specs: one spec alone becomes a list of one; ``None`` and
    anything that is not a list or tuple of specs raise (``slices=()`` means no slices)."""
    if isinstance(slices, (str, Bins)) or _is_found(slices):
        return [slices]
    if slices is None:
        raise InvalidArgumentError(
            "slices must be a list of slice specs (column names, assay.bins(...), tuples of "
            "those, or a table from assay.discover_slices), got None; pass slices=() (the "
            "default) for no slices"
        )
    if isinstance(slices, (bytes, bytearray)) or not isinstance(slices, Sequence):
        raise InvalidArgumentError(
            "slices must be a list of slice specs (column names, assay.bins(...), tuples of "
            f"those, or a table from assay.discover_slices), got {show(slices)}"
        )
    return list(slices)


def _normalize_slices(slices: Any) -> tuple[SliceEntry, ...]:
    """The slice specs as entries (features, slice to report), without reading any data: a
    table from :func:`assay.discover_slices` becomes one entry per discovered slice (the cross
    of its features, binned ones with their recorded edges, reported alone)."""
    out: list[SliceEntry] = []
    for s in _slice_list(slices):
        if _is_found(s):
            for label, preds in s.select("slice", "predicates").iter_rows():
                feats: list[Feature] = []
                for p in preds:
                    edges = p.get("edges")
                    feats.append(p["feature"] if edges is None else Bins(
                        p["feature"], None, "quantile", tuple(float(e) for e in edges)))
                out.append((tuple(feats), label))
            continue
        if isinstance(s, (tuple, list)):
            if not s:
                raise InvalidArgumentError("an empty tuple is not a slice")
            out.append((tuple(_check_feature(f) for f in s), None))
        else:
            out.append(((_check_feature(s),), None))
    return tuple(out)


def _resolve_slices(
    entries: Sequence[SliceEntry], source: Source | None
) -> tuple[list[list[tuple[str, list[float] | None]]], list[str | None]]:
    """The engine's slice specs of ``entries`` (data-derived bins fitted on ``source``, which
    may be None when every bin has its edges), and for each the one slice to report."""
    specs: list[list[tuple[str, list[float] | None]]] = []
    for feats, _ in entries:
        spec: list[tuple[str, list[float] | None]] = []
        for f in feats:
            if isinstance(f, str):
                spec.append((f, None))
            elif f.edges is not None:
                spec.append((f.column, list(f.edges)))
            else:
                if source is None:
                    raise InvalidArgumentError(
                        f"the bins of column {f.column!r} are fitted to the data, and there is "
                        "no data here: resolve them first (spec.resolve(data))", f.column)
                spec.append((f.column, f.resolve(source)))
        specs.append(spec)
    return specs, [only for _, only in entries]


def _slice_specs(
    slices: Any, source: Source
) -> tuple[list[list[tuple[str, list[float] | None]]], list[str | None]]:
    """The engine's slice specs, and for each the one slice to report (a discovered slice's
    label; None: all of its slices)."""
    return _resolve_slices(_normalize_slices(slices), source)


def _slices(slices: Any, source: Source) -> list[list[tuple[str, list[float] | None]]]:
    return _slice_specs(slices, source)[0]


def _threads(n_threads: int | None) -> int | None:
    """The worker threads of a job: ``n_threads``, else ``ASSAY_NUM_THREADS``, else None (all
    cores). An explicit ``n_threads`` above the limit (4 x the cores) raises; an environment
    value above it is capped with a RuntimeWarning."""
    limit = max_threads()
    if n_threads is not None:
        return int_arg(n_threads, "n_threads", None, 1, limit)
    env = os.environ.get("ASSAY_NUM_THREADS", "").strip()
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        raise InvalidArgumentError(
            f"ASSAY_NUM_THREADS must be a positive integer, got {show(env)}"
        ) from None
    if value < 1:
        raise InvalidArgumentError(f"ASSAY_NUM_THREADS must be a positive integer, got {env!r}")
    if value > limit:
        warnings.warn(
            f"ASSAY_NUM_THREADS={show(value)} is above the limit of {limit} threads (4 x the "
            f"cores); using {limit}",
            RuntimeWarning,
            stacklevel=4,
        )
        return limit
    return value


MAX_SLICES = 10_000
"""The default ``max_slices``: the most slices one slice spec may make."""


def evaluate(
    data: Any,
    *,
    label: str,
    score: str | Sequence[str] | None = None,
    prediction: str | None = None,
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
    lower: str | None = None,
    upper: str | None = None,
    threshold: float = 0.5,
    weight: str | None = None,
    min_slice_size: int = 0,
    nan_policy: Literal["raise", "drop"] = "raise",
    auc: Literal["exact", "binned", "sketch"] = "exact",
    auc_bins: int = 4096,
    auc_max_runs: int | None = None,
    n_threads: int | None = None,
    max_slices: int | None = MAX_SLICES,
    progress: bool | None = None,
    bootstrap: int | None = None,
    ci: float = 0.95,
    ci_method: Literal["percentile", "basic", "bca", "analytic"] | None = None,
    seed: int = 0,
    row_id: str | None = None,
    calibration_bins: int = 15,
    calibration_strategy: Literal["uniform", "quantile"] = "uniform",
    fingerprint: Literal["schema", "content"] = "schema",
) -> Report:
    """Metrics of a binary classifier, a regressor or a multiclass classifier, overall and per
    slice, in one pass.

    Parameters
    ----------
    data
        A pyarrow ``Table``/``RecordBatch``/``RecordBatchReader``, a polars ``DataFrame`` or
        ``LazyFrame``, a pandas ``DataFrame``, a duckdb relation, a dict of numpy arrays or
        lists, a path to a Parquet/CSV/Arrow IPC file, or anything exposing
        ``__arrow_c_stream__``. Readers,
        lazy frames, relations and files are streamed batch by batch.
    label : str
        Column of 0/1 labels (bool, integer 0/1 or float 0.0/1.0); with
        ``task="regression"``, the numeric targets.
    score : str or list of str
        Column of scores; probabilities in [0, 1] when ``log_loss`` or ``brier`` is requested
        (``task="binary"``). With ``task="multiclass"``: a list column of the K class
        probabilities (polars ``Array``, Arrow ``FixedSizeList`` or ``List``), or a list of K
        column names.
    prediction : str
        Column of a regressor's predictions (``task="regression"``, which takes no
        ``score``).
    classes : list of str or list of int, optional
        ``task="multiclass"``: the K classes in score order. String labels are mapped through
        them; integer classes name the integer label values. Default: the labels are the class
        indices 0..K-1, K read from the fixed-size list (or the number of score columns).
    k : int or list of int, optional
        ``task="multiclass"``: add ``top_k_accuracy@<k>`` for each k. ``task="ranking"``: the
        cutoffs (default ``[10]``): ``ndcg@k``, ``map@k``, ``precision@k``, ``recall@k`` and
        ``hit_rate@k`` for each k (a cutoff metric named without ``@k`` in ``metrics`` is
        computed at each k).
    normalize : {"raise", "divide", "softmax"}
        ``task="multiclass"``: rows whose scores do not sum to 1 (within 1e-4) raise, naming
        the row (default); ``"divide"`` divides them by their sum; ``"softmax"`` takes them as
        logits.
    query : str, optional
        ``task="ranking"``: the column (integers or strings) of the query or user each row
        (item) belongs to. Rows of one query need not be contiguous. ``label`` is then the
        relevance (0/1 or a non-negative grade; > 0 is relevant), ``weight`` weighs queries
        (the same on every row of a query), slices are query attributes (the same on every
        row of a query), and bootstrap intervals resample queries. See docs/ranking.md.
    gain : {"exponential", "linear"}
        ``task="ranking"``: the DCG gain of a relevance grade, ``2**rel - 1`` (default) or
        ``rel`` (scikit-learn's ``ndcg_score``).
    ties : {"average", "stable"}
        ``task="ranking"``: tied scores count as the expectation over all their orderings
        (default; McSherry & Najork, as scikit-learn's ``ndcg_score``) or in input order.
    empty : {"skip", "zero"}
        ``task="ranking"``: a query without a relevant item is left out of every metric and
        counted in ``n_skipped`` (default), or scores 0 on every metric but
        ``auc_per_query``.
    quantiles : list of float, optional
        ``task="regression"``: add the mean pinball loss at each quantile in (0, 1) as a metric
        ``pinball@<q>`` (scikit-learn's ``mean_pinball_loss(alpha=q)``), for quantile
        regressors.
    power : float
        ``task="regression"``: the power of ``tweedie_deviance`` and ``d2_tweedie`` (0 squared
        error, 1 Poisson, 2 Gamma; <= 0 or >= 1, as scikit-learn).
    lower, upper : str, optional
        ``task="regression"``: the columns of a prediction interval; ``coverage`` (the share
        of labels inside ``[lower, upper]``) and ``interval_width`` (mean ``upper - lower``)
        are then added to the metrics. A bound that is NaN, inf or null follows
        ``nan_policy``; ``lower > upper`` raises.
    task : {"binary", "regression", "multiclass", "ranking"}
        The task family (``assay.TASKS``). ``"multiclass"`` computes
        ``assay.MULTICLASS_METRICS`` (see "Multiclass metrics" below and
        docs/multiclass.md). ``"ranking"`` computes ``assay.RANKING_METRICS`` per query and
        averages them over the queries of each slice (``n`` counts the queries; see
        docs/ranking.md). ``"regression"`` computes
        ``assay.REGRESSION_METRICS`` (see "Regression metrics" below) from weighted sums and
        co-moments merged with Chan's update (no ``E[x^2] - E[x]^2`` cancellation); the
        options of binary classification (``threshold``, ``auc*``, ``calibration_*``) do not
        apply to it. Labels or predictions that are NaN, inf or null follow ``nan_policy``.
    slices
        Each entry is a slice spec: a categorical column name (string, dictionary, integer or
        boolean; null is a value of its own), ``assay.bins(...)`` for a numeric column, a
        tuple of those for a cross such as ``("country", "device")``, or the table returned by
        :func:`assay.discover_slices`, whose slices are then reported one by one (each under
        its discovered label, e.g. ``"country=NG & device=tablet"``). ``slices=()`` (the
        default) means no slices; ``None`` is an error.
    metrics : list of str, optional
        Any of ``assay.METRICS`` (default: all of them), ``"f<beta>"`` (see :func:`fbeta`) and
        the calibration metrics ``assay.CALIBRATION_METRICS``: ``ece``, ``mce``, ``rmsce``,
        ``ace``, ``ece_debiased``, ``smooth_ece``, ``calibration_slope``,
        ``calibration_intercept``, ``oe_ratio``, ``brier_reliability``, ``brier_resolution``,
        ``brier_uncertainty`` (exact definitions in ``docs/calibration.md``).
    threshold : float
        A row is predicted positive when ``score >= threshold`` (a finite number).
    weight : str, optional
        Column of positive sample weights (scikit-learn's ``sample_weight`` semantics).
    min_slice_size : int
        Slices with fewer rows keep their row and ``n`` but get null metrics. It never applies
        to ``overall``: the ``overall`` row always gets its metrics, however few rows the data
        has.
    nan_policy : {"raise", "drop"}
        Rows with a NaN/inf/null score or a null label raise, or are dropped and counted in
        ``Report.dropped``.
    auc : {"exact", "binned", "sketch"}
        ``"exact"`` keeps (score, label, weight, slice ids) of every row and sorts once: memory
        grows with the rows even when streaming. ``"binned"`` uses a fixed histogram of
        ``auc_bins`` equal-width bins over [0, 1] per slice (scores must be probabilities):
        fixed memory; the ROC-AUC error is at most half the weight of positive-negative pairs
        that share a bin, divided by P x N (at most ``1/2`` of the tied fraction, typically
        ~1e-4 for continuous scores with 4096 bins). ``"sketch"`` keeps each slice's sorted
        runs (distinct score -> positive and negative weight) and merges neighbouring runs
        deterministically down to at most ``auc_max_runs``: bounded memory for any number of
        rows and any score scale, and the report carries a guaranteed bound on the error of
        ``roc_auc`` and of ``average_precision`` (a ``note``, and the number in ``long()``'s
        ``error_bound``). Bootstrap intervals of ``roc_auc`` and ``average_precision`` need
        ``"exact"`` (with a sketch use ``ci_method="analytic"``: DeLong), and quantile
        calibration bins (``calibration_strategy="quantile"``, ``ace``), which keep every
        row, need ``"exact"`` or ``"binned"`` next to those metrics. With
        ``task="multiclass"``, ``"binned"`` bins each class's probability (one histogram per
        class and slice) and ``"sketch"`` keeps one run sketch per class and slice (per pair
        of classes with ``roc_auc_ovo``), each with its bound; see docs/multiclass.md.
    auc_bins : int
        Histogram bins for ``auc="binned"``: an integer in [2, 1000000].
    auc_max_runs : int, optional
        The run budget of ``auc="sketch"`` per slice, in [16, 1000000] (default
        ``assay._native.DEFAULT_MAX_RUNS``): more runs, a smaller error bound. A multiclass
        slice shares it among its K sketches (K x K with ``roc_auc_ovo``), 16 runs each at
        least.
    max_slices : int or None
        The most slices one slice spec may make (default 10,000): a spec that passes it (an
        ID-like column as a slice makes one slice per value) stops the pass early with
        :class:`InvalidArgumentError` naming the column and its count of values, instead of
        a report of millions of one-row slices. Bucket such a column with ``assay.bins`` or
        raise the limit (None: no limit).
    progress : bool, optional
        Show a progress line (rows read of the total where known, throughput, ETA) once the
        pass has run for a second. Default: on an interactive stderr or in a notebook only;
        ``ASSAY_PROGRESS=0`` switches that default off. Counted per batch, never per row.
    n_threads : int, optional
        Worker threads (default: ``ASSAY_NUM_THREADS`` or all cores). Results are bit-identical
        for every thread count. At most 4 x the cores (``assay._native.max_threads()``): a
        larger ``n_threads`` raises, a larger ``ASSAY_NUM_THREADS`` is capped with a
        RuntimeWarning.
    bootstrap : int, optional
        Number of Poisson-bootstrap replicates ``B`` (1000 is usual; at most 100000).
        Replicates are folded into the same single pass: row ``r`` weighs ``Poisson(1)`` in
        replicate ``b``, drawn from a counter-based hash of ``(seed, row id, b)``, so nothing of
        size rows x B is stored and results do not depend on threads or batches. Each metric
        column ``m`` of the table gains ``m_lo`` and ``m_hi``; ``long()`` adds ``lo``, ``hi``,
        ``se`` (standard deviation of the replicates) and ``method``.
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
        Seed of the bootstrap replicates, in [0, 2**64 - 1].
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
        the edges. See :func:`assay.reliability` for the table behind these metrics. With
        ``task="multiclass"`` the same two rules bin ``ece_top_label`` and ``ece_classwise``.
    fingerprint : {"schema", "content"}
        What :attr:`Report.provenance` records of the input: its row count and the columns
        read with their types (``"schema"``), and with ``"content"`` also a 64-bit hash of the
        values of every column the job reads, row by row in input order, computed in the pass
        (no second read; about 0.05 s per 10M rows of three columns on 2 cores: see
        benches/RESULTS.md). It does not depend on how the rows are batched, and a
        categorical column hashes as its values.

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

    Regression metrics
    ------------------
    With ``e = prediction - label`` and weighted means over the slice (scikit-learn's
    ``sample_weight``): ``mae`` mean |e|, ``mse`` mean e², ``rmse``, ``r2`` 1 - SS_res/SS_tot,
    ``explained_variance`` 1 - Var(e)/Var(y), ``mean_error`` mean e (the bias: positive when
    the model over-predicts), ``max_error`` the largest |e| (weights ignored, as
    scikit-learn), ``mape`` mean |e|/max(|y|, eps) as a fraction (eps = 2.2e-16, as
    scikit-learn: a zero label gives a huge term, not an error), ``smape`` mean
    2|e|/(|y| + |p|) (0 where both are 0), ``wmape`` sum w|e| / sum w|y|, ``pearson``,
    ``concordance`` (Lin's CCC), and when named ``msle``/``rmsle`` (labels and predictions
    must be >= 0), ``poisson_deviance`` (labels >= 0, predictions > 0), ``gamma_deviance``
    (both > 0), ``tweedie_deviance`` and ``d2_tweedie`` at ``power`` (scikit-learn's domains
    and formulas; ``d2_tweedie`` is 1 - deviance / the deviance of the weighted mean label),
    and ``pinball@<q>``. A value outside a requested metric's domain raises, naming the column
    and row. ``r2``, ``explained_variance`` and ``pearson`` are null with a note on a
    slice whose labels are constant (scikit-learn returns 1.0 or 0.0 there). Intervals: every
    bootstrap method; ``ci_method="analytic"`` gives normal intervals for the mean metrics
    (``mae``, ``mse``, ``rmse``, ``mean_error``, ``mape``, ``smape``, ``msle``, ``rmsle``) and
    null bounds with a note for the others.

    Multiclass metrics
    ------------------
    The predicted class is the argmax (ties to the lowest class index); a class is present in a
    slice when the slice has rows of that label. ``accuracy``; ``balanced_accuracy`` and
    ``macro_recall`` (mean recall over the present classes); ``macro_precision`` (a present
    class never predicted counts 0), ``macro_f1``, ``micro_f1``, ``weighted_f1`` (over the
    present classes, as scikit-learn with ``labels=`` them); ``cohen_kappa``; ``mcc``
    (Gorodkin's R_K); ``log_loss``; ``brier`` (summed over the classes, halved when K = 2, as
    scikit-learn); ``ece_top_label`` (torchmetrics' top-label calibration error over
    ``calibration_bins`` uniform bins); ``n_classes_present``; and when named
    ``top_k_accuracy@<k>``, ``ece_classwise`` and the exact ``roc_auc_ovr``,
    ``roc_auc_ovr_weighted``, ``roc_auc_ovo``, ``roc_auc_ovo_weighted`` (which keep each row's
    K probabilities). :meth:`Report.per_class` and :meth:`Report.confusion` give the
    per-class values and the confusion matrix of every slice.

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
    column = _task_column(task, score, prediction)
    metrics, classes_, normalize_ = _multiclass_options(task, metrics, classes, k, normalize)
    metrics, ranking = _ranking_options(task, metrics, k, query, gain, ties, empty)
    binary = _binary_options(task, threshold, auc, auc_bins, auc_max_runs,
                             calibration_strategy, calibration_bins)
    names, bounds = _task_options(
        task, metrics, quantiles=quantiles, power=power, lower=lower, upper=upper, **binary)
    job = _job(
        label=label, score=column, slices=slices, metrics=names,
        threshold=threshold, power=power, bounds=bounds,
        weight=weight, min_slice_size=min_slice_size, nan_policy=nan_policy, auc=auc,
        auc_bins=auc_bins, auc_max_runs=auc_max_runs,
        interval=_interval(bootstrap, ci, ci_method, seed, row_id), compare=None,
        calibration=_calibration(calibration_bins, calibration_strategy), task=task,
        classes=classes_, score_parts=_score_parts(task, score), normalize=normalize_,
        ranking=ranking,
    )
    return _report(_run(data, job, n_threads, max_slices, progress, fingerprint), job)


@dataclass(frozen=True)
class _Job:
    """The validated options of one job, before any data is read: what ``evaluate``,
    ``compare``, ``reliability`` and :class:`assay.Spec` share. :meth:`native` turns it into
    the tuple the native functions take (``evaluate``, ``accumulate``, ``finalize``)."""

    label: str
    score: str
    weight: str | None
    threshold: float
    slices: tuple[SliceEntry, ...]
    metrics: tuple[str, ...]
    min_slice_size: int
    nan_policy: str
    auc: tuple[str, int]
    interval: tuple[int, float, str, int, str | None] | None
    compare: tuple[str, tuple[tuple[str, str], ...]] | None
    calibration: tuple[int, str] | None
    reliability: float | None = None
    task: str = "binary"
    power: float = 0.0
    bounds: tuple[str, str] | None = None
    # Multiclass: the classes (None: 0..K-1, K from the scores), the K score columns of a
    # model given as columns (None: one list column), and the normalization.
    classes: tuple[Any, ...] | None = None
    score_parts: tuple[str, ...] | None = None
    normalize: str = "raise"
    # Ranking: (query column, gain, ties, empty).
    ranking: tuple[str, str, str, str] | None = None

    def report_layout(self, layout: Any) -> dict[str, Any]:
        """What a :class:`Report` of this job keeps besides its tables: the engine's layout
        batch (each row's spec, the replicate values), the specs' columns and the level."""
        return {
            "layout": layout,
            "specs": [(tuple(feats), only) for feats, only in self.slices],
            "level": None if self.interval is None else self.interval[1],
        }

    def unresolved(self) -> list[Bins]:
        """The data-derived bins (no edges yet), in slice order."""
        return [f for feats, _ in self.slices for f in feats
                if isinstance(f, Bins) and f.edges is None]

    def columns(self) -> list[str | None]:
        """Every column the job reads (None where an optional one is not used)."""
        return [self.label, self.score, *(self.score_parts or ())[1:], self.weight,
                None if self.ranking is None else self.ranking[0],
                None if self.interval is None else self.interval[4],
                *(self.bounds or ()),
                *(c for _, c in (self.compare[1] if self.compare else ())),
                *(f if isinstance(f, str) else f.column for feats, _ in self.slices
                  for f in feats)]

    def native(self, source: Source | None, n_threads: int | None,
               max_slices: int | None = None, content_hash: bool = False) -> tuple[Any, ...]:
        """The job tuple of the native layer; data-derived bins are fitted on ``source``
        (None: every bin must have its edges); ``max_slices`` bounds the slices of each spec
        (None: no limit); ``content_hash``: the pass hashes the values it reads."""
        specs, only = _resolve_slices(self.slices, source)
        compare = None if self.compare is None else (
            self.compare[0], [(n, c) for n, c in self.compare[1]])
        return (
            self.label, self.score, self.weight, self.threshold, specs, list(self.metrics),
            self.min_slice_size, self.nan_policy, self.auc, n_threads, self.interval, compare,
            self.calibration, self.reliability,
            only if any(o is not None for o in only) else None,
            self.task, self.power, self.bounds, max_slices,
            self._multiclass(source) if self.task == "multiclass" else None,
            self.ranking,
            bool(content_hash),
        )

    def _multiclass(self, source: Source | None) -> tuple[Any, ...]:
        """The native multiclass options: class names, their integer values (for integer
        labels), each model's K score columns (empty: a list column), the normalization.
        Without ``classes=`` the classes are 0..K-1, K from the score columns or the list
        column's fixed size."""
        classes = self.classes
        if classes is None:
            if self.score_parts is not None:
                classes = tuple(range(len(self.score_parts)))
            else:
                classes = tuple(range(_list_size(source, self.score)))
        ints = [int(c) for c in classes] if all(isinstance(c, int) for c in classes) else None
        models = 1 + (len(self.compare[1]) if self.compare else 0)
        columns = [list(self.score_parts or ())] + [[] for _ in range(models - 1)]
        return ([str(c) for c in classes], ints, columns, self.normalize)


def _default_max_runs() -> int:
    """The default ``auc_max_runs`` of ``auc="sketch"`` (the native layer's)."""
    return int(getattr(_native, "DEFAULT_MAX_RUNS", 32768))


MIN_RUNS = 16
"""The fewest runs ``auc_max_runs`` may keep."""
MAX_RUNS = 1_000_000
"""The most runs ``auc_max_runs`` may keep."""


def _auc(auc: Any, auc_bins: Any, auc_max_runs: Any) -> tuple[str, int]:
    """Validates the ROC-AUC mode: ("exact", 0), ("binned", bins) or ("sketch", max runs)."""
    if auc not in ("exact", "binned", "sketch"):
        raise InvalidArgumentError(
            f"auc must be 'exact', 'binned' or 'sketch', got {show(auc)}"
        )
    n_bins = int_arg(auc_bins, "auc_bins", None, 2, MAX_BINS)
    runs = _default_max_runs() if auc_max_runs is None else int_arg(
        auc_max_runs, "auc_max_runs", None, MIN_RUNS, MAX_RUNS)
    if auc == "binned":
        return ("binned", n_bins)
    if auc == "sketch":
        return ("sketch", runs)
    return ("exact", 0)


def _job(
    *, label: Any, score: str, slices: Any, metrics: Any, threshold: Any, weight: Any,
    min_slice_size: Any, nan_policy: Any, auc: Any, auc_bins: Any, auc_max_runs: Any = None,
    interval: tuple[int, float, str, int, str | None] | None,
    compare: tuple[str, Sequence[tuple[str, str]]] | None,
    calibration: tuple[int, str] | None = None, reliability: float | None = None,
    task: str = "binary", power: Any = 0.0, bounds: tuple[str, str] | None = None,
    classes: tuple[Any, ...] | None = None, score_parts: tuple[str, ...] | None = None,
    normalize: str = "raise", ranking: tuple[str, str, str, str] | None = None,
) -> _Job:
    """Validates the options shared by every job (``interval`` and ``calibration`` come
    validated by :func:`_interval` and :func:`_calibration`). Reads no data."""
    if not isinstance(label, str):
        raise InvalidArgumentError("label and score must be column names (str)")
    column_arg(weight, "weight", None, optional=True)
    thr = float_arg(threshold, "threshold", None)
    min_size = int_arg(min_slice_size, "min_slice_size", None, 0, U64_MAX)
    if nan_policy not in ("raise", "drop"):
        raise InvalidArgumentError(f"nan_policy must be 'raise' or 'drop', got {show(nan_policy)}")
    auc_mode = _auc(auc, auc_bins, auc_max_runs)
    if ranking is not None and interval is not None and interval[2] == "analytic":
        raise InvalidArgumentError(
            "task='ranking' has no analytic intervals: use bootstrap=B (it resamples queries)")
    names = _metric_list(metrics, task)
    _check_power(power, names)
    _check_sketch(auc_mode, names, interval, calibration, reliability)
    entries = _normalize_slices(slices)
    return _Job(
        label=label, score=score, weight=weight, threshold=thr, slices=entries,
        metrics=tuple(names), min_slice_size=min_size, nan_policy=str(nan_policy),
        auc=auc_mode, interval=interval,
        compare=None if compare is None else (
            compare[0], tuple((n, c) for n, c in compare[1])),
        calibration=calibration, reliability=reliability, task=task,
        power=float_arg(power, "power", None), bounds=bounds,
        classes=classes, score_parts=score_parts, normalize=normalize, ranking=ranking,
    )


# The calibration metrics read off the strategy's bins (the engine's `Metric::uses_bins`).
_BINNED_CALIBRATION = frozenset({
    "ece", "mce", "rmsce", "ece_debiased", "oe_ratio", "brier_reliability",
    "brier_resolution", "brier_uncertainty",
})


# The metrics auc="sketch" computes (binary, then multiclass), and the multiclass calibration
# errors, whose quantile bins keep every row.
_SKETCHED = ("roc_auc", "average_precision", "roc_auc_ovr", "roc_auc_ovr_weighted",
             "roc_auc_ovo", "roc_auc_ovo_weighted")
_MULTICLASS_ECE = frozenset({"ece_top_label", "ece_classwise"})


def _check_sketch(auc: tuple[str, int], names: Sequence[str], interval: Any,
                  calibration: tuple[int, str] | None, reliability: float | None) -> None:
    """Refuses, before any data is read, what ``auc="sketch"`` cannot do (the engine's own
    rules, checked again there): bootstrap intervals of the rank metrics, and quantile
    calibration bins next to them (those keep every row)."""
    rank = [m for m in names if m in _SKETCHED]
    if auc[0] != "sketch" or not rank:
        return
    if interval is not None and interval[2] != "analytic":
        if rank[0].startswith("roc_auc_"):
            raise InvalidArgumentError(
                "bootstrap intervals of the multiclass ROC-AUCs need auc=\"exact\" "
                "(auc=\"sketch\" keeps one run sketch per slice and class, without "
                "replicates); for intervals of the other metrics, evaluate the ROC-AUCs in a "
                "job of their own")
        raise InvalidArgumentError(
            f"bootstrap intervals of {'/'.join(rank)} need auc=\"exact\"; with "
            "auc=\"sketch\" use ci_method=\"analytic\" (DeLong on the runs)"
        )
    quantile = "ace" in names or (
        calibration is not None and calibration[1] == "quantile"
        and (reliability is not None
             or any(m in _BINNED_CALIBRATION or m in _MULTICLASS_ECE for m in names)))
    if quantile:
        raise InvalidArgumentError(
            "quantile calibration bins (ace, calibration_strategy=\"quantile\") keep every "
            "row, which auc=\"sketch\" exists to avoid; use calibration_strategy=\"uniform\" "
            "(and ece instead of ace), or auc=\"exact\""
        )


def _max_slices(value: Any) -> int | None:
    """Validates ``max_slices``: a count >= 1, or None (no limit)."""
    return None if value is None else int_arg(value, "max_slices", None, 1, U64_MAX)


def _fingerprint(value: Any) -> bool:
    """Validates ``fingerprint``: whether the pass hashes the input's content."""
    if value not in ("schema", "content"):
        raise InvalidArgumentError(
            f"fingerprint must be 'schema' (rows and columns) or 'content' (also a hash of "
            f"the values, computed in the pass), got {show(value)}")
    return bool(value == "content")


def _prepare(data: Any, job: _Job, n_threads: Any, max_slices: Any = MAX_SLICES,
             progress: Any = None,
             fingerprint: Any = "schema") -> tuple[Source, tuple[Any, ...]]:
    """The source of ``data`` and the native job tuple (data-derived bins fitted on it). Run
    the native call that reads ``source.open()`` inside ``with source.guard:``."""
    threads = _threads(n_threads)
    limit = _max_slices(max_slices)
    content_hash = _fingerprint(fingerprint)
    show = _progress.enabled(progress)
    source = to_source(data)
    source.progress = show
    source.slice_as_text(f for feats, _ in job.slices for f in feats if isinstance(f, str))
    source.check_binnable(f.column for feats, _ in job.slices for f in feats
                          if not isinstance(f, str))
    output = "prediction" if job.task == "regression" else "score"
    source.check_numbers({job.label: "label", job.score: output, job.weight: "weight",
                          **{c: output for _, c in (job.compare[1] if job.compare else ())},
                          **dict(zip(job.bounds or (), ("lower bound", "upper bound"),
                                     strict=False))})
    native = job.native(source, threads, limit, content_hash)
    # A column the job uses must not be ambiguous; a failure of the source mid-stream is
    # re-raised by the guard as the source's own (typed) error.
    source.check_columns(job.columns())
    return source, native


def _run(data: Any, job: _Job, n_threads: Any, max_slices: Any = MAX_SLICES,
         progress: Any = None, fingerprint: Any = "schema") -> Any:
    """Runs ``job`` over ``data`` in one native pass; the native result tuple."""
    source, native = _prepare(data, job, n_threads, max_slices, progress, fingerprint)
    with source.guard:
        return _native.evaluate(source.open(job.columns()), native, source.rows)


def _report(result: Any, job: _Job, kind: str = "evaluate") -> Report:
    """The :class:`Report` of a native result (of ``evaluate`` or ``finalize``)."""
    table, notes, rows, dropped, _, _, _, layouts, tables, _ = result
    method = None if job.interval is None else job.interval[2]
    rep = Report(table, notes, list(job.metrics), rows, dropped, ci_method=method,
                 tables=tables, **job.report_layout(layouts[0]))
    rep.provenance = provenance_of(result, job, kind)
    return rep


def provenance_of(result: Any, job: _Job, kind: str) -> Provenance:
    """The provenance of a native result of ``job``: its spec, the input's fingerprint (the
    native result's last entry: the columns read and the content hash), the time, the
    version and the git commit of the working directory."""
    from ._spec import Spec

    schema, content_hash = result[9]
    return Provenance(
        spec=Spec._from_job(job).to_dict(),
        assay_version=_native.__version__,
        created=_provenance.now(),
        rows=int(result[2]),
        schema=None if schema is None else [(str(n), str(t)) for n, t in schema],
        content_hash=None if content_hash is None else f"{int(content_hash):016x}",
        git_commit=_provenance.git_commit(),
        kind=kind,
    )


def _list_size(source: Source | None, column: str) -> int:
    """K of a multiclass job without ``classes=``: the fixed size of its list column of
    scores (a polars Array, an Arrow FixedSizeList)."""
    import pyarrow as pa

    schema = None if source is None else source.schema
    if source is not None and column in source.list_sizes:
        k = source.list_sizes[column]
        if k < 2:
            raise InvalidArgumentError(
                f"column {column!r} holds lists of {k} score(s): a multiclass job needs at "
                "least 2 classes", column)
        return k
    if schema is not None and column in schema.names:
        t = schema.field(column).type
        if pa.types.is_fixed_size_list(t):
            if t.list_size < 2:
                raise InvalidArgumentError(
                    f"column {column!r} holds lists of {t.list_size} score(s): a multiclass "
                    "job needs at least 2 classes", column)
            return int(t.list_size)
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            raise InvalidArgumentError(
                f"column {column!r} is a variable-size list: pass classes= (the K classes in "
                "score order) so that every row can be checked to hold K scores", column)
        return 2  # (not a list: the engine names the column and its type)
    raise InvalidArgumentError(
        "pass classes= (the K classes in score order): the number of classes cannot be read "
        f"from column {column!r} before the pass", column)


def _calibration(
    n_bins: Any, strategy: Any, names: tuple[str, str] = ("calibration_bins",
                                                          "calibration_strategy")
) -> tuple[int, str]:
    """Validates the calibration bins of a job."""
    bins_ = int_arg(n_bins, names[0], None, 1, MAX_CALIBRATION_BINS)
    if strategy not in ("uniform", "quantile"):
        raise InvalidArgumentError(
            f"{names[1]} must be 'uniform' or 'quantile', got {show(strategy)}"
        )
    return (bins_, str(strategy))


def _interval(
    bootstrap: Any, ci: Any, ci_method: Any, seed: Any, row_id: Any
) -> tuple[int, float, str, int, str | None] | None:
    """Validates the interval options; None when no interval was asked for."""
    replicates = None if bootstrap is None else int_arg(
        bootstrap, "bootstrap (the number of replicates)", None, 2, MAX_BOOTSTRAP)
    level = ci_arg(ci)
    methods = ("percentile", "basic", "bca", "analytic")
    if ci_method is not None and ci_method not in methods:
        raise InvalidArgumentError(
            f"unknown ci_method {show(ci_method)}; use one of {', '.join(map(repr, methods))}"
        )
    seed_ = int_arg(seed, "seed", None, 0, U64_MAX)
    column_arg(row_id, "row_id", None, optional=True)
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
    n_rep = 0 if method == "analytic" else int(replicates)  # type: ignore[arg-type]
    return (n_rep, level, method, seed_, row_id)


def ci_arg(ci: Any, name: str = "ci") -> float:
    """A confidence level in (0, 1)."""
    return float_arg(ci, f"{name} (the confidence level)", None, 0, 1, lo_open=True,
                     hi_open=True)


def _metric_list(metrics: Any, task: str = "binary") -> list[str]:
    """Canonical metric names: None means every default metric of ``task``; one name or a list
    of them (the engine checks that they belong to the task)."""
    if metrics is None:
        metrics = _default_metrics(task)
    elif isinstance(metrics, str):
        metrics = [metrics]
    elif isinstance(metrics, (bytes, bytearray)) or not isinstance(metrics, Sequence):
        raise InvalidArgumentError(
            f"metrics must be a metric name or a list of metric names, got {show(metrics)}"
        )
    out = []
    for m in metrics:
        if not isinstance(m, str):
            raise InvalidArgumentError(f"metric names are strings, got {show(m)}")
        out.append(_native.metric_name(m))
    return out
