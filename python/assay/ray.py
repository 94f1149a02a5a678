"""assay inside Ray Data: each block accumulates a state, the driver merges and finalizes.
No row is shuffled and no block is converted to pandas.

>>> from assay import ray as aray                                      # doctest: +SKIP
>>> rep = aray.evaluate(ray.data.read_parquet("preds/"), spec)         # doctest: +SKIP

How it runs (see docs/distributed.md):

1. Only the columns the spec reads are selected (``Dataset.select_columns``).
2. Data-derived bins (``assay.bins("age", 5)``) are fixed first, from exact order statistics:
   each block sends the distinct values of the binned columns with their counts, and the
   driver reads the ranks the edges need, to the same edges ``assay.evaluate`` would fit
   (bit for bit). That pass holds the distinct values on the driver: give
   ``edges=`` (or ``spec.resolve(sample)``) for a column of billions of distinct values.
3. ``Dataset.map_batches`` runs the Rust engine on each whole block, in Arrow format, zero
   copy, and emits one row: the block's serialized :class:`assay.PartialState`, or the assay
   error it raised.
4. The driver merges the states in their canonical order (so the result does not depend on
   the order the blocks finish in) and finalizes.

Needs ``pip install "assay[ray]"`` (Ray 2.x with Ray Data) and assay on the workers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _distributed as _d
from . import _native
from ._args import int_arg, show
from ._compare import Comparison
from ._evaluate import Bins
from ._spec import PartialState, Spec
from .errors import InvalidArgumentError, SchemaError
from .report import Report

__all__ = ["accumulate", "evaluate", "compare"]

ENGINE = "assay.ray"
_WHERE = ("raised by an assay.ray task on one block of the dataset (row numbers in the "
          "message count from that block's first row)")


def evaluate(ds: Any, spec: Spec, *, num_cpus: int = 1) -> Report:
    """The :class:`assay.Report` of ``spec`` over a Ray Dataset: equal to
    ``assay.evaluate`` on the same rows in one process (counts exactly, metrics and interval
    bounds to 1e-12).

    Parameters
    ----------
    ds : ray.data.Dataset
        The predictions, one row per example; only the spec's columns are read.
    spec : assay.Spec
        A spec of one model (for a comparison spec, use :func:`compare`). A spec that
        resamples (``bootstrap=B``) needs ``row_id=``: Ray has no stable row positions.
    num_cpus : int
        The CPUs each block's task reserves from Ray, and the engine's threads in it (1 to
        1024). Ray runs one task per reserved share, so 1 keeps every core busy when the
        dataset has at least as many blocks as cores; raise it for a few large blocks.

    Raises
    ------
    assay.AssayError
        A worker's error (a bad label in one block) as the same class and message as
        ``assay.evaluate`` raises, with a note saying it came from a Ray task.

    Examples
    --------
    >>> import assay, ray                                                  # doctest: +SKIP
    >>> from assay import ray as aray                                      # doctest: +SKIP
    >>> spec = assay.Spec(label="label", score="score", slices=["country"])  # doctest: +SKIP
    >>> aray.evaluate(ray.data.read_parquet("preds/"), spec).table         # doctest: +SKIP
    """
    _d.check_spec(spec, ENGINE, "evaluate")
    result = accumulate(ds, spec, num_cpus=num_cpus).finalize()
    assert isinstance(result, Report)
    return result


def compare(ds: Any, spec: Spec, *, num_cpus: int = 1) -> Comparison:
    """The :class:`assay.Comparison` of a comparison spec (``assay.Spec(scores={...},
    row_id=...)``) over a Ray Dataset: equal to ``assay.compare`` on the same rows.
    Parameters and errors as :func:`evaluate`."""
    _d.check_spec(spec, ENGINE, "compare")
    result = accumulate(ds, spec, num_cpus=num_cpus).finalize()
    assert isinstance(result, Comparison)
    return result


def accumulate(ds: Any, spec: Spec, *, num_cpus: int = 1) -> PartialState:
    """The merged :class:`assay.PartialState` of ``spec`` over a Ray Dataset, to finalize
    or to merge with states from anywhere else (its spec has the data-derived bins fixed to
    this data's edges). Parameters as :func:`evaluate`."""
    spec = _d.check_spec(spec, ENGINE, "accumulate")
    cpus = int_arg(num_cpus, "num_cpus", "assay.ray.accumulate", 1, 1024)
    if not (hasattr(ds, "map_batches") and hasattr(ds, "select_columns")):
        raise InvalidArgumentError(f"assay.ray takes a ray.data.Dataset, got {show(ds)}")
    _d.missing_columns(spec, ds.schema().names, "Ray")
    data = ds.select_columns(_d.columns(spec))
    spec = _resolve_bins(data, spec)

    def task(block: pa.Table) -> pa.Table:
        """One block's state (or error) record."""
        record = _d.accumulate_batches(spec, iter(block.to_batches()), 0, cpus)
        if record is None:
            return _d.SCHEMA.empty_table()
        return pa.Table.from_batches([record])

    states = data.map_batches(task, batch_format="pyarrow", batch_size=None,
                              zero_copy_batch=True, num_cpus=cpus)
    records = [r for b in states.iter_batches(batch_format="pyarrow", batch_size=None)
               for r in b.to_pylist()]

    def empty() -> pa.Schema:
        """The schema of the columns read (for the state of an empty dataset)."""
        schema = data.schema()
        return pa.schema([pa.field(n, t) for n, t in zip(schema.names, schema.types,
                                                         strict=True)])

    return _d.finish(records, spec, empty, _WHERE)


def _resolve_bins(data: Any, spec: Spec) -> Spec:
    """``spec`` with its data-derived bins fixed from exact order statistics: each block
    sends the distinct values (and counts) of the binned columns; the driver adds them up."""
    pending = _d.unresolved_bins(spec)
    if not pending:
        return spec
    names = list(dict.fromkeys(b.column for b in pending))
    types = dict(zip(data.schema().names, data.schema().types, strict=True))
    for c in names:
        t = types[c]
        if not (pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t)
                or pa.types.is_null(t)):
            raise SchemaError(
                f'column "{c}": a binned column must be a numeric column, got type {t}', c)

    def distinct(block: pa.Table) -> pa.Table:
        """The distinct non-NaN values of each binned column of a block, with counts."""
        out: dict[str, list[Any]] = {}
        for i, c in enumerate(names):
            # Unsafe: integers beyond 2**53 round to the nearest double, as the engine does.
            x = pc.cast(block.column(c), pa.float64(), safe=False).to_numpy(
                zero_copy_only=False)
            x = x[~np.isnan(x)]
            values, counts = np.unique(x, return_counts=True)
            out[f"v{i}"] = [values]
            out[f"c{i}"] = [counts.astype(np.int64)]
        return pa.table({k: pa.array(v, pa.list_(pa.float64() if k[0] == "v" else pa.int64()))
                         for k, v in out.items()})

    parts = data.select_columns(names).map_batches(
        distinct, batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
    collected = [b for b in parts.iter_batches(batch_format="pyarrow", batch_size=None)]
    stats: dict[str, tuple[int, bool, dict[int, float]]] = {}
    for i, c in enumerate(names):
        if collected:
            values = np.concatenate([pc.list_flatten(b.column(f"v{i}")).to_numpy()
                                     for b in collected])
            counts = np.concatenate([pc.list_flatten(b.column(f"c{i}")).to_numpy()
                                     for b in collected])
        else:
            values, counts = np.empty(0), np.empty(0, np.int64)
        uniq, inverse = np.unique(values, return_inverse=True)
        total = np.zeros(len(uniq), np.int64)
        np.add.at(total, inverse, counts)
        upto = np.cumsum(total)
        count = int(upto[-1]) if len(upto) else 0
        infinite = bool(np.isinf(uniq).any())
        ranks: set[int] = set()
        for b in pending:
            if b.column == c:
                ranks |= set(_native.bin_edge_ranks(count, int(b.n or 0), b.strategy))
        order = sorted(ranks)
        at = np.searchsorted(upto, np.asarray(order, np.int64), side="right")
        stats[c] = (count, infinite, dict(zip(order, uniq[at].tolist(), strict=True)))

    def fit(b: Bins) -> list[float]:
        """The edges of ``b``, placed by the engine from the order statistics."""
        count, infinite, order_stats = stats[b.column]
        return _native.bin_edges_by_rank(b.column, int(b.n or 0), b.strategy, count,
                                         infinite, order_stats)

    return spec._with_edges(fit)
