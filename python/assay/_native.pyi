"""Type stubs of the compiled extension ``assay._native`` (checked with ``mypy.stubtest``)."""

from typing import Any

__all__ = ["evaluate", "bin_edges", "default_metrics", "metric_name", "__version__", "DEBUG_BUILD"]

__version__: str
DEBUG_BUILD: bool

def evaluate(
    data: Any,
    label: str,
    score: str,
    weight: str | None,
    threshold: float,
    slices: list[list[tuple[str, list[float] | None]]],
    metrics: list[str],
    min_slice_size: int,
    nan_policy: str,
    auc_bins: int | None,
    n_threads: int | None,
    interval: tuple[int, float, str, int, str | None] | None = None,
    compare: tuple[str, list[tuple[str, str]]] | None = None,
) -> tuple[Any, Any, int, int, list[tuple[Any, Any]], Any | None]:
    """Runs one evaluation (or comparison) job over an Arrow stream."""

def bin_edges(data: Any, column: str, n: int, strategy: str) -> list[float]:
    """Edges of `n` bins over column `column` of an Arrow stream."""

def default_metrics() -> list[str]:
    """The names of all metrics, in their default order."""

def metric_name(name: str) -> str:
    """Canonical name of a metric (validates it)."""
