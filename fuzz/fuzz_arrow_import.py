"""Fuzz target (atheris / libFuzzer) for assay's Arrow import path.

Each input is turned into one ``assay.evaluate`` call:

* most of the time a random table: label / score / weight / slice columns of random Arrow
  types (numeric widths, float16, decimal, bool, dictionary, large and view strings, null,
  nested) holding random values (nulls, NaN, +-inf, subnormals, huge numbers, labels 2 / -1 /
  0.5, odd strings with NUL, ESC, bidi marks, invalid-looking UTF-8 sequences), split into
  random record batches, sometimes behind a reader whose declared schema disagrees with its
  batches;
* sometimes the raw bytes as an Arrow IPC stream, or written to a .parquet / .arrow / .csv file;

with random options (metrics incl. F-beta and calibration metrics, threshold, nan_policy,
auc="binned" and auc_bins, bootstrap, ci_method, min_slice_size, bins, threads).

Only a result or an ``assay.AssayError`` is accepted. Anything else (another exception, a
crash, a hang past ``-timeout``) is a finding. A result must also hold its invariants: no NaN
or inf in a metric column, ``n`` of ``overall`` equal to the rows read minus the rows dropped,
and the slices of every spec partitioning the rows.

Run it bounded (what CI does, through ``fuzz/run_bounded.py``)::

    python fuzz/fuzz_arrow_import.py -seed=1 -runs=2000 -timeout=30

or long (see docs/hardening.md)::

    mkdir -p fuzz/corpus && python fuzz/fuzz_arrow_import.py fuzz/corpus -max_total_time=3600 \
        -timeout=30 -rss_limit_mb=6144 -artifact_prefix=fuzz/findings/
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import warnings
from typing import Any

import atheris

os.environ.setdefault("ASSAY_ALLOW_DEBUG_BUILD", "1")

with atheris.instrument_imports(include=["assay"]):
    import assay

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

METRICS = list(assay.METRICS) + list(assay.CALIBRATION_METRICS)
SPECIAL_FLOATS = [0.0, -0.0, 1.0, 0.5, math.nan, math.inf, -math.inf, 5e-324,
                  2.2250738585072014e-308, 1e-300, 1e300, 1.7976931348623157e308, -1.0, 1e-16,
                  1 - 1e-16, 2.0]
LABEL_VALUES = [0, 1, 0, 1, 0, 1, None, 2, -1]
ODD_STRINGS = ["", "a", "b", "a\x00b", "\x1b[31m", "\u202eevil", "line\nbreak", "tab\t", "\ud7ff",
               "\u00e9", "x" * 300, "null", "overall", "a=b", " & ", "\x7f", "\x9b"]

# The first type of each list is the plain one (an exhausted input picks index 0).
INT_TYPES = [pa.int64(), pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16(),
             pa.uint32(), pa.uint64()]
FLOAT_TYPES = [pa.float64(), pa.float32(), pa.float16()]


def _float(fdp: Any) -> float:
    k = fdp.ConsumeIntInRange(0, 7)
    if k == 0:
        return fdp.PickValueInList(SPECIAL_FLOATS)
    if k == 1:
        return fdp.ConsumeRegularFloat()
    if k == 2:
        return fdp.ConsumeFloat()
    return fdp.ConsumeProbability()


def _values(fdp: Any, role: str, n: int) -> list[Any]:
    null_rate = fdp.PickValueInList([0, 0, 0, 1, 5])
    out: list[Any] = []
    for _ in range(n):
        if null_rate and fdp.ConsumeIntInRange(0, 9) < null_rate:
            out.append(None)
        elif role == "label":
            v = fdp.PickValueInList(LABEL_VALUES[:6] if fdp.ConsumeBool() else LABEL_VALUES)
            out.append(v if v is None or fdp.ConsumeIntInRange(0, 20) else 0.5)
        elif role in ("score", "weight"):
            out.append(_float(fdp) if role == "score" else abs(_float(fdp)) * 3)
        elif role == "slice_str":
            out.append(fdp.PickValueInList(ODD_STRINGS) if fdp.ConsumeBool()
                       else fdp.ConsumeUnicodeNoSurrogates(4))
        elif role == "slice_int":
            out.append(fdp.ConsumeIntInRange(-3, 3))
        else:  # slice_num
            out.append(_float(fdp) * fdp.PickValueInList([1, 10, 1e300]))
    return out


def _array(fdp: Any, values: list[Any], role: str) -> pa.Array:
    """``values`` as an Arrow array of a type picked for ``role`` (may fail: then plain)."""
    if role == "label":
        choices = INT_TYPES * 2 + FLOAT_TYPES + [pa.bool_(), pa.string(), pa.null(),
                                             pa.decimal128(5, 1)]
    elif role in ("score", "weight"):
        choices = [pa.float64()] * 6 + FLOAT_TYPES + INT_TYPES + [
            pa.decimal128(38, 10), pa.string(), pa.null(), pa.bool_(), pa.list_(pa.float64())]
    elif role == "slice_str":
        choices = [pa.string(), pa.large_string(), pa.string_view(),
                   pa.dictionary(pa.int8(), pa.string()),
                   pa.dictionary(pa.uint32(), pa.large_string())]
    elif role == "slice_int":
        choices = INT_TYPES + [pa.bool_(), pa.dictionary(pa.int16(), pa.int64()), pa.float64()]
    else:
        choices = FLOAT_TYPES + [pa.int64(), pa.decimal128(20, 5)]
    t = fdp.PickValueInList(choices)
    try:
        if isinstance(t, pa.ListType):
            return pa.array([None if v is None else [v] for v in values], t)
        if pa.types.is_dictionary(t):
            return pa.array(values).dictionary_encode().cast(t)
        if t == pa.null():
            return pa.nulls(len(values))
        if pa.types.is_string(t) and role != "slice_str":
            return pa.array([None if v is None else str(v) for v in values], t)
        if t == pa.float16():
            with np.errstate(over="ignore", invalid="ignore"):
                return pa.array(np.array([np.nan if v is None else v for v in values],
                                         dtype=np.float64).astype(np.float16))
        return pa.array(values).cast(t, safe=False)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        try:
            return pa.array(values)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return pa.array([None if v is None else str(v) for v in values])


def _stream(fdp: Any, table: pa.Table) -> Any:
    """The table as itself, as batches behind a reader (random splits), or behind a reader
    whose declared schema disagrees with its batches."""
    how = fdp.ConsumeIntInRange(0, 5)
    if how <= 1 or table.num_rows == 0:
        return table
    cuts = sorted({fdp.ConsumeIntInRange(0, table.num_rows)
                   for _ in range(fdp.ConsumeIntInRange(0, 4))})
    bounds = [0, *cuts, table.num_rows]
    batches = [b for a, z in zip(bounds, bounds[1:], strict=False)
               for b in table.slice(a, z - a).to_batches()]
    schema = table.schema
    if how == 5 and schema:
        i = fdp.ConsumeIntInRange(0, len(schema) - 1)
        lie = fdp.PickValueInList([pa.int64(), pa.float64(), pa.float32(), pa.string(),
                                   pa.uint8(), pa.bool_(), pa.large_string()])
        schema = schema.set(i, pa.field(schema.field(i).name, lie))
        if fdp.ConsumeBool():  # the batch has an extra or a missing column
            schema = schema.remove(i) if fdp.ConsumeBool() else schema.append(
                pa.field("extra", pa.int64()))
    return pa.RecordBatchReader.from_batches(schema, iter(batches))


def _raw(fdp: Any, data: bytes) -> Any:
    """The rest of the input as an IPC stream, or as a file of some extension."""
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    if fdp.ConsumeBool() if raw else False:
        try:
            return pa.ipc.open_stream(pa.py_buffer(raw))
        except pa.ArrowException:
            return None
    ext = [".parquet", ".arrow", ".csv", ".feather"][len(data) % 4]
    fd, path = tempfile.mkstemp(suffix=ext, prefix="assay-fuzz-")
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return path


def _options(fdp: Any, cols: dict[str, str | None], slice_cols: list[tuple[str, str]]) -> dict:
    kw: dict[str, Any] = {"label": "y", "score": "p"}
    if cols.get("w"):
        kw["weight"] = "w"
    specs: list[Any] = []
    for name, kind in slice_cols:
        if kind == "slice_num":
            if fdp.ConsumeBool():
                specs.append(assay.bins(name, fdp.ConsumeIntInRange(1, 6),
                                        strategy=fdp.PickValueInList(["quantile", "uniform"])))
            else:
                edges = sorted({e for e in (round(_float(fdp), 3) for _ in range(3))
                                if math.isfinite(e)})
                specs.append(assay.bins(name, edges=edges) if len(edges) >= 2 else name)
        else:
            specs.append(name)
    if len(specs) >= 2 and fdp.ConsumeBool():
        specs.append(tuple(specs[:2]))
    kw["slices"] = specs
    if fdp.ConsumeBool():
        k = fdp.ConsumeIntInRange(1, 5)
        ms = [fdp.PickValueInList(METRICS) for _ in range(k)]
        if fdp.ConsumeIntInRange(0, 3) == 3:
            ms.append(fdp.PickValueInList(["f0.5", "f2", "f1e200", "f1e-200", "f3.25"]))
        kw["metrics"] = list(dict.fromkeys(ms))
    if fdp.ConsumeBool():
        kw["threshold"] = _float(fdp)
    kw["nan_policy"] = fdp.PickValueInList(["raise", "drop", "drop"])
    # Rare options are picked by the top of a range: an exhausted input reads as 0 everywhere,
    # which must mean the plain path.
    if fdp.ConsumeIntInRange(0, 3) == 3:
        kw["auc"] = "binned"
        kw["auc_bins"] = fdp.ConsumeIntInRange(1, 64)
    if fdp.ConsumeIntInRange(0, 4) == 4:
        kw["bootstrap"] = fdp.ConsumeIntInRange(2, 12)
        kw["ci_method"] = fdp.PickValueInList(["percentile", "basic", "bca", "analytic"])
        kw["seed"] = fdp.ConsumeIntInRange(0, 2**64 - 1)
    elif fdp.ConsumeIntInRange(0, 6) == 6:
        kw["ci_method"] = "analytic"
    if fdp.ConsumeIntInRange(0, 4) == 4:
        kw["min_slice_size"] = fdp.ConsumeIntInRange(0, 10)
    if fdp.ConsumeIntInRange(0, 4) == 4:
        kw["calibration_bins"] = fdp.ConsumeIntInRange(1, 40)
        kw["calibration_strategy"] = fdp.PickValueInList(["uniform", "quantile"])
    kw["n_threads"] = fdp.ConsumeIntInRange(1, 3)
    return kw


def _check(rep: Any, kw: dict[str, Any]) -> None:
    """Invariants of a result; an AssertionError is a finding."""
    t = rep.to_arrow()
    names = t.column_names
    for m in rep.metrics:
        for c in (m, f"{m}_lo", f"{m}_hi"):
            if c in names:
                for i, v in enumerate(t.column(c).to_pylist()):
                    assert v is None or math.isfinite(v), (
                        f"metric column {c!r} holds {v!r} in slice {t.column('slice')[i]}")
    assert t.num_rows >= 1 and t.column("slice")[0].as_py() == "overall", "no overall row"
    n = t.column("n").to_pylist()
    assert n[0] == rep.rows - rep.dropped, f"overall n={n[0]} rows={rep.rows} dropped={rep.dropped}"
    assert sum(n[1:]) == n[0] * len(kw["slices"]), (
        f"slices n {n[1:]} do not partition {n[0]} rows {len(kw['slices'])} times")
    if "weight_sum" in names:
        for v in t.column("weight_sum").to_pylist():
            assert v is None or math.isfinite(v), f"weight_sum holds {v!r}"
    t.column("slice").to_pylist()  # valid UTF-8


STATS: dict[str, int] = {}
# FUZZ_NO_RAW=1 skips the raw-bytes inputs (files, IPC streams), to hunt in the table path only.
NO_RAW = bool(os.environ.get("FUZZ_NO_RAW"))


def _count(what: str) -> None:
    STATS[what] = STATS.get(what, 0) + 1
    total = sum(STATS.values())
    if total % 500 == 0:  # libFuzzer ends with _exit: no atexit hook, so report as we go
        print(f"fuzz outcomes after {total} calls: "
              + ", ".join(f"{k} {v}" for k, v in sorted(STATS.items())),
              file=sys.stderr, flush=True)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    path = None
    mode = fdp.ConsumeIntInRange(0, 15)
    kw: dict[str, Any]
    if mode == 15 and not NO_RAW:
        src = _raw(fdp, data)
        if src is None:
            return
        path = src if isinstance(src, str) else None
        kw = {"label": "y", "score": "p", "slices": [], "nan_policy": "drop"}
    else:
        n = 48 - fdp.ConsumeIntInRange(0, 48)
        cols: dict[str, Any] = {"y": _array(fdp, _values(fdp, "label", n), "label"),
                                "p": _array(fdp, _values(fdp, "score", n), "score")}
        if fdp.ConsumeIntInRange(0, 2) == 2:
            cols["w"] = _array(fdp, _values(fdp, "weight", n), "weight")
        slice_cols = []
        for j in range(fdp.ConsumeIntInRange(0, 2)):
            kind = fdp.PickValueInList(["slice_str", "slice_int", "slice_num"])
            cols[f"s{j}"] = _array(fdp, _values(fdp, kind, n), kind)
            slice_cols.append((f"s{j}", kind))
        table = pa.table(cols)
        kw = _options(fdp, {"w": "w" if "w" in cols else None}, slice_cols)
        src = _stream(fdp, table)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = assay.evaluate(src, **kw)
    except assay.AssayError as e:
        _count(type(e).__name__)
        if os.environ.get("FUZZ_VERBOSE"):
            print(f"{type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        return
    finally:
        if path is not None:
            os.unlink(path)
    _check(rep, kw)
    _count("result")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
