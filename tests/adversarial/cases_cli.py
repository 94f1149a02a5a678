"""The command line, run as a user runs it (a separate ``python`` process): no traceback, no
abort, errors as ``assay: error: ...`` with a non-zero status, and no raw control character
(ESC, NUL, U+202E, a newline inside a value...) in any output."""

from __future__ import annotations

import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _harness import Wrong, add, case, check, cli, tmpdir, toy

EITHER = ("ok", "typed")


def _data(**extra: object) -> str:
    d = toy(300)
    cols = {"y": d["y"], "p": d["p"], "g": d["g"], "x": d["x"]}
    cols.update(extra)  # type: ignore[arg-type]
    path = os.path.join(tmpdir(), "cli-data.parquet")
    pq.write_table(pa.table(cols), path)
    return path


def _run(*args: str, **kw: object):  # type: ignore[no-untyped-def]
    def body() -> None:
        data = _data() if any("{data}" in a for a in args) else ""
        argv = [a.replace("{data}", data).replace("{tmp}", tmpdir()) for a in args]
        cli(*argv, **kw)  # type: ignore[arg-type]

    return body


add("cli-demo-rows-1", _run("demo", "--rows", "1"), expect=EITHER, words=["rows|row"])
add("cli-demo-rows-0", _run("demo", "--rows", "0"), expect="typed", words=["rows"])
add("cli-demo-rows-neg5", _run("demo", "--rows", "-5"), expect="typed", words=["rows"])
add("cli-demo-rows-huge", _run("demo", "--rows", "99999999999999999999"), expect="typed",
    words=["rows"])
add("cli-no-command", _run(), expect="typed", words=["command|required|usage"])
add("cli-out-missing-dir",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--format", "csv", "--out",
         "{tmp}/no/such/dir/out.csv"), expect="typed", words=["no/such/dir|directory|out"])
add("cli-out-missing-dir-parquet",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--format", "parquet", "--out",
         "{tmp}/no/such/dir/out.parquet"), expect="typed", words=["no/such/dir|directory|out"])
add("cli-parquet-without-out",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--format", "parquet"),
    expect="typed", words=["--out"])
add("cli-bins-99999999999",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--bins", "p:99999999999"),
    expect=EITHER, words=["bins|p"])
add("cli-bins-not-a-number",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--bins", "p:many"),
    expect="typed", words=["--bins|bins"])
add("cli-bins-missing-column",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--bins", "nope:3"),
    expect="typed", words=["nope"])
add("cli-missing-file",
    _run("evaluate", "{tmp}/absent.parquet", "--label", "y", "--score", "p"),
    expect="typed", words=["absent.parquet"])
add("cli-label-missing",
    _run("evaluate", "{data}", "--label", "nope", "--score", "p"), expect="typed",
    words=["nope"])
add("cli-threshold-nan",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--threshold", "nan"),
    expect="typed", words=["threshold"])
add("cli-min-slice-size-huge",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--min-slice-size",
         "99999999999999999999999"), expect=EITHER, words=["min.slice.size"])
add("cli-metrics-f1e200",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--metrics", "f1e200,recall",
         forbid=[r"\bNaN\b", r"\binf\b"]), expect=EITHER, words=["f1e200|beta"])
add("cli-env-threads-garbage",
    lambda: _env_threads(), expect="typed", words=["ASSAY_NUM_THREADS"])


def _env_threads() -> None:
    os.environ["ASSAY_NUM_THREADS"] = "many"
    cli("evaluate", _data(), "--label", "y", "--score", "p")


@case(expect="typed", words=["fifo|regular|pipe"], timeout=40)
def cli_fifo() -> None:
    path = os.path.join(tmpdir(), "in.parquet")
    os.mkfifo(path)
    cli("evaluate", path, "--label", "y", "--score", "p", timeout=30)


# --- control characters in slice values --------------------------------------------------------

NASTY = ["plain", "a\nzzqq\nc", "esc\x1b[31mred", "nul\x00byte", "rtl\u202eevil", "tab\tx",
         "bell\x07", "del\x7f", "c1\x9bx"]


def _nasty(fmt: str):  # type: ignore[no-untyped-def]
    def body() -> None:
        n = 300
        g = np.array(NASTY)[np.arange(n) % len(NASTY)]
        path = _data(g=pa.array(g.tolist()))
        args = ["evaluate", path, "--label", "y", "--score", "p", "--slice", "g", "--format",
                fmt]
        out = cli(*args)
        # A value "a\nzzqq\nc" printed raw shows as three rows.
        for line in out.splitlines():
            if re.match(r"^[\s\"│|┆]*zzqq", line):
                raise Wrong(f"a newline inside a slice value split a row ({fmt}): {line!r}")
        check(out.count("\n") >= 1, f"no output in {fmt}")
        if fmt == "json":
            import json

            rows = json.loads(out)["rows"]
            check(len(rows) == 1 + len(NASTY), f"json has {len(rows)} rows")
        if fmt == "csv":
            lines = [ln for ln in out.splitlines() if ln.strip()]
            check(len(lines) == 2 + len(NASTY),
                  f"csv has {len(lines)} lines for {1 + len(NASTY)} rows + header")

    return body


for _fmt in ("table", "csv", "json"):
    add(f"cli-control-chars-{_fmt}", _nasty(_fmt))


@case()
def cli_control_chars_in_column_name() -> None:
    """A column name with ESC and a newline, used as a slice."""
    d = toy(100)
    name = "col\x1b[2J\nname"
    path = os.path.join(tmpdir(), "names.parquet")
    pq.write_table(pa.table({"y": d["y"], "p": d["p"], name: d["g"]}), path)
    cli("evaluate", path, "--label", "y", "--score", "p", "--slice", name)


@case(expect="typed", words=["evil|nope|not found"])
def cli_control_chars_in_error() -> None:
    """An error message quoting a user's string must escape it too."""
    cli("evaluate", _data(), "--label", "nope\x1b[2J\u202eevil", "--score", "p")


# --- partial states: --save-state and finalize -------------------------------------------------


@case()
def cli_save_state_finalize_control_chars() -> None:
    """States of shards whose slice values hold control characters: the merged table printed
    by `assay finalize` escapes them like `assay evaluate` does."""
    n = 300
    g = np.array(NASTY)[np.arange(n) % len(NASTY)]
    path = _data(g=pa.array(g.tolist()))
    states = []
    for k, offset in enumerate((0, 0)):
        out = os.path.join(tmpdir(), f"part\x1b[31m-{k}.assay")
        cli("evaluate", path, "--label", "y", "--score", "p", "--slice", "g", "--save-state",
            out, "--row-offset", str(offset + k * n))
        states.append(out)
    out = cli("finalize", *states)
    for line in out.splitlines():
        if re.match(r"^[\s\"│|┆]*zzqq", line):
            raise Wrong(f"a newline inside a slice value split a row: {line!r}")


@case(expect="typed", words=["corrupt|not a valid"])
def cli_finalize_corrupt_state_with_a_nasty_name() -> None:
    bad = os.path.join(tmpdir(), "corrupt\x1b[2J\u202e.assay")
    with open(bad, "wb") as f:
        f.write(b"ASSAYPS\x00" + bytes(40))
    cli("finalize", bad)


add("cli-finalize-no-files", _run("finalize"), expect="typed", words=["state"])
add("cli-finalize-missing-file", _run("finalize", "{tmp}/absent.assay"), expect="typed",
    words=["absent.assay"])
add("cli-finalize-unknown-extension",
    _run("finalize", "{tmp}/absent.assay", "-o", "{tmp}/out.xlsx"), expect="typed",
    words=["extension"])
add("cli-save-state-fitted-bins",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--bins", "x:4",
         "--save-state", "{tmp}/s.assay"), expect="typed", words=["edges"])
add("cli-row-offset-huge",
    _run("evaluate", "{data}", "--label", "y", "--score", "p", "--save-state",
         "{tmp}/s.assay", "--row-offset", "18446744073709551615"), expect="typed",
    words=["row.offset|overflow"])
