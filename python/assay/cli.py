"""The ``assay`` command line: ``assay demo`` and ``assay evaluate PATH ...``.

Every failure is one line on stderr, ``assay: error: ...``, never a traceback. Exit codes:

- 0: success;
- 1: the data or the engine failed (a bad value, an unreadable file, an output that cannot be
  written), or an unexpected internal error (``assay: error: internal error: ...``);
- 2: a usage error: a malformed or out-of-range option (as argparse reports its own), or a
  column named on the command line that is not in the data;
- 130: interrupted (Ctrl-C).

Text output escapes control characters in user data (see :mod:`assay._text`): a slice value
``"a\\nb"`` prints as ``a\\nb`` on one row, never as two rows, and escape sequences, NUL and bidi
overrides cannot reach the terminal. ``--format json`` escapes them by JSON's own rules; CSV and
Parquet written to ``--out`` keep the data as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

import polars as pl

from . import _evaluate
from ._args import U64_MAX
from ._text import escape, escape_frame
from .errors import AssayError, ColumnNotFoundError, InvalidArgumentError

SUMMARY = ["n", "base_rate", "accuracy", "precision", "recall", "f1", "roc_auc",
           "average_precision", "log_loss", "brier"]

MAX_DEMO_ROWS = 50_000_000

EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A command-line option is malformed or out of range (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its messages escaped (they quote what the user typed)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"assay: error: {escape(message)}\n")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{lo}, {hi}], got {text!r}"
            ) from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def _print_table(df: pl.DataFrame) -> None:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, float_precision=4,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   fmt_str_lengths=60):
        print(escape_frame(df))


def _demo(args: argparse.Namespace) -> int:
    from .demo import make_data

    data = make_data(args.rows, args.seed)
    t0 = time.perf_counter()
    rep = _evaluate.evaluate(
        data, label="churned", score="p_churn",
        slices=["country", "device", ("country", "device"),
                _evaluate.bins("age", min(4, args.rows)), "plan"],
        min_slice_size=min(200, max(1, args.rows // 100)),
    )
    dt = time.perf_counter() - t0
    print(f"assay demo: a churn model on {rep.rows:,} generated rows, "
          f"{rep.table.height} slices, {len(rep.metrics)} metrics each, in {dt * 1000:.0f} ms\n")
    shown = rep.table.filter(~pl.col("slice").str.contains(" & ")).select(
        "slice", *[c for c in SUMMARY if c in rep.table.columns])
    _print_table(shown)
    overall = rep.table["roc_auc"][0]
    worst = (rep.table.filter(pl.col("roc_auc").is_not_null())
             .sort("roc_auc").head(5).select("slice", "n", "roc_auc", "log_loss"))
    shown_overall = "undefined" if overall is None else f"{overall:.4f}"
    print(f"\nWorst slices by ROC-AUC (overall {shown_overall}), crosses included:")
    _print_table(worst)
    return 0


def _parse_bins(spec: str) -> _evaluate.Bins:
    col, sep, n = spec.rpartition(":")
    n = n.strip()
    if not sep or not col or not n.isdigit():
        raise UsageError(f"--bins expects COLUMN:N (e.g. age:5), got {spec!r}")
    try:
        return _evaluate.bins(col, int(n))
    except InvalidArgumentError as e:
        raise UsageError(f"--bins {spec!r}: {e}") from e


def _parse_slice(spec: str) -> str | tuple[str, ...]:
    parts = tuple(p.strip() for p in spec.split(",") if p.strip())
    if not parts:
        raise UsageError(f"--slice expects a column or a cross a,b, got {spec!r}")
    return parts[0] if len(parts) == 1 else parts


def _check_out(out: str | None) -> None:
    """Refuse an --out whose directory does not exist, before any work is done."""
    if out is None:
        return
    if not out:
        raise UsageError("--out needs a file name")
    if os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UsageError(f"--out {out!r}: the directory {parent!r} does not exist")


def _evaluate_cmd(args: argparse.Namespace) -> int:
    slices: list[_evaluate.SliceLike] = [_parse_slice(s) for s in args.slice or []]
    slices += [_parse_bins(b) for b in args.bins or []]
    metrics = None
    if args.metrics is not None:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        if not metrics:
            raise UsageError(f"--metrics expects comma-separated metric names, got "
                             f"{args.metrics!r}")
    fmt = args.format
    if fmt == "parquet" and not args.out:
        raise UsageError("--format parquet needs --out FILE")
    _check_out(args.out)
    rep = _evaluate.evaluate(
        args.path, label=args.label, score=args.score, slices=slices, metrics=metrics,
        threshold=args.threshold, weight=args.weight, min_slice_size=args.min_slice_size,
        nan_policy=args.nan_policy, auc=args.auc,
    )
    if fmt == "table":
        if args.out:
            with open(args.out, "w") as f, pl.Config(tbl_rows=-1, tbl_cols=-1,
                                                     tbl_width_chars=200):
                f.write(str(escape_frame(rep.table)) + "\n")
        else:
            _print_table(rep.table)
    elif fmt == "csv":
        if args.out:
            rep.table.write_csv(args.out)  # a data file: the values as they are
        else:
            sys.stdout.write(escape_frame(rep.table).write_csv())
    elif fmt == "json":
        _emit(rep.to_json() + "\n", args.out)  # JSON escapes control characters itself
    else:
        rep.table.write_parquet(args.out)
    if rep.dropped:
        print(f"({rep.dropped} rows dropped by nan_policy=drop)", file=sys.stderr)
    return 0


def _emit(text: str, out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(
        prog="assay", description="Sliced model evaluation.",
        epilog="Exit codes: 0 success, 1 data or engine error, 2 usage error, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser("demo", help="evaluate a generated churn model and print the report")
    d.add_argument("--rows", type=_int_in(1, MAX_DEMO_ROWS), default=300_000,
                   help=f"rows to generate, in [1, {MAX_DEMO_ROWS}] (default 300000)")
    d.add_argument("--seed", type=_int_in(0, U64_MAX), default=0)
    e = sub.add_parser("evaluate", help="evaluate a Parquet, CSV or Arrow IPC file")
    e.add_argument("path")
    e.add_argument("--label", required=True)
    e.add_argument("--score", required=True)
    e.add_argument("--slice", action="append", help="a column, or a cross a,b (repeatable)")
    e.add_argument("--bins", action="append", help="COLUMN:N quantile bins (repeatable)")
    e.add_argument("--metrics", help="comma-separated metric names (default: all)")
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--weight")
    e.add_argument("--min-slice-size", type=_int_in(0, U64_MAX), default=0)
    e.add_argument("--nan-policy", choices=["raise", "drop"], default="raise")
    e.add_argument("--auc", choices=["exact", "binned"], default="exact")
    e.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    e.add_argument("-o", "--out", help="write the report to this file instead of stdout")
    return parser, {"demo": d, "evaluate": e}


def _error(message: str, code: int) -> int:
    print(f"assay: error: {escape(message)}", file=sys.stderr)
    return code


def _run(argv: Sequence[str] | None) -> int:
    parser, commands = _parser()
    args = parser.parse_args(argv)
    try:
        return _demo(args) if args.command == "demo" else _evaluate_cmd(args)
    except UsageError as err:
        commands[args.command].print_usage(sys.stderr)
        return _error(str(err), EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assay`` command; returns the exit code (see the module docs)."""
    try:
        return _run(argv)
    except SystemExit as e:  # argparse: --help (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print("assay: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_BROKEN_PIPE
    except (InvalidArgumentError, ColumnNotFoundError) as err:
        return _error(str(err), EXIT_USAGE)
    except AssayError as err:
        return _error(str(err), EXIT_DATA)
    except OSError as err:
        return _error(str(err), EXIT_DATA)
    except MemoryError:
        return _error("out of memory", EXIT_DATA)
    except Exception as err:  # a bug: still one line, never a traceback
        return _error(f"internal error: {type(err).__name__}: {err} (please report this)",
                      EXIT_DATA)


if __name__ == "__main__":
    sys.exit(main())
