"""Streams: readers whose batches disagree with the declared schema, malformed arrays,
generators failing mid-stream, exhausted readers, lazy frames failing at collect, and the
list/dict conversions of in-memory inputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from _harness import Wrong, case, check, close, evaluate, row, same_metrics, toy

EITHER = ("ok", "typed")
MISMATCH = [r"schema|declared|type|match|expected"]


def _assay() -> Any:
    import assay

    return assay


def _reader(schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(schema, iter(batches))


# --- batches that disagree with the declared schema (the C1, C2) ----------------------


@case(expect="typed", words=MISMATCH)
def streams_c1_uint8_declared_int64_1m() -> None:
    """The issue's C1, verbatim: reads past a buffer today."""
    n = 1 << 20
    s = pa.schema([("y", pa.int64()), ("p", pa.float64())])
    b = pa.record_batch([pa.array(np.zeros(n, np.uint8)), pa.array(np.full(n, 0.5))],
                        names=["y", "p"])
    evaluate(_reader(s, [b]), label="y", score="p")


def _declared_vs_data(declared: pa.DataType, role: str) -> None:
    """A reader declaring ``declared`` for ``role`` but carrying the data's own type: a typed
    error, or the right numbers (never plausible garbage)."""
    d = toy(2000, seed=11)
    cols = {"y": pa.array(d["y"]), "p": pa.array(d["p"])}
    if role == "y":
        cols["y"] = pa.array(d["y"].astype(np.uint8))
    else:
        cols["p"] = pa.array(d["p"].astype(np.float32))
    b = pa.record_batch(list(cols.values()), names=list(cols))
    fields = [pa.field("y", declared if role == "y" else pa.int64()),
              pa.field("p", declared if role == "p" else pa.float64())]
    rep = evaluate(_reader(pa.schema(fields), [b]), label="y", score="p",
                   metrics=["accuracy", "roc_auc"])
    ref = evaluate(pa.table(cols), label="y", score="p", metrics=["accuracy", "roc_auc"])
    same_metrics(rep, ref, f"{role} declared {declared}")


@case(expect=EITHER, words=MISMATCH)
def streams_float32_data_declared_float64() -> None:
    _declared_vs_data(pa.float64(), "p")


@case(expect=EITHER, words=MISMATCH)
def streams_uint8_data_declared_int64_small() -> None:
    _declared_vs_data(pa.int64(), "y")


@case(expect=EITHER, words=MISMATCH)
def streams_float64_data_declared_float32() -> None:
    d = toy(500)
    b = pa.record_batch([pa.array(d["y"]), pa.array(d["p"])], names=["y", "p"])
    s = pa.schema([("y", pa.int64()), ("p", pa.float32())])
    rep = evaluate(_reader(s, [b]), label="y", score="p", metrics=["roc_auc"])
    ref = evaluate(pa.table(b), label="y", score="p", metrics=["roc_auc"])
    same_metrics(rep, ref, "float64 data declared float32")


@case(expect="typed", words=MISMATCH)
def streams_extra_column_in_batch() -> None:
    d = toy(100)
    s = pa.schema([("y", pa.int64()), ("p", pa.float64())])
    b = pa.record_batch([pa.array(d["y"]), pa.array(d["p"]), pa.array(d["g"])],
                        names=["y", "p", "g"])
    evaluate(_reader(s, [b]), label="y", score="p")


@case(expect="typed", words=MISMATCH)
def streams_missing_column_in_batch() -> None:
    d = toy(100)
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("g", pa.int64())])
    b = pa.record_batch([pa.array(d["y"]), pa.array(d["p"])], names=["y", "p"])
    evaluate(_reader(s, [b]), label="y", score="p", slices=["g"])


@case(expect="typed", words=MISMATCH)
def streams_string_declared_int64_data() -> None:
    d = toy(100)
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("g", pa.string())])
    b = pa.record_batch([pa.array(d["y"]), pa.array(d["p"]), pa.array(d["g"])],
                        names=["y", "p", "g"])
    evaluate(_reader(s, [b]), label="y", score="p", slices=["g"])


@case(expect="typed", words=MISMATCH)
def streams_int64_declared_string_data() -> None:
    d = toy(100)
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("g", pa.int64())])
    b = pa.record_batch([pa.array(d["y"]), pa.array(d["p"]),
                         pa.array([str(v) for v in d["g"]])], names=["y", "p", "g"])
    evaluate(_reader(s, [b]), label="y", score="p", slices=["g"])


@case(expect=EITHER, words=MISMATCH)
def streams_columns_reordered_in_batch() -> None:
    d = toy(100)
    s = pa.schema([("y", pa.int64()), ("p", pa.float64())])
    b = pa.record_batch([pa.array(d["p"]), pa.array(d["y"])], names=["p", "y"])
    rep = evaluate(_reader(s, [b]), label="y", score="p", metrics=["roc_auc"])
    ref = evaluate({"y": d["y"], "p": d["p"]}, label="y", score="p", metrics=["roc_auc"])
    same_metrics(rep, ref, "reordered columns")


@case(expect="typed", words=MISMATCH)
def streams_second_batch_mismatch() -> None:
    """The first batch is fine, the second is not."""
    d = toy(200)
    s = pa.schema([("y", pa.int64()), ("p", pa.float64())])
    ok = pa.record_batch([pa.array(d["y"][:100]), pa.array(d["p"][:100])], schema=s)
    bad = pa.record_batch([pa.array(d["y"][100:].astype(np.int8)),
                           pa.array([str(v) for v in d["p"][100:]])], names=["y", "p"])
    evaluate(_reader(s, [ok, bad]), label="y", score="p", slices=[])


# --- arrays whose buffers lie about their type ------------------------------------------------


@case(expect="typed", words=[r"\bg\b|invalid|offset|buffer|dictionary|index"])
def streams_dictionary_index_out_of_range() -> None:
    d = toy(100)
    idx = pa.array((np.arange(100) % 7).astype(np.int8))  # dictionary has 2 values
    g = pa.DictionaryArray.from_arrays(idx, pa.array(["a", "b"]), safe=False)
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("g", g.type)])
    b = pa.RecordBatch.from_arrays([pa.array(d["y"]), pa.array(d["p"]), g], schema=s)
    evaluate(_reader(s, [b]), label="y", score="p", slices=["g"])


@case(expect="typed", words=[r"\bg\b|invalid|offset|buffer|utf"])
def streams_string_offsets_not_monotonic() -> None:
    """Offsets that jump past the data and back (only a full validation sees it)."""
    d = toy(100)
    off = np.arange(101, dtype=np.int32)
    off[1:100] = 1 << 20  # element 0 spans 1 MiB of a 100-byte buffer; the last offset is fine
    off[100] = 100
    g = pa.Array.from_buffers(pa.string(), 100, [None, pa.py_buffer(off.tobytes()),
                                                 pa.py_buffer(b"a" * 100)])
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("g", pa.string())])
    b = pa.RecordBatch.from_arrays([pa.array(d["y"]), pa.array(d["p"]), g], schema=s)
    evaluate(_reader(s, [b]), label="y", score="p", slices=["g"])


@case(expect=EITHER, words=[r"\bg\b|utf"])
def streams_invalid_utf8_slice() -> None:
    d = toy(4)
    raw = [b"ok", b"\xff\xfe", b"a\xc3", b"ok"]
    offsets = np.cumsum([0] + [len(r) for r in raw]).astype(np.int32)
    g = pa.Array.from_buffers(pa.string(), 4, [None, pa.py_buffer(offsets.tobytes()),
                                                pa.py_buffer(b"".join(raw))])
    rep = evaluate(pa.table({"y": d["y"], "p": d["p"], "g": g}), label="y", score="p",
                   slices=["g"], metrics=["accuracy"])
    try:
        labels = rep.to_arrow().column("slice").to_pylist()
    except UnicodeDecodeError as e:
        raise Wrong(f"the report's slice column holds invalid UTF-8: {e}") from e
    check(len(set(labels)) == len(labels) == 4, f"slice labels {labels}")


# --- failing / odd streams -------------------------------------------------------------------


def _gen(exc: BaseException | None, n_batches: int = 4) -> Iterator[pa.RecordBatch]:
    d = toy(400)
    for i in range(n_batches):
        if exc is not None and i == 2:
            raise exc
        sl = slice(i * 100, (i + 1) * 100)
        yield pa.record_batch([pa.array(d["y"][sl]), pa.array(d["p"][sl])], names=["y", "p"])


_S = pa.schema([("y", pa.int64()), ("p", pa.float64())])


@case(expect="typed", interrupt=True, words=["."])
def streams_generator_keyboard_interrupt() -> None:
    """A generator raising KeyboardInterrupt mid-stream: KeyboardInterrupt comes out."""
    try:
        evaluate(pa.RecordBatchReader.from_batches(_S, _gen(KeyboardInterrupt())),
                 label="y", score="p")
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        from _harness import Crash

        raise Crash(f"KeyboardInterrupt became {type(e).__name__}: {e}") from e


@case(expect="typed", words=["boom-7f3"])
def streams_generator_value_error() -> None:
    """A generator raising ValueError mid-stream: an AssayError that carries the message."""
    a = _assay()
    try:
        evaluate(pa.RecordBatchReader.from_batches(_S, _gen(ValueError("boom-7f3"))),
                 label="y", score="p")
    except a.AssayError as e:
        check(e.__cause__ is not None or "ValueError" in str(e),
              f"original exception lost: {e!r}")
        raise


@case(expect="typed", words=["exhaust|consumed|already|re-?used|once"])
def streams_exhausted_reader_reused() -> None:
    r = pa.RecordBatchReader.from_batches(_S, _gen(None))
    evaluate(r, label="y", score="p")
    evaluate(r, label="y", score="p")


@case(expect="typed", words=["empty|no rows"])
def streams_reader_without_batches() -> None:
    evaluate(pa.RecordBatchReader.from_batches(_S, iter([])), label="y", score="p")


@case()
def streams_zero_row_batches_interleaved() -> None:
    d = toy(300)
    empty = pa.record_batch([pa.array([], pa.int64()), pa.array([], pa.float64())], schema=_S)
    bs = []
    for i in range(3):
        sl = slice(i * 100, (i + 1) * 100)
        bs += [empty, pa.record_batch([pa.array(d["y"][sl]), pa.array(d["p"][sl])], schema=_S)]
    rep = evaluate(_reader(_S, bs + [empty]), label="y", score="p")
    ref = evaluate({"y": d["y"], "p": d["p"]}, label="y", score="p")
    same_metrics(rep, ref, "zero-row batches")


@case()
def streams_dictionary_changes_between_batches() -> None:
    """Each batch has its own dictionary: slices merge by value."""
    d = toy(200)
    g = np.array(["a", "b", "c", "d"])[d["g"]]
    t = pa.dictionary(pa.int32(), pa.string())
    bs = []
    for i in range(4):
        sl = slice(i * 50, (i + 1) * 50)
        dict_vals = ["a", "b", "c", "d"] if i % 2 == 0 else ["d", "c", "b", "a"]
        idx = pa.array([dict_vals.index(v) for v in g[sl]], pa.int32())
        vals = pa.DictionaryArray.from_arrays(idx, pa.array(dict_vals))
        bs.append(pa.record_batch([pa.array(d["y"][sl]), pa.array(d["p"][sl]), vals],
                                  schema=pa.schema([("y", pa.int64()), ("p", pa.float64()),
                                                    ("g", t)])))
    rep = evaluate(_reader(bs[0].schema, bs), label="y", score="p", slices=["g"])
    ref = evaluate({"y": d["y"], "p": d["p"], "g": g}, label="y", score="p", slices=["g"])
    same_metrics(rep, ref, "per-batch dictionaries")


@case(expect="typed", words=["collect|lazy|polars|invalid|conversion|integer|str"])
def streams_lazy_frame_fails_at_collect() -> None:
    import polars as pl

    lf = pl.LazyFrame({"y": [0, 1, 0, 1], "p": ["0.1", "x", "0.3", "0.9"]}).with_columns(
        pl.col("p").cast(pl.Float64, strict=True))
    evaluate(lf, label="y", score="p")


@case()
def streams_lazy_frame_ok() -> None:
    import polars as pl

    d = toy(300)
    lf = pl.LazyFrame({"y": d["y"], "p": d["p"], "g": d["g"]}).filter(pl.col("p") >= 0)
    rep = evaluate(lf, label="y", score="p", slices=["g"])
    ref = evaluate({"y": d["y"], "p": d["p"], "g": d["g"]}, label="y", score="p",
                   slices=["g"])
    same_metrics(rep, ref, "lazy frame")


@case()
def streams_pandas_nullable_and_categorical() -> None:
    import pandas as pd

    d = toy(200)
    g = np.array(["a", "b", "c"])[d["g"]]
    df = pd.DataFrame({"y": pd.array(d["y"], dtype="Int64"), "p": d["p"],
                       "g": pd.Categorical(g)})
    rep = evaluate(df, label="y", score="p", slices=["g"])
    ref = evaluate({"y": d["y"], "p": d["p"], "g": g}, label="y", score="p", slices=["g"])
    same_metrics(rep, ref, "pandas")


@case()
def streams_polars_string_views() -> None:
    import polars as pl

    d = toy(200)
    g = np.array(["a\u00e9", "b", "c" * 40])[d["g"]]
    rep = evaluate(pl.DataFrame({"y": d["y"], "p": d["p"], "g": g}), label="y", score="p",
                   slices=["g"])
    ref = evaluate(pa.table({"y": d["y"], "p": d["p"], "g": g}), label="y", score="p",
                   slices=["g"])
    same_metrics(rep, ref, "polars")


# --- dicts of Python lists and numpy object arrays --------------------------------------------


@case()
def streams_list_strings_with_nul() -> None:
    """Strings with NUL bytes stay distinct (np.asarray truncated and merged them)."""
    g = ["a\0b", "a\0c", "a", "b"] * 25
    d = toy(100)
    rep = evaluate({"y": d["y"].tolist(), "p": d["p"].tolist(), "g": g}, label="y",
                   score="p", slices=["g"], metrics=["accuracy"])
    n = rep.to_arrow().column("n").to_pylist()
    check(len(n) == 5 and n[1:] == [25] * 4, f"expected 4 slices of 25, got {n}")


@case(mem_gib=4.0)
def streams_list_one_huge_string() -> None:
    """One 1 MB string among 2,000 rows must not become a 2,000 x 1 MB numpy array."""
    d = toy(2000)
    g = ["x"] * 2000
    g[17] = "y" * (1 << 20)
    rep = evaluate({"y": d["y"].tolist(), "p": d["p"].tolist(), "g": g}, label="y",
                   score="p", slices=["g"], metrics=["accuracy"])
    check(rep.to_arrow().num_rows == 3, "expected overall + 2 slices")


@case(expect="typed", words=[r"\bp\b|score"])
def streams_list_score_with_string() -> None:
    evaluate({"y": [0, 1, 1], "p": [0.1, "0.2", 0.3]}, label="y", score="p")


@case(expect=EITHER, words=[r"\by\b|label"])
def streams_list_label_bools_and_ints() -> None:
    rep = evaluate({"y": [True, False, 1, 0], "p": [0.9, 0.1, 0.8, 0.2]}, label="y",
                   score="p", metrics=["accuracy"])
    close(row(rep)["accuracy"], 1.0, "accuracy")


@case()
def streams_table_offset_slices() -> None:
    """A table sliced at an odd offset (validity bitmaps not byte-aligned)."""
    d = toy(1000)
    p = pa.array([None if i % 97 == 0 else v for i, v in enumerate(d["p"])], pa.float64())
    t = pa.table({"y": d["y"], "p": p, "g": d["g"]}).slice(3, 901)
    rep = evaluate(t, label="y", score="p", slices=["g"], nan_policy="drop")
    tt = t.combine_chunks()
    keep = tt.column("p").is_valid().to_numpy(zero_copy_only=False)
    ref = evaluate({k: tt.column(k).to_numpy(zero_copy_only=False)[keep] for k in "ypg"},
                   label="y", score="p", slices=["g"])
    same_metrics(rep, ref, "offset slice")


# --- the other jobs read the same streams ------------------------------------------------------


def _lying_reader() -> pa.RecordBatchReader:
    n = 1 << 16
    s = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("q", pa.float64()),
                   ("g", pa.int64())])
    b = pa.record_batch([pa.array(np.zeros(n, np.uint8)), pa.array(np.full(n, 0.5)),
                         pa.array(np.full(n, 0.5, np.float32)),
                         pa.array(np.zeros(n, np.int8))], names=["y", "p", "q", "g"])
    return _reader(s, [b])


@case(expect="typed", words=MISMATCH)
def streams_reliability_lying_reader() -> None:
    _assay().reliability(_lying_reader(), label="y", score="p")


@case(expect="typed", words=MISMATCH)
def streams_compare_lying_reader() -> None:
    _assay().compare(_lying_reader(), label="y", scores=["p", "q"])


@case(expect="typed", words=MISMATCH)
def streams_discover_lying_reader() -> None:
    _assay().discover_slices(_lying_reader(), label="y", score="p", features=["g"],
                             min_support=10)


@case()
def streams_compare_extreme_weights() -> None:
    """compare() with weights of 1e300: finite numbers, equal to the unit-weight ones."""
    d = toy(300)
    data = {"y": d["y"], "p": d["p"], "q": np.clip(d["p"] + 0.05, 0, 1), "g": d["g"]}
    a = _assay().compare({**data, "w": np.full(300, 1e300)}, label="y", scores=["p", "q"],
                         weight="w", slices=["g"], metrics=["accuracy", "roc_auc", "log_loss"])
    b = _assay().compare({**data, "w": np.ones(300)}, label="y", scores=["p", "q"],
                         weight="w", slices=["g"], metrics=["accuracy", "roc_auc", "log_loss"])
    ta, tb = _frame(a), _frame(b)
    check(ta.columns == tb.columns, f"columns differ: {ta.columns} vs {tb.columns}")
    for c in ta.columns:
        if ta[c].dtype.is_float() and c != "weight_sum":
            for x, y in zip(ta[c].to_list(), tb[c].to_list(), strict=True):
                if y is None:
                    check(x is None, f"{c}: {x} where unit weights give null")
                else:
                    close(x, y, f"compare {c}", rtol=1e-9)


def _frame(result: Any) -> Any:
    return getattr(result, "table", result)


# --- where the stream is pulled: on the calling thread, on demand -----------------------------


@case(expect="ok")
def streams_thread_bound_source_sqlite() -> None:
    """A generator over a sqlite connection (usable only on the thread that made it) works:
    the stream is pulled on the calling thread, not on the job's thread."""
    import sqlite3

    from sklearn.metrics import roc_auc_score

    d = toy(3000)
    con = sqlite3.connect(":memory:")
    con.execute("create table t (y integer, p real)")
    con.executemany("insert into t values (?, ?)",
                    zip(d["y"].tolist(), d["p"].tolist(), strict=True))

    def gen() -> Iterator[pa.RecordBatch]:
        cur = con.execute("select y, p from t order by rowid")
        while rows := cur.fetchmany(500):
            y, p = zip(*rows, strict=True)
            yield pa.record_batch([pa.array(y, pa.int64()), pa.array(p)], schema=_S)

    rep = evaluate(pa.RecordBatchReader.from_batches(_S, gen()), label="y", score="p",
                   metrics=["roc_auc"])
    close(row(rep, "overall")["roc_auc"], float(roc_auc_score(d["y"], d["p"])), "roc_auc")


@case(expect="ok")
def streams_refused_spec_leaves_reader_unread() -> None:
    """A job the engine refuses before its pass (a string label) reads no batch, so the
    one-shot reader can still be used."""
    a = _assay()
    schema = pa.schema([("y", pa.string()), ("p", pa.float64())])
    pulled: list[int] = []

    def gen() -> Iterator[pa.RecordBatch]:
        pulled.append(1)
        yield pa.record_batch([pa.array(["0", "1"]), pa.array([0.1, 0.9])], schema=schema)

    try:
        evaluate(pa.RecordBatchReader.from_batches(schema, gen()), label="y", score="p")
    except a.SchemaError:
        pass
    else:
        raise Wrong("a string label was accepted")
    check(pulled == [], f"the refused job pulled {len(pulled)} batch(es)")


@case(expect="typed", interrupt=True, words=["."], timeout=30)
def streams_blocked_generator_interrupted() -> None:
    """Ctrl-C while a generator blocks (waiting on a queue, a socket...): KeyboardInterrupt
    comes out of it, because the generator runs on the main thread. (polars, imported by
    assay, installs a restarting SIGINT handler that keeps blocking waits from seeing a
    signal; Python's own handler is reinstalled here, as a user of blocking sources would.)"""
    import os
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.default_int_handler)

    def gen() -> Iterator[pa.RecordBatch]:
        yield from _gen(None, 1)
        threading.Event().wait(20)  # blocks: only a signal can end it early
        raise Wrong("the blocked generator was not interrupted")

    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    evaluate(pa.RecordBatchReader.from_batches(_S, gen()), label="y", score="p")


# --- empty slices and large string columns ---------------------------------------------------


@case(expect="ok")
def streams_empty_slices_inside_batches() -> None:
    """Empty slices taken inside a batch (pyarrow exports their string columns with an offset
    but no values) between full ones, for plain, large and dictionary strings: the stream's
    report equals the table's."""
    d = toy(3000, seed=4)
    t = pa.table({"y": pa.array(d["y"]), "p": pa.array(d["p"]),
                  "s": pa.array(np.array(["a", "bb", "ccc"])[np.arange(3000) % 3]),
                  "l": pa.array(np.array(["x", "yy"])[np.arange(3000) % 2], pa.large_string()),
                  "k": pa.array(np.array(["u", "v", "w", "z"])[np.arange(3000) % 4])
                  .dictionary_encode()}).combine_chunks()
    (whole,) = t.to_batches()
    batches = [whole.slice(0, 1000), whole.slice(1000, 0), whole.slice(1000, 2000),
               whole.slice(3000, 0), whole.slice(2999, 0)]
    kw = dict(label="y", score="p", slices=["s", "l", "k", ("s", "k")])
    rep = evaluate(_reader(t.schema, batches), **kw)
    same_metrics(rep, evaluate(t, **kw), "empty slices inside batches")


@case(expect="typed", words=[r"invalid data in column \"c\""])
def streams_large_string_column_invalid_late() -> None:
    """1.2M strings, checked in parallel steps: a byte that is never UTF-8 in a late step of
    a column the job slices by is refused with the column named."""
    n = 1_200_000
    data = bytearray(b"ab" * n)
    data[2 * 1_100_000 + 1] = 0xFF
    offsets = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
    c = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.tobytes()),
                                               pa.py_buffer(bytes(data))])
    t = pa.table({"y": np.zeros(n, np.int8), "p": np.full(n, 0.5), "c": c})
    evaluate(_reader(t.schema, t.to_batches()), label="y", score="p", slices=["c"])
