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


# --- saved runs (assay.load / Report.save): hostile paths and damaged or foreign files ------


def _saved_run(name: str, *, compare: bool = False) -> str:
    """A saved report (or comparison, with bootstrap replicates) at ``name`` in a temp dir."""
    import assay

    t = _table()
    path = os.path.join(tmpdir(), name)
    if compare:
        d = toy(300)
        t = pa.table({"y": d["y"], "a": d["p"], "b": np.clip(d["p"] + 0.05, 0, 1),
                      "g": d["g"]})
        res = assay.compare(t, label="y", scores={"a": "a", "b": "b"}, slices=["g"],
                            bootstrap=20, seed=0)
    else:
        res = assay.evaluate(t, label="y", score="p", slices=["g"])
    res.save(path)
    return path


def _load(path: Any) -> Any:
    import assay

    return assay.load(path)


def _rewrite_meta(path: str, edit: Any) -> None:
    """Rewrites the file's "assay" metadata through ``edit`` (bytes -> bytes)."""
    t = pq.read_table(path)
    meta = dict(t.schema.metadata or {})
    meta[b"assay"] = edit(meta[b"assay"])
    pq.write_table(t.replace_schema_metadata(meta), path)


for _what, _obj, _words in (("int", 123, ["path", "int"]), ("none", None, ["path", "NoneType"]),
                            ("bytes", b"run.assay.parquet", ["path", "bytes"]),
                            ("empty", "", ["path"])):
    add(f"saved-load-{_what}", lambda _o=_obj: _load(_o), expect="typed", words=_words)


@case(expect="typed", words=["no-such-run", "no such file"])
def saved_load_missing() -> None:
    _load(os.path.join(tmpdir(), "no-such-run.assay.parquet"))


@case(expect="typed", words=["fifo-run", "regular file"], timeout=30)
def saved_load_fifo() -> None:
    """A FIFO nobody writes to: refused at once, not a hang."""
    path = os.path.join(tmpdir(), "fifo-run.assay.parquet")
    os.mkfifo(path)
    _load(path)


@case(expect="typed", words=["rundir", "directory"])
def saved_load_directory() -> None:
    path = os.path.join(tmpdir(), "rundir")
    os.mkdir(path)
    _load(path)


@case(expect="typed", words=["plain.parquet", "not a saved assay run"])
def saved_load_plain_parquet() -> None:
    path = os.path.join(tmpdir(), "plain.parquet")
    pq.write_table(_table(), path)
    _load(path)


for _how in ("truncated", "garbage", "empty"):
    def _damaged_run(_how: str = _how) -> None:
        path = _saved_run(f"damaged-run-{_how}.assay.parquet")
        raw = open(path, "rb").read()
        raw = {"truncated": raw[: len(raw) // 2], "empty": b"",
               "garbage": raw[:4] + bytes(len(raw) - 8) + raw[-4:]}[_how]
        with open(path, "wb") as f:
            f.write(raw)
        _load(path)

    add(f"saved-load-file-{_how}", _damaged_run, expect="typed", words=[f"damaged-run-{_how}"])


for _what, _edit, _words in (
        ("not-json", lambda b: b"{not json", ["meta-not-json", "not JSON"]),
        ("json-list", lambda b: b"[1, 2]", ["meta-json-list", "JSON object"]),
        ("newer", lambda b: b.replace(b'"format": 1', b'"format": 99'),
         ["meta-newer", "format 99", "upgrade"]),
        ("unknown-kind", lambda b: b.replace(b'"kind": "report"', b'"kind": "pie"'),
         ["meta-unknown-kind", "pie"]),
        ("no-metrics", lambda b: b.replace(b'"metrics"', b'"metricz"'),
         ["meta-no-metrics", "damaged"])):
    def _foreign(_what: str = _what, _edit: Any = _edit) -> None:
        path = _saved_run(f"meta-{_what}.assay.parquet")
        _rewrite_meta(path, _edit)
        _load(path)

    add(f"saved-load-meta-{_what}", _foreign, expect="typed", words=_words)


@case(expect="typed", words=["replicates-cut", "damaged"])
def saved_load_cut_replicates() -> None:
    """A comparison whose replicate matrix lost bytes: refused, not reshaped into garbage."""
    import json

    path = _saved_run("replicates-cut.assay.parquet", compare=True)

    def edit(raw: bytes) -> bytes:
        meta = json.loads(raw)
        meta["replicates"]["data"] = meta["replicates"]["data"][:-8]
        return json.dumps(meta).encode()

    _rewrite_meta(path, edit)
    _load(path)


@case(expect="typed", words=["missing-dir", "does not exist"])
def saved_save_into_missing_directory() -> None:
    import assay

    rep = assay.evaluate(_table(), label="y", score="p")
    rep.save(os.path.join(tmpdir(), "missing-dir", "run.assay.parquet"))


@case(expect="typed", words=["savedir", "directory"])
def saved_save_onto_directory() -> None:
    import assay

    path = os.path.join(tmpdir(), "savedir")
    os.mkdir(path)
    assay.evaluate(_table(), label="y", score="p").save(path)


@case()
def saved_round_trip_hostile_labels() -> None:
    """Slice values with quotes, markup, newlines and non-ASCII survive save and load."""
    import assay

    vals = ['<script>alert("x")</script>', "a\nb", "naïve 'quote'", "\u202eevil", ""]
    n = 300
    d = toy(n)
    t = pa.table({"y": d["y"], "p": d["p"], "g": [vals[i % len(vals)] for i in range(n)]})
    rep = assay.evaluate(t, label="y", score="p", slices=["g"])
    path = os.path.join(tmpdir(), "hostile.assay.parquet")
    back = assay.load(rep.save(path))
    check(back.table.equals(rep.table), "the loaded table differs from the saved one")
    page = assay.html.render(back)
    check("<script>alert" not in page, "a slice label reached the page unescaped")
