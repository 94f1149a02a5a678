"""Batch-job inputs and guards as a new user drives them wrong: an ID column as a slice, a
cross that explodes, an absurd max_slices, a glob that matches nothing, a corrupt file among
good ones, a Hive key that clashes with a file column, a partition folder named like Spark's
``_temporary``, date and timestamp slices of mixed units, progress with stderr closed, and the
command line's gate, --where and --format given wrong."""

from __future__ import annotations

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _harness import case, check, cli, tmpdir


def _ids(n: int = 30_000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n), "id": np.arange(n),
                     "g": np.arange(n) % 5})


def _parts(name: str, clash: bool = False) -> str:
    root = os.path.join(tmpdir(), name)
    for k in range(3):
        d = os.path.join(root, f"g={k}")
        os.makedirs(d, exist_ok=True)
        t = _ids(200).drop_columns(["g"] if not clash else [])
        pq.write_table(t, os.path.join(d, "part-0.parquet"))
    return root


@case(expect="typed", words=["max_slices=10000", '"id"', "assay.bins"])
def batch_id_column_as_a_slice() -> None:
    import assay

    assay.evaluate(_ids(), label="y", score="p", slices=["g", "id"])


@case(expect="typed", words=["cross of", "max_slices=50"])
def batch_cross_that_explodes() -> None:
    import assay

    assay.evaluate(_ids(2000), label="y", score="p", slices=[("g", "id")], max_slices=50)


@case(expect="typed", words=["max_slices"])
def batch_max_slices_beyond_u64() -> None:
    import assay

    assay.evaluate(_ids(100), label="y", score="p", max_slices=2**70)


@case(expect="typed", words=["no file matches"])
def batch_glob_matching_nothing() -> None:
    import assay

    assay.evaluate(os.path.join(tmpdir(), "nowhere", "*.parquet"), label="y", score="p")


@case(expect="typed", words=["corrupt"])
def batch_corrupt_file_among_good_ones() -> None:
    import assay

    root = _parts("corrupt")
    with open(os.path.join(root, "g=1", "part-1.parquet"), "wb") as f:
        f.write(b"PAR1 not really parquet PAR1")
    assay.evaluate(os.path.join(root, "*", "*.parquet"), label="y", score="p")


@case(expect="typed", words=["'g' is both a column of its files and a Hive partition key"])
def batch_hive_key_clashing_with_a_file_column() -> None:
    import assay

    assay.evaluate(_parts("clash", clash=True), label="y", score="p", slices=["g"])


@case(expect="ok")
def batch_spark_temporary_folder_is_skipped() -> None:
    import assay

    root = _parts("spark")
    os.makedirs(os.path.join(root, "_temporary", "0"), exist_ok=True)
    with open(os.path.join(root, "_temporary", "0", "part.parquet"), "wb") as f:
        f.write(b"half written")
    rep = assay.evaluate(root, label="y", score="p", slices=["g"], metrics=["accuracy"])
    check(rep.table["n"][0] == 600, f"read {rep.table['n'][0]} rows, not 600")
    rep = assay.evaluate(os.path.join(root, "*"), label="y", score="p", metrics=["accuracy"])
    check(rep.table["n"][0] == 600, f"the glob read {rep.table['n'][0]} rows, not 600")


@case(expect="ok")
def batch_timestamp_slices_of_two_units_merge_into_one() -> None:
    import assay

    ts = np.array(["2024-01-05T10:30:00.5", "2024-01-06T00:00:00"], dtype="datetime64[ns]")
    a = pa.table({"y": [0, 1], "p": [0.2, 0.8], "ts": pa.array(ts)})
    b = a.set_column(2, "ts", a["ts"].cast(pa.timestamp("ms")))
    spec = assay.Spec(label="y", score="p", slices=["ts"], metrics=["accuracy"])
    rep = assay.merge([spec.accumulate(a), spec.accumulate(b, row_offset=2)]).finalize()
    check(rep.table["slice"].to_list() == ["overall", "ts=2024-01-05 10:30:00.5",
                                           "ts=2024-01-06 00:00:00"], str(rep.table))


@case(expect="ok")
def batch_progress_with_stderr_closed() -> None:
    import assay

    sys.stderr.close()
    rep = assay.evaluate(_ids(5000), label="y", score="p", metrics=["accuracy"], progress=True)
    check(rep.table["n"][0] == 5000, "wrong row count")


@case(expect="typed", words=["--where", "nope"])
def batch_cli_where_names_a_missing_column() -> None:
    path = os.path.join(tmpdir(), "ids.parquet")
    pq.write_table(_ids(500), path)
    cli("evaluate", path, "--label", "y", "--score", "p", "--where", "nope > 1")


@case(expect="typed", words=["--format parquet needs --out"])
def batch_cli_gate_to_parquet_on_stdout() -> None:
    path = os.path.join(tmpdir(), "ids2.parquet")
    pq.write_table(_ids(500).append_column("q", pa.array(np.linspace(0, 1, 500))), path)
    cli("compare", path, "--label", "y", "--score", "a=p", "--score", "b=q", "--gate",
        "roc_auc", "--format", "parquet")


@case(expect="typed", words=["max_slices=10000"])
def batch_cli_id_slice() -> None:
    path = os.path.join(tmpdir(), "ids3.parquet")
    pq.write_table(_ids(), path)
    cli("evaluate", path, "--label", "y", "--score", "p", "--slice", "id")


def _job(name: str, body: str) -> str:
    path = os.path.join(tmpdir(), name)
    with open(path, "wb") as f:
        f.write(body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body)
    return path


@case(expect="typed", words=["not valid TOML"])
def batch_job_file_of_binary_garbage() -> None:
    cli("run", _job("garbage.toml", "\x00\x1b[2J\udcff = ="))


@case(expect="typed", words=["unknown key", "it takes"])
def batch_job_file_with_a_control_character_key() -> None:
    out = cli("run", _job("ctl.toml", 'command = "evaluate"\ndata = "x"\n"a\\u001b[31m" = 1\n'))
    check(False, out)


@case(expect="typed", words=["must be a string or a number"])
def batch_job_file_with_a_nested_table_as_an_option() -> None:
    cli("run", _job("nested.toml", 'command = "evaluate"\ndata = "x"\n[bootstrap]\nb = 1\n'))


@case(expect="typed", words=["slices must be a list"])
def batch_job_file_slices_as_a_table() -> None:
    cli("run", _job("tbl.toml", 'command = "evaluate"\ndata = "x"\nslices = { a = 1 }\n'))


@case(expect="typed", words=["expected an integer"])
def batch_job_file_bootstrap_out_of_range() -> None:
    path = os.path.join(tmpdir(), "job-data.parquet")
    pq.write_table(_ids(500), path)
    cli("run", _job("big.toml", f'command = "evaluate"\ndata = "{path}"\nlabel = "y"\n'
                                'score = "p"\nbootstrap = 1e300\n'))


@case(expect="typed", words=["cannot read the job file"])
def batch_job_file_is_a_directory() -> None:
    cli("run", tmpdir())


@case(expect="typed", words=["both a categorical slice and assay.bins"])
def batch_decimal_column_as_slice_and_bins_at_once() -> None:
    import decimal

    import assay

    t = pa.table({"y": [0, 1, 1], "p": [0.1, 0.8, 0.6],
                  "d": pa.array([decimal.Decimal("1.5")] * 3, pa.decimal128(4, 2))})
    assay.evaluate(t, label="y", score="p", slices=["d", assay.bins("d", 2)])


@case(expect="ok")
def batch_decimal_of_38_digits_is_a_slice_by_its_text() -> None:
    import decimal

    import assay

    # Values a float64 cannot tell apart (literals: Python's decimal arithmetic rounds to 28
    # digits).
    big, low = decimal.Decimal("9" * 36 + ".5"), decimal.Decimal("-" + "9" * 35 + "8.5")
    t = pa.table({"y": [0, 1, 1], "p": [0.1, 0.8, 0.6],
                  "d": pa.array([big, big, low], pa.decimal128(38, 1))})
    rep = assay.evaluate(t, label="y", score="p", slices=["d"], metrics=["accuracy"])
    check(rep.table["slice"].to_list() == ["overall", f"d={low}", f"d={big}"],
          str(rep.table["slice"].to_list()))
