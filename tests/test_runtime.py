"""Process-level behaviour: fork safety, the GIL, interrupts between batches."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pyarrow as pa
import pytest

import assay


def _data(n=50_000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return {"y": y, "p": np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1),
            "c": rng.choice(["a", "b", "c"], n)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_can_evaluate_after_the_parent_did():
    data = _data()
    parent = assay.evaluate(data, label="y", score="p", slices=["c"], n_threads=2)
    expected = parent.to_arrow()
    pid = os.fork()
    # child: must not deadlock on a thread pool inherited from the parent. It stays on the
    # Arrow result: polars' own pool is not fork-safe (polars documents this).
    if pid == 0:
        try:
            child = assay.evaluate(data, label="y", score="p", slices=["c"], n_threads=2)
            os._exit(0 if child.to_arrow().equals(expected) else 3)
        except BaseException:
            os._exit(4)
    deadline_ok = False
    for _ in range(600):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            deadline_ok = True
            break
        threading.Event().wait(0.05)
    if not deadline_ok:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(status) == 0


def test_gil_is_released_while_the_engine_runs():
    import time

    table = pa.table(_data(2_000_000))
    ticks: list[float] = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.02)
        t0 = time.perf_counter()
        assay.evaluate(table, label="y", score="p", slices=["c"])
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    lo, hi = t0 + 0.2 * (t1 - t0), t1 - 0.2 * (t1 - t0)
    inside = [x for x in ticks if lo <= x <= hi]
    # With the GIL held for the whole call, the ticker could not run inside the window.
    assert len(inside) >= 5, (len(inside), t1 - t0)


def test_stream_errors_surface_as_exceptions():
    schema = pa.schema([("y", pa.int64()), ("p", pa.float64())])

    def batches():
        yield pa.record_batch([pa.array([0, 1]), pa.array([0.1, 0.9])], schema=schema)
        raise RuntimeError("the producer failed")

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    with pytest.raises(Exception, match="producer failed"):
        assay.evaluate(reader, label="y", score="p")


def test_every_error_is_an_assay_error_subclass():
    for name in ["ColumnNotFoundError", "SchemaError", "InvalidInputError", "EmptyInputError",
                 "InvalidArgumentError"]:
        assert issubclass(getattr(assay, name), assay.AssayError)
    assert sys.modules["assay"].__version__
