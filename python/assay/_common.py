"""Helpers shared by the in-memory methods (baselines, checks, selective prediction, Simpson,
ensembles): loading a table, validating label/score/weight columns, computing slices with the
same labels and order as :func:`assay.evaluate`, and metrics from confusion counts.

Everything here is vectorized (numpy / polars); the only loops run over slices, features or
metrics, never over rows.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from . import _native
from ._evaluate import Bins
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
        return data.collect()
    try:
        source = to_source(data)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{what}: {e}") from None
    stream = source.open()
    if isinstance(stream, pa.RecordBatchReader):
        table = stream.read_all()
    elif isinstance(stream, pa.Table):
        table = stream
    else:
        table = pa.table(stream)
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
# argument checks
# --------------------------------------------------------------------------------------------


def probability_arg(x: Any, name: str, what: str, *, open_low: bool = False,
                    open_high: bool = False) -> float:
    """A number in [0, 1] (or the half-open variants)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise InvalidArgumentError(f"{what}: {name} must be a number in [0, 1], got {x!r}")
    v = float(x)
    lo_ok = v > 0.0 if open_low else v >= 0.0
    hi_ok = v < 1.0 if open_high else v <= 1.0
    if not (lo_ok and hi_ok):
        lo = "(0" if open_low else "[0"
        hi = "1)" if open_high else "1]"
        raise InvalidArgumentError(f"{what}: {name} must be in {lo}, {hi}, got {x!r}")
    return v


def positive_int(x: Any, name: str, what: str, minimum: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < minimum:
        raise InvalidArgumentError(
            f"{what}: {name} must be an integer >= {minimum}, got {x!r}"
        )
    return int(x)


def real_arg(x: Any, name: str, what: str, minimum: float | None = None) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise InvalidArgumentError(f"{what}: {name} must be a finite number, got {x!r}")
    if minimum is not None and float(x) < minimum:
        raise InvalidArgumentError(f"{what}: {name} must be >= {minimum}, got {x!r}")
    return float(x)


def seed_arg(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < 0:
        raise InvalidArgumentError(f"{what}: seed must be a non-negative integer, got {x!r}")
    return int(x)


# --------------------------------------------------------------------------------------------
# slices, labelled and ordered exactly as assay.evaluate does
# --------------------------------------------------------------------------------------------


@dataclass
class SliceSet:
    """Every slice of a job: ``labels[j]`` and the row indices ``rows[j]`` of slice ``j``
    (``overall`` first, then each spec's slices in report order)."""

    labels: list[str]
    rows: list[np.ndarray]


def _format_edge(x: float, digits: int) -> str:
    """Mirror of the engine's bin-edge formatting (up to ``digits`` significant digits)."""
    if x == math.trunc(x) and abs(x) < 1e15:
        return str(int(x))
    magnitude = math.floor(math.log10(abs(x)))
    decimals = min(max(digits - 1 - magnitude, 0), 17)
    s = f"{x:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _bin_labels(edges: Sequence[float]) -> list[str]:
    digits = 6
    while True:
        f = [_format_edge(e, digits) for e in edges]
        if all(a != b for a, b in zip(f, f[1:], strict=False)) or digits >= 17:
            m = len(edges)
            labels = [
                f"[{f[j]}, {f[j + 1]}{']' if j == m - 2 else ')'}" for j in range(m - 1)
            ]
            labels.append(f"(-inf, {f[0]})")
            labels.append(f"({f[m - 1]}, inf)")
            return labels
        digits += 3


def _feature_codes(df: pl.DataFrame, item: Any, source: Any, what: str) -> tuple[
    str, np.ndarray, list[str | None]
]:
    """(column, per-row code in report order, display value of each code; None = null)."""
    if isinstance(item, Bins):
        name = item.column
        s = column(df, name, "slice", what)
        if not (s.dtype.is_numeric()):
            raise SchemaError(f"{what}: bins need a numeric column, got {s.dtype} for {name!r}",
                              name)
        edges = np.asarray(item.resolve(source), dtype=np.float64)
        x = s.cast(pl.Float64).to_numpy()
        m = len(edges)
        nan = np.isnan(x)
        k = np.searchsorted(edges, np.where(nan, 0.0, x), side="right")
        bin_id = np.where(k == 0, m - 1, np.where(k == m, np.where(x == edges[-1], m - 2, m),
                                                   k - 1))
        bin_id = np.where(nan, m + 1, bin_id)
        # report order: below range, the bins in edge order, above range, null
        rank = np.where(bin_id == m - 1, 0, np.where(bin_id < m - 1, bin_id + 1, bin_id))
        labels = _bin_labels(edges.tolist())
        display: list[str | None] = [labels[m - 1], *labels[: m - 1], labels[m], None]
        return name, rank.astype(np.int64), display
    if not isinstance(item, str):
        raise InvalidArgumentError(
            f"{what}: a slice is a column name, assay.bins(...), or a tuple of those; "
            f"got {item!r}"
        )
    s = column(df, item, "slice", what)
    dt = s.dtype
    if dt == pl.Boolean:
        v = s.cast(pl.Int64)
        code = v.fill_null(2).to_numpy()
        present = np.bincount(code, minlength=3) > 0
        remap = np.cumsum(present) - 1
        disp: list[str | None] = [d for d, p in zip(["false", "true", None], present,
                                                    strict=True) if p]
        return item, remap[code], disp
    if dt.is_integer():
        uniq_s = s.drop_nulls().unique().sort()
        code = s.rank("dense").cast(pl.Int64).fill_null(0).to_numpy() - 1
        disp = [str(v) for v in uniq_s.to_list()]
        if s.null_count():
            code = np.where(s.is_null().to_numpy(), len(disp), code)
            disp.append(None)
        return item, code, disp
    if dt == pl.String or isinstance(dt, (pl.Categorical, pl.Enum)):
        st = s.cast(pl.String)
        uniq_s = st.drop_nulls().unique().sort()
        code = st.rank("dense").cast(pl.Int64).fill_null(0).to_numpy() - 1
        disp = list(uniq_s.to_list())
        if st.null_count():
            code = np.where(st.is_null().to_numpy(), len(disp), code)
            disp.append(None)
        return item, code, disp
    if dt.is_float():
        raise SchemaError(
            f"{what}: a {dt} column cannot be a categorical slice; bucket it with "
            f"assay.bins({item!r}, n) or assay.bins({item!r}, edges=[...])",
            item,
        )
    raise SchemaError(
        f"{what}: type {dt} cannot be a slice; use a string, categorical, integer or boolean "
        "column, or assay.bins for numbers",
        item,
    )


def slice_set(df: pl.DataFrame, slices: Any, what: str) -> SliceSet:
    """The slices of ``df`` for the slice specs ``slices``, as :func:`assay.evaluate` labels and
    orders them (``overall`` first)."""
    if isinstance(slices, (str, Bins)):
        slices = [slices]
    if not isinstance(slices, Sequence):
        raise InvalidArgumentError(f"{what}: slices must be a list of slice specs, got {slices!r}")
    n = df.height
    labels = ["overall"]
    rows = [np.arange(n, dtype=np.int64)]
    source = None
    cache: dict[Any, tuple[str, np.ndarray, list[str | None]]] = {}
    for spec in slices:
        items = list(spec) if isinstance(spec, (tuple, list)) else [spec]
        if not items:
            raise InvalidArgumentError(f"{what}: an empty tuple is not a slice")
        feats = []
        for it in items:
            key = it if isinstance(it, (str, Bins)) else id(it)
            if key not in cache:
                if isinstance(it, Bins) and source is None:
                    source = to_source(df)
                cache[key] = _feature_codes(df, it, source, what)
            feats.append(cache[key])
        cols = [f[0] for f in feats]
        if len(set(cols)) != len(cols):
            dup = next(c for c in cols if cols.count(c) > 1)
            raise InvalidArgumentError(f"{what}: slice {cols} uses column {dup!r} twice")
        # mixed-radix key of the codes, in report order (feature by feature)
        key_arr = np.zeros(n, dtype=np.int64)
        for _, code, disp in feats:
            key_arr = key_arr * (len(disp) + 1) + code
        order = np.argsort(key_arr, kind="stable")
        sorted_keys = key_arr[order]
        if n == 0:
            continue
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        for a, b in zip(starts, ends, strict=True):
            first = order[a]
            parts = []
            for c, code, disp in feats:
                v = disp[code[first]]
                parts.append(f"{c}={'null' if v is None else v}")
            labels.append(" & ".join(parts))
            rows.append(np.sort(order[a:b]))
    return SliceSet(labels, rows)


# --------------------------------------------------------------------------------------------
# metrics from confusion counts (the engine's definitions and null rules)
# --------------------------------------------------------------------------------------------

CONFUSION_METRICS = (
    "base_rate", "prediction_rate", "accuracy", "balanced_accuracy", "precision", "recall",
    "specificity", "fpr", "fnr", "f1", "mcc",
)
LOWER_IS_BETTER = frozenset({"fpr", "fnr", "log_loss", "brier"})


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
    """A confusion metric from (weighted) counts; NaN where the engine reports null."""
    tp, fp, tn, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, tn, fn))
    p, n = tp + fn, tn + fp
    w = p + n
    if name == "base_rate":
        return ratio(p, w)
    if name == "prediction_rate":
        return ratio(tp + fp, w)
    if name == "accuracy":
        return ratio(tp + tn, w)
    if name == "balanced_accuracy":
        ok = (p > 0) & (n > 0)
        return np.where(ok, 0.5 * (ratio(tp, p) + ratio(tn, n)), np.nan)
    if name == "precision":
        return ratio(tp, tp + fp)
    if name == "recall":
        return ratio(tp, p)
    if name == "specificity":
        return ratio(tn, n)
    if name == "fpr":
        return ratio(fp, n)
    if name == "fnr":
        return ratio(fn, p)
    if name == "f1":
        return ratio(2.0 * tp, 2.0 * tp + fp + fn)
    if is_fbeta(name):
        b2 = float(name[1:]) ** 2
        return ratio((1.0 + b2) * tp, (1.0 + b2) * tp + b2 * fn + fp)
    if name == "mcc":
        den = (tp + fp) * p * n * (tn + fn)
        return ratio(tp * tn - fp * fn, np.sqrt(np.where(den > 0, den, 0.0)))
    raise InvalidArgumentError(f"metric {name!r} is not a confusion-count metric")


def nullable(values: Any, name: str) -> pl.Series:
    """A Float64 polars Series with NaN turned into null (undefined values are null)."""
    return pl.Series(name, np.asarray(values, dtype=np.float64)).fill_nan(None)


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a repr (``null`` for None/NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "null"
    return f"{x:.{digits}g}"
