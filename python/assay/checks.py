"""Behavioural checks of a model callable: perturbation, invariance and directional tests.

The model is any callable that maps a batch of rows to one score per row. assay calls it on
batches of ``batch_size`` rows (never per row), as a polars ``DataFrame`` by default or, with
``input=``, a pandas ``DataFrame`` (``"pandas"``), a pyarrow ``Table`` (``"arrow"``) or a 2-d
numpy array (``"numpy"``) of the ``features`` columns (default: every column of the data, less
the label). It may return a numpy array, a list, a polars or pandas Series, a pyarrow array, an
``(n, 1)`` array or a scikit-learn style ``(n, 2)`` probability matrix (its second column is
the score). Anything else -- an exception, the wrong length, NaN or infinity, a non-numeric
type -- raises :class:`assay.ModelError` (:class:`assay.ModelOutputError` for bad output) naming
the check and the batch.

Each check returns a :class:`CheckResult`: ``.table`` (polars, one row per slice, ``overall``
first, slices as in :func:`assay.evaluate`), ``.passed`` under the limits given, ``.failures``
(the rows that broke a limit) and, for the row-level checks, ``.worst`` (the rows that moved
most).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from . import _common as c
from ._compare import _LOWER_IS_BETTER, _NO_DIRECTION, compare
from ._evaluate import MAX_BOOTSTRAP, Bins, SliceLike, _is_found, bins, ci_arg, evaluate
from ._text import escape, escape_frame
from .errors import AssayError, InvalidArgumentError, ModelError, ModelOutputError, SchemaError
from .noise import Noise
from .report import ArrowResult, frame_to_arrow

__all__ = ["CheckResult", "perturbation", "invariance", "directional"]

_INPUTS = ("polars", "pandas", "arrow", "numpy")
_MAX_REPEATS = 10_000  # perturbed copies of the data (each one is scored and kept)
_CLEAN = "__assay_clean"
_PERT = "__assay_perturbed"
_ROW = "__assay_row"


# --------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------


class CheckResult(ArrowResult):
    """The outcome of a behavioural check. ``to_arrow()``/``to_dict()``/``to_json()`` give
    ``table`` without polars (safe in a forked child).

    Attributes
    ----------
    check : str
        ``"perturbation"``, ``"invariance"`` or ``"directional"``.
    table : polars.DataFrame
        One row per slice (per perturbed set of columns for ``perturbation``), ``overall``
        first; the columns are described by each check.
    passed : bool
        Whether every slice is within every limit given (vacuously true when no limit is set).
    failures : polars.DataFrame
        The broken limits: ``slice``, ``criterion`` (a column of ``table``), ``value``,
        ``limit`` (and ``perturbed`` for ``perturbation``).
    limits : dict
        The limits the check was judged against (``criterion -> limit``).
    worst : polars.DataFrame or None
        The rows that moved most (invariance and directional checks).
    comparison : dict or None
        ``perturbation`` with ``bootstrap=``: the paired-bootstrap :class:`assay.Comparison`
        behind the metric deltas of each perturbed set (``{"income+city": Comparison}``).
    """

    def __init__(self, check: str, table: pl.DataFrame, limits: dict[str, float],
                 worst: pl.DataFrame | None = None, comparison: Any = None,
                 summary: str = "", keys: Sequence[str] = ("slice",),
                 judged: pl.DataFrame | None = None) -> None:
        self.check = check
        self.table = table
        self._arrow = frame_to_arrow(table)
        self.limits = dict(limits)
        self.worst = worst
        self.comparison = comparison
        self.summary = summary
        judged = table if judged is None else judged
        frames = []
        for crit, limit in self.limits.items():
            bad = judged.filter(pl.col(crit).is_not_null() & (pl.col(crit) > limit))
            frames.append(bad.select(
                *keys, pl.lit(crit).alias("criterion"),
                pl.col(crit).cast(pl.Float64).alias("value"),
                pl.lit(float(limit)).alias("limit"),
            ))
        schema: dict[str, Any] = {**{k: judged.schema[k] for k in keys}, "criterion": pl.String,
                  "value": pl.Float64, "limit": pl.Float64}
        self.failures = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
        self.passed = bool(self.failures.height == 0)

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        verdict = "PASSED" if self.passed else f"FAILED ({self.failures.height} limit(s) broken)"
        lim = ", ".join(f"{k} <= {v:g}" for k, v in self.limits.items()) or "none set"
        lines = [f"assay.checks.{self.check}: {verdict}"]
        if self.summary:
            lines.append(escape(self.summary))
        lines.append(f"limits: {lim}")
        lines.append(str(escape_frame(self.table)))
        if not self.passed:
            lines.append("failures:")
            lines.append(str(escape_frame(self.failures)))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# calling the model
# --------------------------------------------------------------------------------------------


class _Scorer:
    """Calls ``model`` batch by batch on the ``features`` columns and validates what it
    returns."""

    def __init__(self, model: Any, check: str, input: Any, batch_size: Any,
                 features: list[str]) -> None:
        if not callable(model):
            raise InvalidArgumentError(
                f"checks.{check}: model must be a callable mapping a batch to scores, got "
                f"{type(model).__name__}"
            )
        if input not in _INPUTS:
            raise InvalidArgumentError(
                f"checks.{check}: input must be one of {', '.join(map(repr, _INPUTS))}, "
                f"got {input!r}"
            )
        self.model = model
        self.check = check
        self.input = input
        self.batch_size = c.positive_int(batch_size, "batch_size", f"checks.{check}")
        self.features = features

    def _convert(self, batch: pl.DataFrame) -> Any:
        if self.input == "polars":
            return batch
        if self.input == "pandas":
            return batch.to_pandas()
        if self.input == "arrow":
            return batch.to_arrow()
        return batch.to_numpy()

    def __call__(self, df: pl.DataFrame, phase: str) -> np.ndarray:
        n = df.height
        out = np.empty(n, dtype=np.float64)
        frame = df.select(self.features)
        for b, start in enumerate(range(0, n, self.batch_size)):
            stop = min(start + self.batch_size, n)
            where = f"batch {b} (rows {start}-{stop - 1}) of {phase}"
            x = self._convert(frame.slice(start, stop - start))
            try:
                res = self.model(x)
            except Exception as e:  # the user's model: report which check and batch
                raise ModelError(
                    f"checks.{self.check}: the model raised {type(e).__name__} on {where}: {e}",
                    check=self.check, batch=b,
                ) from e
            out[start:stop] = self._validate(res, stop - start, start, b, where)
        return out

    def _validate(self, res: Any, size: int, start: int, b: int, where: str) -> np.ndarray:
        def bad(msg: str) -> ModelOutputError:
            return ModelOutputError(f"checks.{self.check}: the model {msg} on {where}",
                                    check=self.check, batch=b)

        if isinstance(res, (pl.Series, pl.DataFrame)):
            res = res.to_numpy()
        elif isinstance(res, (pa.Array, pa.ChunkedArray)):
            res = res.to_numpy(zero_copy_only=False)
        if res is None or isinstance(res, (str, bytes, numbers.Number)):
            raise bad(f"returned {type(res).__name__}, not one score per row")
        try:
            arr = np.asarray(res)
        except Exception as e:
            raise bad(f"returned {type(res).__name__}, which is not an array of scores") from e
        if arr.dtype == np.bool_:
            arr = arr.astype(np.float64)
        if arr.dtype.kind not in "iuf":
            raise bad(f"returned non-numeric scores (type {type(res).__name__}, dtype "
                      f"{arr.dtype})")
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        elif arr.ndim == 2 and arr.shape[1] == 2:
            arr = arr[:, 1]
        if arr.ndim != 1:
            raise bad(f"returned an array of shape {arr.shape}; expected ({size},), ({size}, 1) "
                      f"or ({size}, 2)")
        if arr.shape[0] != size:
            raise bad(f"returned {arr.shape[0]} scores for a batch of {size} rows")
        arr = arr.astype(np.float64, copy=False)
        nonfinite = ~np.isfinite(arr)
        if nonfinite.any():
            i = int(np.flatnonzero(nonfinite)[0])
            raise bad(f"returned {arr[i]!r} for row {start + i}")
        return arr


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _features(df: pl.DataFrame, features: Any, exclude: Sequence[str | None],
              what: str) -> list[str]:
    if features is None:
        return [col for col in df.columns if col not in exclude]
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise InvalidArgumentError(f"{what}: features must be a list of column names, got "
                                   f"{features!r}")
    for f in features:
        c.column(df, f, "feature", what)
    if not features:
        raise InvalidArgumentError(f"{what}: features is empty")
    return list(features)


def _check_column(df: pl.DataFrame, name: Any, what: str, role: str) -> pl.Series:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{what}: {role} must be a column name, got {name!r}")
    if name not in df.columns:
        raise InvalidArgumentError(
            f"{what}: cannot perturb column {name!r}: it is not in the data (columns: "
            + ", ".join(repr(x) for x in df.columns) + ")"
        )
    return df.get_column(name)


def _fixed_slices(df: pl.DataFrame, slices: Any) -> Any:
    """Slice specs with data-derived bins resolved to explicit edges, so that a stacked copy of
    the data is sliced exactly like the data."""
    from ._input import to_source

    source = None

    def fix(item: Any) -> Any:
        nonlocal source
        if isinstance(item, Bins) and item.edges is None:
            if source is None:
                source = to_source(df)
            edges = item.resolve(source)
            if len(edges) >= 2 and all(b > a for a, b in zip(edges, edges[1:], strict=False)):
                return bins(item.column, edges=edges)
        return item

    if isinstance(slices, (str, Bins)) or _is_found(slices):
        slices = [slices]
    # A table of discovered slices carries exact edges already.
    return [s if _is_found(s) else tuple(fix(i) for i in s) if isinstance(s, (tuple, list))
            else fix(s) for s in slices]


def _slice_columns(slices: Any) -> list[str]:
    cols: list[str] = []
    for s in slices:
        if _is_found(s):  # the features of a discover_slices table
            s = list(dict.fromkeys(s.get_column("predicates").explode()
                                   .struct.field("feature").drop_nulls().to_list()))
        for it in (s if isinstance(s, (tuple, list)) else [s]):
            name = it.column if isinstance(it, Bins) else it
            if isinstance(name, str) and name not in cols:
                cols.append(name)
    return cols


def _per_slice(ss: c.SliceSet, **per_row: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slice sums (``sum``), maxima (``max``) and minima (``min``) of per-row arrays; a
    key's prefix says which."""
    out: dict[str, np.ndarray] = {}
    for key, v in per_row.items():
        kind = key.split("_", 1)[0]
        vals = np.empty(len(ss.rows))
        for j, rows in enumerate(ss.rows):
            sub = v[rows]
            if kind == "sum":
                vals[j] = sub.sum()
            elif sub.size == 0 or np.isnan(sub).all():
                vals[j] = np.nan
            elif kind == "max":
                vals[j] = np.nanmax(sub)
            else:
                vals[j] = np.nanmin(sub)
        out[key] = vals
    return out


def _limit(x: Any, name: str, what: str) -> float | None:
    if x is None:
        return None
    return c.real_arg(x, name, what, minimum=0.0)


def _takes_rng(f: Callable[..., Any]) -> bool:
    if isinstance(f, Noise):
        return True
    try:
        params = inspect.signature(f).parameters
    except (TypeError, ValueError):
        return False
    return "rng" in params


def _worst(order_key: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries of ``order_key`` (NaN never), largest first."""
    valid = np.flatnonzero(~np.isnan(order_key))
    if valid.size == 0 or k == 0:
        return np.empty(0, dtype=np.int64)
    k = min(k, valid.size)
    part = valid[np.argpartition(-order_key[valid], k - 1)[:k]]
    return part[np.argsort(-order_key[part], kind="stable")]


# --------------------------------------------------------------------------------------------
# perturbation
# --------------------------------------------------------------------------------------------


def perturbation(
    model: Callable[[Any], Any],
    data: Any,
    *,
    label: str,
    perturb: Mapping[str, Callable[..., Any]],
    slices: Sequence[SliceLike] | SliceLike = (),
    metrics: Sequence[str] | None = None,
    threshold: float = 0.5,
    seed: int = 0,
    repeats: int = 5,
    separately: bool = False,
    weight: str | None = None,
    bootstrap: int | None = None,
    ci: float = 0.95,
    max_flip_rate: float | None = None,
    max_drop: float | Mapping[str, float] | None = None,
    batch_size: int = 65536,
    input: Literal["polars", "pandas", "arrow", "numpy"] = "polars",
    features: Sequence[str] | None = None,
) -> CheckResult:
    """How much do the model's predictions and metrics move when inputs are perturbed?

    The model scores the clean data once and ``repeats`` perturbed copies, in which every
    column named in ``perturb`` is replaced by its perturbation (all of them together, and
    with ``separately=True`` also one at a time). Perturbations are plain functions of a
    column, such as :func:`assay.noise.gaussian`, :func:`assay.noise.swap` and
    :func:`assay.noise.missing`; one that takes an ``rng`` keyword gets a numpy Generator seeded
    from ``(seed, repeat, column)``, so the same seed reproduces the same perturbations and the
    same column gets the same noise whether perturbed alone or with the others.

    Parameters
    ----------
    model : callable
        Maps a batch (see the module documentation) to one score per row.
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    label : str
        Column of 0/1 labels.
    perturb : mapping
        ``{"column": perturbation, ...}``.
    slices
        Slice specs as in :func:`assay.evaluate`, computed on the clean data.
    metrics : list of str, optional
        Metrics of :func:`assay.evaluate` compared clean vs perturbed (default accuracy and
        ROC-AUC).
    threshold : float
        A score ``>= threshold`` is a positive prediction (for the metrics and the flips).
    seed : int
        Seed of the perturbations (and of the bootstrap).
    repeats : int
        Perturbed copies of the data, in [1, 10000]. The perturbed metrics are computed on the
        copies pooled.
    separately : bool
        Also perturb each column on its own (one more table block per column).
    weight : str, optional
        Column of positive sample weights (metrics and flip rate are weighted).
    bootstrap : int, optional
        Replicates of a paired bootstrap (:func:`assay.compare`) for intervals of the metric
        deltas. Replicate weights follow the original row, so a row's perturbed copies are
        resampled together.
    ci : float
        Level of the intervals.
    max_flip_rate : float, optional
        Limit on every slice's flip rate.
    max_drop : float or mapping, optional
        Limit on every slice's metric drop (clean minus perturbed, or perturbed minus clean
        for losses and error rates such as ``log_loss`` and ``fpr``); one number for every
        metric or ``{"metric": limit}``. Judged on the point estimates.
    batch_size : int
        Rows per model call.
    input : {"polars", "pandas", "arrow", "numpy"}
        What the model receives.
    features : list of str, optional
        The columns the model receives (default: every column but ``label`` and ``weight``).

    Returns
    -------
    CheckResult
        ``table`` has one row per (perturbed set, slice): ``perturbed`` (the columns, joined
        by ``+``), ``slice``, ``n``, ``flip_rate`` (fraction of rows x repeats whose prediction
        at ``threshold`` differs from the clean one), ``mean_abs_change`` and
        ``max_abs_change`` of the score, then per metric ``<m>_clean``, ``<m>_perturbed``,
        ``<m>_delta`` (perturbed - clean) and, with ``bootstrap``, ``<m>_delta_lo`` and
        ``<m>_delta_hi``.

    Examples
    --------
    >>> import assay, numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> df = pl.DataFrame({"income": rng.normal(50, 10, 2000),
    ...                    "city": rng.choice(["Lima", "Oslo"], 2000)})
    >>> df = df.with_columns(y=(df["income"] > 50).cast(pl.Int8))
    >>> def model(batch):
    ...     return 1 / (1 + np.exp(-(batch["income"].to_numpy() - 50) / 5))
    >>> res = assay.checks.perturbation(
    ...     model, df, label="y", slices=["city"], repeats=3, max_flip_rate=0.2,
    ...     perturb={"income": assay.noise.gaussian(0.05, relative=True),
    ...              "city": assay.noise.swap(0.1)})
    >>> res.passed
    True
    >>> res.table["slice"].to_list(), round(res.table["flip_rate"][0], 3)
    (['overall', 'city=Lima', 'city=Oslo'], 0.047)
    """
    what = "checks.perturbation"
    df = c.load(data, what)
    y = c.labels(df, label, what)
    w = c.weights(df, weight, what)
    c.not_empty(df.height, what)
    del y
    if not isinstance(perturb, Mapping) or not perturb:
        raise InvalidArgumentError(
            f"{what}: perturb must be a non-empty mapping of column names to perturbations, "
            f"got {perturb!r}"
        )
    for col, f in perturb.items():
        _check_column(df, col, what, "a perturbed column")
        if not callable(f):
            raise InvalidArgumentError(
                f"{what}: the perturbation of {col!r} must be a function of a column, got "
                f"{type(f).__name__}"
            )
    seed = c.seed_arg(seed, what)
    repeats = c.positive_int(repeats, "repeats", what, 1, _MAX_REPEATS)
    separately = c.bool_arg(separately, "separately", what)
    thr = c.real_arg(threshold, "threshold", what)
    if bootstrap is not None:
        bootstrap = c.positive_int(bootstrap, "bootstrap", what, 2, MAX_BOOTSTRAP)
    ci = ci_arg(ci)
    flip_limit = _limit(max_flip_rate, "max_flip_rate", what)
    names = c.metric_names(metrics, what, None, ("accuracy", "roc_auc"))
    drop_limits: dict[str, float] = {}
    if isinstance(max_drop, Mapping):
        for m, v in max_drop.items():
            key = c.metric_names([m], what)[0]
            if key not in names:
                raise InvalidArgumentError(f"{what}: max_drop names {key!r}, which is not one "
                                           f"of the metrics {names}")
            drop_limits[key] = _limit(v, f"max_drop[{m!r}]", what)  # type: ignore[assignment]
    elif max_drop is not None:
        lim = _limit(max_drop, "max_drop", what)
        drop_limits = {m: lim for m in names if m not in _NO_DIRECTION}  # type: ignore[misc]
    for m in drop_limits:
        if m in _NO_DIRECTION:
            raise InvalidArgumentError(f"{what}: {m} has no better or worse direction; it "
                                       "cannot have a max_drop")
    feats = _features(df, features, [label, weight], what)
    scorer = _Scorer(model, "perturbation", input, batch_size, feats)
    spec = _fixed_slices(df, slices)
    ss = c.slice_set(df, spec, what)

    clean = scorer(df, "the clean data")
    cols = list(perturb)
    sets = [("+".join(cols), cols)]
    if separately and len(cols) > 1:
        sets += [(col, [col]) for col in cols]
    base = df.select(list(dict.fromkeys([label, *([weight] if weight else []),
                                         *_slice_columns(spec)])))
    ww = np.ones(df.height) if w is None else w
    blocks = []
    comparisons: dict[str, Any] = {}
    for set_name, set_cols in sets:
        flips = np.zeros(df.height)
        abs_sum = np.zeros(df.height)
        abs_max = np.zeros(df.height)
        perturbed_scores = []
        for r in range(repeats):
            pdf = df.with_columns([
                _perturb(df, col, perturb[col], seed, r, cols.index(col), what)
                for col in set_cols
            ])
            s = scorer(pdf, f"the perturbed data ({set_name}, repeat {r})")
            perturbed_scores.append(s)
            flips += (s >= thr) != (clean >= thr)
            d = np.abs(s - clean)
            abs_sum += d
            np.maximum(abs_max, d, out=abs_max)
        agg = _per_slice(ss, sum_w=ww, sum_flips=ww * flips / repeats,
                         sum_abs=ww * abs_sum / repeats, max_abs=abs_max)
        block = pl.DataFrame({
            "perturbed": [set_name] * len(ss.labels),
            "slice": ss.labels,
            "n": [int(r.size) for r in ss.rows],
            "flip_rate": c.ratio(agg["sum_flips"], agg["sum_w"]),
            "mean_abs_change": c.ratio(agg["sum_abs"], agg["sum_w"]),
            "max_abs_change": agg["max_abs"],
        }, schema_overrides={"n": pl.Int64})
        stacked = pl.concat([base] * repeats).with_columns(
            pl.Series(_CLEAN, np.tile(clean, repeats)),
            pl.Series(_PERT, np.concatenate(perturbed_scores)),
            pl.Series(_ROW, np.tile(np.arange(df.height, dtype=np.int64), repeats)),
        )
        mcols, cmp = _metric_deltas(stacked, df, clean, label, weight, spec, names, thr,
                                    bootstrap, ci, seed)
        comparisons[set_name] = cmp
        if mcols.get_column("slice").to_list() != ss.labels:  # both follow evaluate's order
            raise AssayError(f"{what}: internal error: the slices of the metric table and of "
                             "the flip rates differ")
        blocks.append(pl.concat([block, mcols.drop("slice")], how="horizontal"))
    table = pl.concat(blocks)
    judged = table.with_columns(
        ((1.0 if m in _LOWER_IS_BETTER else -1.0) * pl.col(f"{m}_delta")).alias(f"{m}_drop")
        for m in drop_limits
    )
    limits: dict[str, float] = {}
    if flip_limit is not None:
        limits["flip_rate"] = flip_limit
    for m, v in drop_limits.items():
        limits[f"{m}_drop"] = v
    summary = (f"{repeats} perturbed copies of {df.height} rows; perturbed: "
               + ", ".join(f"{k} ({perturb[k]!r})" for k in cols))
    return CheckResult("perturbation", table, limits, summary=summary,
                       comparison=comparisons if bootstrap else None,
                       keys=("perturbed", "slice"), judged=judged)


def _perturb(df: pl.DataFrame, col: str, f: Callable[..., Any], seed: int, r: int, j: int,
             what: str) -> pl.Series:
    series = df.get_column(col)
    try:
        if _takes_rng(f):
            out = f(series, rng=np.random.default_rng([seed, r, j]))
        else:
            out = f(series)
    except Exception as e:
        if isinstance(e, (InvalidArgumentError, SchemaError)):
            raise
        raise InvalidArgumentError(
            f"{what}: the perturbation of {col!r} raised {type(e).__name__}: {e}"
        ) from e
    if not isinstance(out, pl.Series):
        try:
            out = pl.Series(col, out)
        except Exception as e:
            raise InvalidArgumentError(
                f"{what}: the perturbation of {col!r} returned {type(out).__name__}, not a "
                "column"
            ) from e
    if out.len() != series.len():
        raise InvalidArgumentError(
            f"{what}: the perturbation of {col!r} returned {out.len()} values for "
            f"{series.len()} rows"
        )
    return out.alias(col)


def _metric_deltas(stacked: pl.DataFrame, df: pl.DataFrame, clean: np.ndarray, label: str,
                   weight: str | None, spec: Any, names: list[str], thr: float,
                   bootstrap: int | None, ci: float, seed: int) -> tuple[pl.DataFrame, Any]:
    """Per slice: ``<m>_clean``, ``<m>_perturbed``, ``<m>_delta`` (and the interval)."""
    if bootstrap is None:
        clean_t = evaluate(df.with_columns(pl.Series(_CLEAN, clean)), label=label, score=_CLEAN,
                           slices=spec, metrics=names, threshold=thr, weight=weight).table
        pert_t = evaluate(stacked, label=label, score=_PERT, slices=spec, metrics=names,
                          threshold=thr, weight=weight).table
        cols = [clean_t.get_column("slice")]
        for m in names:
            a, b = clean_t.get_column(m), pert_t.get_column(m)
            cols += [a.alias(f"{m}_clean"), b.alias(f"{m}_perturbed"),
                     (b - a).alias(f"{m}_delta")]
        return pl.DataFrame(cols), None
    cmp = compare(stacked, label=label, scores={"clean": _CLEAN, "perturbed": _PERT},
                  slices=spec, metrics=names, threshold=thr, weight=weight, bootstrap=bootstrap,
                  ci=ci, seed=seed, row_id=_ROW)
    t = cmp.table
    cols = [t.filter(pl.col("metric") == names[0]).get_column("slice")]
    for m in names:
        part = t.filter(pl.col("metric") == m)
        cols += [part.get_column("clean").alias(f"{m}_clean"),
                 part.get_column("perturbed").alias(f"{m}_perturbed"),
                 part.get_column("delta").alias(f"{m}_delta"),
                 part.get_column("delta_lo").alias(f"{m}_delta_lo"),
                 part.get_column("delta_hi").alias(f"{m}_delta_hi")]
    return pl.DataFrame(cols), cmp


# --------------------------------------------------------------------------------------------
# invariance
# --------------------------------------------------------------------------------------------


def invariance(
    model: Callable[[Any], Any],
    data: Any,
    *,
    column: str,
    values: Sequence[Any] | None = None,
    tolerance: float = 0.0,
    threshold: float = 0.5,
    slices: Sequence[SliceLike] | SliceLike = (),
    max_violation_rate: float = 0.0,
    max_flip_rate: float | None = None,
    n_worst: int = 10,
    batch_size: int = 65536,
    input: Literal["polars", "pandas", "arrow", "numpy"] = "polars",
    features: Sequence[str] | None = None,
) -> CheckResult:
    """Does the prediction change when only ``column`` changes (a counterfactual test)?

    For every alternative value ``v`` of ``column``, the whole data is scored once with the
    column set to ``v`` (one batched pass per value). Each (row, value) pair where ``v`` differs
    from the row's own value is a counterfactual: it **flips** when the prediction at
    ``threshold`` changes, and it is a **violation** when the score moves by more than
    ``tolerance``.

    Parameters
    ----------
    model : callable
        Maps a batch to one score per row.
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    column : str
        The column that should not matter (e.g. a protected attribute).
    values : list, optional
        The alternative values (default: every distinct non-null value of the column). Each
        must occur in the column (or be one of its categories).
    tolerance : float
        A score change larger than this is a violation.
    threshold : float
        A score ``>= threshold`` is a positive prediction.
    slices
        Slice specs as in :func:`assay.evaluate`, on the original rows.
    max_violation_rate : float
        Limit on every slice's violation rate (default 0: no violation anywhere).
    max_flip_rate : float, optional
        Limit on every slice's flip rate.
    n_worst : int
        Number of rows in ``.worst``.
    batch_size, input, features
        How the model is called (see the module documentation); ``features`` defaults to every
        column.

    Returns
    -------
    CheckResult
        ``table``: ``slice``, ``n`` (rows), ``pairs`` (counterfactual pairs), ``flip_rate``,
        ``violation_rate``, ``mean_abs_change``, ``max_abs_change``. ``worst``: the
        ``n_worst`` pairs with the largest score change: ``row``, ``from``, ``to``, ``score``,
        ``counterfactual_score``, ``change``.

    Examples
    --------
    >>> import assay, numpy as np, polars as pl
    >>> df = pl.DataFrame({"income": [20.0, 35.0, 50.0, 65.0],
    ...                    "gender": ["F", "M", "F", "M"]})
    >>> def fair(batch):
    ...     return batch["income"].to_numpy() / 100
    >>> assay.checks.invariance(fair, df, column="gender").passed
    True
    >>> def unfair(batch):
    ...     return fair(batch) + 0.2 * (batch["gender"] == "M").to_numpy()
    >>> res = assay.checks.invariance(unfair, df, column="gender")
    >>> res.passed, res.table["flip_rate"][0]
    (False, 0.25)
    """
    what = "checks.invariance"
    df = c.load(data, what)
    col = _check_column(df, column, what, "column")
    c.not_empty(df.height, what)
    tol = c.real_arg(tolerance, "tolerance", what, minimum=0.0)
    thr = c.real_arg(threshold, "threshold", what)
    viol_limit = _limit(max_violation_rate, "max_violation_rate", what)
    flip_limit = _limit(max_flip_rate, "max_flip_rate", what)
    n_worst = c.positive_int(n_worst, "n_worst", what, minimum=0)
    alternatives = _domain_values(col, values, what)
    feats = _features(df, features, [], what)
    scorer = _Scorer(model, "invariance", input, batch_size, feats)
    ss = c.slice_set(df, slices, what)

    clean = scorer(df, "the original data")
    n = df.height
    pairs = np.zeros(n)
    flips = np.zeros(n)
    viol = np.zeros(n)
    abs_sum = np.zeros(n)
    abs_max = np.full(n, np.nan)
    cand_rows: list[np.ndarray] = []
    cand_to: list[np.ndarray] = []
    cand_scores: list[np.ndarray] = []
    for v in alternatives:
        lit = pl.lit(v).cast(col.dtype) if not isinstance(col.dtype, pl.Categorical) \
            else pl.lit(v).cast(pl.String).cast(col.dtype)
        cdf = df.with_columns(lit.alias(column))
        s = scorer(cdf, f"the data with {column}={v!r}")
        changed = (col != cdf.get_column(column)).fill_null(True).to_numpy()
        d = np.where(changed, np.abs(s - clean), np.nan)
        pairs += changed
        flips += changed & ((s >= thr) != (clean >= thr))
        viol += changed & (d > tol)
        abs_sum += np.where(changed, d, 0.0)
        abs_max = np.fmax(abs_max, d)
        top = _worst(d, n_worst)
        cand_rows.append(top)
        cand_to.append(np.full(top.size, len(cand_to)))
        cand_scores.append(s[top])
    agg = _per_slice(ss, sum_pairs=pairs, sum_flips=flips, sum_viol=viol, sum_abs=abs_sum,
                     max_abs=abs_max)
    table = pl.DataFrame({
        "slice": ss.labels,
        "n": [int(r.size) for r in ss.rows],
        "pairs": agg["sum_pairs"].astype(np.int64),
        "flip_rate": c.ratio(agg["sum_flips"], agg["sum_pairs"]),
        "violation_rate": c.ratio(agg["sum_viol"], agg["sum_pairs"]),
        "mean_abs_change": c.ratio(agg["sum_abs"], agg["sum_pairs"]),
        "max_abs_change": agg["max_abs"],
    }, schema_overrides={"n": pl.Int64}).with_columns(
        pl.col("flip_rate", "violation_rate", "mean_abs_change", "max_abs_change").fill_nan(None))
    rows = np.concatenate(cand_rows)
    to_idx = np.concatenate(cand_to)
    cf = np.concatenate(cand_scores)
    change = cf - clean[rows]
    pick = _worst(np.abs(change), n_worst)
    to_values = pl.Series("to", [alternatives[i] for i in to_idx[pick]], dtype=col.dtype) \
        if not isinstance(col.dtype, pl.Categorical) else \
        pl.Series("to", [alternatives[i] for i in to_idx[pick]], dtype=pl.String)
    worst = pl.DataFrame({
        "row": rows[pick].astype(np.int64),
        "from": col.gather(rows[pick]) if not isinstance(col.dtype, pl.Categorical)
        else col.gather(rows[pick]).cast(pl.String),
        "to": to_values,
        "score": clean[rows[pick]],
        "counterfactual_score": cf[pick],
        "change": change[pick],
    })
    limits: dict[str, float] = {"violation_rate": viol_limit}  # type: ignore[dict-item]
    if flip_limit is not None:
        limits["flip_rate"] = flip_limit
    shown = ", ".join(repr(v) for v in alternatives[:8]) + (" ..." if len(alternatives) > 8
                                                             else "")
    return CheckResult("invariance", table, limits, worst=worst,
                       summary=f"{column} set to each of {shown}; tolerance {tol:g}")


def _domain_values(col: pl.Series, values: Any, what: str) -> list[Any]:
    """The alternative values of ``col``: given ones checked against its domain, or all."""
    observed = col.drop_nulls().unique(maintain_order=False).sort()
    if isinstance(col.dtype, (pl.Categorical, pl.Enum)):
        observed = observed.cast(pl.String).sort()
        if isinstance(col.dtype, pl.Enum):
            observed = pl.Series(col.dtype.categories).sort()
    domain = observed.to_list()
    if values is None:
        if len(domain) < 2:
            raise InvalidArgumentError(
                f"{what}: column {col.name!r} has {len(domain)} distinct value(s); an "
                "invariance check needs at least two"
            )
        return domain
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidArgumentError(f"{what}: values must be a list of values of "
                                   f"{col.name!r}, got {values!r}")
    if not values:
        raise InvalidArgumentError(f"{what}: values is empty")
    known = set(domain)
    for v in values:
        try:
            ok = v in known
        except TypeError:
            ok = False
        if not ok:
            shown = ", ".join(repr(d) for d in domain[:20]) + (" ..." if len(domain) > 20
                                                                else "")
            raise InvalidArgumentError(
                f"{what}: value {v!r} is not in the domain of column {col.name!r} "
                f"(values: {shown})",
                col.name,
            )
    return list(dict.fromkeys(values))


# --------------------------------------------------------------------------------------------
# directional
# --------------------------------------------------------------------------------------------


def directional(
    model: Callable[[Any], Any],
    data: Any,
    *,
    column: str,
    delta: float,
    expect: Literal["increase", "decrease"] = "increase",
    tolerance: float = 0.0,
    slices: Sequence[SliceLike] | SliceLike = (),
    max_violation_rate: float = 0.0,
    n_worst: int = 10,
    batch_size: int = 65536,
    input: Literal["polars", "pandas", "arrow", "numpy"] = "polars",
    features: Sequence[str] | None = None,
) -> CheckResult:
    """Does the score move the expected way when a numeric column moves?

    The data is scored as it is and with ``column + delta``; a row **violates** the
    expectation when its score moves against ``expect`` by more than ``tolerance`` (for
    ``"increase"``: new score < old score - tolerance). Rows where the column is null are
    left out.

    Parameters
    ----------
    model : callable
        Maps a batch to one score per row.
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    column : str
        A numeric column.
    delta : float
        What is added to the column (e.g. ``+100`` square feet).
    expect : {"increase", "decrease"}
        The expected direction of the score.
    tolerance : float
        Movements against the expectation up to this size are not violations.
    slices
        Slice specs as in :func:`assay.evaluate`, on the original rows.
    max_violation_rate : float
        Limit on every slice's violation rate (default 0).
    n_worst : int
        Number of rows in ``.worst``.
    batch_size, input, features
        How the model is called (see the module documentation); ``features`` defaults to every
        column.

    Returns
    -------
    CheckResult
        ``table``: ``slice``, ``n`` (rows with a value), ``violation_rate``, ``mean_change``
        (new - old score), ``worst_change`` (the change furthest against the expectation).
        ``worst``: ``row``, ``value``, ``score``, ``perturbed_score``, ``change`` of the
        ``n_worst`` rows that moved furthest against the expectation.

    Examples
    --------
    >>> import assay, numpy as np, polars as pl
    >>> df = pl.DataFrame({"sqft": [500.0, 900.0, 1500.0, 2500.0]})
    >>> def price_model(batch):
    ...     x = batch["sqft"].to_numpy()
    ...     return np.minimum(x, 1000.0) / 1000 - (x > 2000) * 0.1
    >>> res = assay.checks.directional(price_model, df, column="sqft", delta=100)
    >>> res.passed, res.table["violation_rate"][0]
    (True, 0.0)
    >>> res = assay.checks.directional(price_model, df, column="sqft", delta=1000)
    >>> res.passed, res.worst["row"].to_list()
    (False, [2])
    """
    what = "checks.directional"
    df = c.load(data, what)
    col = _check_column(df, column, what, "column")
    if not col.dtype.is_numeric():
        raise SchemaError(f"{what}: column {column!r} must be numeric to add a delta, got "
                          f"{col.dtype}", column)
    c.not_empty(df.height, what)
    step = c.real_arg(delta, "delta", what)
    if expect not in ("increase", "decrease"):
        raise InvalidArgumentError(f"{what}: expect must be 'increase' or 'decrease', got "
                                   f"{expect!r}")
    tol = c.real_arg(tolerance, "tolerance", what, minimum=0.0)
    viol_limit = _limit(max_violation_rate, "max_violation_rate", what)
    n_worst = c.positive_int(n_worst, "n_worst", what, minimum=0)
    feats = _features(df, features, [], what)
    scorer = _Scorer(model, "directional", input, batch_size, feats)
    ss = c.slice_set(df, slices, what)

    clean = scorer(df, "the original data")
    moved = df.with_columns((pl.col(column) + step).alias(column))
    s = scorer(moved, f"the data with {column} {step:+g}")
    has = (~col.is_null()).to_numpy()
    if col.dtype.is_float():
        has &= ~np.isnan(col.cast(pl.Float64).fill_null(0.0).to_numpy())
    change = s - clean
    against = -change if expect == "increase" else change  # > 0: moved the wrong way
    against = np.where(has, against, np.nan)
    viol = has & (against > tol)
    agg = _per_slice(ss, sum_n=has.astype(np.float64), sum_viol=viol.astype(np.float64),
                     sum_change=np.where(has, change, 0.0), max_against=against)
    sign = -1.0 if expect == "increase" else 1.0
    table = pl.DataFrame({
        "slice": ss.labels,
        "n": agg["sum_n"].astype(np.int64),
        "violation_rate": c.ratio(agg["sum_viol"], agg["sum_n"]),
        "mean_change": c.ratio(agg["sum_change"], agg["sum_n"]),
        "worst_change": sign * agg["max_against"],
    }).with_columns(pl.col("violation_rate", "mean_change", "worst_change").fill_nan(None))
    pick = _worst(np.where(viol, against, np.nan), n_worst)
    worst = pl.DataFrame({
        "row": pick.astype(np.int64),
        "value": col.gather(pick),
        "score": clean[pick],
        "perturbed_score": s[pick],
        "change": change[pick],
    })
    return CheckResult("directional", table, {"violation_rate": viol_limit},  # type: ignore[dict-item]
                       worst=worst,
                       summary=f"{column} {step:+g}, expect the score to {expect} "
                               f"(tolerance {tol:g})")
