"""Saved runs: a :class:`~assay.Report` or :class:`~assay.Comparison` in one Parquet file
(``rep.save("run.assay.parquet")``), loaded back exactly by :func:`assay.load`, and compared
slice by slice by :func:`assay.diff`.

The file's rows are the result's table (any Parquet reader shows them): a report's wide table
(with each metric's ``_se`` column when it has intervals), or a comparison's table. The
file's key-value metadata holds, under ``"assay"``, a JSON document::

    {"format": 1, "kind": "report" | "comparison", "provenance": {...} | null, ...}

with what the object needs besides its rows (see docs/saved-runs.md): a report's metrics, row
counts, interval method and level, slice specs, and its side tables (notes, the engine's
per-row layout with the replicate values, a task family's tables) as base64 Arrow IPC
streams; a comparison's reference, level, method, correction, replicate differences and
each model's report (nested, in the same form).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ._provenance import Provenance
from .errors import InvalidArgumentError, StateFormatError

__all__ = ["save", "load", "diff", "FORMAT"]

#: Version of the saved-run layout (the metadata's ``"format"``).
FORMAT = 1
_KEY = b"assay"


def _ipc(table: pa.Table | pa.RecordBatch | None) -> str | None:
    if table is None:
        return None
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def _from_ipc(text: str | None) -> pa.RecordBatch | None:
    if text is None:
        return None
    table = pa.ipc.open_stream(base64.b64decode(text)).read_all()
    return table.combine_chunks().to_batches()[0] if table.num_rows else \
        pa.RecordBatch.from_pylist([], schema=table.schema)


def _report_parts(rep: Any) -> tuple[pa.Table, dict[str, Any]]:
    """A report's full table (its ``_se`` columns included) and the rest of it as JSON."""
    from ._spec import _entry_json

    full = rep._arrow
    for m, col in rep._se.items():
        full = full.append_column(f"{m}_se", col)
    meta = {
        "kind": "report",
        "metrics": list(rep.metrics),
        "rows": rep.rows,
        "dropped": rep.dropped,
        "ci_method": rep.ci_method,
        "level": rep._level,
        "specs": [_entry_json((feats, only)) for feats, only in rep._specs],
        "notes": _ipc(rep._notes_arrow),
        "layout": _ipc(rep._layout),
        "tables": None if rep._tables is None else
        {name: _ipc(t) for name, t in rep._tables.items()},
        "provenance": None if getattr(rep, "provenance", None) is None else
        rep.provenance.to_dict(),
    }
    return full, meta


def _spec_entry(x: Any) -> tuple[tuple[Any, ...], str | None]:
    from ._spec import _entry_from_json

    feats, only = _entry_from_json(x)
    return tuple(feats), only


def _report_from(table: pa.Table, meta: dict[str, Any]) -> Any:
    from .report import Report

    tables = meta.get("tables")
    batch = table.combine_chunks().to_batches()[0] if table.num_rows else \
        pa.RecordBatch.from_pylist([], schema=table.schema)
    rep = Report(
        batch, _from_ipc(meta["notes"]), list(meta["metrics"]), int(meta["rows"]),
        int(meta["dropped"]), ci_method=meta["ci_method"], layout=_from_ipc(meta["layout"]),
        specs=[_spec_entry(s) for s in meta["specs"]], level=meta["level"],
        tables=None if tables is None else [(n, _from_ipc(t)) for n, t in tables.items()],
    )
    prov = meta.get("provenance")
    rep.provenance = None if prov is None else Provenance.from_dict(prov)
    return rep


def _path(path: Any, what: str) -> str:
    """``path`` as a string, or a typed error: a saved run's path is a ``str`` or a
    ``pathlib.Path`` (``os.PathLike``)."""
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"{what} takes a file path (a str or pathlib.Path), got {type(path).__name__}")
    out = os.fspath(path)
    if not isinstance(out, str) or not out:
        raise InvalidArgumentError(f"{what} takes a non-empty file path, got {path!r}")
    return out


def _readable(path: Any) -> str:
    """The path of a saved run to read: an existing regular file, or a typed error (never
    a FIFO, on which a read would wait for a writer)."""
    import stat

    p = _path(path, "assay.load")
    try:
        st = os.stat(p)
    except FileNotFoundError as e:
        raise InvalidArgumentError(f"assay.load: no such file: {p!r}") from e
    except OSError as e:
        raise InvalidArgumentError(f"assay.load: cannot open {p!r}: {e.strerror or e}") \
            from e
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InvalidArgumentError(
            f"assay.load: {p!r} is {kind}; give the .assay.parquet file that "
            "Report.save wrote")
    return p


def _writable(path: Any) -> Path:
    """Where to save: a path whose directory exists and that is not itself a directory."""
    p = Path(_path(path, "save"))
    if p.is_dir():
        raise InvalidArgumentError(f"save: {str(p)!r} is a directory; give a file name, "
                                   "e.g. run.assay.parquet")
    parent = p.parent
    if not parent.is_dir():
        raise InvalidArgumentError(
            f"save: cannot write {str(p)!r}: its directory {str(parent)!r} does not exist")
    return p


def save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Writes a :class:`~assay.Report` or :class:`~assay.Comparison` to ``path`` (Parquet;
    ``.assay.parquet`` by convention). See :meth:`assay.Report.save`."""
    import pyarrow.parquet as pq

    from ._compare import Comparison
    from ._tables import _KeptTable
    from .report import Report

    if isinstance(obj, Report):
        table, meta = _report_parts(obj)
    elif isinstance(obj, Comparison):
        reports = {}
        for name, rep in obj.reports.items():
            t, m = _report_parts(rep)
            m["table"] = _ipc(t)
            reports[name] = m
        reps = np.ascontiguousarray(obj.replicates, dtype=np.float64)
        table = obj._arrow
        meta = {
            "kind": "comparison",
            "reference": obj.reference,
            "level": obj.level,
            "method": obj.method,
            "correction": obj.correction,
            "replicates": {
                "shape": list(reps.shape),
                "data": base64.b64encode(reps.tobytes()).decode("ascii"),
            },
            "reports": reports,
            "provenance": None if getattr(obj, "provenance", None) is None else
            obj.provenance.to_dict(),
        }
    elif isinstance(obj, _KeptTable):
        table = obj.to_arrow()
        meta = {
            "kind": obj._kind,
            "provenance": None if obj.provenance is None else obj.provenance.to_dict(),
        }
    else:
        raise InvalidArgumentError(
            "save takes an assay.Report, an assay.Comparison, or the table of "
            f"assay.reliability or assay.discover_slices, got {type(obj).__name__}")
    out = _writable(path)
    meta = {"format": FORMAT, **meta}
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[_KEY] = json.dumps(meta, allow_nan=True).encode("utf-8")
    try:
        pq.write_table(table.replace_schema_metadata(schema_meta), out)
    except OSError as e:
        raise InvalidArgumentError(f"save: cannot write {str(out)!r}: {e}") from e
    return out


def load(path: str | os.PathLike[str]) -> Any:
    """The :class:`~assay.Report` or :class:`~assay.Comparison` saved at ``path`` by
    :meth:`~assay.Report.save`: the same tables, intervals, replicate values and
    :attr:`~assay.Report.provenance` (or the reliability or discovery table saved by its
    ``save``, with its provenance).

    >>> import assay, tempfile, os
    >>> rep = assay.evaluate(assay.demo.make_data(2000, seed=0), label="churned",
    ...                      score="p_churn", slices=["plan"], metrics=["roc_auc"])
    >>> path = os.path.join(tempfile.mkdtemp(), "run.assay.parquet")
    >>> back = assay.load(rep.save(path))
    >>> back.table.equals(rep.table), back.provenance == rep.provenance
    (True, True)

    Raises
    ------
    InvalidArgumentError
        ``path`` is not a path, or names no regular file.
    StateFormatError
        The file is not a saved assay run, or one of a newer format.
    """
    import pyarrow.parquet as pq

    path = _readable(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise StateFormatError(f"{os.fspath(path)!r} is not a readable Parquet file: {e}") \
            from e
    raw = (table.schema.metadata or {}).get(_KEY)
    if raw is None:
        raise StateFormatError(
            f"{os.fspath(path)!r} is a Parquet file but not a saved assay run (no 'assay' "
            "metadata); write one with Report.save(path)")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise StateFormatError(f"{os.fspath(path)!r}: its assay metadata is not JSON") from e
    if not isinstance(meta, dict):
        raise StateFormatError(
            f"{os.fspath(path)!r}: its assay metadata is not a JSON object")
    fmt = meta.get("format")
    if fmt != FORMAT:
        newer = isinstance(fmt, int) and fmt > FORMAT
        raise StateFormatError(
            f"{os.fspath(path)!r} is a saved run of format {fmt!r}; this assay reads format "
            f"{FORMAT}" + (": upgrade assay" if newer else ""))
    other = {k: v for k, v in (table.schema.metadata or {}).items() if k != _KEY}
    table = table.replace_schema_metadata(other or None)
    try:
        if meta["kind"] == "report":
            return _report_from(table, meta)
        if meta["kind"] == "comparison":
            from ._compare import Comparison

            reports = {name: _report_from(pa.Table.from_batches([_from_ipc(m["table"])]), m)
                       for name, m in meta["reports"].items()}
            shape = tuple(meta["replicates"]["shape"])
            reps = np.frombuffer(base64.b64decode(meta["replicates"]["data"]),
                                 dtype=np.float64).reshape(shape).copy()
            reps.setflags(write=False)
            cmp = Comparison(table, reports, meta["reference"], meta["level"],
                             meta["method"], meta["correction"], reps)
            prov = meta.get("provenance")
            cmp.provenance = None if prov is None else Provenance.from_dict(prov)
            return cmp
        if meta["kind"] in ("reliability", "discovery"):
            from ._tables import kept_table

            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            prov = meta.get("provenance")
            return kept_table(meta["kind"], frame,
                              None if prov is None else Provenance.from_dict(prov))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, pa.ArrowException,
            pl.exceptions.PolarsError) as e:
        raise StateFormatError(f"{os.fspath(path)!r}: a damaged saved run "
                               f"({type(e).__name__}: {e})") from e
    raise StateFormatError(f"{os.fspath(path)!r}: unknown saved kind {meta.get('kind')!r}")


def diff(a: Any, b: Any, *, metrics: list[str] | None = None) -> pl.DataFrame:
    """Two runs side by side, slice by slice: ``slice``, ``metric``, ``a``, ``b``,
    ``delta`` (``b - a``), ``n_a``, ``n_b``, one row per (slice, metric) present in either.

    ``a`` and ``b`` are :class:`~assay.Report` objects or paths of saved runs (for a
    :class:`~assay.Comparison`, its reference model's report). This compares **values only**:
    without the rows there are no paired replicates, so no interval of a difference (the
    runs' own intervals are in their tables). For a paired comparison of two models on the
    same rows, use :func:`assay.compare`.

    >>> import assay
    >>> data = assay.demo.make_data(2000, seed=0)
    >>> a = assay.evaluate(data, label="churned", score="p_churn", slices=["plan"],
    ...                    metrics=["roc_auc"])
    >>> d = assay.diff(a, a)
    >>> d.columns, d["delta"].abs().max()
    (['slice', 'metric', 'a', 'b', 'delta', 'n_a', 'n_b'], 0.0)
    """
    ra, rb = _as_report(a, "a"), _as_report(b, "b")
    wanted = metrics if metrics is not None else \
        [m for m in ra.metrics if m in rb.metrics] or list(dict.fromkeys(ra.metrics))
    missing = [m for m in wanted if m not in ra.metrics or m not in rb.metrics]
    if missing:
        raise InvalidArgumentError(
            f"diff: metric(s) {', '.join(map(repr, missing))} are not in both runs (a has "
            f"{', '.join(ra.metrics)}; b has {', '.join(rb.metrics)})")

    def long(rep: Any, side: str) -> pl.DataFrame:
        t = rep.table.select("slice", "n", *wanted).with_row_index("_order")
        return t.unpivot(index=["_order", "slice", "n"], on=wanted, variable_name="metric",
                         value_name=side).rename({"n": f"n_{side}", "_order": f"_o_{side}"})

    la, lb = long(ra, "a"), long(rb, "b")
    order = pl.DataFrame({"metric": wanted, "_m": list(range(len(wanted)))},
                         schema={"metric": pl.String, "_m": pl.Int64})
    out = la.join(lb, on=["slice", "metric"], how="full", coalesce=True)
    return (
        out.join(order, on="metric")
        .with_columns(delta=pl.col("b") - pl.col("a"),
                      _o=pl.coalesce(pl.col("_o_a"), pl.col("_o_b") + 1_000_000_000))
        .sort("_o", "_m")
        .select("slice", "metric", "a", "b", "delta", "n_a", "n_b")
    )


def _as_report(x: Any, name: str) -> Any:
    from ._compare import Comparison
    from .report import Report

    if isinstance(x, (str, os.PathLike)):
        x = load(x)
    if isinstance(x, Comparison):
        x = x.reports[x.reference]
    if not isinstance(x, Report):
        raise InvalidArgumentError(
            f"diff: {name} must be an assay.Report, an assay.Comparison or the path of a saved "
            f"run, got {type(x).__name__}")
    return x
