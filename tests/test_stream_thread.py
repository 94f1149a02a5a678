"""Streams are pulled on the calling thread: a Python generator behind a reader runs where
its author expects (thread-bound resources such as a sqlite connection work), and nothing is
read before the job has checked its spec."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

import assay

SCHEMA = pa.schema([("y", pa.int64()), ("p", pa.float64())])


def _data(n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    return y, p


def test_a_generator_runs_on_the_calling_thread() -> None:
    y, p = _data()
    threads = set()

    def gen():
        for lo in range(0, len(y), 700):
            threads.add(threading.get_ident())
            yield pa.record_batch([pa.array(y[lo:lo + 700]), pa.array(p[lo:lo + 700])],
                                  schema=SCHEMA)

    rep = assay.evaluate(pa.RecordBatchReader.from_batches(SCHEMA, gen()), label="y", score="p",
                         metrics=["roc_auc"])
    assert threads == {threading.get_ident()}
    assert rep.table["roc_auc"][0] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_a_thread_bound_source_works() -> None:
    y, p = _data()
    con = sqlite3.connect(":memory:")  # refuses use from any other thread
    con.execute("create table t (y integer, p real)")
    con.executemany("insert into t values (?, ?)", zip(y.tolist(), p.tolist(), strict=True))

    def gen():
        cur = con.execute("select y, p from t order by rowid")
        while rows := cur.fetchmany(1000):
            a, b = zip(*rows, strict=True)
            yield pa.record_batch([pa.array(a, pa.int64()), pa.array(b)], schema=SCHEMA)

    rep = assay.evaluate(pa.RecordBatchReader.from_batches(SCHEMA, gen()), label="y", score="p",
                         metrics=["roc_auc"], slices=[assay.bins("p", edges=[0, 0.5, 1])])
    assert rep.table["n"][0] == len(y)
    assert rep.table["roc_auc"][0] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_nothing_is_read_before_the_spec_is_checked() -> None:
    # A string label is refused by the engine's own plan, before it asks for a batch.
    schema = pa.schema([("y", pa.string()), ("p", pa.float64())])
    pulled = []

    def gen():
        pulled.append(1)
        yield pa.record_batch([pa.array(["a", "b"]), pa.array([0.1, 0.9])], schema=schema)

    reader = pa.RecordBatchReader.from_batches(schema, gen())
    with pytest.raises(assay.SchemaError, match="label"):
        assay.evaluate(reader, label="y", score="p")
    assert pulled == []
