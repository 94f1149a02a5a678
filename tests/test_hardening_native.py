"""Hardening of the native layer: panics, mismatched Arrow streams, size limits, interrupts.

The stream tests call ``assay._native`` directly with a bare ``__arrow_c_stream__`` object, so
that they exercise the native checks and not the Python facade's producer-side wrapper.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from conftest import interrupt_child

import assay
from assay import _native


class _Stream:
    """Anything exposing ``__arrow_c_stream__`` (here: a pyarrow reader that does not check
    that its batches match its schema)."""

    def __init__(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> None:
        self._reader = pa.RecordBatchReader.from_batches(schema, iter(batches))

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._reader.__arrow_c_stream__(requested_schema)


def _job(metrics: list[str], slices: list | None = None, weight: str | None = None,
         n_threads: int | None = None) -> tuple:
    """The native job tuple (see ``assay._evaluate._Job.native``) of labels ``y``, scores
    ``p``."""
    return ("y", "p", weight, 0.5, slices or [], metrics, 0, "raise", ("exact", 0), n_threads,
            None, None, None, None, None, "binary", 0.0, None, None, None, None, False)


def _evaluate(data: object, slices: list | None = None, n_threads: int | None = None):
    return _native.evaluate(data, _job(["roc_auc", "accuracy"], slices, n_threads=n_threads))


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


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("offsets, data, ok", [
    ([0, 2, 4], "éa".encode() + b"b", True),         # multi-byte text, valid cuts
    ([0, 1, 2], "é".encode(), False),                 # a cut inside a character
    ([0, 1, 2], b"a\xff", False),                    # a byte that is never UTF-8
    ([0, 2, 1], b"abc", False),                       # offsets that run backwards
    ([0, 7, 3], b"abcdefghij", False),                # an offset past the span
    ([1, 2, 3], b"\xffab", True),                    # invalid bytes outside the span
    ([0, 2, 3], "€".encode(), False),                 # a cut inside a 3-byte character
    ([0, 1, 4], b"a" + "€".encode(), True),           # the last offset at the text's end
    ([0, 0, 0], b"", True),                           # empty strings, empty text
])
def test_string_columns_are_checked_like_arrow_does(offsets, data, ok, large):
    """The fast string check (the whole span decoded at once, offsets on character
    boundaries) accepts and refuses what arrow's full validation does."""
    typ, dt = (pa.large_string(), np.int64) if large else (pa.string(), np.int32)
    arr = pa.Array.from_buffers(typ, 2, [None, pa.py_buffer(np.array(offsets, dtype=dt)
                                                             .tobytes()), pa.py_buffer(data)])
    t = pa.table({"y": [0, 1], "p": [0.1, 0.9], "c": arr})
    if ok:
        table, *_ = _evaluate(t, [[("c", None)]])
        assert table.column("n").to_pylist()[0] == 2
    else:
        with pytest.raises(assay.SchemaError, match="invalid data in column \"c\""):
            _evaluate(t, [[("c", None)]])


@pytest.mark.parametrize("defect", [None, "a byte that is never UTF-8", "a cut inside a character",
                                    "offsets that run backwards"])
def test_large_string_columns_are_checked_in_parallel_steps_alike(defect):
    """A column of 2^18 strings or more is checked in parallel steps of 2^16: a defect at the
    border of two steps (or inside a late one) is still refused, a sound column accepted."""
    n, step = 1_200_000, 1 << 16
    offsets = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
    data = bytearray(b"ab" * n)
    k = 17 * step  # string k starts a step
    if defect == "a byte that is never UTF-8":
        data[2 * k + 7] = 0xFF
    elif defect == "a cut inside a character":
        data[2 * k - 1:2 * k + 1] = "é".encode()  # its two bytes on either side of the border
    elif defect == "offsets that run backwards":
        offsets[k] = offsets[k - 1] - 1
    arr = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.tobytes()),
                                                 pa.py_buffer(bytes(data))])
    t = pa.table({"y": np.zeros(n, np.int8), "p": np.full(n, 0.5), "c": arr})
    if defect is None:
        table, *_ = _evaluate(t, [[("c", None)]])
        assert table.column("n").to_pylist()[0] == n
    else:
        with pytest.raises(assay.SchemaError, match="invalid data in column \"c\""):
            _evaluate(t, [[("c", None)]])

@pytest.mark.parametrize("key_type", [pa.int8(), pa.int32(), pa.uint16(), pa.int64()])
@pytest.mark.parametrize("keys, nulls, values, ok", [
    ([0, 1, 1], None, pa.array(["a", "é"]), True),
    ([0, 2, 1], None, pa.array(["a", "b"]), False),            # a key past the values
    ([0, -1, 1], None, pa.array(["a", "b"]), False),           # a negative key
    ([0, 7, 1], [True, False, True], pa.array(["a", "b"]), True),  # in a null slot: allowed
    ([0, 1, 1], None, "bad-utf8", False),                      # invalid values
])
def test_dictionary_columns_are_checked_like_arrow_does(keys, nulls, values, ok, key_type):
    """The fast dictionary check (keys against the dictionary's length in one pass, then the
    values) accepts and refuses what arrow's full validation does."""
    if pa.types.is_unsigned_integer(key_type) and min(keys) < 0:
        pytest.skip("no negative keys in an unsigned type")
    if isinstance(values, str):
        values = pa.Array.from_buffers(pa.string(), 2, [
            None, pa.py_buffer(np.array([0, 1, 2], dtype=np.int32).tobytes()),
            pa.py_buffer(b"a\xff")])
    np_type = key_type.to_pandas_dtype()
    validity = None if nulls is None else pa.array(nulls).buffers()[1]
    idx = pa.Array.from_buffers(key_type, 3, [validity,
                                              pa.py_buffer(np.array(keys, np_type).tobytes())])
    col = pa.DictionaryArray.from_arrays(idx, values, safe=False)
    t = pa.table({"y": [0, 1, 1], "p": [0.1, 0.9, 0.8], "c": col})
    if ok:
        table, *_ = _evaluate(t, [[("c", None)]])
        assert table.column("n").to_pylist()[0] == 3
    else:
        with pytest.raises(assay.SchemaError, match="invalid data in column \"c\""):
            _evaluate(t, [[("c", None)]])


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


# --- malformed C streams: null buffers and children (built by hand, in a child process) ---

# An Arrow C stream of one batch whose exported array is edited (a buffer or child pointer
# set to NULL) before the consumer sees it: the C data interface structs per the spec,
# wrapped in an "arrow_array_stream" capsule. A crash of the child fails the test.
_C_STREAM = textwrap.dedent("""
    import ctypes, sys
    from ctypes import POINTER, CFUNCTYPE, c_char_p, c_int, c_int64, c_void_p
    import numpy as np
    import pyarrow as pa
    import assay
    from assay import _native

    class Schema(ctypes.Structure):
        pass

    Schema._fields_ = [("format", c_char_p), ("name", c_char_p), ("metadata", c_char_p),
                       ("flags", c_int64), ("n_children", c_int64),
                       ("children", POINTER(POINTER(Schema))), ("dictionary", POINTER(Schema)),
                       ("release", c_void_p), ("private_data", c_void_p)]

    class Array(ctypes.Structure):
        pass

    Array._fields_ = [("length", c_int64), ("null_count", c_int64), ("offset", c_int64),
                      ("n_buffers", c_int64), ("n_children", c_int64),
                      ("buffers", POINTER(c_void_p)), ("children", POINTER(POINTER(Array))),
                      ("dictionary", POINTER(Array)), ("release", c_void_p),
                      ("private_data", c_void_p)]

    class Stream(ctypes.Structure):
        pass

    GET_SCHEMA = CFUNCTYPE(c_int, POINTER(Stream), POINTER(Schema))
    GET_NEXT = CFUNCTYPE(c_int, POINTER(Stream), POINTER(Array))
    GET_LAST_ERROR = CFUNCTYPE(c_char_p, POINTER(Stream))
    RELEASE = CFUNCTYPE(None, POINTER(Stream))
    RELEASE_ARRAY = CFUNCTYPE(None, POINTER(Array))
    Stream._fields_ = [("get_schema", GET_SCHEMA), ("get_next", GET_NEXT),
                       ("get_last_error", GET_LAST_ERROR), ("release", RELEASE),
                       ("private_data", c_void_p)]
    capsule = ctypes.pythonapi.PyCapsule_New
    capsule.restype = ctypes.py_object
    capsule.argtypes = [c_void_p, c_char_p, c_void_p]
    NAME = b"arrow_array_stream"
    KEEP = []

    class Edited:
        def __init__(self, batch, edit):
            self.sent = False

            def get_schema(_s, out):
                batch.schema._export_to_c(ctypes.addressof(out.contents))
                return 0

            def get_next(_s, out):
                if not self.sent:
                    self.sent = True
                    batch._export_to_c(ctypes.addressof(out.contents))
                    edit(out.contents)
                return 0

            def release(s):
                s.contents.release = RELEASE()

            self.callbacks = (GET_SCHEMA(get_schema), GET_NEXT(get_next),
                              GET_LAST_ERROR(lambda _s: None), RELEASE(release))
            self.stream = Stream(*self.callbacks, None)

        def __arrow_c_stream__(self, requested_schema=None):
            return capsule(ctypes.addressof(self.stream), NAME, None)

    def without_children(a):
        # The producer's release follows the children: put them back before it runs.
        children, release = ctypes.cast(a.children, c_void_p).value, a.release

        def restore(p):
            p.contents.children = ctypes.cast(children, POINTER(POINTER(Array)))
            p.contents.release = release
            RELEASE_ARRAY(release)(p)

        KEEP.append(RELEASE_ARRAY(restore))
        a.release = ctypes.cast(KEEP[-1], c_void_p).value
        a.children = None

    def longer_buffer_list(a):
        KEEP.append((c_void_p * 3)(a.buffers[0], None, None))
        a.n_buffers = 3
        a.buffers = ctypes.cast(KEEP[-1], POINTER(c_void_p))

    def no_data_buffers(a):
        # pyarrow exports short strings with one empty data buffer: none, and a null list of
        # their sizes.
        column(a).n_buffers = 3
        column(a).buffers[2] = None

    n = 6
    y, p = pa.array([0, 1] * 3), pa.array(np.linspace(0, 1, n))
    text = ["a" * 40, "bb" * 30, "c", "", "e", "f"]
    union = pa.UnionArray.from_sparse(pa.array([0, 1] * 3, pa.int8()),
                                      [pa.array(range(n)), pa.array(["x"] * n)])
    dense = pa.UnionArray.from_dense(pa.array([0, 1] * 3, pa.int8()),
                                     pa.array([0, 0, 1, 1, 2, 2], pa.int32()),
                                     [pa.array(range(3)), pa.array(["x"] * 3)])
    columns = {
        "utf8": pa.array(text), "large_utf8": pa.array(text, pa.large_string()),
        "binary": pa.array(text, pa.binary()), "view": pa.array(text, pa.string_view()),
        "dict": pa.array(["a", "b"] * 3).dictionary_encode(),
        "nulls": pa.array([0.1, None, 0.3, None, 0.5, 0.6]),
        "list": pa.array([[1], [2, 3], [], [4], [5], [6]]), "union": union, "dense": dense,
        "empty": pa.array([""] * n), "short": pa.array(["a", "b"] * 3, pa.string_view()),
    }
    column = lambda a: a.children[2].contents
    def null_buffer(i, of=column):
        return lambda a: of(a).buffers.__setitem__(i if i >= 0 else of(a).n_buffers + i, None)
    edits = {
        "valid": lambda a: None,
        "utf8 offsets": null_buffer(1), "utf8 data": null_buffer(2),
        "large_utf8 offsets": null_buffer(1), "binary offsets": null_buffer(1),
        "view views": null_buffer(1), "view sizes": null_buffer(-1),
        "dict keys": null_buffer(1),
        "dict values offsets": null_buffer(1, lambda a: column(a).dictionary.contents),
        "nulls validity": null_buffer(0), "list offsets": null_buffer(1),
        "list child buffer": null_buffer(1, lambda a: column(a).children[0].contents),
        "union type ids": null_buffer(0), "dense offsets": null_buffer(1),
        "union children": lambda a: without_children(column(a)),
        # Buffers that hold nothing may be left out: the bytes of empty strings, the sizes of
        # a view array's data buffers when it has none.
        "empty utf8 data": null_buffer(2), "short view sizes": no_data_buffers,
        "batch buffers": longer_buffer_list,
    }
    case = sys.argv[1]
    names = [c for c in columns if case.startswith(c)] or list(columns)
    for name in names:
        batch = pa.record_batch([y, p, columns[name]], names=["y", "p", "c"])
        try:
            job = ("y", "p", None, 0.5, [], ["accuracy"], 0, "raise", ("exact", 0), None,
                   None, None, None, None, None, "binary", 0.0, None, None, None, None, False)
            out = _native.evaluate(Edited(batch, edits[case]), job)
            print("ok", name, out[0].column("accuracy")[0].as_py(), flush=True)
        except assay.AssayError as e:
            print(type(e).__name__, name, e, flush=True)
""")


def _run_c_stream_case(case: str) -> subprocess.CompletedProcess[str]:
    # The child imports the assay this process imported (not another installed copy).
    root = os.path.dirname(os.path.dirname(os.path.abspath(assay.__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, ASSAY_ALLOW_DEBUG_BUILD="1", PYTHONPATH=path, RUST_BACKTRACE="0")
    return subprocess.run([sys.executable, "-c", _C_STREAM, case], capture_output=True,
                          text=True, env=env, timeout=120)


def test_a_hand_made_c_stream_with_every_layout_evaluates():
    # The harness of the tests below, unedited: each column type passes the checks.
    for case, columns in [("valid", 11), ("empty utf8 data", 1), ("short view sizes", 1)]:
        out = _run_c_stream_case(case)
        assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
        lines = out.stdout.splitlines()
        assert len(lines) == columns and all(line.startswith("ok") for line in lines), out.stdout
        assert all(line.endswith(str(2 / 3)) for line in lines), out.stdout


@pytest.mark.parametrize(("case", "what"), [
    # Read by the importer before it looks at the pointer: a crash, not an error.
    ("view sizes", r"buffer 3 is null although the array has 6 values"),
    ("utf8 offsets", r"buffer 1 is null"),
    # (Its size is the last offset: the importer checks it.)
    ("utf8 data", r"buffer at position 2 is null"),
    ("large_utf8 offsets", r"buffer 1 is null"),
    ("binary offsets", r"buffer 1 is null"),
    ("view views", r"buffer 1 is null"),
    ("dict keys", r"buffer 1 is null"),
    ("dict values offsets", r"buffer 1 is null although the array has 2 values"),
    ("list offsets", r"buffer 1 is null"),
    ("list child buffer", r"buffer 1 is null"),
    ("union type ids", r"buffer 0 is null"),
    ("dense offsets", r"buffer 1 is null"),
    ("union children", r"child array 0 is missing"),
    # No crash, but the nulls would silently become values.
    ("nulls validity", r"validity buffer is null although it reports 2 nulls"),
    ("batch buffers", r"the batch's struct array: it carries 3 buffers where that type has 1"),
])
def test_a_c_stream_with_a_missing_buffer_or_child_is_a_schema_error(case, what):
    out = _run_c_stream_case(case)
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    line = out.stdout.strip()
    assert line.startswith("SchemaError "), out.stdout
    assert "does not match the stream's declared schema" in line
    assert re.search(what, line), line
    if case not in ("batch buffers", "utf8 data"):
        assert 'column "c" is declared' in line, line


# --- weights that the job's scale factor would make subnormal -----------------------------

def _weighted(scales: list[float], n: int = 40) -> pa.Table:
    rng = np.random.default_rng(1)
    return pa.Table.from_batches([
        pa.record_batch([pa.array(rng.integers(0, 2, n)), pa.array(rng.random(n)),
                         pa.array(rng.uniform(0.5, 1.0, n) * s)], names=["y", "p", "w"])
        for s in scales])


@pytest.mark.parametrize("metrics", [["accuracy"], ["roc_auc", "accuracy", "log_loss"]])
@pytest.mark.parametrize("slices", [[], [[("y", None)]]])
def test_a_weight_the_scale_makes_subnormal_is_refused(metrics, slices):
    def run(t: pa.Table):
        out, *_ = _native.evaluate(t, _job(metrics, slices, weight="w"))
        return out.column("accuracy")[0].as_py()

    def weighted_accuracy(t: pa.Table) -> float:
        y, p, w = (t.column(c).to_numpy() for c in ("y", "p", "w"))
        return float(np.sum(w * (y == (p >= 0.5))) / np.sum(w))

    # The first batch fixes the factor (2^-996); 1e-20 times it is subnormal (about 1e-320):
    # its value would be lost silently.
    with pytest.raises(assay.InvalidInputError, match=r"weight [0-9.e-]+ at row 40 is too far "
                                                      r"from the first weights read") as info:
        run(_weighted([1e300, 1e-20]))
    assert info.value.column == "w"
    # Far apart but within the float64 range of ratios: kept, and exact.
    t = _weighted([1e300, 1e-5])
    assert run(t) == pytest.approx(weighted_accuracy(t), rel=1e-12)
    # The same rows with weights near 1: nothing is scaled.
    t = _weighted([1.0, 1.0])
    assert run(t) == pytest.approx(weighted_accuracy(t), rel=1e-12)
    # Unscaled, a subnormal weight is the user's own value, summed as it is.
    t = _weighted([1.0, 1e-310])
    assert run(t) == pytest.approx(weighted_accuracy(t), rel=1e-12)


def test_a_fit_refuses_a_weight_the_scale_makes_subnormal():
    s, y = pa.array([0.1, 0.4, 0.6, 0.9]), pa.array([0.0, 1.0, 0.0, 1.0])
    with pytest.raises(assay.InvalidInputError, match=r"HistogramBinning.fit: weight 1e-20 at "
                                                      r"row 1 is too far"):
        _native.histogram_fit(s, y, pa.array([1e300, 1e-20, 1e300, 1e300]), 2)
    far = _native.histogram_fit(s, y, pa.array([1e300, 1e-5, 1e300, 1e300]), 2)
    near = _native.histogram_fit(s, y, pa.array([1.0, 1e-305, 1.0, 1.0]), 2)
    assert far == pytest.approx(near, rel=1e-12)


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
    with pytest.raises(assay.InvalidArgumentError, match=f"at most {limit}"):
        _evaluate(t, n_threads=100_000)
    _evaluate(t, n_threads=limit)


def test_bin_counts_are_bounded_before_allocating():
    t = pa.table({"p": np.linspace(0, 1, 3000)})
    with pytest.raises(assay.InvalidArgumentError, match="at most"):
        _native.bin_edges(t, "p", 10**9, "quantile")
    # More quantile bins than values is fine (numpy's interpolated quantiles): only memory
    # bounds the count.
    values = np.linspace(0, 1, 3000)
    edges = _native.bin_edges(t, "p", 3001, "quantile")
    assert edges == pytest.approx(np.quantile(values, np.linspace(0, 1, 3002)), abs=1e-15)
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
    # Into the job: past the pass, into the sorts and the replicate walks (a job of tens of
    # seconds in a debug build, several seconds in a release build).
    returncode, out, err, waited = interrupt_child(_CHILD, 1.5, 120)
    assert "finished" not in out, "the job ended before the signal: make it longer"
    assert returncode == 7, (returncode, out, err)
    assert out.startswith("interrupted"), out
    # Prompt, not "at the end of the job": a generous bound for a loaded machine.
    assert waited < 5.0, waited


# --- the source's guard around the native call --------------------------------------------

def test_an_interrupt_of_the_native_call_is_not_replaced_by_the_sources_error():
    from assay._input import StreamGuard

    guard = StreamGuard("the input")
    source_error = ValueError("the producer failed")
    # The native call stopped by Ctrl-C after the source had failed: the interrupt wins.
    with pytest.raises(KeyboardInterrupt) as info, guard:
        guard.fail(source_error, 3)
        raise KeyboardInterrupt
    assert info.value.__cause__ is None
    # An ordinary native error after the source failed: the source's error, typed.
    with pytest.raises(assay.InvalidInputError, match="reading the input failed at batch 3: "
                                                      "ValueError: the producer failed") as err:
        with guard:
            guard.fail(source_error, 3)
            raise assay.AssayError("the stream ended early")
    assert err.value.__cause__ is source_error
    # The source itself interrupted: its KeyboardInterrupt, whatever the native call raised.
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as info, guard:
        guard.fail(interrupt, 1)
        raise assay.AssayError("reading batch 1 of the input failed")
    assert info.value is interrupt
