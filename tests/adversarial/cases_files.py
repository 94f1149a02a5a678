"""Files: corrupt, truncated and empty Parquet / Arrow IPC / CSV files, FIFOs, character
devices, directories, missing files. Each is read to a result or refused with a typed error
that names the file; none may hang or leak a pyarrow / OS exception."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
from _harness import add, case, check, evaluate, same_metrics, tmpdir, toy

EITHER = ("ok", "typed")


def _table(n: int = 300) -> pa.Table:
    d = toy(n)
    return pa.table({"y": d["y"], "p": d["p"], "g": d["g"]})


def _write(kind: str, path: str, t: pa.Table) -> None:
    if kind == "parquet":
        pq.write_table(t, path, row_group_size=100)
    elif kind == "arrow":
        feather.write_feather(t, path, compression="uncompressed")
    elif kind == "arrows":
        with pa.ipc.new_stream(path, t.schema) as w:
            for b in t.to_batches(max_chunksize=100):
                w.write_batch(b)
    elif kind == "csv":
        pacsv.write_csv(t, path)
    else:
        raise AssertionError(kind)


def _valid(kind: str):  # type: ignore[no-untyped-def]
    def body() -> None:
        path = os.path.join(tmpdir(), f"data.{kind}")
        t = _table()
        _write(kind, path, t)
        rep = evaluate(path, label="y", score="p", slices=["g"])
        ref = evaluate(t, label="y", score="p", slices=["g"])
        same_metrics(rep, ref, f"{kind} file")

    return body


def _damaged(kind: str, how: str):  # type: ignore[no-untyped-def]
    def body() -> None:
        name = f"damaged-{how}.{kind}"
        path = os.path.join(tmpdir(), name)
        _write(kind, path, _table())
        raw = open(path, "rb").read()
        if how == "truncated":
            raw = raw[: len(raw) // 2]
        elif how == "empty":
            raw = b""
        elif how == "garbage":
            rng = np.random.default_rng(1)
            mid = rng.integers(0, 256, len(raw) - 16, dtype=np.uint8).tobytes()
            raw = raw[:8] + mid + raw[-8:]  # magic bytes kept at both ends
        elif how == "flipped":
            b = bytearray(raw)
            for i in range(len(b) // 3, len(b) // 3 + 64):
                b[i] ^= 0xFF
            raw = bytes(b)
        with open(path, "wb") as f:
            f.write(raw)
        evaluate(path, label="y", score="p", slices=["g"])

    return body


for _k in ("parquet", "arrow", "arrows", "csv"):
    # An IPC stream file (.arrows) may be read, or refused by name.
    add(f"files-{_k}-valid", _valid(_k), expect="ok" if _k != "arrows" else EITHER,
        words=["data.arrows"])
    for _how in ("truncated", "empty", "garbage", "flipped"):
        # Bytes flipped inside the data (formats without checksums) or a CSV cut at a line
        # end may still parse: then a result, or a typed error on the values they hold. The
        # structural damage must be refused, naming the file.
        lenient = _how == "flipped" or (_k == "csv" and _how == "truncated")
        add(f"files-{_k}-{_how}", _damaged(_k, _how), expect=EITHER if lenient else "typed",
            words=[r"\w" if lenient else f"damaged-{_how}"])


@case(expect="typed", words=["fifo-input|regular|fifo|pipe"], timeout=30)
def files_fifo() -> None:
    """A FIFO nobody writes to: refused, not a hang."""
    path = os.path.join(tmpdir(), "fifo-input.parquet")
    os.mkfifo(path)
    evaluate(path, label="y", score="p")


@case(expect="typed", words=["zero.csv|regular|device"], timeout=30)
def files_char_device_as_csv() -> None:
    """/dev/zero behind a .csv name: an endless stream of NULs, refused."""
    path = os.path.join(tmpdir(), "zero.csv")
    os.symlink("/dev/zero", path)
    evaluate(path, label="y", score="p")


@case(expect="typed", words=["no-such-file", "not found|no such|exist"])
def files_missing() -> None:
    evaluate(os.path.join(tmpdir(), "no-such-file.parquet"), label="y", score="p")


@case(expect="typed", words=["emptydir"], timeout=30)
def files_empty_directory() -> None:
    path = os.path.join(tmpdir(), "emptydir")
    os.mkdir(path)
    try:
        evaluate(path, label="y", score="p")
    except Exception as e:
        check(not str(e).rstrip().endswith("available columns:"),
              f"lists no columns: {e}")
        raise


@case(expect=EITHER, words=["somedir"], timeout=30)
def files_directory_of_parquet() -> None:
    """A directory of Parquet files: read as one dataset, or refused by name."""
    path = os.path.join(tmpdir(), "somedir")
    os.mkdir(path)
    t = _table()
    pq.write_table(t.slice(0, 150), os.path.join(path, "a.parquet"))
    pq.write_table(t.slice(150), os.path.join(path, "b.parquet"))
    rep = evaluate(path, label="y", score="p", slices=["g"])
    ref = evaluate(t, label="y", score="p", slices=["g"])
    same_metrics(rep, ref, "directory dataset")


@case(expect="typed", words=["notes.txt|extension|format"])
def files_unknown_extension() -> None:
    path = os.path.join(tmpdir(), "notes.txt")
    with open(path, "w") as f:
        f.write("y,p\n0,0.1\n")
    evaluate(path, label="y", score="p")


@case(expect="typed", words=["header-only|empty|no rows"])
def files_csv_header_only() -> None:
    path = os.path.join(tmpdir(), "header-only.csv")
    with open(path, "w") as f:
        f.write("y,p\n")
    evaluate(path, label="y", score="p")


@case(expect="typed", words=[r"\bp\b|score"])
def files_csv_text_in_score() -> None:
    path = os.path.join(tmpdir(), "text.csv")
    with open(path, "w") as f:
        f.write("y,p\n0,0.1\n1,0.9\n1,high\n")
    evaluate(path, label="y", score="p")


@case(expect="typed", words=["ragged|column|row|line|expected"])
def files_csv_ragged() -> None:
    path = os.path.join(tmpdir(), "ragged.csv")
    with open(path, "w") as f:
        f.write("y,p\n0,0.1\n1,0.9,7,8\n1\n")
    evaluate(path, label="y", score="p")


@case(expect="typed", words=["empty.parquet|no rows|empty"])
def files_parquet_zero_rows() -> None:
    path = os.path.join(tmpdir(), "empty.parquet")
    pq.write_table(_table().slice(0, 0), path)
    evaluate(path, label="y", score="p")


@case()
def files_pathlib_and_bins() -> None:
    """A pathlib.Path input with quantile bins (the file is read twice)."""
    import pathlib

    import assay

    path = pathlib.Path(tmpdir()) / "data.parquet"
    t = _table()
    _write("parquet", str(path), t)
    rep = evaluate(path, label="y", score="p", slices=[assay.bins("p", 3)])
    ref = evaluate(t, label="y", score="p", slices=[assay.bins("p", 3)])
    same_metrics(rep, ref, "pathlib")


def _not_a_str_path(obj: Any):  # type: ignore[no-untyped-def]
    return lambda: evaluate(obj, label="y", score="p")


add("files-bytes-path", _not_a_str_path(b"/nonexistent.parquet"), expect="typed",
    words=["nonexistent|path|bytes|type"])
