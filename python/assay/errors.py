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
    "StateMismatchError",
    "StateFormatError",
    "ModelError",
    "ModelOutputError",
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


class StateMismatchError(AssayError, ValueError):
    """Partial states that cannot be merged or finalized together: states of different specs
    (another metric, seed, slice, bin edge...), states whose row ranges overlap in a bootstrap
    spec without ``row_id`` (two shards at the same ``row_offset`` would share their replicate
    weights), or a state that does not fit the job it is finalized with. See
    :class:`assay.PartialState`."""


class StateFormatError(AssayError, ValueError):
    """Bytes that are not a valid partial state: truncated, corrupted (the checksum does not
    match), not an assay state at all, or written by a newer assay (a newer format version).
    Raised by :meth:`assay.PartialState.from_bytes`."""


class RegressionDetected(AssayError, AssertionError):
    """A model is worse than its reference with confidence (raised by
    :meth:`assay.Comparison.assert_not_worse`). ``slices`` holds the offending rows of the
    gate's table (``slice``, ``metric``, ``model``, ``n``, ``delta``, ``lo``, ``hi``,
    ``p_worse``, ``status``) and ``table`` the whole table (every cell's status)."""

    def __init__(self, message: str, column: str | None = None, slices: object = None,
                 table: object = None) -> None:
        super().__init__(message, column)
        self.slices = slices
        self.table = table


class NothingFoundWarning(UserWarning):
    """:func:`assay.discover_slices` found no slice, and says why (no row has an error, every
    slice is smaller than ``min_support``, or no slice scores above 0)."""


class ModelError(AssayError):
    """A model callable failed inside a behavioural check (:mod:`assay.checks`). ``check``
    names the check and ``batch`` the 0-based index of the batch the model was called on
    (``None`` when the failure is not tied to one batch)."""

    def __init__(self, message: str, column: str | None = None, check: str | None = None,
                 batch: int | None = None) -> None:
        super().__init__(message, column)
        self.check = check
        self.batch = batch


class ModelOutputError(ModelError, ValueError):
    """A model callable returned something that is not one finite score per row: the wrong
    length or shape, NaN or infinity, or a non-numeric type."""
