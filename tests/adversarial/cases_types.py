"""Types: every Arrow type in every role (label, score, weight, slice).

A type the engine accepts must give the same numbers as the plain int64/float64 column it
stands for; a type it refuses must be refused with a typed error naming the column. Nested
types and the null type are refused. The plain numeric types of a role share one child (they
are the well-trodden path); every exotic type runs alone.
"""

from __future__ import annotations

import decimal
from typing import Any

import numpy as np
import pyarrow as pa
from _harness import add, check, close, evaluate, row, same_metrics

N = 120
RNG = np.random.default_rng(7)
Y = RNG.integers(0, 2, N)
S_INT = np.clip(np.round(30 * Y + 70 * RNG.random(N)), 0, 100).astype(np.int64)  # 0..100
W_INT = RNG.integers(1, 5, N)  # 1..4
G_INT = RNG.integers(0, 4, N)  # 0..3
RANK_METRICS = ["accuracy", "precision", "recall", "mcc", "roc_auc", "average_precision"]

INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOATS = ["float32", "float64"]


def _cast(values: np.ndarray, t: str) -> pa.Array:
    """``values`` (small non-negative integers) as an Arrow array of type ``t``."""
    v = [int(x) for x in values]
    if t in INTS or t in FLOATS:
        return pa.array(np.asarray(values), pa.int64()).cast(t)
    if t == "float16":
        return pa.array(np.asarray(values, dtype=np.float16))
    if t == "bool":
        return pa.array([bool(x) for x in v])
    if t in ("decimal128", "decimal256"):
        typ = pa.decimal128(12, 3) if t == "decimal128" else pa.decimal256(40, 3)
        return pa.array([decimal.Decimal(x) for x in v], typ)
    if t in ("string", "large_string", "string_view"):
        return pa.array([str(x) for x in v]).cast({"string": pa.string(),
                                                     "large_string": pa.large_string(),
                                                     "string_view": pa.string_view()}[t])
    if t == "binary":
        return pa.array([str(x).encode() for x in v], pa.binary())
    if t == "dict_string":
        return pa.array([str(x) for x in v]).dictionary_encode()
    if t == "dict_int8_large_string":
        return pa.array([str(x) for x in v], pa.large_string()).dictionary_encode().cast(
            pa.dictionary(pa.int8(), pa.large_string()))
    if t == "dict_uint64_int":
        return pa.array(v, pa.int64()).dictionary_encode().cast(
            pa.dictionary(pa.uint64(), pa.int64()))
    if t == "date32":
        return pa.array(v, pa.int32()).cast(pa.date32())
    if t == "timestamp":
        return pa.array(v, pa.int64()).cast(pa.timestamp("us"))
    if t == "duration":
        return pa.array(v, pa.int64()).cast(pa.duration("s"))
    if t == "null":
        return pa.nulls(len(v))
    if t == "list":
        return pa.array([[x] for x in v], pa.list_(pa.int64()))
    if t == "large_list":
        return pa.array([[x] for x in v], pa.large_list(pa.int64()))
    if t == "struct":
        return pa.StructArray.from_arrays([pa.array(v, pa.int64())], ["a"])
    if t == "chunked_offset":
        a = pa.array(np.concatenate([[9, 9, 9], values, [9]]), pa.int64())
        h = len(v) // 2
        return pa.chunked_array([a.slice(3, h), a.slice(3 + h, len(v) - h)])
    raise AssertionError(t)


def _table(**cols: Any) -> pa.Table:
    base = {"y": pa.array(Y), "s": pa.array(S_INT.astype(np.float64)),
            "w": pa.array(W_INT.astype(np.float64)), "g": pa.array(G_INT)}
    base.update(cols)
    return pa.table(base)


def _check_role(role: str, t: str) -> None:
    values = {"y": Y, "s": S_INT, "w": W_INT, "g": G_INT}[role]
    if t == "bool":
        values = (values != 0).astype(np.int64)
    col = _cast(values, t)
    kw: dict[str, Any] = {"label": "y", "score": "s", "metrics": RANK_METRICS,
                          "threshold": 0.5 if t == "bool" else 50.0}
    if role == "w":
        kw["weight"] = "w"
    if role == "g":
        kw["slices"] = ["g"]
    rep = evaluate(_table(**{role: col}), **kw)
    plain = pa.array(values.astype(np.float64) if role in ("s", "w") else values)
    ref = evaluate(_table(**{role: plain}), **kw)
    if role != "g":
        same_metrics(rep, ref, f"{role} as {t}")
        return
    # Slice labels depend on the type: compare the overall row and the multiset of slices.
    close(row(rep)["roc_auc"], row(ref)["roc_auc"], "overall roc_auc")

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["n"], *(None if r[m] is None else round(r[m], 9) for m in RANK_METRICS))

    got = sorted(key(r) for r in rep.to_arrow().to_pylist()[1:])
    want = sorted(key(r) for r in ref.to_arrow().to_pylist()[1:])
    check(got == want, f"slices of g as {t}: {got} != {want}")
    labels = rep.to_arrow().column("slice").to_pylist()
    check(len(set(labels)) == len(labels), f"duplicate slice labels {labels}")


def _batch(role: str, types: list[str]):  # type: ignore[no-untyped-def]
    def body() -> None:
        for t in types:
            _check_role(role, t)

    return body


def _single(role: str, t: str):  # type: ignore[no-untyped-def]
    return lambda: _check_role(role, t)


NAMES = {"y": "label", "s": "score", "w": "weight", "g": "slice"}
COLUMN_WORD = {"y": r"\by\b|label", "s": r"\bs\b|score", "w": r"\bw\b|weight", "g": r"\bg\b|slice"}

# Plain numeric types: one child per role.
add("types-label-plain", _batch("y", INTS + FLOATS + ["bool", "chunked_offset"]))
add("types-score-plain", _batch("s", INTS + FLOATS + ["chunked_offset"]))
add("types-weight-plain", _batch("w", INTS + FLOATS + ["chunked_offset"]))
add("types-slice-plain", _batch("g", INTS + ["chunked_offset"]))

# Close cousins of the exotic types below, one child per role (they share the code paths).
COUSINS = ["decimal256", "dict_int8_large_string", "duration", "large_list"]


def _cousins(role: str):  # type: ignore[no-untyped-def]
    def body() -> None:
        import assay

        for t in COUSINS:
            try:
                _check_role(role, t)
            except assay.AssayError as e:
                check(bool(str(e)), f"{t}: empty message")

    return body


for _r in ("y", "s", "w", "g"):
    add(f"types-{NAMES[_r]}-cousins", _cousins(_r))

# Exotic types, one child each. expect: what a clean engine may do with them.
EITHER = ("ok", "typed")
EXOTIC: dict[str, dict[str, Any]] = {
    # type: {role: expectation}
    "float16": {"y": EITHER, "s": EITHER, "w": EITHER, "g": "typed"},
    "decimal128": {"y": EITHER, "s": EITHER, "w": EITHER, "g": EITHER},
    "string": {"y": EITHER, "s": "typed", "w": "typed", "g": "ok"},
    "large_string": {"y": EITHER, "s": "typed", "w": "typed", "g": "ok"},
    "string_view": {"y": EITHER, "s": "typed", "w": "typed", "g": EITHER},
    "binary": {"y": EITHER, "s": "typed", "w": "typed", "g": EITHER},
    "dict_string": {"y": EITHER, "s": "typed", "w": "typed", "g": "ok"},
    "dict_uint64_int": {"y": EITHER, "s": EITHER, "w": EITHER, "g": EITHER},
    "bool": {"s": EITHER, "w": EITHER, "g": "ok"},
    "float64": {"g": "typed"},
    "date32": {"y": EITHER, "s": EITHER, "w": "typed", "g": EITHER},
    "timestamp": {"y": EITHER, "s": EITHER, "w": "typed", "g": EITHER},
    "null": {"y": "typed", "s": "typed", "w": "typed", "g": EITHER},
    "list": {"y": "typed", "s": "typed", "w": "typed", "g": "typed"},
    "struct": {"y": "typed", "s": "typed", "w": "typed", "g": "typed"},
}

for _t, _roles in EXOTIC.items():
    for _role, _exp in _roles.items():
        add(f"types-{NAMES[_role]}-{_t}", _single(_role, _t), expect=_exp,
            words=[COLUMN_WORD[_role]])
