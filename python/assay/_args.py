"""Argument checks shared by every public entry point.

Every integer or float argument a user gives goes through :func:`int_arg` or
:func:`float_arg` before it reaches ``int()``/``float()`` or the native layer, so an
out-of-range, wrong-typed or non-finite value becomes an :class:`assay.InvalidArgumentError`
that names the argument and its allowed range -- never an ``OverflowError`` from the native
conversion, a silent truncation (``3.5 -> 3``) or a silent wrap (``seed % 2**64``).

This module imports nothing from the rest of assay but the errors, so that every other module
(``_evaluate`` included) can use it; :mod:`assay._common` re-exports it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

__all__ = [
    "U64_MAX", "bool_arg", "column_arg", "float_arg", "int_arg", "is_bool", "max_threads", "show",
]

U64_MAX = (1 << 64) - 1
"""The largest value of an unsigned 64-bit integer (seeds, row counts)."""

_SHOW_CHARS = 60


def show(x: Any) -> str:
    """A short, safe ``repr`` of an argument for an error message.

    Huge integers do not go through ``repr`` (Python refuses to print more than 4300 digits),
    long reprs are cut, and control characters are escaped.
    """
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):
        try:
            v = int(x)
        except Exception:
            v = None
        if v is not None and abs(v) >= 10**30:
            return f"an integer of about 2**{v.bit_length()}" if v > 0 else \
                f"a negative integer of about -2**{v.bit_length()}"
    try:
        text = repr(x)
    except Exception:  # a broken __repr__ or a huge number
        text = f"<{type(x).__name__}>"
    if len(text) > _SHOW_CHARS:
        text = text[:_SHOW_CHARS - 3] + "..."
    # repr already escapes control characters inside strings; escape the rest (custom reprs).
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def _prefix(what: str | None) -> str:
    return f"{what}: " if what else ""


def _range(lo: float | None, hi: float | None, lo_open: bool = False,
           hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""


def is_bool(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_))


def int_arg(x: Any, name: str, what: str | None = None, lo: int | None = None,
            hi: int | None = None) -> int:
    """``x`` as a Python int in ``[lo, hi]`` (either bound optional).

    Accepts ``int`` and numpy integers; refuses bools, floats (even ``3.0``: a size is never
    silently truncated), strings and everything else, with an
    :class:`~assay.InvalidArgumentError` that states the range.
    """
    rng = _range(lo, hi)
    want = f"an integer {rng}".rstrip()
    if is_bool(x) or not isinstance(x, numbers.Integral):
        raise InvalidArgumentError(f"{_prefix(what)}{name} must be {want}, got {show(x)}")
    v = int(x)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidArgumentError(f"{_prefix(what)}{name} must be {want}, got {show(x)}")
    return v


def float_arg(x: Any, name: str, what: str | None = None, lo: float | None = None,
              hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
              finite: bool = True) -> float:
    """``x`` as a Python float, not NaN, finite unless ``finite=False`` (then +-inf pass), and
    within ``lo``/``hi`` (closed bounds unless ``lo_open``/``hi_open``).

    Accepts any real number (int, float, numpy scalars, Fraction) but not bools; an integer too
    large for a float is refused instead of raising ``OverflowError``.
    """
    rng = _range(lo, hi, lo_open, hi_open)
    kind = "a finite number" if finite else "a number (not NaN)"
    want = f"{kind} {rng}".rstrip()
    if is_bool(x) or not isinstance(x, numbers.Real):
        raise InvalidArgumentError(f"{_prefix(what)}{name} must be {want}, got {show(x)}")
    try:
        v = float(x)
    except (OverflowError, ValueError, TypeError):
        raise InvalidArgumentError(
            f"{_prefix(what)}{name} must be {want}, got {show(x)} (too large for a float)"
        ) from None
    if math.isnan(v) or (finite and math.isinf(v)):
        raise InvalidArgumentError(f"{_prefix(what)}{name} must be {want}, got {show(x)}")
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
        raise InvalidArgumentError(f"{_prefix(what)}{name} must be {want}, got {show(x)}")
    return v


def bool_arg(x: Any, name: str, what: str | None = None) -> bool:
    """``x`` as a bool: only ``True``/``False`` (and numpy bools)."""
    if not is_bool(x):
        raise InvalidArgumentError(f"{_prefix(what)}{name} must be True or False, got {show(x)}")
    return bool(x)


def column_arg(x: Any, name: str, what: str | None = None, optional: bool = False) -> str | None:
    """A column name: a ``str`` (``None`` too when ``optional``)."""
    if x is None and optional:
        return None
    if not isinstance(x, str):
        kind = "a column name (str) or None" if optional else "a column name (str)"
        raise InvalidArgumentError(f"{_prefix(what)}{name} must be {kind}, got {show(x)}")
    return x


def max_threads() -> int:
    """The most worker threads a job may use: the native layer's limit (4 x the cores)."""
    from . import _native

    return int(_native.max_threads())
