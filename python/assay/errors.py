"""The exception hierarchy of assay. Every error the engine raises is an :class:`AssayError`."""

from __future__ import annotations

__all__ = [
    "AssayError",
    "ColumnNotFoundError",
    "SchemaError",
    "InvalidInputError",
    "EmptyInputError",
    "InvalidArgumentError",
    "RegressionDetected",
]


class AssayError(Exception):
    """Base class of every assay error. ``column`` names the column at fault, if any."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ColumnNotFoundError(AssayError, KeyError):
    """A column named in the call is not in the data."""


class SchemaError(AssayError, TypeError):
    """A column has a type that cannot serve its role (e.g. a float column as a categorical
    slice)."""


class InvalidInputError(AssayError, ValueError):
    """A value in the data is invalid for its role (label 2, NaN score, negative weight...)."""


class EmptyInputError(InvalidInputError):
    """No rows are left to evaluate."""


class InvalidArgumentError(AssayError, ValueError):
    """An argument is invalid (unknown metric, bad threshold, bad bins...)."""


class RegressionDetected(AssayError, AssertionError):
    """A model is worse than its reference with confidence (raised by
    :meth:`assay.Comparison.assert_not_worse`). ``slices`` holds the offending rows of the
    comparison table."""

    def __init__(self, message: str, column: str | None = None, slices: object = None) -> None:
        super().__init__(message, column)
        self.slices = slices
