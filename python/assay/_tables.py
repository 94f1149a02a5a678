"""Result tables that keep their provenance: the reliability table (:func:`assay.reliability`)
and the discovered slices (:func:`assay.discover_slices`).

Each is a :class:`polars.DataFrame` (everything a DataFrame does works, and operations on it
return plain DataFrames) with a :attr:`provenance`, :meth:`save` (a saved run that
:func:`assay.load` and ``assay report`` read) and :meth:`to_html`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

if TYPE_CHECKING:
    from ._provenance import Provenance

__all__ = ["ReliabilityTable", "DiscoveryTable"]

T = TypeVar("T", bound="_KeptTable")


class _KeptTable(pl.DataFrame):
    provenance: Provenance | None = None
    _kind = "table"

    @classmethod
    def _of(cls: type[T], frame: pl.DataFrame, provenance: Provenance | None) -> T:
        """``frame`` as this class (the same data, not a copy), with ``provenance``."""
        from_pydf = getattr(cls, "_from_pydf", None)
        table = from_pydf(frame._df) if from_pydf is not None else cls(frame)
        table.provenance = provenance
        return table  # type: ignore[no-any-return]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the table to ``path`` (Parquet, its rows; the :attr:`provenance` in the
        file's metadata): :func:`assay.load` reads it back, and ``assay report`` draws its
        page. See docs/saved-runs.md."""
        from ._saved import save

        return save(self, path)

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None,
                metric: str | None = None) -> str | Path:
        """A self-contained HTML page of the table (see :mod:`assay.html`): returned as a
        string, or written to ``path`` (UTF-8) and its path returned."""
        from .html import _page

        return _page(self, path, title, metric)


class ReliabilityTable(_KeptTable):
    """The table of :func:`assay.reliability`: a :class:`polars.DataFrame` with a
    :attr:`provenance` (what produced it), :meth:`save` and :meth:`to_html`."""

    _kind = "reliability"


class DiscoveryTable(_KeptTable):
    """The table of :func:`assay.discover_slices`: a :class:`polars.DataFrame` with a
    :attr:`provenance` (what produced it), :meth:`save` and :meth:`to_html`."""

    _kind = "discovery"


def kept_table(kind: str, frame: pl.DataFrame, provenance: Any) -> _KeptTable:
    """A loaded table of ``kind`` (``"reliability"`` or ``"discovery"``)."""
    cls = {"reliability": ReliabilityTable, "discovery": DiscoveryTable}[kind]
    return cls._of(frame, provenance)
