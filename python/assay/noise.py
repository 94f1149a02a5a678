"""Perturbations for :func:`assay.checks.perturbation`: plain functions of a column.

Each helper returns a :class:`Noise`, a callable that maps a column (a polars ``Series`` or a
numpy array) to a perturbed column of the same kind and length::

    noisy = assay.noise.gaussian(0.1, relative=True, seed=0)(income)   # Series in, Series out

The randomness comes from ``numpy.random.default_rng``: from ``seed`` when the noise is called
on its own (``seed=None`` draws fresh entropy each call), or from the generator the check
passes as ``rng=`` (derived from the check's own ``seed``, so every repeat draws new noise and
a run reproduces). Rows are perturbed independently, all at once: nothing loops over rows.

A custom perturbation is any function of one column returning a column of the same length;
give it an ``rng`` keyword parameter to receive the check's seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from . import _common as c
from .errors import InvalidArgumentError, SchemaError

__all__ = ["Noise", "gaussian", "swap", "missing"]


@dataclass(frozen=True)
class Noise:
    """A named, seeded perturbation of one column (built by :func:`gaussian`, :func:`swap`,
    :func:`missing`). Call it as ``noise(column)`` or ``noise(column, rng=generator)``."""

    name: str
    apply: Callable[[Any, np.random.Generator], Any] = field(repr=False)
    seed: int | None = None
    args: str = ""

    def __call__(self, column: Any, rng: np.random.Generator | None = None) -> Any:
        if rng is None:
            rng = np.random.default_rng(self.seed)
        elif not isinstance(rng, np.random.Generator):
            raise InvalidArgumentError(
                f"noise.{self.name}: rng must be a numpy Generator, got {type(rng).__name__}"
            )
        if not isinstance(column, (pl.Series, np.ndarray)):
            raise InvalidArgumentError(
                f"noise.{self.name}: expected a polars Series or a numpy array, got "
                f"{type(column).__name__}"
            )
        if isinstance(column, np.ndarray) and column.ndim != 1:
            raise InvalidArgumentError(
                f"noise.{self.name}: expected a 1-d array, got shape {column.shape}"
            )
        return self.apply(column, rng)

    def __repr__(self) -> str:
        return f"assay.noise.{self.name}({self.args})"


def _rate(rate: Any, what: str) -> float:
    return c.probability_arg(rate, "rate", what)


def _seed(seed: Any, what: str) -> int | None:
    return None if seed is None else c.seed_arg(seed, what)


def _selected(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the rows hit, each independently with probability ``rate``."""
    return np.flatnonzero(rng.random(n) < rate)


def gaussian(scale: float, *, relative: bool = False, seed: int | None = None) -> Noise:
    """Additive Gaussian noise on a numeric column.

    Every value ``x`` becomes ``x + scale * z`` (``relative=False``) or ``x * (1 + scale * z)``
    (``relative=True``, noise proportional to the value), with ``z ~ N(0, 1)`` drawn per row.
    Nulls and NaN stay as they are. The result is Float64 (a polars Series keeps its name).

    Parameters
    ----------
    scale : float
        Standard deviation of the noise (relative to ``|x|`` when ``relative``); >= 0.
    relative : bool
        Multiplicative noise instead of additive.
    seed : int, optional
        Seed used when the noise is called without ``rng=``.

    Examples
    --------
    >>> import assay, numpy as np, polars as pl
    >>> x = pl.Series("income", [1000.0, 2000.0, None])
    >>> y = assay.noise.gaussian(0.1, relative=True, seed=0)(x)
    >>> y.name, y.len(), y.null_count()
    ('income', 3, 1)
    >>> assay.noise.gaussian(0.0)(np.array([1.0, 2.0]))
    array([1., 2.])
    """
    what = "noise.gaussian"
    scale = c.real_arg(scale, "scale", what, minimum=0.0)
    relative = c.bool_arg(relative, "relative", what)
    seed = _seed(seed, what)

    def apply(col: Any, rng: np.random.Generator) -> Any:
        x = _numeric(col, what)
        z = rng.standard_normal(x.shape[0])
        out = x * (1.0 + scale * z) if relative else x + scale * z
        if isinstance(col, pl.Series):
            res = pl.Series(col.name, out, dtype=pl.Float64)
            if col.null_count():
                res = pl.DataFrame({"x": res, "m": col.is_null()}).select(
                    pl.when(pl.col("m")).then(None).otherwise(pl.col("x")).alias(col.name)
                ).to_series()
            return res
        return out

    return Noise("gaussian", apply, seed, f"{scale:g}" + (", relative=True" if relative else ""))


def _numeric(col: Any, what: str) -> np.ndarray:
    if isinstance(col, pl.Series):
        if not col.dtype.is_numeric():
            raise SchemaError(f"{what}: needs a numeric column, got {col.dtype} for "
                              f"{col.name!r}", col.name)
        return col.cast(pl.Float64).to_numpy()
    if not np.issubdtype(col.dtype, np.number):
        raise SchemaError(f"{what}: needs a numeric array, got dtype {col.dtype}")
    return col.astype(np.float64)


def swap(rate: float, *, seed: int | None = None) -> Noise:
    """Exchange values between rows: each row is picked with probability ``rate``, and the
    picked rows pass their values round a random cycle (each takes the value of another picked
    row). Works on any column type (a city name, a category, a number); the column's values are
    only moved, so its distribution is unchanged. With fewer than two rows picked nothing moves.

    Parameters
    ----------
    rate : float
        Probability that a row is picked, in [0, 1].
    seed : int, optional
        Seed used when the noise is called without ``rng=``.

    Examples
    --------
    >>> import assay, polars as pl
    >>> city = pl.Series("city", ["Lima", "Oslo", "Pune", "Kyiv"])
    >>> out = assay.noise.swap(1.0, seed=0)(city)
    >>> sorted(out.to_list()) == sorted(city.to_list()), (out != city).all()
    (True, True)
    """
    what = "noise.swap"
    rate = _rate(rate, what)
    seed = _seed(seed, what)

    def apply(col: Any, rng: np.random.Generator) -> Any:
        n = len(col)
        idx = _selected(n, rate, rng)
        if idx.size < 2:
            return col.clone() if isinstance(col, pl.Series) else col.copy()
        idx = rng.permutation(idx)
        src = np.roll(idx, 1)  # idx[i] takes the value of idx[i - 1]: one cycle, no fixed point
        if isinstance(col, pl.Series):
            return col.clone().scatter(idx, col.gather(src))
        out = col.copy()
        out[idx] = col[src]
        return out

    return Noise("swap", apply, seed, f"{rate:g}")


def missing(rate: float, *, value: Any = None, seed: int | None = None) -> Noise:
    """Blank out values: each row becomes missing with probability ``rate``.

    Missing means null in a polars Series and NaN in a float numpy array (an integer or boolean
    array is returned as float64 with NaN). With ``value=`` the picked rows get that value
    instead (a sentinel such as ``-1`` or ``"unknown"``), in the column's type.

    Parameters
    ----------
    rate : float
        Probability that a row is blanked, in [0, 1].
    value : optional
        The replacement (default: null / NaN).
    seed : int, optional
        Seed used when the noise is called without ``rng=``.

    Examples
    --------
    >>> import assay, polars as pl
    >>> age = pl.Series("age", [31, 45, 27, 60])
    >>> assay.noise.missing(1.0, seed=0)(age).null_count()
    4
    >>> assay.noise.missing(0.0)(age).to_list()
    [31, 45, 27, 60]
    """
    what = "noise.missing"
    rate = _rate(rate, what)
    seed = _seed(seed, what)

    def apply(col: Any, rng: np.random.Generator) -> Any:
        idx = _selected(len(col), rate, rng)
        if isinstance(col, pl.Series):
            mask = np.zeros(len(col), dtype=bool)
            mask[idx] = True
            try:
                fill = pl.lit(value).cast(col.dtype) if value is not None else pl.lit(None)
                out = pl.DataFrame({"m": mask, "x": col}).select(
                    pl.when(pl.col("m")).then(fill).otherwise(pl.col("x")).alias(col.name)
                ).to_series()
            except pl.exceptions.PolarsError as e:
                raise InvalidArgumentError(
                    f"{what}: value {value!r} does not fit the {col.dtype} column {col.name!r}"
                ) from e
            return out.cast(col.dtype)
        if value is None:
            if col.dtype.kind in "fc":
                out = col.copy()
            elif col.dtype.kind in "iub":
                out = col.astype(np.float64)
            else:
                out = col.astype(object)
            out[idx] = np.nan if out.dtype.kind in "fc" else None
            return out
        out = col.copy()
        try:
            out[idx] = value
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(
                f"{what}: value {value!r} does not fit an array of dtype {col.dtype}"
            ) from e
        return out

    return Noise("missing", apply, seed,
                 f"{rate:g}" + ("" if value is None else f", value={value!r}"))
