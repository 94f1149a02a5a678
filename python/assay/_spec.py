"""``assay.Spec``, ``assay.PartialState`` and ``assay.merge``: an evaluation split into
*accumulate* (anywhere: per file, process, machine or day), *merge* (anywhere, in any order) and
*finalize* (once).

A :class:`Spec` holds every option of :func:`assay.evaluate` (or of :func:`assay.compare`),
validated once. ``spec.accumulate(data)`` reads one shard into a :class:`PartialState`: the
mergeable per-slice states of the engine, keyed by slice *values* (never by process-local
ids), with the row ranges the shard covered and the spec it was made with. States merge by
value in a canonical order, so any split of the rows and any merge order finalize to the report
that one ``assay.evaluate`` call on all the rows gives (counts exact, every float within 1e-12
relative; bit-identical for the same set of shards, whatever order they are merged in).

``assay.evaluate(data, ...)`` and ``Spec(...).evaluate(data)`` run the same job on the same code
path; see ``docs/partial.md`` for the interval methods that states support, their memory and
their byte format.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from . import _native
from ._args import U64_MAX, int_arg, is_bool, show
from ._compare import Comparison, _comparison, _comparison_options
from ._evaluate import (
    MAX_BINS,
    MAX_SLICES,
    TASKS,
    Bins,
    Feature,
    SliceEntry,
    SliceLike,
    _binary_options,
    _calibration,
    _default_metrics,
    _interval,
    _Job,
    _job,
    _list_size,
    _multiclass_options,
    _prepare,
    _ranking_options,
    _report,
    _run,
    _score_parts,
    _task_column,
    _task_options,
    _threads,
    bins,
)
from ._input import to_source
from .errors import InvalidArgumentError, StateFormatError, StateMismatchError
from .report import Report

__all__ = ["Spec", "PartialState", "merge", "SPEC_FORMAT"]

SPEC_FORMAT = 1
"""The version of :meth:`Spec.to_dict`'s layout (its ``"format"`` key)."""

# The keys of Spec.to_dict(), in their order (all of them are always present).
_KEYS = (
    "format", "label", "score", "scores", "reference", "slices", "metrics", "threshold",
    "weight", "min_slice_size", "nan_policy", "auc", "auc_bins", "auc_max_runs", "bootstrap",
    "ci", "ci_method", "seed", "row_id", "calibration_bins", "calibration_strategy",
    "task", "prediction", "power", "lower", "upper", "classes", "normalize",
    "query", "gain", "ties", "empty",
)


# --------------------------------------------------------------------------------------------
# the canonical dict of a job
# --------------------------------------------------------------------------------------------


def _feature_json(f: Feature) -> Any:
    if isinstance(f, str):
        return f
    if f.edges is not None:
        return {"column": f.column, "edges": [float(e) for e in f.edges]}
    return {"column": f.column, "bins": f.n, "strategy": f.strategy}


def _entry_json(entry: SliceEntry) -> Any:
    feats, only = entry
    if only is not None:
        return {"features": [_feature_json(f) for f in feats], "only": only}
    if len(feats) == 1:
        return _feature_json(feats[0])
    return [_feature_json(f) for f in feats]


def _job_dict(job: _Job) -> dict[str, Any]:
    """The canonical dict of a job: a function of what reaches the engine, so that two specs
    are equal exactly when they run the same job (options a job does not use are reset to
    their defaults: ``seed``/``ci`` without an interval, ``auc_bins`` unless binned, ...)."""
    if job.interval is None:
        bootstrap, ci, ci_method, seed, row_id = None, 0.95, None, 0, None
    else:
        n_rep, ci, ci_method, seed, row_id = job.interval
        bootstrap = None if ci_method == "analytic" else n_rep
    prediction = None
    if job.compare is None:
        score, scores, reference = job.score, None, None
        if job.score_parts is not None:
            score = list(job.score_parts)
        if job.task == "regression":
            score, prediction = None, job.score
    else:
        score = None
        reference = job.compare[0]
        scores = [[reference, job.score], *([n, c] for n, c in job.compare[1])]
    kind, size = job.auc
    assert job.calibration is not None
    return {
        "format": SPEC_FORMAT,
        "label": job.label,
        "score": score,
        "scores": scores,
        "reference": reference,
        "slices": [_entry_json(e) for e in job.slices],
        "metrics": list(job.metrics),
        "threshold": float(job.threshold),
        "weight": job.weight,
        "min_slice_size": job.min_slice_size,
        "nan_policy": job.nan_policy,
        "auc": kind,
        "auc_bins": size if kind == "binned" else 4096,
        "auc_max_runs": size if kind == "sketch" else None,
        "bootstrap": bootstrap,
        "ci": float(ci),
        "ci_method": ci_method,
        "seed": seed,
        "row_id": row_id,
        "calibration_bins": job.calibration[0],
        "calibration_strategy": job.calibration[1],
        "task": job.task,
        "prediction": prediction,
        "power": float(job.power),
        "lower": None if job.bounds is None else job.bounds[0],
        "upper": None if job.bounds is None else job.bounds[1],
        "classes": None if job.classes is None else list(job.classes),
        "normalize": job.normalize,
        "query": None if job.ranking is None else job.ranking[0],
        "gain": "exponential" if job.ranking is None else job.ranking[1],
        "ties": "average" if job.ranking is None else job.ranking[2],
        "empty": "skip" if job.ranking is None else job.ranking[3],
    }


def _canonical_json(d: Mapping[str, Any]) -> str:
    """The canonical JSON text of a spec dict (what a state stores and merge compares)."""
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


# --------------------------------------------------------------------------------------------
# reading a spec dict back
# --------------------------------------------------------------------------------------------


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"Spec.from_dict: {message}")


def _edges_json(x: Any, column: str) -> tuple[float, ...]:
    """Bin edges of a spec dict: at least two finite numbers, strictly increasing (or two equal
    edges: the one bin that ``spec.resolve`` fits to a constant column)."""
    if not isinstance(x, list) or not 2 <= len(x) <= MAX_BINS + 1:
        raise _bad(f"the edges of bins of {column!r} must be a list of 2 to {MAX_BINS + 1} "
                   f"numbers, got {show(x)}")
    out = []
    for e in x:
        if is_bool(e) or not isinstance(e, numbers.Real) or not math.isfinite(float(e)):
            raise _bad(f"the edges of bins of {column!r} must be finite numbers, got {show(e)}")
        out.append(float(e))
    ok = all(b > a for a, b in zip(out, out[1:], strict=False)) or (
        len(out) == 2 and out[0] == out[1])
    if not ok:
        raise _bad(f"the edges of bins of {column!r} must be strictly increasing, got "
                   f"{show(out)}")
    return tuple(out)


def _feature_from_json(x: Any) -> Feature:
    if isinstance(x, str):
        return x
    if isinstance(x, dict) and isinstance(x.get("column"), str):
        column = x["column"]
        if set(x) == {"column", "edges"}:
            return Bins(column, None, "quantile", _edges_json(x["edges"], column))
        if set(x) == {"column", "bins", "strategy"}:
            try:
                return bins(column, x["bins"], strategy=x["strategy"])
            except InvalidArgumentError as e:
                raise _bad(str(e)) from None
    raise _bad(
        "a slice feature is a column name, {'column': c, 'edges': [...]} or {'column': c, "
        f"'bins': n, 'strategy': s}}, got {show(x)}"
    )


def _entry_from_json(x: Any) -> SliceEntry:
    if isinstance(x, dict) and "features" in x:
        if set(x) != {"features", "only"} or not isinstance(x["features"], list) \
                or not x["features"] or not isinstance(x["only"], str):
            raise _bad("a discovered slice is {'features': [...], 'only': 'label'}, got "
                       f"{show(x)}")
        return tuple(_feature_from_json(f) for f in x["features"]), x["only"]
    if isinstance(x, list):
        if not x:
            raise _bad("an empty list is not a slice")
        return tuple(_feature_from_json(f) for f in x), None
    return (_feature_from_json(x),), None


def _scores_from_json(x: Any) -> dict[str, str]:
    if isinstance(x, dict):
        return x
    if not isinstance(x, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
            for p in x):
        raise _bad(f"scores must be a list of [name, column] pairs, got {show(x)}")
    names = [p[0] for p in x]
    if len(set(names)) != len(names):
        raise _bad(f"each model needs its own name; got {names}")
    return {p[0]: p[1] for p in x}


# --------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------


class Spec:
    """Everything about an evaluation but the data: the options of :func:`assay.evaluate`
    (one ``score``) or of :func:`assay.compare` (``scores``), validated once.

    A spec evaluates data directly (:meth:`evaluate`), or splits the work: :meth:`accumulate`
    turns each shard of the rows into an :class:`assay.PartialState`, the states merge in any
    order (:func:`assay.merge`), and :meth:`PartialState.finalize` gives the report that
    ``assay.evaluate`` on all the rows would give. Specs are immutable, compare equal when they
    run the same job, hash, pickle, and round-trip through JSON (:meth:`to_dict`,
    :meth:`from_dict`).

    Parameters
    ----------
    label : str
        Column of 0/1 labels (numeric targets with ``task="regression"``).
    score : str, optional
        Column of scores: a spec of one model, whose result is a :class:`assay.Report`.
    prediction : str, optional
        Column of predictions: a regression spec of one model (``task="regression"``, which
        takes ``prediction=`` instead of ``score=``).
    task : {"binary", "regression", "multiclass", "ranking"}
        The task family, as in :func:`assay.evaluate`; ``scores=`` of a regression spec name
        prediction columns, of a multiclass spec list columns of class probabilities.
    classes, k, normalize
        As in :func:`assay.evaluate` (multiclass; ``k`` is also the ranking cutoffs). Without
        ``classes=``, :meth:`accumulate` records the classes 0..K-1 it read from the list
        column's size in the state's spec.
    query, gain, ties, empty
        As in :func:`assay.evaluate` (ranking). A ranking state holds finished queries:
        shard ranking data by query (:func:`assay.merge` refuses states that share one).
    quantiles, power, lower, upper
        As in :func:`assay.evaluate` (regression): ``quantiles`` become ``pinball@<q>``
        metrics, ``lower``/``upper`` add ``coverage`` and ``interval_width``.
    scores : dict of str to str, optional
        ``{"name": "column", ...}`` (or a list of columns, named by themselves), at least two:
        a comparison spec with the rules of :func:`assay.compare` (it needs ``bootstrap``;
        ``ci_method`` defaults to ``"percentile"``), whose result is an
        :class:`assay.Comparison`. Give exactly one of ``score`` and ``scores``.
    reference : str, optional
        The model the others are compared with (default: the first of ``scores``).
    slices, metrics, threshold, weight, min_slice_size, nan_policy, auc, auc_bins, \
auc_max_runs, bootstrap, ci, ci_method, seed, row_id, calibration_bins, calibration_strategy
        As in :func:`assay.evaluate`. Slices are normalised here: a table from
        :func:`assay.discover_slices` becomes its slices (each reported alone). Data-derived
        bins (``assay.bins("age", 5)``, no edges) are allowed, but a shard cannot fit them on
        its own rows: :meth:`accumulate` refuses them, and :meth:`resolve` fixes their edges
        on the data once. With ``bootstrap`` across shards, give each shard's ``row_offset``
        to :meth:`accumulate`, or a ``row_id`` column.

    Examples
    --------
    >>> import assay, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 1000)
    >>> data = {"y": y, "p": np.clip(0.3 * y + rng.random(1000) * 0.7, 0, 1),
    ...         "country": rng.choice(["BR", "DE", "US"], 1000)}
    >>> spec = assay.Spec(label="y", score="p", slices=["country"],
    ...                   metrics=["accuracy", "roc_auc"])
    >>> first = spec.accumulate({k: v[:600] for k, v in data.items()})
    >>> second = spec.accumulate({k: v[600:] for k, v in data.items()}, row_offset=600)
    >>> rep = assay.merge([first, second]).finalize()
    >>> rep.table["slice"].to_list()
    ['overall', 'country=BR', 'country=DE', 'country=US']
    >>> round(rep.table["roc_auc"][0], 3)           # as assay.evaluate on all 1000 rows
    0.814
    >>> assay.Spec.from_dict(spec.to_dict()) == spec
    True
    """

    __slots__ = ("_job", "_dict", "_json")

    _job: _Job
    _dict: dict[str, Any]
    _json: str

    def __init__(
        self,
        label: str,
        score: str | Sequence[str] | None = None,
        *,
        prediction: str | None = None,
        task: Literal["binary", "regression", "multiclass", "ranking"] = "binary",
        scores: Mapping[str, str] | Sequence[str] | None = None,
        reference: str | None = None,
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
        bootstrap: int | None = None,
        ci: float = 0.95,
        ci_method: Literal["percentile", "basic", "bca", "analytic"] | None = None,
        seed: int = 0,
        row_id: str | None = None,
        calibration_bins: int = 15,
        calibration_strategy: Literal["uniform", "quantile"] = "uniform",
    ) -> None:
        one = "prediction" if task == "regression" else "score"
        if scores is not None and (score is not None or prediction is not None):
            raise InvalidArgumentError(
                f"a Spec takes exactly one of {one}= (one model) and scores= (a comparison of "
                "models), got both"
            )
        compare: tuple[str, list[tuple[str, str]]] | None = None
        parts = _score_parts(task, score) if scores is None else None
        if scores is None:
            if score is None and prediction is None and task in TASKS:
                raise InvalidArgumentError(
                    f"a Spec takes exactly one of {one}= (one model) and scores= (a "
                    "comparison of models), got neither"
                )
            score = _task_column(task, score, prediction)
            if reference is not None:
                raise InvalidArgumentError(
                    "reference= names the reference model of a comparison spec (scores=...); "
                    "a spec of one score has none"
                )
            interval = _interval(bootstrap, ci, ci_method, seed, row_id)
        else:
            if task not in TASKS:
                _task_column(task, None, None)
            models, interval = _comparison_options(
                scores, reference, bootstrap, ci,
                "percentile" if ci_method is None else ci_method, seed, row_id)
            score = models[0][1]
            compare = (models[0][0], models[1:])
        metrics, classes_, normalize_ = _multiclass_options(task, metrics, classes, k, normalize)
        metrics, ranking = _ranking_options(task, metrics, k, query, gain, ties, empty)
        binary = _binary_options(task, threshold, auc, auc_bins, auc_max_runs,
                                 calibration_strategy, calibration_bins)
        names, bounds = _task_options(
            task, metrics, quantiles=quantiles, power=power, lower=lower, upper=upper, **binary)
        job = _job(
            label=label, score=score, slices=slices, metrics=names,
            power=power, bounds=bounds, threshold=threshold,
            weight=weight, min_slice_size=min_slice_size, nan_policy=nan_policy, auc=auc,
            auc_bins=auc_bins, auc_max_runs=auc_max_runs, interval=interval, compare=compare,
            calibration=_calibration(calibration_bins, calibration_strategy), task=task,
            classes=classes_, score_parts=parts, normalize=normalize_, ranking=ranking,
        )
        self._set(job)

    def _set(self, job: _Job) -> None:
        d = _job_dict(job)
        object.__setattr__(self, "_job", job)
        object.__setattr__(self, "_dict", d)
        object.__setattr__(self, "_json", _canonical_json(d))

    @classmethod
    def _from_job(cls, job: _Job) -> Spec:
        spec = object.__new__(cls)
        spec._set(job)
        return spec

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("assay.Spec is immutable (build a new one)")

    # ---- the options ------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """The label column."""
        return self._job.label

    @property
    def score(self) -> str | None:
        """The score column (None for a comparison spec and for a regression spec)."""
        return self._dict["score"]  # type: ignore[no-any-return]

    @property
    def prediction(self) -> str | None:
        """The prediction column of a regression spec of one model (else None)."""
        return self._dict["prediction"]  # type: ignore[no-any-return]

    @property
    def task(self) -> str:
        """The task family: ``"binary"``, ``"regression"`` or ``"multiclass"``."""
        return self._job.task

    @property
    def classes(self) -> tuple[Any, ...] | None:
        """The classes of a multiclass spec (None: 0..K-1, K read from the scores)."""
        return self._job.classes

    @property
    def normalize(self) -> str:
        """How a multiclass spec treats scores that are not probabilities."""
        return self._job.normalize

    @property
    def power(self) -> float:
        """The power of the Tweedie deviance (regression)."""
        return self._job.power

    @property
    def lower(self) -> str | None:
        """The lower bound column of a prediction interval (regression; else None)."""
        return self._dict["lower"]  # type: ignore[no-any-return]

    @property
    def upper(self) -> str | None:
        """The upper bound column of a prediction interval (regression; else None)."""
        return self._dict["upper"]  # type: ignore[no-any-return]

    @property
    def scores(self) -> dict[str, str] | None:
        """The compared models, ``{name: column}``, the reference first (None for a spec of one
        score)."""
        s = self._dict["scores"]
        return None if s is None else {n: c for n, c in s}

    @property
    def reference(self) -> str | None:
        """The reference model of a comparison spec."""
        return self._dict["reference"]  # type: ignore[no-any-return]

    @property
    def is_comparison(self) -> bool:
        """Whether the spec compares models (its result is an :class:`assay.Comparison`)."""
        return self._job.compare is not None

    @property
    def slices(self) -> tuple[SliceLike, ...]:
        """The slice specs, normalised: a column name, :class:`assay.Bins` or a tuple of those
        (a cross). A discovered slice appears as the cross of its features; that only its own
        label is reported shows in :meth:`to_dict` (``"only"``)."""
        return tuple(feats[0] if len(feats) == 1 else feats for feats, _ in self._job.slices)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics, by canonical name, in their order."""
        return self._job.metrics

    @property
    def threshold(self) -> float:
        return self._job.threshold

    @property
    def weight(self) -> str | None:
        return self._job.weight

    @property
    def min_slice_size(self) -> int:
        return self._job.min_slice_size

    @property
    def nan_policy(self) -> str:
        return self._job.nan_policy

    @property
    def auc(self) -> str:
        return self._job.auc[0]

    @property
    def auc_bins(self) -> int:
        return self._dict["auc_bins"]  # type: ignore[no-any-return]

    @property
    def auc_max_runs(self) -> int | None:
        """The run budget of a sketch spec (None unless ``auc="sketch"``)."""
        return self._dict["auc_max_runs"]  # type: ignore[no-any-return]

    @property
    def bootstrap(self) -> int | None:
        return self._dict["bootstrap"]  # type: ignore[no-any-return]

    @property
    def ci(self) -> float:
        return self._dict["ci"]  # type: ignore[no-any-return]

    @property
    def ci_method(self) -> str | None:
        return self._dict["ci_method"]  # type: ignore[no-any-return]

    @property
    def seed(self) -> int:
        return self._dict["seed"]  # type: ignore[no-any-return]

    @property
    def row_id(self) -> str | None:
        return self._dict["row_id"]  # type: ignore[no-any-return]

    @property
    def calibration_bins(self) -> int:
        return self._dict["calibration_bins"]  # type: ignore[no-any-return]

    @property
    def calibration_strategy(self) -> str:
        return self._dict["calibration_strategy"]  # type: ignore[no-any-return]

    # ---- running it -------------------------------------------------------------------------

    def evaluate(self, data: Any, n_threads: int | None = None, *,
                 max_slices: int | None = MAX_SLICES,
                 progress: bool | None = None,
                 fingerprint: Literal["schema", "content"] = "schema") -> Report | Comparison:
        """The result on ``data`` in one pass: exactly ``assay.evaluate`` (or
        ``assay.compare``) with this spec's options. Data-derived bins are fitted on ``data``;
        ``max_slices``, ``progress`` and ``fingerprint`` as in :func:`assay.evaluate`.

        >>> import assay
        >>> spec = assay.Spec(label="y", score="p", metrics=["accuracy"])
        >>> spec.evaluate({"y": [0, 1, 1], "p": [0.2, 0.7, 0.4]}).table["accuracy"][0]
        0.6666666666666666
        """
        result = _run(data, self._job, n_threads, max_slices, progress, fingerprint)
        return _comparison(result, self._job) if self.is_comparison else \
            _report(result, self._job)

    def accumulate(self, data: Any, *, row_offset: int = 0, n_threads: int | None = None,
                   max_slices: int | None = MAX_SLICES,
                   progress: bool | None = None,
                   fingerprint: Literal["schema", "content"] = "schema") -> PartialState:
        """Reads one shard of the rows into a mergeable :class:`assay.PartialState`.

        Parameters
        ----------
        data
            Any input :func:`assay.evaluate` accepts (Arrow, polars, pandas, duckdb, numpy,
            files, streams). An input with no rows gives an empty state, which merges as the
            identity.
        row_offset : int
            The global position of the shard's first row, in [0, 2**64 - 1]. With
            ``bootstrap`` (and no ``row_id``) a row's replicate weights follow its global
            position ``row_offset + i``, so every shard needs its true offset: states whose
            row ranges overlap refuse to merge (:class:`assay.StateMismatchError`). Without
            resampling, or with ``row_id``, it only labels the rows the state covers.
        n_threads : int, optional
            Worker threads, as in :func:`assay.evaluate`.
        max_slices : int or None
            The most slices one slice spec may make, as in :func:`assay.evaluate` (each
            shard's own count).
        progress : bool, optional
            Show a progress line, as in :func:`assay.evaluate`.
        fingerprint : {"schema", "content"}
            ``"content"``: the pass hashes the values it reads, and the state keeps the hash
            (it depends on ``row_offset``, so the shards' hashes add up to the whole input's;
            a merge with a state without one has none). See :func:`assay.evaluate`.

        Returns
        -------
        PartialState

        Raises
        ------
        InvalidArgumentError
            The spec has data-derived bins (``assay.bins("age", 5)`` without edges): a shard
            cannot fit them on its own rows (every shard would bin differently). Fix them
            once with ``spec = spec.resolve(data)``, or give ``edges=``.

        Examples
        --------
        >>> import assay
        >>> spec = assay.Spec(label="y", score="p", metrics=["accuracy"])
        >>> state = spec.accumulate({"y": [0, 1], "p": [0.2, 0.7]}, row_offset=10)
        >>> state.rows, state.row_ranges
        (2, [(10, 12)])
        """
        offset = int_arg(row_offset, "row_offset", "accumulate", 0, U64_MAX)
        pending = self._job.unresolved()
        if pending:
            b = pending[0]
            raise InvalidArgumentError(
                f"accumulate: the bins of column {b.column!r} (assay.bins({b.column!r}, "
                f"{b.n}{'' if b.strategy == 'quantile' else ', strategy=' + repr(b.strategy)}"
                ")) are fitted to the data, and a shard cannot fit them on its own rows: fix "
                "their edges once with spec = spec.resolve(data) (on all the rows, or a "
                "sample), or give assay.bins(..., edges=[...])",
                b.column,
            )
        source, native = _prepare(data, self._job, n_threads, max_slices, progress,
                                  fingerprint)
        spec = self
        if self._job.task == "multiclass" and self._job.classes is None:
            # The classes read off the list column's size are recorded in the state's spec,
            # so that it finalizes (and merges) without the data.
            spec = Spec._from_job(replace(self._job, classes=tuple(native[19][1])))
        with source.guard:
            state = _native.accumulate(source.open(self._job.columns()), native, spec._json,
                                       offset, source.rows)
        return PartialState._wrap(state, spec)

    def resolve(self, data: Any) -> Spec:
        """A spec whose data-derived bins have fixed edges, fitted on ``data`` (as
        :func:`assay.evaluate` fits them), and (multiclass without ``classes=``) whose classes
        are 0..K-1, K read from the list column's size. A spec with neither is returned as it
        is.

        >>> import assay
        >>> spec = assay.Spec(label="y", score="p", slices=[assay.bins("age", 2)])
        >>> spec.resolve({"age": [20, 30, 40, 50, 60]}).slices
        (Bins(column='age', n=None, strategy='quantile', edges=(20.0, 40.0, 60.0)),)
        """
        job = self._job
        classes = job.task == "multiclass" and job.classes is None and job.score_parts is None
        if not job.unresolved() and not classes:
            return self
        source = to_source(data)
        spec = self._with_edges(lambda f: f.resolve(source)) if job.unresolved() else self
        if classes:
            k = _list_size(source, job.score)
            spec = Spec._from_job(replace(spec._job, classes=tuple(range(k))))
        return spec

    def _with_edges(self, fit: Callable[[Bins], Sequence[float]]) -> Spec:
        """This spec with every data-derived bin's edges fixed to ``fit(bins)`` (called once
        per distinct column, n and strategy, in slice order)."""
        fitted: dict[tuple[str, int | None, str], Bins] = {}
        entries: list[SliceEntry] = []
        for feats, only in self._job.slices:
            out: list[Feature] = []
            for f in feats:
                if isinstance(f, Bins) and f.edges is None:
                    key = (f.column, f.n, f.strategy)
                    if key not in fitted:
                        edges = tuple(float(e) for e in fit(f))
                        fitted[key] = Bins(f.column, None, "quantile", edges)
                    f = fitted[key]
                out.append(f)
            entries.append((tuple(out), only))
        return Spec._from_job(replace(self._job, slices=tuple(entries)))

    # ---- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (str, int, float, bool, None, lists and dicts only),
        with a ``"format"`` version. Options the job does not use are at their defaults.

        >>> import assay, json
        >>> d = assay.Spec(label="y", score="p", slices=["country"]).to_dict()
        >>> d["format"], d["slices"], d["auc"]
        (1, ['country'], 'exact')
        >>> assay.Spec.from_dict(json.loads(json.dumps(d))).to_dict() == d
        True
        """
        return copy.deepcopy(self._dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Spec:
        """The spec of a :meth:`to_dict` dict, validated as the constructor validates. Unknown
        keys, and a ``"format"`` newer than this assay's, raise
        :class:`assay.InvalidArgumentError`; a missing option takes its default.

        >>> import assay
        >>> assay.Spec.from_dict({"format": 1, "label": "y", "score": "p", "bootstrap": 100})
        assay.Spec(label='y', score='p', bootstrap=100, ci_method='percentile')
        """
        if not isinstance(d, Mapping):
            raise _bad(f"expected a dict (from Spec.to_dict()), got {show(d)}")
        fmt = d.get("format")
        if fmt is None:
            raise _bad("the dict has no 'format' key: not a dict from Spec.to_dict()")
        if is_bool(fmt) or not isinstance(fmt, int) or fmt < 1:
            raise _bad(f"'format' must be a positive integer, got {show(fmt)}")
        if fmt > SPEC_FORMAT:
            raise _bad(
                f"this spec has format {fmt}, written by a newer assay; this assay reads "
                f"format {SPEC_FORMAT}: upgrade assay"
            )
        unknown = [k for k in d if k not in _KEYS]
        if unknown:
            raise _bad(f"unknown key(s) {', '.join(show(k) for k in unknown)}; the keys are "
                       f"{', '.join(_KEYS)}")
        if "label" not in d:
            raise _bad("the dict has no 'label'")
        kwargs = {k: v for k, v in d.items() if k != "format"}
        if "slices" in kwargs:
            slices = kwargs["slices"]
            if not isinstance(slices, list):
                raise _bad(f"'slices' must be a list, got {show(slices)}")
            entries = tuple(_entry_from_json(x) for x in slices)
            del kwargs["slices"]
        else:
            entries = ()
        if kwargs.get("scores") is not None:
            kwargs["scores"] = _scores_from_json(kwargs["scores"])
        spec = cls(**kwargs)
        return cls._from_job(replace(spec._job, slices=entries))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spec):
            return NotImplemented
        return self._json == other._json

    def __hash__(self) -> int:
        return hash(self._json)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_spec_from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        d = self._dict
        if d["scores"] is not None:
            parts = [f"label={d['label']!r}", f"scores={dict(d['scores'])!r}"]
        elif d["prediction"] is not None:
            parts = [f"label={d['label']!r}", f"prediction={d['prediction']!r}"]
        else:
            parts = [f"label={d['label']!r}", f"score={d['score']!r}"]
        if d["task"] != "binary":
            parts.append(f"task={d['task']!r}")
        if self._job.slices:
            parts.append("slices=[" + ", ".join(_entry_repr(e) for e in self._job.slices) + "]")
        defaults = _defaults()
        for k in _KEYS[6:]:
            if k in ("task", "prediction"):
                continue
            if k == "metrics" and d[k] == list(_default_metrics(d["task"])):
                continue
            if d[k] != defaults[k]:
                parts.append(f"{k}={d[k]!r}")
        return f"assay.Spec({', '.join(parts)})"


def _feature_repr(f: Feature) -> str:
    if isinstance(f, str):
        return repr(f)
    if f.edges is not None:
        return f"assay.bins({f.column!r}, edges={list(f.edges)!r})"
    extra = "" if f.strategy == "quantile" else f", strategy={f.strategy!r}"
    return f"assay.bins({f.column!r}, {f.n}{extra})"


def _entry_repr(entry: SliceEntry) -> str:
    feats, only = entry
    inner = ", ".join(_feature_repr(f) for f in feats)
    if only is not None:
        return f"discovered({only!r}: {inner})"
    return inner if len(feats) == 1 else f"({inner})"


_DEFAULTS: dict[str, Any] | None = None


def _defaults() -> dict[str, Any]:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = Spec(label="y", score="p")._dict
    return _DEFAULTS


def _spec_from_dict(d: Mapping[str, Any]) -> Spec:
    """Unpickles a :class:`Spec`."""
    return Spec.from_dict(d)


def _spec_diff(a: str, b: str) -> str:
    """What differs between two specs' canonical JSON, for a message."""
    try:
        da, db = json.loads(a), json.loads(b)
    except ValueError:
        return "their encoding"
    if not isinstance(da, dict) or not isinstance(db, dict):
        return "their encoding"
    keys = [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
    if not keys:
        return "their encoding"
    return ", ".join(f"{k} ({show(da.get(k))} vs {show(db.get(k))})" for k in keys[:4]) + (
        f" and {len(keys) - 4} more" if len(keys) > 4 else "")


# --------------------------------------------------------------------------------------------
# PartialState
# --------------------------------------------------------------------------------------------


def _spec_of(state: Any) -> Spec:
    """The spec a native state was made with."""
    try:
        return Spec.from_dict(json.loads(state.spec_json))
    except (ValueError, RecursionError) as e:  # InvalidArgumentError is a ValueError
        raise StateFormatError(f"the state's spec cannot be read by this assay: {e}") from None


class PartialState:
    """The mergeable state of an evaluation over some of the rows: build it with
    :meth:`Spec.accumulate`, combine with :meth:`merge` / :func:`assay.merge`, ship it with
    :meth:`to_bytes` / :meth:`from_bytes` (or pickle), and turn it into the report with
    :meth:`finalize`.

    A state holds, per slice (keyed by its values or bin, never by a process-local id), the
    engine's additive counts (with ``B`` replicate slots when bootstrapping), the kept rows of
    exact rank metrics or the sorted runs of sketched ones, the calibration states, and the
    row ranges it covers; merging adds them up in a canonical order (by first row, then
    content), so the result does not depend on the order of the merge calls. It holds no rows
    but the (score, label, weight, slice ids) that exact ROC-AUC / average precision and
    quantile calibration bins need (see ``docs/partial.md``).

    Attributes
    ----------
    spec : Spec
        The spec the state was made with.
    rows : int
        Rows read (dropped rows included).
    dropped : int
        Rows dropped by ``nan_policy="drop"``.
    row_ranges : list of (int, int)
        The ``[start, end)`` global row positions covered (from ``row_offset``).
    nbytes : int
        The size of :meth:`to_bytes`.

    Examples
    --------
    >>> import assay, pickle
    >>> spec = assay.Spec(label="y", score="p", metrics=["accuracy", "roc_auc"])
    >>> a = spec.accumulate({"y": [0, 1, 1], "p": [0.1, 0.8, 0.4]})
    >>> b = spec.accumulate({"y": [0, 1], "p": [0.6, 0.9]}, row_offset=3)
    >>> both = a.merge(b)
    >>> both.rows, both.row_ranges
    (5, [(0, 5)])
    >>> again = assay.PartialState.from_bytes(both.to_bytes())
    >>> again.finalize().table.select("n", "accuracy", "roc_auc").row(0)
    (5, 0.6, 0.8333333333333334)
    >>> pickle.loads(pickle.dumps(both)).spec == spec
    True
    """

    __slots__ = ("_state", "_spec", "__weakref__")

    _state: Any
    _spec: Spec | None

    def __init__(self) -> None:
        raise TypeError(
            "a PartialState comes from Spec.accumulate(data), assay.merge(states) or "
            "PartialState.from_bytes(blob)"
        )

    @classmethod
    def _wrap(cls, state: Any, spec: Spec | None) -> PartialState:
        obj = object.__new__(cls)
        obj._state = state
        obj._spec = spec
        return obj

    @property
    def spec(self) -> Spec:
        """The spec the state was made with."""
        if self._spec is None:
            self._spec = _spec_of(self._state)
        return self._spec

    @property
    def rows(self) -> int:
        """Rows read (dropped rows included)."""
        return int(self._state.rows)

    @property
    def dropped(self) -> int:
        """Rows dropped by ``nan_policy="drop"``."""
        return int(self._state.dropped)

    @property
    def row_ranges(self) -> list[tuple[int, int]]:
        """The ``[start, end)`` global row positions the state covers."""
        return [(int(a), int(b)) for a, b in self._state.row_ranges]

    @property
    def nbytes(self) -> int:
        """The size in bytes of :meth:`to_bytes`."""
        return int(self._state.nbytes)

    @property
    def format_version(self) -> int:
        """The byte format version of :meth:`to_bytes`."""
        return int(self._state.format_version)

    def merge(self, other: PartialState | Iterable[PartialState]) -> PartialState:
        """A new state holding this state and ``other`` (a state or a list of states); neither
        input changes. The same as ``assay.merge([self, *others])``."""
        if isinstance(other, PartialState):
            return merge([self, other])
        if isinstance(other, (str, bytes, bytearray, Mapping)) or not isinstance(other, Iterable):
            raise InvalidArgumentError(
                f"merge takes an assay.PartialState or a list of them, got {show(other)}"
            )
        return merge([self, *other])

    def to_bytes(self) -> bytes:
        """The state as compact bytes: a versioned header, the spec, the row ranges and the
        per-slice states, with a checksum. :meth:`from_bytes` reads it back in any process
        with this or a newer assay."""
        return bytes(self._state.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> PartialState:
        """The state of :meth:`to_bytes`'s bytes.

        A ``bytes`` object is read in place: the kept rows of exact rank metrics (most of a
        large state) stay in its memory, which the state keeps alive, rather than being
        copied; a ``bytearray`` or ``memoryview`` is copied first.

        Raises
        ------
        StateFormatError
            The bytes are not a valid state: truncated, corrupted (checksum), not an assay
            state, or written by a newer assay.
        InvalidArgumentError
            ``data`` is not bytes (read a file with ``open(path, "rb").read()``).
        """
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidArgumentError(
                f"PartialState.from_bytes takes bytes (e.g. open(path, 'rb').read()), got "
                f"{type(data).__name__}"
            )
        state = _native.state_from_bytes(data)
        return cls._wrap(state, _spec_of(state))

    def finalize(self, n_threads: int | None = None) -> Report | Comparison:
        """The result of the rows the state holds: the :class:`assay.Report` (or, for a
        comparison spec, the :class:`assay.Comparison`) that :func:`assay.evaluate` (or
        :func:`assay.compare`) gives on all those rows. Intervals are computed here, from the
        merged state. The state does not change; it can be finalized again or merged further.

        >>> import assay
        >>> spec = assay.Spec(label="y", scores={"old": "p", "new": "q"}, bootstrap=50,
        ...                   metrics=["accuracy"])
        >>> data = {"y": [0, 1, 1, 0] * 10, "p": [0.2, 0.6, 0.4, 0.7] * 10,
        ...         "q": [0.2, 0.6, 0.7, 0.3] * 10}
        >>> cmp = spec.accumulate(data).finalize()          # a comparison spec: a Comparison
        >>> cmp.table.select("model", "old", "new", "delta").row(0)
        ('new', 0.5, 1.0, 0.5)
        """
        job = self.spec._job
        if job.unresolved():  # only a hand-made state can get here: accumulate refuses them
            raise StateMismatchError(
                "the state's spec has data-derived bins (no edges), which no state can have "
                "been accumulated with"
            )
        native = job.native(None, _threads(n_threads))
        result = _native.finalize(self._state, native)
        if job.compare is not None:
            return _comparison(result, job, kind="finalize")
        return _report(result, job, kind="finalize")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_state_from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        ranges = self.row_ranges
        shown = " ".join(f"[{a}, {b})" for a, b in ranges[:3]) + (
            f" +{len(ranges) - 3} more" if len(ranges) > 3 else "")
        spec = self.spec
        what = (f"comparison of {len(spec._job.compare[1]) + 1} models, "
                if spec._job.compare is not None else "")
        return (f"assay.PartialState({what}{self.rows:,} rows, {len(spec._job.slices)} slice "
                f"specs, {self.nbytes:,} bytes, rows {shown or '-'})")


def _state_from_bytes(data: bytes) -> PartialState:
    """Unpickles a :class:`PartialState`."""
    return PartialState.from_bytes(data)


def merge(states: Iterable[PartialState]) -> PartialState:
    """One state holding all of ``states`` (a non-empty list, or any iterable, of
    :class:`assay.PartialState`). No input changes, and the result does not depend on the
    order: states merge in a canonical order (by their first row, then their content), so any
    merge tree of the same shards finalizes to the same bits.

    Raises
    ------
    StateMismatchError
        The states were made with different specs, or (bootstrap without ``row_id``) their
        row ranges overlap: two shards accumulated at the same ``row_offset`` would share
        their replicate weights.
    InvalidArgumentError
        ``states`` is empty or holds something that is not a state.

    Examples
    --------
    >>> import assay
    >>> spec = assay.Spec(label="y", score="p", metrics=["accuracy"])
    >>> parts = [spec.accumulate({"y": [i % 2], "p": [0.7]}, row_offset=i) for i in range(4)]
    >>> merged = assay.merge(parts)
    >>> merged.rows, merged.finalize().table["accuracy"][0]
    (4, 0.5)
    """
    if isinstance(states, PartialState):
        raise InvalidArgumentError(
            "assay.merge takes a list of states: assay.merge([a, b]) (or a.merge(b))"
        )
    if isinstance(states, (str, bytes, bytearray, Mapping)) or not isinstance(states, Iterable):
        raise InvalidArgumentError(
            f"assay.merge takes a list of assay.PartialState, got {show(states)}"
        )
    items = list(states)
    if not items:
        raise InvalidArgumentError("assay.merge needs at least one state, got none")
    for i, s in enumerate(items):
        if not isinstance(s, PartialState):
            raise InvalidArgumentError(
                f"assay.merge: item {i} is {show(s)}, not an assay.PartialState"
            )
    first = items[0]._state.spec_json
    for i, s in enumerate(items[1:], 1):
        other = s._state.spec_json
        if other != first:
            raise StateMismatchError(
                f"cannot merge states made with different specs: state 0 and state {i} differ "
                f"in {_spec_diff(first, other)}"
            )
    merged = _native.merge_states([s._state for s in items])
    return PartialState._wrap(merged, items[0]._spec)
