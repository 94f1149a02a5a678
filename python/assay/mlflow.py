"""Log assay's results to MLflow (optional: needs mlflow, ``pip install "assay[mlflow]"``).

- :func:`log`: a :class:`assay.Report` or :class:`assay.Comparison` to an MLflow run: metrics
  with valid names, the spec as params, provenance as tags, the slice table, the saved result,
  the HTML report, the spec and the provenance as artifacts.
- :func:`metrics`: the metrics :func:`log` would log, as a ``{name: value}`` dict (no MLflow
  needed; for any tracker that takes a dict).
- :func:`safe_name`: the metric-name part of a slice label or a model name.

mlflow is imported only when :func:`log` runs (``mlflow-skinny`` is enough).

Metric names
------------
MLflow accepts metric names made of letters, digits, ``_ - . / space`` (and ``:`` except on
Windows) that stay the same under ``posixpath.normpath`` (no ``//``, no ``.``/``..``
part, no leading or trailing ``/``), up to 250 characters; its file store keeps each metric
in a file named by its name, so no name may also be the folder of another (``eval/roc_auc``
and ``eval/roc_auc/x`` cannot both be logged there). A slice label such as
``channel=branch & employment=null`` is no name part, so assay builds names this way (``P``
is the ``prefix``, ``m`` a metric, ``S`` a slice, ``K`` a compared model):

====================================  ============================================
``P/m``, ``P/m_lo``, ``P/m_hi``         the overall value and its interval bounds
``P/n``                                 the overall row count
``P/slice/S/m`` (``_lo``, ``_hi``, n)   the same for slice ``S`` (``slices=True``)
``P/delta/K/m`` (``_lo``, ``_hi``)      a comparison: ``K`` minus the reference
``P/delta/K/slice/S/m`` ...             the same for slice ``S``
====================================  ============================================

``S``, ``K`` and ``m`` are :func:`safe_name` of the label, the model and the metric: a text
made of ASCII letters, digits, ``_ - .`` only (at most 48 characters, not ``.``/``..``) is
kept as it is; otherwise each run of other characters becomes ``_`` (spaces, ``=``, ``&``,
``<``, ``>``, non-ASCII letters...; dropped at both ends), the result is cut to 48
characters, and ``-`` and the
first 8 hex digits of the SHA-256 of the original text (UTF-8) are appended, so that two
labels that read alike stay apart: ``channel=branch`` becomes
``channel_branch-377f52e6``. The names are deterministic (the same label gives the same name
in every run and process, so runs line up in the MLflow UI). ``slice`` and ``delta`` are
never a metric's part, so no name is the folder of another; :func:`metrics` checks that the
slices' names are distinct and raises otherwise. Undefined (null) values are not logged.

Per-slice metrics are many (slices x metrics x 3 with intervals), so ``max_slices``
(default 100) bounds them: with more slices, the largest ``max_slices`` by row count are
logged (with a warning); the full table is always in the ``slices.json`` artifact.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._args import bool_arg, int_arg, show
from ._compare import Comparison
from .errors import InvalidArgumentError
from .report import Report

__all__ = ["log", "metrics", "safe_name"]

_MISSING_MLFLOW = 'assay.mlflow needs mlflow: pip install "assay[mlflow]"'
_MISSING_PANDAS = ('assay.mlflow needs pandas to log the slice table (mlflow.log_table takes '
                   'pandas): pip install "assay[mlflow]", or pass artifacts=False')

# mlflow/utils/validation.py: names match [/\w.\- :]* (no ':' on Windows), survive
# posixpath.normpath unchanged, and are at most MAX_ENTITY_KEY_LENGTH (250) characters. A part
# of a name is kept to the ASCII subset (no space, no colon): valid on every platform and
# every store, and free of quoting in MLflow's search syntax.
_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
_MAX_PART = 48
# The folders of slice and delta names, which no metric's part may equal.
_FOLDERS = frozenset({"slice", "delta"})
_MAX_NAME = 250
# MLflow's param value limit is 6000 characters since 2.x but 500 in older servers and
# stores: a param is cut to the lower one (the whole spec is in spec.json).
_MAX_PARAM = 500
# Entities per log_batch request (mlflow/utils/validation.py).
_BATCH_METRICS = 1000
_BATCH_PARAMS = 100


def safe_name(text: str) -> str:
    """The part of an MLflow metric name that stands for ``text`` (a slice label, a model, a
    metric): ``text`` itself when it is made of ASCII letters, digits, ``_ - .`` (at most 48
    characters, not ``.`` or ``..``); otherwise ``text`` with each run of other characters
    replaced by ``_`` (dropped at both ends), cut to 48 characters, then ``-`` and the first 8
    hex digits of the SHA-256 of ``text`` (UTF-8), so that labels that differ only in the
    replaced characters stay distinct.

    >>> from assay.mlflow import safe_name
    >>> safe_name("roc_auc")
    'roc_auc'
    >>> safe_name("channel=branch & employment=null")
    'channel_branch_employment_null-3e930dc9'
    >>> safe_name("channel=branch") != safe_name("channel<branch")
    True
    """
    if not isinstance(text, str):
        raise InvalidArgumentError(f"safe_name takes a str, got {show(text)}")
    if len(text) <= _MAX_PART and _SAFE.fullmatch(text) and text not in (".", ".."):
        return text
    stem = _UNSAFE.sub("_", text).strip("_")[:_MAX_PART]
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{stem}-{digest}"


def _prefix_arg(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise InvalidArgumentError(f"prefix must be a str, got {show(prefix)}")
    if prefix == "":
        return prefix
    parts = prefix.split("/")
    if not all(_SAFE.fullmatch(p) and p not in (".", "..") for p in parts):
        raise InvalidArgumentError(
            f"prefix must be '' or parts of ASCII letters, digits, '_', '-', '.' joined by '/' "
            f"(an MLflow metric name), got {show(prefix)}")
    return prefix


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _result_arg(result: Any) -> None:
    if not isinstance(result, (Report, Comparison)):
        raise InvalidArgumentError(
            f"assay.mlflow logs an assay.Report or an assay.Comparison, got {show(result)}")


def _rows(table: pa.Table, slices: bool,
          max_slices: int | None) -> tuple[int | None, np.ndarray, int]:
    """The overall row of a report table (None without one), the rows whose slice metrics
    are logged, in table order: each label once (its first row), at most ``max_slices`` of
    them (the largest by ``n``, ties in table order); and the number of slices."""
    labels = np.asarray(table.column("slice").to_pylist(), dtype=object)
    is_overall = labels == "overall"
    overall = int(np.argmax(is_overall)) if is_overall.any() else None
    if not slices or len(labels) == 0:
        return overall, np.empty(0, dtype=np.int64), 0
    _, first = np.unique(labels, return_index=True)
    keep = np.sort(first)
    keep = keep[~is_overall[keep]]
    total = len(keep)
    if max_slices is not None and total > max_slices:
        n = table.column("n").to_numpy().astype(np.float64)
        keep = np.sort(keep[np.lexsort((keep, -n[keep]))][:max_slices])
    return overall, keep, total


def _values(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column as float64 values and a validity mask."""
    col = table.column(column)
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    values = pc.fill_null(pc.cast(col, pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    return values, valid


def _report_metrics(rep: Report, prefix: str, slices: bool,
                    max_slices: int | None) -> tuple[dict[str, float], dict[str, str], int]:
    """The metrics of a report, the safe names of the slices logged (label -> name), and
    the number of slices."""
    table = rep.to_arrow()
    overall, rows, total = _rows(table, slices, max_slices)
    labels = table.column("slice").take(pa.array(rows, pa.int64())).to_pylist()
    names = [safe_name(s) for s in labels]
    columns: list[tuple[str, str]] = [("n", "n")] if "n" in table.column_names else []
    for m in rep.metrics:
        base = safe_name(m)
        columns.append((m, base))
        columns += [(f"{m}{b}", f"{base}{b}") for b in ("_lo", "_hi")
                    if f"{m}{b}" in table.column_names]
    clash = [m for m, name in columns if name in _FOLDERS]
    if clash:  # no registered metric is; a folder name must never be a leaf too
        raise InvalidArgumentError(f"metric {clash[0]!r} cannot be named in MLflow by assay")
    out: dict[str, float] = {}
    for column, name in columns:
        values, valid = _values(table, column)
        if overall is not None and valid[overall]:
            out[_join(prefix, name)] = float(values[overall])
        for i, s in zip(rows.tolist(), names, strict=True):
            if valid[i]:
                out[_join(prefix, "slice", s, name)] = float(values[i])
    return out, dict(zip(labels, names, strict=True)), total


def _delta_metrics(cmp: Comparison, prefix: str, keys: dict[str, str]) -> dict[str, float]:
    """The deltas of a comparison, overall and for the slices named in ``keys``."""
    table = cmp.to_arrow()
    wanted = pa.array(["overall", *keys])
    table = table.filter(pc.is_in(table.column("slice"), value_set=wanted))
    slice_, metric, model = (table.column(c).to_pylist() for c in ("slice", "metric", "model"))
    models = set(model)
    if len({safe_name(k) for k in models}) != len(models):
        raise InvalidArgumentError(
            f"two model names map to the same MLflow name: {sorted(models)}; rename one")
    where = {"overall": "", **{label: _join("slice", key) for label, key in keys.items()}}
    out: dict[str, float] = {}
    for column, suffix in (("delta", ""), ("delta_lo", "_lo"), ("delta_hi", "_hi")):
        values, valid = _values(table, column)
        for s, m, k, v, ok in zip(slice_, metric, model, values.tolist(), valid.tolist(),
                                  strict=True):
            if ok:
                name = _join(prefix, "delta", safe_name(k), where[s], safe_name(m) + suffix)
                out.setdefault(name, float(v))
    return out


def metrics(result: Report | Comparison, prefix: str = "eval", *, slices: bool = True,
            max_slices: int | None = 100) -> dict[str, float]:
    """The metrics :func:`log` logs, as ``{name: value}``: the overall values, row count and
    interval bounds, and with ``slices=True`` the same per slice (at most ``max_slices``
    slices, the largest by row count); for a :class:`assay.Comparison`, the reference
    model's metrics and every compared model's deltas. Names follow the module's scheme
    (``help(assay.mlflow)``, docs/mlflow.md); null values are left out.

    Parameters
    ----------
    result : Report or Comparison
    prefix : str
        The first part of every name (``""`` for none): ASCII letters, digits, ``_ - .``,
        parts joined by ``/``.
    slices : bool
        Also log per-slice metrics.
    max_slices : int or None
        At most this many slices' metrics (``None``: all).

    Examples
    --------
    >>> import assay, assay.mlflow
    >>> from assay.demo import make_data
    >>> rep = assay.evaluate(make_data(5_000, seed=0), label="churned", score="p_churn",
    ...                      slices=["country"], metrics=["roc_auc"], bootstrap=50, seed=0)
    >>> m = assay.mlflow.metrics(rep, prefix="eval")
    >>> [k for k in m if "/slice/" not in k]
    ['eval/n', 'eval/roc_auc', 'eval/roc_auc_lo', 'eval/roc_auc_hi']
    >>> m["eval/roc_auc"] == rep.table["roc_auc"][0]
    True
    >>> [k for k in m if k.endswith("/roc_auc")][:3]   # doctest: +NORMALIZE_WHITESPACE
    ['eval/roc_auc', 'eval/slice/country_BR-574ace17/roc_auc',
     'eval/slice/country_DE-4c76bf22/roc_auc']
    """
    out, warning = _metrics(result, prefix, slices, max_slices)
    if warning:
        warnings.warn(warning, UserWarning, stacklevel=2)
    return out


def _metrics(result: Any, prefix: Any, slices: Any,
             max_slices: Any) -> tuple[dict[str, float], str | None]:
    """:func:`metrics`, and the warning to give when slices were left out."""
    _result_arg(result)
    prefix = _prefix_arg(prefix)
    slices = bool_arg(slices, "slices", "assay.mlflow")
    if max_slices is not None:
        max_slices = int_arg(max_slices, "max_slices", "assay.mlflow", 0)
    report = result.reports[result.reference] if isinstance(result, Comparison) else result
    out, keys, total = _report_metrics(report, prefix, slices, max_slices)
    if isinstance(result, Comparison):
        # Under P/delta/, and "delta" is never a metric's part: no name is in both.
        out.update(_delta_metrics(result, prefix, keys))
    if len(set(keys.values())) != len(keys):
        raise InvalidArgumentError(
            "two slice labels map to the same MLflow name (an 8-digit hash collision); "
            "log with slices=False")
    long = [k for k in out if len(k) > _MAX_NAME]
    if long:
        raise InvalidArgumentError(
            f"metric name {long[0]!r} is longer than MLflow's {_MAX_NAME} characters: use a "
            "shorter prefix")
    warning = None
    if len(keys) < total:
        warning = (f"assay.mlflow: the report has {total} slices; the metrics of the "
                   f"{len(keys)} largest are logged (max_slices={max_slices}; the slices.json "
                   "artifact holds them all)")
    return out, warning


def _mlflow() -> Any:
    # importlib: the package "mlflow", never this module (assay.mlflow).
    try:
        return importlib.import_module("mlflow")
    except ImportError as e:
        raise ImportError(_MISSING_MLFLOW) from e


def _provenance(result: Any) -> dict[str, Any] | None:
    prov = getattr(result, "provenance", None)
    return None if prov is None else prov.to_dict()


def _params(spec: dict[str, Any] | None, prefix: str) -> dict[str, str]:
    """The spec's options as params ``P/spec/<option>``: strings as they are, other values as
    compact JSON, None left out, each cut to 500 characters (ending in ``...``)."""
    out: dict[str, str] = {}
    for key, value in (spec or {}).items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if len(text) > _MAX_PARAM:
            text = text[:_MAX_PARAM - 3] + "..."
        out[_join(prefix, "spec", safe_name(str(key)))] = text
    return out


def _tags(prov: dict[str, Any] | None) -> dict[str, str]:
    from . import __version__

    prov = prov or {}
    tags = {"assay.version": str(prov.get("assay_version") or __version__)}
    if prov.get("git_commit"):
        tags["assay.git_commit"] = str(prov["git_commit"])
    return tags


def _pandas(table: pa.Table) -> Any:
    """A table as the pandas frame ``mlflow.log_table`` takes (it refuses polars and Arrow):
    integers and booleans nullable (an int column with nulls stays ints), dictionaries
    decoded, and every type JSON cannot hold (dates, times, decimals, binary, nested) as
    its string form. Nulls are written as JSON ``null``."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(_MISSING_PANDAS) from e
    columns = []
    for field, col in zip(table.schema, table.columns, strict=True):
        t = field.type
        if pa.types.is_dictionary(t):
            col, t = col.cast(t.value_type), t.value_type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
            col = pc.cast(col, pa.string())
        columns.append(col)
    nullable = {
        pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    frame = pa.table(columns, names=table.column_names).to_pandas(types_mapper=nullable.get)
    # Text as object columns, as pandas 2 has them: log_table selects "object" columns, which
    # for pandas 3's "str" columns warns (Pandas4Warning).
    text = [c for c, col in zip(table.column_names, columns, strict=True)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)]
    return frame.astype(dict.fromkeys(text, object)) if text else frame


def _folders(names: Any) -> set[str]:
    """Every folder of the names: ``a`` and ``a/b`` for ``a/b/c``."""
    out = set()
    for n in names:
        i = n.find("/")
        while i != -1:
            out.add(n[:i])
            i = n.find("/", i + 1)
    return out


def _check_folders(new: dict[str, float], store_metrics: dict[str, float], run_id: str) -> None:
    """Refuse names that would be the folder of a logged name, or the reverse (another
    prefix's names, such as ``eval/roc_auc`` and ``eval/roc_auc/...``): MLflow's file store
    cannot hold both, and the other stores would mix the two results."""
    clash = (_folders(new) & store_metrics.keys()) | (_folders(store_metrics) & new.keys())
    if clash:
        raise InvalidArgumentError(
            f"run {run_id} holds metric names that clash with this prefix's "
            f"({sorted(clash)[0]!r} would be both a metric and a folder of metrics): log "
            "under a prefix that is not inside another's")


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def log(result: Report | Comparison, prefix: str = "eval", *, run_id: str | None = None,
        artifacts: bool = True, slices: bool = True, max_slices: int | None = 100) -> str:
    """Log a :class:`assay.Report` or :class:`assay.Comparison` to an MLflow run.

    What is logged (``P`` is ``prefix``; names in the module docstring and docs/mlflow.md):

    - **metrics**: :func:`metrics` (overall values, row count, interval bounds, per-slice
      values; a comparison's deltas), all at step 0 with one timestamp;
    - **params**: the spec's options (``rep.provenance.spec``) as ``P/spec/<option>``, e.g.
      ``eval/spec/bootstrap``; lists and dicts as compact JSON, cut to 500 characters;
    - **tags**: ``assay.version`` and ``assay.git_commit`` (when known);
    - **artifacts** (``artifacts=True``), under the folder ``P``: ``slices.json`` (the slice
      table, by ``mlflow.log_table``: shown in the MLflow UI; floats to 10 decimals, nulls as
      ``null``), for a comparison also ``comparison.json`` (the comparison's table);
      ``spec.json`` and ``provenance.json``; ``report.assay.parquet`` (or
      ``comparison.assay.parquet``: the exact result, :func:`assay.load` reads it back) and
      ``report.html`` (``comparison.html``), when the result can write them.

    One call per prefix and run: MLflow params cannot change and ``log_table`` appends to an
    existing table, so a run whose ``P/slices.json`` exists is refused before anything is
    logged; log a second result under another prefix (``"val"``, ``"test"``).

    Parameters
    ----------
    result : Report or Comparison
    prefix : str
        The first part of every metric and param name and the artifact folder (``""``: none).
    run_id : str, optional
        The run to log to. Default: the active run, or a new one if none is active (as
        ``mlflow.log_metric`` does; end it with ``mlflow.end_run()``).
    artifacts : bool
        Also log the files (otherwise metrics, params and tags only).
    slices, max_slices
        Per-slice metrics, at most ``max_slices`` slices (see :func:`metrics`).

    Returns
    -------
    str
        The run id.

    Raises
    ------
    ImportError
        mlflow (or, with artifacts, pandas) is not installed.
    InvalidArgumentError
        Not a Report or Comparison, an invalid prefix, or the run already has this prefix's
        table.

    Examples
    --------
    >>> import assay, assay.mlflow, mlflow                             # doctest: +SKIP
    >>> rep = assay.evaluate(df, label="y", score="p", slices=["channel"],
    ...                      bootstrap=1000)                          # doctest: +SKIP
    >>> with mlflow.start_run():                                      # doctest: +SKIP
    ...     assay.mlflow.log(rep, prefix="eval")
    """
    values, warning = _metrics(result, prefix, slices, max_slices)
    prefix = _prefix_arg(prefix)
    artifacts = bool_arg(artifacts, "artifacts", "assay.mlflow.log")
    if run_id is not None and not isinstance(run_id, str):
        raise InvalidArgumentError(f"run_id must be a str or None, got {show(run_id)}")
    mlflow = _mlflow()
    entities = importlib.import_module("mlflow.entities")
    prov = _provenance(result)
    spec = (prov or {}).get("spec")
    params = _params(spec, prefix)
    tags = _tags(prov)
    kind = "comparison" if isinstance(result, Comparison) else "report"
    tables: dict[str, Any] = {}
    if artifacts:  # converted before anything is logged: a missing pandas fails early
        report = result.reports[result.reference] if isinstance(result, Comparison) else result
        tables["slices.json"] = _pandas(report.to_arrow())
        if isinstance(result, Comparison):
            tables["comparison.json"] = _pandas(result.to_arrow())

    client = mlflow.tracking.MlflowClient()
    if run_id is None:
        run = mlflow.active_run() or mlflow.start_run()
        run_id = run.info.run_id
    folder = prefix or None
    if artifacts:
        existing = {f.path for f in client.list_artifacts(run_id, folder)}
        if _join(prefix, "slices.json") in existing:
            raise InvalidArgumentError(
                f"run {run_id} already holds {_join(prefix, 'slices.json')}: log this result "
                "under another prefix (MLflow params cannot change, and log_table appends)")

    _check_folders(values, store_metrics=client.get_run(run_id).data.metrics, run_id=run_id)
    if warning:
        warnings.warn(warning, UserWarning, stacklevel=2)
    now = int(time.time() * 1000)
    metric_list = [entities.Metric(k, v, now, 0) for k, v in values.items()]
    param_list = [entities.Param(k, v) for k, v in params.items()]
    tag_list = [entities.RunTag(k, v) for k, v in tags.items()]
    for batch in _batches(metric_list, _BATCH_METRICS):
        client.log_batch(run_id, metrics=batch)
    for batch in _batches(param_list, _BATCH_PARAMS):
        client.log_batch(run_id, params=batch)
    client.log_batch(run_id, tags=tag_list)
    if not artifacts:
        return run_id

    for name, frame in tables.items():
        client.log_table(run_id, data=frame, artifact_file=_join(prefix, name))
    if spec is not None:
        client.log_dict(run_id, spec, _join(prefix, "spec.json"))
    if prov is not None:
        client.log_dict(run_id, prov, _join(prefix, "provenance.json"))
    with tempfile.TemporaryDirectory(prefix="assay-mlflow-") as tmp:
        files = []
        if hasattr(result, "save"):
            files.append(Path(tmp) / f"{kind}.assay.parquet")
            result.save(files[-1])
        if hasattr(result, "to_html"):
            files.append(Path(tmp) / f"{kind}.html")
            result.to_html(files[-1])
        for path in files:
            client.log_artifact(run_id, str(path), folder)
    return run_id

