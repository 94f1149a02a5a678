"""Hardening of the native layer: panics, mismatched Arrow streams, size limits, interrupts.

The stream tests call ``assay._native`` directly with a bare ``__arrow_c_stream__`` object, so
that they exercise the native checks and not the Python facade's producer-side wrapper.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay import _native


class _Stream:
    """Anything exposing ``__arrow_c_stream__`` (here: a pyarrow reader that does not check
    that its batches match its schema)."""

    def __init__(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> None:
        self._reader = pa.RecordBatchReader.from_batches(schema, iter(batches))

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._reader.__arrow_c_stream__(requested_schema)


def _evaluate(data: object, slices: list | None = None, n_threads: int | None = None):
    return _native.evaluate(data, "y", "p", None, 0.5, slices or [], ["roc_auc", "accuracy"],
                            0, "raise", None, n_threads)


SCHEMA = pa.schema([("y", pa.int64()), ("p", pa.float64())])


def _good(n: int = 4) -> pa.RecordBatch:
    return pa.record_batch([pa.array(np.arange(n) % 2), pa.array(np.linspace(0, 1, n))],
                           schema=SCHEMA)


# --- panics -------------------------------------------------------------------------------

def test_a_panic_in_a_function_body_becomes_an_assay_error():
    with pytest.raises(assay.AssayError, match="internal error, please report: a deliberate"):
        _native._panic_for_tests()


def test_a_panic_in_a_worker_thread_becomes_an_assay_error():
    with pytest.raises(assay.AssayError, match="internal error, please report: .*in a worker"):
        _native._panic_for_tests(True)
    # The process is still healthy: a job runs afterwards.
    table, *_ = _evaluate(pa.table({"y": [0, 1, 0, 1], "p": [0.1, 0.8, 0.3, 0.6]}))
    assert table.column("roc_auc")[0].as_py() == 1.0


# --- streams whose batches do not match their declared schema ----------------------------

@pytest.mark.parametrize("case", ["extra column", "missing column"])
def test_a_batch_with_the_wrong_columns_is_a_schema_error(case):
    if case == "extra column":
        bad = pa.record_batch([pa.array([0, 1]), pa.array([0.1, 0.9]), pa.array([1, 2])],
                              names=["y", "p", "z"])
    else:
        bad = pa.record_batch([pa.array([0, 1])], names=["y"])
    with pytest.raises(assay.SchemaError, match="batch 1 of the input does not match the "
                                                "stream's declared schema"):
        _evaluate(_Stream(SCHEMA, [_good(), bad]))


def test_string_declared_int_data_is_a_schema_error():
    schema = pa.schema([("y", pa.int64()), ("p", pa.float64()), ("c", pa.string())])
    bad = pa.record_batch([pa.array([0, 1]), pa.array([0.1, 0.9]), pa.array([5, 6])],
                          names=["y", "p", "c"])
    for slices in ([], [[("c", None)]]):
        with pytest.raises(assay.SchemaError, match=r"batch 0 .*column \"c\" is declared "
                                                    r"(Utf8|string).*not of the declared type"):
            _evaluate(_Stream(schema, [bad]), slices)


def test_int_declared_string_data_is_a_schema_error_with_a_clear_message():
    bad = pa.record_batch([pa.array([0, 1]), pa.array(["a", "b"])], names=["y", "p"])
    with pytest.raises(assay.SchemaError) as info:
        _evaluate(_Stream(SCHEMA, [bad]))
    msg = str(info.value)
    assert "column \"p\" is declared" in msg and "but requested" not in msg
    assert info.value.column == "p"


def test_every_native_entry_point_checks_its_stream():
    bad = pa.record_batch([pa.array([0, 1]), pa.array([0.1, 0.9]), pa.array([1, 2])],
                          names=["y", "p", "z"])
    with pytest.raises(assay.SchemaError):
        _native.bin_edges(_Stream(SCHEMA, [bad]), "p", 2, "quantile")
    with pytest.raises(assay.SchemaError):
        _native.slice_rows(_Stream(SCHEMA, [bad]), [[("y", None)]])
    with pytest.raises(assay.SchemaError):
        _native.discover_slices(_Stream(SCHEMA, [bad]), [("y", None)],
                                ("zero_one", "y", "p", None), 0.5, 5, 2, 1, 0.95,
                                "sliceline", 10, 100, False, 0.1, "raise", None)


def test_invalid_values_in_a_column_the_job_reads_are_a_schema_error():
    # Offsets that run backwards (pyarrow's cheap validation lets them through): reading the
    # strings would slice out of bounds.
    offsets = pa.py_buffer(np.array([0, 8, 3], dtype=np.int32).tobytes())
    bad = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"abcdefghij")])
    t = pa.table({"y": [0, 1], "p": [0.1, 0.9], "c": bad})
    with pytest.raises(assay.SchemaError, match="batch 0 .*invalid data in column \"c\""):
        _evaluate(t, [[("c", None)]])
    # A column the job does not read is not inspected value by value.
    table, *_ = _evaluate(t)
    assert table.column("n")[0].as_py() == 2


def test_a_stream_error_names_the_batch_and_the_producers_message():
    def batches():
        yield _good()
        raise RuntimeError("the producer failed")

    reader = pa.RecordBatchReader.from_batches(SCHEMA, batches())
    with pytest.raises(assay.AssayError, match="reading batch 1 of the input failed.*producer"):
        _evaluate(reader)


def test_a_non_stream_input_is_an_assay_error():
    with pytest.raises(assay.InvalidArgumentError, match="__arrow_c_stream__"):
        _evaluate(42)


def test_matching_streams_still_evaluate_like_tables():
    batches = [_good(6), _good(10)]
    streamed, *_ = _evaluate(_Stream(SCHEMA, batches))
    direct, *_ = _evaluate(pa.Table.from_batches(batches))
    assert streamed.equals(direct)


def test_null_and_dictionary_columns_pass_the_checks():
    t = pa.table({"y": [0, 1, 0, 1], "p": [0.1, 0.9, 0.3, 0.6], "n": pa.nulls(4),
                  "d": pa.array(["a", "b", "a", "b"]).dictionary_encode()})
    table, *_ = _evaluate(t, [[("d", None)]])
    assert table.num_rows == 3


# --- duplicate column names --------------------------------------------------------------

def test_duplicate_column_names_are_a_schema_error():
    t = pa.table([pa.array([0, 1, 0, 1]), pa.array([0.1, 0.9, 0.2, 0.8]),
                  pa.array([0.5, 0.5, 0.5, 0.5])], names=["y", "p", "p"])
    with pytest.raises(assay.SchemaError, match="'p'|\"p\"") as info:
        _evaluate(t)
    assert "appears 2 times" in str(info.value)
    # An unambiguous name in the same input is fine.
    t2 = pa.table([pa.array([0, 1, 0, 1]), pa.array([0.1, 0.9, 0.2, 0.8]),
                   pa.array([1, 1, 2, 2]), pa.array([1, 1, 2, 2])], names=["y", "p", "c", "c"])
    _evaluate(t2)
    with pytest.raises(assay.SchemaError, match="appears 2 times"):
        _evaluate(t2, [[("c", None)]])


# --- size limits -------------------------------------------------------------------------

def test_thread_counts_above_the_limit_are_refused_with_the_limit():
    limit = _native.max_threads()
    assert limit >= 4 and limit % 4 == 0
    t = pa.table({"y": [0, 1, 0, 1], "p": [0.1, 0.9, 0.3, 0.6]})
    start = time.perf_counter()
    with pytest.raises(assay.InvalidArgumentError, match=f"at most {limit}"):
        _evaluate(t, n_threads=100_000)
    assert time.perf_counter() - start < 5  # refused, not started thread by thread
    _evaluate(t, n_threads=limit)


def test_bin_counts_are_bounded_before_allocating():
    t = pa.table({"p": np.linspace(0, 1, 3000)})
    with pytest.raises(assay.InvalidArgumentError, match="at most"):
        _native.bin_edges(t, "p", 10**9, "quantile")
    with pytest.raises(assay.InvalidArgumentError, match="at most 3000"):
        _native.bin_edges(t, "p", 3001, "quantile")
    assert len(_native.bin_edges(t, "p", 3000, "quantile")) == 3001
    with pytest.raises(assay.InvalidArgumentError, match="at most 1000000"):
        _native.bin_edges(t, "p", 10**7, "uniform")
    edges = _native.bin_edges(t, "p", 4, "uniform")
    assert edges == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_histogram_binning_bins_are_bounded():
    s, y = pa.array([0.1, 0.4, 0.8]), pa.array([0.0, 1.0, 1.0])
    with pytest.raises(assay.InvalidArgumentError, match="at most"):
        _native.histogram_fit(s, y, None, 10**9)
    assert len(_native.histogram_fit(s, y, None, 10)) == 10


def test_discovery_sizes_are_bounded():
    t = pa.table({"y": [0, 1] * 50, "p": np.linspace(0, 1, 100), "c": ["a", "b", "c", "d"] * 25})

    def run(k, beam_width, method="beam"):
        return _native.discover_slices(t, [("c", None)], ("zero_one", "y", "p", None), 0.5, k,
                                       3, 1, 0.95, method, beam_width, 100, False, 0.1,
                                       "raise", None)

    with pytest.raises(assay.InvalidArgumentError, match="k must be at most"):
        run(10**12, 5)
    with pytest.raises(assay.InvalidArgumentError, match="beam_width must be at most"):
        run(5, 10**12)
    run(5, 5)


# --- interrupts --------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import assay

    n = 4_000_000
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    data = {"y": y, "p": np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1),
            "c": rng.integers(0, 4, n)}
    print("ready", flush=True)
    start = time.perf_counter()
    try:
        assay.evaluate(data, label="y", score="p", slices=["c"],
                       metrics=["roc_auc", "average_precision"], bootstrap=2000)
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - start, flush=True)
        sys.exit(7)
    print("finished", time.perf_counter() - start, flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                    reason="needs POSIX signals")
def test_ctrl_c_during_the_bootstrap_walk_is_seen_promptly():
    env = dict(os.environ, ASSAY_ALLOW_DEBUG_BUILD="1")
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        # Into the job: past the pass, into the sorts and the replicate walks (a job of tens
        # of seconds in a debug build, several seconds in a release build).
        time.sleep(1.5)
        child.send_signal(signal.SIGINT)
        signalled = time.perf_counter()
        out, err = child.communicate(timeout=120)
        waited = time.perf_counter() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "finished" not in out, "the job ended before the signal: make it longer"
    assert child.returncode == 7, (child.returncode, out, err)
    assert out.startswith("interrupted"), out
    # Prompt, not "at the end of the job": a generous bound for a loaded machine.
    assert waited < 5.0, waited
