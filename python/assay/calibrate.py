"""Recalibration: fit a map from scores to calibrated probabilities on one split, apply it to
another.

Every recalibrator is fitted in the Rust core (``fit``), applied vectorized (``transform``),
and serializes to a plain dict (``to_dict`` / ``from_dict``).

>>> import numpy as np
>>> from assay import calibrate
>>> rng = np.random.default_rng(0)
>>> s = rng.random(5000)
>>> y = (rng.random(5000) < s ** 2).astype(int)      # over-confident scores
>>> iso = calibrate.Isotonic().fit(s, y)
>>> p = iso.transform(np.array([0.1, 0.5, 0.9]))
>>> bool(p[0] <= p[1] <= p[2])
True
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from . import _native
from ._args import bool_arg, int_arg, show
from ._evaluate import MAX_BINS
from .errors import AssayError, InvalidArgumentError, InvalidInputError

__all__ = ["HistogramBinning", "Isotonic", "NotFittedError", "Platt", "Temperature"]


class NotFittedError(InvalidArgumentError):
    """``transform`` was called before ``fit``."""


def _column(values: Any, role: str) -> pa.Array:
    """A 1-D numeric input (numpy, list, pyarrow, polars/pandas series) as an Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        if hasattr(values, "to_numpy"):
            values = values.to_numpy()
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise InvalidInputError(f"{role} must be one-dimensional, got shape {arr.shape}",
                                    role)
        if arr.dtype == bool:
            arr = arr.astype(np.int8)
        if arr.dtype.kind not in "iuf":
            raise InvalidInputError(f"{role} must be numeric, got dtype {arr.dtype}", role)
        values = pa.array(arr)
    if pa.types.is_boolean(values.type):
        values = values.cast(pa.int8())
    return values


def _scores(values: Any) -> np.ndarray:
    arr = np.asarray(_column(values, "scores").to_numpy(zero_copy_only=False), dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError("scores must be finite", "scores")
    return arr


def _probabilities(values: Any) -> np.ndarray:
    arr = _scores(values)
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise InvalidInputError("scores must be probabilities in [0, 1]", "scores")
    return arr


def _logit(p: np.ndarray) -> np.ndarray:
    # The engine's one logit (fastmath::logit): scores clamped to [eps, 1 - eps] first.
    eps = np.finfo(np.float64).eps
    q = np.clip(p, eps, 1.0 - eps)
    return np.log(q / (1.0 - q))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class _Recalibrator:
    kind: ClassVar[str] = ""
    _params: dict[str, Any] | None = None

    def _fit_args(self, scores: Any, labels: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
        w = None if sample_weight is None else _column(sample_weight, "weights")
        return _column(scores, "scores"), _column(labels, "labels"), w

    def _fitted(self) -> dict[str, Any]:
        if self._params is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit() first")
        return self._params

    def to_dict(self) -> dict[str, Any]:
        """The fitted map as a plain, JSON-serializable dict."""
        return {"kind": self.kind, "version": 1, **self._config(), **self._fitted()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Rebuild a fitted recalibrator from :meth:`to_dict` output (of any kind)."""
        kinds = {c.kind: c for c in (Platt, Isotonic, Temperature, HistogramBinning)}
        if not isinstance(d, dict):
            raise InvalidArgumentError(
                f"from_dict needs the dict that to_dict() returned, got {type(d).__name__}"
            )
        kind = d.get("kind")
        if not isinstance(kind, str) or kind not in kinds or (
                cls is not _Recalibrator and kinds[kind] is not cls):
            raise InvalidArgumentError(f"not a serialized {cls.__name__}: kind={show(kind)}")
        if d.get("version") != 1:
            raise InvalidArgumentError(f"unknown serialization version {show(d.get('version'))}")
        try:
            obj = kinds[kind]._restore(d)
            obj._check_params()
        except AssayError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise InvalidArgumentError(
                f"not a valid serialized {kinds[kind].__name__}: {type(e).__name__}: {e}"
            ) from e
        return obj

    def _check_params(self) -> None:
        """Refuse restored parameters that are not finite numbers of the right shape."""
        for key, v in self._fitted().items():
            vals = v if isinstance(v, list) else [v]
            if not all(math.isfinite(x) for x in vals):
                raise InvalidArgumentError(
                    f"not a valid serialized {type(self).__name__}: {key} must be finite"
                )

    def _config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        state = "fitted" if self._params is not None else "not fitted"
        config = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({config}) [{state}]"


class Platt(_Recalibrator):
    """Platt scaling: ``p = sigmoid(a * logit(s) + b)``, fitted by Newton's method.

    ``smoothing=True`` (default) uses Platt's regularized targets ``(N+ + 1) / (N+ + 2)`` and
    ``1 / (N- + 2)``, which keep the fit finite when the classes are separable.

    Constant scores (every logit equal) leave the slope unidentifiable: the fit is then
    intercept-only (``a = 0``), mapping every score to the weighted base rate (with
    ``smoothing``, the mean of Platt's targets).

    >>> import numpy as np
    >>> from assay.calibrate import Platt
    >>> s, y = np.array([0.1, 0.3, 0.6, 0.8, 0.9]), np.array([0, 0, 1, 0, 1])
    >>> Platt().fit(s, y).transform(s).round(3).tolist()
    [0.194, 0.305, 0.433, 0.541, 0.628]
    """

    kind = "platt"

    def __init__(self, smoothing: bool = True) -> None:
        self.smoothing = bool_arg(smoothing, "smoothing", "Platt")

    def fit(self, scores: Any, labels: Any, sample_weight: Any = None) -> Platt:
        """Fit on probability scores in [0, 1] and 0/1 labels."""
        _probabilities(scores)
        a, b = _native.platt_fit(*self._fit_args(scores, labels, sample_weight), self.smoothing)
        self._params = {"a": a, "b": b}
        return self

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of ``scores``."""
        p = self._fitted()
        return _sigmoid(p["a"] * _logit(_probabilities(scores)) + p["b"])

    def _config(self) -> dict[str, Any]:
        return {"smoothing": self.smoothing}

    @classmethod
    def _restore(cls, d: dict[str, Any]) -> Platt:
        obj = cls(smoothing=d.get("smoothing", True))
        obj._params = {"a": float(d["a"]), "b": float(d["b"])}
        return obj


class Isotonic(_Recalibrator):
    """Isotonic regression by pool-adjacent-violators (weighted), as scikit-learn's
    ``IsotonicRegression``: piecewise linear between the distinct fitted scores.

    ``out_of_bounds``: ``"clip"`` (default) maps scores outside the fitted range to the end
    values, ``"nan"`` returns NaN there, ``"raise"`` raises.
    """

    kind = "isotonic"

    def __init__(self, increasing: bool = True,
                 out_of_bounds: Literal["clip", "nan", "raise"] = "clip") -> None:
        if out_of_bounds not in ("clip", "nan", "raise"):
            raise InvalidArgumentError(
                f"out_of_bounds must be 'clip', 'nan' or 'raise', got {show(out_of_bounds)}"
            )
        self.increasing = bool_arg(increasing, "increasing", "Isotonic")
        self.out_of_bounds = out_of_bounds

    def fit(self, scores: Any, labels: Any, sample_weight: Any = None) -> Isotonic:
        """Fit on finite scores (any range) and 0/1 labels."""
        _scores(scores)
        xs, ys = _native.isotonic_fit(*self._fit_args(scores, labels, sample_weight),
                                      self.increasing)
        self._params = {"x": list(xs), "y": list(ys)}
        return self

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated values of ``scores`` (linear interpolation between fitted points)."""
        p = self._fitted()
        x, y = np.asarray(p["x"]), np.asarray(p["y"])
        s = _scores(scores)
        outside = (s < x[0]) | (s > x[-1])
        if self.out_of_bounds == "raise" and outside.any():
            raise InvalidInputError(
                f"{int(outside.sum())} scores lie outside the fitted range [{x[0]}, {x[-1]}]",
                "scores",
            )
        out = np.interp(np.clip(s, x[0], x[-1]), x, y)
        if self.out_of_bounds == "nan":
            out[outside] = np.nan
        return out

    def _config(self) -> dict[str, Any]:
        return {"increasing": self.increasing, "out_of_bounds": self.out_of_bounds}

    @classmethod
    def _restore(cls, d: dict[str, Any]) -> Isotonic:
        obj = cls(increasing=d.get("increasing", True),
                  out_of_bounds=d.get("out_of_bounds", "clip"))
        x, y = [float(v) for v in d["x"]], [float(v) for v in d["y"]]
        if not x or len(x) != len(y) or any(b < a for a, b in zip(x, x[1:], strict=False)):
            raise InvalidArgumentError(
                "not a valid serialized Isotonic: x and y must be equally long, non-empty, "
                "and x sorted"
            )
        obj._params = {"x": x, "y": y}
        return obj


class Temperature(_Recalibrator):
    """Temperature scaling (binary): ``p = sigmoid(logit(s) / T)`` with ``T`` minimizing the
    log loss. ``T > 1`` softens over-confident scores.

    Temperature scaling only rescales the logit. On constant scores it fits when the score
    can reach the weighted base rate that way (``T = logit(s) / logit(base rate)``: the score
    is not 0.5 and lies on the same side of 0.5 as the base rate); otherwise ``fit`` raises
    :class:`~assay.errors.InvalidInputError` saying why (use :class:`Platt`, which fits an
    intercept)."""

    kind = "temperature"

    def fit(self, scores: Any, labels: Any, sample_weight: Any = None) -> Temperature:
        """Fit on probability scores in [0, 1] and 0/1 labels."""
        _probabilities(scores)
        t = _native.temperature_fit(*self._fit_args(scores, labels, sample_weight))
        self._params = {"temperature": t}
        return self

    @property
    def temperature(self) -> float:
        """The fitted temperature ``T``."""
        return float(self._fitted()["temperature"])

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of ``scores``."""
        return _sigmoid(_logit(_probabilities(scores)) / self.temperature)

    @classmethod
    def _restore(cls, d: dict[str, Any]) -> Temperature:
        obj = cls()
        t = float(d["temperature"])
        if not t > 0:
            raise InvalidArgumentError(
                f"not a valid serialized Temperature: temperature must be > 0, got {t!r}"
            )
        obj._params = {"temperature": t}
        return obj


class HistogramBinning(_Recalibrator):
    """Histogram binning: ``n_bins`` (in [1, 1000000]) equal-width bins over [0, 1]
    (left-closed, the last closed), each mapped to the fraction of positives in it; an empty
    bin maps to its midpoint."""

    kind = "histogram"

    def __init__(self, n_bins: int = 10) -> None:
        self.n_bins = int_arg(n_bins, "n_bins", "HistogramBinning", 1, MAX_BINS)

    def fit(self, scores: Any, labels: Any, sample_weight: Any = None) -> HistogramBinning:
        """Fit on probability scores in [0, 1] and 0/1 labels."""
        _probabilities(scores)
        values = _native.histogram_fit(*self._fit_args(scores, labels, sample_weight),
                                       self.n_bins)
        self._params = {"values": list(values)}
        return self

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of ``scores``."""
        values = np.asarray(self._fitted()["values"])
        s = _probabilities(scores)
        return values[np.minimum((s * self.n_bins).astype(np.int64), self.n_bins - 1)]

    def _config(self) -> dict[str, Any]:
        return {"n_bins": self.n_bins}

    @classmethod
    def _restore(cls, d: dict[str, Any]) -> HistogramBinning:
        obj = cls(n_bins=d["n_bins"])
        values = [float(v) for v in d["values"]]
        if len(values) != obj.n_bins:
            raise InvalidArgumentError(
                f"not a valid serialized HistogramBinning: {len(values)} values for "
                f"{obj.n_bins} bins"
            )
        obj._params = {"values": values}
        return obj
