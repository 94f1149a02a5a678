"""Helpers shared by the in-memory methods (baselines, checks, selective prediction, Simpson,
ensembles): loading a table, validating label/score/weight columns, computing slices with the
same labels and order as :func:`assay.evaluate`, and metrics from confusion counts.

Everything here is vectorized (numpy / polars); the only loops run over slices, features or
metrics, never over rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from . import _native
from ._args import U64_MAX as U64_MAX
from ._args import bool_arg as bool_arg
from ._args import column_arg as column_arg
from ._args import float_arg as float_arg
from ._args import int_arg as int_arg
from ._args import show as show
from ._evaluate import Bins, _is_found, _slice_specs
from ._input import to_source
from .errors import ColumnNotFoundError, InvalidArgumentError, InvalidInputError, SchemaError

# --------------------------------------------------------------------------------------------
# loading and columns
# --------------------------------------------------------------------------------------------


def load(data: Any, what: str) -> pl.DataFrame:
    """Any input :func:`assay.evaluate` accepts, read into memory as a polars DataFrame."""
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        try:
            return data.collect()
        except Exception as e:
            raise InvalidInputError(
                f"{what}: the polars LazyFrame input failed to collect: {type(e).__name__}: {e}"
            ) from e
    try:
        source = to_source(data)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{what}: {e}") from e
    with source.guard:  # a failure of a stream surfaces as the source's own typed error
        stream = source.open()
        if isinstance(stream, pa.RecordBatchReader):
            table = stream.read_all()
        elif isinstance(stream, pa.Table):
            table = stream
        else:
            table = pa.table(stream)
    dup = sorted(n for n, k in Counter(table.column_names).items() if k > 1)
    if dup:
        raise SchemaError(
            f"{what}: column {dup[0]!r} appears more than once in the input; rename or drop "
            "the duplicates (this method reads the whole table, whose names must be unique)",
            dup[0],
        )
    out = pl.from_arrow(table)
    assert isinstance(out, pl.DataFrame)
    return out


def column(df: pl.DataFrame, name: Any, role: str, what: str) -> pl.Series:
    """The column ``name`` of ``df``, or a typed error naming the role it was meant to play."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{what}: {role} must be a column name (str), got {name!r}")
    if name not in df.columns:
        raise ColumnNotFoundError(
            f"{what}: {role} column {name!r} not found; available columns: "
            + ", ".join(repr(c) for c in df.columns),
            name,
        )
    return df.get_column(name)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _null_row(s: pl.Series) -> int:
    return _first_bad(s.is_null().to_numpy())


def labels(df: pl.DataFrame, name: Any, what: str, role: str = "label") -> np.ndarray:
    """0/1 labels (bool, integer 0/1 or float 0.0/1.0) as a float64 array."""
    s = column(df, name, role, what)
    if s.dtype == pl.Boolean:
        if s.null_count():
            raise InvalidInputError(
                f"{what}: {role} column {name!r} has a null at row {_null_row(s)}", name
            )
        return s.cast(pl.Float64).to_numpy()
    if not s.dtype.is_numeric():
        raise SchemaError(
            f"{what}: {role} column {name!r} must hold 0/1 labels (bool or numeric), got {s.dtype}",
            name,
        )
    if s.null_count():
        raise InvalidInputError(
            f"{what}: {role} column {name!r} has a null at row {_null_row(s)}", name
        )
    y = s.cast(pl.Float64).to_numpy()
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        i = _first_bad(bad)
        raise InvalidInputError(
            f"{what}: {role} column {name!r} must be 0/1, got {y[i]!r} at row {i}", name
        )
    return y


def scores(
    df: pl.DataFrame, name: Any, what: str, role: str = "score", probability: bool = False
) -> np.ndarray:
    """Finite numeric scores as a float64 array (in [0, 1] when ``probability``)."""
    s = column(df, name, role, what)
    if s.dtype == pl.Boolean:
        s = s.cast(pl.Float64)
    if not s.dtype.is_numeric():
        raise SchemaError(f"{what}: {role} column {name!r} must be numeric, got {s.dtype}", name)
    if s.null_count():
        raise InvalidInputError(
            f"{what}: {role} column {name!r} has a null at row {_null_row(s)}", name
        )
    x = s.cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(x)
    if bad.any():
        i = _first_bad(bad)
        raise InvalidInputError(
            f"{what}: {role} column {name!r} has the non-finite value {x[i]!r} at row {i}", name
        )
    if probability:
        out = (x < 0.0) | (x > 1.0)
        if out.any():
            i = _first_bad(out)
            raise InvalidInputError(
                f"{what}: {role} column {name!r} must hold probabilities in [0, 1], got "
                f"{x[i]!r} at row {i}",
                name,
            )
    return x


def weights(df: pl.DataFrame, name: Any, what: str) -> np.ndarray | None:
    """Positive finite weights as a float64 array, or None when no weight column is given."""
    if name is None:
        return None
    w = scores(df, name, what, role="weight")
    bad = ~(w > 0.0)
    if bad.any():
        i = _first_bad(bad)
        raise InvalidInputError(
            f"{what}: weight column {name!r} must be positive, got {w[i]!r} at row {i}", name
        )
    return w


def not_empty(n: int, what: str) -> None:
    if n == 0:
        from .errors import EmptyInputError

        raise EmptyInputError(f"{what}: no rows")


# --------------------------------------------------------------------------------------------
# argument checks (the shared ones, int_arg / float_arg / ..., live in _args, which _evaluate
# imports too, and are re-exported above)
# --------------------------------------------------------------------------------------------


def probability_arg(x: Any, name: str, what: str, *, open_low: bool = False,
                    open_high: bool = False) -> float:
    """A number in [0, 1] (or the half-open variants)."""
    return float_arg(x, name, what, 0, 1, lo_open=open_low, hi_open=open_high)


def positive_int(x: Any, name: str, what: str, minimum: int = 1,
                 maximum: int | None = None) -> int:
    """An integer >= ``minimum`` (and <= ``maximum``); no bools, no floats."""
    return int_arg(x, name, what, minimum, maximum)


def real_arg(x: Any, name: str, what: str, minimum: float | None = None) -> float:
    """A finite number (>= ``minimum``)."""
    return float_arg(x, name, what, minimum)


def seed_arg(x: Any, what: str) -> int:
    """A seed in [0, 2**64 - 1]: never reduced modulo 2**64."""
    return int_arg(x, "seed", what, 0, U64_MAX)


# --------------------------------------------------------------------------------------------
# slices, labelled and ordered exactly as assay.evaluate does
# --------------------------------------------------------------------------------------------


@dataclass
class SliceSet:
    """Every slice of a job: ``labels[j]`` and the row indices ``rows[j]`` of slice ``j``
    (``overall`` first, then each spec's slices in report order)."""

    labels: list[str]
    rows: list[np.ndarray]


def slice_set(df: pl.DataFrame, slices: Any, what: str) -> SliceSet:
    """The slices of ``df`` for the slice specs ``slices``: the engine's own slicing, so labels
    and order are those of :func:`assay.evaluate` (``overall`` first)."""
    if isinstance(slices, (str, Bins)) or _is_found(slices):
        slices = [slices]
    if not isinstance(slices, Sequence):
        raise InvalidArgumentError(f"{what}: slices must be a list of slice specs, got {slices!r}")
    n = df.height
    labels = ["overall"]
    rows = [np.arange(n, dtype=np.int64)]
    if not slices or n == 0:
        return SliceSet(labels, rows)
    source = to_source(df)
    specs, only = _slice_specs(slices, source)
    source.slice_as_text(f for s in specs for f, e in s if e is None)
    source.check_binnable(f for s in specs for f, e in s if e is not None)
    source.check_columns(f for s in specs for f, _ in s)
    with source.guard:
        sliced = _native.slice_rows(source.open(f for s in specs for f, _ in s), specs)
    for (batch, present), wanted in zip(sliced, only, strict=True):
        ids = batch.column(0).to_numpy()
        # Row indices grouped by slice id; the stable sort keeps each group in row order.
        order = np.argsort(ids, kind="stable")
        starts = np.r_[0, np.cumsum(np.bincount(ids, minlength=len(present)))]
        for sid, label in present:
            if wanted is not None and label != wanted:
                continue  # a discovered slice: only that one
            labels.append(label)
            rows.append(order[starts[sid]:starts[sid + 1]])
    return SliceSet(labels, rows)


# --------------------------------------------------------------------------------------------
# metrics from confusion counts (the engine's definitions and null rules)
# --------------------------------------------------------------------------------------------

# The engine's metric registry: (name, family, kind, higher_is_better, default, definition).
REGISTRY = tuple(_native.metric_registry())
CONFUSION_METRICS = tuple(r[0] for r in REGISTRY
                          if r[1] == "binary" and r[2] == "confusion" and r[0] != "f<beta>")
# The engine's own directions.
LOWER_IS_BETTER = frozenset(r[0] for r in REGISTRY if r[3] is False)


def metric_names(metrics: Any, what: str, allowed: Sequence[str] | None = None,
                 default: Sequence[str] = ()) -> list[str]:
    """Canonical metric names (``"f2.0"`` -> ``"f2"``), checked against ``allowed`` (F-beta
    names are always allowed when ``allowed`` contains ``"f1"``)."""
    if metrics is None:
        metrics = list(default)
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    for m in metrics:
        if not isinstance(m, str):
            raise InvalidArgumentError(f"{what}: metric names are strings, got {m!r}")
        try:
            name = _native.metric_name(m)
        except Exception as e:  # the engine's InvalidArgumentError, re-labelled
            raise InvalidArgumentError(f"{what}: {e}") from None
        if allowed is not None and name not in allowed and not (
            "f1" in allowed and is_fbeta(name)
        ):
            raise InvalidArgumentError(
                f"{what}: metric {name!r} is not supported here; use one of "
                + ", ".join(allowed) + (", f<beta>" if "f1" in allowed else "")
            )
        if name not in out:
            out.append(name)
    if not out:
        raise InvalidArgumentError(f"{what}: give at least one metric")
    return out


def is_fbeta(name: str) -> bool:
    return name.startswith("f") and name not in ("fpr", "fnr") and _is_number(name[1:])


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def ratio(num: Any, den: Any) -> np.ndarray:
    """num / den, NaN (= undefined) where den is not positive."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    num, den = np.broadcast_arrays(num, den)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def from_counts(name: str, tp: Any, fp: Any, tn: Any, fn: Any) -> np.ndarray:
    """A confusion metric from (weighted) counts, by the engine's own definition; NaN where
    the engine reports null."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (tp, fp, tn, fn)))
    flat = [a.ravel().tolist() for a in arrays]
    if name not in CONFUSION_METRICS and not is_fbeta(name):
        raise InvalidArgumentError(f"metric {name!r} is not a confusion-count metric")
    out = _native.metric_from_counts(name, *flat)
    # None (undefined) becomes NaN.
    return np.array(out, dtype=np.float64).reshape(arrays[0].shape)


def nullable(values: Any, name: str) -> pl.Series:
    """A Float64 polars Series with NaN turned into null (undefined values are null)."""
    return pl.Series(name, np.asarray(values, dtype=np.float64)).fill_nan(None)


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a repr (``null`` for None/NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "null"
    return f"{x:.{digits}g}"
